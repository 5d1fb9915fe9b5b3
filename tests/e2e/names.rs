//! User names (issue 18): a new order's user must look like what it is — no whitespace at either
//! end, nothing invisible, no control of the text's direction — while the names that older
//! events hold still decode, replay, check and list, and are shown escaped on a terminal.

use serde_json::{Value, json};

use crate::fixture::{RawClient, TestDaemon, code, stderr};
use crate::terminal::Screen;

/// Names that look like another user's, or like nobody's, with what the refusal says.
const LOOKALIKES: [(&str, &str); 12] = [
    (" alice", "whitespace"),
    ("alice ", "whitespace"),
    ("   ", "whitespace"),
    ("alice\t", "printable"),
    ("evil\u{202e}ecila", "U+202E"),
    ("al\u{200b}ice", "U+200B"),
    ("al\u{200d}ice", "U+200D"),
    ("al\u{2060}ice", "U+2060"),
    ("\u{feff}alice", "U+FEFF"),
    ("al\u{ad}ice", "U+00AD"),
    ("al\u{61c}ice", "U+061C"),
    ("\u{2066}alice\u{2069}", "U+2066"),
];

#[test]
fn a_new_order_s_user_must_look_like_what_it_is() {
    let daemon = TestDaemon::start();
    let mut socket = RawClient::connect(&daemon.socket());
    for (user, says) in LOOKALIKES {
        let output = daemon.run(["create", "--user", user, "--total", "2"]);
        assert_eq!(code(&output), 2, "user {user:?}: {}", stderr(&output));
        assert!(stderr(&output).contains(says), "user {user:?}: {}", stderr(&output));
        assert!(output.stdout.is_empty(), "user {user:?}");
        // The socket's own `create`, for clients other than `orders`.
        let reply = socket.call(daemon.request(json!({"cmd": "create", "user": user, "total": 2})));
        assert_eq!(reply["error"]["code"], "invalid_request", "user {user:?}: {reply}");
        let message = reply["error"]["message"].as_str().expect("a message");
        assert!(message.contains(says), "user {user:?}: {message}");
    }
    assert_eq!(daemon.json(["list"]), json!([]), "nothing was created");
    // What is fine stays fine: inner spaces, accents, other scripts.
    for user in ["alice smith", "Zoë Ångström", "王小明"] {
        let id = daemon.create(user, 2);
        assert_eq!(daemon.json(["show", &id])["user"], user);
    }
}

/// The bad argument is echoed in the error escaped: the terminal never receives the override
/// that would show `evil\u{202e}ecila` as `evilalice`.
#[test]
fn a_refused_user_is_echoed_escaped_on_a_terminal() {
    let daemon = TestDaemon::start();
    for user in ["evil\u{202e}ecila", "al\u{200b}ice", "a\u{1b}[2Jb", "\u{2067}bob"] {
        let screen = Screen::run(daemon.command().args(["create", "--user", user, "--total", "2"]), 80);
        assert_eq!(screen.code(), 2, "{}", screen.text());
        let obeyed: Vec<char> = screen.raw.chars().filter(|c| is_unsafe_on_a_terminal(*c)).collect();
        assert!(obeyed.is_empty(), "{user:?}: the terminal got {obeyed:?}: {:?}", screen.raw);
        let shown = orders_shared::text::escaped(user, false);
        assert!(screen.text().replace('\n', "").contains(&*shown), "{user:?}: {}", screen.text());
    }
}

/// What a terminal would act on or show as nothing; the line ends and carriage returns a
/// terminal needs are not.
fn is_unsafe_on_a_terminal(c: char) -> bool {
    !matches!(c, '\n' | '\r') && orders_shared::text::is_unsafe(c)
}

