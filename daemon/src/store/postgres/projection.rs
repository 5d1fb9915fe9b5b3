//! The read model in PostgreSQL, projected in memory and written in one statement.
//!
//! SQLite applies each event with its own statement, cheap in-process; over a network each
//! statement is a round trip. So a batch (a writer's batch, a catch-up or replay chunk, an
//! import) loads the rows it will touch in one query, applies its events to them in memory
//! ([`apply_order_event`](crate::store::apply_order_event), the same rule as the other stores),
//! and upserts every changed row at the end in one statement.

use std::collections::{HashMap, HashSet};

use orders_shared::protocol::OrderView;
use orders_shared::{DomainEvent, OrderEvent, OrderId, StreamKind};
use postgres::GenericClient;

use super::schema::RowArrays;
use super::sql::{self, EVENT_COLUMNS, Statements, VIEW_COLUMNS};
use crate::store::{Position, RecordedEvent, StoreError, apply_order_event};

/// Rows of one read-model table as a batch sees them: loaded, or changed by it.
pub struct Rows {
    table: String,
    rows: HashMap<OrderId, Option<OrderView>>,
    changed: HashSet<OrderId>,
}

impl Rows {
    pub fn new(table: &str) -> Rows {
        Rows { table: table.to_owned(), rows: HashMap::new(), changed: HashSet::new() }
    }

    /// Loads the rows of `ids` not known yet, in one query.
    pub fn load(
        &mut self,
        statements: &mut Statements,
        client: &mut impl GenericClient,
        ids: impl IntoIterator<Item = OrderId>,
    ) -> Result<(), StoreError> {
        let wanted: Vec<OrderId> = ids
            .into_iter()
            .filter(|id| !self.rows.contains_key(id))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let texts: Vec<String> = wanted.iter().map(ToString::to_string).collect();
        let rows = statements.query(
            client,
            &format!("SELECT {VIEW_COLUMNS} FROM {} WHERE id = ANY($1)", self.table),
            &[&texts],
        )?;
        for id in wanted {
            self.rows.insert(id, None);
        }
        for row in &rows {
            let view = sql::view(row)?;
            self.rows.insert(view.id, Some(view));
        }
        Ok(())
    }

    /// One order's row as of this batch.
    pub fn get(
        &mut self,
        statements: &mut Statements,
        client: &mut impl GenericClient,
        id: OrderId,
    ) -> Result<Option<OrderView>, StoreError> {
        self.load(statements, client, [id])?;
        Ok(self.rows.get(&id).cloned().flatten())
    }

    /// The row as this batch knows it, without asking the database (`None`: not loaded).
    pub fn known(&self, id: OrderId) -> Option<&Option<OrderView>> {
        self.rows.get(&id)
    }

    /// Puts a row back as it was (a unit of work undone).
    pub fn restore(&mut self, id: OrderId, row: Option<Option<OrderView>>, changed: bool) {
        match row {
            Some(row) => self.rows.insert(id, row),
            None => self.rows.remove(&id),
        };
        if !changed {
            self.changed.remove(&id);
        }
    }

    pub fn was_changed(&self, id: OrderId) -> bool {
        self.changed.contains(&id)
    }

    /// Applies one order event to its row (loaded first if need be).
    pub fn apply(
        &mut self,
        statements: &mut Statements,
        client: &mut impl GenericClient,
        order: OrderId,
        event: &OrderEvent,
        at: jiff::Timestamp,
    ) -> Result<(), StoreError> {
        if !matches!(event, OrderEvent::Placed { .. }) {
            // Its row, unless already known (a placed order is new: its id was just minted, or
            // the log says so; the upsert's key would refuse a second one).
            self.load(statements, client, [order])?;
        }
        self.apply_known(order, event, at)
    }

