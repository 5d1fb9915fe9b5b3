//! An import (`orders import`, issue 15): a log recorded elsewhere, loaded in one transaction.

use jiff::Timestamp;
use orders_shared::{OrderId, Total};
use rusqlite::{Connection, TransactionBehavior};

use super::events::EventStore;
use super::{read_model, steps};
use crate::store::{ImportTx, Position, RecordedEvent, StoreError, StoredEvent};

/// The page cache of an import's transaction (negative: KiB, as SQLite takes it). The whole log
/// goes in one transaction: with the default 2 MiB, the indexes' pages were read back from the
/// kernel again and again, and dirty pages spilled to the WAL before the commit. 16 MiB took a
/// million events in 8.8 s instead of 10.1 s (64 MiB: 8.4 s, for 50 MiB more of memory).
const IMPORT_CACHE_KIB: i64 = -16 * 1024;

pub(super) fn import(
    conn: &mut Connection,
    load: &mut dyn FnMut(&mut dyn ImportTx) -> Result<bool, StoreError>,
) -> Result<bool, StoreError> {
    let cache: i64 = conn.pragma_query_value(None, "cache_size", |row| row.get(0))?;
    conn.pragma_update(None, "cache_size", IMPORT_CACHE_KIB)?;
    let imported = run(conn, load);
    conn.pragma_update(None, "cache_size", cache)?;
    imported
}

fn run(
    conn: &mut Connection,
    load: &mut dyn FnMut(&mut dyn ImportTx) -> Result<bool, StoreError>,
) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let keep = load(&mut Tx { conn: &tx })?;
    if keep {
        read_model::set_checkpoint(&tx, EventStore::new(&tx).head()?)?;
        tx.commit()?;
    }
    // Otherwise dropping the transaction rolls it back.
    Ok(keep)
}

struct Tx<'c> {
    conn: &'c Connection,
}

impl ImportTx for Tx<'_> {
    fn head(&mut self) -> Result<Position, StoreError> {
        EventStore::new(self.conn).head()
    }

    fn insert(&mut self, event: &StoredEvent) -> Result<(), StoreError> {
        EventStore::new(self.conn).insert_stored(event)
    }

    fn project(&mut self, event: &RecordedEvent) -> Result<(), StoreError> {
        read_model::apply(self.conn, event)
    }

    fn open_payment_request(
        &mut self,
        order: OrderId,
        amount: Total,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        steps::open_payment_request(self.conn, order, amount, at)
    }

    fn set_delivery_timer(&mut self, order: OrderId, due_at: Timestamp) -> Result<(), StoreError> {
        steps::set_delivery_timer(self.conn, order, due_at)
    }
}
