//! Logging: to a file (always) and to stderr (in the foreground), at a level set by the user.
//!
//! The log file is created 0600, never through a symlink (issue 11). Colour on stderr only when
//! the caller says so: a terminal, not `NO_COLOR`, not `--color never` — a service manager or
//! `2>file` must not get escape codes (issue 11).

use std::fs::OpenOptions;
use std::os::unix::fs::FileTypeExt as _;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::files::{self, Access};

/// Where the daemon logs besides its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stderr {
    /// Nothing on stderr (in the background).
    Off,
    /// Plain text.
    Plain,
    /// With ANSI colours (stderr is a terminal, or `--color always`).
    Coloured,
}

/// Installs the global subscriber. `filter` is a level (`info`, `debug`) or a full
/// `tracing-subscriber` directive such as `orders_daemon=debug,warn`.
pub fn init(filter: &str, log_file: &Path, stderr: Stderr) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(filter).with_context(|| format!("invalid log level '{filter}'"))?;
    if let Some(dir) = log_file.parent() {
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let (file, tightened) = open_log(log_file)?;
    let to_file = tracing_subscriber::fmt::layer().with_writer(Mutex::new(file)).with_ansi(false);
    let to_stderr = (stderr != Stderr::Off).then(|| {
        tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(stderr == Stderr::Coloured)
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(to_file)
        .with(to_stderr)
        .try_init()
        .context("logging was set up twice")?;
    if let Some(mode) = tightened {
        tracing::warn!(file = %log_file.display(), "the log file was open to others (mode {mode:04o}); made it 0600");
    }
    Ok(())
}

/// The log file, 0600; a character device the user named (`--log-file /dev/null`) is used as is.
fn open_log(log_file: &Path) -> anyhow::Result<(std::fs::File, Option<u32>)> {
    if std::fs::symlink_metadata(log_file).is_ok_and(|meta| meta.file_type().is_char_device()) {
        let file = OpenOptions::new()
            .append(true)
            .open(log_file)
            .with_context(|| format!("cannot open the log file {}", log_file.display()))?;
        return Ok((file, None));
    }
    let opened = files::open_private(log_file, Access::Append).context("cannot open the log file")?;
    Ok((opened.file, opened.tightened_from))
}
