//! The command line as scripts see it: output modes, exit codes, completions, retry keys.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::fixture::{ORDERS, TestDaemon, code, stderr};

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn text_output_is_plain_off_a_terminal_and_coloured_on_request() {
    let daemon = TestDaemon::start();
    let id = daemon.json(["create", "--user", "ann", "--total", "2", "--wait"])["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let plain = daemon.ok(["list"]);
    assert!(!plain.contains('\u{1b}'), "no escape codes off a terminal: {plain:?}");
    let coloured = daemon.ok(["list", "--color", "always"]);
    assert!(coloured.contains("\u{1b}["), "colour when asked for: {coloured:?}");
    assert!(daemon.ok(["show", &id, "--color", "always"]).contains("\u{1b}["));
    assert!(!daemon.ok(["list", "--color", "never"]).contains('\u{1b}'));
    // NO_COLOR wins over auto (the fixture sets it); an empty NO_COLOR does not count.
    assert!(!daemon.ok(["list", "--color", "auto"]).contains('\u{1b}'));
}

#[test]
fn quiet_prints_ids_only() {
    let daemon = TestDaemon::start();
    let created = daemon.ok(["create", "--user", "bea", "--total", "2", "--wait", "--quiet"]);
    let output = daemon.run(["create", "--user", "bea", "--total", "5", "--wait", "-q"]);
    assert_eq!(code(&output), 8, "declined: exit 8");
    assert!(stderr(&output).is_empty(), "no note about the decline: {}", stderr(&output));
    let second = stdout(&output);
    assert_eq!(daemon.ok(["list", "--user", "bea", "-q"]), format!("{}{}", second, created), "newest first");
    assert_eq!(code(&daemon.run(["list", "-q", "--json"])), 2, "--quiet and --json exclude each other");
}

#[test]
fn list_filters_by_status_and_time() {
    let daemon = TestDaemon::start();
    let declined = daemon.json(["create", "--user", "cid", "--total", "3"]);
    daemon.wait_for_status(declined["id"].as_str().expect("id"), "cancelled");
    let delivered = daemon.json(["create", "--user", "cid", "--total", "2", "--wait"]);
    let ids = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["list"];
        all.extend_from_slice(args);
        daemon
            .json(all)
            .as_array()
            .expect("array")
            .iter()
            .map(|o| o["id"].as_str().expect("id").to_owned())
            .collect()
    };
    assert_eq!(ids(&["--status", "cancelled"]), [declined["id"].as_str().expect("id")]);
    assert_eq!(ids(&["--status", "delivered", "--user", "cid"]), [delivered["id"].as_str().expect("id")]);
    assert!(ids(&["--status", "pending"]).is_empty());
    assert_eq!(ids(&["--since", "1h"]).len(), 2);
    assert!(ids(&["--since", "2099-01-01"]).is_empty());
    let created = delivered["created_at"].as_str().expect("time");
    assert!(ids(&["--since", created]).contains(&delivered["id"].as_str().expect("id").to_owned()));
    for bad in [&["--status", "lost"][..], &["--since", "someday"][..], &["--limit", "0"][..]] {
        let mut args = vec!["list"];
        args.extend_from_slice(bad);
        assert_eq!(code(&daemon.run(args)), 2, "{bad:?}");
    }
}

#[test]
fn every_exit_code_is_the_documented_one() {
    let daemon = TestDaemon::start_with(&[("ORDERS_PAYMENT_DELAY", "1h")]);
    let pending = daemon.create("dan", 2);
    let cases: Vec<(Vec<String>, i32)> = vec![
        (vec!["list".into()], 0),
        (vec!["create".into(), "--user".into(), "dan".into(), "--total".into(), "0".into()], 2),
        (vec!["frobnicate".into()], 2),
        (vec!["show".into(), "019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6b".into()], 3),
        (
            vec![
                "create".into(),
                "--user".into(),
                "dan".into(),
                "--total".into(),
                "2".into(),
                "--wait".into(),
                "--timeout".into(),
                "100ms".into(),
            ],
            6,
        ),
    ];
    for (args, expected) in cases {
        let output = daemon.run(&args);
        assert_eq!(code(&output), expected, "{args:?}: {}", stderr(&output));
        if expected != 0 && expected != 6 {
            assert!(stdout(&output).is_empty(), "errors go to stderr only: {args:?}");
            assert!(stderr(&output).starts_with("error"), "{args:?}: {}", stderr(&output));
        }
    }
    daemon.ok(["cancel", &pending]);
    assert_eq!(code(&daemon.run(["cancel", &pending])), 4);
    let unavailable = TestDaemon::stopped_with(&[]);
    assert_eq!(code(&unavailable.run(["list"])), 5);
    let broken_log =
        daemon.command().args(["daemon", "run", "--log-file", "/proc/no/such/file"]).output().expect("run");
    assert_eq!(code(&broken_log), 1, "{}", stderr(&broken_log));
    assert!(stderr(&broken_log).contains("/proc/no/such"), "{}", stderr(&broken_log));
}

