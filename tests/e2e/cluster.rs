//! Several daemons, one PostgreSQL store (issue 20): any daemon answers for any order, a follower
//! on one sees every daemon's commits exactly once and in order, one replay runs at a time in the
//! cluster. A lost daemon (killed, or frozen as a host that vanished with its connections open)
//! loses no delivery and no payment: [`lost_daemons`]; two daemons given the same command at the
//! same instant: [`races`]; a daemon killed again and again under load, the database restarted:
//! [`under_load`].

mod lost_daemons;
mod races;
mod under_load;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::fixture::{RawClient, TestDaemon, code, stderr, wait_timeout};

/// How often every daemon looks in the database for work another daemon left: timers overdue,
/// leases expired, commits it was not woken for.
const POLL: Duration = Duration::from_secs(1);

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
/// and deliveries: it prints the final log exactly, each position once and in order; and a
/// cursor A gave out reads the same events on B.
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
    // A cursor one daemon gave out reads the same events on the other.
    let cursor = match &log[99]["cursor"] {
        Value::String(cursor) => cursor.clone(),
        other => other.to_string(),
    };
    let page: Vec<Value> = b
        .ok(["events", "--from", &cursor, "--limit", "3", "--json"])
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON"))
        .collect();
    assert_eq!(page, log[99..102], "from A's cursor {cursor}, on B");
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
