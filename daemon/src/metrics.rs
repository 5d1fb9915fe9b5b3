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
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use orders_shared::protocol::{ErrorBody, ReplayProgress};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
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
    /// The HTTP server was at its connection limit.
    HttpLimit,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::Limit => "limit",
            Refusal::OtherUser => "other_user",
            Refusal::HttpLimit => "http_limit",
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
    writer_lock_seconds: Histogram,
    cluster_daemons: Gauge,
    events_appended: Counter,
    delivery_lateness_seconds: Histogram,
    connections_open: Gauge,
    connections_refused: Family<ReasonLabel, Counter>,
    replay_running: Gauge,
    replay_applied: Gauge,
    replay_total: Gauge,
    /// The states sampled when scraped, encoded by the registry as a collector.
    sampled: Arc<Sampled>,
    /// One scrape at a time: each sets the sample, then encodes it.
    rendering: Mutex<()>,
}

/// The states sampled at a scrape. What is not known — the store's states while the daemon
/// starts, or when the store cannot be read — is left out of the exposition, never shown as 0.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// The daemon serves requests (its start-up is done).
    pub ready: bool,
    /// Events the read model has still to apply: during the start-up's catch-up, or when it
    /// falls behind the log.
    pub read_model_lag: Option<u64>,
    /// What the store says, as of one snapshot.
    pub store: Option<StoreSample>,
    /// The daemon's clock now, to which the ages are measured.
    pub now: Option<Timestamp>,
}

/// The last sample of the store, when it was taken and the read model's lag then: what the
/// scrapes of the same second share (`server::metrics`).
pub type LastSample = tokio::sync::Mutex<Option<(std::time::Instant, StoreSample, u64)>>;

/// The store's states at a scrape.
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreSample {
    /// Events in the log.
    pub events: u64,
    pub open_payments: u64,
    pub open_deliveries: u64,
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
            writer_lock_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            cluster_daemons: Gauge::default(),
            events_appended: Counter::default(),
            // 1 ms to 70 min: a daemon that was down delivers late by as long as it was down.
            delivery_lateness_seconds: Histogram::new(exponential_buckets(0.001, 4.0, 12)),
            connections_open: Gauge::default(),
            connections_refused: Family::default(),
            replay_running: Gauge::default(),
            replay_applied: Gauge::default(),
            replay_total: Gauge::default(),
            sampled: Arc::default(),
            rendering: Mutex::new(()),
        };
        // Every reason from 0, so that a rate over them starts at the first scrape.
        for why in [Refusal::Limit, Refusal::OtherUser, Refusal::HttpLimit] {
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
            "orders_writer_lock_wait",
            "Time a batch waited for its turn among the writers of the daemons sharing a PostgreSQL store \
             (a daemon frozen inside a batch holds every writer back)",
            Unit::Seconds,
            self.writer_lock_seconds.clone(),
        );
        r.register(
            "orders_cluster_daemons",
            "Live daemons sharing the PostgreSQL store, this one among them (0 on SQLite)",
            self.cluster_daemons.clone(),
        );
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
            "Connections turned away: at the socket's limit, from another user, or at the HTTP server's limit",
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
        r.register_collector(Box::new(Arc::clone(&self.sampled)));
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

    /// The exposition, with the states of `sample`.
    pub fn render(&self, sample: Sample) -> String {
        let _one_at_a_time = self.rendering.lock().unwrap_or_else(PoisonError::into_inner);
        *self.sampled.0.lock().unwrap_or_else(PoisonError::into_inner) = (sample, Process::read());
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

    /// A batch waited `took` for the writers of the other daemons sharing the store.
    pub fn waited_for_writers(&self, took: Duration) {
        self.writer_lock_seconds.observe(took.as_secs_f64());
    }

    /// How many daemons share the store, live, as the last heartbeat listed them.
    pub fn cluster(&self, live: usize) {
        self.cluster_daemons.set(i64::try_from(live).unwrap_or(i64::MAX));
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
        self.replay_applied.set(whole(applied));
        self.replay_total.set(whole(total));
    }
}

