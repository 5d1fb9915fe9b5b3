//! The socket client: one connection, one request line, one reply line (or a stream of them),
//! and the wait for a daemon that is still starting.

use std::io::{self, IsTerminal};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::tokio::prelude::*;
use interprocess::local_socket::{GenericFilePath, ToFsName};
use orders_daemon::paths::{Paths, quoted};
use orders_shared::PROTOCOL_VERSION;
use orders_shared::protocol::{
    DaemonState, DaemonStatus, Envelope, ErrorBody, ErrorCode, Reply, Request, StartProgress, StatusRequest,
    WaitRequest,
};
use serde::de::DeserializeOwned;
use tokio_util::codec::{AnyDelimiterCodec, AnyDelimiterCodecError, Framed};

use crate::failure::{Exit, Failure};

/// The longest reply line read (a page of 10,000 orders is about 2 MiB).
const MAX_REPLY_BYTES: usize = 256 << 20;

pub struct Client {
    lines: Framed<Stream, AnyDelimiterCodec>,
    /// A request that could not be written because the daemon had closed the connection. Its
    /// reason may still be waiting to be read (a refused connection is told why, then closed).
    unsent: Option<io::Error>,
    /// The paths this client resolved: its failures and hints speak of them.
    paths: Paths,
    /// The store every request names ([`Paths::store`]), so that a daemon serving another one
    /// says so instead of answering from the wrong data (issue 12).
    store: String,
}

