//! Logging: to a file (always) and to stderr (in the foreground), at a level set by the user.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Installs the global subscriber. `filter` is a level (`info`, `debug`) or a full
/// `tracing-subscriber` directive such as `orders_daemon=debug,warn`.
pub fn init(filter: &str, log_file: &Path, to_stderr: bool) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(filter).with_context(|| format!("invalid log level '{filter}'"))?;
    if let Some(dir) = log_file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file)
        .with_context(|| format!("cannot open the log file {}", log_file.display()))?;
    let to_file = tracing_subscriber::fmt::layer().with_writer(Mutex::new(file)).with_ansi(false);
    let to_stderr = to_stderr.then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
    tracing_subscriber::registry()
        .with(filter)
        .with(to_file)
        .with(to_stderr)
        .try_init()
        .context("logging was set up twice")
}
