//! `orders export` and `orders import` (issue 15): the log as NDJSON, and back into an empty
//! store, on real daemons.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixture::{TestDaemon, code, stderr};

/// `orders export` of a daemon's store, as printed.
fn export(daemon: &TestDaemon) -> String {
    daemon.ok(["export"])
}

/// An export written to a file in its own directory, which lives as long as the `TempDir`.
fn export_file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("orders.ndjson");
    std::fs::write(&file, text).expect("write the export");
    (dir, file)
}

/// The issue's round trip: export → import into a fresh store → export again is byte-identical,
/// and `check` is clean; the imported store has an identity of its own.
#[test]
fn an_export_imported_into_a_fresh_store_exports_byte_for_byte() {
    let daemon = TestDaemon::start();
    let ids = daemon.bulk_create(150, 4);
    let cancelled = daemon.create("carol", 10);
    daemon.ok(["cancel", &cancelled]);
    daemon.ok(["create", "--user", "dave", "--total", "12", "--idempotency-key", "retry-1"]);
    daemon.wait_until_quiet();
    let text = export(&daemon);
    let events = daemon.json(["daemon", "status"])["events"].as_u64().expect("events");
    assert_eq!(text.lines().count() as u64, events + 1, "every event, and the end line");
    let end: Value = serde_json::from_str(text.lines().last().expect("a line")).expect("json");
    assert_eq!(end["end"]["events"].as_u64(), Some(events), "{end}");
    assert!(text.contains(r#""idempotency_key":"retry-1""#));
    let (_dir, file) = export_file(&text);

    let mut fresh = TestDaemon::stopped_with(&[]);
    let report = fresh.json(["import", file.to_str().expect("utf-8")]);
    assert_eq!(report["events"].as_u64(), Some(events));
    assert_eq!(report["orders"].as_u64(), Some(ids.len() as u64 + 2));
    fresh.spawn();
    assert_eq!(export(&fresh), text, "the export of the import is the export");
    assert_eq!(code(&fresh.run(["check"])), 0);
    for id in ids.iter().chain([&cancelled]) {
        assert_eq!(fresh.json(["show", id]), daemon.json(["show", id]));
    }
    let (theirs, ours) = (daemon.json(["daemon", "status"]), fresh.json(["daemon", "status"]));
    assert_ne!(theirs["store_id"], ours["store_id"], "the imported store has an identity of its own");
    // The key still finds its order.
    let again = fresh.ok(["create", "--user", "dave", "--total", "12", "--idempotency-key", "retry-1"]);
    assert_eq!(fresh.json(["list", "--user", "dave"]).as_array().map(Vec::len), Some(1), "{again}");
}

/// An import from standard input, over a running daemon on an empty store: the daemon is stopped
/// for it and started again, and carries out at once a delivery whose time came meanwhile.
#[test]
fn a_delivery_already_due_goes_at_once_after_an_import() {
    let daemon = TestDaemon::start_with(&[("ORDERS_DELIVERY_DELAY", "1h")]);
    let id = daemon.create("alice", 2);
    daemon.wait_for_status(&id, "approved");
    let text = export(&daemon);

    // Two hours later, as the new daemon's clock says: the delivery is overdue.
    let mut fresh = TestDaemon::start_with(&[("ORDERS_TEST_CLOCK_OFFSET_MS", "7200000")]);
    let mut import = fresh
        .command()
        .args(["import", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run import");
    import.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write the export");
    let output = import.wait_with_output().expect("import");
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    fresh.reap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("1 delivery") && said.contains("started again"), "{said}");
    let started = Instant::now();
    fresh.wait_for_status(&id, "delivered");
    assert!(started.elapsed() < Duration::from_secs(5), "delivered at once: {:?}", started.elapsed());
    assert_eq!(code(&fresh.run(["check"])), 0);
    fresh.ok(["daemon", "stop"]);
}

/// A line that breaks the rules is refused with its number, and nothing is imported.
#[test]
fn an_illegal_line_is_refused_with_its_number_and_nothing_is_imported() {
    let daemon = TestDaemon::start();
    let id = daemon.create("alice", 2);
    daemon.wait_for_status(&id, "delivered");
    let mut lines: Vec<Value> =
        export(&daemon).lines().map(|line| serde_json::from_str(line).expect("json")).collect();
    let approved = lines.iter().position(|line| line["type"] == "OrderApproved").expect("approved");
    lines[approved]["type"] = "OrderDelivered".into();
    let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
    let (_dir, file) = export_file(&text);

    let fresh = TestDaemon::stopped_with(&[]);
    let output = fresh.run(["import", file.to_str().expect("utf-8")]);
    assert_eq!(code(&output), 1);
    let said = stderr(&output);
    assert!(said.contains(&format!("nothing was imported: line {}:", approved + 1)), "{said}");
    assert!(said.contains("OrderDelivered breaks the rules"), "{said}");
    let names: Vec<String> = std::fs::read_dir(fresh.data_dir())
        .expect("the data directory")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("orders.db"))
        .collect();
    assert!(names.is_empty(), "no store and nothing staged is left: {names:?}");
}

/// A store that holds events is never replaced by an import, and its daemon is left running.
#[test]
fn an_import_into_a_store_with_events_is_refused_and_the_daemon_keeps_running() {
    let daemon = TestDaemon::start();
    daemon.create("alice", 2);
    let (_dir, file) = export_file(&export(&daemon));
    let pid = daemon.json(["daemon", "status"])["pid"].clone();
    let output = daemon.run(["import", file.to_str().expect("utf-8")]);
    assert_eq!(code(&output), 1);
    assert!(stderr(&output).contains("an import goes into an empty store"), "{}", stderr(&output));
    assert_eq!(daemon.json(["daemon", "status"])["pid"], pid, "the daemon was not stopped");
}

/// `--from` and `--to` include both ends; a range that ends before it begins, or a cursor no
/// store gave out, is a usage error; a compressed file is named as such.
#[test]
fn an_export_range_includes_both_ends_and_bad_ranges_are_usage_errors() {
    let daemon = TestDaemon::start();
    daemon.bulk_create(10, 2);
    let part = daemon.ok(["export", "--from", "3", "--to", "5"]);
    let positions: Vec<i64> = part
        .lines()
        .filter(|line| !line.starts_with(r#"{"end""#))
        .map(|line| {
            serde_json::from_str::<Value>(line).expect("json")["position"].as_i64().expect("position")
        })
        .collect();
    assert_eq!(positions, [3, 4, 5]);
    let output = daemon.run(["export", "--from", "3", "--to", "5", "--json"]);
    assert_eq!(String::from_utf8_lossy(&output.stdout), part, "--json changes nothing on stdout");
    let summary: Value = serde_json::from_str(&stderr(&output)).expect("the summary as JSON on stderr");
    assert_eq!(summary, serde_json::json!({"events": 3, "first": "3", "last": "5", "next": "6"}));
    for args in [["export", "--from", "5", "--to", "4"], ["export", "--from", "zero", "--to", "4"]] {
        let output = daemon.run(args);
        assert_eq!(code(&output), 2, "{args:?}: {}", stderr(&output));
    }
    let gzip = [&[0x1f, 0x8b, 0x08, 0x00][..], part.as_bytes()].concat();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("orders.ndjson.gz");
    std::fs::write(&file, gzip).expect("write");
    let fresh = TestDaemon::stopped_with(&[]);
    let output = fresh.run(["import", file.to_str().expect("utf-8")]);
    assert_eq!(code(&output), 1);
    assert!(stderr(&output).contains("gunzip -c FILE | orders import -"), "{}", stderr(&output));
}

/// `orders export | head -1`: a reader that has seen enough ends the export quietly.
#[test]
fn an_export_into_a_closed_pipe_ends_quietly() {
    let daemon = TestDaemon::start();
    daemon.bulk_create(2000, 5);
    let mut child =
        daemon.command().arg("export").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("export");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut first).expect("a line");
    assert!(first.starts_with(r#"{"position":1,"#), "{first}");
    // The pipe's reader is gone now.
    let output = child.wait_with_output().expect("export ends");
    assert!(stderr(&output).is_empty(), "quietly: {}", stderr(&output));
    assert_eq!(code(&daemon.run(["daemon", "status"])), 0, "the daemon is unharmed");
}

/// An export cut short — by `head`, or a daemon stopped meanwhile — ends on a whole line all the
/// same: import knows it by its missing end line, and imports nothing.
#[test]
fn an_export_cut_short_is_refused_by_import() {
    let daemon = TestDaemon::start();
    daemon.bulk_create(20, 2);
    daemon.wait_until_quiet();
    let whole = export(&daemon);
    let cut: String = whole.lines().take(40).map(|line| format!("{line}\n")).collect();
    let (_dir, file) = export_file(&cut);
    let fresh = TestDaemon::stopped_with(&[]);
    let output = fresh.run(["import", file.to_str().expect("utf-8")]);
    assert_eq!(code(&output), 1);
    assert!(stderr(&output).contains("without the export's end line"), "{}", stderr(&output));
}

/// While an import holds the data directory, other commands say so, a client that would start a
/// daemon waits for it, and nothing kills it: here it waits on a FIFO that is open but not
/// written to yet.
#[test]
fn while_an_import_runs_other_commands_say_so_and_a_restart_does_not_kill_it() {
    let daemon = TestDaemon::start();
    daemon.create("alice", 3);
    daemon.wait_until_quiet();
    let text = export(&daemon);
    let fresh = TestDaemon::stopped_with(&[]);
    let fifo = fresh.dir().join("export.fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    let mut import = fresh
        .command()
        .args(["import", fifo.to_str().expect("utf-8")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("import");
    // The writer's end, open (so that the import's open returns) but silent until told.
    let (feed, fed) = std::sync::mpsc::channel::<()>();
    let writer = std::thread::spawn({
        let fifo = fifo.clone();
        move || {
            let mut end = std::fs::OpenOptions::new().write(true).open(&fifo).expect("open the fifo");
            fed.recv().expect("told to write");
            end.write_all(text.as_bytes()).expect("feed the import");
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let busy = loop {
        let output = fresh.run(["list"]);
        if stderr(&output).contains("is at work on") {
            break output;
        }
        assert!(Instant::now() < deadline, "never told of the import: {}", stderr(&output));
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code(&busy), 5);
    assert!(stderr(&busy).contains("an `orders import` (pid"), "{}", stderr(&busy));
    assert_ne!(code(&fresh.run(["daemon", "restart"])), 0, "a restart refuses");
    assert!(import.try_wait().expect("wait").is_none(), "the import was not killed");
    // A client that would start a daemon waits for the import (the start lock), then starts one
    // on the imported store: it never takes the data directory from under the import.
    let waiting = fresh
        .command_with_autostart()
        .args(["list", "--user", "alice", "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("list");
    std::thread::sleep(Duration::from_millis(300));
    feed.send(()).expect("the writer waits");
    writer.join().expect("the writer");
    let output = import.wait_with_output().expect("import");
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let listed = waiting.wait_with_output().expect("list");
    assert_eq!(code(&listed), 0, "{}", stderr(&listed));
    assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().count(), 1, "the imported order is listed");
    fresh.ok(["daemon", "stop"]);
}
