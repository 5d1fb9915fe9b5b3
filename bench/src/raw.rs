//! The raw SQLite ceilings: what a plain rusqlite loop does with the same rows, the same
//! settings and the same batch sizes as the daemon, with none of its machinery (no socket, no
//! domain, no sagas). Every daemon figure is reported as a ratio of its ceiling.

use std::path::Path;
use std::time::{Duration, Instant};

use orders_daemon::store::sqlite::{self as store, read_model as projection};
use rusqlite::params;
use serde::Deserialize;

#[derive(Deserialize)]
struct Placed<'a> {
    user: &'a str,
    total: i64,
}

#[derive(Deserialize)]
struct Cancelled<'a> {
    reason: &'a str,
}

/// Rebuilds a copy of the read model from the log in chunks of `chunk` events per transaction,
/// as `replay` does; returns the events applied and the time it took.
pub fn rebuild(database: &Path, chunk: usize) -> anyhow::Result<(u64, Duration)> {
    let mut conn = store::open_writer(database)?;
    conn.execute_batch("DROP TABLE IF EXISTS raw_rebuild")?;
    projection::create_table(&conn, "main", "raw_rebuild", "_raw")?;
    let started = Instant::now();
    let mut cursor = 0_i64;
    let mut applied = 0_u64;
    loop {
        let tx = conn.transaction()?;
        let mut read = 0;
        {
            let mut select = tx.prepare_cached(
                "SELECT position, stream_id, type, payload, recorded_at FROM events WHERE position > ?1 \
                 ORDER BY position LIMIT ?2",
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO raw_rebuild (id, user, total, status, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, 'pending', ?4, ?4)",
            )?;
            let mut approve = tx.prepare_cached(
                "UPDATE raw_rebuild SET status = 'approved', approved_at = ?2, updated_at = ?2 WHERE id = ?1",
            )?;
            let mut deliver = tx.prepare_cached(
                "UPDATE raw_rebuild SET status = 'delivered', delivered_at = ?2, updated_at = ?2 WHERE id = ?1",
            )?;
            let mut cancel = tx.prepare_cached(
                "UPDATE raw_rebuild SET status = 'cancelled', cancel_reason = ?3, cancelled_at = ?2, \
                 updated_at = ?2 WHERE id = ?1",
            )?;
            let mut rows = select.query(params![cursor, chunk as i64])?;
            while let Some(row) = rows.next()? {
                read += 1;
                cursor = row.get(0)?;
                let stream: &str = row.get_ref(1)?.as_str()?;
                let Some(id) = stream.strip_prefix("order-") else { continue };
                let at: i64 = row.get(4)?;
                match row.get_ref(2)?.as_str()? {
                    "OrderPlaced" => {
                        let placed: Placed = serde_json::from_str(row.get_ref(3)?.as_str()?)?;
                        insert.execute(params![id, placed.user, placed.total, at])?;
                    }
                    "OrderApproved" => {
                        approve.execute(params![id, at])?;
                    }
                    "OrderDelivered" => {
                        deliver.execute(params![id, at])?;
                    }
                    "OrderCancelled" => {
                        let cancelled: Cancelled = serde_json::from_str(row.get_ref(3)?.as_str()?)?;
                        cancel.execute(params![id, at, cancelled.reason])?;
                    }
                    _ => {}
                }
            }
        }
        tx.commit()?;
        applied += read;
        if read < chunk as u64 {
            break;
        }
    }
    let elapsed = started.elapsed();
    conn.execute_batch("DROP TABLE raw_rebuild")?;
    Ok((applied, elapsed))
}

/// Identifiers as the daemon makes them: time-ordered UUIDs, as text.
fn uuid() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// The rows one step of an order's life writes, as the daemon writes them.
struct Rows<'c> {
    event: rusqlite::CachedStatement<'c>,
}

impl<'c> Rows<'c> {
    fn new(tx: &'c rusqlite::Transaction<'_>) -> rusqlite::Result<Self> {
        Ok(Rows {
            event: tx.prepare_cached(
                "INSERT INTO events (event_id, stream_id, version, type, schema_version, payload, correlation_id, \
                 causation_id, idempotency_key, recorded_at) VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?7, NULL, ?8)",
            )?,
        })
    }

