//! The raw PostgreSQL ceilings (issue 19): a plain `postgres` client writing the rows the daemon
//! writes, into the daemon's own schema (a fresh database migrated by the daemon's store), with
//! the daemon's statement shape — each table's rows of a batch in one `INSERT ... SELECT FROM
//! unnest(...)`, one transaction per batch — and none of the daemon: no socket, no domain, no
//! reads before writing (it is the database's only writer, so it numbers positions itself; the
//! writers of [`creates_by`] under the global writer lock read the head under it, issue 20).

use std::time::{Duration, Instant};

use orders_daemon::store::Store;
use orders_daemon::store::postgres::{PgStore, Target};
use postgres::{Client, NoTls, Statement, Transaction};

/// Brings a fresh database to the daemon's schema through the daemon's own store.
pub fn migrate(url: &str) -> anyhow::Result<()> {
    let target = Target::parse(url).map_err(anyhow::Error::msg)?;
    let mut store = PgStore::open(&target)?;
    store.migrate()?;
    Ok(())
}

/// Creates as the daemon records them — two events, a read-model row, an open payment request,
/// the checkpoint — `batch` per transaction, for `count` creates, into `url`'s database, which
/// [`migrate`] has made. Returns the orders' ids and the time it took.
pub fn creates(url: &str, batch: usize, count: usize) -> anyhow::Result<(Vec<String>, Duration)> {
    let mut writer = Writer::connect(url)?;
    let started = Instant::now();
    let ids = writer.creates(batch, count)?;
    Ok((ids, started.elapsed()))
}

/// The key of the global writer lock the raw writers of [`creates_by`] take (issue 20): the
/// database is fresh and theirs alone, so any key does.
const WRITER_LOCK: i64 = 20;

/// How the raw writers of [`creates_by`] share the log (issue 20).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sharing {
    /// Nothing serializes them: each numbers positions in a range of its own, as [`creates`]
    /// does alone.
    Unlocked,
    /// Every transaction first takes the global writer lock (`pg_advisory_xact_lock`), then reads
    /// the head under it, so that positions stay dense: what each daemon on a shared database
    /// does.
    Locked,
}

/// The creates of [`creates`] from `writers` connections at once, each `batch` creates a
/// transaction, `count` in all, shared as `sharing` says. Returns the creates and the time they
/// took.
pub fn creates_by(
    url: &str,
    writers: usize,
    batch: usize,
    count: usize,
    sharing: Sharing,
) -> anyhow::Result<(usize, Duration)> {
    let mut connected = Vec::with_capacity(writers);
    for n in 0..writers {
        let mut writer = Writer::connect(url)?;
        match sharing {
            Sharing::Locked => writer.locked = true,
            // Positions far apart and a checkpoint of its own: unlocked writers never meet on a
            // row, or nothing would serialize them but the lock they do not take.
            Sharing::Unlocked if n > 0 => {
                writer.next += n as i64 * 1_000_000_000_000;
                writer.projection = format!("orders-writer-{n}");
                writer.client.execute(
                    "INSERT INTO checkpoints (projection, position) VALUES ($1, 0)",
                    &[&writer.projection],
                )?;
            }
            Sharing::Unlocked => {}
        }
        connected.push(writer);
    }
    let share = count.div_ceil(writers);
    let started = Instant::now();
    let created = std::thread::scope(|scope| {
        let running: Vec<_> = connected
            .iter_mut()
            .map(|writer| scope.spawn(move || writer.creates(batch, share).map(|ids| ids.len())))
            .collect();
        running
            .into_iter()
            .map(|writer| writer.join().map_err(|_| anyhow::anyhow!("a raw PostgreSQL writer panicked"))?)
            .sum::<anyhow::Result<usize>>()
    })?;
    Ok((created, started.elapsed()))
}

/// Whole life cycles as the daemon records them: the creates above, then for each order its
/// payment decision and delivery, each step `batch` orders per transaction (the daemon's group
/// commit). Returns the orders settled and the time it took.
pub fn settled(url: &str, batch: usize, count: usize) -> anyhow::Result<(usize, Duration)> {
    let mut writer = Writer::connect(url)?;
    let started = Instant::now();
    let ids = writer.creates(batch, count)?;
    for chunk in ids.chunks(batch) {
        writer.payments(chunk)?;
    }
    for chunk in ids.chunks(batch) {
        writer.deliveries(chunk)?;
    }
    Ok((ids.len(), started.elapsed()))
}

