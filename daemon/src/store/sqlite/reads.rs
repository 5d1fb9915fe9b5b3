//! The read side in SQLite: a pool of read-only connections, and the named queries on them.
//!
//! Connections are opened on demand and kept once opened (each has its own page cache); how
//! many reads run at once is bounded by the daemon's [`Readers`](crate::readers::Readers), so
//! the pool never holds more than that. r2d2_sqlite and deadpool-sqlite lag behind the rusqlite
//! release used here, and this is all a pool needs to do. Under WAL a reader never waits for the
//! writer; a query that must see one commit runs in one read transaction (a snapshot).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use orders_shared::protocol::{ListRequest, OrderPage, OrderView};
use orders_shared::{OrderId, StreamId, StreamKind};
use rusqlite::{Connection, OptionalExtension};

use super::events::EventStore;
use super::open::open_reader;
use super::read_model;
use super::steps::{open_steps, sql_value, stored_value};
use crate::store::{
    Backlog, Counts, Position, ReadSource, Reads, RecordedEvent, StepKind, StoreError, StoredEvent,
    StoredOrder, StoredValue, Walked, Walking,
};

/// How many lines of SQLite's integrity check a walk keeps.
const INTEGRITY_LINES: usize = 20;

pub(super) struct Pool {
    database: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Pool {
    pub(super) fn new(database: PathBuf) -> Pool {
        Pool { database, idle: Mutex::new(Vec::new()) }
    }
}

impl ReadSource for Pool {
    fn with_reads(&self, query: &mut dyn FnMut(&mut dyn Reads)) -> Result<(), StoreError> {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_reader(&self.database)?,
        };
        let mut reads = SqliteReads { conn };
        query(&mut reads);
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).push(reads.conn);
        Ok(())
    }

    fn close(&self) {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

/// The named queries on one read-only connection.
struct SqliteReads {
    conn: Connection,
}

impl SqliteReads {
    /// The rows of one table.
    fn count(&self, table: &str) -> Result<u64, StoreError> {
        let n: i64 = self.conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| row.get(0))?;
        Ok(n.try_into().unwrap_or_default())
    }
}

/// The table of a kind of saga step.
fn step_table(kind: StepKind) -> &'static str {
    match kind {
        StepKind::Payment => "payment_requests",
        StepKind::Delivery => "delivery_timers",
    }
}

impl Reads for SqliteReads {
    fn order(&mut self, id: OrderId) -> Result<Option<OrderView>, StoreError> {
        read_model::get(&self.conn, id)
    }

    fn list(&mut self, request: &ListRequest) -> Result<OrderPage, StoreError> {
        read_model::list(&self.conn, request)
    }

    fn count_orders(&mut self, request: &ListRequest) -> Result<u64, StoreError> {
        read_model::count(&self.conn, request)
    }

    fn ids_ending_with(&mut self, suffix: &str, limit: usize) -> Result<Vec<OrderId>, StoreError> {
        super::tails::ids_ending_with(&self.conn, suffix, limit)
    }

    fn history(&mut self, id: OrderId) -> Result<Vec<RecordedEvent>, StoreError> {
        // One snapshot: the three streams as of the same commit.
        let snapshot = self.conn.unchecked_transaction()?;
        let streams = StreamKind::ALL.map(|kind| StreamId::new(kind, id));
        EventStore::new(&snapshot).read_streams(&streams)
    }

    fn watched(&mut self, id: OrderId) -> Result<(Vec<RecordedEvent>, Option<OrderView>), StoreError> {
        // One snapshot: three streams and the row, as of the same commit.
        let snapshot = self.conn.unchecked_transaction()?;
        let streams = StreamKind::ALL.map(|kind| StreamId::new(kind, id));
        let events = EventStore::new(&snapshot).read_streams(&streams)?;
        Ok((events, read_model::get(&snapshot, id)?))
    }

