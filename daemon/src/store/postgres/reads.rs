//! The read side in PostgreSQL: a pool of connections, and the named queries on them.
//!
//! A query of one statement sees one snapshot by itself; one of several runs in a REPEATABLE
//! READ, READ ONLY transaction, so that they all see the same commit. A connection that the
//! database closed (a restart, a dead network) is not put back: the next read opens a new one.

use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use orders_shared::protocol::{ListRequest, OrderPage, OrderView};
use orders_shared::{OrderId, StreamId, StreamKind};
use postgres::types::ToSql;
use postgres::{GenericClient, IsolationLevel, Row};

use super::connect::Target;
use super::schema::ORDERS_TABLE;
use super::sql::{self, EVENT_COLUMNS, Link, Statements, VIEW_COLUMNS};
use crate::store::{
    Backlog, Counts, OpenSteps, Position, ReadSource, Reads, RecordedEvent, StepKind, StoreError,
    StoredDelivery, StoredEvent, StoredOrder, StoredPayment, StoredValue, Walked, Walking,
};

/// A pooled connection idle for longer is checked before it serves a read, within the timeout.
const IDLE_CHECK: Duration = Duration::from_secs(1);
const IDLE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How many orders the checker's walk reads at a time.
const WALK_CHUNK: i64 = 1_000;

/// A connection and its prepared statements.
pub(super) struct Conn {
    pub client: Link,
    pub statements: Statements,
    /// When it was last put back in the pool.
    since: Instant,
}

impl Conn {
    /// Whether a pooled connection may serve a read: one idle for a while is asked first (one
    /// round trip), since the database may have closed it meanwhile, which the client learns
    /// only when it next speaks.
    fn usable(&mut self) -> bool {
        if self.client.is_closed() {
            return false;
        }
        self.since.elapsed() < IDLE_CHECK || self.client.is_valid(IDLE_CHECK_TIMEOUT).is_ok()
    }
}

pub(super) struct Pool {
    target: Target,
    idle: Mutex<Vec<Conn>>,
}

impl Pool {
    pub(super) fn new(target: Target) -> Pool {
        Pool { target, idle: Mutex::new(Vec::new()) }
    }
}

impl Pool {
    fn open(&self) -> Result<Conn, StoreError> {
        let client = Link::new(self.target.connect("reads")?)?;
        Ok(Conn { client, statements: Statements::default(), since: Instant::now() })
    }
}

impl ReadSource for Pool {
    fn with_reads(&self, query: &mut dyn FnMut(&mut dyn Reads)) -> Result<(), StoreError> {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let conn = match idle {
            Some(mut conn) => {
                if conn.usable() {
                    conn
                } else {
                    self.open()?
                }
            }
            None => self.open()?,
        };
        let mut reads = PgReads { conn };
        query(&mut reads);
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if reads.conn.client.is_closed() {
            // The database closed it (a restart, a cut): the idle ones are most likely gone
            // too. Let them go rather than fail a read each.
            idle.clear();
        } else {
            reads.conn.since = Instant::now();
            idle.push(reads.conn);
        }
        Ok(())
    }

