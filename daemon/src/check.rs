//! The invariant checker: walks the whole event log and proves, order by order, that it follows
//! the rules — each stream's versions run 1, 2, 3 ... without gaps; each event is what its
//! aggregate's `decide` would record from the state before it; the three contexts agree with each
//! other; every open saga step has its row (and no row is left without one); and the read model
//! says what the log says.
//!
//! It walks the store through [`Reads::walk`]: one consistent snapshot, one order's streams at
//! a time, so its memory does not grow with the log.
//!
//! The walk starts with the backend's own integrity check (SQLite's `PRAGMA integrity_check`):
//! damage it finds is reported as the backend words it, and so is damage met anywhere later (a
//! damaged page, an event that does not decode) — problems of the data, for `orders check` to
//! exit 7 on, not failures of the check (issue 12).

use std::collections::HashMap;

use jiff::Timestamp;
use orders_shared::protocol::{CheckProblem, CheckReport, OrderView, StuckStep};
use orders_shared::{
    Aggregate, CancelReason, Delivery, DomainEvent, Order, OrderEvent, OrderId, OrderStatus, Payment,
    PaymentEvent, StreamId, Total,
};

use crate::steps;
use crate::store::{Reads, RecordedEvent, StoreError, StoredOrder, StoredValue, Walking};

/// How many problems a report lists (it counts them all).
const MAX_LISTED: usize = 100;

/// Checks the whole store.
pub fn check(reads: &mut dyn Reads) -> Result<CheckReport, StoreError> {
    let started = std::time::Instant::now();
    match check_all(reads, started) {
        Err(error) if error.is_damage() => Ok(damaged(&error.to_string(), started)),
        checked => checked,
    }
}

/// Checks the whole store behind `source` on one of its snapshots (a copy being checked or
/// restored, without a daemon's readers).
pub fn check_source(source: &dyn crate::store::ReadSource) -> Result<CheckReport, StoreError> {
    let mut report = None;
    source.with_reads(&mut |reads| report = Some(check(reads)))?;
    report.unwrap_or(Err(StoreError::Closed))
}

/// The report on a database too damaged to check further.
pub fn damaged(what: &str, started: std::time::Instant) -> CheckReport {
    let mut report = Report::default();
    report.problem(None, format!("the database is damaged: {what}"));
    CheckReport { damaged: true, ..report.finish(0, 0, started) }
}

fn check_all(reads: &mut dyn Reads, started: std::time::Instant) -> Result<CheckReport, StoreError> {
    let mut report = Report::default();
    let mut orders = 0_u64;
    let walked = reads.walk(&mut |walking| match walking {
        Walking::Order(stored) => {
            orders += 1;
            check_order(&mut report, &stored);
        }
        Walking::MalformedStream(stream) => report.problem(None, format!("malformed stream id {stream}")),
    })?;
    if !walked.damage.is_empty() {
        let mut report = Report::default();
        for line in walked.damage {
            report.problem(None, format!("the database is damaged (SQLite's integrity check): {line}"));
        }
        return Ok(CheckReport { damaged: true, ..report.finish(0, 0, started) });
    }
    for stream in walked.orphan_streams {
        report.problem(None, format!("stream {stream} has no order"));
    }
    // Every open saga step can be carried out: its row decodes, its due time can be represented,
    // its order is in the log (the daemon starts without them, and reports them the same way).
    for stuck in steps::decode(walked.steps).stuck {
        let StuckStep { step, order, problem } = stuck.step;
        report.problem(
            order.parse().ok(),
            format!("the {step} step of order {order} cannot be carried out: {problem}"),
        );
    }
    // Read-model rows must belong to an order.
    for order in walked.stray_rows {
        report.problem(None, format!("a read model row for {order}, which is not an order of the log"));
    }
    let events = walked.head.get();
    if walked.counted != walked.head.since(crate::store::Position::START) {
        report.problem(
            None,
            format!("the log holds {} events but its last position is {events}", walked.counted),
        );
    }
    if walked.checkpoint != walked.head {
        report.problem(
            None,
            format!("the read model's checkpoint is {}, the log's end {events}", walked.checkpoint),
        );
    }
    Ok(report.finish(events.try_into().unwrap_or_default(), orders, started))
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
        if recorded.version.get() != expected {
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
        if let Err(illegal) = state.prove(event) {
            report.problem(Some(id), format!("{stream} v{}: {illegal}", recorded.version));
        }
        state = state.evolve(event);
    }
    state
}

