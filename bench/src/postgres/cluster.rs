//! Several daemons on one PostgreSQL database (issue 20), the `cluster` part of the section:
//! creates and settled orders with 1, 2 and 3 daemons sharing the same 64 connections, as ratios
//! of the one daemon's figure and of the raw ceiling of the same run; what the global writer lock
//! costs the raw ceiling; and the follower lag, from a create acknowledged by one daemon to its
//! event on `events --follow` at another.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orders::client::Client;
use orders_daemon::paths::Paths;
use orders_shared::protocol::{EventsRequest, Request};

use super::{CONNECTIONS, Server, raw};
use crate::load;
use crate::report::Report;

/// The daemons sharing the database, in turn.
const DAEMONS: [usize; 3] = [1, 2, 3];

/// The raw writers of the writer lock's figures: alone, and as many as the most daemons.
const WRITERS: [usize; 2] = [1, 3];

/// The follower lag's writer: creates a second, from this many connections taking turns.
const LAG_RATE: f64 = 200.0;
const LAG_CONNECTIONS: usize = 4;

/// How long the followers may take to see the last orders once the writer stops.
const DRAIN: Duration = Duration::from_secs(10);

/// The section's raw ceilings, measured in the same run.
#[derive(Clone, Copy, Debug)]
pub struct Ceilings {
    /// Creates a second, 64 a transaction.
    pub creates: f64,
    /// Orders a second through their whole lives, 64 a transaction a step.
    pub settled: f64,
}

pub async fn measure(
    report: &mut Report,
    server: &Server<'_>,
    quick: bool,
    duration: Duration,
    ceilings: Ceilings,
) -> anyhow::Result<()> {
    writer_lock(report, server, quick)?;
    throughput(report, server, quick, duration, ceilings).await?;
    follower_lag(report, server, if quick { Duration::from_secs(1) } else { Duration::from_secs(5) }).await
}

/// The raw creates ceiling with every transaction taking the global writer lock first (and
/// reading the head under it), against the same writers without it: one writer (what the lock's
/// round trips cost) and three at once (what serializing them costs, their commits' fsyncs
/// included). Best of three each in a full run, taken in turns: the machine is shared.
fn writer_lock(report: &mut Report, server: &Server<'_>, quick: bool) -> anyhow::Result<()> {
    let (count, rounds) = if quick { (4_000, 1) } else { (40_000, 3) };
    for writers in WRITERS {
        let (mut unlocked, mut locked): (f64, f64) = (0.0, 0.0);
        for _ in 0..rounds {
            for sharing in [raw::Sharing::Unlocked, raw::Sharing::Locked] {
                let (created, took) =
                    server.off_runtime(|url| raw::creates_by(url, writers, CONNECTIONS, count, sharing))?;
                let rate = created as f64 / took.as_secs_f64();
                match sharing {
                    raw::Sharing::Unlocked => unlocked = unlocked.max(rate),
                    raw::Sharing::Locked => locked = locked.max(rate),
                }
            }
        }
        report.add_vs(
            format!("PG raw creates, writer lock, {}", plural(writers, "writer")),
            "creates/s",
            locked,
            unlocked,
            "no lock",
            format!(
                "{CONNECTIONS} creates a transaction; locked: pg_advisory_xact_lock, then the head read \
                 under it; unlocked: positions and checkpoint rows apart{}",
                if rounds > 1 { "; best of three each" } else { "" }
            ),
        );
    }
    Ok(())
}