    fn close(&self) {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

struct PgReads {
    conn: Conn,
}

impl PgReads {
    /// Runs `query` in one REPEATABLE READ, READ ONLY transaction.
    fn snapshot<T>(
        &mut self,
        query: impl FnOnce(&mut postgres::Transaction<'_>, &mut Statements) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let Conn { client, statements, .. } = &mut self.conn;
        let mut tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let result = query(&mut tx, statements)?;
        tx.commit()?;
        Ok(result)
    }
}

/// One order's row.
fn get(
    statements: &mut Statements,
    client: &mut impl GenericClient,
    id: OrderId,
) -> Result<Option<OrderView>, StoreError> {
    let row = statements.query_opt(
        client,
        &format!("SELECT {VIEW_COLUMNS} FROM {ORDERS_TABLE} WHERE id = $1"),
        &[&id.to_string()],
    )?;
    row.as_ref().map(sql::view).transpose()
}

/// The three streams of an order, in log order.
fn order_streams(
    statements: &mut Statements,
    client: &mut impl GenericClient,
    id: OrderId,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let streams: Vec<String> = StreamKind::ALL.map(|kind| StreamId::new(kind, id).to_string()).to_vec();
    sql::read_streams(statements, client, &streams)
}

/// A parameter of a query built at run time.
type Value = Box<dyn ToSql + Sync>;

/// The `WHERE` clause of a request's filters and cursor, and its values; `None` when the cursor
/// names no order.
fn filter(
    statements: &mut Statements,
    client: &mut impl GenericClient,
    request: &ListRequest,
) -> Result<Option<(String, Vec<Value>)>, StoreError> {
    let mut conditions = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    if let Some(user) = &request.user {
        values.push(Box::new(user.as_str().to_owned()));
        conditions.push(format!("user_name = ${}", values.len()));
    }
    if let Some(status) = request.status {
        values.push(Box::new(status.as_str()));
        conditions.push(format!("status = ${}", values.len()));
    }
    if let Some(since) = request.since {
        values.push(Box::new(since.as_millisecond()));
        conditions.push(format!("created_at >= ${}", values.len()));
    }
    if let Some(before) = request.before {
        let Some(cursor) = get(statements, client, before)? else { return Ok(None) };
        values.push(Box::new(cursor.created_at.as_millisecond()));
        values.push(Box::new(cursor.id.to_string()));
        conditions.push(format!("(created_at, id) < (${}, ${})", values.len() - 1, values.len()));
    }
    let filter =
        if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
    Ok(Some((filter, values)))
}

fn params(values: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|value| value.as_ref()).collect()
}

/// Events after `after` and the head, in one statement: the head comes with every row, and
/// alone (with no event) when nothing follows.
fn events_after(
    statements: &mut Statements,
    client: &mut impl GenericClient,
    after: Position,
    limit: usize,
) -> Result<(Vec<StoredEvent>, Position), StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = statements.query(
        client,
        &format!(
            "SELECT e.*, h.head FROM (SELECT coalesce(max(position), 0) AS head FROM events) h \
             LEFT JOIN LATERAL (SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2) e \
             ON true"
        ),
        &[&after.get(), &limit],
    )?;
    let mut head = Position::START;
    let mut events = Vec::with_capacity(rows.len());
    for row in &rows {
        head = Position::new(row.try_get(11)?);
        if row.try_get::<_, Option<i64>>(0)?.is_some() {
            events.push(sql::stored_event(row)?);
        }
    }
    Ok((events, head))
}

impl Reads for PgReads {
    fn order(&mut self, id: OrderId) -> Result<Option<OrderView>, StoreError> {
        get(&mut self.conn.statements, &mut *self.conn.client, id)
    }

    fn list(&mut self, request: &ListRequest) -> Result<OrderPage, StoreError> {
        let limit = request.limit.unwrap_or(ListRequest::DEFAULT_LIMIT).clamp(1, ListRequest::MAX_LIMIT);
        self.snapshot(|tx, statements| {
            let Some((filter, mut values)) = filter(statements, tx, request)? else {
                return Ok(OrderPage { orders: Vec::new(), more: false });
            };
            values.push(Box::new(i64::from(limit) + 1));
            let sql = format!(
                "SELECT {VIEW_COLUMNS} FROM {ORDERS_TABLE} {filter} ORDER BY created_at DESC, id DESC LIMIT ${}",
                values.len()
            );
            let rows = statements.query(tx, &sql, &params(&values))?;
            let mut orders = rows.iter().map(sql::view).collect::<Result<Vec<_>, _>>()?;
            let more = orders.len() > limit as usize;
            orders.truncate(limit as usize);
            Ok(OrderPage { orders, more })
        })
    }

    fn count_orders(&mut self, request: &ListRequest) -> Result<u64, StoreError> {
        self.snapshot(|tx, statements| {
            let Some((filter, values)) = filter(statements, tx, request)? else { return Ok(0) };
            let row = statements.query_one(
                tx,
                &format!("SELECT count(*) FROM {ORDERS_TABLE} {filter}"),
                &params(&values),
            )?;
            Ok(sql::count(row.try_get(0)?))
        })
    }

