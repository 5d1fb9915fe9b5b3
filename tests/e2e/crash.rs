//! Crash under load: concurrent writers, `kill -9` at random instants, again and again; then
//! nothing acknowledged is lost and no order breaks its state machine.
//!
//! `ORDERS_CRASH_ROUNDS` (default 5) and `ORDERS_CRASH_WRITERS` (default 8; 16 on PostgreSQL,
//! where a batch costs round trips and more writers fill it) scale it up, e.g.
//! `ORDERS_CRASH_ROUNDS=100 cargo test --release -p orders --test e2e crash -- --nocapture`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

use crate::fixture::{RawClient, TestDaemon, code, stderr};

/// What the writers were told happened.
#[derive(Default)]
struct Acknowledged {
    /// Orders whose create was acknowledged, with their totals.
    created: HashMap<String, i64>,
    /// Orders whose cancel was acknowledged.
    cancelled: Vec<String>,
}

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One writer: creates orders (random totals) and cancels some even ones, until the daemon dies
/// under it or it is told to stop.
fn writer(
    (socket, store): (std::path::PathBuf, String),
    seed: u64,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Acknowledged>>,
) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let Ok(stream) = std::os::unix::net::UnixStream::connect(&socket) else { return };
    let mut client = RawClient::from_stream(stream);
    let mut mine: Vec<String> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let cancel = !mine.is_empty() && rng.u8(0..4) == 0;
        let request = if cancel {
            json!({"cmd": "cancel", "id": mine[rng.usize(0..mine.len())]})
        } else {
            json!({"cmd": "create", "user": format!("crash{}", seed % 4), "total": rng.i64(1..=9)})
        };
        let request = crate::fixture::request(&store, request);
        let mut line = request.to_string();
        line.push('\n');
        if client.try_send(line.as_bytes()).is_err() {
            return;
        }
        let Some(reply) = client.reply() else { return };
        let mut acknowledged = acknowledged.lock().expect("lock");
        match (cancel, reply["ok"] == true) {
            (false, true) => {
                let id = reply["data"]["id"].as_str().expect("id").to_owned();
                let total = request["total"].as_i64().expect("total");
                if total % 2 == 0 {
                    // Only even orders are cancelled: an odd one must end declined.
                    mine.push(id.clone());
                }
                acknowledged.created.insert(id, total);
            }
            (true, true) => acknowledged.cancelled.push(request["id"].as_str().expect("id").to_owned()),
            // Refused (delivered already) or the daemon is going down: not acknowledged.
            (_, false) => {}
        }
    }
}

#[test]
fn kill_9_under_load_loses_nothing_and_breaks_no_order() {
    let rounds = setting("ORDERS_CRASH_ROUNDS", 5);
    let writers = setting("ORDERS_CRASH_WRITERS", if crate::ON_POSTGRES { 16 } else { 8 });
    let seed = std::env::var("ORDERS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("crash test: {rounds} rounds, {writers} writers, seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut daemon = TestDaemon::start_with(&[("ORDERS_DELIVERY_DELAY", "30ms")]);
    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));

    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..writers)
            .map(|n| {
                let (socket, stop, acknowledged) =
                    ((daemon.socket(), daemon.store()), Arc::clone(&stop), Arc::clone(&acknowledged));
                let seed = seed ^ ((round * writers + n) as u64 + 1);
                thread::spawn(move || writer(socket, seed, stop, acknowledged))
            })
            .collect();
        // A random instant: while commands, payments and deliveries are all in flight.
        thread::sleep(Duration::from_millis(rng.u64(50..400)));
        daemon.kill9();
        stop.store(true, Ordering::Relaxed);
        for thread in threads {
            thread.join().expect("writer");
        }
        daemon.spawn();
    }
    daemon.wait_until_quiet();

    let acknowledged = acknowledged.lock().expect("lock");
    let orders: HashMap<String, Value> = daemon
        .json(["list", "--all"])
        .as_array()
        .expect("array")
        .iter()
        .map(|order| (order["id"].as_str().expect("id").to_owned(), order.clone()))
        .collect();
    eprintln!(
        "crash test: {} orders acknowledged, {} cancels acknowledged, {} orders in the log",
        acknowledged.created.len(),
        acknowledged.cancelled.len(),
        orders.len()
    );
    assert!(acknowledged.created.len() > rounds, "the load did happen");
    for (id, total) in &acknowledged.created {
        let order = orders.get(id).unwrap_or_else(|| panic!("acknowledged order {id} was lost"));
        if total % 2 == 0 {
            let outcome = (order["status"].as_str(), order["cancel_reason"].as_str());
            assert!(
                matches!(outcome, (Some("delivered"), None) | (Some("cancelled"), Some("customer_request"))),
                "even order {id} ended {outcome:?}"
            );
        } else {
            assert_eq!(order["status"], "cancelled", "odd order {id}");
            assert_eq!(order["cancel_reason"], "payment_declined", "odd order {id}");
        }
    }
    for id in &acknowledged.cancelled {
        assert_eq!(orders[id]["status"], "cancelled", "acknowledged cancel of {id} was lost");
        assert_eq!(orders[id]["cancel_reason"], "customer_request");
    }

    // The whole log: each state machine, versions without gaps, one terminal event per order,
    // a refund for every cancelled paid order and none else, the open saga steps, the read model.
    let check = daemon.run(["check"]);
    assert_eq!(code(&check), 0, "{}{}", String::from_utf8_lossy(&check.stdout), stderr(&check));
    // Replay reproduces the read model exactly.
    let compared = daemon.run(["replay", "--check"]);
    assert_eq!(code(&compared), 0, "{}{}", String::from_utf8_lossy(&compared.stdout), stderr(&compared));
    let before = daemon.ok(["list", "--all", "--json"]);
    daemon.ok(["replay"]);
    assert_eq!(daemon.ok(["list", "--all", "--json"]), before);
}
