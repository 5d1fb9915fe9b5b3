//! Issue 12: every request names its store, hints speak of the paths in use, and the `events`
//! cursor is opaque.

use serde_json::{Value, json};

use crate::fixture::{RawClient, TestDaemon, code, stderr};

/// `orders --data-dir /other list` listed the running daemon's database, exit 0, no warning.
#[test]
fn a_daemon_serving_another_data_dir_says_so_and_nothing_is_created() {
    let daemon = TestDaemon::start_with(&[("ORDERS_PAYMENT_DELAY", "1h")]);
    let other = daemon.dir().join("other");
    for args in [&["list"][..], &["create", "--user", "olga", "--total", "2"], &["daemon", "status"]] {
        // Autostart on: it must not start a second daemon for the other data directory either.
        let output =
            daemon.command_with_autostart().arg("--data-dir").arg(&other).args(args).output().expect("run");
        assert_eq!(code(&output), 5, "{args:?}: {}", stderr(&output));
        let message = stderr(&output);
        let named = format!(
            "the daemon on {} serves {}, not {}",
            daemon.socket().display(),
            daemon.store(),
            other.display()
        );
        assert!(message.contains(&named), "{args:?}: {message}");
        assert!(message.contains("--socket"), "the hint says how to serve both: {message}");
        assert!(output.stdout.is_empty(), "{args:?}: {}", String::from_utf8_lossy(&output.stdout));
        assert!(!other.exists(), "{args:?}: nothing is created for the other data directory");
    }
    assert_eq!(daemon.json(["list", "--all"]), json!([]), "nothing was written to the served store");
    assert_eq!(daemon.json(["daemon", "status"])["events"], 0);

    // Stopping through the wrong data directory does not stop the daemon of the right one.
    let stop = daemon.command().arg("--data-dir").arg(&other).args(["daemon", "stop"]).output().expect("run");
    assert_eq!(code(&stop), 5, "{}", stderr(&stop));
    assert_eq!(daemon.json(["daemon", "status"])["pid"], daemon.pid());

    // A link to the served data directory names the same store.
    let link = daemon.dir().join("link");
    std::os::unix::fs::symlink(daemon.data_dir(), &link).expect("symlink");
    let listed =
        daemon.command().arg("--data-dir").arg(&link).args(["list", "--json"]).output().expect("run");
    assert_eq!(code(&listed), 0, "{}", stderr(&listed));
}

#[test]
fn a_raw_request_for_another_store_is_answered_wrong_store() {
    let daemon = TestDaemon::start();
    let mut client = RawClient::connect(&daemon.socket());
    let reply = client.call(json!({"v": orders_shared::PROTOCOL_VERSION, "store": "/elsewhere", "cmd": "create", "user": "x", "total": 2}));
    assert_eq!(reply["error"]["code"], "wrong_store", "{reply}");
    assert_eq!(reply["error"]["served"], daemon.store(), "{reply}");
    let message = reply["error"]["message"].as_str().expect("message");
    assert_eq!(message, format!("this daemon serves {}, not /elsewhere", daemon.store()));
    let reply = client.call(json!({"v": orders_shared::PROTOCOL_VERSION, "cmd": "status"}));
    assert_eq!(reply["error"]["code"], "invalid_request", "a request names its store: {reply}");
    assert_eq!(daemon.json(["list", "--all"]), json!([]));
}

/// `orders --socket alt.sock daemon status` said the socket "is gone" and suggested `restart`,
/// which moved the healthy daemon to alt.sock.
#[test]
fn on_another_socket_status_names_the_socket_the_daemon_listens_on() {
    let daemon = TestDaemon::start();
    let alt = daemon.dir().join("alt.sock");
    let output = daemon.command().arg("--socket").arg(&alt).args(["daemon", "status"]).output().expect("run");
    assert_eq!(code(&output), 5, "{}", stderr(&output));
    let message = stderr(&output);
    let said = format!(
        "the daemon (pid {}) serving {} listens on {}, not on {}",
        daemon.pid(),
        daemon.data_dir().display(),
        daemon.socket().display(),
        alt.display()
    );
    assert!(message.contains(&said), "{message}");
    assert!(message.contains(&format!("--socket {}", daemon.socket().display())), "{message}");
    assert!(!message.contains("gone") && !message.contains("restart"), "{message}");

    // Any other command says the same, and autostart starts nothing on alt.sock.
    let list = daemon.command_with_autostart().arg("--socket").arg(&alt).arg("list").output().expect("run");
    assert_eq!(code(&list), 5, "{}", stderr(&list));
    assert!(stderr(&list).contains(&said), "{}", stderr(&list));
    assert!(!alt.exists(), "no daemon was started on alt.sock");
}

