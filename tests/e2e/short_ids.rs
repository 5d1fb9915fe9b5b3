//! Short ids, times in one named zone, `list --count` (issue 18): what a person reads in a table
//! and types back, and what a script counts.

use serde_json::Value;

use crate::fixture::{TestDaemon, code, stderr};

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The hex digits of an id, without dashes.
fn digits(id: &str) -> String {
    id.replace('-', "")
}

/// Tables show the end of each id; every command that takes an id takes it back, in any case;
/// `-q`, `--json` and `--wide` keep the whole id.
#[test]
fn tables_show_short_ids_and_commands_take_them_back() {
    let daemon = TestDaemon::start_with(&[("ORDERS_DELIVERY_DELAY", "1h")]);
    let id = daemon.create("alice", 2);
    let short = &digits(&id)[24..];
    daemon.wait_for_status(&id, "approved");

    let table = daemon.ok(["list"]);
    let row = table.lines().nth(1).expect("a row");
    assert!(row.starts_with(&format!("{short}  alice")), "{table}");
    assert!(!table.contains(&id), "no whole id in the table:\n{table}");
    assert_eq!(daemon.ok(["list", "-q"]).trim(), id, "-q prints whole ids");
    assert_eq!(daemon.json(["list"])[0]["id"], id.as_str(), "--json too");
    assert!(daemon.ok(["list", "--wide"]).contains(&id), "--wide too");

    assert_eq!(daemon.json(["show", short])["id"], id.as_str());
    assert_eq!(daemon.json(["show", &short.to_uppercase()])["id"], id.as_str(), "any case");
    assert_eq!(daemon.json(["show", &digits(&id)[20..]])["id"], id.as_str(), "more digits name it too");
    let history = daemon.json(["history", short]);
    assert_eq!(history.as_array().map(Vec::len), Some(5), "{history}");
    let events = daemon.ok(["events"]);
    assert!(events.lines().skip(1).all(|line| line.contains(short)), "{events}");
    assert_eq!(daemon.json(["cancel", short])["status"], "cancelled");
    let watched = daemon.run(["watch", short]);
    assert_eq!(code(&watched), 8, "cancelled: {}", stderr(&watched));
    let watched = stdout(&watched);
    assert!(watched.ends_with(&format!("order {id} is cancelled (customer_request)\n")), "{watched}");
    let before = daemon.run(["list", "--before", short]);
    assert_eq!(code(&before), 0, "{}", stderr(&before));

    for (given, exit, said) in [
        ("0000000000", 3, "no order's id ends with 0000000000"),
        ("1234567", 2, "7 hex digits are too few"),
        ("a343-07169aac6db2", 2, "not an order id"),
        ("xyz12345678", 2, "not an order id"),
    ] {
        let output = daemon.run(["show", given]);
        assert_eq!(code(&output), exit, "{given}: {}", stderr(&output));
        assert!(stderr(&output).contains(said), "{given}: {}", stderr(&output));
    }
}

