//! `orders-peer-bench`: the orders workflow on cqrs-es 0.5 + sqlite-es 0.5, measured the way
//! `orders-bench` measures the daemon, so the two can be compared.
//!
//! - One aggregate, `Order` (cqrs-es `Aggregate`), with the same state machine as orders:
//!   pending -> approved -> delivered, pending|approved -> cancelled, anything else an error.
//! - The payment decision (even total approved, odd declined) and the delivery (delay 0) are
//!   application code: after `Place` succeeds the caller executes `Approve` then `Deliver`, or
//!   `Cancel { payment_declined }`, on the same aggregate, each its own `CqrsFramework::execute`.
//! - Persistence: sqlite-es's `SqliteEventRepository` in a `PersistedEventStore` (event store, no
//!   snapshots, no queries), on a file database in a temporary directory, with journal_mode=WAL,
//!   synchronous=FULL, busy_timeout=5s and foreign_keys=ON on every pooled connection (the
//!   daemon's settings), read back from every connection before measuring.
//!
//! The JSON report goes to stdout, progress to stderr. `--quick`: 0.5 s per measurement.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateError, CqrsFramework, DomainEvent, EventStore, event_sink::EventSink};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlite_es::{SqliteCqrs, SqliteEventRepository};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, Row, Sqlite};

/// The tables sqlite-es 0.5 reads and writes, as its own migration creates them
/// (`migrations/20221114171845_init.sql` in the sqlite-es 0.5.0 crate), without the example view
/// table and the example row that file also holds.
const SCHEMA: &str = "
CREATE TABLE events
(
  aggregate_type text                          NOT NULL,
  aggregate_id   text                          NOT NULL,
  sequence       integer CHECK (sequence >= 0) NOT NULL,
  event_type     text                          NOT NULL,
  event_version  text                          NOT NULL,
  payload        text                          NOT NULL,
  metadata       text                          NOT NULL,
  PRIMARY KEY (aggregate_type, aggregate_id, sequence)
) STRICT;

CREATE TABLE snapshots
(
  aggregate_type   text                                  NOT NULL,
  aggregate_id     text                                  NOT NULL,
  last_sequence    integer CHECK (last_sequence >= 0)    NOT NULL,
  current_snapshot integer CHECK (current_snapshot >= 0) NOT NULL,
  payload          text                                  NOT NULL,
  PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
) STRICT;
";

/// The daemon's busy timeout (daemon/src/store/mod.rs), also sqlx's default.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// sqlite-es's own `default_sqlite_pool` opens at most 10 connections.
const DEFAULT_POOL: u32 = 10;
const CREATE_LEVELS: [usize; 4] = [1, 8, 64, 256];
const SETTLED_TASKS: usize = 64;

