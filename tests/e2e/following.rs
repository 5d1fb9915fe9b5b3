//! Streams across daemon restarts (issue 18): `events --follow` goes on like `tail -F` through a
//! restart, a `kill -9` and a slow start, without gaps or repeats, and stops when the store
//! behind the socket was replaced.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixture::{TestDaemon, wait_timeout};

/// `orders events --follow` running against a fixture, its stdout read line by line.
struct Follower {
    child: Child,
    lines: Receiver<String>,
    /// Every position printed so far, in the order printed.
    positions: Vec<i64>,
    /// Header lines of the text output: one, before the first event, whatever the restarts.
    headers: usize,
    json: bool,
    stderr: std::path::PathBuf,
}

impl Follower {
    fn start(daemon: &TestDaemon, json: bool, name: &str) -> Follower {
        let stderr = daemon.dir().join(format!("{name}.stderr"));
        let mut command = daemon.command();
        command.args(["events", "--follow"]);
        if json {
            command.arg("--json");
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("start the follower");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Follower { child, lines, positions: Vec::new(), headers: 0, json, stderr }
    }

    /// Reads what it printed until it has printed position `head`.
    fn read_up_to(&mut self, head: i64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.positions.last().is_none_or(|last| *last < head) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!("the follower stopped at {:?} of {head}:\n{}", self.positions.last(), self.stderr())
            });
            if !self.json && line.trim_start().starts_with("POSITION") {
                assert!(self.positions.is_empty(), "the header comes first, once: {line}");
                self.headers += 1;
                continue;
            }
            self.positions.push(self.position(&line));
        }
    }

    fn position(&self, line: &str) -> i64 {
        if self.json {
            let event: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            event["position"].as_i64().expect("a position")
        } else {
            let first = line.split_whitespace().next().expect("a position first");
            first.parse().unwrap_or_else(|e| panic!("no position ({e}): {line}"))
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends a signal and waits for the follower to end.
    fn signal(&mut self, signal: &str) -> std::process::ExitStatus {
        let kill = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(kill.success());
        wait_timeout(&mut self.child, Duration::from_secs(10)).expect("the follower ends")
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn head(daemon: &TestDaemon) -> i64 {
    daemon.json(["daemon", "status"])["events"].as_i64().expect("events")
}

fn create_some(daemon: &TestDaemon, user: &str) {
    for total in [2, 3] {
        daemon.create(user, total);
    }
}

/// The round: orders created before the followers start, while they follow, after a
/// SIGTERM restart, after a `kill -9` restart and after a slow start; both followers, text and
/// JSON, print every position exactly once and in order, and say on stderr that they waited.
#[test]
fn events_follow_goes_on_through_restarts_without_gaps_or_repeats() {
    let mut daemon = TestDaemon::start();
    create_some(&daemon, "before");
    let mut followers = [Follower::start(&daemon, true, "json"), Follower::start(&daemon, false, "text")];
    create_some(&daemon, "during");
    daemon.wait_until_quiet();
    let caught_up = |followers: &mut [Follower; 2], daemon: &TestDaemon| {
        let seen = head(daemon);
        for follower in followers {
            follower.read_up_to(seen);
        }
    };
    caught_up(&mut followers, &daemon);

    assert!(daemon.signal("TERM").success());
    daemon.spawn();
    create_some(&daemon, "after-term");
    caught_up(&mut followers, &daemon);

    daemon.kill9();
    daemon.spawn();
    create_some(&daemon, "after-kill");
    caught_up(&mut followers, &daemon);

    // Back, but slow to start: the followers wait for it to be ready.
    daemon.kill9();
    daemon.set_env("ORDERS_TEST_CATCH_UP_PAUSE_MS", Some("700"));
    daemon.spawn_starting().expect("the daemon answers");
    let deadline = Instant::now() + Duration::from_secs(20);
    while daemon.status_state() != "ready" {
        assert!(Instant::now() < deadline, "the daemon never got ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    create_some(&daemon, "after-slow-start");
    daemon.wait_until_quiet();

    let head = head(&daemon);
    let all: Vec<i64> = (1..=head).collect();
    for follower in &mut followers {
        follower.read_up_to(head);
        assert_eq!(follower.positions, all, "every position once, in order:\n{}", follower.stderr());
        assert_eq!(follower.headers, usize::from(!follower.json), "one header in text");
        let stderr = follower.stderr();
        assert_eq!(stderr.matches("waiting for it to come back").count(), 3, "{stderr}");
        assert_eq!(stderr.matches("the daemon is back").count(), 3, "{stderr}");
        assert!(stderr.contains("is starting"), "the slow start is told: {stderr}");
        assert!(!stderr.contains("error"), "{stderr}");
    }
}

/// A restore replaces the store behind the socket (a new store id): the follower stops with exit
/// code 9 rather than print the new store's events as if they followed the old ones.
#[test]
fn events_follow_stops_when_the_store_is_replaced() {
    if !crate::fixture::sqlite_only("the store is replaced by `orders restore`, of a SQLite copy") {
        return;
    }
    let mut daemon = TestDaemon::start();
    create_some(&daemon, "kept");
    daemon.wait_until_quiet();
    let backups = tempfile::tempdir().expect("tempdir");
    let file = backups.path().join("copy.db");
    daemon.ok(["backup", file.to_str().expect("utf-8")]);
    create_some(&daemon, "lost");
    daemon.wait_until_quiet();
    let seen = head(&daemon);
    let mut follower = Follower::start(&daemon, true, "follower");
    follower.read_up_to(seen);

    let restore = daemon.run(["restore", file.to_str().expect("utf-8")]);
    assert!(restore.status.success(), "{}", String::from_utf8_lossy(&restore.stderr));
    daemon.reap();
    let status = wait_timeout(&mut follower.child, Duration::from_secs(20)).expect("the follower stops");
    let stderr = follower.stderr();
    assert_eq!(status.code(), Some(9), "{stderr}");
    assert!(stderr.contains("now serves another store"), "{stderr}");
    assert_eq!(follower.positions, (1..=seen).collect::<Vec<_>>(), "nothing of the new store printed");
    if let Ok(line) = follower.lines.try_recv() {
        panic!("printed after the store changed: {line}");
    }
    daemon.ok(["daemon", "stop"]);
}

/// SIGINT or SIGTERM ends a follower as before, following or waiting for a daemon: it dies of
/// the signal, with nothing said.
#[test]
fn a_signal_ends_a_follower_quietly_even_while_it_waits() {
    let mut daemon = TestDaemon::start();
    create_some(&daemon, "one");
    let seen = head(&daemon);

    let mut following = Follower::start(&daemon, false, "following");
    following.read_up_to(seen);
    let status = following.signal("INT");
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(2), "{status}");
    assert_eq!(following.stderr(), "");

    let mut waiting = Follower::start(&daemon, true, "waiting");
    waiting.read_up_to(seen);
    assert!(daemon.signal("TERM").success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !waiting.stderr().contains("waiting for it to come back") {
        assert!(Instant::now() < deadline, "the follower never said it waits: {}", waiting.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = waiting.signal("TERM");
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(15), "{status}");
    assert!(!waiting.stderr().contains("error"), "{}", waiting.stderr());
}

/// `watch` through a restart: it waits, watches again, prints no event twice and ends with the
/// delivered order.
#[test]
fn watch_goes_on_through_a_restart_without_repeats() {
    let mut daemon = TestDaemon::start_with(&[("ORDERS_DELIVERY_DELAY", "1s")]);
    let id = daemon.create("wes", 2);
    daemon.wait_for_status(&id, "approved");
    let stderr_file = daemon.dir().join("watch.stderr");
    let mut watch = daemon
        .command()
        .args(["watch", &id, "--json"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_file).expect("stderr file"))
        .spawn()
        .expect("start watch");
    let mut stdout = BufReader::new(watch.stdout.take().expect("stdout"));
    let mut lines = Vec::new();
    while !lines.iter().any(|line: &String| line.contains("DeliveryScheduled")) {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).expect("read") > 0, "watch ended early: {lines:?}");
        lines.push(line);
    }
    assert!(daemon.signal("TERM").success());
    daemon.spawn();
    let status = wait_timeout(&mut watch, Duration::from_secs(20)).expect("watch ends");
    let said = std::fs::read_to_string(&stderr_file).unwrap_or_default();
    assert!(status.success(), "{status}: {said}");
    let rest: Vec<String> = stdout.lines().map(|line| line.expect("a line")).collect();
    lines.extend(rest);
    let values: Vec<Value> = lines.iter().map(|line| serde_json::from_str(line).expect("JSON")).collect();
    let (order, events) = values.split_last().expect("lines");
    assert_eq!(order["status"], "delivered", "{lines:?}");
    let ids: Vec<&str> = events.iter().map(|event| event["event_id"].as_str().expect("event id")).collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "no event twice: {lines:?}");
    assert_eq!(ids.len(), daemon.history_types(&id).len(), "every event once: {lines:?}");
    assert!(said.contains("waiting for it to come back") && said.contains("the daemon is back"), "{said}");
}

/// `create --wait` through a restart: the wait is asked again, and the id printed once.
#[test]
fn create_wait_goes_on_through_a_restart() {
    let mut daemon = TestDaemon::start_with(&[("ORDERS_DELIVERY_DELAY", "1s")]);
    let mut create = daemon
        .command()
        .args(["create", "--user", "cy", "--total", "2", "--wait"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start create --wait");
    let mut stdout = BufReader::new(create.stdout.take().expect("stdout"));
    let mut id = String::new();
    stdout.read_line(&mut id).expect("the id first");
    let id = id.trim().to_owned();
    daemon.wait_for_status(&id, "approved");
    daemon.kill9();
    daemon.spawn();
    let output = create.wait_with_output().expect("create --wait ends");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{}: {said}", output.status);
    assert!(said.contains("waiting for it to come back"), "{said}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("the rest of stdout");
    assert_eq!(rest, "", "the id once");
    assert_eq!(daemon.json(["show", &id])["status"], "delivered");
}
