//! Waiting for a daemon that is starting (issue 12).
//!
//! A daemon answers from the instant its socket is bound, while it opens its store and catches
//! up its read model; until it is ready it answers requests with `starting` and did nothing with
//! them. A client then waits and asks again, for as long as the start-up makes progress: a
//! catch-up of millions of events is slow, not dead. It gives up (exit 5, with the last progress)
//! when the daemon goes away, or after [`START_PATIENCE`] without progress, so that a script never
//! hangs for ever.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use orders_shared::protocol::{DaemonState, DaemonStatus, Request, StartProgress, StatusRequest};

use crate::client::{Client, reply_timeout};
use crate::failure::{Exit, Failure};

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

/// Asks the daemon on `client` for its status until it is ready, and returns that status. `told`
/// is what the daemon said about its start-up (a `starting` message), shown once on a terminal.
pub async fn wait_until_ready(client: &mut Client, told: &str) -> Result<DaemonStatus, Failure> {
    let patience = start_patience();
    let mut told_user = false;
    let mut last: Option<StartProgress> = None;
    let mut moved = Instant::now();
    loop {
        let status: DaemonStatus =
            match client.exchange(&Request::Status(StatusRequest {}), Some(reply_timeout())).await {
                Ok(reply) => client.data(reply)?,
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
            .with_hint(format!("see its log ({}); `orders daemon restart` replaces it", status.log_file)));
        }
        tokio::time::sleep(POLL).await;
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
