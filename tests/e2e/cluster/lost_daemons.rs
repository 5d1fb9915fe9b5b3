//! A daemon lost — killed with `kill -9`, or frozen (SIGSTOP) as a host that vanished with its
//! connections open — with an approved order's delivery or a payment in its hands: another
//! daemon carries it out within the stated bound, once, and the lost one, back, does it no more.
//! Frozen inside a write, holding the writers' lock, it holds the others up until the database
//! ends its session. Stopped cleanly, it hands its payments over at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::under_load::{
    Acknowledged, assert_acknowledged_stored, assert_check_and_replay_clean, assert_nothing_twice,
    assert_one_order_per_key, wait_until_settled, writers,
};
use super::{POLL, SLACK, assert_dense_and_in_order, between, count, event_log, time};
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

/// How long after it was asked an order's payment was decided, by the database's clock.
fn decided_after(daemon: &TestDaemon, id: &str) -> Duration {
    let history = daemon.json(["history", id]);
    let events = history.as_array().expect("an array");
    let at = |wanted: &[&str]| {
        let found = events.iter().find(|event| wanted.iter().any(|w| event["type"] == *w));
        time(found.unwrap_or_else(|| panic!("{wanted:?} in {history}")), "recorded_at")
    };
    between(at(&["PaymentRequested"]), at(&["PaymentApproved", "PaymentDeclined"]))
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
    for id in [&even, &odd] {
        let waited = decided_after(&b, id);
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

/// A daemon frozen while the provider decides its payments (a host gone quiet, not dead): another
/// daemon takes them over once their lease has run out; thawed, the frozen one hears the
/// provider's answer for a lease it no longer holds and records nothing. Each payment is decided
/// once.
#[test]
fn a_frozen_daemons_payments_are_decided_by_another_and_not_again_when_it_thaws() {
    const DELAY: Duration = Duration::from_secs(2);
    let a = TestDaemon::start_with(&[("ORDERS_PAYMENT_DELAY", "2s")]);
    let b = a.join_with(&[("ORDERS_PAYMENT_DELAY", "0")]);
    let even = a.create("thawed", 2);
    let odd = a.create("thawed", 3);
    a.send_signal("STOP");
    b.wait_for_status(&even, "delivered");
    b.wait_for_status(&odd, "cancelled");
    for id in [&even, &odd] {
        let waited = decided_after(&b, id);
        eprintln!("a frozen daemon's payment decided {waited:?} after it was asked");
        assert!(waited <= DELAY + PAYMENT_LEASE_BEYOND_DELAY + POLL + SLACK, "decided {waited:?} after");
    }
    a.send_signal("CONT");
    // Its provider's answers are in by the time it has placed and delivered another order.
    let again = a.json(["create", "--user", "thawed", "--total", "4", "--wait"]);
    assert_eq!(again["status"], "delivered", "{again}");
    for id in [&even, &odd] {
        let types = b.history_types(id);
        assert_eq!(count(&types, "PaymentRequested"), 1, "{types:?}");
        assert_eq!(count(&types, "PaymentApproved") + count(&types, "PaymentDeclined"), 1, "{types:?}");
        assert_eq!(count(&types, "PaymentRefunded"), 0, "{types:?}");
        assert_eq!(count(&types, "OrderDelivered") + count(&types, "OrderCancelled"), 1, "{types:?}");
    }
    let check = b.run(["check"]);
    assert_eq!(code(&check), 0, "{}{}", String::from_utf8_lossy(&check.stdout), stderr(&check));
}

/// A daemon stopped cleanly (SIGTERM) with payments still with the provider: it lets their
/// leases go as it leaves, so another daemon decides them at its next poll rather than when the
/// leases would have run out; and it leaves the list of daemons at once.
#[test]
fn a_stopped_daemons_payments_go_to_another_at_once_and_it_leaves_the_list() {
    let mut a = TestDaemon::start_with(&[("ORDERS_PAYMENT_DELAY", "1h")]);
    let b = a.join_with(&[("ORDERS_PAYMENT_DELAY", "0")]);
    let even = a.create("leaving", 2);
    let odd = a.create("leaving", 3);
    assert!(a.signal("TERM").success(), "a clean stop");
    let stopped = Instant::now();
    b.wait_for_status(&even, "delivered");
    b.wait_for_status(&odd, "cancelled");
    let waited = stopped.elapsed();
    eprintln!("a stopped daemon's payments decided {waited:?} after it stopped");
    assert!(waited <= POLL + SLACK, "decided {waited:?} after the stop: the lease was not let go");
    for id in [&even, &odd] {
        let types = b.history_types(id);
        assert_eq!(count(&types, "PaymentApproved") + count(&types, "PaymentDeclined"), 1, "{types:?}");
    }
    let status = b.json(["daemon", "status"]);
    let listed: Vec<&Value> = status["daemons"].as_array().expect("the daemons").iter().collect();
    assert_eq!(listed.len(), 1, "the stopped daemon left the list: {status}");
    assert_eq!(listed[0]["pid"], u64::from(b.pid()), "{status}");
}

/// The backend (pid) of a session of `database` idle inside a transaction that holds an advisory
/// lock (the writers' lock), with when that transaction began.
fn writer_lock_held_idle(database: &str) -> Option<String> {
    let cluster = testpg::cluster().expect("the suite's cluster");
    let held = cluster.sql(
        database,
        "SELECT a.pid || ' ' || a.xact_start FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
         WHERE l.locktype = 'advisory' AND l.granted AND a.state = 'idle in transaction' \
         AND a.datname = current_database() LIMIT 1",
    );
    (!held.trim().is_empty()).then(|| held.trim().to_owned())
}

/// A daemon frozen (SIGSTOP) inside a write transaction, holding the writers' lock: the others
/// write again once the database has ended that session (`idle_in_transaction_session_timeout`,
/// 5 s); thawed, the frozen daemon tells the commands of the cut transaction that they failed,
/// connects again by itself and serves on. Nothing acknowledged is lost.
#[test]
fn a_daemon_frozen_inside_a_write_holds_the_others_up_no_longer_than_the_idle_timeout() {
    const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(5);
    let frozen = TestDaemon::start();
    let other = frozen.join();
    let database = frozen.postgres().and_then(|url| url.rsplit('/').next()).expect("a database").to_owned();
    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let threads = writers(&[&frozen], 6, fastrand::u64(..), &stop, &acknowledged);
    // Frozen at a random instant until the instant falls inside one of its writes: the lock held
    // by a session that stays idle in its transaction.
    let mut attempts = 0;
    let frozen_at = loop {
        attempts += 1;
        assert!(attempts <= 200, "the daemon was never frozen inside a write");
        thread::sleep(Duration::from_millis(fastrand::u64(5..50)));
        frozen.send_signal("STOP");
        let frozen_at = Instant::now();
        let held = writer_lock_held_idle(&database);
        thread::sleep(Duration::from_millis(200));
        if held.is_some() && writer_lock_held_idle(&database) == held {
            break frozen_at;
        }
        frozen.send_signal("CONT");
    };
    eprintln!("frozen inside a write at attempt {attempts}");
    // The other daemon writes once the session is ended: a command meanwhile may be told that
    // the store is unavailable (exit code 5), and then asked again.
    loop {
        let placed = other.run(["create", "--user", "other", "--total", "2"]);
        if placed.status.success() {
            break;
        }
        assert_eq!(code(&placed), 5, "{}", stderr(&placed));
        assert!(frozen_at.elapsed() < IDLE_IN_TRANSACTION_TIMEOUT + SLACK, "{}", stderr(&placed));
    }
    let held_up = frozen_at.elapsed();
    eprintln!("the other daemon wrote {held_up:?} after the freeze");
    assert!(held_up <= IDLE_IN_TRANSACTION_TIMEOUT + SLACK, "held up {held_up:?}");

    frozen.send_signal("CONT");
    let thawed_from = acknowledged.lock().expect("lock").by_daemon.get(&0).copied().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while acknowledged.lock().expect("lock").by_daemon.get(&0).copied().unwrap_or(0) < thawed_from + 20 {
        assert!(Instant::now() < deadline, "the thawed daemon did not serve again:\n{}", frozen.log());
        thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().expect("writer");
    }
    wait_until_settled(&other, Instant::now() + Duration::from_secs(20), "after the thaw");

    let acknowledged = acknowledged.lock().expect("lock");
    eprintln!(
        "frozen daemon test: {} orders acknowledged, refused: {:?}",
        acknowledged.created.len(),
        acknowledged.refused
    );
    assert_eq!((acknowledged.cut, acknowledged.unreachable), (0, 0), "the daemon stayed up");
    for ((command, code), _) in acknowledged.refused.iter() {
        let fine = code == "unavailable" || (command == "cancel" && code == "rejected");
        assert!(fine, "a {command} refused with {code}: {:?}", acknowledged.refused);
    }
    assert_acknowledged_stored(&other, &acknowledged);
    let log = event_log(&other);
    assert_dense_and_in_order(&log);
    assert_nothing_twice(&log);
    assert_one_order_per_key(&other, &acknowledged);
    assert_check_and_replay_clean(&other);
}
