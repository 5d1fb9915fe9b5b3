//! The invariant checker: walks the whole event log and proves, order by order, that it follows
//! the rules — each stream's versions run 1, 2, 3 ... without gaps; each event is what its
//! aggregate's `decide` would record from the state before it; the three contexts agree with each
//! other; every open saga step has its row (and no row is left without one); and the read model
//! says what the log says.
//!
//! It reads in one read transaction (a consistent snapshot) and holds one order's streams at a
//! time, so its memory does not grow with the log.
//!
//! First of all it runs SQLite's `PRAGMA integrity_check` (every page, every index; `quick_check`
//! skips the indexes): damage it finds is reported as SQLite words it, and so is damage met
//! anywhere later (`SQLITE_CORRUPT`, `SQLITE_NOTADB`, an event that does not decode) — problems
//! of the data, for `orders check` to exit 7 on, not failures of the check (issue 12).

use std::collections::HashMap;

use jiff::Timestamp;
use orders_shared::protocol::{CheckProblem, CheckReport, OrderView, StuckStep};
use orders_shared::{
    Aggregate, CancelReason, Delivery, Order, OrderEvent, OrderId, OrderStatus, Payment, PaymentEvent,
    StreamId, StreamKind,
};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension};

use crate::store::{EventStore, RecordedEvent, StoreError};
use crate::{projection, sagas};

/// How many problems a report lists (it counts them all).
const MAX_LISTED: usize = 100;

/// How many lines of SQLite's integrity check a report keeps.
const INTEGRITY_LINES: usize = 20;

/// Checks the whole database.
pub fn check(conn: &Connection) -> Result<CheckReport, StoreError> {
    let started = std::time::Instant::now();
    match check_all(conn, started) {
        Err(error) if is_damage(&error) => Ok(damaged(&error.to_string(), started)),
        checked => checked,
    }
}

/// Whether an error says the database itself is damaged.
pub fn is_damage(error: &StoreError) -> bool {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    match error {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(failure, _)) => {
            matches!(failure.code, DatabaseCorrupt | NotADatabase)
        }
        StoreError::Decode { .. } => true,
        _ => false,
    }
}

/// The report on a database too damaged to check further.
pub fn damaged(what: &str, started: std::time::Instant) -> CheckReport {
    let mut report = Report::default();
    report.problem(None, format!("the database is damaged: {what}"));
    CheckReport { damaged: true, ..report.finish(0, 0, started) }
}

