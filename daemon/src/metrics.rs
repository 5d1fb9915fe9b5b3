//! The daemon's metrics, in Prometheus' text format (issue 16): `orders metrics` asks for them
//! over the socket, and `--metrics-listen` serves them over HTTP (`crate::http`).
//!
//! Two kinds. Events are counted where they happen — commands and their latency in
//! [`Writer::execute`](crate::writer::Writer::execute), batches and commits on the writer's
//! thread, connections in the socket server, delivery lateness in the delivery saga, replay
//! progress between the writer's chunks. States are sampled when scraped ([`Sample`]): the open
//! saga steps and the age of the oldest, the read model's lag, the process' memory and
//! descriptors. Names and units follow Prometheus' naming conventions: base units (seconds,
//! bytes), `_total` on counters, one `orders_` prefix, `process_` for the process as every
//! client library names it.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use jiff::Timestamp;
use orders_shared::protocol::{ErrorBody, ReplayProgress};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::command::CommandKind;

/// The `Content-Type` of the exposition: Prometheus' text format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A command and how it ended: `ok`, or the error code its client was given.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    command: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabel {
    command: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SagaLabel {
    saga: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Why a connection was turned away.
#[derive(Clone, Copy, Debug)]
pub enum Refusal {
    /// The daemon was at its connection limit.
    Limit,
    /// The peer was another user.
    OtherUser,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::Limit => "limit",
            Refusal::OtherUser => "other_user",
        }
    }
}

type SecondsGauge = Gauge<f64, AtomicU64>;

/// A family of histograms made by a plain function (the buckets).
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// 100 µs to 3.3 s.
fn command_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
}

/// Every metric of one daemon. Cheap to update from any thread: counters and gauges are atomics,
/// a histogram is a short lock. Each field is a handle on what the registry encodes.
pub struct Metrics {
    registry: Registry,
    commands: Family<Outcome, Counter>,
    command_seconds: Histograms<CommandLabel>,
    batch_commands: Histogram,
    commit_seconds: Histogram,
    events_appended: Counter,
    delivery_lateness_seconds: Histogram,
    connections_open: Gauge,
    connections_refused: Family<ReasonLabel, Counter>,
    replay_running: Gauge,
    replay_applied: Gauge,
    replay_total: Gauge,
    // Sampled when scraped.
    ready: Gauge,
    events_stored: Gauge,
    open_steps: Family<SagaLabel, Gauge>,
    oldest_step_seconds: Family<SagaLabel, SecondsGauge>,
    delivery_overdue_seconds: SecondsGauge,
    read_model_lag: Gauge,
    resident_bytes: Gauge,
    virtual_bytes: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
}

/// What the store says when scraped (`None`: not known, while the daemon starts).
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// The daemon serves requests (its start-up is done).
    pub ready: bool,
    /// Events in the log.
    pub events: Option<u64>,
    /// Events the read model has still to apply: during the start-up's catch-up, or when it
    /// falls behind the log.
    pub read_model_lag: Option<u64>,
    pub open_payments: Option<u64>,
    pub open_deliveries: Option<u64>,
    /// When the oldest open payment step was requested.
    pub oldest_payment: Option<Timestamp>,
    /// When the oldest open delivery step was scheduled (its order approved).
    pub oldest_delivery: Option<Timestamp>,
    /// The earliest due time of an open delivery.
    pub earliest_due: Option<Timestamp>,
}

impl Metrics {
    /// A daemon's metrics; `started_at` is its start, for `process_start_time_seconds`.
    pub fn new(started_at: Timestamp) -> Metrics {
        let metrics = Metrics {
            registry: Registry::default(),
            commands: Family::default(),
            command_seconds: Family::new_with_constructor(command_buckets),
            // 1 to 1024 commands (the writer's largest batch).
            batch_commands: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            // 50 µs to 1.6 s.
            commit_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            events_appended: Counter::default(),
            // 1 ms to 70 min: a daemon that was down delivers late by as long as it was down.
            delivery_lateness_seconds: Histogram::new(exponential_buckets(0.001, 4.0, 12)),
            connections_open: Gauge::default(),
            connections_refused: Family::default(),
            replay_running: Gauge::default(),
            replay_applied: Gauge::default(),
            replay_total: Gauge::default(),
            ready: Gauge::default(),
            events_stored: Gauge::default(),
            open_steps: Family::default(),
            oldest_step_seconds: Family::default(),
            delivery_overdue_seconds: SecondsGauge::default(),
            read_model_lag: Gauge::default(),
            resident_bytes: Gauge::default(),
            virtual_bytes: Gauge::default(),
            open_fds: Gauge::default(),
            max_fds: Gauge::default(),
        };
        // Every reason from 0, so that a rate over them starts at the first scrape.
        for why in [Refusal::Limit, Refusal::OtherUser] {
            metrics.connections_refused.get_or_create(&ReasonLabel { reason: why.reason() }).inc_by(0);
        }
        metrics.registered(started_at)
    }