fn check_order(report: &mut Report, stored: &StoredOrder) {
    let id = stored.id;
    let mut contexts = Contexts {
        order: fold(report, id, &stored.order),
        payment: fold(report, id, &stored.payment),
        delivery: fold(report, id, &stored.delivery),
        ..Contexts::default()
    };
    for recorded in stored.order.iter().chain(&stored.payment).chain(&stored.delivery) {
        contexts.note(&recorded.event);
        // A retry finds its order by the key on the event that placed it, and on no other.
        if recorded.metadata.idempotency_key.is_some()
            && !matches!(recorded.event, DomainEvent::Order(OrderEvent::Placed { .. }))
        {
            report.problem(
                Some(id),
                format!(
                    "{} v{}: an idempotency key on a {} event",
                    recorded.stream,
                    recorded.version,
                    recorded.event.event_type()
                ),
            );
        }
    }
    let mut problem = |message: &str| report.problem(Some(id), format!("order {id}: {message}"));
    contexts_agree(&contexts, &mut problem);
    steps_match(stored, &contexts, &mut problem);
    read_model_matches(stored, &contexts.order, &mut problem);
}

/// What the agreement of an order's three contexts depends on: the states its streams fold to,
/// and a few facts of their histories. The checker gathers it from the stored streams, `import`
/// as the lines go by.
#[derive(Debug, Default)]
pub(crate) struct Contexts {
    pub order: Order,
    pub payment: Payment,
    pub delivery: Delivery,
    /// The amount its payment asked for, if one was requested.
    pub requested: Option<Total>,
    /// Whether its payment was ever approved, and the order ever approved.
    pub payment_approved: bool,
    pub order_approved: bool,
}

impl Contexts {
    /// Takes one event of the order's streams into account (after the aggregates folded it).
    pub fn note(&mut self, event: &DomainEvent) {
        match event {
            DomainEvent::Payment(PaymentEvent::Requested { amount }) => {
                self.requested.get_or_insert(*amount);
            }
            DomainEvent::Payment(PaymentEvent::Approved { .. }) => self.payment_approved = true,
            DomainEvent::Order(OrderEvent::Approved) => self.order_approved = true,
            _ => {}
        }
    }
}