    fn ids_ending_with(&mut self, suffix: &str, limit: usize) -> Result<Vec<OrderId>, StoreError> {
        // The last 8 digits of an id are the last 8 characters of its text (its last group has
        // 12), which the read model indexes.
        let Some(tail) = suffix.get(suffix.len().saturating_sub(8)..) else { return Ok(Vec::new()) };
        let pattern = format!("%{suffix}");
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.conn.statements.query(
            &mut *self.conn.client,
            &format!(
                "SELECT id FROM {ORDERS_TABLE} WHERE right(id, 8) = $1 AND replace(id, '-', '') LIKE $2 \
                 ORDER BY id LIMIT $3"
            ),
            &[&tail, &pattern, &limit],
        )?;
        rows.iter()
            .map(|row| {
                let id: &str = row.try_get(0)?;
                id.parse().map_err(|_| StoreError::Corrupt(format!("read model row {id}: bad id")))
            })
            .collect()
    }

    fn history(&mut self, id: OrderId) -> Result<Vec<RecordedEvent>, StoreError> {
        order_streams(&mut self.conn.statements, &mut *self.conn.client, id)
    }

    fn watched(&mut self, id: OrderId) -> Result<(Vec<RecordedEvent>, Option<OrderView>), StoreError> {
        self.snapshot(|tx, statements| Ok((order_streams(statements, tx, id)?, get(statements, tx, id)?)))
    }

    fn events(
        &mut self,
        after: Position,
        limit: usize,
    ) -> Result<(Vec<RecordedEvent>, Position), StoreError> {
        let (events, head) = events_after(&mut self.conn.statements, &mut *self.conn.client, after, limit)?;
        Ok((events.into_iter().map(StoredEvent::decode).collect::<Result<_, _>>()?, head))
    }

    fn stored_events(
        &mut self,
        after: Position,
        limit: usize,
    ) -> Result<(Vec<StoredEvent>, Position), StoreError> {
        events_after(&mut self.conn.statements, &mut *self.conn.client, after, limit)
    }

    fn counts(&mut self) -> Result<Counts, StoreError> {
        let row = self.conn.statements.query_one(
            &mut *self.conn.client,
            "SELECT (SELECT coalesce(max(position), 0) FROM events), (SELECT count(*) FROM orders), \
                    (SELECT count(*) FROM payment_requests), (SELECT count(*) FROM delivery_timers), \
                    (SELECT recorded_at FROM events ORDER BY position DESC LIMIT 1)",
            &[],
        )?;
        Ok(Counts {
            head: Position::new(row.try_get(0)?),
            orders: sql::count(row.try_get(1)?),
            pending_payments: sql::count(row.try_get(2)?),
            pending_deliveries: sql::count(row.try_get(3)?),
            newest: row
                .try_get::<_, Option<i64>>(4)?
                .map(|ms| sql::time(ms, || "the newest event".to_owned()))
                .transpose()?,
        })
    }

    fn backlog(&mut self) -> Result<Backlog, StoreError> {
        let row = self.conn.statements.query_one(
            &mut *self.conn.client,
            "SELECT (SELECT coalesce(max(position), 0) FROM events),
                    (SELECT position FROM checkpoints WHERE projection = 'orders'),
                    (SELECT count(*) FROM payment_requests),
                    (SELECT count(*) FROM delivery_timers),
                    (SELECT min(requested_at) FROM payment_requests),
                    (SELECT min(o.approved_at) FROM delivery_timers t JOIN orders o ON o.id = t.order_id),
                    (SELECT min(due_at) FROM delivery_timers)",
            &[],
        )?;
        let time = |index: usize| -> Result<Option<jiff::Timestamp>, StoreError> {
            Ok(row
                .try_get::<_, Option<i64>>(index)?
                .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok()))
        };
        Ok(Backlog {
            head: Position::new(row.try_get(0)?),
            checkpoint: Position::new(row.try_get(1)?),
            open_payments: sql::count(row.try_get(2)?),
            open_deliveries: sql::count(row.try_get(3)?),
            oldest_payment: time(4)?,
            oldest_delivery: time(5)?,
            earliest_due: time(6)?,
        })
    }

