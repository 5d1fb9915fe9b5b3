//! What replies carry: orders, events, pages of them, and the reports of `replay`, `check` and
//! `status`.

use jiff::Timestamp;

use super::milliseconds;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::order::{CancelReason, OrderId, OrderStatus};

/// A page of the event log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPage {
    pub events: Vec<EventView>,
    /// Where to read on: pass it as `from` for the events after this page.
    pub next: Cursor,
    /// The position of the newest event in the log when the page was read.
    pub head: i64,
}

/// How far a replay has come; sent as `progress` lines while it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayProgress {
    pub applied: u64,
    /// The log's length when the replay started (it may grow meanwhile).
    pub total: u64,
    pub elapsed_ms: u64,
}

impl ReplayProgress {
    /// The replay's pace so far: the events it applied over the time it has run (issue 18: the
    /// client's bar used to estimate it from when it was first drawn, and showed 775,681,156/s
    /// for 328,000/s). `None` before an event was applied or a millisecond went by.
    pub fn events_per_second(&self) -> Option<f64> {
        (self.applied > 0 && self.elapsed_ms > 0)
            .then(|| self.applied as f64 * 1000.0 / self.elapsed_ms as f64)
    }

    /// The time the events left take at that pace; zero once all are applied, `None` while the
    /// pace is unknown.
    pub fn time_left(&self) -> Option<std::time::Duration> {
        let left = self.total.saturating_sub(self.applied);
        if left == 0 {
            return Some(std::time::Duration::ZERO);
        }
        self.events_per_second().map(|pace| std::time::Duration::from_secs_f64(left as f64 / pace))
    }
}

/// What a replay did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplayReport {
    /// `true` for `replay --check`: nothing was swapped.
    pub check: bool,
    /// Events applied to the new read model.
    pub events: u64,
    /// Orders in the new read model.
    pub orders: u64,
    pub duration_ms: u64,
    pub events_per_second: f64,
    /// With `check`: how many orders differ between the live and the rebuilt read model.
    pub differences: u64,
    /// With `check`: the first differing orders, each as stored live and as rebuilt (`null` when
    /// missing on that side).
    pub examples: Vec<Difference>,
}

/// What `check` found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    pub events: u64,
    pub orders: u64,
    /// How many problems it found; 0 means the log and everything derived from it are sound.
    pub problems: u64,
    /// The first problems (at most 100).
    pub listed: Vec<CheckProblem>,
    pub duration_ms: u64,
    /// The database file is damaged (SQLite's integrity check, or damage met while reading): the
    /// check stopped there, and `events` and `orders` count nothing (issue 12).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub damaged: bool,
}

/// What `backup` wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupReport {
    /// The copy, as the daemon named it (absolute).
    pub path: String,
    /// Events and orders in the copy (counted in the copy itself).
    pub events: u64,
    pub orders: u64,
    /// The copy's size.
    pub bytes: u64,
    pub duration_ms: u64,
}

/// What `orders restore` did (reported by `orders-daemon restore`, not over the socket).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// The copy restored.
    pub from: String,
    /// The data directory's database, now the copy.
    pub database: String,
    pub events: u64,
    pub orders: u64,
    /// The restored store's new identity.
    pub store_id: String,
    /// Where the store it replaced was put (`null`: there was none).
    pub kept_aside: Option<String>,
    pub duration_ms: u64,
}

/// What `export` sent, after its last record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportSummary {
    /// How many events (record lines) it sent.
    pub events: u64,
    /// The cursors of the first and the last of them (`null` when it sent none).
    pub first: Option<Cursor>,
    pub last: Option<Cursor>,
    /// Where a later export goes on from (its `--from`).
    pub next: Cursor,
}

/// What `orders import` did (reported by `orders-daemon import`, not over the socket).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// The file imported (`-`: standard input).
    pub from: String,
    /// The data directory's database, now holding the import.
    pub database: String,
    pub events: u64,
    pub orders: u64,
    /// Saga steps left open by the log, carried out by the daemon once it runs: payments
    /// awaiting a decision, deliveries awaiting their due time (or overdue: they go at once).
    pub open_payments: u64,
    pub open_deliveries: u64,
    /// The new store's identity.
    pub store_id: String,
    pub duration_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckProblem {
    /// The order concerned, when there is one.
    pub order: Option<String>,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    pub id: String,
    pub live: Option<Value>,
    pub rebuilt: Option<Value>,
}

