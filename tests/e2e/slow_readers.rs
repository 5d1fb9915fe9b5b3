//! Clients that ask for large replies and never read them (issue 11): the daemon's memory stays
//! bounded, everybody else is served meanwhile, and a reader that does not drain is dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::fixture::{RawClient, TestDaemon, memory_kib};

/// Never-reading clients in the memory test.
const SLOW_READERS: usize = 150;

/// A log of at least `events` events, written fast (pipelined creates, then their sagas).
fn seed_events(daemon: &TestDaemon, events: i64) {
    // An order makes about five events once its payment and delivery are done.
    daemon.bulk_create(usize::try_from(events / 4).expect("count"), 50);
    daemon.wait_until_quiet();
    let head = daemon.json(["daemon", "status"])["events"].as_i64().expect("events");
    assert!(head >= events, "seeded only {head} events");
}

/// Clients that each ask for a whole page of 10,000 events and never read a byte of it.
fn never_reading_clients(daemon: &TestDaemon, count: usize) -> Vec<UnixStream> {
    (0..count)
        .map(|_| {
            let mut stream = UnixStream::connect(daemon.socket()).expect("connect");
            stream
                .write_all(daemon.raw_line("\"cmd\":\"events\",\"limit\":10000}\n").as_bytes())
                .expect("request");
            stream
        })
        .collect()
}

#[test]
fn clients_that_never_read_large_replies_keep_memory_bounded_and_others_served() {
    let daemon = TestDaemon::start();
    seed_events(&daemon, 10_000);
    let page =
        RawClient::connect(&daemon.socket()).call(daemon.request(json!({"cmd": "events", "limit": 10000})));
    let page = page.to_string().len();
    assert!(page > 2_000_000, "a page is megabytes ({page} bytes)");
    let (before_kib, _) = memory_kib(daemon.pid());

    let stuck = never_reading_clients(&daemon, SLOW_READERS);
    let mut client = RawClient::connect(&daemon.socket());
    let mut slowest = Duration::ZERO;
    let mut peak_kib = 0;
    for n in 0..40 {
        let sent = Instant::now();
        let reply =
            client.call(daemon.request(json!({"cmd": "create", "user": "patient", "total": 2 * n + 2})));
        slowest = slowest.max(sent.elapsed());
        assert_eq!(reply["ok"], true, "{reply}");
        peak_kib = peak_kib.max(memory_kib(daemon.pid()).0);
        std::thread::sleep(Duration::from_millis(25));
    }
    // Bulk reads are served in turn: once a later page is answered, every stuck client has had
    // its pieces read, as many as its socket takes.
    for _ in 0..3 {
        let probe =
            RawClient::connect(&daemon.socket()).call(daemon.request(json!({"cmd": "events", "limit": 10})));
        assert_eq!(probe["ok"], true, "{probe}");
        peak_kib = peak_kib.max(memory_kib(daemon.pid()).0);
    }
    // Unbounded, the daemon would hold every page whole: 150 × 3 MB, half a gigabyte.
    let grown_mib = peak_kib.saturating_sub(before_kib) / 1024;
    eprintln!("RSS {before_kib} KiB before, {peak_kib} KiB at the peak; slowest create {slowest:?}");
    assert!(
        grown_mib < 48,
        "{SLOW_READERS} clients that never read grew the daemon by {grown_mib} MiB \
         ({before_kib} KiB before, {peak_kib} KiB at the peak)"
    );
    assert!(slowest < Duration::from_secs(2), "a create took {slowest:?} meanwhile");
    drop(stuck);
}

#[test]
fn a_reader_that_does_not_drain_in_time_is_dropped() {
    let daemon = TestDaemon::start_with(&[("ORDERS_DRAIN_TIMEOUT", "500ms")]);
    seed_events(&daemon, 3_000);
    let mut stuck = never_reading_clients(&daemon, 1).pop().expect("a client");
    std::thread::sleep(Duration::from_secs(2));
    // Whatever the socket had taken is still there to read, then the connection is closed.
    stuck.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut received = Vec::new();
    let closed = stuck.read_to_end(&mut received);
    assert!(closed.is_ok(), "the daemon closed the connection: {closed:?}");
    assert!(!received.ends_with(b"\n"), "the reply was cut short ({} bytes)", received.len());
    assert!(daemon.log().contains("does not read its replies"), "{}", daemon.log());
    daemon.create("after", 2);
}

#[test]
fn a_page_streamed_in_pieces_is_the_page_a_fast_reader_expects() {
    let daemon = TestDaemon::start();
    seed_events(&daemon, 3_000);
    let mut client = RawClient::connect(&daemon.socket());
    let page = client.call(daemon.request(json!({"cmd": "events", "from": "7", "limit": 2500})));
    let events = page["data"]["events"].as_array().expect("events");
    assert_eq!(events.len(), 2500);
    let positions: Vec<i64> = events.iter().map(|e| e["position"].as_i64().expect("position")).collect();
    assert_eq!(positions, (7..2507).collect::<Vec<_>>(), "every event once, in order");
    let head = page["data"]["head"].as_i64().expect("head");
    let rest = client.call(daemon.request(json!({"cmd": "events", "from": "2507", "limit": 10000})));
    let rest = rest["data"]["events"].as_array().expect("events");
    assert_eq!(rest.last().and_then(|e| e["position"].as_i64()), Some(head), "the page ends at the head");
}