/// Two orders whose ids end alike: each is shown with as many digits as tell it from the other,
/// and the digits they share are refused with both listed (exit 2).
#[test]
fn a_short_id_two_orders_share_lists_both() {
    let daemon = TestDaemon::start();
    let first = daemon.create("alice", 2);
    let second = daemon.create("bob", 4);
    daemon.wait_until_quiet();
    let export = daemon.ok(["export"]);
    // The second order's id made to end like the first's, as no daemon mints it by chance.
    let forged = format!("{}{}", &second[..26], &first[26..]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("forged.ndjson");
    std::fs::write(&file, export.replace(&second, &forged)).expect("write");
    let mut copy = TestDaemon::stopped_with(&[]);
    let imported = copy.command().arg("import").arg(&file).output().expect("import");
    assert_eq!(code(&imported), 0, "{}", stderr(&imported));
    copy.spawn();

    let (a, b) = (digits(&first), digits(&forged));
    let shared = a.bytes().rev().zip(b.bytes().rev()).take_while(|(a, b)| a == b).count();
    assert!(shared >= 10, "{a} {b}");
    let table = copy.ok(["list"]);
    for (whole, digits) in [(&first, &a), (&forged, &b)] {
        let short = &digits[32 - shared - 1..];
        assert!(table.lines().any(|line| line.starts_with(&format!("{short} "))), "{short}:\n{table}");
        assert_eq!(copy.json(["show", short])["id"], whole.as_str());
    }
    let ambiguous = copy.run(["cancel", &a[24..]]);
    assert_eq!(code(&ambiguous), 2, "{}", stderr(&ambiguous));
    let said = stderr(&ambiguous);
    assert!(said.contains("names 2 orders") && said.contains(&first) && said.contains(&forged), "{said}");
    assert_eq!(copy.json(["show", &first])["status"], "delivered", "nothing was cancelled");
    assert_eq!(code(&copy.run(["check"])), 0);
}

/// `list --count`: how many orders the filters match, beyond any page; JSON for scripts.
#[test]
fn list_count_counts_what_the_filters_match() {
    let daemon = TestDaemon::start();
    daemon.bulk_create(120, 3);
    daemon.wait_until_quiet();
    assert_eq!(daemon.ok(["list", "--count"]), "120\n");
    let alice: Vec<Value> =
        serde_json::from_str(&daemon.ok(["list", "--all", "--json", "--user", "user0"])).expect("json");
    let counted = daemon.json(["list", "--count", "--user", "user0"]);
    assert_eq!(counted, serde_json::json!({"count": alice.len()}));
    let all: Vec<Value> = serde_json::from_str(&daemon.ok(["list", "--all", "--json"])).expect("json");
    let declined = all.iter().filter(|order| order["status"] == "cancelled").count();
    assert!(declined > 0);
    let cancelled = daemon.json(["list", "--count", "--status", "cancelled"]);
    assert_eq!(cancelled["count"], declined);
    assert_eq!(daemon.ok(["list", "--count", "--since", "2099-01-01"]), "0\n");
    for conflicting in [["--limit", "5"], ["--before", "0123456789"], ["-q", "--all"]] {
        let output = daemon.run(["list", "--count", conflicting[0], conflicting[1]]);
        assert_eq!(code(&output), 2, "{conflicting:?}: {}", stderr(&output));
    }
}

/// Times are in one zone, and it is named: the local one (here Europe/Berlin, CET in December)
/// or UTC with `--utc`; a time in an event's data is in the same zone as the row's.
#[test]
fn times_are_in_one_named_zone() {
    let daemon = TestDaemon::start_with(&[("ORDERS_DELIVERY_DELAY", "1h")]);
    let id = daemon.create("alice", 2);
    daemon.wait_for_status(&id, "approved");
    let in_berlin = |args: &[&str]| {
        let output = daemon.command().env("TZ", "Europe/Berlin").args(args).output().expect("run");
        assert_eq!(code(&output), 0, "{args:?}: {}", stderr(&output));
        stdout(&output)
    };
    let created: jiff::Timestamp =
        daemon.json(["show", &id])["created_at"].as_str().expect("a time").parse().expect("RFC 3339");
    let offset = |zone: &str| created.to_zoned_datetime(jiff::tz::TimeZone::get(zone).expect("zone"));
    let local = offset("Europe/Berlin").strftime("%Y-%m-%d %H:%M:%S").to_string();
    let utc = offset("UTC").strftime("%Y-%m-%d %H:%M:%S").to_string();
    let zone = offset("Europe/Berlin").strftime("%Z").to_string();

    let table = in_berlin(&["list"]);
    assert!(
        table.lines().next().is_some_and(|header| header.contains(&format!("CREATED ({zone})"))),
        "{table}"
    );
    assert!(table.contains(&local), "{table}");
    let table = in_berlin(&["list", "--utc"]);
    assert!(table.contains("CREATED (UTC)") && table.contains(&utc), "{table}");
    let shown = in_berlin(&["show", &id]);
    assert!(shown.contains(&format!("{local} {zone}")), "{shown}");

    // The delivery is due an hour after approval: shown in the row's zone, not in UTC.
    let history = daemon.json(["history", &id]);
    let scheduled = history.as_array().expect("events").iter().find(|e| e["type"] == "DeliveryScheduled");
    let due: jiff::Timestamp =
        scheduled.expect("scheduled")["data"]["due_at"].as_str().expect("due_at").parse().expect("RFC 3339");
    let berlin = jiff::tz::TimeZone::get("Europe/Berlin").expect("zone");
    let due_local = due.to_zoned_datetime(berlin.clone());
    // A due time on another day than its row's (an order placed after 23:00 there) shows its date.
    let recorded: jiff::Timestamp = scheduled.expect("scheduled")["recorded_at"]
        .as_str()
        .expect("recorded_at")
        .parse()
        .expect("RFC 3339");
    let due_format = if recorded.to_zoned_datetime(berlin).date() == due_local.date() {
        "%H:%M:%S"
    } else {
        "%Y-%m-%d %H:%M:%S"
    };
    for args in [&["history", id.as_str()][..], &["events"]] {
        let text = in_berlin(args);
        assert!(
            text.lines().next().is_some_and(|header| header.contains(&format!("TIME ({zone})"))),
            "{text}"
        );
        let due_shown = format!("due_at={}", due_local.strftime(due_format));
        assert!(text.contains(&due_shown), "{args:?}: {due_shown} in\n{text}");
        assert!(!text.contains('Z'), "no UTC time beside the local ones: {text}");
    }
}

/// The wire requests behind short ids and counts are read as strictly as every other.
#[test]
fn resolve_short_ids_and_count_refuse_bad_requests() {
    let daemon = TestDaemon::start();
    let id = daemon.create("alice", 2);
    let mut client = crate::fixture::RawClient::connect(&daemon.socket());
    let resolved =
        client.call(daemon.request(serde_json::json!({"cmd": "resolve", "id": &digits(&id)[24..]})));
    assert_eq!(resolved["data"], serde_json::json!({"ids": [id], "more": false}), "{resolved}");
    let short = client.call(daemon.request(serde_json::json!({"cmd": "short_ids", "ids": [id]})));
    assert_eq!(short["data"], serde_json::json!([&digits(&id)[24..]]), "{short}");
    let too_many = vec![id.clone(); 10_001];
    for (request, said) in [
        (serde_json::json!({"cmd": "resolve", "id": "12"}), "too few"),
        (serde_json::json!({"cmd": "resolve", "id": "nope"}), "not an order id"),
        (serde_json::json!({"cmd": "resolve"}), "missing field"),
        (serde_json::json!({"cmd": "short_ids", "ids": too_many}), "at most 10000"),
        (serde_json::json!({"cmd": "short_ids", "ids": ["nope"]}), "invalid"),
        (serde_json::json!({"cmd": "count", "limit": 5}), "unknown field"),
    ] {
        let reply = client.call(daemon.request(request.clone()));
        assert_eq!(reply["error"]["code"], "invalid_request", "{reply}");
        let message = reply["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(said), "{said}: {message}");
    }
}

/// Completion asks `orders` itself: status values, and the short ids of the newest orders from
/// a running daemon, each with its user, total and status; within the budget or not at all.
#[test]
fn completion_offers_statuses_and_the_daemons_order_ids() {
    let daemon = TestDaemon::start();
    let id = daemon.create("alice", 2);
    let complete = |words: &[&str]| {
        let output =
            daemon.command().env("ORDERS_COMPLETE", "fish").arg("--").args(words).output().expect("run");
        assert_eq!(code(&output), 0, "{words:?}: {}", stderr(&output));
        stdout(&output)
    };
    assert_eq!(complete(&["orders", "list", "--status", ""]), "pending\napproved\ndelivered\ncancelled\n");
    assert_eq!(complete(&["orders", "list", "--status", "can"]), "cancelled\n");
    let offered = complete(&["orders", "cancel", ""]);
    let short = &digits(&id)[24..];
    assert!(offered.lines().any(|line| line.starts_with(&format!("{short}\talice, 2, "))), "{offered}");
    assert!(complete(&["orders", "show", &short[..3]]).starts_with(short), "a prefix of the short id");

    let script = daemon.ok(["completions", "bash"]);
    assert!(script.contains(r#"ORDERS_COMPLETE="bash""#), "{script}");
}

/// A daemon that never answers costs the prompt at most the budget (100 ms), and offers no ids.
#[test]
fn completion_does_not_wait_for_a_daemon_that_never_answers() {
    let daemon = TestDaemon::stopped_with(&[]);
    let listener = std::os::unix::net::UnixListener::bind(daemon.socket()).expect("bind");
    let _held = std::thread::spawn(move || {
        let accepted: Vec<_> = listener.incoming().take(2).collect();
        std::thread::sleep(std::time::Duration::from_secs(10));
        drop(accepted);
    });
    let started = std::time::Instant::now();
    let output = daemon
        .command()
        .env("ORDERS_COMPLETE", "fish")
        .args(["--", "orders", "cancel", "0"])
        .output()
        .expect("run");
    let took = started.elapsed();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(stdout(&output), "", "no ids");
    assert!(took < std::time::Duration::from_secs(2), "gave up after its budget, not {took:?}");
}

/// An import can hold ids made to share their last 8 digits by the thousand. Telling them apart
/// costs the daemon one read of the group, at most [`MAX_SHARING`] + 1 rows, however many are
/// asked about: past that they are shown whole, and a page of them lists at once (it took the
/// daemon seconds per hundred ids, and `list --limit 1000` ran out of time).
#[test]
fn ids_made_to_share_their_ends_cost_one_bounded_read() {
    const SHARING: usize = orders_shared::short_id::MAX_SHARING + 50;
    let mut rng = fastrand::Rng::with_seed(18);
    let mut lines = Vec::new();
    let mut position = 0;
    let mut event = |stream: String, version: u32, kind: &str, data: Value, at: &str| {
        position += 1;
        let mut id = || uuid_text(rng.u128(..));
        let correlation = id();
        lines.push(
            serde_json::json!({"position": position, "event_id": id(), "stream": stream, "version": version,
                "type": kind, "schema_version": if kind == "OrderCancelled" { 2 } else { 1 }, "data": data,
                "metadata": {"correlation_id": correlation, "causation_id": correlation}, "recorded_at": at})
            .to_string(),
        );
    };
    for n in 0..SHARING {
        // Every id ends with deadbeef; the digits before tell them apart.
        let id = uuid_text(((n as u128 + 1) << 72) | 0xdead_beef);
        let at = format!("2026-01-01T00:{:02}:{:02}.{:03}Z", n / 60_000 % 60, n / 1000 % 60, n % 1000);
        event(
            format!("order-{id}"),
            1,
            "OrderPlaced",
            serde_json::json!({"user": "mallory", "total": 3}),
            &at,
        );
        event(format!("payment-{id}"), 1, "PaymentRequested", serde_json::json!({"amount": 3}), &at);
        event(
            format!("payment-{id}"),
            2,
            "PaymentDeclined",
            serde_json::json!({"reason": "odd total 3"}),
            &at,
        );
        event(
            format!("order-{id}"),
            2,
            "OrderCancelled",
            serde_json::json!({"reason": "payment_declined"}),
            &at,
        );
    }
    let end = serde_json::json!({"end": {"events": position, "first": "1", "last": position.to_string(),
        "next": (position + 1).to_string()}});
    lines.push(end.to_string());
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("forged.ndjson");
    std::fs::write(&file, lines.join("\n") + "\n").expect("write");
    let mut daemon = TestDaemon::stopped_with(&[]);
    let imported = daemon.command().arg("import").arg(&file).output().expect("import");
    assert_eq!(code(&imported), 0, "{}", stderr(&imported));
    daemon.spawn();
    let honest = daemon.create("alice", 2);

    let started = std::time::Instant::now();
    let table = daemon.run(["list", "--limit", "1000"]);
    assert_eq!(code(&table), 0, "{}", stderr(&table));
    let table = stdout(&table);
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 1000);
    let first: Vec<&str> = rows[0].split_whitespace().take(2).collect();
    assert_eq!(first, [&digits(&honest)[24..], "alice"], "an honest id keeps its 8 digits: {table}");
    assert!(
        rows[1..].iter().all(|row| row.split_whitespace().next().is_some_and(|id| id.len() == 32)),
        "{table}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "took {:?}", started.elapsed());
    assert_eq!(code(&daemon.run(["show", &digits(&honest)[24..]])), 0);
    let ambiguous = daemon.run(["show", "deadbeef"]);
    assert_eq!(code(&ambiguous), 2, "{}", stderr(&ambiguous));
    assert!(stderr(&ambiguous).contains("more than 10"), "{}", stderr(&ambiguous));
}

/// A UUID's text from its 128 bits.
fn uuid_text(bits: u128) -> String {
    let hex = format!("{bits:032x}");
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}
