//! A daemon that is starting (issue 12): a long catch-up of its read model is slow, not dead.
//! It answers at once, says how far it has come, makes clients wait, and stops when asked.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::fixture::{RawClient, TestDaemon, code, stderr};

/// A stopped daemon whose read model was forgotten behind its back, so that its next start
/// replays the whole log, pausing `pause_ms` before each chunk (of 100 events, at this size).
/// Payments are held back, so nothing moves once it is up. Returns the daemon, everyone's
/// orders as listed before, and the length of the log.
fn with_read_model_to_rebuild(pause_ms: u64) -> (TestDaemon, String, u64) {
    let mut daemon = TestDaemon::start_with(&[("ORDERS_PAYMENT_DELAY", "1h")]);
    daemon.bulk_create(1_000, 10);
    let before = daemon.ok(["list", "--all", "--json"]);
    let events = daemon.json(["daemon", "status"])["events"].as_u64().expect("events");
    assert!(daemon.signal("TERM").success());
    daemon.execute("DELETE FROM orders; UPDATE checkpoints SET position = 0");
    daemon.set_env("ORDERS_TEST_CATCH_UP_PAUSE_MS", Some(&pause_ms.to_string()));
    (daemon, before, events)
}

fn status_json(daemon: &TestDaemon) -> serde_json::Value {
    let output = daemon.run(["daemon", "status", "--json"]);
    assert_eq!(code(&output), 0, "a starting daemon is no failure: {}", stderr(&output));
    serde_json::from_slice(&output.stdout).expect("status JSON")
}

