//! WAL checkpoints away from the writer.
//!
//! In WAL mode every commit appends to the `-wal` file, and a checkpoint copies those pages back
//! into the database file. SQLite's automatic checkpoint runs inside the committing thread —
//! here the writer, where the profile showed it taking a sixth of the writer's time and
//! stalling the commands of the batch. This task does it instead, on its own connection, a
//! moment after commits: a PASSIVE checkpoint never waits for the writer or the readers. The
//! writer's own automatic checkpoint stays on, at a higher threshold, as a safety net.
//!
//! It also fsyncs the data directory's record of the acknowledged position now and then (at most
//! once a second), which the writer updates in the page cache only (issue 12).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::identity::Acknowledged;
use crate::store;

/// How long commits may gather before a checkpoint copies them.
const INTERVAL: Duration = Duration::from_millis(100);

/// Checkpoints after commits until shutdown.
pub async fn run(
    database: PathBuf,
    acknowledged: Arc<Acknowledged>,
    mut head: watch::Receiver<i64>,
    shutdown: CancellationToken,
) {
    // Never `open_writer`: its raw opens would drop the writer's locks (see there).
    let conn = match store::open_another_writer(&database) {
        Ok(conn) => Arc::new(Mutex::new(conn)),
        Err(error) => {
            tracing::warn!(%error, "no background checkpoints; the writer checkpoints by itself");
            return;
        }
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = head.changed() => if changed.is_err() { return },
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(INTERVAL) => {}
        }
        let conn = Arc::clone(&conn);
        let acknowledged = Arc::clone(&acknowledged);
        let checkpointed = tokio::task::spawn_blocking(move || {
            acknowledged.sync(false);
            let conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
            })
        })
        .await;
        match checkpointed {
            Ok(Ok((log, copied))) => tracing::trace!(log, copied, "checkpoint"),
            Ok(Err(error)) => tracing::debug!(%error, "checkpoint failed; the next one tries again"),
            Err(error) => tracing::warn!(%error, "checkpoint task failed"),
        }
    }
}
