//! `orders` in scripts (issue 18): a closed pipe ends every command quietly, JSON times sort as
//! strings, `create --wait` and `watch` fail (exit 8) for an order that ended cancelled, and a
//! wait that runs out says the order's status at that moment.

use std::process::Stdio;

use crate::fixture::{TestDaemon, code, stderr};

#[test]
fn a_closed_pipe_ends_every_command_quietly() {
    let daemon = TestDaemon::start();
    daemon.bulk_create(50, 5);
    for args in [
        &["events", "--json"][..],
        &["events"],
        &["list", "--all", "--json"],
        &["list", "--all"],
        &["metrics", "--json"],
        &["export"],
        &["completions", "bash"],
        &["completions", "zsh"],
        &["daemon", "status", "--json"],
    ] {
        let mut child = daemon
            .command()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run orders");
        // The reader goes first, as `| head -c 0` would: every write finds the pipe closed.
        drop(child.stdout.take());
        let output = child.wait_with_output().expect("wait");
        assert!(output.status.success(), "orders {args:?}: {} {}", output.status, stderr(&output));
        assert!(stderr(&output).is_empty(), "orders {args:?}: {}", stderr(&output));
    }
}

#[test]
fn json_times_have_a_fixed_width_and_sort_as_strings() {
    let daemon = TestDaemon::start();
    daemon.bulk_create(200, 4);
    daemon.wait_until_quiet();
    let orders = daemon.json(["list", "--all"]);
    let orders = orders.as_array().expect("an array");
    let mut times = Vec::new();
    for order in orders {
        for field in ["created_at", "updated_at", "approved_at", "delivered_at", "cancelled_at"] {
            if let Some(time) = order[field].as_str() {
                assert_eq!(time.len(), 24, "{field} {time}: YYYY-MM-DDTHH:MM:SS.mmmZ");
                assert!(time.ends_with('Z') && time.as_bytes()[19] == b'.', "{field} {time}");
            }
        }
        times.push(order["created_at"].as_str().expect("created").to_owned());
    }
    // Newest first, as strings too.
    assert!(times.windows(2).all(|pair| pair[0] >= pair[1]), "sorted as strings");
    // One event per line.
    for line in daemon.ok(["events", "--limit", "50", "--json"]).lines() {
        let event: serde_json::Value = serde_json::from_str(line).expect("an event");
        assert_eq!(event["recorded_at"].as_str().expect("a time").len(), 24, "{event}");
    }
    let status = daemon.json(["daemon", "status"]);
    assert_eq!(status["started_at"].as_str().expect("a time").len(), 24, "{status}");
}

#[test]
fn waiting_for_an_order_that_ends_cancelled_is_exit_8() {
    let daemon = TestDaemon::start();
    let approved = daemon.run(["create", "--user", "kim", "--total", "2", "--wait"]);
    assert_eq!(code(&approved), 0, "{}", stderr(&approved));
    let declined = daemon.run(["create", "--user", "kim", "--total", "3", "--wait"]);
    assert_eq!(code(&declined), 8, "a declined order is no success: {}", stderr(&declined));
    assert!(stderr(&declined).contains("was cancelled: payment_declined"), "{}", stderr(&declined));
    let id = String::from_utf8_lossy(&declined.stdout).trim().to_owned();
    assert_eq!(id.len(), 36, "the id is printed all the same: {id}");
    let quiet = daemon.run(["create", "--user", "kim", "--total", "5", "--wait", "-q"]);
    assert_eq!((code(&quiet), stderr(&quiet).as_str()), (8, ""), "quietly");
    let json = daemon.run(["create", "--user", "kim", "--total", "7", "--wait", "--json"]);
    assert_eq!(code(&json), 8);
    let order: serde_json::Value = serde_json::from_slice(&json.stdout).expect("the settled order");
    assert_eq!(order["status"], "cancelled");

    let watched = daemon.run(["watch", &id]);
    assert_eq!(code(&watched), 8, "{}", stderr(&watched));
    assert!(String::from_utf8_lossy(&watched.stdout).contains("cancelled (payment_declined)"));
    let delivered = daemon.create("kim", 4);
    daemon.wait_for_status(&delivered, "delivered");
    assert_eq!(code(&daemon.run(["watch", &delivered])), 0);
}

#[test]
fn a_wait_that_runs_out_says_the_status_of_that_moment() {
    // Approved after 300 ms, delivered only after an hour: at the timeout it is approved.
    let daemon =
        TestDaemon::start_with(&[("ORDERS_PAYMENT_DELAY", "300ms"), ("ORDERS_DELIVERY_DELAY", "1h")]);
    let output = daemon.run(["create", "--user", "lee", "--total", "2", "--wait", "--timeout", "1s"]);
    assert_eq!(code(&output), 6, "{}", stderr(&output));
    assert!(stderr(&output).contains("is still approved after 1s"), "{}", stderr(&output));
}

#[test]
fn list_says_when_it_stops_short_and_pages_in_a_stable_order() {
    let daemon = TestDaemon::start();
    daemon.bulk_create(105, 3);
    // Settled first: a delivery between two pages would change a row the test compares.
    daemon.wait_until_quiet();
    let output = daemon.run(["list", "--all", "--json"]);
    let all: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).expect("every order");
    assert_eq!(all.len(), 105);
    assert!(stderr(&output).is_empty(), "--all is whole: {}", stderr(&output));

    for json in [false, true] {
        let mut args = vec!["list"];
        if json {
            args.push("--json");
        }
        let output = daemon.run(&args);
        assert_eq!(code(&output), 0);
        let said = stderr(&output);
        let last = all[99]["id"].as_str().expect("id");
        assert!(
            said.contains("showing the newest 100") && said.contains(&format!("--before {last}")),
            "{said}"
        );
    }
    let quiet = daemon.ok(["list", "-q"]);
    assert_eq!(quiet.lines().count(), 100, "the rows alone on stdout");

    // The next page, after the last id of the first: the rest, in the same order.
    let second = daemon.run(["list", "--before", all[99]["id"].as_str().expect("id"), "--json"]);
    let second: Vec<serde_json::Value> = serde_json::from_slice(&second.stdout).expect("a page");
    assert_eq!(second, all[100..].to_vec());
    let whole = daemon.run(["list", "--limit", "105"]);
    assert!(stderr(&whole).is_empty(), "nothing more: {}", stderr(&whole));
}