/// Creates (the payment saga held back) and settled orders with 1, 2 and 3 daemons on one fresh
/// database each time, the 64 connections spread evenly over them. Best of two rounds in a full
/// run, each round 1, 2, then 3 daemons: the machine is shared.
async fn throughput(
    report: &mut Report,
    server: &Server<'_>,
    quick: bool,
    duration: Duration,
    ceilings: Ceilings,
) -> anyhow::Result<()> {
    let rounds = if quick { 1 } else { 2 };
    let mut best: Vec<Option<(Throughput, Throughput)>> = vec![None; DAEMONS.len()];
    for _ in 0..rounds {
        for (daemons, best) in DAEMONS.into_iter().zip(&mut best) {
            let ((created, took, latencies), writer) = server
                .on_daemons(daemons, &[("ORDERS_PAYMENT_DELAY", "1h")], |paths| async move {
                    load::creates_on(&paths, CONNECTIONS, duration).await
                })
                .await?;
            let creates = Throughput {
                per_second: created as f64 / took.as_secs_f64(),
                latencies: Some((latencies.percentile(50.0), latencies.percentile(99.0))),
                writer,
            };
            let ((settled, took), writer) = server
                .on_daemons(daemons, &[], |paths| async move {
                    load::settled_on(&paths, CONNECTIONS, duration).await
                })
                .await?;
            let settled =
                Throughput { per_second: settled as f64 / took.as_secs_f64(), latencies: None, writer };
            let (creates, settled) = match best.take() {
                Some((c, s)) => (c.max(creates), s.max(settled)),
                None => (creates, settled),
            };
            *best = Some((creates, settled));
        }
    }
    let best = best.into_iter().flatten().collect::<Vec<_>>();
    let Some(&(one_creates, one_settled)) = best.first() else { return Ok(()) };
    let rounds = if rounds > 1 { "; best of two" } else { "" };
    for (daemons, (creates, settled)) in DAEMONS.into_iter().zip(best) {
        let on = plural(daemons, "daemon");
        report.add_vs(
            format!("creates on PG, {on}, {CONNECTIONS} conn."),
            "creates/s",
            creates.per_second,
            ceilings.creates,
            "raw pg",
            format!("{}{rounds}", creates.note()),
        );
        report.add_vs(
            format!("settled on PG, {on}, {CONNECTIONS} conn."),
            "orders/s",
            settled.per_second,
            ceilings.settled,
            "raw pg",
            format!("{}{rounds}", settled.note()),
        );
        if daemons > 1 {
            let note = format!("{CONNECTIONS} connections spread evenly, this run{rounds}");
            let (ours, one) = (creates.per_second, one_creates.per_second);
            report.add_vs(format!("creates on PG, {on} vs 1"), "creates/s", ours, one, "1 daemon", &note);
            let (ours, one) = (settled.per_second, one_settled.per_second);
            report.add_vs(format!("settled on PG, {on} vs 1"), "orders/s", ours, one, "1 daemon", note);
        }
    }
    Ok(())
}

/// One throughput measurement: its rate, its latencies (p50, p99) when they were measured, and
/// the daemons' writers meanwhile (mean commands a commit, mean commit in ms).
#[derive(Clone, Copy, Debug)]
struct Throughput {
    per_second: f64,
    latencies: Option<(Duration, Duration)>,
    writer: (f64, f64),
}

impl Throughput {
    /// The better of two measurements.
    fn max(self, other: Throughput) -> Throughput {
        if other.per_second > self.per_second { other } else { self }
    }

    fn note(&self) -> String {
        let (batch, commit) = self.writer;
        let writer = format!("{batch:.1} commands a commit, commit {commit:.2} ms");
        match self.latencies {
            Some((p50, p99)) => {
                format!("p50 {:.2} ms, p99 {:.2} ms; {writer}", crate::ms(p50), crate::ms(p99))
            }
            None => writer,
        }
    }
}

/// Two daemons, A and B: a writer places orders on A at a steady rate for `duration` while
/// `events --follow` streams on both. A follower's lag for an order is when its OrderPlaced
/// arrived there less when A's acknowledgement of the create arrived, both on this process's
/// monotonic clock: B's is the figure, A's the same run's baseline (no other daemon in the way).
async fn follower_lag(report: &mut Report, server: &Server<'_>, duration: Duration) -> anyhow::Result<()> {
    let (run, _) = server
        .on_daemons(2, &[("ORDERS_PAYMENT_DELAY", "1h")], |daemons| async move {
            LagRun::measure(&daemons[0], &daemons[1], duration).await
        })
        .await?;
    let (other, same) = (run.lags(&run.other), run.lags(&run.same));
    let rate = run.acknowledged.len() as f64 / duration.as_secs_f64();
    for (p, name) in [(50.0, "p50"), (99.0, "p99"), (100.0, "max")] {
        report.add_vs(
            format!("follower lag {name}, on another daemon"),
            "ms",
            other.percentile(p),
            same.percentile(p),
            "same daemon",
            format!(
                "{} creates at {rate:.0}/s on one daemon; on another: {}; on the same one: {}",
                run.acknowledged.len(),
                other.faults(),
                same.faults()
            ),
        );
    }
    Ok(())
}

/// What one follower lag run saw.
struct LagRun {
    /// Each order created on A and when its acknowledgement arrived.
    acknowledged: Vec<(String, Instant)>,
    /// When each order's OrderPlaced arrived on the follower on B (more than once if repeated),
    /// and how that follower ended, if it did.
    other: Arrivals,
    /// The same on A.
    same: Arrivals,
}

impl LagRun {
    async fn measure(a: &Paths, b: &Paths, duration: Duration) -> anyhow::Result<LagRun> {
        // One order first (a single tick): a follower that has streamed it is known to be
        // following.
        let warm_up = load::paced_creates(a, 1.0, 1, Duration::from_millis(1)).await?;
        let same = Follower::start(a).await?;
        let other = Follower::start(b).await?;
        let deadline = Instant::now() + DRAIN;
        same.wait_for(warm_up.len(), deadline).await;
        other.wait_for(warm_up.len(), deadline).await;
        let acknowledged = load::paced_creates(a, LAG_RATE, LAG_CONNECTIONS, duration).await?;
        let deadline = Instant::now() + DRAIN;
        let all = warm_up.len() + acknowledged.len();
        same.wait_for(all, deadline).await;
        other.wait_for(all, deadline).await;
        Ok(LagRun { acknowledged, other: other.stop().await, same: same.stop().await })
    }