#[test]
fn long_lists_for_clients_that_do_not_read_are_held_within_a_budget_then_answered_busy() {
    const CLIENTS: usize = 150;
    let daemon = TestDaemon::start();
    daemon.bulk_create(2_000, 50);
    let (before_kib, _) = memory_kib(daemon.pid());
    let stuck: Vec<UnixStream> = (0..CLIENTS)
        .map(|_| {
            let mut stream = UnixStream::connect(daemon.socket()).expect("connect");
            stream
                .write_all(daemon.raw_line("\"cmd\":\"list\",\"limit\":10000}\n").as_bytes())
                .expect("request");
            stream
        })
        .collect();
    // Reads are served in turn: once a later client's list is answered, the others' are built.
    let probe =
        RawClient::connect(&daemon.socket()).call(daemon.request(json!({"cmd": "list", "limit": 10000})));
    assert!(probe["ok"] == true || probe["error"]["code"] == "busy", "{probe}");
    let (now_kib, _) = memory_kib(daemon.pid());
    // Unbounded: 150 lists of half a megabyte each, and every copy made of them (194 MiB seen).
    let grown_mib = now_kib.saturating_sub(before_kib) / 1024;
    eprintln!("lists: RSS {before_kib} KiB before, {now_kib} KiB after");
    assert!(grown_mib < 64, "grew by {grown_mib} MiB ({before_kib} KiB before, {now_kib} KiB now)");
    // Read at last: each client gets its list whole, or `busy` if the budget had no room for it.
    let (mut whole, mut busy) = (0, 0);
    for stream in stuck {
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).expect("a reply");
        if line.starts_with("{\"ok\":true,\"data\":{\"orders\":[") && line.ends_with("\"more\":false}}\n") {
            whole += 1;
        } else {
            assert!(line.contains("\"code\":\"busy\""), "{line}");
            busy += 1;
        }
    }
    assert!(whole >= 20 && busy >= 20, "{whole} whole lists, {busy} busy");
    daemon.create("after", 2);
}

#[test]
fn a_wait_whose_client_hangs_up_frees_its_connection_at_once() {
    let daemon = TestDaemon::start_with(&[("ORDERS_PAYMENT_DELAY", "1h"), ("ORDERS_MAX_CONNECTIONS", "3")]);
    let id = daemon.create("waiter", 2);
    for _ in 0..3 {
        // A wait of a month for an order that stays pending, and the client goes away.
        let mut client = RawClient::connect(&daemon.socket());
        let wait = daemon.request(json!({"cmd": "wait", "id": id, "timeout_ms": 2_592_000_000_u64}));
        client.send_raw(format!("{wait}\n").as_bytes());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Each connection is closed above; the slots are free again (before: "at its limit of 3").
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let output = daemon.run(["list"]);
        if output.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "{}", crate::fixture::stderr(&output));
        std::thread::sleep(Duration::from_millis(50));
    }
    // A client that stays is still answered when its order settles, and pipelined lines too.
    let mut client = RawClient::connect(&daemon.socket());
    let cancel = daemon.request(json!({"cmd": "cancel", "id": id}));
    let wait = daemon.request(json!({"cmd": "wait", "id": id, "timeout_ms": 10_000}));
    let status = daemon.request(json!({"cmd": "status"}));
    client.send_raw(format!("{wait}\n{status}\n").as_bytes());
    std::thread::sleep(Duration::from_millis(100));
    let other = RawClient::connect(&daemon.socket()).call(cancel);
    assert_eq!(other["ok"], true, "{other}");
    assert_eq!(client.reply().expect("wait")["data"]["status"], "cancelled");
    assert_eq!(client.reply().expect("status")["ok"], true);
}

/// Clients that send most of a request line and never its end: each connection may buffer its
/// line only past a small size within a budget shared by all of them, so the total is bounded
/// whatever the number of clients (issue 11, second round: 1,000 such clients held 1 GiB).
#[test]
fn clients_that_never_end_their_line_keep_memory_bounded() {
    const CLIENTS: usize = 300;
    let daemon = TestDaemon::start_with(&[("ORDERS_MAX_CONNECTIONS", "2048")]);
    let (before_kib, _) = memory_kib(daemon.pid());
    let almost_a_line = vec![b'x'; 1_000_000];
    let mut open = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let mut stream = UnixStream::connect(daemon.socket()).expect("connect");
        // A connection over the budget is answered `busy` and closed: its write may fail.
        let _ = stream.write_all(&almost_a_line);
        open.push(stream);
    }
    // The daemon reads what each sent before it answers the next client.
    let probe = RawClient::connect(&daemon.socket()).call(daemon.request(json!({"cmd": "status"})));
    assert_eq!(probe["ok"], true, "{probe}");
    let (peak_kib, _) = memory_kib(daemon.pid());
    let grown_mib = peak_kib.saturating_sub(before_kib) / 1024;
    eprintln!("RSS {before_kib} KiB before, {peak_kib} KiB with {CLIENTS} unfinished lines");
    assert!(grown_mib < 96, "{CLIENTS} unfinished 1 MB lines grew the daemon by {grown_mib} MiB");
    drop(open);
    daemon.create("after", 2);
}