    fn event(
        &mut self,
        stream: &str,
        version: i64,
        event_type: &str,
        payload: &str,
        at: i64,
    ) -> rusqlite::Result<()> {
        let (id, cause) = (uuid(), uuid());
        self.event.execute(params![id, stream, version, event_type, payload, cause, cause, at])?;
        Ok(())
    }
}

/// Creates as the daemon records them — two events, a read-model row, an open payment request,
/// the checkpoint — `batch` per transaction, for `count` creates. Returns the time it took.
pub fn creates(database: &Path, batch: usize, count: usize) -> anyhow::Result<(Vec<String>, Duration)> {
    let mut conn = fresh(database)?;
    let mut ids = Vec::with_capacity(count);
    let started = Instant::now();
    for chunk in (0..count).collect::<Vec<_>>().chunks(batch) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut rows = Rows::new(&tx)?;
            let mut order = tx.prepare_cached(
                "INSERT INTO orders (id, user, total, status, created_at, updated_at) VALUES (?1, ?2, ?3, 'pending', ?4, ?4)",
            )?;
            let mut request = tx.prepare_cached("INSERT INTO payment_requests VALUES (?1, ?2, ?3)")?;
            for n in chunk {
                let (id, at, user) = (uuid(), now_ms(), format!("user{}", n % 1000));
                rows.event(
                    &format!("order-{id}"),
                    1,
                    "OrderPlaced",
                    &format!(r#"{{"user":"{user}","total":2}}"#),
                    at,
                )?;
                order.execute(params![id, user, 2, at])?;
                rows.event(&format!("payment-{id}"), 1, "PaymentRequested", r#"{"amount":2}"#, at)?;
                request.execute(params![id, 2, at])?;
                ids.push(id);
            }
        }
        checkpoint(&tx)?;
        tx.commit()?;
    }
    Ok((ids, started.elapsed()))
}

/// The physical cost of one durable commit: `count` transactions appending one event each
/// (`synchronous=FULL`, the daemon's settings, the same disk). Returns each commit's latency.
pub fn one_event_commits(database: &Path, count: usize) -> anyhow::Result<Vec<Duration>> {
    let mut conn = fresh(database)?;
    let mut latencies = Vec::with_capacity(count);
    for n in 0..count {
        let started = Instant::now();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        Rows::new(&tx)?.event(
            &format!("order-{}", uuid()),
            1,
            "OrderPlaced",
            &format!(r#"{{"user":"u","total":{n}}}"#),
            now_ms(),
        )?;
        tx.commit()?;
        latencies.push(started.elapsed());
    }
    Ok(latencies)
}

/// Whole life cycles as the daemon records them: the creates above, then for each order its
/// payment decision and delivery, each step `batch` orders per transaction (the daemon's group
/// commit). Returns the orders settled and the time it took.
pub fn settled(database: &Path, batch: usize, count: usize) -> anyhow::Result<(usize, Duration)> {
    let started = Instant::now();
    let (ids, _) = creates(database, batch, count)?;
    let mut conn = store::open_writer(database)?;
    for chunk in ids.chunks(batch) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut rows = Rows::new(&tx)?;
            let mut closed = tx.prepare_cached("DELETE FROM payment_requests WHERE order_id = ?1")?;
            let mut approve = tx.prepare_cached(
                "UPDATE orders SET status = 'approved', approved_at = ?2, updated_at = ?2 WHERE id = ?1",
            )?;
            let mut timer = tx.prepare_cached("INSERT INTO delivery_timers VALUES (?1, ?2)")?;
            for id in chunk {
                let at = now_ms();
                rows.event(&format!("payment-{id}"), 2, "PaymentApproved", r#"{"amount":2}"#, at)?;
                closed.execute([id])?;
                rows.event(&format!("order-{id}"), 2, "OrderApproved", "{}", at)?;
                approve.execute(params![id, at])?;
                rows.event(
                    &format!("delivery-{id}"),
                    1,
                    "DeliveryScheduled",
                    r#"{"due_at":"2026-01-01T00:00:00Z"}"#,
                    at,
                )?;
                timer.execute(params![id, at])?;
            }
        }
        checkpoint(&tx)?;
        tx.commit()?;
    }
    for chunk in ids.chunks(batch) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut rows = Rows::new(&tx)?;
            let mut deliver = tx.prepare_cached(
                "UPDATE orders SET status = 'delivered', delivered_at = ?2, updated_at = ?2 WHERE id = ?1",
            )?;
            let mut cleared = tx.prepare_cached("DELETE FROM delivery_timers WHERE order_id = ?1")?;
            for id in chunk {
                let at = now_ms();
                rows.event(&format!("order-{id}"), 3, "OrderDelivered", "{}", at)?;
                deliver.execute(params![id, at])?;
                rows.event(&format!("delivery-{id}"), 2, "DeliveryCompleted", "{}", at)?;
                cleared.execute([id])?;
            }
        }
        checkpoint(&tx)?;
        tx.commit()?;
    }
    Ok((ids.len(), started.elapsed()))
}

