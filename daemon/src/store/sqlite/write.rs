//! A batch of units of work in one SQLite transaction, committed once (group commit).
//!
//! The units share the transaction without savepoints at first (see [`Isolation`]): a refused
//! unit wrote nothing, and a batch in which a unit failed after writing is run again from the
//! start with a savepoint per unit, so that the failed one is rolled back alone.

use jiff::Timestamp;
use orders_shared::protocol::OrderView;
use orders_shared::{DomainEvent, OrderId, StreamId, Total};
use rusqlite::{Connection, TransactionBehavior};

use super::events::EventStore;
use super::{read_model, steps};
use crate::store::{Batch, Metadata, Outcome, RecordedEvent, StoreError, Version, WriteTx};

/// How often a unit is run after an optimistic-concurrency conflict, in all.
const MAX_ATTEMPTS: usize = 3;

/// How the units of a batch are kept apart inside its transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isolation {
    /// No savepoints (they make SQLite copy every page a unit touches). A unit refused before
    /// writing anything needs no undo; one that fails after writing sends the whole batch back
    /// to be run again with savepoints.
    Shared,
    /// A savepoint per unit, so that a failed one is rolled back alone.
    Savepoints,
}

pub(super) fn write(conn: &mut Connection, batch: &mut dyn Batch) -> Result<(), StoreError> {
    if run(conn, batch, Isolation::Shared)? {
        return Ok(());
    }
    batch.restart();
    let done = run(conn, batch, Isolation::Savepoints)?;
    debug_assert!(done, "with savepoints every unit is isolated");
    Ok(())
}

/// Runs the batch in one transaction and commits it; `false` (nothing committed) when a unit
/// failed after writing without savepoints.
fn run(conn: &mut Connection, batch: &mut dyn Batch, isolation: Isolation) -> Result<bool, StoreError> {
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for index in 0..batch.units() {
        let failed = match isolation {
            Isolation::Shared => match batch.run(index, &mut Tx { conn: &tx }) {
                Outcome::Done => None,
                Outcome::Refused { why } => Some(why),
                Outcome::Failed { why, .. } => {
                    tracing::debug!(why, "a command failed after writing; running its batch with savepoints");
                    return Ok(false); // dropping the transaction rolls it back
                }
            },
            Isolation::Savepoints => run_isolated(&mut tx, batch, index),
        };
        // After SQLITE_FULL or an I/O error SQLite may have rolled the whole transaction back by
        // itself and returned to autocommit: carrying on would commit the next units one by
        // one while their batch is answered "nothing was stored". Refuse the whole batch.
        if let Some(why) = failed
            && tx.is_autocommit()
        {
            return Err(StoreError::RolledBack(why));
        }
    }
    if let Some(last) = batch.last_position() {
        read_model::set_checkpoint(&tx, last)?;
    }
    let committing = std::time::Instant::now();
    tx.commit()?;
    batch.committed(committing.elapsed());
    Ok(true)
}

/// Runs one unit in its own savepoint, again after a conflict; what it failed with, if it did.
fn run_isolated(tx: &mut rusqlite::Transaction<'_>, batch: &mut dyn Batch, index: usize) -> Option<String> {
    for attempt in 1..=MAX_ATTEMPTS {
        let savepoint = match tx.savepoint() {
            Ok(savepoint) => savepoint,
            Err(error) => {
                let why = error.to_string();
                batch.fail(index, error.into());
                return Some(why);
            }
        };
        match batch.run(index, &mut Tx { conn: &savepoint }) {
            Outcome::Done => {
                return match savepoint.commit() {
                    Ok(()) => None,
                    Err(error) => {
                        let why = error.to_string();
                        batch.fail(index, error.into());
                        Some(why)
                    }
                };
            }
            Outcome::Failed { why, conflict: true } if attempt < MAX_ATTEMPTS => {
                tracing::debug!(why, attempt, "retrying after a conflict");
            }
            Outcome::Refused { why } | Outcome::Failed { why, .. } => return Some(why),
        }
        // Dropping the savepoint rolls it back.
    }
    unreachable!("the last attempt returns")
}

/// The transaction (or a savepoint of it) as one unit of work sees it.
struct Tx<'c> {
    conn: &'c Connection,
}

impl WriteTx for Tx<'_> {
    fn read_stream(&mut self, stream: StreamId) -> Result<Vec<RecordedEvent>, StoreError> {
        EventStore::new(self.conn).read_stream(stream)
    }

    fn find_by_idempotency_key(&mut self, key: &str) -> Result<Option<RecordedEvent>, StoreError> {
        EventStore::new(self.conn).find_by_idempotency_key(key)
    }

    fn append(
        &mut self,
        stream: StreamId,
        expected: Version,
        events: &[DomainEvent],
        metadata: &Metadata,
        now: Timestamp,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        EventStore::new(self.conn).append(stream, expected, events, metadata, now)
    }

    fn project(&mut self, event: &RecordedEvent) -> Result<(), StoreError> {
        read_model::apply(self.conn, event)
    }

    fn order(&mut self, id: OrderId) -> Result<Option<OrderView>, StoreError> {
        read_model::get(self.conn, id)
    }

    fn open_payment_request(
        &mut self,
        order: OrderId,
        amount: Total,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        steps::open_payment_request(self.conn, order, amount, at)
    }

    fn close_payment_request(&mut self, order: OrderId) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM payment_requests WHERE order_id = ?1")?
            .execute([order.to_string()])?;
        Ok(())
    }

    fn set_delivery_timer(&mut self, order: OrderId, due_at: Timestamp) -> Result<(), StoreError> {
        steps::set_delivery_timer(self.conn, order, due_at)
    }

    fn clear_delivery_timer(&mut self, order: OrderId) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM delivery_timers WHERE order_id = ?1")?
            .execute([order.to_string()])?;
        Ok(())
    }
}
