//! Saga steps against a real database, without the socket: each step is idempotent, and the
//! open-step tables move with the events that open and close them.

use jiff::SignedDuration;
use orders_shared::{OrderStatus, PaymentDecision, Total};

use crate::commands::WriteCommand;
use crate::testing::Db;

#[test]
fn a_new_order_opens_a_payment_request_in_the_same_transaction() {
    let mut db = Db::new();
    let order = db.create(2);
    assert_eq!(db.types(order), ["OrderPlaced", "PaymentRequested"]);
    assert_eq!(db.open_payment(order).map(Total::get), Some(2));
    assert_eq!(db.timer(order), None);
}

#[test]
fn an_approved_payment_approves_the_order_and_arms_its_delivery_timer() {
    let mut db = Db::new();
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
    let mut db = Db::new();
    let order = db.create(3);
    let view = db.decide(order);
    assert_eq!(view.status, OrderStatus::Cancelled);
    assert_eq!(view.cancel_reason, Some(orders_shared::CancelReason::PaymentDeclined));
    assert_eq!(db.types(order), ["OrderPlaced", "PaymentRequested", "PaymentDeclined", "OrderCancelled"]);
    assert_eq!((db.open_payment(order), db.timer(order)), (None, None));
}

#[test]
fn a_payment_decision_re_run_after_a_crash_records_nothing_twice() {
    let mut db = Db::new();
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
    let mut db = Db::new();
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
    let mut db = Db::new();
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
    let mut db = Db::new();
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
    let mut db = Db::new();
    let order = db.create(2);
    db.decide(order);
    db.run(WriteCommand::Deliver(order)).expect("deliver");
    let refused = db.run(WriteCommand::Cancel(order)).expect_err("refused");
    assert!(refused.to_string().contains("delivered already"), "{refused}");
    assert!(!db.types(order).contains(&"OrderCancelled"));
}
