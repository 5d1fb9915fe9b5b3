//! How a command fails: a message saying what happened, a hint saying what to do, and one of
//! the documented exit codes, so that scripts can branch on the kind of failure.

use std::fmt;

use orders_shared::protocol::{ErrorBody, ErrorCode};

/// The exit codes of `orders`, as documented in the README and the man page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Anything else: an unexpected daemon or storage error.
    Failure = 1,
    /// The command line is wrong (clap's own code).
    Usage = 2,
    /// No order with that id.
    NotFound = 3,
    /// The business rules refuse it, e.g. cancelling a delivered order.
    Rejected = 4,
    /// No daemon answers, or it cannot serve the request now.
    Unavailable = 5,
    /// A wait ran out of time (`create --wait`).
    Timeout = 6,
    /// A check found the data inconsistent or the database file damaged (`check`, `check
    /// --file`, `replay --check`).
    CheckFailed = 7,
    /// The order waited for ended cancelled (`create --wait`, `watch`): a script's
    /// `orders create --wait && ship` must not ship it (issue 18).
    Cancelled = 8,
    /// The daemon came back from a restart serving another store (a restore or an import
    /// replaced it) while a stream read the old one (`events --follow`, `watch`, `create
    /// --wait`): its positions name other events, so the stream stops (issue 18).
    StoreReplaced = 9,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
    pub hint: Option<String>,
    /// Stop without a word and with success: the reader of our output went away.
    pub broken_pipe: bool,
    /// Exit with the code without a word: the output said it already.
    pub silent: bool,
    /// The daemon's error code, when the failure is its refusal.
    pub refusal: Option<ErrorCode>,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self { exit, message: message.into(), hint: None, broken_pipe: false, silent: false, refusal: None }
    }

    /// The exit code alone, nothing on stderr.
    pub fn silent(exit: Exit) -> Self {
        Self { silent: true, ..Self::new(exit, "") }
    }

    pub fn broken_pipe() -> Self {
        Self { broken_pipe: true, ..Self::new(Exit::Failure, "broken pipe") }
    }

    pub fn with_refusal(mut self, code: ErrorCode) -> Self {
        self.refusal = Some(code);
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A message may quote what came from a file or the store: shown, never obeyed.
        write!(f, "error: {}", orders_shared::text::escaped(&self.message, true))?;
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {}", orders_shared::text::escaped(hint, true))?;
        }
        Ok(())
    }
}

impl From<ErrorBody> for Failure {
    fn from(error: ErrorBody) -> Self {
        let exit = match error.code {
            ErrorCode::NotFound => Exit::NotFound,
            ErrorCode::Rejected => Exit::Rejected,
            ErrorCode::Busy
            | ErrorCode::Unavailable
            | ErrorCode::ProtocolMismatch
            | ErrorCode::WrongStore
            | ErrorCode::Starting => Exit::Unavailable,
            ErrorCode::Timeout => Exit::Timeout,
            ErrorCode::InvalidRequest
            | ErrorCode::TooLarge
            | ErrorCode::PermissionDenied
            | ErrorCode::Internal
            | ErrorCode::Unknown => Exit::Failure,
        };
        // The hints that name a command are the client's: it knows the paths in use.
        let failure = Failure::new(exit, error.message).with_refusal(error.code);
        match error.code {
            ErrorCode::Internal => failure.with_hint("see the daemon's log for details"),
            _ => failure,
        }
    }
}
