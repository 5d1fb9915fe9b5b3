//! Logging: to a file (always) and to stderr (in the foreground), at a level set by the user.
//!
//! The log file is created 0600, never through a symlink (issue 11), one per data directory by
//! default, and rotated by size (issue 16): at [`ROTATE_BYTES`] it becomes `daemon.log.1` (the
//! older ones move up, and at most [`KEPT`] are kept). Colour on stderr only when the caller says
//! so: a terminal, not `NO_COLOR`, not `--color never` — a service manager or `2>file` must not
//! get escape codes (issue 11); under systemd (`JOURNAL_STREAM` names stderr) no timestamp
//! either, as the journal adds its own.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileTypeExt as _;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context as _;
use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
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

/// The size at which the log file is rotated.
pub const ROTATE_BYTES: usize = 10 << 20;
/// How many rotated files are kept beside the log.
pub const KEPT: usize = 5;

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
    let journal = under_journal();
    let to_stderr = (stderr != Stderr::Off).then(|| {
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(stderr == Stderr::Coloured && !journal);
        if journal { layer.without_time().boxed() } else { layer.boxed() }
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

/// Whether stderr goes to systemd's journal: it says so in `JOURNAL_STREAM` (the device and
/// inode of the stream it gave), which must be stderr's own (a child of such a service may have
/// had its stderr redirected since).
fn under_journal() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else { return false };
    let Some((dev, ino)) = stream.to_str().and_then(|text| text.split_once(':')) else { return false };
    let Ok(stderr) = std::fs::metadata("/proc/self/fd/2") else { return false };
    dev.parse() == Ok(stderr.dev()) && ino.parse() == Ok(stderr.ino())
}

/// The log file, 0600, rotated by size; a character device the user named (`--log-file
/// /dev/null`) is used as is.
fn open_log(log_file: &Path) -> anyhow::Result<(Box<dyn Write + Send>, Option<u32>)> {
    if std::fs::symlink_metadata(log_file).is_ok_and(|meta| meta.file_type().is_char_device()) {
        let file = OpenOptions::new()
            .append(true)
            .open(log_file)
            .with_context(|| format!("cannot open the log file {}", log_file.display()))?;
        return Ok((Box::new(file), None));
    }
    // Proves the path (no symlink, a regular file, ours, 0600) before the rotating writer opens
    // it by name.
    let opened = files::open_private(log_file, Access::Append).context("cannot open the log file")?;
    drop(opened.file);
    Ok((Box::new(rotating(log_file, ROTATE_BYTES)), opened.tightened_from))
}

/// A writer into `log_file` that moves it to `.1` (and the older ones up) past `bytes`.
fn rotating(log_file: &Path, bytes: usize) -> FileRotate<AppendCount> {
    FileRotate::new(
        log_file,
        AppendCount::new(KEPT),
        ContentLimit::BytesSurpassed(bytes),
        Compression::None,
        Some(files::OWNER_ONLY),
    )
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn the_log_rotates_by_size_and_keeps_a_bounded_number_of_old_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("daemon.log");
        let mut writer = rotating(&log, 1000);
        for n in 0..200 {
            writeln!(writer, "line {n} of the daemon's log, about fifty bytes long").expect("write");
        }
        writer.flush().expect("flush");
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let expected: Vec<String> = std::iter::once("daemon.log".to_owned())
            .chain((1..=KEPT).map(|n| format!("daemon.log.{n}")))
            .collect();
        assert_eq!(names, expected);
        for name in &names {
            let meta = std::fs::metadata(dir.path().join(name)).expect("meta");
            assert!(meta.len() <= 1100, "{name}: {} bytes", meta.len());
            assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, 0o600, "{name}");
        }
        let newest = std::fs::read_to_string(&log).expect("read");
        assert!(newest.contains("line 199"), "{newest}");
    }
}