// ---------------------------------------------------------------------------------------------
// The domain: the Order aggregate.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    PaymentDeclined,
    CustomerRequest,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum OrderCommand {
    Place { user: String, total: u64 },
    Approve,
    Deliver,
    Cancel { reason: CancelReason },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrderEvent {
    OrderPlaced { user: String, total: u64 },
    OrderApproved,
    OrderDelivered,
    OrderCancelled { reason: CancelReason },
}

impl DomainEvent for OrderEvent {
    fn event_type(&self) -> String {
        match self {
            OrderEvent::OrderPlaced { .. } => "OrderPlaced",
            OrderEvent::OrderApproved => "OrderApproved",
            OrderEvent::OrderDelivered => "OrderDelivered",
            OrderEvent::OrderCancelled { .. } => "OrderCancelled",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        match self {
            // orders' OrderCancelled is at schema version 2 (it gained `reason`).
            OrderEvent::OrderCancelled { .. } => "2",
            _ => "1",
        }
        .to_string()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
    Absent,
    Pending,
    Approved,
    Delivered,
    Cancelled,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Order {
    status: Status,
    user: String,
    total: u64,
    cancel_reason: Option<CancelReason>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum OrderError {
    NotFound,
    AlreadyPlaced,
    AlreadyDelivered,
    AlreadyCancelled,
    Refused { action: &'static str, status: Status },
}

impl std::fmt::Display for OrderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OrderError::NotFound => write!(f, "no such order"),
            OrderError::AlreadyPlaced => write!(f, "the order is already placed"),
            OrderError::AlreadyDelivered => write!(f, "the order is already delivered"),
            OrderError::AlreadyCancelled => write!(f, "the order is already cancelled"),
            OrderError::Refused { action, status } => {
                write!(f, "cannot {action} an order that is {status:?}")
            }
        }
    }
}

impl std::error::Error for OrderError {}

impl OrderCommand {
    fn action(&self) -> &'static str {
        match self {
            OrderCommand::Place { .. } => "place",
            OrderCommand::Approve => "approve",
            OrderCommand::Deliver => "deliver",
            OrderCommand::Cancel { .. } => "cancel",
        }
    }
}

impl Order {
    /// The same rules as `orders_shared::order::Order::decide`.
    fn decide(&self, command: OrderCommand) -> Result<OrderEvent, OrderError> {
        use OrderCommand as C;
        match (self.status, command) {
            (Status::Absent, C::Place { user, total }) => Ok(OrderEvent::OrderPlaced { user, total }),
            (Status::Absent, _) => Err(OrderError::NotFound),
            (_, C::Place { .. }) => Err(OrderError::AlreadyPlaced),
            (Status::Pending, C::Approve) => Ok(OrderEvent::OrderApproved),
            (Status::Approved, C::Deliver) => Ok(OrderEvent::OrderDelivered),
            (Status::Pending | Status::Approved, C::Cancel { reason }) => {
                Ok(OrderEvent::OrderCancelled { reason })
            }
            (Status::Delivered, C::Cancel { .. }) => Err(OrderError::AlreadyDelivered),
            (Status::Cancelled, C::Cancel { .. }) => Err(OrderError::AlreadyCancelled),
            (status, command) => Err(OrderError::Refused { action: command.action(), status }),
        }
    }
}

impl Aggregate for Order {
    const TYPE: &'static str = "Order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;
    type Services = ();

    async fn handle(
        &mut self,
        command: OrderCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), OrderError> {
        let event = self.decide(command)?;
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: OrderEvent) {
        match event {
            OrderEvent::OrderPlaced { user, total } => {
                self.status = Status::Pending;
                self.user = user;
                self.total = total;
            }
            OrderEvent::OrderApproved => self.status = Status::Approved,
            OrderEvent::OrderDelivered => self.status = Status::Delivered,
            OrderEvent::OrderCancelled { reason } => {
                self.status = Status::Cancelled;
                self.cancel_reason = Some(reason);
            }
        }
    }
}

/// The payment provider's rule (orders' `EvenOddProvider`): an even total is approved.
fn payment_approved(total: u64) -> bool {
    total.is_multiple_of(2)
}

type Cqrs = SqliteCqrs<Order>;
type ExecError = AggregateError<OrderError>;

/// One order's whole life: placed, then approved and delivered (even total) or cancelled with
/// `payment_declined` (odd total). Returns whether it was delivered.
async fn life_cycle(cqrs: &Cqrs, id: &str, user: &str, total: u64) -> Result<bool, ExecError> {
    cqrs.execute(id, OrderCommand::Place { user: user.to_string(), total }).await?;
    if payment_approved(total) {
        cqrs.execute(id, OrderCommand::Approve).await?;
        // Delivery delay 0: deliver at once.
        cqrs.execute(id, OrderCommand::Deliver).await?;
        Ok(true)
    } else {
        cqrs.execute(id, OrderCommand::Cancel { reason: CancelReason::PaymentDeclined }).await?;
        Ok(false)
    }
}

// ---------------------------------------------------------------------------------------------
// The database.

struct Database {
    _dir: tempfile::TempDir,
    pool: Pool<Sqlite>,
}

#[derive(Debug, Clone, PartialEq)]
struct Pragmas {
    sqlite: String,
    journal_mode: String,
    synchronous: String,
    busy_timeout_ms: i64,
    foreign_keys: i64,
}

impl Database {
    /// A fresh database file in a new temporary directory, its pool warmed up to `pool_size`
    /// connections (so no measurement pays for opening one), every connection's settings read
    /// back and checked.
    async fn open(pool_size: u32) -> Result<(Database, Pragmas), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("peer.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(pool_size)
            .min_connections(0)
            .connect_with(options)
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;

        // Open every connection now, and read the settings back from each.
        let mut held = Vec::new();
        for _ in 0..pool_size {
            held.push(pool.acquire().await?);
        }
        let mut seen: Option<Pragmas> = None;
        for conn in &mut held {
            let pragmas = read_pragmas(conn).await?;
            if pragmas.journal_mode != "wal" || pragmas.synchronous != "full" {
                return Err(format!("a pooled connection has the wrong settings: {pragmas:?}").into());
            }
            if let Some(first) = &seen
                && *first != pragmas
            {
                return Err(format!("pooled connections differ: {first:?} vs {pragmas:?}").into());
            }
            seen = Some(pragmas);
        }
        drop(held);
        let pragmas = seen.ok_or("a pool of no connections")?;
        Ok((Database { _dir: dir, pool }, pragmas))
    }

    fn cqrs(&self) -> Cqrs {
        // What `sqlite_es::sqlite_cqrs(pool, vec![], ())` builds, spelled out.
        let repo = SqliteEventRepository::new(self.pool.clone());
        let store = PersistedEventStore::<_, Order>::new_event_store(repo);
        CqrsFramework::new(store, vec![], ())
    }

    /// (events, orders) of each kind in the log, to check the run did what it claims.
    async fn census(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT event_type, count(*) AS n FROM events GROUP BY event_type ORDER BY event_type",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|row| (row.get::<String, _>("event_type"), row.get::<i64, _>("n"))).collect())
    }

    async fn close(self) {
        self.pool.close().await;
    }
}

async fn read_pragmas(conn: &mut sqlx::SqliteConnection) -> Result<Pragmas, sqlx::Error> {
    let sqlite: String = sqlx::query_scalar("SELECT sqlite_version()").fetch_one(&mut *conn).await?;
    let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut *conn).await?;
    let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *conn).await?;
    let busy_timeout_ms: i64 = sqlx::query_scalar("PRAGMA busy_timeout").fetch_one(&mut *conn).await?;
    let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(&mut *conn).await?;
    let synchronous = match synchronous {
        0 => "off".to_string(),
        1 => "normal".to_string(),
        2 => "full".to_string(),
        3 => "extra".to_string(),
        other => other.to_string(),
    };
    Ok(Pragmas {
        sqlite,
        journal_mode: journal_mode.to_lowercase(),
        synchronous,
        busy_timeout_ms,
        foreign_keys,
    })
}