    fn step_stored(&mut self, kind: StepKind, key: &StoredValue) -> Result<bool, StoreError> {
        let table = match kind {
            StepKind::Payment => "payment_requests",
            StepKind::Delivery => "delivery_timers",
        };
        let row = self.conn.statements.query_one(
            &mut *self.conn.client,
            &format!("SELECT count(*) FROM {table} WHERE order_id = $1"),
            &[&key.to_string()],
        )?;
        Ok(row.try_get::<_, i64>(0)? > 0)
    }

    fn walk(&mut self, visit: &mut dyn FnMut(Walking)) -> Result<Walked, StoreError> {
        self.snapshot(|tx, statements| walk(tx, statements, visit))
    }

    fn backup(&mut self, _into: &Path) -> Result<(u64, u64), StoreError> {
        Err(StoreError::Unsupported(
            "a PostgreSQL store is backed up by the database's own tools (pg_dump, a replica); `orders export` \
             writes its log in a form any store imports"
                .to_owned(),
        ))
    }
}

/// The open saga steps, with whether each one's order is in the log.
/// The open steps; with `claimed_by`, the payment steps leased to that daemon only.
pub(super) fn open_steps(
    client: &mut impl GenericClient,
    claimed_by: Option<&str>,
) -> Result<OpenSteps, StoreError> {
    let mut steps = OpenSteps::default();
    for row in client.query(
        "SELECT order_id, amount, EXISTS (SELECT 1 FROM events \
             WHERE stream_id = 'order-' || t.order_id AND version = 1) \
         FROM payment_requests t WHERE $1::text IS NULL OR claimed_by = $1 ORDER BY requested_at, order_id",
        &[&claimed_by],
    )? {
        steps.payments.push(StoredPayment {
            order: StoredValue::text(row.try_get(0)?),
            amount: StoredValue::Integer(row.try_get(1)?),
            known: row.try_get(2)?,
        });
    }
    for row in client.query(&format!("{TIMERS} ORDER BY due_at, order_id"), &[])? {
        steps.deliveries.push(stored_delivery(&row)?);
    }
    Ok(steps)
}

/// The delivery timers as [`stored_delivery`] reads them; a query adds its own conditions.
pub(super) const TIMERS: &str = "SELECT order_id, due_at, EXISTS (SELECT 1 FROM events \
         WHERE stream_id = 'order-' || t.order_id AND version = 1), \
         (SELECT recorded_at FROM events WHERE stream_id = 'delivery-' || t.order_id \
             AND type = 'DeliveryScheduled' ORDER BY version DESC LIMIT 1) \
     FROM delivery_timers t";

/// A row of [`TIMERS`].
pub(super) fn stored_delivery(row: &postgres::Row) -> Result<StoredDelivery, StoreError> {
    Ok(StoredDelivery {
        order: StoredValue::text(row.try_get(0)?),
        due_at: StoredValue::Integer(row.try_get(1)?),
        known: row.try_get(2)?,
        scheduled_at: row
            .try_get::<_, Option<i64>>(3)?
            .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok()),
    })
}

/// The checker's walk, in one snapshot, a thousand orders at a time (four queries each).
/// PostgreSQL has no integrity check of its own to run first (pg_amcheck is the operator's).
fn walk(
    tx: &mut postgres::Transaction<'_>,
    statements: &mut Statements,
    visit: &mut dyn FnMut(Walking),
) -> Result<Walked, StoreError> {
    let mut walked = Walked::default();
    let mut after = 0_i64;
    loop {
        let firsts = tx.query(
            "SELECT position, stream_id FROM events WHERE version = 1 AND stream_id LIKE 'order-%' \
             AND position > $1 ORDER BY position LIMIT $2",
            &[&after, &WALK_CHUNK],
        )?;
        let Some(last) = firsts.last() else { break };
        after = last.try_get(0)?;
        walk_orders(tx, statements, &firsts, visit)?;
    }
    for row in tx.query(
        "SELECT stream_id FROM events e WHERE version = 1 AND stream_id NOT LIKE 'order-%' AND NOT EXISTS \
         (SELECT 1 FROM events o WHERE o.version = 1 \
             AND o.stream_id = 'order-' || substr(e.stream_id, strpos(e.stream_id, '-') + 1)) ORDER BY position",
        &[],
    )? {
        walked.orphan_streams.push(row.try_get(0)?);
    }
    walked.steps = open_steps(tx, None)?;
    for row in tx.query(
        "SELECT id FROM orders t WHERE NOT EXISTS \
         (SELECT 1 FROM events WHERE stream_id = 'order-' || t.id AND version = 1) ORDER BY id",
        &[],
    )? {
        walked.stray_rows.push(row.try_get(0)?);
    }
    let row = tx.query_one("SELECT coalesce(max(position), 0), count(*) FROM events", &[])?;
    walked.head = Position::new(row.try_get(0)?);
    walked.counted = sql::count(row.try_get(1)?);
    walked.checkpoint = sql::checkpoint(statements, tx)?;
    Ok(walked)
}