/// One order as the read model shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    pub id: OrderId,
    pub user: String,
    pub total: i64,
    pub status: OrderStatus,
    /// Why it was cancelled; `null` unless it was.
    pub cancel_reason: Option<CancelReason>,
    #[serde(serialize_with = "milliseconds::serialize")]
    pub created_at: Timestamp,
    #[serde(serialize_with = "milliseconds::serialize")]
    pub updated_at: Timestamp,
    #[serde(serialize_with = "milliseconds::serialize_option")]
    pub approved_at: Option<Timestamp>,
    #[serde(serialize_with = "milliseconds::serialize_option")]
    pub delivered_at: Option<Timestamp>,
    #[serde(serialize_with = "milliseconds::serialize_option")]
    pub cancelled_at: Option<Timestamp>,
}

/// One stored event, as `history` and `events` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventView {
    /// The event's place in the global log.
    pub position: i64,
    /// The event's place as `events` reads it: `from` this cursor starts at this event.
    pub cursor: Cursor,
    pub event_id: String,
    /// `order-<id>`, `payment-<id>` or `delivery-<id>`.
    pub stream: String,
    /// The event's place in its stream, from 1.
    pub version: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(serialize_with = "milliseconds::serialize")]
    pub recorded_at: Timestamp,
    /// The payload, in the current schema (older ones are upcast).
    pub data: Value,
    pub correlation_id: String,
    pub causation_id: String,
}

/// A page of orders, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPage {
    pub orders: Vec<OrderView>,
    /// More orders follow: ask again with `before` set to the last id of this page.
    pub more: bool,
}

/// How many orders match (`count`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCount {
    pub count: u64,
}

/// The orders an id or the end of one names (`resolve`), in id order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    pub ids: Vec<OrderId>,
    /// More orders than these end so.
    pub more: bool,
}

/// What `status` reports about a running daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub pid: u32,
    pub version: String,
    pub protocol: u32,
    #[serde(serialize_with = "milliseconds::serialize")]
    pub started_at: Timestamp,
    pub socket: String,
    pub data_dir: String,
    pub database: String,
    pub events: u64,
    pub orders: u64,
    /// Payments waiting for the provider's decision (open steps of the payment saga).
    pub pending_payments: u64,
    /// Deliveries scheduled and not yet due or done (open steps of the delivery saga).
    pub pending_deliveries: u64,
    pub log_file: String,
    /// Stored saga steps the daemon cannot carry out (kept in the database, not run; see
    /// [`StuckStep`]). Absent from older daemons, hence the defaults.
    #[serde(default)]
    pub stuck_steps: u64,
    /// The first few of them.
    #[serde(default)]
    pub stuck: Vec<StuckStep>,
    /// The identity of the store it serves (issue 12; absent from older daemons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_id: Option<String>,
    /// How far the daemon's clock is behind the newest recorded event, when that is more than a
    /// minute: new events are recorded no earlier than it (issue 12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_behind_ms: Option<u64>,
    /// `starting` until the daemon serves requests (issue 12); older daemons answered only once
    /// ready, hence the default. While starting, the counts above are 0: nothing is read yet.
    #[serde(default)]
    pub state: DaemonState,
    /// How far the start-up has come, while starting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartProgress>,
    /// Where the daemon serves its metrics over HTTP (`--metrics-listen`, issue 16), as a URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_url: Option<String>,
    /// Where the daemon serves the original service's HTTP endpoints (`--http`, issue 17), as a
    /// URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_url: Option<String>,
    /// The socket was passed by the service manager (systemd socket activation, issue 16): the
    /// daemon neither created it nor removes it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub socket_activated: bool,
    /// The daemons sharing its PostgreSQL database, this one among them (issue 20); empty on
    /// SQLite, whose file one daemon serves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub daemons: Vec<ClusterDaemon>,
}

/// A daemon sharing the store, as it registered itself: a new `id` at each start, and its
/// heartbeat (each second; `live` when it came within the last 10 seconds), on the database's
/// clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterDaemon {
    pub id: String,
    pub host: String,
    pub pid: i64,
    pub version: String,
    #[serde(serialize_with = "milliseconds::serialize")]
    pub started_at: Timestamp,
    #[serde(serialize_with = "milliseconds::serialize")]
    pub heartbeat_at: Timestamp,
    pub live: bool,
    /// The daemon that answered.
    pub this: bool,
}

/// The answer to `metrics`: the exposition, as the HTTP endpoint serves it (issue 16).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsText {
    /// The HTTP `Content-Type` of `text`: Prometheus' text format, version 0.0.4.
    pub content_type: String,
    pub text: String,
}

/// Whether a daemon serves requests yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DaemonState {
    /// It answers `status` and `shutdown`; everything else gets [`ErrorCode::Starting`](super::ErrorCode::Starting).
    Starting,
    #[default]
    Ready,
}

