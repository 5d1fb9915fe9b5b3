//! The conformance suite: what every backend of the seam must do, written once and run against
//! each of them (SQLite in a temporary directory, memory, PostgreSQL in a private cluster).
//!
//! Each test is a function generic over the [`Store`]; [`conformance!`] instantiates it once per
//! backend. The commands go through the writer's own commit path ([`Db`]); what the engine never
//! does on purpose — a unit that fails after writing, an append at a stale version, a read-model
//! row that disagrees with the log — is written by hand through the [`Batch`] and [`WriteTx`]
//! the backend hands out, or forged ([`Db::forge`]).

use std::cell::Cell;
use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use orders_shared::protocol::{CreateRequest, ErrorCode, ListRequest, OrderView};
use orders_shared::{
    CancelReason, DomainEvent, OrderEvent, OrderId, OrderStatus, PaymentDecision, PaymentEvent, StreamId,
    StreamKind, Total,
};
use uuid::Uuid;

use crate::command::WriteCommand;
use crate::store::{
    Batch, Metadata, Outcome, Position, RecordedEvent, StepKind, Store, StoreError, StoredValue, Version,
    Walking, Wants, WriteTx,
};
use crate::testing::Db;
use crate::writer::{self, WriteResult};

/// Runs each generic test against every backend: `sqlite::<test>`, `memory::<test>` and
/// `postgres::<test>` (each on a fresh database of the test process's private cluster).
macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $test() { super::$test(crate::testing::Db::new()) })*
        }
        mod memory {
            $(#[test] fn $test() { super::$test(crate::testing::Db::memory()) })*
        }
        mod postgres {
            $(#[test] fn $test() {
                // Skipped (the cluster said why) where PostgreSQL is not installed, outside CI.
                if let Some(db) = crate::testing::Db::postgres() { super::$test(db) }
            })*
        }
    };
}

conformance! {
    an_empty_store_has_nothing,
    appended_events_read_back_as_recorded,
    a_unit_failing_after_writes_is_undone_alone,
    a_conflicting_unit_is_run_again_and_kept_once,
    a_command_failing_after_it_wrote_is_rolled_back_alone,
    a_stale_expected_version_is_a_conflict_and_appends_nothing,
    units_of_a_batch_see_the_writes_before_them,
    a_duplicate_idempotency_key_returns_the_first_order,
    an_idempotency_key_in_the_log_already_is_a_conflict,
    a_reply_reflects_its_own_events,
    saga_steps_open_and_close_with_their_events,
    payments_are_open_oldest_first,
    the_log_read_from_a_cursor_misses_nothing,
    history_is_the_orders_streams_in_log_order,
    list_filters_and_pages_newest_first,
    ids_are_found_by_their_end,
    counts_follow_the_commits,
    a_rebuild_swaps_in_at_its_last_chunk_only,
    a_rebuild_ending_on_a_chunk_boundary_finishes_with_an_empty_chunk,
    an_abandoned_rebuild_leaves_the_live_read_model,
    a_check_rebuild_reports_differences_and_swaps_nothing,
    catch_up_applies_what_the_read_model_missed,
    a_sound_store_walks_clean,
    the_walk_finds_orphan_streams_stray_rows_and_unknown_steps,
    the_identity_is_kept_until_minted_anew,
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// Now, to the millisecond (what the writer stamps).
fn now() -> Timestamp {
    Timestamp::from_millisecond(Timestamp::now().as_millisecond()).expect("now")
}

fn at(base: Timestamp, seconds: i64) -> Timestamp {
    base.checked_add(SignedDuration::from_secs(seconds)).expect("a time in range")
}

fn new_order() -> OrderId {
    OrderId::from_uuid(Uuid::now_v7())
}

fn total(total: i64) -> Total {
    Total::try_from(total).expect("total")
}

fn placed(user: &str, amount: i64) -> DomainEvent {
    OrderEvent::Placed { user: user.parse().expect("user"), total: total(amount) }.into()
}

fn create_as(user: &str, amount: i64, key: Option<&str>) -> WriteCommand {
    WriteCommand::Create(CreateRequest {
        user: user.parse().expect("user"),
        total: total(amount),
        idempotency_key: key.map(|key| key.parse().expect("key")),
    })
}

fn create(amount: i64) -> WriteCommand {
    create_as("alice", amount, None)
}

/// One command as its own batch, stamped `now` (the writer's commit path, with a chosen time).
fn run_at<S: Store>(db: &mut Db<S>, command: WriteCommand, now: Timestamp) -> WriteResult {
    let (mut answers, _) = writer::commit(&mut db.store, &[command], now, &db.policy).expect("committed");
    answers.pop().expect("one answer")
}

/// Appends to a stream in a unit of work, as a new command would.
fn append(
    tx: &mut dyn WriteTx,
    stream: StreamId,
    expected: Version,
    events: &[DomainEvent],
) -> Result<Vec<RecordedEvent>, StoreError> {
    tx.append(stream, expected, events, &Metadata::new_command(), now())
}

/// Appends and projects, as the engine records a decision.
fn record(
    tx: &mut dyn WriteTx,
    stream: StreamId,
    expected: Version,
    events: &[DomainEvent],
) -> Result<Vec<RecordedEvent>, StoreError> {
    let recorded = append(tx, stream, expected, events)?;
    for event in &recorded {
        tx.project(event)?;
    }
    Ok(recorded)
}

/// An event that was never recorded, to forge the read model with.
fn unrecorded(order: OrderId, event: DomainEvent) -> RecordedEvent {
    let id = Uuid::now_v7();
    let kind = match event {
        DomainEvent::Order(_) => StreamKind::Order,
        DomainEvent::Payment(_) => StreamKind::Payment,
        DomainEvent::Delivery(_) => StreamKind::Delivery,
    };
    RecordedEvent {
        position: Position::new(i64::MAX),
        event_id: id,
        stream: StreamId::new(kind, order),
        version: Version::new(1),
        recorded_at: now(),
        metadata: Metadata { correlation_id: id, causation_id: id, idempotency_key: None },
        event,
    }
}

/// Every event of the log, in log order.
fn log<S: Store>(db: &Db<S>) -> Vec<RecordedEvent> {
    db.read(|reads| reads.events(Position::START, usize::MAX >> 1)).0
}

fn head<S: Store>(db: &mut Db<S>) -> Position {
    db.store.head().expect("head")
}

fn status<S: Store>(db: &Db<S>, order: OrderId) -> Option<OrderStatus> {
    db.view(order).map(|view| view.status)
}

fn order_text(order: OrderId) -> StoredValue {
    StoredValue::text(&order.to_string())
}

fn stored<S: Store>(db: &Db<S>, kind: StepKind, order: OrderId) -> bool {
    db.read(|reads| reads.step_stored(kind, &order_text(order)))
}

/// The outcome of a unit written by hand: `Ok` with what it recorded (kept), or how it ended.
type Step<'a> = Box<dyn FnMut(&mut dyn WriteTx) -> Result<Vec<RecordedEvent>, Outcome> + 'a>;

/// A batch of units written by hand, answered as the engine answers them: a kept unit's events
/// move the checkpoint; a failed, refused or restarted one's are forgotten.
struct Script<'a> {
    steps: Vec<Step<'a>>,
    kept: Vec<Option<Vec<RecordedEvent>>>,
    /// How many times each unit ran, restarts included.
    runs: Vec<usize>,
}

impl<'a> Script<'a> {
    fn new(steps: Vec<Step<'a>>) -> Script<'a> {
        let units = steps.len();
        Script { steps, kept: vec![None; units], runs: vec![0; units] }
    }

    /// Runs it as one batch; the units kept, each with what it recorded.
    fn write<S: Store>(mut self, db: &mut Db<S>) -> (Vec<Option<Vec<RecordedEvent>>>, Vec<usize>) {
        db.store.write(&mut self).expect("the batch is committed");
        (self.kept, self.runs)
    }
}

impl Batch for Script<'_> {
    fn units(&self) -> usize {
        self.steps.len()
    }