fn check_all(conn: &Connection, started: std::time::Instant) -> Result<CheckReport, StoreError> {
    let tx = conn.unchecked_transaction()?;
    let mut report = Report::default();
    // SQLite's own check first: walking a damaged file would only fail somewhere in the middle.
    let mut integrity = tx.prepare(&format!("PRAGMA integrity_check({INTEGRITY_LINES})"))?;
    for line in integrity.query_map([], |row| row.get::<_, String>(0))? {
        let line = line?;
        if line != "ok" {
            report.problem(None, format!("the database is damaged (SQLite's integrity check): {line}"));
        }
    }
    drop(integrity);
    if report.count > 0 {
        return Ok(CheckReport { damaged: true, ..report.finish(0, 0, started) });
    }
    let store = EventStore::new(&tx);

    // Every order stream, one order at a time, with its payment and delivery streams.
    let mut orders =
        tx.prepare("SELECT stream_id FROM events WHERE version = 1 AND stream_id LIKE 'order-%'")?;
    let ids = orders.query_map([], |row| row.get::<_, String>(0))?;
    let mut order_streams = 0_u64;
    for stream in ids {
        let stream = stream?;
        let Ok(StreamId { order: id, .. }) = stream.parse::<StreamId>() else {
            report.problem(None, format!("malformed stream id {stream}"));
            continue;
        };
        order_streams += 1;
        let streams = StreamKind::ALL.map(|kind| store.read_stream(StreamId::new(kind, id)));
        let [order_events, payment_events, delivery_events] = streams;
        check_order(&tx, &mut report, id, &order_events?, &payment_events?, &delivery_events?)?;
    }
    drop(orders);

    // Streams of the other contexts without an order.
    let mut orphans = tx.prepare(
        "SELECT stream_id FROM events e WHERE version = 1 AND stream_id NOT LIKE 'order-%' AND NOT EXISTS \
         (SELECT 1 FROM events o WHERE o.version = 1 AND o.stream_id = 'order-' || substr(e.stream_id, instr(e.stream_id, '-') + 1))",
    )?;
    for stream in orphans.query_map([], |row| row.get::<_, String>(0))? {
        report.problem(None, format!("stream {} has no order", stream?));
    }
    drop(orphans);

    // Every open saga step can be carried out: its row decodes, its due time can be represented,
    // its order is in the log (the daemon starts without them, and reports them the same way).
    let stuck = sagas::payment::open(&tx)?.stuck.into_iter().chain(sagas::delivery::open(&tx)?.stuck);
    for stuck in stuck {
        let StuckStep { step, order, problem } = stuck.step;
        report.problem(
            order.parse().ok(),
            format!("the {step} step of order {order} cannot be carried out: {problem}"),
        );
    }

    // Read-model rows must belong to an order.
    let mut stray = tx.prepare(
        "SELECT id FROM orders t WHERE NOT EXISTS \
         (SELECT 1 FROM events WHERE stream_id = 'order-' || t.id AND version = 1)",
    )?;
    for order in stray.query_map([], |row| row.get::<_, String>(0))? {
        report.problem(None, format!("a read model row for {}, which is not an order of the log", order?));
    }
    drop(stray);

    let events = store.head()?;
    let counted: i64 = tx.query_row("SELECT count(*) FROM events", [], |row| row.get(0))?;
    if counted != events {
        report.problem(None, format!("the log holds {counted} events but its last position is {events}"));
    }
    let checkpoint = projection::checkpoint(&tx)?;
    if checkpoint != events {
        report.problem(None, format!("the read model's checkpoint is {checkpoint}, the log's end {events}"));
    }
    Ok(report.finish(events.try_into().unwrap_or_default(), order_streams, started))
}

#[derive(Default)]
struct Report {
    count: u64,
    listed: Vec<CheckProblem>,
}

impl Report {
    fn finish(self, events: u64, orders: u64, started: std::time::Instant) -> CheckReport {
        CheckReport {
            events,
            orders,
            problems: self.count,
            listed: self.listed,
            duration_ms: started.elapsed().as_millis().try_into().unwrap_or(u64::MAX),
            damaged: false,
        }
    }

    fn problem(&mut self, order: Option<OrderId>, message: String) {
        self.count += 1;
        if self.listed.len() < MAX_LISTED {
            self.listed.push(CheckProblem { order: order.map(|id| id.to_string()), message });
        }
    }
}

/// Replays one stream through its aggregate: versions contiguous, every event legal.
fn fold<A: Aggregate>(report: &mut Report, id: OrderId, events: &[RecordedEvent]) -> A {
    let mut state = A::default();
    for (expected, recorded) in (1..).zip(events) {
        let stream = StreamId::new(A::KIND, id);
        if recorded.version != expected {
            report.problem(
                Some(id),
                format!("{stream}: version {} where {expected} was due", recorded.version),
            );
        }
        let Some(event) = A::event_of(&recorded.event) else {
            report.problem(
                Some(id),
                format!("{stream}: a {} event at version {}", recorded.event.event_type(), recorded.version),
            );
            continue;
        };
        match state.decide(&A::command_for(event)) {
            Ok(decided) if decided.len() == 1 && decided[0] == *event => {}
            Ok(decided) => report.problem(
                Some(id),
                format!(
                    "{stream} v{}: {:?} is not what the rules decide ({decided:?})",
                    recorded.version, event
                ),
            ),
            Err(refusal) => report.problem(
                Some(id),
                format!(
                    "{stream} v{}: {} breaks the rules: {refusal}",
                    recorded.version,
                    recorded.event.event_type()
                ),
            ),
        }
        state = state.evolve(event);
    }
    state
}

