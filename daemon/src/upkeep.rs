//! The store's upkeep, away from the writer: a moment after commits, the backend's own
//! background work (SQLite copies its WAL back into the database, see
//! `store::sqlite::upkeep`), and the data directory's record of the acknowledged position is
//! fsynced (at most once a second; the writer updates it in the page cache only, issue 12).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::identity::Acknowledged;
use crate::store::{Position, Upkeep};

/// How long commits may gather before the upkeep runs.
const INTERVAL: Duration = Duration::from_millis(100);

/// Runs the upkeep after commits until shutdown.
pub async fn run(
    upkeep: Option<Box<dyn Upkeep>>,
    acknowledged: Arc<Acknowledged>,
    mut head: watch::Receiver<Position>,
    shutdown: CancellationToken,
) {
    let upkeep = upkeep.map(|upkeep| Arc::new(Mutex::new(upkeep)));
    // Once at the start, before any commit: what the store left to do (after an import or an
    // upgrade, its projections kept off the write path may be behind).
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = head.changed() => if changed.is_err() { return },
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(INTERVAL) => {}
            }
        }
        first = false;
        let upkeep = upkeep.clone();
        let acknowledged = Arc::clone(&acknowledged);
        let done = tokio::task::spawn_blocking(move || {
            acknowledged.sync(false);
            match upkeep {
                Some(upkeep) => {
                    upkeep.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).after_commits()
                }
                None => Ok(()),
            }
        })
        .await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::debug!(%error, "upkeep failed; the next one tries again"),
            Err(error) => tracing::warn!(%error, "upkeep task failed"),
        }
    }
}
