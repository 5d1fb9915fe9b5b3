//! Three daemons on one database under load: one of them killed with `kill -9` again and again,
//! or the database restarted under them. Nothing acknowledged is lost, no order is delivered or
//! paid twice, every order settles, and followers see every event once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{
    Follower, SLACK, assert_dense_and_in_order, assert_each_lists_the_cluster, assert_saw_exactly, event_log,
};
use crate::fixture::{RawClient, TestDaemon, code, stderr};

/// How long after the last kill every order has settled. A payment whose daemon was killed is
/// taken over once its lease has run out (the payment delay, 0 here, + 3 s) at the next poll
/// (1 s); the delivery its approval schedules may be armed by a daemon killed next, and is then
/// delivered 2 s after its due time (200 ms) at the next poll (1 s). The daemons are killed, so
/// no transaction of theirs stays open to wait for.
const SETTLED_AFTER_LAST_KILL: Duration =
    Duration::from_millis(3_000 + 1_000 + 200 + 2_000 + 1_000).saturating_add(SLACK);

/// Where a writer reaches one daemon.
#[derive(Clone)]
struct Endpoint {
    socket: PathBuf,
    store: String,
}

impl Endpoint {
    fn of(daemon: &TestDaemon) -> Endpoint {
        Endpoint { socket: daemon.socket(), store: daemon.store() }
    }
}

/// What the writers were told happened.
#[derive(Default)]
pub(super) struct Acknowledged {
    /// Orders whose create was acknowledged, with their totals.
    pub(super) created: HashMap<String, i64>,
    /// The order an acknowledged idempotency key was answered with (the same at every retry).
    pub(super) keys: HashMap<String, String>,
    /// Orders whose cancel was acknowledged.
    pub(super) cancelled: Vec<String>,
    /// Acknowledged commands, by daemon.
    pub(super) by_daemon: HashMap<usize, usize>,
    /// Commands refused, by command and error code: not acknowledged.
    pub(super) refused: HashMap<(String, String), usize>,
    /// Commands cut by their daemon's death (no reply): not acknowledged.
    pub(super) cut: usize,
    /// Commands that found no daemon to connect to, and went to the next one.
    pub(super) unreachable: usize,
    /// Keyed creates cut by their daemon's death and asked again of another daemon.
    pub(super) keys_asked_again: usize,
}

/// Why a command got no reply.
enum Lost {
    /// No daemon to connect to on that socket (killed, not back yet).
    Unreachable,
    /// The connection ended under the command: it may or may not have been carried out.
    Cut,
}

/// Sends a request to the daemon at `endpoint` on `client` (connecting first if need be).
fn ask(client: &mut Option<RawClient>, endpoint: &Endpoint, request: &Value) -> Result<Value, Lost> {
    if client.is_none() {
        let stream =
            std::os::unix::net::UnixStream::connect(&endpoint.socket).map_err(|_| Lost::Unreachable)?;
        *client = Some(RawClient::from_stream(stream));
    }
    let connection = client.as_mut().ok_or(Lost::Unreachable)?;
    let mut line = crate::fixture::request(&endpoint.store, request.clone()).to_string();
    line.push('\n');
    connection.try_send(line.as_bytes()).map_err(|_| Lost::Cut)?;
    connection.reply().ok_or(Lost::Cut)
}