/// The order, payment and delivery contexts agree with each other.
pub(crate) fn contexts_agree(contexts: &Contexts, problem: &mut impl FnMut(&str)) {
    let Contexts { order, payment, delivery, requested, payment_approved, order_approved } = contexts;
    match (order.placed(), requested) {
        (Some(placed), Some(amount)) if placed.total != *amount => {
            problem("its payment asks for another amount")
        }
        (Some(_), None) => problem("placed, but no payment was requested"),
        _ => {}
    }
    if *order_approved && !payment_approved {
        problem("approved without an approved payment");
    }
    match (order, payment) {
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
    match (order, delivery) {
        (Order::Approved(_), Delivery::Scheduled { .. }) => {}
        (Order::Approved(_), _) => problem("approved, but no delivery is scheduled"),
        (Order::Delivered(_), Delivery::Completed) => {}
        (Order::Delivered(_), _) => problem("delivered, but its delivery is not completed"),
        (Order::Cancelled(..), Delivery::Absent | Delivery::Cancelled) => {}
        (Order::Cancelled(..), _) => problem("cancelled, but its delivery was not called off"),
        (Order::Pending(_) | Order::Absent, Delivery::Absent) => {}
        (_, _) => problem("has a delivery it should not have"),
    }
}

/// Every open saga step has its row, and every row an open step. A row that does not decode is
/// reported with the stuck steps; here only numbers compare.
fn steps_match(stored: &StoredOrder, folded: &Contexts, problem: &mut impl FnMut(&str)) {
    match (&folded.payment, &stored.payment_row) {
        (Payment::Requested { amount }, Some(StoredValue::Integer(row))) if *row == amount.get() => {}
        (Payment::Requested { .. }, Some(StoredValue::Integer(_))) => {
            problem("its open payment request has another amount")
        }
        (Payment::Requested { .. }, Some(_)) => {}
        (Payment::Requested { .. }, None) => {
            problem("its payment awaits a decision, but no payment request is open")
        }
        (_, Some(_)) => problem("a payment request is open for a payment decided already"),
        _ => {}
    }
    match (&folded.delivery, &stored.timer_row) {
        (Delivery::Scheduled { due_at }, Some(StoredValue::Integer(row)))
            if *row == due_at.as_millisecond() => {}
        (Delivery::Scheduled { .. }, Some(StoredValue::Integer(_))) => {
            problem("its delivery timer is due at another time")
        }
        (Delivery::Scheduled { .. }, Some(_)) => {}
        (Delivery::Scheduled { .. }, None) => problem("its delivery is scheduled, but no timer is set"),
        (_, Some(_)) => problem("a delivery timer is set, but no delivery is scheduled"),
        _ => {}
    }
}

/// The read model says what the log says.
fn read_model_matches(stored: &StoredOrder, order: &Order, problem: &mut impl FnMut(&str)) {
    let expected = expected_view(stored.id, order, &stored.order);
    match (&stored.view, expected) {
        (Ok(Some(row)), Some(expected)) if *row == expected => {}
        (Ok(Some(row)), Some(expected)) => {
            problem(&format!("the read model shows {} but the log says {}", summary(row), summary(&expected)))
        }
        (Ok(None), Some(_)) => problem("missing from the read model"),
        (Ok(_), None) => {}
        (Err(error), _) => problem(&format!("its read-model row is unreadable: {error}")),
    }
}

/// The read model's row for an order, as its events say it must be.
fn expected_view(id: OrderId, order: &Order, events: &[RecordedEvent]) -> Option<OrderView> {
    let placed = order.placed()?;
    let mut times: HashMap<&str, Timestamp> = HashMap::new();
    for recorded in events {
        let name = match &recorded.event {
            DomainEvent::Order(OrderEvent::Placed { .. }) => "created",
            DomainEvent::Order(OrderEvent::Approved) => "approved",
            DomainEvent::Order(OrderEvent::Delivered) => "delivered",
            DomainEvent::Order(OrderEvent::Cancelled { .. }) => "cancelled",
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

    use super::check;
    use crate::command::WriteCommand;
    use crate::store::Store;
    use crate::testing::Db;

    fn problems<S: Store>(db: &Db<S>) -> Vec<String> {
        let report = db.read(check);
        assert_eq!(report.problems as usize, report.listed.len());
        report.listed.into_iter().map(|p| p.message).collect()
    }

    /// A retry finds its order by the key on the event that placed it: a key elsewhere misleads it.
    #[test]
    fn an_idempotency_key_on_another_event_than_the_placing_one_is_a_problem() {
        use orders_shared::{PaymentEvent, StreamId, StreamKind, Total};

        use crate::store::{Metadata, Version};
        let mut db = Db::new();
        let order = db.create(2);
        db.forge(|tx| {
            let metadata = Metadata { idempotency_key: Some("k-2".to_owned()), ..Metadata::new_command() };
            let approved = PaymentEvent::Approved { amount: Total::try_from(2).expect("total") };
            let stream = StreamId::new(StreamKind::Payment, order);
            tx.append(stream, Version::new(1), &[approved.into()], &metadata, jiff::Timestamp::now())
                .map(drop)
        });
        let found = problems(&db);
        assert!(
            found.iter().any(|p| p.ends_with("v2: an idempotency key on a PaymentApproved event")),
            "{found:?}"
        );
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
        /// rules allow or is refused, and the log stays sound: in memory, and on SQLite.
        #[test]
        fn any_sequence_of_commands_keeps_the_log_sound(steps in prop::collection::vec(step(), 1..40)) {
            any_sequence(Db::memory(), steps.clone())?;
            any_sequence(Db::new(), steps)?;
        }
    }

    /// The model-based property: the checker is the oracle.
    fn any_sequence<S: Store>(mut db: Db<S>, steps: Vec<Step>) -> Result<(), TestCaseError> {
        let mut orders: Vec<OrderId> = Vec::new();
        let pick = |orders: &[OrderId], i: usize| (!orders.is_empty()).then(|| orders[i % orders.len()]);
        for step in steps {
            match step {
                Step::Create(total) => orders.push(db.create(total)),
                Step::Cancel(i) => {
                    if let Some(order) = pick(&orders, i) {
                        let before = db.view(order).expect("exists").status;
                        match db.run(WriteCommand::Cancel(order)) {
                            Ok(after) => {
                                prop_assert!(matches!(before, OrderStatus::Pending | OrderStatus::Approved));
                                prop_assert_eq!(after.status, OrderStatus::Cancelled);
                            }
                            Err(_) => {
                                prop_assert!(before.is_settled(), "refused a cancel of a {before} order")
                            }
                        }
                    }
                }
                Step::Decide(i, approve) => {
                    if let Some(order) = pick(&orders, i) {
                        let decision = if approve {
                            PaymentDecision::Approved
                        } else {
                            PaymentDecision::Declined { reason: "no".into() }
                        };
                        db.run(WriteCommand::DecidePayment { order, decision })
                            .expect("a saga step never fails");
                    }
                }
                Step::Deliver(i) => {
                    if let Some(order) = pick(&orders, i) {
                        db.run(WriteCommand::Deliver(order)).expect("a saga step never fails");
                    }
                }
                Step::CancelUnknown => {
                    let unknown = OrderId::from_uuid(uuid::Uuid::now_v7());
                    prop_assert!(db.run(WriteCommand::Cancel(unknown)).is_err());
                }
            }
        }
        prop_assert_eq!(problems(&db), Vec::<String>::new());
        Ok(())
    }
}
