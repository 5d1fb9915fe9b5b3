//! Replay and the event log: rebuild the read side online, check it, read and follow the log.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

use crate::fixture::{RawClient, TestDaemon, code, stderr};

fn list_json_bytes(daemon: &TestDaemon, user: &str) -> String {
    daemon.ok(["list", "--user", user, "--all", "--json"])
}

#[test]
fn replay_leaves_every_users_list_byte_identical() {
    let daemon = TestDaemon::start();
    let ids = daemon.bulk_create(300, 5);
    for id in ids.iter().step_by(10) {
        // Some are cancelled by their customer too (the others are settled already: refused).
        let _ = daemon.run(["cancel", id]);
    }
    daemon.wait_until_quiet();
    let users: Vec<String> = (0..5).map(|n| format!("user{n}")).collect();
    let before: Vec<String> = users.iter().map(|user| list_json_bytes(&daemon, user)).collect();
    let everyone = daemon.ok(["list", "--all", "--json"]);

    let report = daemon.json(["replay"]);
    assert_eq!(report["check"], false);
    assert_eq!(report["orders"], 300);
    assert!(report["events"].as_u64().expect("events") > 300 * 4, "{report}");

    for (user, before) in users.iter().zip(&before) {
        assert_eq!(&list_json_bytes(&daemon, user), before, "{user}'s list after the replay");
    }
    assert_eq!(daemon.ok(["list", "--all", "--json"]), everyone);
    let text = daemon.ok(["replay"]);
    assert!(text.starts_with("replayed ") && text.contains("events/s"), "{text}");
}

#[test]
fn replay_while_commands_run_loses_none_of_them() {
    let daemon = TestDaemon::start();
    daemon.bulk_create(200, 3);
    let stop = Arc::new(AtomicBool::new(false));
    let socket = daemon.socket();
    let create = daemon.request(json!({"cmd": "create", "user": "during", "total": 2}));
    let writer = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut client = RawClient::connect(&socket);
            let mut created = Vec::new();
            while !stop.load(Ordering::Relaxed) || created.len() < 50 {
                let reply = client.call(create.clone());
                assert_eq!(reply["ok"], true, "{reply}");
                created.push(reply["data"]["id"].as_str().expect("id").to_owned());
            }
            created
        })
    };
    for _ in 0..5 {
        let report = daemon.json(["replay"]);
        assert_eq!(report["differences"], 0);
    }
    stop.store(true, Ordering::Relaxed);
    let created = writer.join().expect("the writer thread");
    daemon.wait_until_quiet();
    let listed = daemon.json(["list", "--user", "during", "--all"]);
    let mut listed: Vec<&str> =
        listed.as_array().expect("array").iter().map(|o| o["id"].as_str().expect("id")).collect();
    listed.reverse();
    assert_eq!(listed, created, "every order created during the replays is in the new read model");
    let check = daemon.run(["replay", "--check"]);
    assert_eq!(code(&check), 0, "{}", stderr(&check));
}

#[test]
fn a_replay_killed_halfway_leaves_the_old_read_model_working() {
    let mut daemon = TestDaemon::start();
    daemon.bulk_create(6_000, 20);
    daemon.wait_until_quiet();
    let before = daemon.ok(["list", "--all", "--json"]);

    let mut client = RawClient::connect(&daemon.socket());
    client.send_raw(format!("{}\n", daemon.request(json!({"cmd": "replay"}))).as_bytes());
    let first = client.reply().expect("a progress line");
    assert!(first["progress"]["applied"].as_u64().is_some(), "{first}");
    daemon.kill9();
    let progress = &first["progress"];
    assert!(progress["applied"].as_u64() < progress["total"].as_u64(), "killed halfway: {first}");

    daemon.spawn();
    assert!(
        daemon.log().contains("replay that did not finish"),
        "the half-built table was dropped:\n{}",
        daemon.log()
    );
    assert_eq!(daemon.ok(["list", "--all", "--json"]), before, "the old read model, intact");
    let id = daemon.create("after", 2);
    daemon.wait_for_status(&id, "delivered");
    let check = daemon.run(["replay", "--check"]);
    assert_eq!(code(&check), 0, "{}", stderr(&check));
}

#[test]
fn a_corrupted_read_model_is_reported_by_check_and_mended_by_replay() {
    let daemon = TestDaemon::start();
    let ids = daemon.bulk_create(20, 2);
    daemon.wait_until_quiet();
    let (damaged, deleted) = (&ids[2], &ids[5]);
    let right = daemon.json(["show", damaged]);
    daemon.execute(&format!(
        "UPDATE orders SET total = 999, status = 'delivered' WHERE id = '{damaged}'; \
         DELETE FROM orders WHERE id = '{deleted}'"
    ));

    let check = daemon.run(["replay", "--check"]);
    assert_eq!(code(&check), 7, "a check that finds differences fails: {}", stderr(&check));
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(report.starts_with("2 orders differ"), "{report}");
    assert!(
        report.contains(&format!("{damaged}: total is 999 but the log says {}", right["total"])),
        "{report}"
    );
    assert!(report.contains(&format!("{deleted}: missing from the read model")), "{report}");
    assert!(stderr(&check).contains(" replay`"), "the hint says how to mend it: {}", stderr(&check));
    let json_check = daemon.run(["replay", "--check", "--json"]);
    assert_eq!(code(&json_check), 7);
    let json_report: Value = serde_json::from_slice(&json_check.stdout).expect("JSON report");
    assert_eq!(json_report["differences"], 2);
    assert_eq!(daemon.json(["show", damaged])["total"], 999, "a check changes nothing");

    daemon.ok(["replay"]);
    assert_eq!(daemon.json(["show", damaged]), right);
    assert_eq!(daemon.json(["show", deleted])["id"], deleted.as_str());
    assert_eq!(code(&daemon.run(["replay", "--check"])), 0);
}