/// One writer: places orders (even and odd totals, one in three with an idempotency key) and
/// cancels some of its newest even ones, each once, on daemon `home` of `endpoints`. When its daemon is gone (or
/// starting again) it asks the next one meanwhile, and a keyed create cut by a daemon's death
/// again there, until it is answered; it goes back home once it has been answered. A daemon that
/// cannot write for now (`unavailable`) it asks again after a pause.
fn writer(
    endpoints: Vec<Endpoint>,
    home: usize,
    seed: u64,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Acknowledged>>,
) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut at = home;
    let mut client = None;
    let mut mine: Vec<String> = Vec::new();
    let mut keyed = 0;
    let mut again: Option<Value> = None;
    while !stop.load(Ordering::Relaxed) {
        let request = again.take().unwrap_or_else(|| {
            if !mine.is_empty() && rng.u8(0..5) == 0 {
                // One of its newest: most likely still pending or approved, its payment or its
                // delivery racing the cancel, perhaps on another daemon.
                let newest = mine.len() - 1 - rng.usize(0..mine.len().min(3));
                json!({"cmd": "cancel", "id": mine.swap_remove(newest)})
            } else {
                let mut create =
                    json!({"cmd": "create", "user": format!("w{seed}"), "total": rng.i64(1..=9)});
                if rng.u8(0..3) == 0 {
                    keyed += 1;
                    create["idempotency_key"] = format!("w{seed}-{keyed}").into();
                }
                create
            }
        });
        let keyed_create = request["idempotency_key"].is_string();
        let reply = match ask(&mut client, &endpoints[at], &request) {
            Ok(reply) => reply,
            Err(lost) => {
                let mut acknowledged = acknowledged.lock().expect("lock");
                match lost {
                    Lost::Unreachable => acknowledged.unreachable += 1,
                    Lost::Cut => acknowledged.cut += 1,
                }
                if keyed_create {
                    acknowledged.keys_asked_again += usize::from(matches!(lost, Lost::Cut));
                    again = Some(request);
                }
                drop(acknowledged);
                client = None;
                at = (at + 1) % endpoints.len();
                thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        let answered_by = at;
        if at != home {
            // Answered elsewhere: home again for the next command (on to the next daemon again if
            // it is not back yet).
            client = None;
            at = home;
        }
        let mut acknowledged = acknowledged.lock().expect("lock");
        let command = request["cmd"].as_str().expect("cmd").to_owned();
        if reply["ok"] != true {
            let code = reply["error"]["code"].as_str().unwrap_or("none").to_owned();
            let starting = code == "starting";
            let for_now = starting || matches!(code.as_str(), "unavailable" | "busy");
            *acknowledged.refused.entry((command, code)).or_default() += 1;
            drop(acknowledged);
            if keyed_create {
                again = Some(request);
            }
            if starting {
                // A daemon started again after a kill, not ready yet: the next one meanwhile.
                client = None;
                at = (at + 1) % endpoints.len();
            }
            if for_now {
                thread::sleep(Duration::from_millis(20));
            }
            continue;
        }
        *acknowledged.by_daemon.entry(answered_by).or_default() += 1;
        if command == "cancel" {
            acknowledged.cancelled.push(request["id"].as_str().expect("id").to_owned());
            continue;
        }
        let id = reply["data"]["id"].as_str().expect("id").to_owned();
        let total = request["total"].as_i64().expect("total");
        if let Some(key) = request["idempotency_key"].as_str() {
            let first = acknowledged.keys.entry(key.to_owned()).or_insert_with(|| id.clone());
            assert_eq!(*first, id, "key {key} answered with two orders");
        }
        if total % 2 == 0 {
            // Only even orders are cancelled: an odd one must end declined.
            mine.push(id.clone());
        }
        acknowledged.created.insert(id, total);
    }
}

/// Writers spread round-robin over `daemons`, until `stop`.
pub(super) fn writers(
    daemons: &[&TestDaemon],
    count: usize,
    seed: u64,
    stop: &Arc<AtomicBool>,
    acknowledged: &Arc<Mutex<Acknowledged>>,
) -> Vec<thread::JoinHandle<()>> {
    let endpoints: Vec<Endpoint> = daemons.iter().map(|daemon| Endpoint::of(daemon)).collect();
    let spread = daemons.len();
    (0..count)
        .map(|n| {
            let (endpoints, stop, acknowledged) =
                (endpoints.clone(), Arc::clone(stop), Arc::clone(acknowledged));
            let seed = seed ^ (n as u64 + 1);
            thread::spawn(move || writer(endpoints, n % spread, seed, stop, acknowledged))
        })
        .collect()
}

/// Every order is delivered or cancelled and no payment or delivery is open, by `deadline`.
pub(super) fn wait_until_settled(daemon: &TestDaemon, deadline: Instant, what: &str) {
    loop {
        let orders = daemon.json(["list", "--all"]);
        let open: Vec<&Value> = orders
            .as_array()
            .expect("an array")
            .iter()
            .filter(|order| order["status"] == "pending" || order["status"] == "approved")
            .collect();
        let status = daemon.json(["daemon", "status"]);
        if open.is_empty() && status["pending_payments"] == 0 && status["pending_deliveries"] == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not settled {what}: {} orders open (the first: {:?}), {} payments and {} deliveries \
            pending",
            open.len(),
            open.first(),
            status["pending_payments"],
            status["pending_deliveries"]
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// What every acknowledged command left: each order there, ended as its total and its cancel
/// say.
pub(super) fn assert_acknowledged_stored(daemon: &TestDaemon, acknowledged: &Acknowledged) {
    let orders: HashMap<String, Value> = daemon
        .json(["list", "--all"])
        .as_array()
        .expect("an array")
        .iter()
        .map(|order| (order["id"].as_str().expect("id").to_owned(), order.clone()))
        .collect();
    for (id, total) in &acknowledged.created {
        let order = orders.get(id).unwrap_or_else(|| panic!("acknowledged order {id} was lost"));
        let outcome = (order["status"].as_str(), order["cancel_reason"].as_str());
        if total % 2 == 0 {
            assert!(
                matches!(outcome, (Some("delivered"), None) | (Some("cancelled"), Some("customer_request"))),
                "even order {id} ended {outcome:?}"
            );
        } else {
            assert_eq!(outcome, (Some("cancelled"), Some("payment_declined")), "odd order {id}");
        }
    }
    for id in &acknowledged.cancelled {
        let outcome = (orders[id]["status"].as_str(), orders[id]["cancel_reason"].as_str());
        assert_eq!(outcome, (Some("cancelled"), Some("customer_request")), "acknowledged cancel of {id}");
    }
}

/// No order delivered twice, no payment decided or refunded twice, no delivery completed twice:
/// per stream, in the whole log.
pub(super) fn assert_nothing_twice(log: &[Value]) {
    let mut by_stream: HashMap<&str, Vec<&str>> = HashMap::new();
    for event in log {
        let stream = event["stream"].as_str().expect("stream");
        by_stream.entry(stream).or_default().push(event["type"].as_str().expect("type"));
    }
    for (stream, types) in &by_stream {
        let count = |wanted: &[&str]| types.iter().filter(|t| wanted.contains(t)).count();
        assert!(count(&["OrderDelivered"]) <= 1, "{stream}: {types:?}");
        assert!(count(&["PaymentApproved", "PaymentDeclined"]) <= 1, "{stream}: {types:?}");
        assert!(count(&["PaymentRefunded"]) <= 1, "{stream}: {types:?}");
        assert!(count(&["DeliveryCompleted"]) <= 1, "{stream}: {types:?}");
    }
}

/// Each idempotency key placed one order, the one its creates were answered with.
pub(super) fn assert_one_order_per_key(daemon: &TestDaemon, acknowledged: &Acknowledged) {
    let mut placed: HashMap<String, Vec<String>> = HashMap::new();
    for line in daemon.ok(["export"]).lines() {
        let event: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if let Some(key) = event["metadata"]["idempotency_key"].as_str()
            && event["type"] == "OrderPlaced"
        {
            placed
                .entry(key.to_owned())
                .or_default()
                .push(event["stream"].as_str().expect("stream").to_owned());
        }
    }
    for (key, streams) in &placed {
        assert_eq!(streams.len(), 1, "key {key} placed {streams:?}");
    }
    for (key, id) in &acknowledged.keys {
        assert_eq!(placed.get(key), Some(&vec![format!("order-{id}")]), "key {key}");
    }
}

/// `orders check` and `orders replay --check` both clean.
pub(super) fn assert_check_and_replay_clean(daemon: &TestDaemon) {
    let check = daemon.run(["check"]);
    assert_eq!(code(&check), 0, "{}{}", String::from_utf8_lossy(&check.stdout), stderr(&check));
    let replay = daemon.run(["replay", "--check"]);
    assert_eq!(code(&replay), 0, "{}{}", String::from_utf8_lossy(&replay.stdout), stderr(&replay));
}

/// The kill test, in CI: three daemons, sixteen writers spread over them, daemon 1 or 2
/// killed with `kill -9` at random instants and started again, a follower on daemon 0 throughout,
/// and one on daemon 1, which goes on after each of its daemon's restarts from where it was.
/// `ORDERS_CRASH_ROUNDS` (default 9) and `ORDERS_CRASH_SEED` as for the crash test.
#[test]
fn three_daemons_one_killed_again_and_again_lose_nothing_and_do_nothing_twice() {
    const WRITERS: usize = 16;
    let rounds: usize = std::env::var("ORDERS_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(9);
    let seed = std::env::var("ORDERS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("cluster kill test: {rounds} rounds, {WRITERS} writers, seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let first = TestDaemon::start();
    let mut others = [first.join(), first.join()];
    let follower = Follower::start(&first, "follower");
    let restarted_follower = Follower::start(&others[0], "follower");
    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let threads = writers(&[&first, &others[0], &others[1]], WRITERS, seed, &stop, &acknowledged);

    let mut last_kill = Instant::now();
    for round in 0..rounds {
        thread::sleep(Duration::from_millis(rng.u64(100..800)));
        let victim = &mut others[rng.usize(0..2)];
        victim.kill9();
        last_kill = Instant::now();
        if round + 1 == rounds {
            // The load ends with the last kill: what follows is the cluster settling.
            stop.store(true, Ordering::Relaxed);
        }
        victim.spawn();
    }
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().expect("writer");
    }
    wait_until_settled(&first, last_kill + SETTLED_AFTER_LAST_KILL, "within the bound after the last kill");

    let acknowledged = acknowledged.lock().expect("lock");
    eprintln!(
        "cluster kill test: {} orders and {} cancels acknowledged (by daemon: {:?}), {} commands \
        cut by a kill ({} keyed creates asked again elsewhere), {} found no daemon, refused: {:?}",
        acknowledged.created.len(),
        acknowledged.cancelled.len(),
        acknowledged.by_daemon,
        acknowledged.cut,
        acknowledged.keys_asked_again,
        acknowledged.unreachable,
        acknowledged.refused
    );
    assert!(acknowledged.created.len() > rounds * 10, "the load did happen");
    for daemon in 0..3 {
        assert!(acknowledged.by_daemon.get(&daemon).is_some_and(|n| *n > 0), "daemon {daemon} served");
    }
    for ((command, code), _) in acknowledged.refused.iter() {
        let fine = matches!(code.as_str(), "starting" | "unavailable" | "busy")
            || (command == "cancel" && code == "rejected");
        assert!(fine, "a {command} refused with {code}: {:?}", acknowledged.refused);
    }
    assert_acknowledged_stored(&first, &acknowledged);
    let log = event_log(&first);
    assert_dense_and_in_order(&log);
    assert_nothing_twice(&log);
    assert_one_order_per_key(&first, &acknowledged);
    assert_check_and_replay_clean(&first);
    for mut follower in [follower, restarted_follower] {
        follower.read_up_to(log.len() as i64);
        assert_saw_exactly(&follower.stop(), &log);
    }
}

/// The database restarted under three daemons and eight writers: nothing acknowledged is lost,
/// and every daemon writes again by itself, the same process as before.
#[test]
fn a_database_restarted_under_three_daemons_loses_nothing_and_all_recover() {
    let Some(cluster) = testpg::own_cluster() else { return };
    let database = cluster.fresh_database();
    let mut first = TestDaemon::stopped_with(&[("ORDERS_DELIVERY_DELAY", "50ms")]);
    first.set_env("ORDERS_STORE", Some(&database.url));
    first.spawn();
    let second = first.join_with(&[("ORDERS_DELIVERY_DELAY", "50ms")]);
    let third = first.join_with(&[("ORDERS_DELIVERY_DELAY", "50ms")]);
    let daemons = [&first, &second, &third];
    let pids: Vec<u32> = daemons.iter().map(|daemon| daemon.pid()).collect();
    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let threads = writers(&daemons, 8, fastrand::u64(..), &stop, &acknowledged);
    thread::sleep(Duration::from_millis(300));
    // Down long enough for batches to fail, then back.
    cluster.stop();
    thread::sleep(Duration::from_millis(700));
    cluster.start();
    // Every daemon writes again by itself: its acknowledged commands resume.
    let resumed_from = acknowledged.lock().expect("lock").by_daemon.clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = acknowledged.lock().expect("lock").by_daemon.clone();
        let behind: Vec<usize> = (0..3)
            .filter(|n| now.get(n).copied().unwrap_or(0) < resumed_from.get(n).copied().unwrap_or(0) + 20)
            .collect();
        if behind.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "daemons {behind:?} did not recover:\n{}", cluster.log());
        thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().expect("writer");
    }
    for (daemon, pid) in daemons.iter().zip(&pids) {
        assert_eq!(daemon.pid(), *pid, "the same daemon, never restarted");
        // Reads too: a read connection the restart closed may fail one read, no more.
        let deadline = Instant::now() + Duration::from_secs(10);
        while code(&daemon.run(["daemon", "status"])) != 0 {
            assert!(Instant::now() < deadline, "reads on daemon {pid} did not recover");
            thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(daemon.json(["daemon", "status"])["pid"], *pid);
    }
    first.wait_until_quiet();

    let acknowledged = acknowledged.lock().expect("lock");
    eprintln!(
        "cluster restart test: {} orders acknowledged (by daemon: {:?}), refused: {:?}",
        acknowledged.created.len(),
        acknowledged.by_daemon,
        acknowledged.refused
    );
    assert_eq!((acknowledged.cut, acknowledged.unreachable), (0, 0), "no daemon went away");
    for ((command, code), _) in acknowledged.refused.iter() {
        let fine = code == "unavailable" || (command == "cancel" && code == "rejected");
        assert!(fine, "a {command} refused with {code}: {:?}", acknowledged.refused);
    }
    assert_acknowledged_stored(&first, &acknowledged);
    let log = event_log(&first);
    assert_dense_and_in_order(&log);
    assert_nothing_twice(&log);
    assert_one_order_per_key(&first, &acknowledged);
    assert_check_and_replay_clean(&first);
    assert_each_lists_the_cluster(&daemons);
    drop(database);
}
