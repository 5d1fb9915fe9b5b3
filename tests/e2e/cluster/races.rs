//! Two daemons given commands about one order at the same instant: the same idempotency key, or
//! cancels racing the delivery. The database decides one winner; the loser answers as if it had
//! come second on one daemon.

use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{Value, json};

use super::count;
use crate::fixture::{RawClient, TestDaemon, code, stderr};

/// The same idempotency key given to two daemons at the same instant (a client that retried on
/// another host, say): both look it up and miss, one insert loses on the unique index, and that
/// daemon runs the command again and answers with the winner's order.
#[test]
fn one_key_given_to_two_daemons_at_once_places_one_order() {
    const ROUNDS: usize = 40;
    let a = TestDaemon::start();
    let b = a.join();
    for round in 0..ROUNDS {
        let key = format!("race-{round}");
        let start = Barrier::new(2);
        let ask = |daemon: &TestDaemon| {
            let mut client = RawClient::connect(&daemon.socket());
            let request = json!({"cmd": "create", "user": "race", "total": 2, "idempotency_key": key});
            let request = daemon.request(request);
            start.wait();
            client.call(request)
        };
        let replies = thread::scope(|scope| {
            let on_a = scope.spawn(|| ask(&a));
            let on_b = scope.spawn(|| ask(&b));
            [on_a.join().expect("A's create"), on_b.join().expect("B's create")]
        });
        for reply in &replies {
            assert_eq!(reply["ok"], true, "key {key}: {reply}");
        }
        assert_eq!(replies[0]["data"]["id"], replies[1]["data"]["id"], "key {key}: {replies:?}");
    }
    let placed = a.json(["list", "--user", "race", "--count"]);
    assert_eq!(placed["count"], ROUNDS, "one order per key: {placed}");
}

/// Cancels fired through both daemons at the instant the delivery one of them armed falls due:
/// whatever the timing, the log holds exactly one of the cancel and the delivery, exactly one
/// cancel is accepted when it holds the cancel, and the others are refused by the rules.
#[test]
fn cancels_through_two_daemons_racing_the_delivery_never_yield_both() {
    const ROUNDS: usize = 12;
    const CANCELS: usize = 16;
    let a = TestDaemon::start_with(&[("ORDERS_DELIVERY_DELAY", "300ms")]);
    let b = a.join();
    let mut outcomes = Vec::new();
    for round in 0..ROUNDS {
        let id = a.create("race", 2);
        a.wait_for_status(&id, "approved");
        let due = a.due_at(&id);
        // Spread over 8 ms around the due instant, from 20 ms before it to 20 ms after as the
        // rounds go, so that both outcomes happen.
        let offset_ms = (round as i64 % 6) * 8 - 20;
        let start = due.checked_add(jiff::SignedDuration::from_millis(offset_ms)).expect("time");
        let cancels: Vec<_> = (0..CANCELS)
            .map(|i| {
                let daemon = if i % 2 == 0 { &a } else { &b };
                let (socket, request) = (daemon.socket(), daemon.request(json!({"cmd": "cancel", "id": id})));
                thread::spawn(move || {
                    let mut client = RawClient::connect(&socket);
                    let at =
                        start.checked_add(jiff::SignedDuration::from_micros(i as i64 * 500)).expect("time");
                    if let Ok(wait) = Duration::try_from(at.duration_since(Timestamp::now())) {
                        thread::sleep(wait);
                    }
                    client.call(request)
                })
            })
            .collect();
        let replies: Vec<Value> = cancels.into_iter().map(|t| t.join().expect("cancel thread")).collect();
        let accepted = replies.iter().filter(|r| r["ok"] == true).count();
        for refused in replies.iter().filter(|r| r["ok"] == false) {
            assert_eq!(refused["error"]["code"], "rejected", "{refused}");
        }
        let settled = b.wait_for_status_in(&id, &["delivered", "cancelled"]);
        let types = b.history_types(&id);
        let (delivered, cancelled) = (count(&types, "OrderDelivered"), count(&types, "OrderCancelled"));
        assert_eq!(delivered + cancelled, 1, "exactly one terminal event: {types:?}");
        assert_eq!(accepted, cancelled, "one accepted cancel per cancel event: {replies:?}");
        if cancelled == 1 {
            assert_eq!(settled["status"], "cancelled");
            // The refund and the delivery's cancel follow the order's cancel.
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut types = types;
            while count(&types, "PaymentRefunded") + count(&types, "DeliveryCancelled") < 2 {
                assert!(Instant::now() < deadline, "{types:?}");
                thread::sleep(Duration::from_millis(20));
                types = b.history_types(&id);
            }
            assert_eq!(count(&types, "PaymentRefunded"), 1, "{types:?}");
            assert_eq!(count(&types, "DeliveryCancelled"), 1, "{types:?}");
            assert_eq!(count(&types, "DeliveryCompleted"), 0, "{types:?}");
        } else {
            assert_eq!(count(&types, "PaymentRefunded"), 0, "{types:?}");
        }
        outcomes.push(settled["status"].as_str().expect("status").to_owned());
    }
    eprintln!("race outcomes: {outcomes:?}");
    let check = b.run(["check"]);
    assert_eq!(code(&check), 0, "{}{}", String::from_utf8_lossy(&check.stdout), stderr(&check));
}