#[test]
fn status_says_starting_with_the_catch_up_progress() {
    let (mut daemon, _, events) = with_read_model_to_rebuild(100);
    daemon.spawn_starting().expect("the daemon answers");
    let status = status_json(&daemon);
    assert_eq!(status["state"], "starting", "{status}");
    assert_eq!(status["pid"], daemon.pid());
    let step = &status["start"]["step"];
    assert!(step == "opening_store" || step == "catching_up", "{status}");

    // Progress moves: n of m, n growing.
    let deadline = Instant::now() + Duration::from_secs(20);
    let seen = loop {
        let start = status_json(&daemon)["start"].clone();
        let applied = start["applied"].as_u64().unwrap_or_default();
        if start["step"] == "catching_up" && applied > 0 {
            assert_eq!(start["total"], events, "{start}");
            assert!(applied < events, "caught up too fast to see: {start}");
            break applied;
        }
        assert!(Instant::now() < deadline, "no progress: {start}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = daemon.ok(["daemon", "status"]);
    assert!(text.contains("is starting"), "{text}");
    assert!(
        text.contains("read model catching up, ")
            && text.contains(&format!(" of {} events", thousands(events))),
        "{text}"
    );

    // Every other request is told so, and nothing is done.
    let mut raw = RawClient::connect(&daemon.socket());
    let reply = raw.call(daemon.request(json!({"cmd": "create", "user": "early", "total": 2})));
    assert_eq!(reply["error"]["code"], "starting", "{reply}");
    let message = reply["error"]["message"].as_str().expect("message");
    assert!(message.starts_with("the daemon is starting: read model catching up, "), "{message}");
    // Bad input still gets its own answer.
    let reply = raw.call(daemon.request(json!({"cmd": "nonsense"})));
    assert_eq!(reply["error"]["code"], "invalid_request", "{reply}");
    // A request for another store is told so from the first instant, starting or not.
    let reply = raw.call(crate::fixture::request("/elsewhere", json!({"cmd": "status"})));
    assert_eq!(reply["error"]["code"], "wrong_store", "{reply}");

    let ready = daemon.json(["list", "--user", "early"]);
    assert_eq!(ready, json!([]), "the create sent while starting was not carried out");
    let status = status_json(&daemon);
    assert_eq!(status["state"], "ready", "{status}");
    assert!(status.get("start").is_none(), "{status}");
    assert_eq!(status["events"], events);
    assert!(seen < events);
}

#[test]
fn list_during_a_catch_up_waits_then_answers_in_full() {
    let (mut daemon, before, _) = with_read_model_to_rebuild(50);
    daemon.spawn_starting().expect("the daemon answers");
    assert_eq!(daemon.status_state(), "starting");
    let listed = daemon.ok(["list", "--all", "--json"]);
    assert_eq!(listed, before, "the whole read model, rebuilt");
}

#[test]
fn autostart_during_a_catch_up_waits_for_the_starting_daemon() {
    let (mut daemon, _, _) = with_read_model_to_rebuild(50);
    daemon.spawn_starting().expect("the daemon answers");
    assert_eq!(daemon.status_state(), "starting");
    let output = daemon
        .command_with_autostart()
        .args(["create", "--user", "patient", "--total", "2"])
        .output()
        .expect("run");
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(!stderr(&output).contains("another daemon"), "{}", stderr(&output));
    assert_eq!(daemon.json(["daemon", "status"])["pid"], daemon.pid(), "no second daemon");
    assert_eq!(daemon.json(["list", "--user", "patient"]).as_array().map(Vec::len), Some(1));
}

#[test]
fn restart_during_a_catch_up_stops_it_politely_and_the_data_is_intact() {
    let (mut daemon, before, _) = with_read_model_to_rebuild(50);
    daemon.spawn_starting().expect("the daemon answers");
    assert_eq!(daemon.status_state(), "starting");
    let old = daemon.pid();
    let restarted = daemon.run(["daemon", "restart"]);
    assert_eq!(code(&restarted), 0, "{}", stderr(&restarted));
    let said = stderr(&restarted);
    assert!(!said.contains("SIGKILL") && !said.contains("by signal"), "{said}");
    assert!(daemon.reap().success(), "the starting daemon exits 0 when asked to stop");
    let log = daemon.log();
    assert!(log.contains("start-up stopped during the catch-up"), "{log}");
    assert!(log.contains("daemon stopped during its start-up"), "{log}");
    let status = daemon.json(["daemon", "status"]);
    assert_ne!(status["pid"], old);
    assert_eq!(status["state"], "ready");
    assert_eq!(daemon.ok(["list", "--all", "--json"]), before, "the new daemon resumed the catch-up");
}

#[test]
fn sigterm_during_a_catch_up_exits_cleanly_and_removes_the_socket() {
    let (mut daemon, _, _) = with_read_model_to_rebuild(1_000);
    daemon.spawn_starting().expect("the daemon answers");
    let asked = Instant::now();
    assert!(daemon.signal("TERM").success(), "SIGTERM exits 0 while starting");
    assert!(asked.elapsed() < Duration::from_secs(5), "stopped between two chunks");
    assert!(!daemon.socket().exists(), "the socket is removed");
}

#[test]
fn a_client_gives_up_on_a_start_up_that_stops_moving_or_dies() {
    let (mut daemon, _, _) = with_read_model_to_rebuild(3_000);
    daemon.spawn_starting().expect("the daemon answers");
    let impatient =
        daemon.command().env("ORDERS_START_PATIENCE", "300ms").args(["list"]).output().expect("run");
    assert_eq!(code(&impatient), 5, "{}", stderr(&impatient));
    let said = stderr(&impatient);
    assert!(said.contains("made no progress starting for 300ms"), "{said}");
    assert!(said.contains("read model catching up, 0 of"), "the last progress: {said}");

    let waiting = daemon
        .command()
        .args(["list"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn a waiting client");
    std::thread::sleep(Duration::from_millis(300));
    daemon.kill9();
    let output = waiting.wait_with_output().expect("the waiting client ends");
    assert_eq!(code(&output), 5, "{}", stderr(&output));
    assert!(stderr(&output).contains("the daemon stopped while it was starting"), "{}", stderr(&output));
}

#[test]
fn a_failing_start_up_is_reported_by_daemon_start_and_leaves_no_socket() {
    let mut daemon = TestDaemon::start();
    daemon.create("future", 2);
    assert!(daemon.signal("TERM").success());
    match daemon.postgres() {
        Some(_) => daemon.execute("UPDATE orders_schema SET version = 99"),
        None => daemon.database().pragma_update(None, "user_version", 99).expect("bump the schema"),
    }
    let started = daemon.run(["daemon", "start"]);
    assert_eq!(code(&started), 5, "{}", stderr(&started));
    assert!(stderr(&started).contains("newer version of orders (schema 99"), "{}", stderr(&started));
    assert!(!daemon.socket().exists(), "the socket went with the daemon");
    let status = daemon.run(["daemon", "status"]);
    assert_eq!(code(&status), 5);
    assert!(stderr(&status).contains("no daemon is running"), "{}", stderr(&status));
}

/// `2000` as the daemon writes it: `2,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}
