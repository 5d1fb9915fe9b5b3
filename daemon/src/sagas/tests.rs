//! Saga steps against a real database, without the socket: each step is idempotent, and the
//! open-step tables move with the events that open and close them.

use jiff::SignedDuration;
use orders_shared::{OrderStatus, PaymentDecision, Total};

use crate::command::WriteCommand;
use crate::steps::{self, StuckSteps};
use crate::store::{Store, StoredValue};
use crate::testing::Db;

#[test]
fn a_new_order_opens_a_payment_request_in_the_same_transaction() {
    let mut db = Db::memory();
    let order = db.create(2);
    assert_eq!(db.types(order), ["OrderPlaced", "PaymentRequested"]);
    assert_eq!(db.open_payment(order).map(Total::get), Some(2));
    assert_eq!(db.timer(order), None);
}

#[test]
fn an_approved_payment_approves_the_order_and_arms_its_delivery_timer() {
    let mut db = Db::memory();
    let order = db.create(2);
    let view = db.decide(order);
    assert_eq!(view.status, OrderStatus::Approved);
    assert_eq!(
        db.types(order),
        ["OrderPlaced", "PaymentRequested", "PaymentApproved", "OrderApproved", "DeliveryScheduled"]
    );
    assert_eq!(db.open_payment(order), None, "the payment step is closed");
    let due = db.timer(order).expect("a delivery timer");
    let approved = view.approved_at.expect("approved at");
    assert_eq!(due.duration_since(approved), SignedDuration::from_secs(3));
}

#[test]
fn a_declined_payment_cancels_the_order() {
    let mut db = Db::memory();
    let order = db.create(3);
    let view = db.decide(order);
    assert_eq!(view.status, OrderStatus::Cancelled);
    assert_eq!(view.cancel_reason, Some(orders_shared::CancelReason::PaymentDeclined));
    assert_eq!(db.types(order), ["OrderPlaced", "PaymentRequested", "PaymentDeclined", "OrderCancelled"]);
    assert_eq!((db.open_payment(order), db.timer(order)), (None, None));
}

#[test]
fn a_payment_decision_re_run_after_a_crash_records_nothing_twice() {
    let mut db = Db::memory();
    let order = db.create(2);
    db.decide(order);
    let before = db.types(order);
    for decision in [PaymentDecision::Approved, PaymentDecision::Declined { reason: "late".into() }] {
        let view = db.run(WriteCommand::DecidePayment { order, decision }).expect("a re-run is no error");
        assert_eq!(view.status, OrderStatus::Approved);
    }
    assert_eq!(db.types(order), before);
}

#[test]
fn a_delivery_re_run_after_a_crash_records_nothing_twice() {
    let mut db = Db::memory();
    let order = db.create(2);
    db.decide(order);
    let view = db.run(WriteCommand::Deliver(order)).expect("deliver");
    assert_eq!(view.status, OrderStatus::Delivered);
    assert_eq!(db.timer(order), None, "the timer goes with the delivery");
    let before = db.types(order);
    assert_eq!(before.iter().filter(|t| **t == "OrderDelivered").count(), 1);
    assert_eq!(db.run(WriteCommand::Deliver(order)).expect("re-run").status, OrderStatus::Delivered);
    assert_eq!(db.types(order), before);
}

#[test]
fn cancelling_an_approved_order_refunds_it_and_calls_off_the_delivery() {
    let mut db = Db::memory();
    let order = db.create(2);
    db.decide(order);
    let view = db.run(WriteCommand::Cancel(order)).expect("cancel");
    assert_eq!(view.cancel_reason, Some(orders_shared::CancelReason::CustomerRequest));
    assert_eq!(db.types(order)[5..], ["OrderCancelled", "PaymentRefunded", "DeliveryCancelled"]);
    assert_eq!(db.timer(order), None);
    // The timer fires anyway (it was already in flight): the cancel has won.
    assert_eq!(db.run(WriteCommand::Deliver(order)).expect("late delivery").status, OrderStatus::Cancelled);
    assert!(!db.types(order).contains(&"OrderDelivered"));
}

#[test]
fn a_payment_approved_after_the_order_was_cancelled_is_refunded() {
    let mut db = Db::memory();
    let order = db.create(2);
    db.run(WriteCommand::Cancel(order)).expect("cancel while the payment is pending");
    assert!(db.open_payment(order).is_some(), "the provider still has to answer");
    let view = db.decide(order);
    assert_eq!(view.status, OrderStatus::Cancelled);
    assert_eq!(
        db.types(order),
        ["OrderPlaced", "PaymentRequested", "OrderCancelled", "PaymentApproved", "PaymentRefunded"]
    );
    assert_eq!((db.open_payment(order), db.timer(order)), (None, None));
}

#[test]
fn a_delivered_order_cannot_be_cancelled() {
    let mut db = Db::memory();
    let order = db.create(2);
    db.decide(order);
    db.run(WriteCommand::Deliver(order)).expect("deliver");
    let refused = db.run(WriteCommand::Cancel(order)).expect_err("refused");
    assert!(refused.to_string().contains("delivered already"), "{refused}");
    assert!(!db.types(order).contains(&"OrderCancelled"));
}

/// `--delivery-delay 999999999999s` used to be accepted: the due time was clamped to the end of
/// year 9999 and stored, and every later start refused the database ("delivery timer ..."). A
/// stored step the daemon cannot carry out is set aside, kept, and leaves the others to run.
#[test]
fn a_delivery_due_past_the_representable_end_of_time_does_not_stop_the_others() {
    let mut db = Db::with_delivery_delay(SignedDuration::from_secs(999_999_999_999));
    let stuck = db.create(2);
    db.decide(stuck);
    let stored = db.store.open_steps().expect("open steps").deliveries;
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].due_at,
        StoredValue::Integer(jiff::Timestamp::MAX.as_millisecond()),
        "clamped to the end of time"
    );
    db.policy.delivery_delay = SignedDuration::from_secs(3);
    let fine = db.create(4);
    db.decide(fine);

    let open = steps::decode(db.store.open_steps().expect("the open steps load"));
    assert_eq!(open.deliveries.iter().map(|d| d.order).collect::<Vec<_>>(), [fine]);
    assert_eq!(open.stuck.len(), 1);
    assert_eq!(open.stuck[0].step.order, stuck.to_string());
    assert!(open.stuck[0].step.problem.contains("past the last time"), "{:?}", open.stuck[0]);
    assert_eq!(db.timer_rows(), 2, "the stuck step is kept");
}

/// The registry `status` reads forgets a stuck step once its row is gone (its order cancelled).
#[test]
fn a_stuck_step_closed_by_a_cancel_is_no_longer_reported() {
    let mut db = Db::with_delivery_delay(SignedDuration::from_secs(999_999_999_999));
    let order = db.create(2);
    db.decide(order);
    let registry = StuckSteps::default();
    for stuck in steps::decode(db.store.open_steps().expect("load")).stuck {
        registry.add(stuck.clone());
        registry.add(stuck); // counted once
    }
    assert_eq!(db.read(|reads| registry.still_stored(reads)).0, 1);
    db.run(WriteCommand::Cancel(order)).expect("the remedy: cancel the order");
    assert_eq!(db.timer_rows(), 0, "the cancel closes the timer");
    assert_eq!(db.read(|reads| registry.still_stored(reads)), (0, Vec::new()));
}