#[test]
fn version_and_help_work_without_a_daemon() {
    let output = Command::new(ORDERS).arg("--version").output().expect("run");
    assert_eq!(code(&output), 0);
    assert_eq!(stdout(&output), format!("orders {}\n", env!("CARGO_PKG_VERSION")));
    let help = Command::new(ORDERS).args(["help", "create"]).output().expect("run");
    assert!(stdout(&help).contains("--idempotency-key"), "{}", stdout(&help));
}

/// The bash script, loaded into a real bash, asks `orders` (on the PATH) on each TAB: commands,
/// status values, and the short ids of a running daemon's orders (issue 18).
#[test]
fn bash_completions_load_and_complete_commands_statuses_and_ids() {
    let daemon = TestDaemon::start();
    let id = daemon.create("alice", 2);
    let script = Command::new(ORDERS).args(["completions", "bash"]).output().expect("run");
    assert_eq!(code(&script), 0);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("orders.bash");
    std::fs::write(&path, &script.stdout).expect("write");
    let bin = std::path::Path::new(ORDERS).parent().expect("the binary's directory");
    let complete = |words: &str| {
        let probe = format!(
            "source {}; complete -p orders; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             _clap_complete_orders orders \"${{COMP_WORDS[COMP_CWORD]}}\"; echo \"${{COMPREPLY[@]}}\"",
            path.display()
        );
        let output = Command::new("bash")
            .args(["--norc", "-c", &probe])
            .envs(daemon.command().get_envs().filter_map(|(key, value)| Some((key, value?))))
            .env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()))
            .output()
            .expect("bash");
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        stdout(&output)
    };
    let printed = complete("orders rep");
    assert!(printed.contains("-F _clap_complete_orders orders"), "{printed}");
    let last = |printed: &str| printed.lines().last().unwrap_or_default().to_owned();
    assert!(last(&printed).split_whitespace().any(|word| word == "replay"), "{printed}");
    let statuses = last(&complete("orders list --status ''"));
    assert_eq!(
        statuses.split_whitespace().collect::<Vec<_>>(),
        ["pending", "approved", "delivered", "cancelled"]
    );
    let short = id.replace('-', "")[24..].to_owned();
    assert!(last(&complete("orders cancel ''")).split_whitespace().any(|word| word == short), "{short}");
    for shell in ["zsh", "fish"] {
        let script = Command::new(ORDERS).args(["completions", shell]).output().expect("run");
        assert_eq!(code(&script), 0);
        assert!(stdout(&script).contains("ORDERS_COMPLETE"), "{shell}");
    }
}