fn check_order(
    conn: &Connection,
    report: &mut Report,
    id: OrderId,
    order_events: &[RecordedEvent],
    payment_events: &[RecordedEvent],
    delivery_events: &[RecordedEvent],
) -> Result<(), StoreError> {
    let order: Order = fold(report, id, order_events);
    let payment: Payment = fold(report, id, payment_events);
    let delivery: Delivery = fold(report, id, delivery_events);
    let mut problem = |message: &str| report.problem(Some(id), format!("order {id}: {message}"));

    // The contexts agree.
    let placed = order.placed().cloned();
    let requested = payment_events.iter().find_map(|e| match &e.event {
        orders_shared::DomainEvent::Payment(PaymentEvent::Requested { amount }) => Some(*amount),
        _ => None,
    });
    match (&placed, requested) {
        (Some(placed), Some(amount)) if placed.total != amount => {
            problem("its payment asks for another amount")
        }
        (Some(_), None) => problem("placed, but no payment was requested"),
        _ => {}
    }
    let approved_payment = payment_events
        .iter()
        .any(|e| matches!(e.event, orders_shared::DomainEvent::Payment(PaymentEvent::Approved { .. })));
    let was_approved = order_events
        .iter()
        .any(|e| matches!(e.event, orders_shared::DomainEvent::Order(OrderEvent::Approved)));
    if was_approved && !approved_payment {
        problem("approved without an approved payment");
    }
    match (&order, &payment) {
        (Order::Cancelled(_, CancelReason::PaymentDeclined), Payment::Declined) => {}
        (Order::Cancelled(_, CancelReason::PaymentDeclined), _) => {
            problem("cancelled as declined, but its payment was not declined")
        }
        (Order::Cancelled(..), Payment::Approved { .. }) => {
            problem("cancelled, but its approved payment was not refunded")
        }
        (Order::Pending(_), Payment::Approved { .. } | Payment::Declined) => {
            problem("still pending though its payment was decided")
        }
        (state, Payment::Refunded { .. }) if !matches!(state, Order::Cancelled(..)) => {
            problem("refunded but not cancelled")
        }
        _ => {}
    }
    match (&order, &delivery) {
        (Order::Approved(_), Delivery::Scheduled { .. }) => {}
        (Order::Approved(_), _) => problem("approved, but no delivery is scheduled"),
        (Order::Delivered(_), Delivery::Completed) => {}
        (Order::Delivered(_), _) => problem("delivered, but its delivery is not completed"),
        (Order::Cancelled(..), Delivery::Absent | Delivery::Cancelled) => {}
        (Order::Cancelled(..), _) => problem("cancelled, but its delivery was not called off"),
        (Order::Pending(_) | Order::Absent, Delivery::Absent) => {}
        (_, _) => problem("has a delivery it should not have"),
    }

    // Every open saga step has its row, and every row an open step.
    // A row that does not decode is reported with the stuck steps; here only numbers compare.
    let requested_row: Option<Value> = conn
        .query_row("SELECT amount FROM payment_requests WHERE order_id = ?1", [id.to_string()], |row| {
            row.get(0)
        })
        .optional()?;
    match (&payment, requested_row) {
        (Payment::Requested { amount }, Some(Value::Integer(row))) if row == amount.get() => {}
        (Payment::Requested { .. }, Some(Value::Integer(_))) => {
            problem("its open payment request has another amount")
        }
        (Payment::Requested { .. }, Some(_)) => {}
        (Payment::Requested { .. }, None) => {
            problem("its payment awaits a decision, but no payment request is open")
        }
        (_, Some(_)) => problem("a payment request is open for a payment decided already"),
        _ => {}
    }
    let timer: Option<Value> = conn
        .query_row("SELECT due_at FROM delivery_timers WHERE order_id = ?1", [id.to_string()], |row| {
            row.get(0)
        })
        .optional()?;
    match (&delivery, timer) {
        (Delivery::Scheduled { due_at }, Some(Value::Integer(row))) if row == due_at.as_millisecond() => {}
        (Delivery::Scheduled { .. }, Some(Value::Integer(_))) => {
            problem("its delivery timer is due at another time")
        }
        (Delivery::Scheduled { .. }, Some(_)) => {}
        (Delivery::Scheduled { .. }, None) => problem("its delivery is scheduled, but no timer is set"),
        (_, Some(_)) => problem("a delivery timer is set, but no delivery is scheduled"),
        _ => {}
    }

    // The read model says what the log says.
    let expected = expected_view(id, &order, order_events);
    match (projection::get(conn, id), expected) {
        (Ok(Some(row)), Some(expected)) if row == expected => {}
        (Ok(Some(row)), Some(expected)) => problem(&format!(
            "the read model shows {} but the log says {}",
            summary(&row),
            summary(&expected)
        )),
        (Ok(None), Some(_)) => problem("missing from the read model"),
        (Ok(_), None) => {}
        (Err(error), _) => problem(&format!("its read-model row is unreadable: {error}")),
    }
    Ok(())
}