/// How far a starting daemon has come: its step, and within it `applied` of `total` (events,
/// while the read model catches up; 0 of 0 in the other steps).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartProgress {
    pub step: StartStep,
    pub applied: u64,
    pub total: u64,
}

/// The steps of a start-up, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartStep {
    /// Opening the database and migrating its schema.
    OpeningStore,
    /// Applying the events the read model has not seen yet.
    CatchingUp,
    /// Reading the open saga steps and starting the writer.
    ResumingSagas,
    /// A step from a newer daemon.
    #[serde(other)]
    Unknown,
}

impl std::fmt::Display for StartProgress {
    /// `read model catching up, 1,234,000 of 4,900,000 events`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.step {
            StartStep::OpeningStore => f.write_str("opening the database"),
            StartStep::CatchingUp => write!(
                f,
                "read model catching up, {} of {} events",
                thousands(self.applied),
                thousands(self.total)
            ),
            StartStep::ResumingSagas => f.write_str("resuming the sagas"),
            StartStep::Unknown => f.write_str("starting"),
        }
    }
}

/// `4900000` as `4,900,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A stored saga step the daemon cannot carry out: a row that does not decode, a due time it
/// cannot represent, an order the step cannot find. The daemon serves everything else and keeps
/// the row, untouched, for a fixed build or a repair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StuckStep {
    /// `payment decision` or `delivery`.
    pub step: String,
    /// The order's id as stored (it may be the damaged part).
    pub order: String,
    /// What is wrong with it.
    pub problem: String,
}

/// A place in the event log, opaque to clients (issue 12): every event carries its own, and a
/// page says where to read on. On SQLite it is the decimal position, but clients must not rely
/// on that: on PostgreSQL it carries the transaction id too. Compared by the store, never here.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cursor(String);

impl Cursor {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Cursor {
    type Error = String;

    fn try_from(cursor: String) -> Result<Self, Self::Error> {
        if cursor.is_empty() || cursor.len() > 256 || cursor.chars().any(char::is_control) {
            return Err(format!(
                "invalid cursor '{cursor}': use one that `orders events` printed (its `cursor` field)"
            ));
        }
        Ok(Self(cursor))
    }
}

impl std::str::FromStr for Cursor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::try_from(s.to_owned())
    }
}

impl From<Cursor> for String {
    fn from(cursor: Cursor) -> Self {
        cursor.0
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_replay_s_pace_is_what_it_applied_over_the_time_it_ran() {
        use super::ReplayProgress;
        use std::time::Duration;
        let progress = ReplayProgress { applied: 108_000, total: 328_000, elapsed_ms: 329 };
        let pace = progress.events_per_second().expect("a pace");
        assert!((pace - 328_267.48).abs() < 0.01, "{pace}");
        let left = progress.time_left().expect("a time left");
        assert!((left.as_secs_f64() - 220_000.0 / pace).abs() < 1e-6, "{left:?}");
        assert!(left > Duration::from_millis(600) && left < Duration::from_millis(700), "{left:?}");
        let done = ReplayProgress { applied: 328_000, total: 328_000, elapsed_ms: 1_000 };
        assert_eq!(done.time_left(), Some(Duration::ZERO));
        for unknown in [
            ReplayProgress { applied: 0, total: 10, elapsed_ms: 500 },
            ReplayProgress { applied: 2_000, total: 10_000, elapsed_ms: 0 },
        ] {
            assert_eq!(unknown.events_per_second(), None, "{unknown:?}");
            assert_eq!(unknown.time_left(), None, "{unknown:?}");
        }
        // A log that grew meanwhile: the total is the daemon's, never below what was applied.
        let grown = ReplayProgress { applied: 12_000, total: 10_000, elapsed_ms: 100 };
        assert_eq!(grown.time_left(), Some(Duration::ZERO));
    }

    use super::*;

    #[test]
    fn start_progress_reads_as_a_sentence() {
        let progress = StartProgress { step: StartStep::CatchingUp, applied: 1_234_000, total: 4_900_000 };
        assert_eq!(progress.to_string(), "read model catching up, 1,234,000 of 4,900,000 events");
        let small = StartProgress { step: StartStep::CatchingUp, applied: 0, total: 999 };
        assert_eq!(small.to_string(), "read model catching up, 0 of 999 events");
        let json = r#"{"step":"from_the_future","applied":0,"total":0}"#;
        let unknown: StartProgress = serde_json::from_str(json).expect("a newer step reads");
        assert_eq!(unknown.step, StartStep::Unknown);
    }
}