/// The lines that install completions — the README's, one a shell, and the examples of `orders
/// help completions` (the man page's), as one script — work as they are on a fresh home, where
/// none of their directories exists yet (issue 18: `orders completions bash >
/// ~/.local/share/...` failed there).
#[test]
fn the_documented_completion_lines_work_on_a_fresh_home() {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("the README");
    let help = stdout(&Command::new(ORDERS).args(["help", "completions"]).output().expect("run"));
    let installs = |line: &str| line.contains("orders completions ") && line.contains(" > ");
    let mut scripts: Vec<String> = readme.lines().filter(|line| installs(line)).map(str::to_owned).collect();
    assert_eq!(scripts.len(), 3, "the README installs each shell's: {scripts:?}");
    let examples = help.split_once("Examples").expect("examples").1;
    let example: Vec<&str> = examples.lines().filter_map(|line| line.strip_prefix("  ")).collect();
    assert_eq!(example.iter().filter(|line| installs(line)).count(), 3, "{help}");
    scripts.push(example.join("\n"));
    let bin = std::path::Path::new(ORDERS).parent().expect("the binary's directory");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    for script in &scripts {
        let home = tempfile::tempdir().expect("a fresh home");
        let output = Command::new("sh")
            .args(["-c", &format!("set -e\n{script}")])
            .env("HOME", home.path())
            .env("PATH", &path)
            .output()
            .expect("sh");
        assert_eq!(code(&output), 0, "{script}: {}", stderr(&output));
        for line in script.lines().filter(|line| installs(line)) {
            let target =
                line.rsplit(" > ").next().and_then(|rest| rest.split_whitespace().next()).expect("target");
            let written = home.path().join(target.strip_prefix("~/").expect("in the home"));
            let completion = std::fs::read_to_string(&written).unwrap_or_else(|e| panic!("{line}: {e}"));
            // The script asks `orders` itself on each TAB (dynamic completion).
            assert!(
                completion.contains("ORDERS_COMPLETE") && completion.contains("orders"),
                "{line}: {completion}"
            );
        }
    }
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    let daemon = TestDaemon::start();
    daemon.bulk_create(400, 1);
    let mut child = daemon
        .command()
        .args(["list", "--all"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut first).expect("one line");
    // The reader is gone: like `orders list | head -1`.
    let output = child.wait_with_output().expect("wait");
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(stderr(&output).is_empty(), "no broken-pipe panic: {}", stderr(&output));
}

#[test]
fn a_retried_create_with_the_same_key_returns_the_same_order() {
    let mut daemon = TestDaemon::start();
    let create = ["create", "--user", "eve", "--total", "4", "--idempotency-key", "order-42"];
    let first = daemon.ok(create);
    assert_eq!(daemon.ok(create), first, "the same order");

    let other = daemon.run(["create", "--user", "eve", "--total", "6", "--idempotency-key", "order-42"]);
    assert_eq!(code(&other), 4, "the same key with other arguments is refused");
    assert!(
        stderr(&other).contains("order-42") && stderr(&other).contains(first.trim()),
        "{}",
        stderr(&other)
    );

    // Stored in the event store, not in a cache: it survives kill -9.
    daemon.kill9();
    daemon.spawn();
    assert_eq!(daemon.ok(create), first);
    let history = daemon.json(["history", first.trim()]);
    assert_eq!(
        history.as_array().map(|events| events.iter().filter(|e| e["type"] == "OrderPlaced").count()),
        Some(1)
    );

    // Concurrent retries of a reply never seen: still one order.
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let mut command = daemon.command();
            command.args(["create", "--user", "eve", "--total", "8", "-k", "retry-me"]);
            std::thread::spawn(move || command.output().expect("run"))
        })
        .collect();
    let ids: std::collections::HashSet<String> =
        clients.into_iter().map(|c| stdout(&c.join().expect("client"))).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let eves: Value = daemon.json(["list", "--user", "eve"]);
    assert_eq!(eves.as_array().map(Vec::len), Some(2));
    assert_eq!(code(&daemon.run(["create", "--user", "eve", "--total", "2", "-k", ""])), 2, "an empty key");
}

/// Issue 11: `--timeout` went to the daemon in whole milliseconds rounded down, so `500us` asked
/// for a wait of 0 ms. It is rounded up: a wait is never shorter than asked.
#[test]
fn a_wait_timeout_finer_than_a_millisecond_is_rounded_up() {
    let daemon = TestDaemon::start_with(&[("ORDERS_PAYMENT_DELAY", "1h")]);
    let output = daemon.run(["create", "-u", "alice", "-t", "2", "--wait", "--timeout", "500us"]);
    assert_eq!(code(&output), 6, "{}", stderr(&output));
    assert!(stderr(&output).contains("is still pending after 1ms"), "{}", stderr(&output));
}

#[test]
fn help_puts_the_global_options_under_their_own_heading_and_ranges_are_said_in_words() {
    let daemon = TestDaemon::stopped_with(&[]);
    let help = daemon.ok(["create", "-h"]);
    let (own, global) = help.split_once("Global options:").expect("a heading of their own");
    for flag in ["--json", "--color", "--no-autostart", "--socket", "--data-dir"] {
        assert!(global.contains(flag) && !own.contains(flag), "{flag} under Global options:\n{help}");
    }
    assert!(own.contains("--user") && own.contains("--total"), "{help}");

    for args in [
        &["list", "--limit", "0"][..],
        &["events", "--limit", "0"],
        &["daemon", "run", "--max-connections", "0"],
    ] {
        let output = daemon.run(args);
        assert_eq!(code(&output), 2, "{args:?}");
        let said = stderr(&output);
        assert!(said.contains("'0' is not a count: give a whole number from 1 to"), "{args:?}: {said}");
        assert!(!said.contains("1.."), "no range syntax: {said}");
    }
}