    fn wants(&self) -> Wants {
        Wants::default()
    }

    fn run(&mut self, index: usize, tx: &mut dyn WriteTx) -> Outcome {
        self.runs[index] += 1;
        match (self.steps[index])(tx) {
            Ok(recorded) => {
                self.kept[index] = Some(recorded);
                Outcome::Done
            }
            Err(outcome) => {
                self.kept[index] = None;
                outcome
            }
        }
    }

    fn fail(&mut self, index: usize, _: StoreError) {
        self.kept[index] = None;
    }

    fn restart(&mut self) {
        self.kept.iter_mut().for_each(|kept| *kept = None);
    }

    fn last_position(&self) -> Option<Position> {
        self.kept.iter().flatten().flatten().map(|event| event.position).max()
    }
}

/// A unit's own failure after it wrote.
fn failed(conflict: bool) -> Outcome {
    Outcome::Failed { why: "failed on purpose".to_owned(), conflict }
}

/// A store error as a unit's outcome (a conflict may go away when run again).
fn stored_ok<T>(result: Result<T, StoreError>) -> Result<T, Outcome> {
    result.map_err(|error| Outcome::Failed {
        why: error.to_string(),
        conflict: matches!(error, StoreError::Conflict { .. }),
    })
}

// ---------------------------------------------------------------------------------------------
// The write side

fn an_empty_store_has_nothing<S: Store>(mut db: Db<S>) {
    assert_eq!(head(&mut db), Position::START);
    assert_eq!(db.store.newest_recorded_at().expect("newest"), None);
    assert_eq!(db.store.checkpoint().expect("checkpoint"), Position::START);
    let steps = db.store.open_steps().expect("steps");
    assert!(steps.payments.is_empty() && steps.deliveries.is_empty(), "{steps:?}");
    assert_eq!(db.store.catch_up_chunk(10).expect("catch up"), None);
    let (events, at) = db.read(|reads| reads.events(Position::START, 10));
    assert!(events.is_empty());
    assert_eq!(at, Position::START);
    let page = db.read(|reads| reads.list(&ListRequest::default()));
    assert!(page.orders.is_empty() && !page.more);
    let counts = db.read(|reads| reads.counts());
    assert_eq!(
        (counts.head, counts.orders, counts.pending_payments, counts.pending_deliveries, counts.newest),
        (Position::START, 0, 0, 0, None)
    );
    let unknown = new_order();
    assert_eq!(db.read(|reads| reads.watched(unknown)), (Vec::new(), None));
    assert_eq!(db.view(unknown), None);
}

