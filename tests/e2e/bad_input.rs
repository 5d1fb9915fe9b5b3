//! Bad input is refused with a clear message and a non-zero exit, and creates nothing.

use serde_json::json;

use crate::fixture::{RawClient, TestDaemon, code, stderr};

fn assert_nothing_created(daemon: &TestDaemon) {
    assert_eq!(daemon.json(["list"]), serde_json::json!([]), "nothing was created");
}

#[test]
fn invalid_totals_are_usage_errors_that_create_nothing() {
    let daemon = TestDaemon::start();
    for (total, says) in [
        ("-1", "positive whole number"),
        ("0", "positive whole number"),
        ("2.5", "whole number"),
        ("abc", "whole number"),
        ("9223372036854775808", "largest total"),
        ("", "whole number"),
    ] {
        let output = daemon.run(["create", "--user", "alice", "--total", total]);
        assert_eq!(code(&output), 2, "total {total:?}: {}", stderr(&output));
        assert!(stderr(&output).contains(says), "total {total:?}: {}", stderr(&output));
        assert!(output.stdout.is_empty(), "total {total:?}");
    }
    assert_nothing_created(&daemon);
}

#[test]
fn invalid_users_are_usage_errors_that_create_nothing() {
    let daemon = TestDaemon::start();
    let too_long = "u".repeat(129);
    for (user, says) in
        [("", "must not be empty"), (too_long.as_str(), "at most 128"), ("a\u{1b}[31mb", "printable")]
    {
        let output = daemon.run(["create", "--user", user, "--total", "2"]);
        assert_eq!(code(&output), 2, "user {user:?}: {}", stderr(&output));
        assert!(stderr(&output).contains(says), "user {user:?}: {}", stderr(&output));
    }
    let missing = daemon.run(["create", "--total", "2"]);
    assert_eq!(code(&missing), 2);
    assert_nothing_created(&daemon);
}

#[test]
fn malformed_order_ids_are_usage_errors() {
    let daemon = TestDaemon::start();
    for command in ["show", "cancel"] {
        for id in ["nope", "", "12345", "019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6"] {
            let output = daemon.run([command, id]);
            assert_eq!(code(&output), 2, "{command} {id:?}: {}", stderr(&output));
            assert!(
                stderr(&output).contains("order id") || stderr(&output).contains("short id"),
                "{}",
                stderr(&output)
            );
        }
    }
}

#[test]
fn unknown_order_ids_are_not_found() {
    let daemon = TestDaemon::start();
    let unknown = "019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6b";
    for command in ["show", "cancel"] {
        let output = daemon.run([command, unknown]);
        assert_eq!(code(&output), 3, "{command}: {}", stderr(&output));
        assert!(stderr(&output).contains(&format!("no order {unknown}")), "{}", stderr(&output));
    }
    assert_nothing_created(&daemon);
}

/// Issue 11: `shutdown` with an unknown field stopped the daemon, `check` and `status` took any
/// field, and a key given twice was merged (`"total":3,"total":4` placed an order of 4).
#[test]
fn unknown_fields_and_keys_given_twice_are_refused_on_the_wire() {
    let daemon = TestDaemon::start();
    let mut client = RawClient::connect(&daemon.socket());
    let cases: [(&str, &str); 9] = [
        (r#""cmd":"shutdown","dry_run":true}"#, "unknown field `dry_run`"),
        (r#""cmd":"status","verbose":1}"#, "unknown field `verbose`"),
        (r#""cmd":"check","fix":true}"#, "unknown field `fix`"),
        (r#""cmd":"create","user":"alice","total":3,"totl":4}"#, "unknown field `totl`"),
        (r#""cmd":"create","user":"alice","total":3,"total":4}"#, r#"the field "total" is given twice"#),
        (r#""cmd":"create","user":"alice","user":"bob","total":2}"#, r#"the field "user" is given twice"#),
        (r#""v":1,"cmd":"status"}"#, r#"the field "v" is given twice"#),
        (r#""cmd":"status","cmd":"shutdown"}"#, r#"the field "cmd" is given twice"#),
        (r#""cmd":"list","since":{"a":1,"a":2}}"#, r#"the field "since.a" is given twice"#),
    ];
    for (rest, says) in cases {
        let line = daemon.raw_line(rest);
        client.send_raw(format!("{line}\n").as_bytes());
        let reply = client.reply().unwrap_or_else(|| panic!("no reply to {line}: the daemon went away"));
        assert_eq!(reply["ok"], false, "{line}: {reply}");
        assert_eq!(reply["error"]["code"], "invalid_request", "{line}: {reply}");
        let message = reply["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{line}: {message}");
    }
    let status = client.call(daemon.request(json!({"cmd": "status"})));
    assert_eq!(status["ok"], true, "the daemon still serves: {status}");
    assert_nothing_created(&daemon);
}

/// Issue 11: `--delivery-delay 999999999999s` was accepted and put every delivery's due time at
/// the year 9999. Each bound is enforced on the flag and on its environment variable alike.
#[test]
fn a_duration_past_its_bound_is_refused_from_the_flag_and_the_environment() {
    for (flag, variable, value, says) in [
        (
            "--delivery-delay",
            "ORDERS_DELIVERY_DELAY",
            "999999999999s",
            "the delivery delay must be at most 7 days (168h)",
        ),
        (
            "--delivery-delay",
            "ORDERS_DELIVERY_DELAY",
            "169h",
            "the delivery delay must be at most 7 days (168h)",
        ),
        ("--payment-delay", "ORDERS_PAYMENT_DELAY", "25h", "the payment delay must be at most 1 day (24h)"),
        ("--idle-timeout", "ORDERS_IDLE_TIMEOUT", "48h", "the idle timeout must be at most 1 day (24h)"),
    ] {
        let daemon = TestDaemon::stopped_with(&[]);
        let by_flag = || {
            let mut command = daemon.command();
            command.args(["daemon", "run", flag, value]);
            command
        };
        let by_variable = || {
            let mut command = daemon.command();
            command.args(["daemon", "run"]).env(variable, value);
            command
        };
        for mut command in [by_flag(), by_variable()] {
            let mut child = command
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn");
            let Some(status) = crate::fixture::wait_timeout(&mut child, std::time::Duration::from_secs(10))
            else {
                let _ = child.kill();
                panic!("{flag} / {variable} = {value} was accepted: the daemon runs");
            };
            let output = child.wait_with_output().expect("output");
            assert_eq!(status.code(), Some(2), "{variable}={value}: {}", stderr(&output));
            assert!(stderr(&output).contains(says), "{variable}={value}: {}", stderr(&output));
        }
        assert!(!daemon.data_dir().exists(), "{value}: the data directory was not touched");
    }
    let create = TestDaemon::start().run(["create", "-u", "a", "-t", "2", "--wait", "--timeout", "721h"]);
    assert_eq!(code(&create), 2, "{}", stderr(&create));
    assert!(stderr(&create).contains("the timeout must be at most 30 days (720h)"), "{}", stderr(&create));
}
