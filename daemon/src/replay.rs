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

use orders_shared::protocol::{Difference, ErrorBody, ReplayProgress, ReplayReport};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::projection::{self, Projector};
use crate::store::schema::ORDERS_TABLE;
use crate::store::{EventStore, StoreError};

/// Events applied per transaction: small enough that commands waiting meanwhile see no more than
/// a few milliseconds of delay, large enough that the commits cost little.
pub const CHUNK: usize = 2_000;

/// The table a replay builds before it is renamed to `orders`.
const REBUILD_TABLE: &str = "orders_rebuild";
/// The temporary table `replay --check` builds and compares.
const CHECK_TABLE: &str = "orders_check";
/// How many differing orders a check report shows (it counts them all).
const MAX_EXAMPLES: usize = 20;

/// A replay requested by a client.
pub struct ReplayJob {
    pub check: bool,
    pub progress: mpsc::UnboundedSender<ReplayProgress>,
    pub done: oneshot::Sender<Result<ReplayReport, ErrorBody>>,
}

/// A rebuild in progress.
pub struct Rebuild {
    job: ReplayJob,
    /// The last position applied to the new table.
    cursor: i64,
    applied: u64,
    /// The log's length when the rebuild started.
    total: u64,
    started: Instant,
    projector: Projector,
    /// The table it fills: `orders_rebuild`, or `temp.orders_check`.
    table: String,
}

/// Drops what an interrupted rebuild left behind (the daemon died while it ran).
pub fn drop_leftovers(conn: &Connection) -> Result<bool, StoreError> {
    let leftover: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [REBUILD_TABLE],
            |row| row.get(0),
        )
        .optional()?;
    if leftover.is_some() {
        conn.execute_batch(&format!("DROP TABLE {REBUILD_TABLE}"))?;
    }
    Ok(leftover.is_some())
}

impl Rebuild {
    /// Creates the empty table a rebuild fills.
    pub fn start(conn: &Connection, job: ReplayJob) -> Result<Rebuild, (ReplayJob, StoreError)> {
        let prepared = (|| {
            if job.check {
                conn.execute_batch(&format!("DROP TABLE IF EXISTS temp.{CHECK_TABLE}"))?;
                projection::create_table(conn, "temp", CHECK_TABLE, "_check")?;
            } else {
                drop_leftovers(conn)?;
                // Index names outlive the rename, so alternate them between rebuilds.
                let taken: bool = conn.query_row(
                    "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'index' AND name = 'orders_by_id_a'",
                    [],
                    |row| row.get(0),
                )?;
                projection::create_table(conn, "main", REBUILD_TABLE, if taken { "_b" } else { "_a" })?;
            }
            let total = EventStore::new(conn).head()?;
            Ok::<_, StoreError>(total)
        })();
        match prepared {
            Ok(total) => {
                let table = if job.check { format!("temp.{CHECK_TABLE}") } else { REBUILD_TABLE.to_owned() };
                Ok(Rebuild {
                    job,
                    cursor: 0,
                    applied: 0,
                    total: total.try_into().unwrap_or_default(),
                    started: Instant::now(),
                    projector: Projector::new(&table),
                    table,
                })
            }
            Err(error) => Err((job, error)),
        }
    }

    /// The client that asked for it has gone (Ctrl-C): nobody wants the result any more.
    pub fn is_abandoned(&self) -> bool {
        self.job.done.is_closed()
    }