/// The read model's row for an order, as its events say it must be.
fn expected_view(id: OrderId, order: &Order, events: &[RecordedEvent]) -> Option<OrderView> {
    let placed = order.placed()?;
    let mut times: HashMap<&str, Timestamp> = HashMap::new();
    for recorded in events {
        let name = match &recorded.event {
            orders_shared::DomainEvent::Order(OrderEvent::Placed { .. }) => "created",
            orders_shared::DomainEvent::Order(OrderEvent::Approved) => "approved",
            orders_shared::DomainEvent::Order(OrderEvent::Delivered) => "delivered",
            orders_shared::DomainEvent::Order(OrderEvent::Cancelled { .. }) => "cancelled",
            _ => continue,
        };
        times.insert(name, recorded.recorded_at);
    }
    Some(OrderView {
        id,
        user: placed.user.as_str().to_owned(),
        total: placed.total.get(),
        status: order.status().unwrap_or(OrderStatus::Pending),
        cancel_reason: match order {
            Order::Cancelled(_, reason) => Some(*reason),
            _ => None,
        },
        created_at: *times.get("created")?,
        updated_at: events.last()?.recorded_at,
        approved_at: times.get("approved").copied(),
        delivered_at: times.get("delivered").copied(),
        cancelled_at: times.get("cancelled").copied(),
    })
}