    fn registered(mut self, started_at: Timestamp) -> Metrics {
        let r = &mut self.registry;
        r.register(
            "orders_commands",
            "Write commands (create, cancel, and the sagas' steps) by outcome: ok, or the error code answered",
            self.commands.clone(),
        );
        r.register_with_unit(
            "orders_command_duration",
            "Time from a write command's arrival at the writer to its durable answer",
            Unit::Seconds,
            self.command_seconds.clone(),
        );
        r.register(
            "orders_writer_batch_commands",
            "Commands committed together in one transaction (group commit)",
            self.batch_commands.clone(),
        );
        r.register_with_unit(
            "orders_store_commit_duration",
            "Time the store took to commit a batch's transaction (its fsync)",
            Unit::Seconds,
            self.commit_seconds.clone(),
        );
        r.register("orders_events_appended", "Events appended to the log", self.events_appended.clone());
        r.register_with_unit(
            "orders_delivery_lateness",
            "Time from a delivery's due time to its recording",
            Unit::Seconds,
            self.delivery_lateness_seconds.clone(),
        );
        r.register(
            "orders_connections_open",
            "Client connections open on the socket",
            self.connections_open.clone(),
        );
        r.register(
            "orders_connections_refused",
            "Client connections turned away: at the connection limit, or from another user",
            self.connections_refused.clone(),
        );
        r.register(
            "orders_replay_running",
            "1 while a replay rebuilds or checks the read model",
            self.replay_running.clone(),
        );
        r.register(
            "orders_replay_applied_events",
            "Events the running replay has applied",
            self.replay_applied.clone(),
        );
        r.register(
            "orders_replay_total_events",
            "Events the running replay is to apply",
            self.replay_total.clone(),
        );
        r.register(
            "orders_ready",
            "1 once the daemon serves requests, 0 while it starts",
            self.ready.clone(),
        );
        r.register("orders_events", "Events in the log", self.events_stored.clone());
        r.register(
            "orders_saga_open_steps",
            "Open saga steps: payments awaiting a decision, deliveries awaiting their due time",
            self.open_steps.clone(),
        );
        r.register_with_unit(
            "orders_saga_oldest_open_step_age",
            "Age of the oldest open saga step: since the payment was requested, or the delivery scheduled",
            Unit::Seconds,
            self.oldest_step_seconds.clone(),
        );
        r.register_with_unit(
            "orders_delivery_overdue",
            "How long the earliest open delivery is past its due time (0 when none is)",
            Unit::Seconds,
            self.delivery_overdue_seconds.clone(),
        );
        r.register(
            "orders_read_model_lag_events",
            "Events in the log that the read model has not applied yet",
            self.read_model_lag.clone(),
        );
        // The process, named as every Prometheus client library names it.
        r.register_with_unit(
            "process_resident_memory",
            "Resident memory size",
            Unit::Bytes,
            self.resident_bytes.clone(),
        );
        r.register_with_unit(
            "process_virtual_memory",
            "Virtual memory size",
            Unit::Bytes,
            self.virtual_bytes.clone(),
        );
        r.register("process_open_fds", "Open file descriptors", self.open_fds.clone());
        r.register("process_max_fds", "The limit on open file descriptors", self.max_fds.clone());
        let start = SecondsGauge::default();
        start.set(started_at.as_millisecond() as f64 / 1000.0);
        r.register_with_unit(
            "process_start_time",
            "Start time of the process since the Unix epoch",
            Unit::Seconds,
            start,
        );
        self
    }

