//! A daemon lost — killed with `kill -9`, or frozen (SIGSTOP) as a host that vanished with its
//! connections open — with an approved order's delivery or a payment in its hands: another
//! daemon carries it out within the stated bound, once, and the lost one, back, does it no more.

use std::time::Duration;

use super::{POLL, SLACK, between, count, time};
use crate::fixture::{TestDaemon, code, stderr};

/// How long after its due time a delivery armed by a lost daemon may wait for another one: every
/// daemon delivers the timers more than 2 s overdue, found at its next poll (every 1 s); and if
/// the lost daemon was frozen inside a write transaction, holding the writers' lock, nobody
/// writes until the database ends that session, after 5 s (`idle_in_transaction_session_timeout`).
const LOST_DELIVERY_AFTER_DUE: Duration = Duration::from_secs(2 + 1 + 5);

/// How much longer than its payment delay the daemon that placed an order holds the lease on its
/// payment: past it, another daemon takes the payment over at its next poll.
const PAYMENT_LEASE_BEYOND_DELAY: Duration = Duration::from_secs(3);

/// A daemon approves an order and is lost before its delivery timer fires: another daemon
/// delivers it within the bound, once, and the lost one, back, delivers nothing more.
fn a_lost_daemons_delivery(lose: impl FnOnce(&mut TestDaemon), come_back: impl FnOnce(&mut TestDaemon)) {
    const DELAY: Duration = Duration::from_secs(1);
    let mut a = TestDaemon::start_with(&[("ORDERS_DELIVERY_DELAY", "1s")]);
    let b = a.join();
    let id = a.create("lost", 2);
    let approved = b.wait_for_status(&id, "approved");
    lose(&mut a);
    let delivered = b.wait_for_status(&id, "delivered");
    let waited = between(time(&approved, "approved_at"), time(&delivered, "delivered_at"));
    eprintln!("a lost daemon's delivery, due {DELAY:?} after approval, made {waited:?} after it");
    assert!(
        waited <= DELAY + LOST_DELIVERY_AFTER_DUE + SLACK,
        "delivered {waited:?} after approval, its daemon lost: the bound is {:?} after the due time",
        LOST_DELIVERY_AFTER_DUE
    );
    come_back(&mut a);
    // The lost daemon's own timer has fired by the time it has placed and delivered another order.
    let again = a.json(["create", "--user", "lost", "--total", "4", "--wait"]);
    assert_eq!(again["status"], "delivered", "{again}");
    for daemon in [&a, &b] {
        let types = daemon.history_types(&id);
        assert_eq!(count(&types, "OrderDelivered"), 1, "{types:?}");
        assert_eq!(count(&types, "DeliveryCompleted"), 1, "{types:?}");
        assert_eq!(daemon.json(["show", &id])["status"], "delivered");
    }
    let check = b.run(["check"]);
    assert_eq!(code(&check), 0, "{}{}", String::from_utf8_lossy(&check.stdout), stderr(&check));
}

/// SIGSTOP: a host that vanished with its connections open (no FIN, no RST).
#[test]
fn a_frozen_daemons_approved_order_is_delivered_by_another_once() {
    a_lost_daemons_delivery(|a| a.send_signal("STOP"), |a| a.send_signal("CONT"));
}

#[test]
fn a_killed_daemons_approved_order_is_delivered_by_another_once() {
    a_lost_daemons_delivery(TestDaemon::kill9, TestDaemon::spawn);
}

/// A daemon killed while the provider decides its payments: another daemon takes them over once
/// their lease has run out, and each payment is decided once.
#[test]
fn a_killed_daemons_payments_are_decided_by_another_once() {
    const DELAY: Duration = Duration::from_secs(2);
    let mut a = TestDaemon::start_with(&[("ORDERS_PAYMENT_DELAY", "2s")]);
    let b = a.join_with(&[("ORDERS_PAYMENT_DELAY", "0")]);
    let even = a.create("lease", 2);
    let odd = a.create("lease", 3);
    a.kill9();
    b.wait_for_status(&even, "delivered");
    let declined = b.wait_for_status(&odd, "cancelled");
    assert_eq!(declined["cancel_reason"], "payment_declined");
    let decided = |id: &str| {
        let history = b.json(["history", id]);
        let events = history.as_array().expect("an array");
        let at = |wanted: &[&str]| {
            let found = events.iter().find(|event| wanted.iter().any(|w| event["type"] == *w));
            time(found.unwrap_or_else(|| panic!("{wanted:?} in {history}")), "recorded_at")
        };
        between(at(&["PaymentRequested"]), at(&["PaymentApproved", "PaymentDeclined"]))
    };
    for id in [&even, &odd] {
        let waited = decided(id);
        eprintln!("a killed daemon's payment decided {waited:?} after it was asked");
        assert!(
            waited <= DELAY + PAYMENT_LEASE_BEYOND_DELAY + POLL + SLACK,
            "payment of {id} decided {waited:?} after it was asked, its daemon killed"
        );
    }
    // Back, the killed daemon decides nothing again.
    a.spawn();
    let again = a.json(["create", "--user", "lease", "--total", "4", "--wait"]);
    assert_eq!(again["status"], "delivered", "{again}");
    for id in [&even, &odd] {
        let types = a.history_types(id);
        assert_eq!(count(&types, "PaymentRequested"), 1, "{types:?}");
        assert_eq!(count(&types, "PaymentApproved") + count(&types, "PaymentDeclined"), 1, "{types:?}");
        assert_eq!(count(&types, "PaymentRefunded"), 0, "{types:?}");
    }
    assert_eq!(b.json(["daemon", "status"])["pending_payments"], 0);
}
