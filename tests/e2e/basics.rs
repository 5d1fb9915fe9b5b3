//! Create, show, list and cancel, as a user would type them.

use crate::fixture::{TestDaemon, code, stderr};

#[test]
fn create_prints_the_new_id_alone() {
    let daemon = TestDaemon::start();
    let stdout = daemon.ok(["create", "--user", "alice", "--total", "2"]);
    let id = stdout.trim();
    assert_eq!(stdout, format!("{id}\n"), "only the id and a newline");
    assert!(uuid_like(id), "{id:?}");
}

#[test]
fn show_reports_one_order_as_text_and_as_json() {
    let daemon = TestDaemon::start();
    let id = daemon.create("alice", 42);
    let text = daemon.ok(["show", &id]);
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}:")))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
            .to_owned()
    };
    assert_eq!(field("id"), id);
    assert_eq!(field("user"), "alice");
    assert_eq!(field("total"), "42");

    let order = daemon.json(["show", &id]);
    assert_eq!(order["id"], id.as_str());
    assert_eq!(order["user"], "alice");
    assert_eq!(order["total"], 42);
    for field in ["status", "created_at", "updated_at"] {
        assert!(order[field].is_string(), "{field} in {order}");
    }
}

#[test]
fn create_json_prints_the_whole_order() {
    let daemon = TestDaemon::start();
    let order = daemon.json(["create", "--user", "carol", "--total", "8"]);
    assert_eq!(order["user"], "carol");
    assert_eq!(order["total"], 8);
    assert_eq!(order["status"], "pending", "the reply reflects the command's own event");
    assert_eq!(daemon.json(["show", order["id"].as_str().expect("id")])["id"], order["id"]);
}

#[test]
fn list_shows_a_users_orders_newest_first_in_a_table() {
    let daemon = TestDaemon::start();
    let first = daemon.create("alice", 2);
    let second = daemon.create("alice", 4);
    let other = daemon.create("bob", 6);

    let table = daemon.ok(["list", "--user", "alice"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two rows:\n{table}");
    for column in ["ID", "USER", "TOTAL", "STATUS", "CREATED", "UPDATED"] {
        assert!(lines[0].contains(column), "{column} in {}", lines[0]);
    }
    // Short ids: the ends of the ids (issue 18).
    assert!(lines[1].starts_with(&second[28..]), "newest first:\n{table}");
    assert!(lines[2].starts_with(&first[28..]), "{table}");
    assert!(!table.contains(&other[28..]), "bob's order is not alice's:\n{table}");

    let listed = daemon.json(["list", "--user", "alice"]);
    let ids: Vec<&str> =
        listed.as_array().expect("an array").iter().map(|o| o["id"].as_str().expect("id")).collect();
    assert_eq!(ids, [second.as_str(), first.as_str()]);

    let everyone = daemon.json(["list"]);
    assert_eq!(everyone.as_array().map(Vec::len), Some(3), "without --user, everyone's orders");
}

#[test]
fn list_of_nobody_is_an_empty_array_or_a_note() {
    let daemon = TestDaemon::start();
    assert_eq!(daemon.json(["list", "--user", "nobody"]), serde_json::json!([]));
    let output = daemon.run(["list", "--user", "nobody"]);
    assert_eq!(code(&output), 0);
    assert!(output.stdout.is_empty());
    assert!(stderr(&output).contains("no orders"), "{}", stderr(&output));
}

#[test]
fn list_limit_and_all_page_through_the_orders() {
    let daemon = TestDaemon::start();
    let ids: Vec<String> = (0..5).map(|i| daemon.create("dave", 2 * (i + 1))).collect();
    let two = daemon.json(["list", "--user", "dave", "--limit", "2"]);
    assert_eq!(two.as_array().map(Vec::len), Some(2));
    assert_eq!(two[0]["id"], ids[4].as_str());
    let all = daemon.json(["list", "--user", "dave", "--all"]);
    assert_eq!(all.as_array().map(Vec::len), Some(5));
}

#[test]
fn cancel_cancels_a_pending_order_once() {
    let daemon = TestDaemon::start_with(&[("ORDERS_PAYMENT_DELAY", "1h")]);
    let id = daemon.create("alice", 2);
    assert_eq!(daemon.ok(["cancel", &id]), format!("cancelled {id}\n"));
    assert_eq!(daemon.json(["show", &id])["status"], "cancelled");

    let again = daemon.run(["cancel", &id]);
    assert_eq!(code(&again), 4, "refused by the rules: {}", stderr(&again));
    assert!(stderr(&again).contains("cancelled already"), "{}", stderr(&again));
}

pub fn uuid_like(id: &str) -> bool {
    id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}