    /// A follower's lag for each order acknowledged, in milliseconds (negative when its event
    /// arrived before the acknowledgement); the orders it never saw and those it saw twice.
    fn lags(&self, arrivals: &Arrivals) -> Lags {
        let mut lags = Lags { ended: arrivals.ended.clone(), ..Lags::default() };
        for (stream, acknowledged) in &self.acknowledged {
            match arrivals.placed.get(stream).map(Vec::as_slice) {
                None | Some([]) => lags.missing += 1,
                Some([first, rest @ ..]) => {
                    lags.ms.push(signed_ms(*first, *acknowledged));
                    lags.repeated += usize::from(!rest.is_empty());
                }
            }
        }
        lags.ms.sort_unstable_by(f64::total_cmp);
        lags
    }
}

/// The OrderPlaced events one follower streamed, by stream, when each arrived.
#[derive(Debug, Default)]
struct Arrivals {
    placed: HashMap<String, Vec<Instant>>,
    /// Why the follower stopped before it was stopped, if it did.
    ended: Option<String>,
}

/// One follower's lags, sorted, and what went wrong.
#[derive(Debug, Default)]
struct Lags {
    ms: Vec<f64>,
    missing: usize,
    repeated: usize,
    ended: Option<String>,
}

impl Lags {
    fn percentile(&self, p: f64) -> f64 {
        if self.ms.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * (self.ms.len() - 1) as f64).round() as usize;
        self.ms[rank.min(self.ms.len() - 1)]
    }

    /// What a reader of the figure must know: orders never seen or seen twice, an early end.
    fn faults(&self) -> String {
        let mut said = if self.missing == 0 && self.repeated == 0 {
            "each order once".to_owned()
        } else {
            format!(
                "{} orders never arrived (within {} s), {} more than once",
                self.missing,
                DRAIN.as_secs(),
                self.repeated
            )
        };
        if let Some(ended) = &self.ended {
            said.push_str(&format!(", the follower ended: {ended}"));
        }
        said
    }
}

/// `events --follow` from the start of the log on one daemon, over its socket, noting when each
/// OrderPlaced arrives.
struct Follower {
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    placed: Arc<Mutex<HashMap<String, Vec<Instant>>>>,
    /// OrderPlaced events streamed so far, for [`Follower::wait_for`].
    count: Arc<AtomicUsize>,
}

impl Follower {
    async fn start(paths: &Paths) -> anyhow::Result<Follower> {
        let mut client = Client::connect(paths).await?;
        client.send(&Request::Events(EventsRequest { from: None, limit: None, follow: true })).await?;
        let placed = Arc::new(Mutex::new(HashMap::<String, Vec<Instant>>::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (placed, count) = (Arc::clone(&placed), Arc::clone(&count));
            async move {
                while let Some(reply) = client.receive().await? {
                    let arrived = Instant::now();
                    let event = match reply {
                        orders_shared::protocol::Reply::Event(event) => event,
                        // The end of the stream: data, or why not.
                        other => {
                            let _: serde_json::Value =
                                client.data(other).map_err(|f| anyhow::anyhow!(f.message))?;
                            anyhow::bail!("the daemon ended the stream");
                        }
                    };
                    if event.event_type == "OrderPlaced" {
                        placed.lock().expect("never poisoned").entry(event.stream).or_default().push(arrived);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
                anyhow::bail!("the daemon closed the connection")
            }
        });
        Ok(Follower { task, placed, count })
    }

    /// Waits until the follower has streamed `placed` orders, it ended, or `deadline` passed.
    async fn wait_for(&self, placed: usize, deadline: Instant) {
        while self.count.load(Ordering::Relaxed) < placed
            && !self.task.is_finished()
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn stop(self) -> Arrivals {
        self.task.abort();
        let ended = match self.task.await {
            Ok(Err(error)) => Some(format!("{error:#}")),
            Ok(Ok(())) | Err(_) => None,
        };
        let placed = std::mem::take(&mut *self.placed.lock().expect("never poisoned"));
        Arrivals { placed, ended }
    }
}

/// `later - earlier` in milliseconds, negative when `later` came first.
fn signed_ms(later: Instant, earlier: Instant) -> f64 {
    match later.checked_duration_since(earlier) {
        Some(after) => crate::ms(after),
        None => -crate::ms(earlier - later),
    }
}

/// `1 daemon`, `2 daemons`.
fn plural(n: usize, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}