// ---------------------------------------------------------------------------------------------
// Measurements.

struct Args {
    seconds: f64,
    pool: u32,
}

fn parse_args() -> Result<Args, String> {
    let mut quick = false;
    let mut seconds: Option<f64> = None;
    let mut pool = DEFAULT_POOL;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--seconds" => {
                let value = args.next().ok_or("--seconds needs a value")?;
                let value: f64 = value.parse().map_err(|_| format!("--seconds: not a number: {value}"))?;
                if !(value.is_finite() && value > 0.0) {
                    return Err("--seconds must be positive".into());
                }
                seconds = Some(value);
            }
            "--pool" => {
                let value = args.next().ok_or("--pool needs a value")?;
                pool = value
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(format!("--pool: not a positive integer: {value}"))?;
            }
            "-h" | "--help" => {
                println!(
                    "orders-peer-bench: the orders workflow on cqrs-es 0.5 + sqlite-es 0.5\n\n\
                     Usage: orders-peer-bench [--quick] [--seconds S] [--pool N]\n\n\
                     \x20 --quick       0.5 s per measurement instead of 5 s\n\
                     \x20 --seconds S   seconds per measurement (overrides --quick)\n\
                     \x20 --pool N      sqlx pool size (default {DEFAULT_POOL}, sqlite-es's default_sqlite_pool)\n\n\
                     Prints one JSON object on stdout; progress on stderr."
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument: {other} (try --help)")),
        }
    }
    let seconds = seconds.unwrap_or(if quick { 0.5 } else { 5.0 });
    Ok(Args { seconds, pool })
}

/// Latencies of one task, in microseconds.
struct TaskResult {
    latencies_us: Vec<u64>,
    errors: u64,
}

