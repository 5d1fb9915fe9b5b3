//! Several daemons, one PostgreSQL store (issue 20): any daemon answers for any order, a follower
//! on one sees every daemon's commits exactly once and in order, and a lost daemon (killed, or
//! frozen as a host that vanished with its connections open) loses no delivery and no payment.
//! The tests under load, a daemon killed again and again and the database restarted, are in
//! [`under_load`].

mod under_load;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::fixture::{RawClient, TestDaemon, code, stderr, wait_timeout};

/// How often every daemon looks in the database for work another daemon left: timers overdue,
/// leases expired, commits it was not woken for.
const POLL: Duration = Duration::from_secs(1);

/// How long after its due time a delivery armed by a lost daemon may wait for another one: every
/// daemon delivers the timers more than 2 s overdue, found at its next poll (every 1 s); and if
/// the lost daemon was frozen inside a write transaction, holding the writers' lock, nobody
/// writes until the database ends that session, after 5 s (`idle_in_transaction_session_timeout`).
const LOST_DELIVERY_AFTER_DUE: Duration = Duration::from_secs(2 + 1 + 5);

/// How much longer than its payment delay the daemon that placed an order holds the lease on its
/// payment: past it, another daemon takes the payment over at its next poll.
const PAYMENT_LEASE_BEYOND_DELAY: Duration = Duration::from_secs(3);

/// Room for a loaded machine: the suite runs its tests in parallel, on two cores in CI.
const SLACK: Duration = Duration::from_secs(2);

fn count(types: &[String], wanted: &str) -> usize {
    types.iter().filter(|t| *t == wanted).count()
}

fn time(value: &Value, field: &str) -> Timestamp {
    value[field].as_str().unwrap_or_else(|| panic!("{field} in {value}")).parse().expect("RFC 3339")
}

/// How long after `earlier` `later` came, by the database's clock (both are recorded times).
fn between(earlier: Timestamp, later: Timestamp) -> Duration {
    later.duration_since(earlier).unsigned_abs()
}