/// One connection with its statements prepared, and the next position of the log.
struct Writer {
    client: Client,
    statements: Statements,
    next: i64,
    /// Whether each transaction of creates takes the global writer lock and reads the head
    /// first ([`Sharing::Locked`]).
    locked: bool,
    /// The checkpoint row it moves: the read model's (`orders`), or with unlocked writers, a row
    /// of each one's own, so that they meet on no row.
    projection: String,
}

/// The statements, each prepared once (the daemon's store keeps its own the same way).
struct Statements {
    events: Statement,
    orders: Statement,
    requests: Statement,
    requests_closed: Statement,
    approved: Statement,
    timers: Statement,
    delivered: Statement,
    timers_cleared: Statement,
    checkpoint: Statement,
    lock: Statement,
    head: Statement,
}

impl Writer {
    fn connect(url: &str) -> anyhow::Result<Writer> {
        let mut client = Client::connect(url, NoTls)?;
        let prepare = |client: &mut Client, sql: &str| client.prepare(sql);
        let statements = Statements {
            events: prepare(
                &mut client,
                "INSERT INTO events (position, event_id, stream_id, version, type, schema_version, payload, \
                 correlation_id, causation_id, idempotency_key, recorded_at) \
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], \
                 $6::integer[], $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[])",
            )?,
            orders: prepare(
                &mut client,
                "INSERT INTO orders (id, user_name, total, status, created_at, updated_at) \
                 SELECT id, user_name, total, 'pending', at, at \
                 FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS o(id, user_name, total, at)",
            )?,
            requests: prepare(
                &mut client,
                "INSERT INTO payment_requests (order_id, amount, requested_at) \
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])",
            )?,
            requests_closed: prepare(&mut client, "DELETE FROM payment_requests WHERE order_id = ANY($1)")?,
            approved: prepare(
                &mut client,
                "UPDATE orders SET status = 'approved', approved_at = a.at, updated_at = a.at \
                 FROM unnest($1::text[], $2::bigint[]) AS a(id, at) WHERE orders.id = a.id",
            )?,
            timers: prepare(
                &mut client,
                "INSERT INTO delivery_timers (order_id, due_at) SELECT * FROM unnest($1::text[], $2::bigint[])",
            )?,
            delivered: prepare(
                &mut client,
                "UPDATE orders SET status = 'delivered', delivered_at = d.at, updated_at = d.at \
                 FROM unnest($1::text[], $2::bigint[]) AS d(id, at) WHERE orders.id = d.id",
            )?,
            timers_cleared: prepare(&mut client, "DELETE FROM delivery_timers WHERE order_id = ANY($1)")?,
            checkpoint: prepare(&mut client, "UPDATE checkpoints SET position = $1 WHERE projection = $2")?,
            lock: prepare(&mut client, "SELECT pg_advisory_xact_lock($1)")?,
            head: prepare(&mut client, "SELECT coalesce(max(position), 0) + 1 FROM events")?,
        };
        let next = client.query_one(&statements.head, &[])?.get(0);
        Ok(Writer { client, statements, next, locked: false, projection: "orders".to_owned() })
    }