fn summary(view: &OrderView) -> String {
    format!(
        "{} {} total {}{}",
        view.user,
        view.status,
        view.total,
        view.cancel_reason.map(|r| format!(" ({r})")).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use orders_shared::{OrderId, OrderStatus, PaymentDecision};
    use proptest::prelude::*;
    use rusqlite::params;

    use super::check;
    use crate::commands::WriteCommand;
    use crate::testing::Db;

    fn problems(db: &Db) -> Vec<String> {
        let report = check(&db.conn).expect("check");
        assert_eq!(report.problems as usize, report.listed.len());
        report.listed.into_iter().map(|p| p.message).collect()
    }

    /// Appends an event behind the rules' back, as a bug or a damaged file would.
    fn forge(db: &Db, order: OrderId, stream: &str, version: i64, event_type: &str, payload: &str) {
        db.conn
            .execute(
                "INSERT INTO events (event_id, stream_id, version, type, schema_version, payload, correlation_id, \
                 causation_id, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?1, ?1, 1800000000000)",
                params![
                    uuid::Uuid::now_v7().to_string(),
                    format!("{stream}-{order}"),
                    version,
                    event_type,
                    if event_type == "OrderCancelled" { 2 } else { 1 },
                    payload
                ],
            )
            .expect("forge");
    }

    #[test]
    fn a_sound_database_has_no_problems() {
        let mut db = Db::new();
        let delivered = db.create(2);
        db.decide(delivered);
        db.run(WriteCommand::Deliver(delivered)).expect("deliver");
        let declined = db.create(3);
        db.decide(declined);
        let cancelled = db.create(4);
        db.decide(cancelled);
        db.run(WriteCommand::Cancel(cancelled)).expect("cancel");
        db.create(6); // still pending
        let report = check(&db.conn).expect("check");
        assert_eq!((report.orders, report.problems), (4, 0), "{:?}", report.listed);
    }

    #[test]
    fn an_event_against_the_rules_is_found() {
        let mut db = Db::new();
        let order = db.create(3);
        db.decide(order); // declined and cancelled: 4 order-stream events are versions 1..2
        forge(&db, order, "order", 3, "OrderDelivered", "{}");
        let found = problems(&db);
        assert!(found.iter().any(|p| p.contains("OrderDelivered breaks the rules")), "{found:?}");
    }

    #[test]
    fn a_gap_in_a_stream_is_found() {
        let db = Db::new().with_order(2);
        let order = db.orders()[0];
        forge(&db, order, "payment", 7, "PaymentRefunded", r#"{"amount":2}"#);
        let found = problems(&db);
        assert!(found.iter().any(|p| p.contains("version 7 where 2 was due")), "{found:?}");
    }

    #[test]
    fn a_missing_or_stray_saga_step_is_found() {
        let mut db = Db::new();
        let pending = db.create(2);
        let approved = db.create(4);
        db.decide(approved);
        db.conn
            .execute("DELETE FROM payment_requests WHERE order_id = ?1", [pending.to_string()])
            .expect("damage");
        db.conn
            .execute("DELETE FROM delivery_timers WHERE order_id = ?1", [approved.to_string()])
            .expect("damage");
        db.conn
            .execute("INSERT INTO payment_requests VALUES (?1, 4, 0)", [approved.to_string()])
            .expect("damage");
        let found = problems(&db);
        assert!(found.iter().any(|p| p.contains("no payment request is open")), "{found:?}");
        assert!(found.iter().any(|p| p.contains("no timer is set")), "{found:?}");
        assert!(found.iter().any(|p| p.contains("payment decided already")), "{found:?}");
    }

    #[test]
    fn a_read_model_that_disagrees_with_the_log_is_found() {
        let mut db = Db::new();
        let order = db.create(2);
        db.conn.execute("UPDATE orders SET total = 999 WHERE id = ?1", [order.to_string()]).expect("damage");
        db.conn
            .execute(
                "INSERT INTO orders VALUES ('nope', 'x', 1, 'pending', 0, 0, NULL, NULL, NULL, NULL)",
                [],
            )
            .expect("damage");
        let found = problems(&db);
        assert!(found.iter().any(|p| p.contains("the read model shows")), "{found:?}");
        assert!(found.iter().any(|p| p.contains("read model row for nope")), "{found:?}");
    }

    /// Overwrites one page of the database file with garbage, behind SQLite's back.
    fn overwrite_page(db: &Db, page: i64) {
        use std::io::{Seek, SeekFrom, Write};
        db.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").expect("checkpoint");
        let size: i64 = db.conn.query_row("PRAGMA page_size", [], |row| row.get(0)).expect("page size");
        let mut file = std::fs::OpenOptions::new().write(true).open(db.path()).expect("open");
        file.seek(SeekFrom::Start(u64::try_from((page - 1) * size).expect("offset"))).expect("seek");
        file.write_all(&vec![0xA5; usize::try_from(size).expect("size")]).expect("damage");
    }

    /// Issue 12: a damaged index page, which the walk of the log never reads, passed for
    /// "no problems"; SQLite's integrity check finds it.
    #[test]
    fn a_damaged_page_is_found_by_sqlites_integrity_check() {
        let mut db = Db::new();
        for total in 1..=20 {
            db.create(total * 2);
        }
        let root: i64 = db
            .conn
            .query_row("SELECT rootpage FROM sqlite_master WHERE name = 'orders_by_time'", [], |row| {
                row.get(0)
            })
            .expect("root page");
        overwrite_page(&db, root);
        let fresh = crate::store::open_reader(&db.path()).expect("open");
        let report = check(&fresh).expect("a report, not an error");
        assert!(report.problems > 0 && report.damaged, "{report:?}");
        assert!(report.listed[0].message.starts_with("the database is damaged"), "{:?}", report.listed);
    }

    #[test]
    fn a_file_that_is_no_database_is_reported_as_damage() {
        let db = Db::new().with_order(2);
        overwrite_page(&db, 1);
        let fresh = crate::store::open_reader(&db.path()).expect("open");
        let report = check(&fresh).expect("a report, not an error");
        assert!(report.damaged, "{report:?}");
        assert_eq!(report.problems, 1, "{report:?}");
        assert!(report.listed[0].message.contains("the database is damaged: "), "{:?}", report.listed);
    }

    #[derive(Clone, Debug)]
    enum Step {
        Create(i64),
        Cancel(usize),
        Decide(usize, bool),
        Deliver(usize),
        CancelUnknown,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (1_i64..10).prop_map(Step::Create),
            2 => any::<usize>().prop_map(Step::Cancel),
            3 => (any::<usize>(), any::<bool>()).prop_map(|(i, approve)| Step::Decide(i, approve)),
            2 => any::<usize>().prop_map(Step::Deliver),
            1 => Just(Step::CancelUnknown),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever customers and sagas do, in whatever order and however often (a provider may
        /// answer twice, a timer fire after a cancel), every command either records what the
        /// rules allow or is refused, and the log stays sound.
        #[test]
        fn any_sequence_of_commands_keeps_the_log_sound(steps in prop::collection::vec(step(), 1..40)) {
            let mut db = Db::new();
            let mut orders: Vec<OrderId> = Vec::new();
            let pick = |orders: &[OrderId], i: usize| (!orders.is_empty()).then(|| orders[i % orders.len()]);
            for step in steps {
                match step {
                    Step::Create(total) => orders.push(db.create(total)),
                    Step::Cancel(i) => if let Some(order) = pick(&orders, i) {
                        let before = db.view(order).expect("exists").status;
                        match db.run(WriteCommand::Cancel(order)) {
                            Ok(after) => {
                                prop_assert!(matches!(before, OrderStatus::Pending | OrderStatus::Approved));
                                prop_assert_eq!(after.status, OrderStatus::Cancelled);
                            }
                            Err(_) => prop_assert!(before.is_settled(), "refused a cancel of a {before} order"),
                        }
                    },
                    Step::Decide(i, approve) => if let Some(order) = pick(&orders, i) {
                        let decision = if approve {
                            PaymentDecision::Approved
                        } else {
                            PaymentDecision::Declined { reason: "no".into() }
                        };
                        db.run(WriteCommand::DecidePayment { order, decision }).expect("a saga step never fails");
                    },
                    Step::Deliver(i) => if let Some(order) = pick(&orders, i) {
                        db.run(WriteCommand::Deliver(order)).expect("a saga step never fails");
                    },
                    Step::CancelUnknown => {
                        let unknown = OrderId::from_uuid(uuid::Uuid::now_v7());
                        prop_assert!(db.run(WriteCommand::Cancel(unknown)).is_err());
                    }
                }
            }
            prop_assert_eq!(problems(&db), Vec::<String>::new());
        }
    }
}