/// The whole event log as `orders events --json` reads it from `daemon`, one event a line.
pub fn event_log(daemon: &TestDaemon) -> Vec<Value> {
    daemon
        .ok(["events", "--json"])
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

/// What identifies an event in a comparison of two reads of the log.
fn identity(event: &Value) -> (i64, &str, &str, i64, &str) {
    let text = |field: &str| event[field].as_str().unwrap_or_else(|| panic!("{field} in {event}"));
    let number = |field: &str| event[field].as_i64().unwrap_or_else(|| panic!("{field} in {event}"));
    (number("position"), text("event_id"), text("stream"), number("version"), text("type"))
}

/// The log holds positions 1, 2, 3 ... without gaps, and each stream's versions 1, 2, 3 ... in
/// log order.
pub fn assert_dense_and_in_order(log: &[Value]) {
    let mut versions: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    for (n, event) in log.iter().enumerate() {
        let (position, _, stream, version, _) = identity(event);
        assert_eq!(position, n as i64 + 1, "positions without gaps or repeats, at {event}");
        let last = versions.entry(stream).or_insert(0);
        assert_eq!(version, *last + 1, "{stream} in order, at {event}");
        *last = version;
    }
}

/// `follower` saw exactly the events of `log`, each once, in log order.
pub fn assert_saw_exactly(followed: &[Value], log: &[Value]) {
    let seen: Vec<_> = followed.iter().map(identity).collect();
    let stored: Vec<_> = log.iter().map(identity).collect();
    if seen != stored {
        let first =
            seen.iter().zip(&stored).position(|(a, b)| a != b).unwrap_or(seen.len().min(stored.len()));
        panic!(
            "the follower saw {} events, the log holds {}; first difference at index {first}: \
            followed {:?}, stored {:?}",
            seen.len(),
            stored.len(),
            seen.get(first),
            stored.get(first)
        );
    }
}

/// `orders events --follow --json` on one daemon, its events read as they come.
pub struct Follower {
    child: Child,
    lines: Receiver<String>,
    events: Vec<Value>,
    stderr: PathBuf,
}

impl Follower {
    pub fn start(daemon: &TestDaemon, name: &str) -> Follower {
        let stderr = daemon.dir().join(format!("{name}.stderr"));
        let mut child = daemon
            .command()
            .args(["events", "--follow", "--json"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("start the follower");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Follower { child, lines, events: Vec::new(), stderr }
    }

    /// Reads what it printed until it has printed position `head` (or one past it).
    pub fn read_up_to(&mut self, head: i64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.events.last().is_none_or(|last| last["position"].as_i64().expect("position") < head) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| {
                let last = self.events.last().map(|event| event["position"].clone());
                panic!("the follower stopped at {last:?} of {head}:\n{}", self.stderr())
            });
            self.push(&line);
        }
    }

    /// Stops it; every event it printed, in the order printed.
    pub fn stop(mut self) -> Vec<Value> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // What it printed before it was stopped, to the end of its output.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.push(&line);
        }
        std::mem::take(&mut self.events)
    }

    fn push(&mut self, line: &str) {
        let event = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        self.events.push(event);
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The daemons `daemon` says share its database (`daemon status --json`).
fn cluster_seen_by(daemon: &TestDaemon) -> Vec<Value> {
    let status = daemon.json(["daemon", "status"]);
    status["daemons"].as_array().unwrap_or_else(|| panic!("no daemons in the status: {status}")).clone()
}

/// Each of `daemons` lists exactly these daemons (once it has heard of them all: a daemon that
/// just joined, or that connects again after a restart of the database, says so at its next
/// heartbeat), itself as `this` and only itself, and says it in its human status too, a line for
/// each.
pub fn assert_each_lists_the_cluster(daemons: &[&TestDaemon]) {
    let mut pids: Vec<u64> = daemons.iter().map(|daemon| u64::from(daemon.pid())).collect();
    pids.sort_unstable();
    let mut ids_seen: Option<Vec<String>> = None;
    for daemon in daemons {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listed = loop {
            let listed = cluster_seen_by(daemon);
            let mut listed_pids: Vec<u64> =
                listed.iter().map(|member| member["pid"].as_u64().expect("a pid")).collect();
            listed_pids.sort_unstable();
            if listed_pids == pids {
                break listed;
            }
            assert!(Instant::now() < deadline, "daemon {} lists {listed:?}, not {pids:?}", daemon.pid());
            thread::sleep(Duration::from_millis(50));
        };
        let this: Vec<&Value> = listed.iter().filter(|member| member["this"] == true).collect();
        assert_eq!(this.len(), 1, "one daemon is this one: {listed:?}");
        assert_eq!(this[0]["pid"], u64::from(daemon.pid()), "{listed:?}");
        let version = daemon.json(["daemon", "status"])["version"].clone();
        let text = daemon.ok(["daemon", "status"]);
        for member in &listed {
            let host = member["host"].as_str().filter(|host| !host.is_empty());
            let host = host.unwrap_or_else(|| panic!("a host: {member}"));
            assert_eq!(member["version"], version, "{member}");
            for field in ["started_at", "heartbeat_at"] {
                assert!(!member[field].is_null(), "{field} in {member}");
            }
            let pid = member["pid"].to_string();
            assert!(
                text.lines().any(|line| line.contains(&pid) && line.contains(host)),
                "a line for pid {pid} on {host} in the status:\n{text}"
            );
        }
        let mut ids: Vec<String> =
            listed.iter().map(|member| member["id"].as_str().expect("an id").to_owned()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), daemons.len(), "an id each: {listed:?}");
        match &ids_seen {
            Some(seen) => assert_eq!(&ids, seen, "every daemon names the same ones"),
            None => ids_seen = Some(ids),
        }
    }
}

fn ids(orders: &Value) -> Vec<&str> {
    orders.as_array().expect("an array").iter().map(|order| order["id"].as_str().expect("id")).collect()
}