    /// Applies the next chunk in its own transaction; at the end of the log, finishes (swaps, or
    /// compares) in that same transaction and returns the report.
    pub fn step(&mut self, conn: &mut Connection) -> Result<Option<ReplayReport>, StoreError> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (read, last) = self.projector.apply_log(&tx, self.cursor, CHUNK)?;
        self.cursor = last;
        self.applied += read as u64;
        let report = if read < CHUNK { Some(self.finish(&tx)?) } else { None };
        tx.commit()?;
        let _ = self.job.progress.send(self.progress());
        Ok(report)
    }

    fn progress(&self) -> ReplayProgress {
        ReplayProgress {
            applied: self.applied,
            total: self.total.max(self.applied),
            elapsed_ms: self.started.elapsed().as_millis().try_into().unwrap_or(u64::MAX),
        }
    }

    /// The log is all applied and nothing can be appended before this transaction commits.
    fn finish(&self, tx: &Connection) -> Result<ReplayReport, StoreError> {
        let (differences, examples) = if self.job.check {
            let found = compare(tx)?;
            tx.execute_batch(&format!("DROP TABLE temp.{CHECK_TABLE}"))?;
            found
        } else {
            tx.execute_batch(&format!(
                "DROP TABLE {ORDERS_TABLE}; ALTER TABLE {REBUILD_TABLE} RENAME TO {ORDERS_TABLE};"
            ))?;
            projection::set_checkpoint(tx, self.cursor)?;
            (0, Vec::new())
        };
        let orders: i64 =
            tx.query_row(&format!("SELECT count(*) FROM {ORDERS_TABLE}"), [], |row| row.get(0))?;
        let elapsed = self.started.elapsed();
        Ok(ReplayReport {
            check: self.job.check,
            events: self.applied,
            orders: orders.try_into().unwrap_or_default(),
            duration_ms: elapsed.as_millis().try_into().unwrap_or(u64::MAX),
            events_per_second: self.applied as f64 / elapsed.as_secs_f64().max(1e-9),
            differences,
            examples,
        })
    }

    /// Answers the client.
    pub fn reply(self, result: Result<ReplayReport, ErrorBody>) {
        let _ = self.job.done.send(result);
    }

    /// Gives up: drops the half-built table; the live read model stays as it was.
    pub fn abandon(self, conn: &Connection, why: ErrorBody) {
        let table = &self.table;
        if let Err(error) = conn.execute_batch(&format!("DROP TABLE IF EXISTS {table}")) {
            tracing::warn!(%error, "could not drop the abandoned rebuild; it goes on the next start");
        }
        tracing::info!(applied = self.applied, "replay abandoned: {}", why.message);
        self.reply(Err(why));
    }
}

/// The orders whose live and rebuilt rows differ, counted, with the first few shown.
fn compare(tx: &Connection) -> Result<(u64, Vec<Difference>), StoreError> {
    let columns = projection::COLUMNS;
    let live = format!("main.{ORDERS_TABLE}");
    let rebuilt = format!("temp.{CHECK_TABLE}");
    let mut differing = tx.prepare(&format!(
        "SELECT id FROM (SELECT {columns} FROM {live} EXCEPT SELECT {columns} FROM {rebuilt}) \
         UNION SELECT id FROM (SELECT {columns} FROM {rebuilt} EXCEPT SELECT {columns} FROM {live}) \
         ORDER BY id"
    ))?;
    let ids = differing.query_map([], |row| row.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
    let as_json = |table: &str, id: &str| -> Result<Option<serde_json::Value>, StoreError> {
        let row: Option<String> = tx
            .query_row(
                &format!(
                    "SELECT json_object('id', id, 'user', user, 'total', total, 'status', status, \
                     'created_at', created_at, 'updated_at', updated_at, 'cancel_reason', cancel_reason, \
                     'approved_at', approved_at, 'delivered_at', delivered_at, 'cancelled_at', cancelled_at) \
                     FROM {table} WHERE id = ?1"
                ),
                [id],
                |row| row.get(0),
            )
            .optional()?;
        Ok(row.and_then(|text| serde_json::from_str(&text).ok()))
    };
    let examples = ids
        .iter()
        .take(MAX_EXAMPLES)
        .map(|id| {
            Ok(Difference { id: id.clone(), live: as_json(&live, id)?, rebuilt: as_json(&rebuilt, id)? })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok((ids.len() as u64, examples))
}