/// `tasks` concurrent tasks, each running `op(task, i)` for i = 0, 1, ... until `duration` has
/// passed (an operation in flight at the deadline is finished and counted). Returns the
/// latencies of every successful operation, the errors, and the wall time until the last task
/// ended.
async fn run_tasks<F, Fut>(tasks: usize, duration: Duration, op: F) -> (Vec<u64>, u64, Duration)
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), ExecError>> + Send,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(tokio::sync::Barrier::new(tasks + 1));
    let mut handles = Vec::with_capacity(tasks);
    for task in 0..tasks {
        let (op, stop, start) = (op.clone(), stop.clone(), start.clone());
        handles.push(tokio::spawn(async move {
            let mut result = TaskResult { latencies_us: Vec::with_capacity(4096), errors: 0 };
            start.wait().await;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let began = Instant::now();
                match op(task, i).await {
                    Ok(()) => result.latencies_us.push(began.elapsed().as_micros() as u64),
                    Err(error) => {
                        if result.errors == 0 {
                            eprintln!("  task {task}: {error}");
                        }
                        result.errors += 1;
                    }
                }
                i += 1;
            }
            result
        }));
    }
    start.wait().await;
    let began = Instant::now();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut errors = 0;
    for handle in handles {
        let result = handle.await.expect("a benchmark task panicked");
        latencies.extend(result.latencies_us);
        errors += result.errors;
    }
    (latencies, errors, began.elapsed())
}

fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    sorted_us[rank.clamp(1, sorted_us.len()) - 1] as f64 / 1000.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A fresh order id: UUIDv7, like orders' ids (time-ordered keys).
fn order_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

async fn creates(tasks: usize, args: &Args) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let (db, _) = Database::open(args.pool).await?;
    let cqrs = Arc::new(db.cqrs());
    let duration = Duration::from_secs_f64(args.seconds);
    let (mut latencies, errors, took) = run_tasks(tasks, duration, move |task, i| {
        let cqrs = cqrs.clone();
        async move {
            let user = format!("user-{task}");
            let total = if i % 4 == 3 { 3 } else { 2 };
            cqrs.execute(&order_id(), OrderCommand::Place { user, total }).await
        }
    })
    .await;
    let census = db.census().await?;
    db.close().await;
    let placed: i64 = census.iter().filter(|(kind, _)| kind == "OrderPlaced").map(|(_, n)| n).sum();
    if placed != latencies.len() as i64 {
        return Err(format!(
            "{} creates acknowledged but {placed} OrderPlaced events stored",
            latencies.len()
        )
        .into());
    }
    latencies.sort_unstable();
    let per_second = latencies.len() as f64 / took.as_secs_f64();
    eprintln!(
        "creates, {tasks:>3} tasks: {:>8.1}/s  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} orders, {errors} errors, {:.2} s)",
        per_second,
        percentile_ms(&latencies, 50.0),
        percentile_ms(&latencies, 99.0),
        percentile_ms(&latencies, 100.0),
        latencies.len(),
        took.as_secs_f64()
    );
    if errors > 0 {
        return Err(format!("{errors} creates failed with {tasks} tasks").into());
    }
    Ok(json!({
        "connections": tasks,
        "per_second": round3(per_second),
        "p50_ms": round3(percentile_ms(&latencies, 50.0)),
        "p99_ms": round3(percentile_ms(&latencies, 99.0)),
        "max_ms": round3(percentile_ms(&latencies, 100.0)),
    }))
}

async fn settled(args: &Args) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let (db, _) = Database::open(args.pool).await?;
    let cqrs = Arc::new(db.cqrs());
    let duration = Duration::from_secs_f64(args.seconds);
    let (latencies, errors, took) = run_tasks(SETTLED_TASKS, duration, move |task, i| {
        let cqrs = cqrs.clone();
        async move {
            let user = format!("user-{task}");
            // Three even totals for every odd one: mostly delivered, some declined.
            let total = if i % 4 == 3 { 3 } else { 2 };
            let delivered = life_cycle(&cqrs, &order_id(), &user, total).await?;
            debug_assert_eq!(delivered, payment_approved(total));
            Ok(())
        }
    })
    .await;
    let census = db.census().await?;
    db.close().await;
    let count = |kind: &str| census.iter().filter(|(k, _)| k == kind).map(|(_, n)| *n).sum::<i64>();
    let (delivered, cancelled) = (count("OrderDelivered"), count("OrderCancelled"));
    let orders_per_second = (delivered + cancelled) as f64 / took.as_secs_f64();
    let events: i64 = census.iter().map(|(_, n)| n).sum();
    eprintln!(
        "settled, {SETTLED_TASKS} tasks: {orders_per_second:>8.1} orders/s  ({delivered} delivered, {cancelled} cancelled, \
         {events} events, {errors} errors, {:.2} s; life cycle p50 {:.2} ms)",
        took.as_secs_f64(),
        {
            let mut sorted = latencies.clone();
            sorted.sort_unstable();
            percentile_ms(&sorted, 50.0)
        }
    );
    if errors > 0 {
        return Err(format!("{errors} life cycles failed").into());
    }
    if delivered + cancelled != latencies.len() as i64 || count("OrderPlaced") != delivered + cancelled {
        return Err(
            format!("{} life cycles acknowledged but the log holds {census:?}", latencies.len()).into()
        );
    }
    Ok(json!({
        "connections": SETTLED_TASKS,
        "orders_per_second": round3(orders_per_second),
    }))
}