/// The first test: an order placed through one daemon is listed, followed to its
/// delivery and cancelled through another, and the daemons know of each other.
#[test]
fn two_daemons_on_one_database_answer_for_every_order() {
    // A delivers 2 s after approval: long enough for a `watch` on B to be there before.
    let a = TestDaemon::start_with(&[("ORDERS_DELIVERY_DELAY", "2s")]);
    let b = a.join();
    assert_each_lists_the_cluster(&[&a, &b]);

    let id = a.create("alice", 2);
    assert_eq!(ids(&b.json(["list", "--user", "alice"])), [id.as_str()]);
    b.wait_for_status(&id, "approved");
    // Watched through B, delivered by A: B's `watch` is woken by A's commit.
    let watch_stderr = b.dir().join("watch.stderr");
    let mut watch = b
        .command()
        .args(["watch", &id, "--json"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&watch_stderr).expect("stderr file"))
        .spawn()
        .expect("start watch");
    let status = wait_timeout(&mut watch, Duration::from_secs(20)).expect("watch ends");
    let ended = Timestamp::now();
    let said = std::fs::read_to_string(&watch_stderr).unwrap_or_default();
    assert!(status.success(), "{status}: {said}");
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut watch.stdout.take().expect("stdout"), &mut printed).expect("read");
    let last: Value = serde_json::from_str(printed.lines().last().expect("a line")).expect("JSON");
    assert_eq!(last["status"], "delivered", "{printed}");
    let late = between(time(&last, "delivered_at"), ended);
    assert!(late <= POLL + SLACK, "B's watch ended {late:?} after A delivered");
    assert_eq!(b.json(["list", "--user", "alice"])[0]["status"], "delivered");

    // `create --wait` through A, the order listed through B with the rest.
    let waited = a.json(["create", "--user", "alice", "--total", "4", "--wait"]);
    assert_eq!(waited["status"], "delivered", "{waited}");
    let delivered = waited["id"].as_str().expect("id");
    assert_eq!(ids(&b.json(["list", "--user", "alice"])), [delivered, id.as_str()], "newest first");

    // A delivered order is no longer cancellable, through either daemon.
    let refused = b.run(["cancel", delivered]);
    assert_eq!(code(&refused), 4, "refused by the rules: {}", stderr(&refused));
    assert!(stderr(&refused).contains("delivered already"), "{}", stderr(&refused));

    // An approved order whose delivery timer another daemon armed (due in an hour): cancelled
    // through B, refunded, and the timer gone from the database.
    let c = a.join_with(&[("ORDERS_DELIVERY_DELAY", "1h")]);
    let approved = c.create("carol", 6);
    b.wait_for_status(&approved, "approved");
    assert_eq!(b.ok(["cancel", &approved]), format!("cancelled {approved}\n"));
    let order = c.wait_for_status(&approved, "cancelled");
    assert_eq!(order["cancel_reason"], "customer_request");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let types = c.history_types(&approved);
        if types.ends_with(&["PaymentRefunded".to_owned(), "DeliveryCancelled".to_owned()])
            || types.ends_with(&["DeliveryCancelled".to_owned(), "PaymentRefunded".to_owned()])
        {
            assert_eq!(count(&types, "OrderDelivered"), 0, "{types:?}");
            assert_eq!(count(&types, "OrderCancelled"), 1, "{types:?}");
            break;
        }
        assert!(Instant::now() < deadline, "no refund and delivery cancelled: {types:?}");
        thread::sleep(Duration::from_millis(20));
    }
    for daemon in [&a, &b, &c] {
        assert_eq!(daemon.json(["daemon", "status"])["pending_deliveries"], 0);
    }
}