    fn creates(&mut self, batch: usize, count: usize) -> anyhow::Result<Vec<String>> {
        let mut ids = Vec::with_capacity(count);
        let mut n = 0;
        while n < count {
            let size = batch.min(count - n);
            let statements = &self.statements;
            let mut tx = self.client.transaction()?;
            if self.locked {
                // Two statements: the head's must be read under the lock, in a snapshot taken
                // after the lock was granted (READ COMMITTED takes one per statement).
                tx.execute(&statements.lock, &[&WRITER_LOCK])?;
                self.next = tx.query_one(&statements.head, &[])?.get(0);
            }
            let mut events = Events::default();
            let mut orders = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for _ in 0..size {
                let (id, at, user) = (uuid(), now_ms(), format!("user{}", n % 1000));
                let placed = format!(r#"{{"user":"{user}","total":2}}"#);
                events.push(&mut self.next, format!("order-{id}"), 1, "OrderPlaced", placed, at);
                events.push(
                    &mut self.next,
                    format!("payment-{id}"),
                    1,
                    "PaymentRequested",
                    r#"{"amount":2}"#,
                    at,
                );
                orders.0.push(id.clone());
                orders.1.push(user);
                orders.2.push(2_i64);
                orders.3.push(at);
                ids.push(id);
                n += 1;
            }
            let last = self.next - 1;
            events.insert(&mut tx, &statements.events)?;
            tx.execute(&statements.orders, &[&orders.0, &orders.1, &orders.2, &orders.3])?;
            tx.execute(&statements.requests, &[&orders.0, &orders.2, &orders.3])?;
            tx.execute(&statements.checkpoint, &[&last, &self.projection])?;
            tx.commit()?;
        }
        Ok(ids)
    }

    /// Each order's payment approved: the request closed, the order approved, its delivery
    /// scheduled.
    fn payments(&mut self, ids: &[String]) -> anyhow::Result<()> {
        let mut events = Events::default();
        let mut times = Vec::with_capacity(ids.len());
        for id in ids {
            let at = now_ms();
            events.push(&mut self.next, format!("payment-{id}"), 2, "PaymentApproved", r#"{"amount":2}"#, at);
            events.push(&mut self.next, format!("order-{id}"), 2, "OrderApproved", "{}", at);
            events.push(
                &mut self.next,
                format!("delivery-{id}"),
                1,
                "DeliveryScheduled",
                r#"{"due_at":"2026-01-01T00:00:00Z"}"#,
                at,
            );
            times.push(at);
        }
        let statements = &self.statements;
        let last = self.next - 1;
        let mut tx = self.client.transaction()?;
        events.insert(&mut tx, &statements.events)?;
        tx.execute(&statements.requests_closed, &[&ids])?;
        tx.execute(&statements.approved, &[&ids, &times])?;
        tx.execute(&statements.timers, &[&ids, &times])?;
        tx.execute(&statements.checkpoint, &[&last, &self.projection])?;
        tx.commit()?;
        Ok(())
    }

    /// Each order delivered: its timer cleared.
    fn deliveries(&mut self, ids: &[String]) -> anyhow::Result<()> {
        let mut events = Events::default();
        let mut times = Vec::with_capacity(ids.len());
        for id in ids {
            let at = now_ms();
            events.push(&mut self.next, format!("order-{id}"), 3, "OrderDelivered", "{}", at);
            events.push(&mut self.next, format!("delivery-{id}"), 2, "DeliveryCompleted", "{}", at);
            times.push(at);
        }
        let statements = &self.statements;
        let last = self.next - 1;
        let mut tx = self.client.transaction()?;
        events.insert(&mut tx, &statements.events)?;
        tx.execute(&statements.delivered, &[&ids, &times])?;
        tx.execute(&statements.timers_cleared, &[&ids])?;
        tx.execute(&statements.checkpoint, &[&last, &self.projection])?;
        tx.commit()?;
        Ok(())
    }
}

/// Event rows as the arrays of one insert, in the log's column order.
#[derive(Default)]
struct Events {
    positions: Vec<i64>,
    ids: Vec<String>,
    streams: Vec<String>,
    versions: Vec<i64>,
    types: Vec<&'static str>,
    schemas: Vec<i32>,
    payloads: Vec<String>,
    correlations: Vec<String>,
    causations: Vec<String>,
    keys: Vec<Option<String>>,
    times: Vec<i64>,
}

impl Events {
    fn push(
        &mut self,
        next: &mut i64,
        stream: String,
        version: i64,
        event_type: &'static str,
        payload: impl Into<String>,
        at: i64,
    ) {
        let cause = uuid();
        self.positions.push(*next);
        *next += 1;
        self.ids.push(uuid());
        self.streams.push(stream);
        self.versions.push(version);
        self.types.push(event_type);
        self.schemas.push(1);
        self.payloads.push(payload.into());
        self.correlations.push(cause.clone());
        self.causations.push(cause);
        self.keys.push(None);
        self.times.push(at);
    }

    fn insert(&self, tx: &mut Transaction<'_>, statement: &Statement) -> Result<u64, postgres::Error> {
        tx.execute(
            statement,
            &[
                &self.positions,
                &self.ids,
                &self.streams,
                &self.versions,
                &self.types,
                &self.schemas,
                &self.payloads,
                &self.correlations,
                &self.causations,
                &self.keys,
                &self.times,
            ],
        )
    }
}

/// Identifiers as the daemon makes them: time-ordered UUIDs, as text.
fn uuid() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
