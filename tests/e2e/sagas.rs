//! Payment and delivery: orders move by themselves, survive `kill -9`, and a cancel racing the
//! delivery ends with exactly one of them.

use std::thread;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::fixture::{TestDaemon, code, stderr};

fn time(order: &Value, field: &str) -> Timestamp {
    order[field].as_str().unwrap_or_else(|| panic!("{field} in {order}")).parse().expect("RFC 3339")
}

fn count(types: &[String], wanted: &str) -> usize {
    types.iter().filter(|t| *t == wanted).count()
}

#[test]
fn an_even_order_is_approved_at_once_and_delivered_after_the_delay() {
    let daemon = TestDaemon::start_with(&[("ORDERS_DELIVERY_DELAY", "400ms")]);
    let id = daemon.create("alice", 2);
    let approved = daemon.wait_for_status(&id, "approved");
    assert!(time(&approved, "approved_at").duration_since(time(&approved, "created_at")).as_millis() < 1000);
    let delivered = daemon.wait_for_status(&id, "delivered");
    let waited = time(&delivered, "delivered_at").duration_since(time(&delivered, "approved_at"));
    assert!(waited.as_millis() >= 400, "delivered {waited:?} after approval");
    assert_eq!(delivered["cancel_reason"], Value::Null);
    assert_eq!(
        daemon.history_types(&id),
        [
            "OrderPlaced",
            "PaymentRequested",
            "PaymentApproved",
            "OrderApproved",
            "DeliveryScheduled",
            "OrderDelivered",
            "DeliveryCompleted"
        ]
    );
}

/// The one test on the real default delay (no `ORDERS_DELIVERY_DELAY` at all).
#[test]
fn with_the_default_delay_delivery_comes_three_seconds_after_approval() {
    let mut daemon = TestDaemon::stopped_with(&[]);
    daemon.set_env("ORDERS_DELIVERY_DELAY", None);
    daemon.spawn();
    let started = Instant::now();
    let order = daemon.json(["create", "--user", "alice", "--total", "4", "--wait"]);
    assert_eq!(order["status"], "delivered", "{order}");
    let waited = time(&order, "delivered_at").duration_since(time(&order, "approved_at"));
    assert!((3000..3600).contains(&waited.as_millis()), "delivered {waited:?} after approval");
    assert!(started.elapsed() >= Duration::from_secs(3));
}

#[test]
fn an_odd_order_is_cancelled_because_the_payment_was_declined() {
    let daemon = TestDaemon::start();
    let output = daemon.run(["create", "--user", "bob", "--total", "3", "--wait"]);
    assert_eq!(code(&output), 8, "a declined order ends the wait with exit 8: {}", stderr(&output));
    let id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(stderr(&output).contains("payment_declined"), "{}", stderr(&output));
    let order = daemon.json(["show", &id]);
    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["cancel_reason"], "payment_declined");
    assert!(order["cancelled_at"].is_string());
    assert_eq!(
        daemon.history_types(&id),
        ["OrderPlaced", "PaymentRequested", "PaymentDeclined", "OrderCancelled"]
    );
}

#[test]
fn cancel_before_delivery_wins_and_the_payment_is_refunded() {
    let daemon = TestDaemon::start_with(&[("ORDERS_DELIVERY_DELAY", "600ms")]);
    let id = daemon.create("carol", 6);
    daemon.wait_for_status(&id, "approved");
    assert_eq!(daemon.ok(["cancel", &id]), format!("cancelled {id}\n"));
    thread::sleep(Duration::from_millis(900));
    let order = daemon.json(["show", &id]);
    assert_eq!(order["status"], "cancelled", "the timer fired and did nothing: {order}");
    assert_eq!(order["cancel_reason"], "customer_request");
    let types = daemon.history_types(&id);
    assert_eq!(types[5..], ["OrderCancelled", "PaymentRefunded", "DeliveryCancelled"]);
    assert_eq!(count(&types, "OrderDelivered"), 0);
}