    /// The exposition, with the sampled states set from `sample` first.
    pub fn render(&self, sample: &Sample, now: Timestamp) -> String {
        self.ready.set(i64::from(sample.ready));
        set_known(&self.events_stored, sample.events);
        set_known(&self.read_model_lag, sample.read_model_lag);
        for (saga, open, oldest) in [
            ("payment", sample.open_payments, sample.oldest_payment),
            ("delivery", sample.open_deliveries, sample.oldest_delivery),
        ] {
            let label = SagaLabel { saga };
            if let Some(open) = open {
                self.open_steps.get_or_create(&label).set(gauge(open));
                self.oldest_step_seconds
                    .get_or_create(&label)
                    .set(oldest.map_or(0.0, |at| seconds_since(at, now)));
            }
        }
        self.delivery_overdue_seconds.set(sample.earliest_due.map_or(0.0, |due| seconds_since(due, now)));
        let process = Process::read();
        set_known(&self.resident_bytes, process.resident_bytes);
        set_known(&self.virtual_bytes, process.virtual_bytes);
        set_known(&self.open_fds, process.open_fds);
        set_known(&self.max_fds, process.max_fds);
        let mut text = String::with_capacity(8 << 10);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }

    // --- events, counted where they happen ---

    /// A write command answered after `took`.
    pub fn command(&self, command: CommandKind, took: Duration, result: Result<(), &ErrorBody>) {
        let name = command.name();
        let outcome = match result {
            Ok(()) => "ok",
            Err(error) => error.code.name(),
        };
        self.commands.get_or_create(&Outcome { command: name, outcome }).inc();
        self.command_seconds.get_or_create(&CommandLabel { command: name }).observe(took.as_secs_f64());
    }

    /// A batch of `commands` committed in `took`, appending `events`.
    pub fn committed(&self, commands: usize, events: usize, took: Option<Duration>) {
        self.batch_commands.observe(commands as f64);
        if let Some(took) = took {
            self.commit_seconds.observe(took.as_secs_f64());
        }
        self.events_appended.inc_by(events as u64);
    }

    /// A delivery recorded `late` after its due time.
    pub fn delivered(&self, late: Duration) {
        self.delivery_lateness_seconds.observe(late.as_secs_f64());
    }

    /// A connection accepted and served: open until the guard is dropped.
    pub fn connection(&self) -> OpenConnection<'_> {
        self.connections_open.inc();
        OpenConnection(&self.connections_open)
    }

    /// A connection turned away.
    pub fn refused(&self, why: Refusal) {
        self.connections_refused.get_or_create(&ReasonLabel { reason: why.reason() }).inc();
    }

    /// Where the running replay is; `None` when none runs.
    pub fn replay(&self, progress: Option<ReplayProgress>) {
        let (running, applied, total) = match progress {
            Some(progress) => (1, progress.applied, progress.total),
            None => (0, 0, 0),
        };
        self.replay_running.set(running);
        self.replay_applied.set(gauge(applied));
        self.replay_total.set(gauge(total));
    }
}

/// Counts a connection open while it lives.
pub struct OpenConnection<'a>(&'a Gauge);

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn set_known(gauge_: &Gauge, value: Option<u64>) {
    if let Some(value) = value {
        gauge_.set(gauge(value));
    }
}

/// Seconds from `then` to `now`; 0 when `then` is later (a clock that went back).
fn seconds_since(then: Timestamp, now: Timestamp) -> f64 {
    (now.as_millisecond().saturating_sub(then.as_millisecond())).max(0) as f64 / 1000.0
}

/// What Linux says of this process (`/proc/self`); `None` where it cannot be read.
#[derive(Debug, Default)]
struct Process {
    resident_bytes: Option<u64>,
    virtual_bytes: Option<u64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
}

impl Process {
    fn read() -> Process {
        let page = rustix::param::page_size() as u64;
        // statm: sizes in pages, the first two being the whole and the resident set.
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let mut pages = statm.split_ascii_whitespace().map(|field| field.parse::<u64>().ok());
        let virtual_bytes = pages.next().flatten().map(|pages| pages * page);
        let resident_bytes = pages.next().flatten().map(|pages| pages * page);
        let open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|entries| entries.count() as u64);
        let max_fds = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        Process { resident_bytes, virtual_bytes, open_fds, max_fds }
    }
}

#[cfg(test)]
mod tests {
    use orders_shared::protocol::ErrorCode;

    use super::*;