/// An export whose `OrderPlaced` events name `alice` edited to name `user`: events of a store
/// from before the rule, imported as such.
fn renamed(export: &str, user: &str) -> String {
    let from = r#""user":"alice""#;
    let to = format!(r#""user":{}"#, Value::from(user));
    assert!(export.contains(from), "the export names alice: {export}");
    export.replace(from, &to)
}

/// The rule is the command's, not the log's: a store whose events hold names a new order may no
/// longer take imports, replays, checks, lists and exports as it was, and shows them escaped.
#[test]
fn old_names_still_import_replay_check_and_list() {
    let daemon = TestDaemon::start();
    let delivered = daemon.create("alice", 2);
    let declined = daemon.create("bob", 3);
    daemon.wait_for_status(&delivered, "delivered");
    daemon.wait_for_status(&declined, "cancelled");
    let export = daemon.ok(["export"]);
    for old in [" alice", "evil\u{202e}ecila"] {
        let text = renamed(&export, old);
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("orders.ndjson");
        std::fs::write(&file, &text).expect("write the export");
        let mut fresh = TestDaemon::stopped_with(&[]);
        let output = fresh.run(["import", file.to_str().expect("utf-8")]);
        assert_eq!(code(&output), 0, "{old:?}: an import is of old events: {}", stderr(&output));
        fresh.spawn();
        assert_eq!(fresh.json(["show", &delivered])["user"], old);
        assert_eq!(code(&fresh.run(["check"])), 0, "{old:?}: {}", stderr(&fresh.run(["check"])));
        let replayed = fresh.json(["replay"]);
        assert_eq!(replayed["events"], fresh.json(["daemon", "status"])["events"], "{replayed}");
        let output = fresh.run(["replay", "--check"]);
        assert_eq!(code(&output), 0, "{old:?}: {}", stderr(&output));
        let listed = fresh.json(["list", "--user", old]);
        assert_eq!(listed.as_array().map(Vec::len), Some(1), "{old:?}: list --user finds it: {listed}");
        assert_eq!(fresh.ok(["export"]), text, "{old:?}: exported as it was");
        // The same name is refused for a new order, on the same store.
        assert_eq!(code(&fresh.run(["create", "--user", old, "--total", "2"])), 2, "{old:?}");
        // On a terminal, the stored name is shown escaped.
        for command in [vec!["show", delivered.as_str()], vec!["list"]] {
            let screen = Screen::run(fresh.command().args(&command), 120);
            assert_eq!(screen.code(), 0, "{}", screen.text());
            let obeyed: Vec<char> = screen.raw.chars().filter(|c| is_unsafe_on_a_terminal(*c)).collect();
            assert!(obeyed.is_empty(), "{command:?}: the terminal got {obeyed:?}");
            let shown = orders_shared::text::escaped(old, false);
            assert!(screen.text().contains(&*shown), "{command:?}: {}", screen.text());
        }
    }
}

/// Behind the daemon's back, as a store written before the rule would hold it: an `OrderPlaced`
/// naming `' alice'`, with the read model's row to match. `check` and both replays accept it.
#[test]
fn an_old_name_written_into_the_store_replays_and_checks() {
    if !crate::fixture::sqlite_only("SQLite's trigger is lifted by name") {
        return;
    }
    let mut daemon = TestDaemon::start();
    let id = daemon.create("alice", 2);
    daemon.wait_for_status(&id, "delivered");
    daemon.signal("TERM");
    {
        let db = daemon.database();
        // The log is append-only (a trigger): lift it for the edit, and put it back.
        let trigger: String = db
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'events_are_append_only_update'",
                [],
                |row| row.get(0),
            )
            .expect("the trigger");
        db.execute_batch("DROP TRIGGER events_are_append_only_update").expect("lift the trigger");
        let placed = db
            .execute(
                "UPDATE events SET payload = replace(payload, '\"user\":\"alice\"', '\"user\":\" alice\"') \
                 WHERE type = 'OrderPlaced'",
                [],
            )
            .expect("edit the event");
        assert_eq!(placed, 1);
        db.execute_batch(&trigger).expect("put the trigger back");
        db.execute("UPDATE orders SET user = ' alice'", []).expect("edit the read model");
    }
    daemon.spawn();
    assert_eq!(daemon.json(["show", &id])["user"], " alice");
    for check in [vec!["check"], vec!["replay"], vec!["replay", "--check"], vec!["check"]] {
        let output = daemon.run(&check);
        assert_eq!(
            code(&output),
            0,
            "{check:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            stderr(&output)
        );
    }
    assert_eq!(daemon.json(["show", &id])["user"], " alice", "replayed as it was");
}