    /// Applies one order event to its row as known here: absent when not loaded.
    fn apply_known(
        &mut self,
        order: OrderId,
        event: &OrderEvent,
        at: jiff::Timestamp,
    ) -> Result<(), StoreError> {
        apply_order_event(self.rows.entry(order).or_default(), order, event, at)?;
        self.changed.insert(order);
        Ok(())
    }

    /// Applies a recorded event (the order events; the others show through the order's).
    pub fn project(
        &mut self,
        statements: &mut Statements,
        client: &mut impl GenericClient,
        recorded: &RecordedEvent,
    ) -> Result<(), StoreError> {
        match &recorded.event {
            DomainEvent::Order(event) => {
                self.apply(statements, client, recorded.stream.order, event, recorded.recorded_at)
            }
            DomainEvent::Payment(_) | DomainEvent::Delivery(_) => Ok(()),
        }
    }

    /// Writes every changed row, in one statement, and forgets what it wrote.
    pub fn flush(
        &mut self,
        statements: &mut Statements,
        client: &mut impl GenericClient,
    ) -> Result<(), StoreError> {
        self.take_changed().upsert(statements, client, &self.table)
    }

    /// Every changed row, to be written by the caller; they count as unchanged from now on.
    pub fn take_changed(&mut self) -> RowArrays {
        let mut arrays = RowArrays::default();
        for id in self.changed.drain() {
            if let Some(Some(view)) = self.rows.get(&id) {
                arrays.push(view);
            }
        }
        arrays
    }

    /// Forgets every row (a chunk written; the next loads afresh).
    pub fn clear(&mut self) {
        self.rows.clear();
        self.changed.clear();
    }
}

/// Applies up to `limit` events of the log after `after` to the rows of `rows`' table and
/// writes them: the fast path of catch-up and replay. How many events it read and the last
/// position.
pub fn apply_log(
    statements: &mut Statements,
    client: &mut impl GenericClient,
    rows: &mut Rows,
    after: Position,
    limit: usize,
) -> Result<(usize, Position), StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let found = statements.query(
        client,
        &format!("SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2"),
        &[&after.get(), &limit],
    )?;
    let mut events = Vec::with_capacity(found.len());
    let mut last = after;
    for row in &found {
        let stored = sql::stored_event(row)?;
        last = stored.position;
        if stored.stream.kind != StreamKind::Order {
            continue;
        }
        let position = stored.position;
        let recorded = stored.decode()?;
        if let DomainEvent::Order(event) = recorded.event {
            events.push((position, recorded.stream.order, event, recorded.recorded_at));
        }
    }
    // The rows of orders placed before this chunk, in one query.
    let placed_here: HashSet<OrderId> = events
        .iter()
        .filter(|(.., event, _)| matches!(event, OrderEvent::Placed { .. }))
        .map(|(_, order, ..)| *order)
        .collect();
    let earlier: Vec<OrderId> =
        events.iter().map(|(_, order, ..)| *order).filter(|order| !placed_here.contains(order)).collect();
    rows.load(statements, client, earlier)?;
    for (_, order, event, at) in &events {
        rows.apply_known(*order, event, *at)?;
    }
    rows.flush(statements, client)?;
    rows.clear();
    Ok((found.len(), last))
}

/// Applies the next chunk past the checkpoint and moves it, in one transaction.
pub fn catch_up_chunk(
    statements: &mut Statements,
    client: &mut postgres::Client,
    chunk: usize,
) -> Result<Option<u64>, StoreError> {
    let mut tx = client.transaction()?;
    sql::lock_writers(statements, &mut tx)?;
    let checkpoint = sql::checkpoint(statements, &mut tx)?;
    let mut rows = Rows::new(super::schema::ORDERS_TABLE);
    let (read, last) = apply_log(statements, &mut tx, &mut rows, checkpoint, chunk)?;
    if read == 0 {
        return Ok(None);
    }
    sql::set_checkpoint(statements, &mut tx, last)?;
    tx.commit()?;
    Ok(Some(read as u64))
}
