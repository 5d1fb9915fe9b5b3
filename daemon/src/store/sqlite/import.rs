//! An import (`orders import`, issue 15): a log recorded elsewhere, loaded in one transaction.

use jiff::Timestamp;
use orders_shared::{OrderId, Total};
use rusqlite::{Connection, TransactionBehavior};

use super::events::EventStore;
use super::steps;
use crate::store::{ImportTx, Position, StoreError, StoredEvent};

pub(super) fn import(
    conn: &mut Connection,
    load: &mut dyn FnMut(&mut dyn ImportTx) -> Result<bool, StoreError>,
) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let keep = load(&mut Tx { conn: &tx })?;
    if keep {
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