/// One chunk of orders (the first events of their order streams, in log order), each with its
/// three streams, its open-step rows and its read-model row.
fn walk_orders(
    tx: &mut postgres::Transaction<'_>,
    statements: &mut Statements,
    firsts: &[Row],
    visit: &mut dyn FnMut(Walking),
) -> Result<(), StoreError> {
    let mut ids = Vec::with_capacity(firsts.len());
    for row in firsts {
        let stream: String = row.try_get(1)?;
        match stream.parse::<StreamId>() {
            Ok(StreamId { order, .. }) => ids.push(Ok(order)),
            Err(_) => ids.push(Err(stream)),
        }
    }
    let orders: Vec<OrderId> = ids.iter().filter_map(|id| id.as_ref().ok().copied()).collect();
    let texts: Vec<String> = orders.iter().map(ToString::to_string).collect();
    let streams: Vec<String> = orders
        .iter()
        .flat_map(|id| StreamKind::ALL.map(|kind| StreamId::new(kind, *id).to_string()))
        .collect();
    let mut events: std::collections::HashMap<StreamId, Vec<RecordedEvent>> =
        std::collections::HashMap::new();
    let mut undecodable: std::collections::HashMap<OrderId, StoreError> = std::collections::HashMap::new();
    for row in tx.query(
        &format!("SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ANY($1) ORDER BY position"),
        &[&streams],
    )? {
        match sql::recorded_event(&row) {
            Ok(event) => events.entry(event.stream).or_default().push(event),
            Err(error) => {
                let stream: String = row.try_get(2)?;
                if let Ok(StreamId { order, .. }) = stream.parse::<StreamId>() {
                    undecodable.entry(order).or_insert(error);
                } else {
                    return Err(error);
                }
            }
        }
    }
    let mut payments = std::collections::HashMap::new();
    for row in
        tx.query("SELECT order_id, amount FROM payment_requests WHERE order_id = ANY($1)", &[&texts])?
    {
        payments.insert(row.try_get::<_, String>(0)?, StoredValue::Integer(row.try_get(1)?));
    }
    let mut timers = std::collections::HashMap::new();
    for row in tx.query("SELECT order_id, due_at FROM delivery_timers WHERE order_id = ANY($1)", &[&texts])? {
        timers.insert(row.try_get::<_, String>(0)?, StoredValue::Integer(row.try_get(1)?));
    }
    let mut views = std::collections::HashMap::new();
    for row in statements.query(
        tx,
        &format!("SELECT {VIEW_COLUMNS} FROM {ORDERS_TABLE} WHERE id = ANY($1)"),
        &[&texts],
    )? {
        let id: String = row.try_get(0)?;
        views.insert(id, sql::view(&row));
    }
    for id in ids {
        let id = match id {
            Ok(id) => id,
            Err(stream) => {
                visit(Walking::MalformedStream(stream));
                continue;
            }
        };
        if let Some(error) = undecodable.remove(&id) {
            return Err(error);
        }
        let text = id.to_string();
        let mut stream = |kind| events.remove(&StreamId::new(kind, id)).unwrap_or_default();
        visit(Walking::Order(Box::new(StoredOrder {
            id,
            order: stream(StreamKind::Order),
            payment: stream(StreamKind::Payment),
            delivery: stream(StreamKind::Delivery),
            payment_row: payments.remove(&text),
            timer_row: timers.remove(&text),
            view: views.remove(&text).map_or(Ok(None), |view| view.map(Some)),
        })));
    }
    Ok(())
}