/// Counts a connection open while it lives.
pub struct OpenConnection<'a>(&'a Gauge);

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A count as a gauge's value.
fn whole(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Seconds from `then` to `now`; 0 when `then` is later (a clock that went back).
fn seconds_since(then: Timestamp, now: Timestamp) -> f64 {
    (now.as_millisecond().saturating_sub(then.as_millisecond())).max(0) as f64 / 1000.0
}

/// The sampled states, encoded at each scrape as the last [`Metrics::render`] set them: only those
/// known.
#[derive(Debug, Default)]
struct Sampled(Mutex<(Sample, Process)>);

impl Collector for Sampled {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (sample, process) = &*self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let e = &mut encoder;
        gauge(
            e,
            "orders_ready",
            "1 once the daemon serves requests, 0 while it starts",
            None,
            i64::from(sample.ready),
        )?;
        if let Some(lag) = sample.read_model_lag {
            gauge(
                e,
                "orders_read_model_lag_events",
                "Events in the log that the read model has not applied yet",
                None,
                whole(lag),
            )?;
        }
        if let Some(store) = &sample.store {
            let now = sample.now.unwrap_or_else(Timestamp::now);
            gauge(e, "orders_events", "Events in the log", None, whole(store.events))?;
            let sagas = [
                ("payment", store.open_payments, store.oldest_payment),
                ("delivery", store.open_deliveries, store.oldest_delivery),
            ];
            let mut open = e.encode_descriptor(
                "orders_saga_open_steps",
                "Open saga steps: payments awaiting a decision, deliveries awaiting their due time",
                None,
                MetricType::Gauge,
            )?;
            for (saga, count, _) in sagas {
                ConstGauge::new(whole(count)).encode(open.encode_family(&SagaLabel { saga })?)?;
            }
            let mut oldest = e.encode_descriptor(
                "orders_saga_oldest_open_step_age",
                "Age of the oldest open saga step: since the payment was requested, or the delivery scheduled (0 when none is open)",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?;
            for (saga, _, since) in sagas {
                let age = since.map_or(0.0, |since| seconds_since(since, now));
                ConstGauge::new(age).encode(oldest.encode_family(&SagaLabel { saga })?)?;
            }
            let overdue = store.earliest_due.map_or(0.0, |due| seconds_since(due, now));
            gauge(
                e,
                "orders_delivery_overdue",
                "How long the earliest open delivery is past its due time (0 when none is)",
                Some(&Unit::Seconds),
                overdue,
            )?;
        }
        // The process, named as every Prometheus client library names it.
        let process_gauges = [
            ("process_resident_memory", "Resident memory size", Some(Unit::Bytes), process.resident_bytes),
            ("process_virtual_memory", "Virtual memory size", Some(Unit::Bytes), process.virtual_bytes),
            ("process_open_fds", "Open file descriptors", None, process.open_fds),
            ("process_max_fds", "The limit on open file descriptors", None, process.max_fds),
        ];
        for (name, help, unit, value) in process_gauges {
            if let Some(value) = value {
                gauge(e, name, help, unit.as_ref(), whole(value))?;
            }
        }
        Ok(())
    }
}

/// One unlabelled gauge, encoded.
fn gauge<N: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: N,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, unit, metric.metric_type())?)
}

/// What Linux says of this process (`/proc/self`); `None` where it cannot be read.
#[derive(Clone, Copy, Debug, Default)]
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
        let text = metrics.render(Sample::default());
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
        let text = metrics.render(Sample::default());
        assert_eq!(value(&text, "orders_connections_open"), Some(0.0));
        assert_eq!(value(&text, "orders_replay_running"), Some(0.0));
        // The states not known (a starting daemon, a store that cannot be read) are left out.
        for unknown in ["orders_events", "orders_read_model_lag_events", "orders_delivery_overdue_seconds"] {
            assert_eq!(value(&text, unknown), None, "{unknown} in\n{text}");
        }
        assert!(!text.contains("orders_saga_open_steps"), "{text}");
    }

    #[test]
    fn sampled_states_are_ages_on_the_daemon_s_clock_and_never_negative() {
        let metrics = Metrics::new(Timestamp::now());
        let now = Timestamp::from_second(1_800_000_000).expect("time");
        let ago = |seconds: i64| now.checked_sub(jiff::SignedDuration::from_secs(seconds)).expect("time");
        let store = StoreSample {
            events: 40,
            open_payments: 3,
            open_deliveries: 0,
            oldest_payment: Some(ago(90)),
            oldest_delivery: None,
            // A clock that went back: due "in the future" is not overdue.
            earliest_due: Some(ago(-30)),
        };
        let text = metrics.render(Sample {
            ready: true,
            read_model_lag: Some(0),
            store: Some(store),
            now: Some(now),
        });
        for (series, want) in [
            ("orders_ready", 1.0),
            ("orders_events", 40.0),
            ("orders_read_model_lag_events", 0.0),
            (r#"orders_saga_open_steps{saga="payment"}"#, 3.0),
            (r#"orders_saga_open_steps{saga="delivery"}"#, 0.0),
            (r#"orders_saga_oldest_open_step_age_seconds{saga="payment"}"#, 90.0),
            (r#"orders_saga_oldest_open_step_age_seconds{saga="delivery"}"#, 0.0),
            ("orders_delivery_overdue_seconds", 0.0),
        ] {
            assert_eq!(value(&text, series), Some(want), "{series} in\n{text}");
        }
        assert_eq!(text.matches("# TYPE orders_saga_open_steps gauge").count(), 1, "{text}");
    }

    #[test]
    fn every_name_follows_the_conventions() {
        let store = StoreSample::default();
        let sample = Sample { ready: true, read_model_lag: Some(0), store: Some(store), now: None };
        let text = Metrics::new(Timestamp::now()).render(sample);
        let mut names = std::collections::HashSet::new();
        for line in text.lines().filter(|line| line.starts_with("# TYPE ")) {
            let mut words = line.split(' ').skip(2);
            let (name, kind) = (words.next().expect("name"), words.next().expect("type"));
            assert!(names.insert(name.to_owned()), "{name} described twice");
            assert!(name.starts_with("orders_") || name.starts_with("process_"), "{line}");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
            assert!(!name.contains("milliseconds") && !name.contains("_ms"), "base units: {line}");
        }
    }
}
