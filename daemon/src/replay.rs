//! Rebuilding the read model from the event log while the daemon keeps serving.
//!
//! The writer runs a rebuild in chunks, between its command batches: each chunk applies the next
//! events of the log to a fresh table in its own transaction. When a chunk finds the end of the
//! log, the same transaction (which holds the write lock, so nothing can be appended meanwhile)
//! swaps the fresh table in for the live one: one atomic rename. Until then the live table is
//! untouched and keeps serving reads and receiving the new events; a rebuild that fails, is
//! abandoned by its client, or dies with the daemon (`kill -9`) leaves it in place, and the
//! half-built table is dropped on the next start.
//!
//! `replay --check` builds into a temporary table instead and reports the orders that differ
//! between the live and the rebuilt read model, without swapping anything.

use std::time::Instant;

use orders_shared::protocol::{ErrorBody, ReplayProgress, ReplayReport};
use tokio::sync::{mpsc, oneshot};

use crate::store::{Position, Store, StoreError};

/// Events applied per transaction: small enough that commands waiting meanwhile see no more than
/// a few milliseconds of delay, large enough that the commits cost little.
pub const CHUNK: usize = 2_000;

/// A replay requested by a client.
pub struct ReplayJob {
    pub check: bool,
    pub progress: mpsc::UnboundedSender<ReplayProgress>,
    pub done: oneshot::Sender<Result<ReplayReport, ErrorBody>>,
}

/// A rebuild in progress.
pub struct Rebuild {
    job: ReplayJob,
    /// The last position applied to the new read model.
    cursor: Position,
    applied: u64,
    /// The log's length when the rebuild started.
    total: u64,
    started: Instant,
}

impl Rebuild {
    /// Creates the empty read model a rebuild fills.
    pub fn start(store: &mut dyn Store, job: ReplayJob) -> Result<Rebuild, (ReplayJob, StoreError)> {
        match store.rebuild_start(job.check) {
            Ok(head) => Ok(Rebuild {
                job,
                cursor: Position::START,
                applied: 0,
                total: head.since(Position::START),
                started: Instant::now(),
            }),
            Err(error) => Err((job, error)),
        }
    }

    /// The client that asked for it has gone (Ctrl-C): nobody wants the result any more.
    pub fn is_abandoned(&self) -> bool {
        self.job.done.is_closed()
    }

    /// Applies the next chunk in its own transaction; at the end of the log, finishes (swaps, or
    /// compares) in that same transaction and returns the report.
    pub fn step(&mut self, store: &mut dyn Store) -> Result<Option<ReplayReport>, StoreError> {
        let chunk = store.rebuild_chunk(self.job.check, self.cursor, CHUNK)?;
        self.cursor = chunk.last;
        self.applied += chunk.read as u64;
        let _ = self.job.progress.send(self.progress());
        Ok(chunk.finished.map(|rebuilt| {
            let elapsed = self.started.elapsed();
            ReplayReport {
                check: self.job.check,
                events: self.applied,
                orders: rebuilt.orders,
                duration_ms: elapsed.as_millis().try_into().unwrap_or(u64::MAX),
                events_per_second: self.applied as f64 / elapsed.as_secs_f64().max(1e-9),
                differences: rebuilt.differences,
                examples: rebuilt.examples,
            }
        }))
    }

    pub fn progress(&self) -> ReplayProgress {
        ReplayProgress {
            applied: self.applied,
            total: self.total.max(self.applied),
            elapsed_ms: self.started.elapsed().as_millis().try_into().unwrap_or(u64::MAX),
        }
    }

    /// Answers the client.
    pub fn reply(self, result: Result<ReplayReport, ErrorBody>) {
        let _ = self.job.done.send(result);
    }

    /// Gives up: drops the half-built read model; the live one stays as it was.
    pub fn abandon(self, store: &mut dyn Store, why: ErrorBody) {
        if let Err(error) = store.rebuild_abandon(self.job.check) {
            tracing::warn!(%error, "could not drop the abandoned rebuild; it goes on the next start");
        }
        tracing::info!(applied = self.applied, "replay abandoned: {}", why.message);
        self.reply(Err(why));
    }
}