impl Client {
    /// Connects to a daemon's socket; `NotFound` or `ConnectionRefused` mean none is running.
    /// The daemon must run as this user: a socket in a shared place (the `/tmp` fallback) could
    /// otherwise be answered by another user's impostor.
    pub async fn connect(paths: &Paths) -> io::Result<Client> {
        let socket = paths.socket.as_path();
        let name = socket.to_fs_name::<GenericFilePath>()?;
        let stream = Stream::connect(name).await?;
        let own = rustix::process::geteuid().as_raw();
        match stream.peer_creds()?.euid() {
            Some(uid) if uid == own => {}
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "{} is served by {}, not by you (uid {own}); refusing to talk to it",
                        socket.display(),
                        other.map_or("an unknown user".to_owned(), |uid| format!("uid {uid}"))
                    ),
                ));
            }
        }
        Ok(Client {
            unsent: None,
            paths: paths.clone(),
            store: paths.store(),
            lines: Framed::new(
                stream,
                AnyDelimiterCodec::new_with_max_length(b"\n".to_vec(), b"\n".to_vec(), MAX_REPLY_BYTES),
            ),
        })
    }

    /// The paths this client resolved.
    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// Sends one request.
    pub async fn send(&mut self, request: &Request) -> io::Result<()> {
        let envelope = Envelope { v: PROTOCOL_VERSION, store: &self.store, request };
        let line = serde_json::to_string(&envelope).map_err(io::Error::other)?;
        match self.lines.send(line).await.map_err(codec_error) {
            Err(error)
                if matches!(error.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) =>
            {
                self.unsent = Some(error);
                Ok(())
            }
            sent => sent,
        }
    }

    /// Reads the next reply line; `None` when the daemon closed the connection.
    pub async fn receive(&mut self) -> io::Result<Option<Reply>> {
        match self.lines.next().await {
            None => self.unsent.take().map_or(Ok(None), Err),
            Some(Err(error)) => Err(codec_error(error)),
            Some(Ok(line)) => serde_json::from_slice(&line)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("unreadable reply: {e}"))),
        }
    }

    /// Sends a request and reads its reply's data as `T`. A daemon that does not answer in
    /// time (stopped, or wedged) is a failure, not a hang.
    pub async fn call<T: DeserializeOwned>(&mut self, request: &Request) -> Result<T, Failure> {
        let patience = match request {
            // The daemon answers a wait by its own deadline.
            Request::Wait(wait) => {
                Duration::from_millis(wait.timeout_ms.unwrap_or(WaitRequest::DEFAULT_TIMEOUT_MS))
                    + reply_timeout()
            }
            _ => reply_timeout(),
        };
        self.call_within(request, patience).await
    }

    /// Like [`call`](Self::call), with a given patience.
    pub async fn call_within<T: DeserializeOwned>(
        &mut self,
        request: &Request,
        patience: Duration,
    ) -> Result<T, Failure> {
        let reply = self.first_reply(request, Some(patience)).await?;
        self.data(reply)
    }

    /// Sends a request and reads its first reply line (the only one, but for streams), within
    /// `patience` if given. A daemon that is starting did nothing with it: wait until it is ready
    /// and ask again (issue 12).
    pub async fn first_reply(
        &mut self,
        request: &Request,
        patience: Option<Duration>,
    ) -> Result<Reply, Failure> {
        loop {
            let reply = self.exchange(request, patience).await?;
            match &reply {
                Reply::Error(error) if error.code == ErrorCode::Starting => {
                    self.wait_until_ready(&error.message).await?;
                }
                _ => return Ok(reply),
            }
        }
    }

    /// One request and its first reply line, as they come.
    pub async fn exchange(
        &mut self,
        request: &Request,
        patience: Option<Duration>,
    ) -> Result<Reply, Failure> {
        let exchange = async {
            self.send(request).await.map_err(|e| self.lost(e))?;
            self.receive()
                .await
                .map_err(|e| self.lost(e))?
                .ok_or_else(|| self.lost(io::ErrorKind::UnexpectedEof.into()))
        };
        match patience {
            Some(patience) => tokio::time::timeout(patience, exchange)
                .await
                .map_err(|_| no_answer(&self.paths, request, patience))?,
            None => exchange.await,
        }
    }

    /// The data of a successful reply, or the daemon's error as a failure.
    pub fn data<T: DeserializeOwned>(&self, reply: Reply) -> Result<T, Failure> {
        let unexpected =
            |what: String| Failure::new(Exit::Failure, format!("unexpected reply from the daemon: {what}"));
        let data = match reply {
            Reply::Data(data) => data,
            Reply::Error(error) => return Err(self.failure(error)),
            Reply::Event(_) => return Err(unexpected("an event line where the result was due".to_owned())),
            Reply::Progress(_) => {
                return Err(unexpected("a progress line where the result was due".to_owned()));
            }
            Reply::Record(_) => return Err(unexpected("a record line where the result was due".to_owned())),
        };
        serde_json::from_str(data.get()).map_err(|e| unexpected(e.to_string()))
    }

    /// The daemon's refusal, told of the paths in use.
    pub fn failure(&self, error: ErrorBody) -> Failure {
        let paths = &self.paths;
        match error.code {
            ErrorCode::WrongStore => {
                let served = error.served.clone().unwrap_or_else(|| "another store".to_owned());
                let theirs = Paths { data_dir: served.clone().into(), socket: paths.socket.clone() };
                Failure::new(
                    Exit::Unavailable,
                    format!("the daemon on {} serves {served}, not {}", paths.socket.display(), self.store),
                )
                .with_refusal(error.code)
                .with_hint(format!(
                    "one socket serves one data directory: give {} a socket of its own (--socket PATH or \
                     ORDERS_SOCKET), or stop that daemon first with `{}`",
                    self.store,
                    theirs.command_line("daemon stop")
                ))
            }
            ErrorCode::ProtocolMismatch => Failure::from(error).with_hint(format!(
                "the running daemon is from another version of orders: restart it with `{}` (this binary \
                 then starts its own version)",
                paths.command_line("daemon restart")
            )),
            _ => Failure::from(error),
        }
    }

    /// The connection broke mid-request.
    pub fn lost(&self, error: io::Error) -> Failure {
        Failure::new(Exit::Unavailable, format!("lost the connection to the daemon: {error}")).with_hint(
            format!(
                "the command may or may not have been carried out; check with `{}`",
                self.paths.command_line("list")
            ),
        )
    }
}

/// How long a request may wait for its reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// [`REPLY_TIMEOUT`], unless `ORDERS_REPLY_TIMEOUT` (undocumented: for tests, which cannot wait
/// 30 s) sets another duration.
pub fn reply_timeout() -> Duration {
    std::env::var("ORDERS_REPLY_TIMEOUT")
        .ok()
        .and_then(|text| crate::args::parse_positive_duration(&text).ok())
        .unwrap_or(REPLY_TIMEOUT)
}