    fn events(
        &mut self,
        after: Position,
        limit: usize,
    ) -> Result<(Vec<RecordedEvent>, Position), StoreError> {
        // One snapshot for the events and the head.
        let snapshot = self.conn.unchecked_transaction()?;
        let store = EventStore::new(&snapshot);
        let head = store.head()?;
        Ok((store.read_all(after, limit)?, head))
    }

    fn stored_events(
        &mut self,
        after: Position,
        limit: usize,
    ) -> Result<(Vec<StoredEvent>, Position), StoreError> {
        let snapshot = self.conn.unchecked_transaction()?;
        let store = EventStore::new(&snapshot);
        let head = store.head()?;
        Ok((store.read_stored(after, limit)?, head))
    }

    fn counts(&mut self) -> Result<Counts, StoreError> {
        let snapshot = self.conn.unchecked_transaction()?;
        let store = EventStore::new(&snapshot);
        let counts = Counts {
            head: store.head()?,
            orders: self.count("orders")?,
            pending_payments: self.count("payment_requests")?,
            pending_deliveries: self.count("delivery_timers")?,
            newest: store.newest_recorded_at()?,
        };
        drop(snapshot);
        Ok(counts)
    }

    fn backlog(&mut self) -> Result<Backlog, StoreError> {
        let snapshot = self.conn.unchecked_transaction()?;
        let head = EventStore::new(&snapshot).head()?;
        let checkpoint = read_model::checkpoint(&snapshot)?;
        // The open steps are few (the ones in flight): these scan their small tables, and the
        // orders table only by id, for the open deliveries.
        type Row = (i64, i64, Option<i64>, Option<i64>, Option<i64>);
        let (payments, deliveries, oldest_payment, oldest_delivery, earliest_due): Row = snapshot
            .prepare_cached(
                "SELECT (SELECT count(*) FROM payment_requests),
                        (SELECT count(*) FROM delivery_timers),
                        (SELECT min(requested_at) FROM payment_requests),
                        (SELECT min(o.approved_at) FROM delivery_timers t JOIN orders o ON o.id = t.order_id),
                        (SELECT min(due_at) FROM delivery_timers)",
            )?
            .query_row([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?)))?;
        drop(snapshot);
        let time = |ms: Option<i64>| ms.and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok());
        Ok(Backlog {
            head,
            checkpoint,
            open_payments: payments.try_into().unwrap_or_default(),
            open_deliveries: deliveries.try_into().unwrap_or_default(),
            oldest_payment: time(oldest_payment),
            oldest_delivery: time(oldest_delivery),
            earliest_due: time(earliest_due),
        })
    }

    fn step_stored(&mut self, kind: StepKind, key: &StoredValue) -> Result<bool, StoreError> {
        let sql = format!("SELECT count(*) FROM {} WHERE order_id = ?1", step_table(kind));
        let stored: i64 = self.conn.prepare_cached(&sql)?.query_row([sql_value(key)], |row| row.get(0))?;
        Ok(stored > 0)
    }

    fn walk(&mut self, visit: &mut dyn FnMut(Walking)) -> Result<Walked, StoreError> {
        walk(&self.conn, visit)
    }

    /// `VACUUM INTO`, not the online backup API: it copies in one read transaction, a snapshot
    /// that writers never disturb (WAL), while the backup API restarts its copy whenever another
    /// connection writes, which under steady writes may never end. The copy is compact, a single
    /// file in rollback-journal mode (no `-wal` to carry along), and counted where it lands.
    fn backup(&mut self, into: &Path) -> Result<(u64, u64), StoreError> {
        let target = into.to_str().ok_or_else(|| {
            StoreError::Failed(format!("{} is not a UTF-8 path, which SQLite needs", into.display()), None)
        })?;
        self.conn.execute("VACUUM INTO ?1", [target])?;
        let copy = open_reader(into)?;
        let count = |sql: &str| -> Result<u64, StoreError> {
            let n: i64 = copy.query_row(sql, [], |row| row.get(0))?;
            Ok(n.try_into().unwrap_or_default())
        };
        Ok((count("SELECT count(*) FROM events")?, count("SELECT count(*) FROM orders")?))
    }
}

