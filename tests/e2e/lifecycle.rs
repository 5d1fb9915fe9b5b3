//! The daemon's life: stop, restart with the data intact, autostart on first use.

use crate::fixture::{TestDaemon, code, stderr};

#[test]
fn data_survives_a_stop_and_the_next_command() {
    let mut daemon = TestDaemon::start_with(&[("ORDERS_PAYMENT_DELAY", "1h")]);
    let kept = daemon.create("alice", 2);
    let cancelled = daemon.create("alice", 4);
    daemon.ok(["cancel", &cancelled]);
    let before = daemon.json(["list", "--user", "alice"]);

    let stopped = daemon.ok(["daemon", "stop"]);
    assert!(stopped.starts_with("daemon stopped"), "{stopped}");
    assert!(daemon.reap().success(), "the daemon exits 0 when asked to stop");
    assert!(!daemon.socket().exists(), "the socket is removed");

    daemon.spawn();
    assert_eq!(daemon.json(["list", "--user", "alice"]), before);
    assert_eq!(daemon.json(["show", &kept])["user"], "alice");
    assert_eq!(daemon.json(["show", &cancelled])["status"], "cancelled");
}

#[test]
fn the_first_command_starts_a_daemon_and_stop_stops_it() {
    let daemon = TestDaemon::stopped_with(&[]);
    let output = daemon
        .command_with_autostart()
        .args(["create", "--user", "erin", "--total", "2"])
        .output()
        .expect("run");
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let id = String::from_utf8(output.stdout).expect("utf-8");
    let status = daemon.json(["daemon", "status"]);
    assert!(status["pid"].as_u64().is_some(), "{status}");
    assert_eq!(daemon.json(["show", id.trim()])["user"], "erin");

    assert!(daemon.ok(["daemon", "stop"]).starts_with("daemon stopped"));
    let after = daemon.run(["daemon", "status"]);
    assert_eq!(code(&after), 5, "not running: {}", stderr(&after));
}

#[test]
fn without_autostart_a_missing_daemon_is_a_clear_error() {
    let daemon = TestDaemon::stopped_with(&[]);
    let output = daemon.run(["list"]);
    assert_eq!(code(&output), 5);
    let message = stderr(&output);
    assert!(message.contains("no daemon is running"), "{message}");
    assert!(message.contains("orders daemon start"), "{message}");
}

#[test]
fn stopping_no_daemon_is_not_an_error() {
    let daemon = TestDaemon::stopped_with(&[]);
    let output = daemon.run(["daemon", "stop"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(stderr(&output).contains("no daemon is running"));
}

#[test]
fn sigterm_stops_the_daemon_cleanly() {
    let mut daemon = TestDaemon::start();
    let id = daemon.create("frank", 2);
    let status = daemon.signal("TERM");
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    assert!(!daemon.socket().exists(), "the socket is removed");
    daemon.spawn();
    assert_eq!(daemon.json(["show", &id])["user"], "frank");
}

#[test]
fn acknowledged_orders_survive_kill_9() {
    let mut daemon = TestDaemon::start_with(&[("ORDERS_PAYMENT_DELAY", "1h")]);
    let ids: Vec<String> = (1..=20).map(|total| daemon.create("grace", total)).collect();
    daemon.kill9();
    assert!(daemon.socket().exists(), "kill -9 leaves a stale socket behind");
    daemon.spawn();
    let listed = daemon.json(["list", "--user", "grace"]);
    let mut listed: Vec<&str> =
        listed.as_array().expect("array").iter().map(|o| o["id"].as_str().expect("id")).collect();
    listed.reverse();
    assert_eq!(listed, ids, "every acknowledged order is there, in order");
}