/// The daemon took the connection but never answered. It has the request, though: a daemon that
/// is stopped or slow carries out a write once it resumes (issue 11: eight creates that timed out
/// against a stopped daemon were all committed after it resumed), so a write says so.
pub fn no_answer(paths: &Paths, request: &Request, patience: Duration) -> Failure {
    let message = format!("the daemon did not answer within {patience:?}");
    let stuck = format!(
        "`{}` tells whether it is stuck; `{}` replaces it",
        paths.command_line("daemon status"),
        paths.command_line("daemon restart")
    );
    match request {
        Request::Create(create) => {
            let retry = match &create.idempotency_key {
                Some(key) => format!(
                    "retrying with the same `--idempotency-key {}` is safe: it returns that order \
                     instead of placing another",
                    key.as_str()
                ),
                None => format!(
                    "check with `{}` before placing it again; with `--idempotency-key K` a retry is safe (it \
                     returns the same order)",
                    paths.command_line(&format!("list --user {}", quoted(create.user.as_str())))
                ),
            };
            Failure::new(Exit::Unavailable, format!("{message}; the create may still be carried out"))
                .with_hint(format!("{retry}; {stuck}"))
        }
        Request::Cancel(cancel) => {
            Failure::new(Exit::Unavailable, format!("{message}; the cancel may still be carried out"))
                .with_hint(format!(
                    "check with `{}`; {stuck}",
                    paths.command_line(&format!("show {}", cancel.id))
                ))
        }
        _ => Failure::new(Exit::Unavailable, message).with_hint(stuck),
    }
}

fn codec_error(error: AnyDelimiterCodecError) -> io::Error {
    match error {
        AnyDelimiterCodecError::Io(error) => error,
        AnyDelimiterCodecError::MaxChunkLengthExceeded => {
            io::Error::new(io::ErrorKind::InvalidData, "the daemon's reply is too long")
        }
    }
}

// Waiting for a daemon that is starting (issue 12).
//
// A daemon answers from the instant its socket is bound, while it opens its store and catches
// up its read model; until it is ready it answers requests with `starting` and did nothing with
// them. A client then waits and asks again, for as long as the start-up makes progress: a
// catch-up of millions of events is slow, not dead. It gives up (exit 5, with the last progress)
// when the daemon goes away, or after [`START_PATIENCE`] without progress, so that a script never
// hangs for ever.

/// How long a start-up may go without progress before a client gives up on it.
pub const START_PATIENCE: Duration = Duration::from_secs(600);

/// How often a waiting client asks how far the start-up has come.
const POLL: Duration = Duration::from_millis(100);

/// [`START_PATIENCE`], unless `ORDERS_START_PATIENCE` (undocumented: for tests, which cannot wait
/// 10 minutes) sets another duration.
pub fn start_patience() -> Duration {
    std::env::var("ORDERS_START_PATIENCE")
        .ok()
        .and_then(|text| crate::args::parse_positive_duration(&text).ok())
        .unwrap_or(START_PATIENCE)
}

impl Client {
    /// Asks the daemon for its status until it is ready, and returns that status. `told` is what
    /// the daemon said about its start-up (a `starting` message), shown once on a terminal.
    pub async fn wait_until_ready(&mut self, told: &str) -> Result<DaemonStatus, Failure> {
        let patience = start_patience();
        let mut told_user = false;
        let mut last: Option<StartProgress> = None;
        let mut moved = Instant::now();
        loop {
            let status: DaemonStatus =
                match self.exchange(&Request::Status(StatusRequest {}), Some(reply_timeout())).await {
                    Ok(reply) => self.data(reply)?,
                    Err(failure) => return Err(stopped_while_starting(last, &failure)),
                };
            if status.state == DaemonState::Ready {
                return Ok(status);
            }
            if !told_user && std::io::stderr().is_terminal() {
                let progress =
                    status.start.map_or_else(|| told.to_owned(), |p| format!("the daemon is starting: {p}"));
                eprintln!("{progress}; waiting for it");
                told_user = true;
            }
            if status.start != last {
                last = status.start;
                moved = Instant::now();
            } else if moved.elapsed() > patience {
                let progress = last.map_or_else(|| "no progress reported".to_owned(), |p| p.to_string());
                return Err(Failure::new(
                    Exit::Unavailable,
                    format!(
                        "the daemon (pid {}) made no progress starting for {patience:?}: {progress}",
                        status.pid
                    ),
                )
                .with_hint(format!(
                    "see its log ({}); `orders daemon restart` replaces it",
                    status.log_file
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The daemon went away while it was starting: its start-up failed, or it was stopped.
fn stopped_while_starting(last: Option<StartProgress>, failure: &Failure) -> Failure {
    let progress = last.map(|p| format!(" ({p})")).unwrap_or_default();
    Failure::new(
        Exit::Unavailable,
        format!("the daemon stopped while it was starting{progress}: {}", failure.message),
    )
    .with_hint("its log says why; `orders daemon start` reports a failing start-up")
}