#[test]
fn restart_or_stop_on_another_socket_leaves_the_healthy_daemon_alone() {
    let mut daemon = TestDaemon::start();
    let id = daemon.create("kept", 2);
    let alt = daemon.dir().join("alt.sock");
    for action in ["restart", "stop"] {
        let output =
            daemon.command().arg("--socket").arg(&alt).args(["daemon", action]).output().expect("run");
        assert_eq!(code(&output), 5, "{action}: {}", stderr(&output));
        let message = stderr(&output);
        assert!(message.contains(&format!("listens on {}", daemon.socket().display())), "{message}");
        assert!(!message.contains("by signal"), "{message}");
        assert!(!alt.exists(), "{action}: the daemon was not moved to alt.sock");
    }
    let restart = stderr(
        &daemon.command().arg("--socket").arg(&alt).args(["daemon", "restart"]).output().expect("run"),
    );
    assert!(
        restart.contains(&format!("--socket {} daemon restart", daemon.socket().display())),
        "the hint restarts it where it listens: {restart}"
    );
    assert_eq!(daemon.json(["daemon", "status"])["pid"], daemon.pid(), "the same daemon serves on");
    assert_eq!(daemon.json(["show", &id])["user"], "kept");
    assert!(daemon.ok(["daemon", "stop"]).starts_with("daemon stopped"));
    assert!(daemon.reap().success());
}

/// The cursor `events --json` prints is what `events --from` takes; on SQLite a position is one.
#[test]
fn events_resume_from_the_cursor_they_printed() {
    let daemon = TestDaemon::start_with(&[("ORDERS_PAYMENT_DELAY", "1h")]);
    for n in 1..=3 {
        daemon.create("cora", 2 * n);
    }
    let all = daemon.ok(["events", "--json"]);
    let events: Vec<Value> = all.lines().map(|line| serde_json::from_str(line).expect("JSON")).collect();
    assert!(events.len() >= 4, "{all}");
    let cursor = events[2]["cursor"].as_str().expect("every event carries its cursor").to_owned();
    let resumed = daemon.ok(["events", "--from", &cursor, "--json"]);
    let resumed: Vec<Value> = resumed.lines().map(|line| serde_json::from_str(line).expect("JSON")).collect();
    assert_eq!(resumed, events[2..], "from a cursor: that event and every one after it");
    let by_position = daemon.ok(["events", "--from", "3", "--json"]);
    assert_eq!(by_position.lines().count(), events.len() - 2, "a position still works");

    // A page says where to read on, and reading on from there continues the log.
    let mut client = RawClient::connect(&daemon.socket());
    let page = client.call(daemon.request(json!({"cmd": "events", "limit": 2})));
    assert_eq!(page["data"]["events"].as_array().map(Vec::len), Some(2), "{page}");
    let next = page["data"]["next"].clone();
    let rest = client.call(daemon.request(json!({"cmd": "events", "from": next, "limit": 1})));
    assert_eq!(rest["data"]["events"][0], events[2], "{rest}");
    let wrong = client.call(daemon.request(json!({"cmd": "events", "from": "x7"})));
    assert_eq!(wrong["error"]["code"], "invalid_request", "{wrong}");
    let bad = daemon.run(["events", "--from", "x7"]);
    assert_eq!(code(&bad), 2, "a bad cursor is a usage error");
    assert!(stderr(&bad).contains("invalid cursor 'x7'"), "{}", stderr(&bad));
}