/// The ceiling of an import: every event row of `source`, read into memory first (not timed),
/// inserted as it is (position included) into a new database by a prepared statement in one
/// transaction. Returns the rows and the time the insert and its commit took.
pub fn insert_events(source: &Path, target: &Path) -> anyhow::Result<(u64, Duration)> {
    type Row = (i64, String, String, i64, String, i64, String, String, String, Option<String>, i64);
    let rows: Vec<Row> = {
        let conn = store::open_reader(source)?;
        let mut select = conn.prepare(
            "SELECT position, event_id, stream_id, version, type, schema_version, payload, correlation_id, \
             causation_id, idempotency_key, recorded_at FROM events ORDER BY position",
        )?;
        select
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    r.get(10)?,
                ))
            })?
            .collect::<rusqlite::Result<_>>()?
    };
    let mut conn = fresh(target)?;
    let started = Instant::now();
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare(
            "INSERT INTO events (position, event_id, stream_id, version, type, schema_version, payload, \
             correlation_id, causation_id, idempotency_key, recorded_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        for row in &rows {
            insert.execute(params![
                row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8, row.9, row.10
            ])?;
        }
    }
    tx.commit()?;
    Ok((rows.len() as u64, started.elapsed()))
}

/// A new database with the daemon's schema, settings and triggers.
fn fresh(database: &Path) -> anyhow::Result<rusqlite::Connection> {
    let _ = std::fs::remove_file(database);
    let mut conn = store::open_writer(database)?;
    store::schema::migrate(&mut conn)?;
    Ok(conn)
}

fn checkpoint(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE checkpoints SET position = (SELECT max(position) FROM events) WHERE projection = 'orders'",
        [],
    )?;
    Ok(())
}

/// One user's newest 100 orders, as `list --user` asks for them, straight from the read model.
pub fn list_latencies(database: &Path, users: usize, queries: usize) -> anyhow::Result<Vec<Duration>> {
    let conn = store::open_reader(database)?;
    let mut select = conn.prepare(
        "SELECT id, user, total, status, cancel_reason, created_at, updated_at, approved_at, delivered_at, \
         cancelled_at FROM orders WHERE user = ?1 ORDER BY created_at DESC, id DESC LIMIT 101",
    )?;
    let mut latencies = Vec::with_capacity(queries);
    for n in 0..queries {
        let user = format!("user{:06}", (n * 7919) % users);
        let started = Instant::now();
        let rows = select.query_map([user], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, String>(3)?,
            ))
        })?;
        let count = rows.count();
        latencies.push(started.elapsed());
        anyhow::ensure!(count > 0, "no orders for a user");
    }
    Ok(latencies)
}

/// `list --status` straight from SQLite, newest first, a page of 100: through the status index,
/// or (`old_plan`) as before it existed — `+status` keeps SQLite off the index, so it walks
/// everyone's orders newest first and filters them.
pub fn status_list_latencies(
    database: &Path,
    status: &str,
    queries: usize,
    old_plan: bool,
) -> anyhow::Result<Vec<Duration>> {
    let conn = store::open_reader(database)?;
    let column = if old_plan { "+status" } else { "status" };
    let mut select = conn.prepare(&format!(
        "SELECT id, user, total, status FROM orders WHERE {column} = ?1 \
         ORDER BY created_at DESC, id DESC LIMIT 101"
    ))?;
    let mut latencies = Vec::with_capacity(queries);
    for _ in 0..queries {
        let started = Instant::now();
        let count = select.query_map([status], |row| row.get::<_, String>(0))?.count();
        latencies.push(started.elapsed());
        anyhow::ensure!(count > 0, "no {status} orders");
    }
    Ok(latencies)
}