/// The state machine, checked once before measuring (a wrong workflow would measure nothing).
async fn self_check(pool: u32) -> Result<(), Box<dyn std::error::Error>> {
    let (db, _) = Database::open(pool).await?;
    let cqrs = db.cqrs();
    let (even, odd) = (order_id(), order_id());
    assert!(life_cycle(&cqrs, &even, "alice", 2).await?);
    assert!(!life_cycle(&cqrs, &odd, "bob", 3).await?);
    let expect_user_error = |result: Result<(), ExecError>, wanted: OrderError| match result {
        Err(AggregateError::UserError(error)) if error == wanted => Ok(()),
        other => Err(format!("expected {wanted:?}, got {other:?}")),
    };
    expect_user_error(
        cqrs.execute(&even, OrderCommand::Cancel { reason: CancelReason::CustomerRequest }).await,
        OrderError::AlreadyDelivered,
    )?;
    expect_user_error(
        cqrs.execute(&odd, OrderCommand::Approve).await,
        OrderError::Refused { action: "approve", status: Status::Cancelled },
    )?;
    expect_user_error(cqrs.execute(&order_id(), OrderCommand::Deliver).await, OrderError::NotFound)?;
    let fresh = order_id();
    cqrs.execute(&fresh, OrderCommand::Place { user: "carol".into(), total: 4 }).await?;
    expect_user_error(
        cqrs.execute(&fresh, OrderCommand::Deliver).await,
        OrderError::Refused { action: "deliver", status: Status::Pending },
    )?;
    expect_user_error(
        cqrs.execute(&fresh, OrderCommand::Place { user: "carol".into(), total: 4 }).await,
        OrderError::AlreadyPlaced,
    )?;
    cqrs.execute(&fresh, OrderCommand::Cancel { reason: CancelReason::CustomerRequest }).await?;
    let store = PersistedEventStore::<_, Order>::new_event_store(SqliteEventRepository::new(db.pool.clone()));
    let kinds: Vec<String> =
        store.load_events(&even).await?.into_iter().map(|e| e.payload.event_type()).collect();
    assert_eq!(kinds, ["OrderPlaced", "OrderApproved", "OrderDelivered"]);
    let odd_events = store.load_events(&odd).await?;
    assert_eq!(
        odd_events.last().map(|e| e.payload.clone()),
        Some(OrderEvent::OrderCancelled { reason: CancelReason::PaymentDeclined })
    );
    db.close().await;
    Ok(())
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("orders-peer-bench: {message}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    if let Err(error) = runtime.block_on(run(&args)) {
        eprintln!("orders-peer-bench: {error}");
        std::process::exit(1);
    }
}

async fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let (db, pragmas) = Database::open(args.pool).await?;
    db.close().await;
    eprintln!(
        "cqrs-es 0.5 + sqlite-es 0.5 on SQLite {}: journal_mode={} synchronous={} busy_timeout={}ms foreign_keys={} \
         (read back from each of {} pooled connections); {} s per measurement",
        pragmas.sqlite,
        pragmas.journal_mode,
        pragmas.synchronous,
        pragmas.busy_timeout_ms,
        pragmas.foreign_keys,
        args.pool,
        args.seconds
    );
    self_check(args.pool).await?;
    eprintln!("state machine checked");

    let mut creates_report = Vec::new();
    for tasks in CREATE_LEVELS {
        creates_report.push(creates(tasks, args).await?);
    }
    let settled_report = settled(args).await?;

    let report = json!({
        "peer": "cqrs-es 0.5 + sqlite-es 0.5",
        "sqlite": pragmas.sqlite,
        "journal_mode": pragmas.journal_mode,
        "synchronous": pragmas.synchronous,
        "pool_connections": args.pool,
        "seconds": args.seconds,
        "creates": creates_report,
        "settled": settled_report,
    });
    println!("{report}");
    Ok(())
}
