//! An import (`orders import`) into PostgreSQL: a log recorded elsewhere, loaded in one
//! transaction, its events inserted a few thousand per statement and its orders projected in
//! memory and written as they fill a chunk.

use jiff::Timestamp;
use orders_shared::{OrderId, Total};
use postgres::{Client, Transaction};

use super::projection::Rows;
use super::schema::ORDERS_TABLE;
use super::sql::{self, Statements};
use super::write::EventArrays;
use crate::store::{ImportTx, Position, RecordedEvent, StoreError, StoredEvent};

/// How many events go in one statement, and how many orders are kept in memory before they
/// are written.
const CHUNK: usize = 5_000;

pub(super) fn import(
    client: &mut Client,
    statements: &mut Statements,
    load: &mut dyn FnMut(&mut dyn ImportTx) -> Result<bool, StoreError>,
) -> Result<bool, StoreError> {
    let mut tx = client.transaction()?;
    sql::lock_writers(statements, &mut tx)?;
    let head = sql::head(statements, &mut tx)?;
    let mut state = Tx {
        tx: &mut tx,
        statements,
        head,
        events: EventArrays::default(),
        rows: Rows::new(ORDERS_TABLE),
        projected: 0,
    };
    let keep = load(&mut state)?;
    if keep {
        state.flush()?;
        let head = state.head;
        sql::set_checkpoint(statements, &mut tx, head)?;
        tx.commit()?;
    }
    // Otherwise dropping the transaction rolls it back.
    Ok(keep)
}

struct Tx<'a, 't> {
    tx: &'a mut Transaction<'t>,
    statements: &'a mut Statements,
    /// The newest position, inserted or buffered.
    head: Position,
    events: EventArrays,
    rows: Rows,
    projected: usize,
}

impl Tx<'_, '_> {
    fn flush(&mut self) -> Result<(), StoreError> {
        if self.events.len() > 0 {
            std::mem::take(&mut self.events).insert(self.tx, self.statements)?;
        }
        self.rows.flush(self.statements, self.tx)?;
        self.rows.clear();
        self.projected = 0;
        Ok(())
    }
}

impl ImportTx for Tx<'_, '_> {
    fn head(&mut self) -> Result<Position, StoreError> {
        Ok(self.head)
    }

    fn insert(&mut self, event: &StoredEvent) -> Result<(), StoreError> {
        self.events.push(
            event.position,
            event.event_id,
            event.stream,
            event.version,
            &event.event_type,
            event.schema_version,
            event.payload.clone(),
            &event.metadata,
            event.recorded_at,
        );
        self.head = self.head.max(event.position);
        if self.events.len() >= CHUNK {
            std::mem::take(&mut self.events).insert(self.tx, self.statements)?;
        }
        Ok(())
    }

    fn project(&mut self, event: &RecordedEvent) -> Result<(), StoreError> {
        self.rows.project(self.statements, self.tx, event)?;
        self.projected += 1;
        if self.projected >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn open_payment_request(
        &mut self,
        order: OrderId,
        amount: Total,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.statements.execute(
            self.tx,
            "INSERT INTO payment_requests (order_id, amount, requested_at) VALUES ($1, $2, $3)",
            &[&order.to_string(), &amount.get(), &at.as_millisecond()],
        )?;
        Ok(())
    }

    fn set_delivery_timer(&mut self, order: OrderId, due_at: Timestamp) -> Result<(), StoreError> {
        self.statements.execute(
            self.tx,
            "INSERT INTO delivery_timers (order_id, due_at) VALUES ($1, $2)",
            &[&order.to_string(), &due_at.as_millisecond()],
        )?;
        Ok(())
    }
}