/// The checker's walk, in one read transaction (a consistent snapshot), one order at a time so
/// that its memory does not grow with the log. SQLite's `PRAGMA integrity_check` comes first
/// (every page, every index; `quick_check` skips the indexes): walking a damaged file would only
/// fail somewhere in the middle.
pub(super) fn walk(conn: &Connection, visit: &mut dyn FnMut(Walking)) -> Result<Walked, StoreError> {
    let tx = conn.unchecked_transaction()?;
    let mut walked = Walked::default();
    let mut integrity = tx.prepare(&format!("PRAGMA integrity_check({INTEGRITY_LINES})"))?;
    for line in integrity.query_map([], |row| row.get::<_, String>(0))? {
        let line = line?;
        if line != "ok" {
            walked.damage.push(line);
        }
    }
    drop(integrity);
    if !walked.damage.is_empty() {
        return Ok(walked);
    }
    walk_orders(&tx, visit)?;

    // Streams of the other contexts without an order.
    let mut orphans = tx.prepare(
        "SELECT stream_id FROM events e WHERE version = 1 AND stream_id NOT LIKE 'order-%' AND NOT EXISTS \
         (SELECT 1 FROM events o WHERE o.version = 1 AND o.stream_id = 'order-' || substr(e.stream_id, instr(e.stream_id, '-') + 1))",
    )?;
    for stream in orphans.query_map([], |row| row.get::<_, String>(0))? {
        walked.orphan_streams.push(stream?);
    }
    drop(orphans);

    walked.steps = open_steps(&tx)?;

    // Read-model rows must belong to an order.
    let mut stray = tx.prepare(
        "SELECT id FROM orders t WHERE NOT EXISTS \
         (SELECT 1 FROM events WHERE stream_id = 'order-' || t.id AND version = 1)",
    )?;
    for order in stray.query_map([], |row| row.get::<_, String>(0))? {
        walked.stray_rows.push(order?);
    }
    drop(stray);

    walked.head = EventStore::new(&tx).head()?;
    let counted: i64 = tx.query_row("SELECT count(*) FROM events", [], |row| row.get(0))?;
    walked.counted = counted.try_into().unwrap_or_default();
    walked.checkpoint = read_model::checkpoint(&tx)?;
    Ok(walked)
}

/// Every order stream, one order at a time, with its payment and delivery streams, its open-step
/// rows and its read-model row.
fn walk_orders(tx: &Connection, visit: &mut dyn FnMut(Walking)) -> Result<(), StoreError> {
    let store = EventStore::new(tx);
    let mut orders =
        tx.prepare("SELECT stream_id FROM events WHERE version = 1 AND stream_id LIKE 'order-%'")?;
    let ids = orders.query_map([], |row| row.get::<_, String>(0))?;
    for stream in ids {
        let stream = stream?;
        let Ok(StreamId { order: id, .. }) = stream.parse::<StreamId>() else {
            visit(Walking::MalformedStream(stream));
            continue;
        };
        let [order, payment, delivery] =
            StreamKind::ALL.map(|kind| store.read_stream(StreamId::new(kind, id)));
        let row = |sql: &str| -> Result<Option<StoredValue>, StoreError> {
            let value = tx
                .prepare_cached(sql)?
                .query_row([id.to_string()], |row| row.get_ref(0).map(stored_value))
                .optional()?;
            Ok(value)
        };
        visit(Walking::Order(Box::new(StoredOrder {
            id,
            order: order?,
            payment: payment?,
            delivery: delivery?,
            payment_row: row("SELECT amount FROM payment_requests WHERE order_id = ?1")?,
            timer_row: row("SELECT due_at FROM delivery_timers WHERE order_id = ?1")?,
            view: read_model::get(tx, id),
        })));
    }

    Ok(())
}
