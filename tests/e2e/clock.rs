//! Clocks that cannot lie (issue 12): a wall clock set back, or a data directory moved to a
//! machine whose clock is behind, never makes recorded times go backwards nor deliveries late.
//! The daemon's clock is moved with `ORDERS_TEST_CLOCK_OFFSET_MS` (tests only).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixture::TestDaemon;

const OFFSET: &str = "ORDERS_TEST_CLOCK_OFFSET_MS";

fn time(order: &Value, field: &str) -> jiff::Timestamp {
    order[field].as_str().unwrap_or_else(|| panic!("{field} in {order}")).parse().expect("a time")
}

fn ids(orders: &Value) -> Vec<&str> {
    orders.as_array().expect("array").iter().map(|o| o["id"].as_str().expect("id")).collect()
}

/// An order approved and not yet delivered (its delivery is `delay` away) when the daemon stops.
fn approved_then_stopped(daemon: &mut TestDaemon) -> String {
    let id = daemon.create("clock", 2);
    daemon.wait_for_status(&id, "approved");
    daemon.signal("TERM");
    id
}

#[test]
fn a_clock_set_back_an_hour_keeps_recorded_times_in_order() {
    let mut daemon = TestDaemon::start_with(&[("ORDERS_DELIVERY_DELAY", "1s")]);
    let before = approved_then_stopped(&mut daemon);
    daemon.set_env(OFFSET, Some("-3600000"));
    daemon.spawn();
    let after = daemon.create("clock", 4);

    for id in [&before, &after] {
        let order = daemon.wait_for_status(id, "delivered");
        let (created, approved, delivered) =
            (time(&order, "created_at"), time(&order, "approved_at"), time(&order, "delivered_at"));
        assert!(created <= approved && approved <= delivered, "times out of order: {order}");
    }
    assert_eq!(ids(&daemon.json(["list", "--all"])), [after.as_str(), before.as_str()], "newest first");
    let recent = daemon.json(["list", "--all", "--since", "10m"]);
    assert!(ids(&recent).contains(&after.as_str()), "list --since 10m misses the new order: {recent}");
    assert!(daemon.log().contains("behind the newest recorded event"), "{}", daemon.log());
}

#[test]
fn a_data_directory_moved_to_a_clock_two_hours_behind_delivers_within_the_delay() {
    let mut daemon = TestDaemon::start_with(&[("ORDERS_DELIVERY_DELAY", "2s")]);
    let id = approved_then_stopped(&mut daemon);
    daemon.set_env(OFFSET, Some("-7200000"));
    let restarted = Instant::now();
    daemon.spawn();
    daemon.wait_for_status(&id, "delivered");
    assert!(restarted.elapsed() < Duration::from_secs(10), "delivered after {:?}", restarted.elapsed());

    let status = daemon.json(["daemon", "status"]);
    let behind = status["clock_behind_ms"].as_u64().unwrap_or_else(|| panic!("no clock warning: {status}"));
    assert!((7_100_000..=7_200_000).contains(&behind), "{behind}");
    let text = daemon.ok(["daemon", "status"]);
    assert!(text.contains("clock:") && text.contains("behind the newest recorded event"), "{text}");
    let log = daemon.log();
    assert!(log.contains("1 deliveries were approved later than the clock says it is now"), "{log}");
    assert!(log.contains("behind the newest recorded event"), "{log}");
}