fn appended_events_read_back_as_recorded<S: Store>(mut db: Db<S>) {
    let (answers, recorded) = db.commit(&[create(2), create(3)]).expect("committed");
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert_eq!(recorded.len(), 4, "two orders placed, two payments requested");
    assert_eq!(log(&db), recorded, "what the log reads back is what the append answered");
    assert_eq!(
        recorded.iter().map(|event| event.position).collect::<Vec<_>>(),
        (1..=4).map(Position::new).collect::<Vec<_>>(),
        "positions are dense from 1"
    );
    assert!(recorded.iter().all(|event| event.version == Version::new(1)));
    let newest = recorded.last().expect("events").recorded_at;
    assert_eq!(db.store.newest_recorded_at().expect("newest"), Some(newest));
    assert_eq!(head(&mut db), Position::new(4));
    assert_eq!(
        db.store.checkpoint().expect("checkpoint"),
        Position::new(4),
        "the checkpoint moves with the batch"
    );

    // One stream, read in a unit of work: oldest first, with its versions.
    let order = recorded[0].stream.order;
    db.decide(order);
    let stream = StreamId::order(order);
    let seen = Cell::new(Vec::new());
    Script::new(vec![Box::new(|tx| {
        seen.set(stored_ok(tx.read_stream(stream))?);
        Ok(Vec::new())
    })])
    .write(&mut db);
    let seen = seen.take();
    assert_eq!(seen.iter().map(|event| event.version.get()).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(
        seen.iter().map(|event| event.event.event_type()).collect::<Vec<_>>(),
        ["OrderPlaced", "OrderApproved"]
    );
    assert_eq!(seen[0], recorded[0]);
}

fn a_unit_failing_after_writes_is_undone_alone<S: Store>(mut db: Db<S>) {
    let (a, b, c) = (new_order(), new_order(), new_order());
    let seen_by_last = Cell::new((0, true, 0));
    let (kept, _) = Script::new(vec![
        Box::new(|tx| {
            let recorded = stored_ok(record(tx, StreamId::order(a), Version::NONE, &[placed("alice", 2)]))?;
            stored_ok(tx.open_payment_request(a, total(2), now()))?;
            Ok(recorded)
        }),
        Box::new(|tx| {
            let mut keyed = Metadata::new_command();
            keyed.idempotency_key = Some("key-b".to_owned());
            let recorded =
                stored_ok(tx.append(StreamId::order(b), Version::NONE, &[placed("bob", 4)], &keyed, now()))?;
            stored_ok(tx.project(&recorded[0]))?;
            stored_ok(record(
                tx,
                StreamId::new(StreamKind::Payment, b),
                Version::NONE,
                &[PaymentEvent::Requested { amount: total(4) }.into()],
            ))?;
            stored_ok(tx.open_payment_request(b, total(4), now()))?;
            stored_ok(tx.set_delivery_timer(b, now()))?;
            stored_ok(tx.close_payment_request(a))?;
            Err(failed(false))
        }),
        Box::new(|_| Err(Outcome::Refused { why: "refused on purpose".to_owned() })),
        Box::new(|tx| {
            let recorded = stored_ok(record(tx, StreamId::order(c), Version::NONE, &[placed("carol", 6)]))?;
            let b_events = stored_ok(tx.read_stream(StreamId::order(b)))?.len();
            let b_row = stored_ok(tx.order(b))?.is_none();
            let a_events = stored_ok(tx.read_stream(StreamId::order(a)))?.len();
            seen_by_last.set((b_events, b_row, a_events));
            Ok(recorded)
        }),
    ])
    .write(&mut db);
    assert_eq!(kept.iter().map(Option::is_some).collect::<Vec<_>>(), [true, false, false, true]);
    assert_eq!(
        seen_by_last.get(),
        (0, true, 1),
        "the last unit saw the first's writes and none of the failed one's"
    );

    let events = log(&db);
    assert_eq!(
        events.iter().map(|event| (event.position.get(), event.stream)).collect::<Vec<_>>(),
        [(1, StreamId::order(a)), (2, StreamId::order(c))],
        "the failed unit's events are gone, and positions stay dense"
    );
    assert_eq!(kept[3].as_ref().expect("kept")[0], events[1]);
    assert_eq!(db.read(|reads| reads.watched(b)), (Vec::new(), None));
    assert_eq!(status(&db, a), Some(OrderStatus::Pending));
    assert_eq!(status(&db, c), Some(OrderStatus::Pending));
    assert!(stored(&db, StepKind::Payment, a), "the failed unit's close of another order's step is undone");
    assert!(!stored(&db, StepKind::Payment, b));
    assert!(!stored(&db, StepKind::Delivery, b));
    assert_eq!(db.store.checkpoint().expect("checkpoint"), Position::new(2));

    // Its idempotency key went with it: the key is free for a new order.
    let found = Cell::new(Some(None));
    Script::new(vec![Box::new(|tx| {
        found.set(Some(stored_ok(tx.find_by_idempotency_key("key-b"))?));
        Ok(Vec::new())
    })])
    .write(&mut db);
    assert_eq!(found.take(), Some(None));
    let keyed = db.run(create_as("bob", 4, Some("key-b"))).expect("create");
    assert_ne!(keyed.id, b);
    assert_eq!(db.types(keyed.id), ["OrderPlaced", "PaymentRequested"]);
}

fn a_conflicting_unit_is_run_again_and_kept_once<S: Store>(mut db: Db<S>) {
    let (a, b) = (new_order(), new_order());
    let attempts = Cell::new(0);
    let (kept, runs) = Script::new(vec![
        // Fails with a conflict the first time, after writing; works the second.
        Box::new(|tx| {
            attempts.set(attempts.get() + 1);
            let recorded = stored_ok(record(tx, StreamId::order(a), Version::NONE, &[placed("alice", 2)]))?;
            stored_ok(tx.open_payment_request(a, total(2), now()))?;
            if attempts.get() == 1 { Err(failed(true)) } else { Ok(recorded) }
        }),
        // Always in conflict: run again, then given up and undone.
        Box::new(|tx| {
            stored_ok(record(tx, StreamId::order(b), Version::NONE, &[placed("bob", 4)]))?;
            Err(failed(true))
        }),
    ])
    .write(&mut db);
    assert_eq!(attempts.get(), 2, "run again once after its conflict");
    assert!(kept[0].is_some() && kept[1].is_none());
    assert!(runs[1] >= 3, "a unit in conflict is tried again before it is given up ({} runs)", runs[1]);
    let events = log(&db);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!((events[0].stream, events[0].version), (StreamId::order(a), Version::new(1)));
    assert!(stored(&db, StepKind::Payment, a));
    assert_eq!(db.view(b), None);
}

/// The writer's own path: a command that fails after writing (a payment decision for an order
/// forged into `approved` behind the rules' back) takes nothing else of its batch with it.
fn a_command_failing_after_it_wrote_is_rolled_back_alone<S: Store>(mut db: Db<S>) {
    let poisoned = db.create(2);
    db.forge(|tx| {
        append(tx, StreamId::order(poisoned), Version::new(1), &[OrderEvent::Approved.into()]).map(drop)
    });
    let before = head(&mut db);
    let answers = db.run_batch(vec![
        create(4),
        WriteCommand::DecidePayment { order: poisoned, decision: PaymentDecision::Approved },
        WriteCommand::Cancel(new_order()),
        create(6),
    ]);
    assert_eq!(answers[0].as_ref().expect("first").status, OrderStatus::Pending);
    assert_eq!(answers[1].as_ref().expect_err("the poisoned command fails").code, ErrorCode::Internal);
    assert_eq!(answers[2].as_ref().expect_err("no such order").code, ErrorCode::NotFound);
    assert_eq!(answers[3].as_ref().expect("last").status, OrderStatus::Pending);
    assert_eq!(
        db.types(poisoned),
        ["OrderPlaced", "PaymentRequested", "OrderApproved"],
        "no PaymentApproved left behind"
    );
    assert!(stored(&db, StepKind::Payment, poisoned), "its payment step is still open");
    assert_eq!(head(&mut db).since(before), 4, "two creates of two events each");
    assert_eq!(db.store.checkpoint().expect("checkpoint"), head(&mut db));
}

fn a_stale_expected_version_is_a_conflict_and_appends_nothing<S: Store>(mut db: Db<S>) {
    let order = new_order();
    let stream = StreamId::order(order);
    let conflicts = Cell::new(Vec::new());
    let versions = Cell::new(Vec::new());
    Script::new(vec![Box::new(|tx| {
        let mut found = Vec::new();
        let mut recorded = stored_ok(record(tx, stream, Version::NONE, &[placed("alice", 2)]))?;
        found.push(append(tx, stream, Version::NONE, &[placed("alice", 2)]).map(drop));
        recorded.extend(stored_ok(record(
            tx,
            stream,
            Version::new(1),
            &[OrderEvent::Approved.into(), OrderEvent::Delivered.into()],
        ))?);
        found.push(
            append(
                tx,
                stream,
                Version::new(2),
                &[OrderEvent::Cancelled { reason: CancelReason::CustomerRequest }.into()],
            )
            .map(drop),
        );
        found.push(
            append(tx, stream, Version::new(1), &[OrderEvent::Approved.into(), OrderEvent::Delivered.into()])
                .map(drop),
        );
        conflicts.set(found);
        versions.set(stored_ok(tx.read_stream(stream))?.iter().map(|event| event.version.get()).collect());
        Ok(recorded)
    })])
    .write(&mut db);
    let conflicts = conflicts.take();
    for (result, stale) in conflicts.iter().zip([0, 2, 1]) {
        match result {
            Err(StoreError::Conflict { stream: found, expected }) => {
                assert_eq!((*found, *expected), (stream, Version::new(stale)));
            }
            other => panic!("an append at stale version {stale} must be a conflict: {other:?}"),
        }
    }
    assert_eq!(conflicts.len(), 3);
    assert_eq!(versions.take(), [1, 2, 3], "a conflicting append adds nothing to the stream");
    assert_eq!(db.types(order), ["OrderPlaced", "OrderApproved", "OrderDelivered"]);
    assert_eq!(head(&mut db), Position::new(3));
    assert_eq!(status(&db, order), Some(OrderStatus::Delivered));
}

fn units_of_a_batch_see_the_writes_before_them<S: Store>(mut db: Db<S>) {
    let order = db.create(2);
    let answers = db.run_batch(vec![
        WriteCommand::Cancel(order),
        WriteCommand::Cancel(order),
        WriteCommand::DecidePayment { order, decision: PaymentDecision::Approved },
    ]);
    assert_eq!(answers[0].as_ref().expect("cancel").status, OrderStatus::Cancelled);
    assert_eq!(answers[1].as_ref().expect_err("cancelled already").code, ErrorCode::Rejected);
    // Approved for an order cancelled meanwhile: the money goes back, in the same batch.
    assert_eq!(answers[2].as_ref().expect("decide").status, OrderStatus::Cancelled);
    assert_eq!(
        db.types(order),
        ["OrderPlaced", "PaymentRequested", "OrderCancelled", "PaymentApproved", "PaymentRefunded"]
    );
    assert!(!stored(&db, StepKind::Payment, order));
}

fn a_duplicate_idempotency_key_returns_the_first_order<S: Store>(mut db: Db<S>) {
    let first = db.run(create_as("alice", 2, Some("key-1"))).expect("create");
    let at = head(&mut db);
    let again = db.run(create_as("alice", 2, Some("key-1"))).expect("a retry");
    assert_eq!(again, first, "the retry answers with the first order");
    assert_eq!(head(&mut db), at, "a retry records nothing");
    for (user, amount) in [("alice", 4), ("bob", 2)] {
        let refused = db.run(create_as(user, amount, Some("key-1"))).expect_err("another order with the key");
        assert_eq!(refused.code, ErrorCode::Rejected, "{refused:?}");
    }
    assert_eq!(head(&mut db), at);

    // Twice in one batch: the second finds the first's event in the same transaction.
    let answers = db.run_batch(vec![create_as("bob", 4, Some("key-2")), create_as("bob", 4, Some("key-2"))]);
    let (one, two) = (answers[0].as_ref().expect("first"), answers[1].as_ref().expect("second"));
    assert_eq!(one.id, two.id);
    assert_eq!(db.read(|reads| reads.counts()).orders, 2);
    assert_eq!(db.types(one.id), ["OrderPlaced", "PaymentRequested"]);

    // The key is on the event that placed the order, and only there.
    let with_key: Vec<_> = log(&db)
        .into_iter()
        .filter_map(|event| event.metadata.idempotency_key.map(|key| (key, event.stream)))
        .collect();
    assert_eq!(
        with_key,
        [("key-1".to_owned(), StreamId::order(first.id)), ("key-2".to_owned(), StreamId::order(one.id))]
    );
    let found = Cell::new(None);
    Script::new(vec![Box::new(|tx| {
        found.set(Some((
            stored_ok(tx.find_by_idempotency_key("key-1"))?,
            stored_ok(tx.find_by_idempotency_key("key-3"))?,
        )));
        Ok(Vec::new())
    })])
    .write(&mut db);
    let (known, unknown) = found.take().expect("ran");
    let known = known.expect("the first order's event");
    assert_eq!((known.stream, known.event.clone()), (StreamId::order(first.id), placed("alice", 2)));
    assert_eq!(known, log(&db)[0]);
    assert_eq!(unknown, None);
}

/// Two writers placing an order with one key (two daemons, on PostgreSQL): the second append
/// is a conflict, so that its command runs again and finds the first order.
fn an_idempotency_key_in_the_log_already_is_a_conflict<S: Store>(mut db: Db<S>) {
    let first = db.run(create_as("alice", 2, Some("key-1"))).expect("create");
    let other = new_order();
    let found = Cell::new(None);
    Script::new(vec![Box::new(|tx| {
        let mut keyed = Metadata::new_command();
        keyed.idempotency_key = Some("key-1".to_owned());
        found.set(Some(
            tx.append(StreamId::order(other), Version::NONE, &[placed("alice", 2)], &keyed, now()).map(drop),
        ));
        Ok(Vec::new())
    })])
    .write(&mut db);
    let result = found.take().expect("ran");
    assert!(
        matches!(result, Err(StoreError::Conflict { stream, expected: Version::NONE }) if stream == StreamId::order(other)),
        "{result:?}"
    );
    assert_eq!(db.read(|reads| reads.watched(other)), (Vec::new(), None));
    assert_eq!(db.read(|reads| reads.counts()).orders, 1);
    assert_eq!(db.run(create_as("alice", 2, Some("key-1"))).expect("a retry").id, first.id);
}

fn a_reply_reflects_its_own_events<S: Store>(mut db: Db<S>) {
    let created = db.run(create_as("alice", 2, None)).expect("create");
    assert_eq!(
        (created.status, created.total, created.user.as_str(), created.cancel_reason),
        (OrderStatus::Pending, 2, "alice", None)
    );
    assert_eq!(created.created_at, created.updated_at);
    assert_eq!(db.view(created.id).as_ref(), Some(&created));

    let approved = db.decide(created.id);
    assert_eq!(approved.status, OrderStatus::Approved);
    assert_eq!(approved.approved_at, Some(approved.updated_at));
    assert_eq!(approved.created_at, created.created_at);
    assert_eq!(db.view(created.id).as_ref(), Some(&approved));

    let delivered = db.run(WriteCommand::Deliver(created.id)).expect("deliver");
    assert_eq!(
        (delivered.status, delivered.delivered_at),
        (OrderStatus::Delivered, Some(delivered.updated_at))
    );
    assert_eq!(delivered.approved_at, approved.approved_at);
    let refused =
        db.run(WriteCommand::Cancel(created.id)).expect_err("a delivered order cannot be cancelled");
    assert_eq!(refused.code, ErrorCode::Rejected);

    // In one batch, each reply shows its own command's effect.
    let other = db.create(3);
    let answers = db.run_batch(vec![WriteCommand::Cancel(other), create_as("bob", 5, None)]);
    let cancelled = answers[0].as_ref().expect("cancel");
    assert_eq!(
        (cancelled.status, cancelled.cancel_reason, cancelled.cancelled_at),
        (OrderStatus::Cancelled, Some(CancelReason::CustomerRequest), Some(cancelled.updated_at))
    );
    let bob = answers[1].as_ref().expect("create");
    assert_eq!((bob.status, bob.user.as_str(), bob.total), (OrderStatus::Pending, "bob", 5));
    assert_eq!(db.view(other).as_ref(), Some(cancelled));
    assert_eq!(db.view(bob.id).as_ref(), Some(bob));

    let declined = db.create(7);
    let view = db.decide(declined);
    assert_eq!(
        (view.status, view.cancel_reason),
        (OrderStatus::Cancelled, Some(CancelReason::PaymentDeclined))
    );
}

fn saga_steps_open_and_close_with_their_events<S: Store>(mut db: Db<S>) {
    let order = db.create(2);
    let steps = db.store.open_steps().expect("steps");
    assert_eq!(steps.payments.len(), 1, "{steps:?}");
    let payment = &steps.payments[0];
    assert_eq!(
        (&payment.order, &payment.amount, payment.known),
        (&order_text(order), &StoredValue::Integer(2), true)
    );
    assert!(steps.deliveries.is_empty());
    assert!(stored(&db, StepKind::Payment, order));
    assert!(!stored(&db, StepKind::Delivery, order));
    // Only the order id's own text names the row.
    for key in
        [StoredValue::text(&order.to_string().to_uppercase()), StoredValue::Integer(1), StoredValue::Null]
    {
        assert!(!db.read(|reads| reads.step_stored(StepKind::Payment, &key)), "{key:?}");
    }

    let approved = db.decide(order);
    let approved_at = approved.approved_at.expect("approved");
    let steps = db.store.open_steps().expect("steps");
    assert!(steps.payments.is_empty(), "the decision closes the payment step: {steps:?}");
    assert_eq!(steps.deliveries.len(), 1);
    let timer = &steps.deliveries[0];
    let due = at(approved_at, 3);
    assert_eq!(
        (&timer.order, &timer.due_at, timer.known, timer.scheduled_at),
        (&order_text(order), &StoredValue::Integer(due.as_millisecond()), true, Some(approved_at))
    );
    assert_eq!(db.timer(order), Some(due));
    let counts = db.read(|reads| reads.counts());
    assert_eq!((counts.pending_payments, counts.pending_deliveries), (0, 1));

    db.run(WriteCommand::Deliver(order)).expect("deliver");
    let steps = db.store.open_steps().expect("steps");
    assert!(steps.payments.is_empty() && steps.deliveries.is_empty(), "{steps:?}");
    assert!(!stored(&db, StepKind::Delivery, order));

    // A cancel after approval calls the delivery off; a decline closes the payment.
    let cancelled = db.create(4);
    db.decide(cancelled);
    assert!(stored(&db, StepKind::Delivery, cancelled));
    db.run(WriteCommand::Cancel(cancelled)).expect("cancel");
    assert!(!stored(&db, StepKind::Delivery, cancelled));
    assert!(db.types(cancelled).ends_with(&["OrderCancelled", "PaymentRefunded", "DeliveryCancelled"]));
    let declined = db.create(5);
    db.decide(declined);
    assert!(!stored(&db, StepKind::Payment, declined) && !stored(&db, StepKind::Delivery, declined));

    // A pending order cancelled by its customer still awaits the provider; its decision closes it.
    let pending = db.create(6);
    db.run(WriteCommand::Cancel(pending)).expect("cancel");
    assert!(stored(&db, StepKind::Payment, pending));
    db.decide(pending);
    assert!(!stored(&db, StepKind::Payment, pending) && !stored(&db, StepKind::Delivery, pending));
    let steps = db.store.open_steps().expect("steps");
    assert!(steps.payments.is_empty() && steps.deliveries.is_empty(), "{steps:?}");
}

fn payments_are_open_oldest_first<S: Store>(mut db: Db<S>) {
    let base = now();
    let mut orders = Vec::new();
    for (amount, seconds) in [(2, 20), (4, 10), (6, 30), (8, 5)] {
        orders.push(run_at(&mut db, create(amount), at(base, seconds)).expect("create").id);
    }
    let steps = db.store.open_steps().expect("steps");
    let open: Vec<_> = steps.payments.iter().map(|payment| payment.order.clone()).collect();
    assert_eq!(open, [3, 1, 0, 2].map(|index| order_text(orders[index])));
    assert_eq!(
        steps.payments.iter().map(|payment| payment.amount.clone()).collect::<Vec<_>>(),
        [8, 4, 2, 6].map(StoredValue::Integer)
    );
}

// ---------------------------------------------------------------------------------------------
// The read side

fn the_log_read_from_a_cursor_misses_nothing<S: Store>(mut db: Db<S>) {
    let orders: Vec<_> = (1..=5).map(|n| db.create(n)).collect();
    for order in &orders[..3] {
        db.decide(*order);
    }
    db.run(WriteCommand::Cancel(orders[4])).expect("cancel");
    let all = log(&db);
    let end = head(&mut db);
    assert_eq!(all.len() as u64, end.since(Position::START));
    assert_eq!(
        all.iter().map(|event| event.position.get()).collect::<Vec<_>>(),
        (1..=end.get()).collect::<Vec<_>>()
    );
    for piece in [1, 2, 3, 7, all.len(), all.len() + 5] {
        let mut read = Vec::new();
        let mut after = Position::START;
        loop {
            let (events, at) = db.read(|reads| reads.events(after, piece));
            assert_eq!(at, end, "the head comes with every piece");
            assert_eq!(
                events.len(),
                piece.min(all.len() - read.len()),
                "a piece is full unless the log ends"
            );
            let Some(last) = events.last() else { break };
            after = last.position;
            read.extend(events);
        }
        assert_eq!(read, all, "pieces of {piece}");
    }
    assert_eq!(db.read(|reads| reads.events(end, 10)), (Vec::new(), end));

    // What is committed while a reader pages through the log comes after what it has read.
    let (first, _) = db.read(|reads| reads.events(Position::START, 4));
    db.create(8);
    let (rest, at) = db.read(|reads| reads.events(first.last().expect("read").position, usize::MAX >> 1));
    let mut read = first;
    read.extend(rest);
    assert_eq!(at, head(&mut db));
    assert_eq!(read, log(&db));
    assert_eq!(read.len() as u64, at.since(Position::START));
    assert_eq!(db.read(|reads| reads.counts()).head, at);
}

fn history_is_the_orders_streams_in_log_order<S: Store>(mut db: Db<S>) {
    let (a, b) = (db.create(2), db.create(4));
    db.decide(b);
    db.decide(a);
    db.run(WriteCommand::Cancel(a)).expect("cancel");
    let (events, view) = db.read(|reads| reads.watched(a));
    assert_eq!(db.read(|reads| reads.history(a)), events, "history is watched's log part");
    assert_eq!(view, db.view(a));
    assert_eq!(view.map(|view| view.status), Some(OrderStatus::Cancelled));
    let of_a: Vec<_> = log(&db).into_iter().filter(|event| event.stream.order == a).collect();
    assert_eq!(events, of_a, "every event of the order's streams, in log order");
    assert_eq!(
        events.iter().map(|event| event.event.event_type()).collect::<Vec<_>>(),
        [
            "OrderPlaced",
            "PaymentRequested",
            "PaymentApproved",
            "OrderApproved",
            "DeliveryScheduled",
            "OrderCancelled",
            "PaymentRefunded",
            "DeliveryCancelled",
        ]
    );
    assert_eq!(
        events.iter().map(|event| event.stream.kind).collect::<Vec<_>>(),
        [
            StreamKind::Order,
            StreamKind::Payment,
            StreamKind::Payment,
            StreamKind::Order,
            StreamKind::Delivery,
            StreamKind::Order,
            StreamKind::Payment,
            StreamKind::Delivery,
        ]
    );
    // Caused events carry their workflow: one correlation for the whole saga of the create.
    assert_eq!(events[1].metadata.correlation_id, events[0].metadata.correlation_id);
    assert_eq!(events[1].metadata.causation_id, events[0].event_id);
}

/// The orders a test created, with the times it created them at.
struct Listed {
    views: Vec<OrderView>,
}

impl Listed {
    /// The orders that pass `keep`, newest first by (created_at, id), as their indexes.
    fn expected(&self, keep: impl Fn(&OrderView) -> bool) -> Vec<usize> {
        let mut indexes: Vec<usize> =
            (0..self.views.len()).filter(|&index| keep(&self.views[index])).collect();
        indexes.sort_by_key(|&index| std::cmp::Reverse((self.views[index].created_at, self.views[index].id)));
        indexes
    }

    fn index(&self, id: OrderId) -> usize {
        self.views.iter().position(|view| view.id == id).expect("an order the test created")
    }
}

/// Orders of two customers in every state, created at times out of id order, two of them in
/// one batch (the same time: the id decides).
fn list_fixture<S: Store>(db: &mut Db<S>) -> Listed {
    let base = at(now(), -3600);
    let mut ids = Vec::new();
    for (user, amount, seconds) in
        [("alice", 2, 50), ("bob", 3, 10), ("alice", 4, 30), ("bob", 6, 40), ("alice", 5, 20)]
    {
        ids.push(run_at(db, create_as(user, amount, None), at(base, seconds)).expect("create").id);
    }
    let (answers, _) = writer::commit(
        &mut db.store,
        &[create_as("alice", 8, None), create_as("bob", 10, None)],
        at(base, 30),
        &db.policy,
    )
    .expect("committed");
    ids.extend(answers.into_iter().map(|answer| answer.expect("create").id));
    // Decided and moved on: 0 approved, 1 declined, 3 delivered, 4 cancelled by alice.
    for index in [0, 1, 3] {
        db.decide(ids[index]);
    }
    db.run(WriteCommand::Deliver(ids[3])).expect("deliver");
    db.run(WriteCommand::Cancel(ids[4])).expect("cancel");
    let views = ids.iter().map(|id| db.view(*id).expect("a row")).collect();
    Listed { views }
}

/// Short ids (issue 18): the orders whose id ends with some hex digits, in id order, as many as
/// asked for; digits in the middle of an id, or the dashes, do not count.
fn ids_are_found_by_their_end<S: Store>(mut db: Db<S>) {
    let ids: Vec<OrderId> = [
        "01a23c7b-553d-74b9-a343-07169aac6db2",
        "01a23c7b-5536-7572-9e5b-2d3f9aac6db2",
        "01a23c7b-552f-729e-8062-a45233e51f9a",
        "01a23c7b-5528-75cd-b049-9aac6db2358f",
    ]
    .iter()
    .map(|id| id.parse().expect("an id"))
    .collect();
    let steps: Vec<Step<'_>> = ids
        .iter()
        .map(|id| {
            let id = *id;
            Box::new(move |tx: &mut dyn WriteTx| {
                stored_ok(record(
                    tx,
                    StreamId::new(StreamKind::Order, id),
                    Version::NONE,
                    &[placed("alice", 2)],
                ))
            }) as Step<'_>
        })
        .collect();
    Script::new(steps).write(&mut db);
    let ending = |suffix: &str, limit: usize| db.read(|reads| reads.ids_ending_with(suffix, limit));
    assert_eq!(ending("9aac6db2", 10), vec![ids[1], ids[0]], "in id order");
    assert_eq!(ending("9aac6db2", 1), vec![ids[1]], "as many as asked for");
    assert_eq!(ending("169aac6db2", 10), vec![ids[0]]);
    assert_eq!(ending("3f9aac6db2", 10), vec![ids[1]]);
    assert_eq!(ending("a34307169aac6db2", 10), vec![ids[0]], "across a dash");
    assert_eq!(ending("33e51f9a", 10), vec![ids[2]]);
    assert!(ending("00000000", 10).is_empty());
    assert!(ending("553d74b9", 10).is_empty(), "the middle of an id is not its end");
}

/// Which orders a request should list.
type Filter = Box<dyn Fn(&OrderView) -> bool>;

/// The requests the list tests make, each with the filter the expectation applies.
fn list_requests(listed: &Listed) -> Vec<(ListRequest, Filter)> {
    let user = |name: &str| Some(name.parse().expect("user"));
    let since = listed.views[2].created_at;
    vec![
        (ListRequest::default(), Box::new(|_| true)),
        (
            ListRequest { user: user("alice"), ..ListRequest::default() },
            Box::new(|view| view.user == "alice"),
        ),
        (ListRequest { user: user("nobody"), ..ListRequest::default() }, Box::new(|_| false)),
        (
            ListRequest { status: Some(OrderStatus::Pending), ..ListRequest::default() },
            Box::new(|view| view.status == OrderStatus::Pending),
        ),
        (
            ListRequest { status: Some(OrderStatus::Cancelled), user: user("bob"), ..ListRequest::default() },
            Box::new(|view| view.status == OrderStatus::Cancelled && view.user == "bob"),
        ),
        (
            ListRequest { since: Some(since), ..ListRequest::default() },
            Box::new(move |view| view.created_at >= since),
        ),
        (
            ListRequest { since: Some(since), user: user("alice"), ..ListRequest::default() },
            Box::new(move |view| view.created_at >= since && view.user == "alice"),
        ),
    ]
}

fn list_filters_and_pages_newest_first<S: Store>(mut db: Db<S>) {
    let listed = list_fixture(&mut db);
    for (request, keep) in list_requests(&listed) {
        let expected = listed.expected(keep);
        let page = db.read(|reads| reads.list(&request));
        let found: Vec<_> = page.orders.iter().map(|view| listed.index(view.id)).collect();
        assert_eq!(found, expected, "{request:?}");
        let counted = db.read(|reads| reads.count_orders(&ListRequest { limit: Some(1), ..request.clone() }));
        assert_eq!(counted, expected.len() as u64, "counted, the limit aside: {request:?}");
        assert!(!page.more, "{request:?}");
        for view in &page.orders {
            assert_eq!(
                Some(view),
                listed.views.get(listed.index(view.id)),
                "a page shows the rows as they are"
            );
        }

        // The same, two at a time, each page after the last one's last order.
        let mut paged = Vec::new();
        let mut before = None;
        loop {
            let request = ListRequest { limit: Some(2), before, ..request.clone() };
            let page = db.read(|reads| reads.list(&request));
            assert!(page.orders.len() <= 2);
            paged.extend(page.orders.iter().map(|view| listed.index(view.id)));
            assert_eq!(page.more, paged.len() < expected.len(), "{request:?}");
            if !page.more {
                break;
            }
            before = page.orders.last().map(|view| view.id);
        }
        assert_eq!(paged, expected, "paged: {request:?}");
    }

    let everyone = listed.expected(|_| true);
    let one = db.read(|reads| reads.list(&ListRequest { limit: Some(0), ..ListRequest::default() }));
    assert_eq!(one.orders.iter().map(|view| listed.index(view.id)).collect::<Vec<_>>(), everyone[..1]);
    assert!(one.more, "a limit of 0 is taken as 1");
    let unknown =
        db.read(|reads| reads.list(&ListRequest { before: Some(new_order()), ..ListRequest::default() }));
    assert!(unknown.orders.is_empty() && !unknown.more, "a cursor naming no order gives an empty page");
    // The cursor may be another customer's order: alice's orders older than bob's.
    let bob = listed.views[3].id;
    let user = Some("alice".parse().expect("user"));
    let page =
        db.read(|reads| reads.list(&ListRequest { before: Some(bob), user, ..ListRequest::default() }));
    let cursor = (listed.views[3].created_at, bob);
    assert_eq!(
        page.orders.iter().map(|view| listed.index(view.id)).collect::<Vec<_>>(),
        listed.expected(|view| view.user == "alice" && (view.created_at, view.id) < cursor)
    );
}

/// The same commands give the same pages on every backend (each order named by when the test
/// created it, as ids and times differ between runs).
#[test]
fn list_pages_agree_between_backends() {
    fn pages<S: Store>(mut db: Db<S>) -> Vec<(Vec<usize>, bool)> {
        let listed = list_fixture(&mut db);
        let mut pages = Vec::new();
        for (request, _) in list_requests(&listed) {
            for limit in [None, Some(1), Some(3)] {
                let page = db.read(|reads| reads.list(&ListRequest { limit, ..request.clone() }));
                pages.push((page.orders.iter().map(|view| listed.index(view.id)).collect(), page.more));
            }
        }
        pages
    }
    let sqlite = pages(Db::new());
    assert_eq!(pages(Db::memory()), sqlite);
    assert!(sqlite.iter().any(|(page, _)| page.len() > 3), "the requests found something");
}

fn counts_follow_the_commits<S: Store>(mut db: Db<S>) {
    let (a, b, c) = (db.create(2), db.create(3), db.create(4));
    db.decide(a);
    db.decide(b);
    let counts = db.read(|reads| reads.counts());
    let newest = log(&db).last().expect("events").recorded_at;
    assert_eq!(
        (counts.head, counts.orders, counts.pending_payments, counts.pending_deliveries, counts.newest),
        (head(&mut db), 3, 1, 1, Some(newest))
    );
    assert_eq!(db.store.newest_recorded_at().expect("newest"), Some(newest));
    db.decide(c);
    let counts = db.read(|reads| reads.counts());
    assert_eq!((counts.orders, counts.pending_payments, counts.pending_deliveries), (3, 0, 2));
}

// ---------------------------------------------------------------------------------------------
// Replay

/// Three orders; the live row of the third forged into `approved` while the log says pending:
/// what tells a rebuilt read model from the live one.
fn rebuild_fixture<S: Store>(db: &mut Db<S>) -> (Vec<OrderId>, OrderId) {
    let orders = vec![db.create(2), db.create(3), db.create(4)];
    db.decide(orders[0]);
    db.decide(orders[1]);
    let forged = orders[2];
    db.forge(|tx| tx.project(&unrecorded(forged, OrderEvent::Approved.into())));
    assert_eq!(status(db, forged), Some(OrderStatus::Approved));
    (orders, forged)
}

fn a_rebuild_swaps_in_at_its_last_chunk_only<S: Store>(mut db: Db<S>) {
    let (orders, forged) = rebuild_fixture(&mut db);
    let views: Vec<_> = orders[..2].iter().map(|order| db.view(*order)).collect();
    let started = db.store.rebuild_start(false).expect("start");
    assert_eq!(started, head(&mut db));

    let first = db.store.rebuild_chunk(false, Position::START, 3).expect("chunk");
    assert_eq!((first.read, first.last), (3, Position::new(3)));
    assert!(first.finished.is_none());
    assert_eq!(status(&db, forged), Some(OrderStatus::Approved), "the live read model is untouched");
    // The live read model keeps receiving commits meanwhile; the rebuild reads them too.
    let late = db.create(6);
    assert_eq!(status(&db, late), Some(OrderStatus::Pending));
    let checkpoint = db.store.checkpoint().expect("checkpoint");
    assert_eq!(checkpoint, head(&mut db));

    let mut after = first.last;
    let mut read = first.read;
    let rebuilt = loop {
        let chunk = db.store.rebuild_chunk(false, after, 3).expect("chunk");
        read += chunk.read;
        after = chunk.last;
        if let Some(rebuilt) = chunk.finished {
            assert!(chunk.read < 3, "only the chunk that finds the end finishes");
            break rebuilt;
        }
        assert_eq!(chunk.read, 3);
        assert_eq!(status(&db, forged), Some(OrderStatus::Approved), "untouched until the last chunk");
    };
    assert_eq!(read as u64, head(&mut db).since(Position::START));
    assert_eq!(after, head(&mut db));
    assert_eq!((rebuilt.orders, rebuilt.differences), (4, 0));
    assert!(rebuilt.examples.is_empty());
    assert_eq!(status(&db, forged), Some(OrderStatus::Pending), "the rebuilt rows are the log's");
    assert_eq!(status(&db, late), Some(OrderStatus::Pending));
    assert_eq!(orders[..2].iter().map(|order| db.view(*order)).collect::<Vec<_>>(), views);
    assert_eq!(db.store.checkpoint().expect("checkpoint"), head(&mut db));
    assert_eq!(db.read(|reads| reads.counts()).orders, 4);
    assert!(!db.store.drop_leftovers().expect("leftovers"), "a finished rebuild leaves nothing behind");
    // Commands go on as before on the swapped-in read model.
    assert_eq!(db.decide(late).status, OrderStatus::Approved);
}

fn a_rebuild_ending_on_a_chunk_boundary_finishes_with_an_empty_chunk<S: Store>(mut db: Db<S>) {
    let (_, forged) = rebuild_fixture(&mut db);
    let end = db.store.rebuild_start(false).expect("start");
    let size = usize::try_from(end.get()).expect("size");
    let full = db.store.rebuild_chunk(false, Position::START, size).expect("chunk");
    assert_eq!((full.read, full.last), (size, end));
    assert!(full.finished.is_none(), "a full chunk may not be the last");
    assert_eq!(status(&db, forged), Some(OrderStatus::Approved));
    let empty = db.store.rebuild_chunk(false, end, size).expect("chunk");
    assert_eq!((empty.read, empty.last), (0, end));
    assert_eq!(empty.finished.expect("finished").orders, 3);
    assert_eq!(status(&db, forged), Some(OrderStatus::Pending));
}

fn an_abandoned_rebuild_leaves_the_live_read_model<S: Store>(mut db: Db<S>) {
    let (_, forged) = rebuild_fixture(&mut db);
    let checkpoint = db.store.checkpoint().expect("checkpoint");
    for check in [false, true] {
        db.store.rebuild_start(check).expect("start");
        db.store.rebuild_chunk(check, Position::START, 2).expect("chunk");
        db.store.rebuild_abandon(check).expect("abandon");
        assert_eq!(status(&db, forged), Some(OrderStatus::Approved), "check: {check}");
    }
    assert!(!db.store.drop_leftovers().expect("leftovers"), "an abandoned rebuild leaves nothing");
    // One the daemon died in the middle of is dropped on the next start.
    db.store.rebuild_start(false).expect("start");
    db.store.rebuild_chunk(false, Position::START, 2).expect("chunk");
    assert!(db.store.drop_leftovers().expect("leftovers"));
    assert!(!db.store.drop_leftovers().expect("leftovers"));
    assert_eq!(status(&db, forged), Some(OrderStatus::Approved));
    assert_eq!(db.store.checkpoint().expect("checkpoint"), checkpoint);
    // And a rebuild after all that works.
    db.store.rebuild_start(false).expect("start");
    let chunk = db.store.rebuild_chunk(false, Position::START, 1000).expect("chunk");
    assert_eq!(chunk.finished.expect("finished").orders, 3);
    assert_eq!(status(&db, forged), Some(OrderStatus::Pending));
}

fn a_check_rebuild_reports_differences_and_swaps_nothing<S: Store>(mut db: Db<S>) {
    let (orders, forged) = rebuild_fixture(&mut db);
    let stray = new_order();
    db.forge(|tx| tx.project(&unrecorded(stray, placed("mallory", 9))));
    let live_forged = db.view(forged).expect("row");
    let checkpoint = db.store.checkpoint().expect("checkpoint");

    assert_eq!(db.store.rebuild_start(true).expect("start"), head(&mut db));
    let first = db.store.rebuild_chunk(true, Position::START, 4).expect("chunk");
    assert!(first.finished.is_none());
    let finished = db.store.rebuild_chunk(true, first.last, 1000).expect("chunk");
    let rebuilt = finished.finished.expect("finished");
    assert_eq!(first.read + finished.read, log(&db).len());
    assert_eq!(rebuilt.differences, 2, "{rebuilt:?}");
    assert_eq!(rebuilt.orders, 4, "the live read model's orders");
    let mut expected_ids = vec![forged.to_string(), stray.to_string()];
    expected_ids.sort();
    assert_eq!(rebuilt.examples.iter().map(|example| example.id.clone()).collect::<Vec<_>>(), expected_ids);

    let example = rebuilt.examples.iter().find(|example| example.id == forged.to_string()).expect("forged");
    let (live, fresh) =
        (example.live.as_ref().expect("live row"), example.rebuilt.as_ref().expect("rebuilt row"));
    let columns = |row: &serde_json::Value| {
        let mut keys: Vec<String> = row.as_object().expect("an object").keys().cloned().collect();
        keys.sort();
        keys
    };
    let mut expected_columns = [
        "approved_at",
        "cancel_reason",
        "cancelled_at",
        "created_at",
        "delivered_at",
        "id",
        "status",
        "total",
        "updated_at",
        "user",
    ]
    .map(str::to_owned)
    .to_vec();
    expected_columns.sort();
    assert_eq!(columns(live), expected_columns);
    assert_eq!(columns(fresh), expected_columns);
    assert_eq!((&live["status"], &fresh["status"]), (&"approved".into(), &"pending".into()));
    assert_eq!(
        (&live["total"], &live["user"], &live["id"]),
        (&4.into(), &"alice".into(), &forged.to_string().into())
    );
    assert_eq!(fresh["created_at"], serde_json::Value::from(live_forged.created_at.as_millisecond()));
    let approved_at = live_forged.approved_at.expect("forged approval").as_millisecond();
    assert_eq!(
        (&live["approved_at"], &fresh["approved_at"]),
        (&approved_at.into(), &serde_json::Value::Null)
    );
    assert_eq!(
        (&live["cancel_reason"], &fresh["cancel_reason"]),
        (&serde_json::Value::Null, &serde_json::Value::Null)
    );
    let stray_example =
        rebuilt.examples.iter().find(|example| example.id == stray.to_string()).expect("stray");
    assert_eq!(stray_example.live.as_ref().map(|row| row["user"].clone()), Some("mallory".into()));
    assert_eq!(stray_example.rebuilt, None);

    // Nothing was swapped in.
    assert_eq!(db.view(forged), Some(live_forged));
    assert!(db.view(stray).is_some());
    assert_eq!(db.store.checkpoint().expect("checkpoint"), checkpoint);
    assert!(!db.store.drop_leftovers().expect("leftovers"));

    // A real rebuild makes the check come out clean.
    db.store.rebuild_start(false).expect("start");
    db.store.rebuild_chunk(false, Position::START, 1000).expect("rebuild").finished.expect("finished");
    db.store.rebuild_start(true).expect("start");
    let clean =
        db.store.rebuild_chunk(true, Position::START, 1000).expect("check").finished.expect("finished");
    assert_eq!((clean.differences, clean.examples.len(), clean.orders), (0, 0, orders.len() as u64));
}

fn catch_up_applies_what_the_read_model_missed<S: Store>(mut db: Db<S>) {
    db.create(2);
    let checkpoint = db.store.checkpoint().expect("checkpoint");
    assert_eq!(checkpoint, head(&mut db));
    // Appended behind the read model's back: the checkpoint stays where it was.
    let (x, y) = (new_order(), new_order());
    db.forge(|tx| {
        append(tx, StreamId::order(x), Version::NONE, &[placed("xavier", 2)])?;
        append(
            tx,
            StreamId::new(StreamKind::Payment, x),
            Version::NONE,
            &[PaymentEvent::Requested { amount: total(2) }.into()],
        )?;
        append(tx, StreamId::order(x), Version::new(1), &[OrderEvent::Approved.into()])?;
        append(tx, StreamId::order(y), Version::NONE, &[placed("yvonne", 3)])?;
        Ok(())
    });
    assert_eq!(db.store.checkpoint().expect("checkpoint"), checkpoint);
    assert_eq!((db.view(x), db.view(y)), (None, None));

    assert_eq!(db.store.catch_up_chunk(3).expect("catch up"), Some(3));
    assert_eq!(db.store.checkpoint().expect("checkpoint"), Position::new(checkpoint.get() + 3));
    assert_eq!((status(&db, x), status(&db, y)), (Some(OrderStatus::Approved), None));
    assert_eq!(db.store.catch_up_chunk(3).expect("catch up"), Some(1));
    assert_eq!(status(&db, y), Some(OrderStatus::Pending));
    assert_eq!(db.view(y).map(|view| view.user), Some("yvonne".to_owned()));
    assert_eq!(db.store.checkpoint().expect("checkpoint"), head(&mut db));
    assert_eq!(db.store.catch_up_chunk(3).expect("catch up"), None);
}

// ---------------------------------------------------------------------------------------------
// The checker's walk, and the identity

/// What the checker's walk visits, and what it found besides.
fn walk<S: Store>(db: &Db<S>) -> (Vec<crate::store::StoredOrder>, crate::store::Walked) {
    let mut visited = Vec::new();
    let walked = db.read(|reads| {
        reads.walk(&mut |walking| match walking {
            Walking::Order(order) => visited.push(*order),
            Walking::MalformedStream(stream) => panic!("no stream is malformed here: {stream}"),
        })
    });
    (visited, walked)
}

fn a_sound_store_walks_clean<S: Store>(mut db: Db<S>) {
    let (approved, declined, pending, delivered) = (db.create(2), db.create(3), db.create(5), db.create(6));
    db.decide(approved);
    db.decide(declined);
    db.decide(delivered);
    db.run(WriteCommand::Deliver(delivered)).expect("deliver");
    let (visited, walked) = walk(&db);
    assert_eq!(
        visited.iter().map(|order| order.id).collect::<Vec<_>>(),
        [approved, declined, pending, delivered]
    );
    let by_id: HashMap<_, _> = visited.iter().map(|order| (order.id, order)).collect();
    for order in &visited {
        let streams = [&order.order, &order.payment, &order.delivery];
        for (kind, events) in StreamKind::ALL.iter().zip(streams) {
            assert!(events.iter().all(|event| event.stream == StreamId::new(*kind, order.id)));
            assert!(events.windows(2).all(|pair| pair[1].version == pair[0].version.next()));
        }
        assert_eq!(order.view.as_ref().expect("a row").as_ref(), db.view(order.id).as_ref());
    }
    let types =
        |events: &[RecordedEvent]| events.iter().map(|event| event.event.event_type()).collect::<Vec<_>>();
    assert_eq!(types(&by_id[&delivered].order), ["OrderPlaced", "OrderApproved", "OrderDelivered"]);
    assert_eq!(types(&by_id[&delivered].delivery), ["DeliveryScheduled", "DeliveryCompleted"]);
    assert_eq!(types(&by_id[&declined].payment), ["PaymentRequested", "PaymentDeclined"]);
    assert!(by_id[&pending].delivery.is_empty());
    let rows = |id: OrderId| (by_id[&id].payment_row.clone(), by_id[&id].timer_row.clone());
    assert_eq!(rows(pending), (Some(StoredValue::Integer(5)), None));
    let due = db.timer(approved).expect("a timer").as_millisecond();
    assert_eq!(rows(approved), (None, Some(StoredValue::Integer(due))));
    assert_eq!(rows(declined), (None, None));
    assert_eq!(rows(delivered), (None, None));

    assert!(
        walked.damage.is_empty() && walked.orphan_streams.is_empty() && walked.stray_rows.is_empty(),
        "{walked:?}"
    );
    let end = head(&mut db);
    assert_eq!((walked.counted, walked.head, walked.checkpoint), (end.since(Position::START), end, end));
    assert_eq!(
        walked.steps.payments.iter().map(|payment| payment.order.clone()).collect::<Vec<_>>(),
        [order_text(pending)]
    );
    assert_eq!(
        walked.steps.deliveries.iter().map(|delivery| delivery.order.clone()).collect::<Vec<_>>(),
        [order_text(approved)]
    );
}

fn the_walk_finds_orphan_streams_stray_rows_and_unknown_steps<S: Store>(mut db: Db<S>) {
    let sound = db.create(2);
    let (orphan, stray, unknown) = (new_order(), new_order(), new_order());
    db.forge(|tx| {
        append(
            tx,
            StreamId::new(StreamKind::Payment, orphan),
            Version::NONE,
            &[PaymentEvent::Requested { amount: total(2) }.into()],
        )?;
        tx.project(&unrecorded(stray, placed("mallory", 9)))?;
        tx.open_payment_request(unknown, total(4), now())?;
        tx.set_delivery_timer(unknown, now())?;
        Ok(())
    });
    let (visited, walked) = walk(&db);
    assert_eq!(visited.iter().map(|order| order.id).collect::<Vec<_>>(), [sound]);
    assert_eq!(walked.orphan_streams, [StreamId::new(StreamKind::Payment, orphan).to_string()]);
    assert_eq!(walked.stray_rows, [stray.to_string()]);
    let payments: HashMap<_, _> =
        walked.steps.payments.iter().map(|payment| (payment.order.to_string(), payment.known)).collect();
    assert_eq!(payments, HashMap::from([(sound.to_string(), true), (unknown.to_string(), false)]));
    let [timer] = walked.steps.deliveries.as_slice() else { panic!("one timer: {:?}", walked.steps) };
    assert_eq!((&timer.order, timer.known, timer.scheduled_at), (&order_text(unknown), false, None));
    assert_eq!(walked.counted, 3);
    assert_eq!(walked.checkpoint, Position::new(2), "forged events do not move the checkpoint");
}

fn the_identity_is_kept_until_minted_anew<S: Store>(mut db: Db<S>) {
    assert_eq!(db.store.found().expect("found").id, None, "a new store has no identity");
    let id = db.store.ensure_identity(false).expect("ensure");
    assert_eq!(db.store.ensure_identity(false).expect("again"), id);
    db.create(2);
    let found = db.store.found().expect("found");
    assert_eq!((found.id, found.head), (Some(id), 2));
    let minted = db.store.ensure_identity(true).expect("mint");
    assert_ne!(minted, id);
    assert_eq!(db.store.found().expect("found").id, Some(minted));
    assert_eq!(db.store.ensure_identity(false).expect("kept"), minted);
}

// ---------------------------------------------------------------------------------------------
// The in-memory store's own (its test fault, its snapshots)

/// A commit that fails stores nothing of its batch, and the next one works.
#[test]
fn memory_a_failed_commit_stores_nothing() {
    let mut db = Db::memory();
    let kept = db.create(2);
    db.store.fail_next_commit();
    let failed = db.commit(&[WriteCommand::Cancel(kept)]);
    assert!(matches!(failed, Err(StoreError::Unavailable { .. })), "{failed:?}");
    assert_eq!(status(&db, kept), Some(OrderStatus::Pending));
    assert_eq!(head(&mut db), Position::new(2));
    assert_eq!(db.store.checkpoint().expect("checkpoint"), Position::new(2));
    let cancelled = db.run(WriteCommand::Cancel(kept)).expect("cancel");
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
}

/// A read works on the state committed when it began, whatever is committed meanwhile.
#[test]
fn memory_a_read_is_one_snapshot() {
    let mut db = Db::memory();
    let reads = db.store.reads().expect("reads");
    let order = db.create(2);
    let mut seen = None;
    reads
        .with_reads(&mut |reads| {
            let before = reads.counts().expect("counts").head;
            db.decide(order);
            let after = reads.counts().expect("counts").head;
            let view = reads.order(order).expect("order").map(|view| view.status);
            seen = Some((before, after, view));
        })
        .expect("read");
    assert_eq!(seen, Some((Position::new(2), Position::new(2), Some(OrderStatus::Pending))));
    assert_eq!(status(&db, order), Some(OrderStatus::Approved));
}