    /// The value of one series in an exposition.
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn what_is_counted_is_what_is_exposed() {
        let metrics = Metrics::new(Timestamp::from_second(1_800_000_000).expect("time"));
        let rejected = ErrorBody::new(ErrorCode::Rejected, "delivered already");
        metrics.command(CommandKind::Create, Duration::from_millis(3), Ok(()));
        metrics.command(CommandKind::Create, Duration::from_millis(5), Ok(()));
        metrics.command(CommandKind::Cancel, Duration::from_millis(1), Err(&rejected));
        metrics.committed(2, 7, Some(Duration::from_micros(800)));
        metrics.delivered(Duration::from_millis(1500));
        metrics.refused(Refusal::Limit);
        let open = metrics.connection();
        metrics.replay(Some(ReplayProgress { applied: 2000, total: 5000, elapsed_ms: 10 }));
        let text = metrics.render(&Sample::default(), Timestamp::now());
        let expected = [
            (r#"orders_commands_total{command="create",outcome="ok"}"#, 2.0),
            (r#"orders_commands_total{command="cancel",outcome="rejected"}"#, 1.0),
            (r#"orders_command_duration_seconds_count{command="create"}"#, 2.0),
            (r#"orders_command_duration_seconds_bucket{command="create",le="0.0032"}"#, 1.0),
            ("orders_writer_batch_commands_sum", 2.0),
            ("orders_store_commit_duration_seconds_count", 1.0),
            ("orders_events_appended_total", 7.0),
            ("orders_delivery_lateness_seconds_sum", 1.5),
            (r#"orders_connections_refused_total{reason="limit"}"#, 1.0),
            (r#"orders_connections_refused_total{reason="other_user"}"#, 0.0),
            ("orders_connections_open", 1.0),
            ("orders_replay_running", 1.0),
            ("orders_replay_applied_events", 2000.0),
            ("orders_ready", 0.0),
            ("process_start_time_seconds", 1_800_000_000.0),
        ];
        for (series, want) in expected {
            assert_eq!(value(&text, series), Some(want), "{series} in\n{text}");
        }
        assert!(value(&text, "process_resident_memory_bytes").is_some_and(|bytes| bytes > 0.0), "{text}");
        assert!(value(&text, "process_open_fds").is_some_and(|fds| fds > 0.0), "{text}");
        drop(open);
        metrics.replay(None);
        let text = metrics.render(&Sample::default(), Timestamp::now());
        assert_eq!(value(&text, "orders_connections_open"), Some(0.0));
        assert_eq!(value(&text, "orders_replay_running"), Some(0.0));
        // A state not known (a starting daemon) is not made up.
        assert_eq!(value(&text, r#"orders_saga_open_steps{saga="payment"}"#), None);
    }

    #[test]
    fn sampled_states_are_ages_from_now_and_never_negative() {
        let metrics = Metrics::new(Timestamp::now());
        let now = Timestamp::from_second(1_800_000_000).expect("time");
        let ago = |seconds: i64| now.checked_sub(jiff::SignedDuration::from_secs(seconds)).expect("time");
        let sample = Sample {
            ready: true,
            events: Some(40),
            read_model_lag: Some(0),
            open_payments: Some(3),
            open_deliveries: Some(0),
            oldest_payment: Some(ago(90)),
            oldest_delivery: None,
            // A clock that went back: due "in the future" is not overdue.
            earliest_due: Some(ago(-30)),
        };
        let text = metrics.render(&sample, now);
        for (series, want) in [
            ("orders_ready", 1.0),
            ("orders_events", 40.0),
            (r#"orders_saga_open_steps{saga="payment"}"#, 3.0),
            (r#"orders_saga_oldest_open_step_age_seconds{saga="payment"}"#, 90.0),
            (r#"orders_saga_oldest_open_step_age_seconds{saga="delivery"}"#, 0.0),
            ("orders_delivery_overdue_seconds", 0.0),
        ] {
            assert_eq!(value(&text, series), Some(want), "{series} in\n{text}");
        }
    }

    #[test]
    fn every_name_follows_the_conventions() {
        let text = Metrics::new(Timestamp::now()).render(&Sample::default(), Timestamp::now());
        for line in text.lines().filter(|line| line.starts_with("# TYPE ")) {
            let mut words = line.split(' ').skip(2);
            let (name, kind) = (words.next().expect("name"), words.next().expect("type"));
            assert!(name.starts_with("orders_") || name.starts_with("process_"), "{line}");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
            assert!(!name.contains("milliseconds") && !name.contains("_ms"), "base units: {line}");
        }
    }
}