/// `history` is the log's account of an order: a read-model row that cannot be read (a value
/// edited by hand) makes `show` fail, but the history is still there to see what happened.
#[test]
fn history_does_not_depend_on_a_readable_read_model_row() {
    let daemon = TestDaemon::start();
    let id = daemon.create("hist", 3);
    daemon.wait_for_status(&id, "cancelled");
    let before = daemon.history_types(&id);
    daemon.execute(&format!("UPDATE orders SET status = 'bogus' WHERE id = '{id}'"));
    assert_ne!(code(&daemon.run(["show", &id])), 0, "the row is unreadable");
    assert_eq!(daemon.history_types(&id), before, "the history as the log holds it");
}

#[test]
fn events_lists_the_log_a_page_at_a_time() {
    let daemon = TestDaemon::start();
    daemon.create("ann", 3); // OrderPlaced, PaymentRequested, PaymentDeclined, OrderCancelled
    daemon.create("ann", 5);
    daemon.wait_until_quiet();
    let output = daemon.ok(["events", "--from", "3", "--limit", "4", "--json"]);
    let events: Vec<Value> =
        output.lines().map(|line| serde_json::from_str(line).expect("one JSON object a line")).collect();
    let positions: Vec<i64> = events.iter().map(|e| e["position"].as_i64().expect("position")).collect();
    assert_eq!(positions, [3, 4, 5, 6]);
    assert_eq!(events[1]["type"], "OrderCancelled");
    assert_eq!(events[1]["data"], json!({"reason": "payment_declined"}));

    let all = daemon.ok(["events"]);
    assert_eq!(all.lines().count(), 9, "a header and eight events:\n{all}");
    let mut lines = all.lines();
    assert!(lines.next().is_some_and(|line| line.contains("POSITION") && line.contains("TYPE")), "{all}");
    assert!(lines.next().is_some_and(|line| line.contains("OrderPlaced")), "{all}");
    assert_eq!(daemon.ok(["events", "--from", "9"]), "", "nothing past the end");
    let zero = daemon.run(["events", "--from", "0"]);
    assert_eq!(code(&zero), 2, "{}", stderr(&zero));
    assert!(stderr(&zero).contains("invalid cursor '0'"), "{}", stderr(&zero));
}

#[test]
fn events_follow_prints_an_event_appended_after_it_started() {
    let daemon = TestDaemon::start();
    daemon.create("early", 3);
    let mut follower = daemon
        .command()
        .args(["events", "--follow", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the follower");
    let (lines_tx, lines) = mpsc::channel();
    let stdout = follower.stdout.take().expect("stdout");
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines_tx.send(line.expect("a line")).is_err() {
                break;
            }
        }
    });
    let first: Value =
        serde_json::from_str(&lines.recv_timeout(Duration::from_secs(10)).expect("the old events"))
            .expect("JSON");
    assert_eq!(first["position"], 1);
    let id = daemon.create("late", 2);
    let placed = loop {
        let line = lines.recv_timeout(Duration::from_secs(10)).expect("the new event arrives");
        let event: Value = serde_json::from_str(&line).expect("JSON");
        if event["type"] == "OrderPlaced" && event["stream"] == format!("order-{id}") {
            break event;
        }
    };
    assert_eq!(placed["data"]["user"], "late");
    follower.kill().expect("interrupt the follower");
    follower.wait().expect("reap");
}

#[test]
fn watch_streams_an_order_and_exits_when_it_settles() {
    let daemon = TestDaemon::start();
    let id = daemon.create("wendy", 2);
    let output = daemon.ok(["watch", &id]);
    let lines: Vec<&str> = output.lines().collect();
    assert!(lines[0].trim_start().starts_with("POSITION"), "a header first: {output}");
    assert!(lines[1].contains("OrderPlaced") && lines[1].contains(&id[28..]), "{output}");
    assert!(output.contains("DeliveryScheduled") && output.contains("OrderDelivered"), "{output}");
    assert_eq!(lines.last(), Some(&format!("order {id} is delivered").as_str()), "{output}");

    let json = daemon.ok(["watch", &id, "--json"]);
    let last: Value = serde_json::from_str(json.lines().last().expect("a last line")).expect("JSON");
    assert_eq!(last["status"], "delivered");
    let unknown = daemon.run(["watch", "019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6b"]);
    assert_eq!(code(&unknown), 3);
}