#[test]
fn a_payment_approved_after_the_customer_cancelled_is_refunded() {
    let daemon = TestDaemon::start_with(&[("ORDERS_PAYMENT_DELAY", "300ms")]);
    let id = daemon.create("dave", 8);
    daemon.ok(["cancel", &id]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon.history_types(&id).contains(&"PaymentRefunded".to_owned()) {
        assert!(Instant::now() < deadline, "no refund: {:?}", daemon.history_types(&id));
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        daemon.history_types(&id),
        ["OrderPlaced", "PaymentRequested", "OrderCancelled", "PaymentApproved", "PaymentRefunded"]
    );
    assert_eq!(daemon.json(["show", &id])["status"], "cancelled");
}

#[test]
fn cancelling_a_delivered_order_is_refused() {
    let daemon = TestDaemon::start();
    let order = daemon.json(["create", "--user", "erin", "--total", "2", "--wait"]);
    let id = order["id"].as_str().expect("id");
    let output = daemon.run(["cancel", id]);
    assert_eq!(code(&output), 4, "refused by the rules");
    assert!(stderr(&output).contains("delivered already"), "{}", stderr(&output));
    assert_eq!(daemon.json(["show", id])["status"], "delivered");
}

#[test]
fn create_wait_times_out_with_exit_code_6_and_still_prints_the_id() {
    let daemon = TestDaemon::start_with(&[("ORDERS_PAYMENT_DELAY", "1h")]);
    let output = daemon.run(["create", "--user", "frank", "--total", "2", "--wait", "--timeout", "300ms"]);
    assert_eq!(code(&output), 6, "{}", stderr(&output));
    let id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert_eq!(daemon.json(["show", &id])["status"], "pending");
    assert!(stderr(&output).contains("still pending"), "{}", stderr(&output));
}

#[test]
fn kill_9_between_approval_and_delivery_delivers_right_after_restart() {
    let mut daemon = TestDaemon::start_with(&[("ORDERS_DELIVERY_DELAY", "800ms")]);
    let id = daemon.create("grace", 2);
    daemon.wait_for_status(&id, "approved");
    daemon.kill9();
    thread::sleep(Duration::from_millis(1000)); // the due time passes while nothing runs
    let restarted = Instant::now();
    daemon.spawn();
    let order = daemon.wait_for_status(&id, "delivered");
    assert!(restarted.elapsed() < Duration::from_secs(2), "an overdue delivery goes at once");
    assert!(time(&order, "delivered_at").duration_since(time(&order, "approved_at")).as_millis() >= 800);
    let types = daemon.history_types(&id);
    for once in
        ["PaymentApproved", "OrderApproved", "DeliveryScheduled", "OrderDelivered", "DeliveryCompleted"]
    {
        assert_eq!(count(&types, once), 1, "{once} in {types:?}");
    }
}

#[test]
fn kill_9_with_payments_pending_decides_them_after_restart() {
    let mut daemon = TestDaemon::start_with(&[("ORDERS_PAYMENT_DELAY", "1h")]);
    let even = daemon.create("heidi", 2);
    let odd = daemon.create("heidi", 5);
    daemon.kill9();
    daemon.set_env("ORDERS_PAYMENT_DELAY", Some("0"));
    daemon.spawn();
    daemon.wait_for_status(&even, "delivered");
    let declined = daemon.wait_for_status(&odd, "cancelled");
    assert_eq!(declined["cancel_reason"], "payment_declined");
    for id in [&even, &odd] {
        let types = daemon.history_types(id);
        assert_eq!(count(&types, "PaymentRequested"), 1, "{types:?}");
        assert_eq!(count(&types, "PaymentApproved") + count(&types, "PaymentDeclined"), 1, "{types:?}");
    }
}

#[test]
fn history_lists_every_event_of_an_order_in_log_order() {
    let daemon = TestDaemon::start();
    let order = daemon.json(["create", "--user", "ivan", "--total", "2", "--wait"]);
    let id = order["id"].as_str().expect("id");
    let history = daemon.json(["history", id]);
    let events = history.as_array().expect("array");
    let positions: Vec<i64> = events.iter().map(|e| e["position"].as_i64().expect("position")).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert_eq!(events[0]["type"], "OrderPlaced");
    assert_eq!(events[0]["data"], json!({"user": "ivan", "total": 2}));
    assert_eq!(events[0]["stream"], format!("order-{id}"));
    assert!(events.iter().any(|e| e["stream"] == format!("payment-{id}")));
    assert!(events.iter().any(|e| e["stream"] == format!("delivery-{id}")));
    for event in events {
        assert!(event["recorded_at"].is_string() && event["correlation_id"].is_string(), "{event}");
        assert_eq!(event["correlation_id"], events[0]["correlation_id"], "one workflow");
    }
    let text = daemon.ok(["history", id]);
    assert!(text.lines().next().is_some_and(|h| h.contains("TYPE")), "{text}");
    assert!(text.contains("PaymentApproved"), "{text}");

    let unknown = daemon.run(["history", "019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6b"]);
    assert_eq!(code(&unknown), 3);
}

/// Fires many cancels over the socket at the instant the delivery falls due: whatever the
/// timing, the log holds exactly one of the cancel and the delivery, and the replies agree.
#[test]
fn a_cancel_racing_the_delivery_never_yields_both() {
    const ORDERS: usize = 12;
    const CANCELS: usize = 16;
    let daemon = TestDaemon::start_with(&[("ORDERS_DELIVERY_DELAY", "300ms")]);
    let mut outcomes = Vec::new();
    for round in 0..ORDERS {
        let id = daemon.create("race", 2);
        daemon.wait_for_status(&id, "approved");
        let due = daemon.due_at(&id);
        // Spread the cancels over 8 ms around the due instant, shifting each round from 4 ms
        // before it to 6 ms after, so that both outcomes happen.
        let offset_ms = (round as i64 % 6) * 2 - 4;
        let start = due.checked_add(jiff::SignedDuration::from_millis(offset_ms)).expect("time");
        let socket = daemon.socket();
        let store = daemon.store();
        let cancels: Vec<_> = (0..CANCELS)
            .map(|i| {
                let (socket, id, store) = (socket.clone(), id.clone(), store.clone());
                thread::spawn(move || {
                    let mut client = crate::fixture::RawClient::connect(&socket);
                    let at =
                        start.checked_add(jiff::SignedDuration::from_micros(i as i64 * 500)).expect("time");
                    if let Ok(wait) = Duration::try_from(at.duration_since(Timestamp::now())) {
                        thread::sleep(wait);
                    }
                    client.call(crate::fixture::request(&store, json!({"cmd": "cancel", "id": id})))
                })
            })
            .collect();
        let replies: Vec<Value> = cancels.into_iter().map(|t| t.join().expect("cancel thread")).collect();
        let accepted = replies.iter().filter(|r| r["ok"] == true).count();
        for refused in replies.iter().filter(|r| r["ok"] == false) {
            assert_eq!(refused["error"]["code"], "rejected", "{refused}");
        }
        let settled = daemon.wait_for_status_in(&id, &["delivered", "cancelled"]);
        let types = daemon.history_types(&id);
        let (delivered, cancelled) = (count(&types, "OrderDelivered"), count(&types, "OrderCancelled"));
        assert_eq!(delivered + cancelled, 1, "exactly one terminal event: {types:?}");
        assert_eq!(accepted, cancelled, "one accepted cancel per cancel event: {replies:?}");
        if cancelled == 1 {
            assert_eq!(settled["status"], "cancelled");
            assert_eq!(count(&types, "PaymentRefunded"), 1, "{types:?}");
            assert_eq!(count(&types, "DeliveryCancelled"), 1, "{types:?}");
        } else {
            assert_eq!(count(&types, "PaymentRefunded"), 0, "{types:?}");
        }
        outcomes.push(settled["status"].as_str().expect("status").to_owned());
    }
    eprintln!("race outcomes: {outcomes:?}");
}

/// A build that accepted `--delivery-delay 999999999999s` stored a due time clamped to the end
/// of year 9999, which no later start could read: the daemon refused the whole data directory.
/// Now such a step, and every other stored step it cannot carry out, is reported (status, check,
/// log) and kept, while everything else is served.
#[test]
fn a_stored_step_the_daemon_cannot_carry_out_is_reported_and_everything_else_served() {
    if !crate::fixture::sqlite_only("a value of the wrong type, which only SQLite's columns take") {
        return;
    }
    let mut daemon = TestDaemon::start_with(&[("ORDERS_DELIVERY_DELAY", "1h")]);
    let stuck = daemon.create("alice", 2);
    daemon.wait_for_status(&stuck, "approved");
    daemon.signal("TERM");
    let unknown = "019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6b";
    let db = daemon.database();
    // What the old build wrote for that delay: `Timestamp::MAX`, in milliseconds.
    db.execute(
        "UPDATE delivery_timers SET due_at = ?2 WHERE order_id = ?1",
        rusqlite::params![stuck, Timestamp::MAX.as_millisecond()],
    )
    .expect("the old build's timer");
    db.execute("INSERT INTO delivery_timers VALUES (?1, 0)", [unknown]).expect("a timer without an order");
    db.execute("INSERT INTO payment_requests VALUES ('019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6c', 'two', 0)", [])
        .expect("a row that does not decode");
    drop(db);

    daemon.set_env("ORDERS_DELIVERY_DELAY", Some("200ms"));
    daemon.spawn();
    let other = daemon.json(["create", "--user", "bob", "--total", "4", "--wait"]);
    assert_eq!(other["status"], "delivered", "everything else is served: {other}");

    let status = daemon.json(["daemon", "status"]);
    assert_eq!(status["stuck_steps"], 3, "{status}");
    let listed = status["stuck"].to_string();
    assert!(listed.contains(&stuck) && listed.contains("past the last time"), "{listed}");
    assert!(listed.contains(unknown) && listed.contains("not in the event log"), "{listed}");
    assert!(listed.contains("not a whole number"), "{listed}");
    let text = daemon.ok(["daemon", "status"]);
    assert!(text.contains("3 saga steps cannot be carried out"), "{text}");
    assert!(text.contains(&format!("delivery of order {stuck}: it is due")), "{text}");

    let check = daemon.run(["check"]);
    assert_eq!(code(&check), 7, "{}", stderr(&check));
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        report.contains(&format!("the delivery step of order {stuck} cannot be carried out")),
        "{report}"
    );
    assert!(daemon.log().contains("kept in the database but not carried out"), "{}", daemon.log());

    // The remedy for a delivery that will never fall due: cancel the order (refunded, its timer
    // closed by the saga itself).
    assert_eq!(daemon.json(["cancel", &stuck])["status"], "cancelled");
    assert_eq!(daemon.json(["daemon", "status"])["stuck_steps"], 2);
    assert_eq!(daemon.json(["show", &stuck])["status"], "cancelled");
}