/// A follower on B while A and B both write, ~200 orders each way at once with their payments
/// and deliveries: it prints the final log exactly, each position once and in order.
#[test]
fn a_follower_on_one_daemon_sees_every_daemons_commits_once_in_order() {
    let a = TestDaemon::start();
    let b = a.join();
    let mut follower = Follower::start(&b, "follower");
    // The follower follows live before the load begins.
    a.create("first", 2);
    follower.read_up_to(1);
    thread::scope(|scope| {
        let on_a = scope.spawn(|| a.bulk_create(100, 7));
        let on_b = scope.spawn(|| b.bulk_create(100, 7));
        assert_eq!(on_a.join().expect("creates on A").len() + on_b.join().expect("creates on B").len(), 200);
    });
    a.wait_until_quiet();
    let log = event_log(&a);
    assert_dense_and_in_order(&log);
    assert!(log.len() > 200 * 4, "orders, payments and deliveries: {} events", log.len());
    follower.read_up_to(log.len() as i64);
    let followed = follower.stop();
    assert_saw_exactly(&followed, &log);
    assert_eq!(event_log(&b), log, "both daemons read the same log");
}

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

/// A replay on one daemon while another writes and a third starts: every order placed meanwhile
/// is in the rebuilt read model, a replay asked of another daemon meanwhile is refused (one at a
/// time in the cluster), and the starting daemon leaves the replay's table alone.
#[test]
fn a_replay_on_one_daemon_while_another_writes_and_a_third_starts() {
    let a = TestDaemon::start_with(&[("ORDERS_TEST_REPLAY_PAUSE_MS", "100")]);
    let b = a.join();
    a.bulk_create(3_000, 20);
    a.wait_until_quiet();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, socket) = (Arc::clone(&stop), b.socket());
        let create = b.request(json!({"cmd": "create", "user": "during", "total": 2}));
        thread::spawn(move || {
            let mut client = RawClient::connect(&socket);
            let mut created = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let reply = client.call(create.clone());
                assert_eq!(reply["ok"], true, "{reply}");
                created.push(reply["data"]["id"].as_str().expect("id").to_owned());
            }
            created
        })
    };
    let mut replay = RawClient::connect(&a.socket());
    replay.send_raw(format!("{}\n", a.request(json!({"cmd": "replay"}))).as_bytes());
    let first = replay.reply().expect("a progress line");
    let progress = &first["progress"];
    assert!(progress["applied"].as_u64() < progress["total"].as_u64(), "under way: {first}");

    let refused = b.run(["replay"]);
    assert_eq!(code(&refused), 5, "{}", stderr(&refused));
    assert!(stderr(&refused).contains("one replay runs at a time"), "{}", stderr(&refused));
    let c = a.join();
    let metrics = a.ok(["metrics"]);
    assert!(metrics.lines().any(|line| line == "orders_replay_running 1"), "C started during the replay");
    let done = loop {
        let reply = replay.reply().expect("the replay's reply");
        if reply.get("progress").is_none() {
            break reply;
        }
    };
    assert_eq!(done["ok"], true, "the replay finished, its table untouched by C's start: {done}");
    stop.store(true, Ordering::Relaxed);
    let created = writer.join().expect("the writer on B");
    assert!(!created.is_empty(), "B wrote during the replay");
    let mut listed: Vec<String> =
        ids(&c.json(["list", "--user", "during", "--all"])).into_iter().map(str::to_owned).collect();
    listed.reverse();
    assert_eq!(listed, created, "every order placed on B during the replay is in the new read model");
    a.wait_until_quiet();
    for daemon in [&a, &b, &c] {
        let check = daemon.run(["replay", "--check"]);
        assert_eq!(code(&check), 0, "{}{}", String::from_utf8_lossy(&check.stdout), stderr(&check));
    }
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
        let scheduled = a.json(["history", &id]);
        let due: Timestamp = scheduled
            .as_array()
            .and_then(|events| events.iter().find(|e| e["type"] == "DeliveryScheduled"))
            .and_then(|e| e["data"]["due_at"].as_str())
            .expect("a due time")
            .parse()
            .expect("RFC 3339");
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
