//! Load on a running daemon over its socket, from many connections at once.

use std::path::Path;
use std::time::{Duration, Instant};

use orders::client::Client;
use orders_daemon::paths::Paths;
use orders_shared::protocol::{
    BackupReport, BackupRequest, CreateRequest, ListRequest, MetricsRequest, MetricsText, OrderPage,
    OrderView, Request, WaitRequest,
};
use orders_shared::{OrderStatus, Total};

/// Request latencies, and what they add up to.
#[derive(Debug, Default)]
pub struct Latencies(pub Vec<Duration>);

impl Latencies {
    pub fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        sorted[rank.min(sorted.len() - 1)]
    }

    pub fn max(&self) -> Duration {
        self.0.iter().copied().max().unwrap_or_default()
    }
}

fn create(user: String, total: i64) -> anyhow::Result<Request> {
    Ok(Request::Create(CreateRequest {
        user: user.parse()?,
        total: Total::try_from(total)?,
        idempotency_key: None,
    }))
}

/// `connections` clients, each placing orders one after the other for `duration`. Returns the
/// acknowledged creates, the time they took and every request's latency.
pub async fn creates(
    paths: &Paths,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<(usize, Duration, Latencies)> {
    creates_on(std::slice::from_ref(paths), connections, duration).await
}

/// [`creates`] with the connections spread evenly over several daemons (issue 20): the n-th
/// connection goes to daemon n modulo their number.
pub async fn creates_on(
    daemons: &[Paths],
    connections: usize,
    duration: Duration,
) -> anyhow::Result<(usize, Duration, Latencies)> {
    let mut clients = Vec::with_capacity(connections);
    for n in 0..connections {
        clients.push(Client::connect(&daemons[n % daemons.len()]).await?);
    }
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(n, mut client)| {
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let request = create(format!("load{n}"), 2)?;
                    let sent = Instant::now();
                    let _: OrderView = client.call(&request).await.map_err(|f| anyhow::anyhow!(f.message))?;
                    latencies.push(sent.elapsed());
                }
                Ok::<_, anyhow::Error>(latencies)
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    Ok((all.len(), started.elapsed(), Latencies(all)))
}

/// Orders placed at a steady `rate` a second for `duration` (issue 20: the follower lag's
/// writer), from `connections` clients taking turns, so that one slow create does not hold back
/// the next. Returns each acknowledged order's stream (`order-<id>`) and when its acknowledgement
/// arrived.
pub async fn paced_creates(
    paths: &Paths,
    rate: f64,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Vec<(String, Instant)>> {
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        clients.push(Client::connect(paths).await?);
    }
    let period = Duration::from_secs_f64(connections as f64 / rate);
    let started = tokio::time::Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(n, mut client)| {
            let first = started + period.mul_f64(n as f64 / connections as f64);
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval_at(first, period);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut acknowledged = Vec::new();
                while ticks.tick().await < deadline {
                    let request = create(format!("paced{n}"), 2)?;
                    let order: OrderView =
                        client.call(&request).await.map_err(|f| anyhow::anyhow!(f.message))?;
                    acknowledged.push((format!("order-{}", order.id), Instant::now()));
                }
                Ok::<_, anyhow::Error>(acknowledged)
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    Ok(all)
}

/// One client placing orders one after the other for `duration`, as a script does: totals
/// alternate even and odd, so half the orders are declined and half go on to their delivery.
/// Returns every create's latency.
pub async fn sequential(paths: &Paths, duration: Duration) -> anyhow::Result<Latencies> {
    let mut client = Client::connect(paths).await?;
    let deadline = Instant::now() + duration;
    let mut latencies = Vec::new();
    while Instant::now() < deadline {
        let total = if latencies.len() % 2 == 0 { 2 } else { 3 };
        let request = create("script".to_owned(), total)?;
        let sent = Instant::now();
        let _: OrderView = client.call(&request).await.map_err(|f| anyhow::anyhow!(f.message))?;
        latencies.push(sent.elapsed());
    }
    Ok(Latencies(latencies))
}

/// `connections` clients, each taking one order at a time through its whole life (create, then
/// wait until delivered or cancelled; three in four totals even). Returns the settled orders and
/// the time they took.
pub async fn settled(
    paths: &Paths,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<(usize, Duration)> {
    settled_on(std::slice::from_ref(paths), connections, duration).await
}

/// [`settled`] with the connections spread evenly over several daemons (issue 20); each waits
/// for its order on the daemon it placed it with, whichever daemon takes it through its life.
pub async fn settled_on(
    daemons: &[Paths],
    connections: usize,
    duration: Duration,
) -> anyhow::Result<(usize, Duration)> {
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..connections)
        .map(|n| {
            let paths = daemons[n % daemons.len()].clone();
            tokio::spawn(async move {
                let mut client = Client::connect(&paths).await?;
                let mut settled = 0;
                let mut round = 0;
                while Instant::now() < deadline {
                    round += 1;
                    let total = if round % 4 == 0 { 3 } else { 2 };
                    let order: OrderView = client
                        .call(&create(format!("life{n}"), total)?)
                        .await
                        .map_err(|f| anyhow::anyhow!(f.message))?;
                    let wait = Request::Wait(WaitRequest { id: order.id, timeout_ms: Some(60_000) });
                    let done: OrderView = client.call(&wait).await.map_err(|f| anyhow::anyhow!(f.message))?;
                    anyhow::ensure!(done.status.is_settled(), "not settled: {:?}", done.status);
                    settled += 1;
                }
                Ok::<_, anyhow::Error>(settled)
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok((total, started.elapsed()))
}

/// One connection listing one user's newest orders, `queries` times over `users` users.
pub async fn lists(paths: &Paths, users: usize, queries: usize) -> anyhow::Result<Latencies> {
    let mut client = Client::connect(paths).await?;
    let mut latencies = Vec::with_capacity(queries);
    for n in 0..queries {
        let user = format!("user{:06}", (n * 7919) % users).parse()?;
        let request =
            Request::List(ListRequest { user: Some(user), limit: Some(100), ..ListRequest::default() });
        let sent = Instant::now();
        let page: OrderPage = client.call(&request).await.map_err(|f| anyhow::anyhow!(f.message))?;
        latencies.push(sent.elapsed());
        anyhow::ensure!(!page.orders.is_empty(), "no orders listed");
    }
    Ok(Latencies(latencies))
}

/// `list --status <status>`, a page of 100, newest first, `queries` times.
pub async fn lists_by_status(
    paths: &Paths,
    status: OrderStatus,
    queries: usize,
) -> anyhow::Result<Latencies> {
    let mut client = Client::connect(paths).await?;
    let mut latencies = Vec::with_capacity(queries);
    for _ in 0..queries {
        let request =
            Request::List(ListRequest { status: Some(status), limit: Some(100), ..ListRequest::default() });
        let sent = Instant::now();
        let page: OrderPage = client.call(&request).await.map_err(|f| anyhow::anyhow!(f.message))?;
        latencies.push(sent.elapsed());
        anyhow::ensure!(!page.orders.is_empty(), "no {status} orders listed");
    }
    Ok(Latencies(latencies))
}

/// Runs `orders <args>` `times` times, one after the other; returns each wall time.
pub fn processes(
    orders: &Path,
    env: &[(&str, &Path)],
    args: &[&str],
    times: usize,
) -> anyhow::Result<Latencies> {
    let mut latencies = Vec::with_capacity(times);
    for _ in 0..times {
        let mut command = std::process::Command::new(orders);
        command.args(args).env("ORDERS_NO_AUTOSTART", "1").stdout(std::process::Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        let started = Instant::now();
        let status = command.status()?;
        latencies.push(started.elapsed());
        anyhow::ensure!(status.success(), "orders {args:?} failed: {status}");
    }
    Ok(Latencies(latencies))
}

/// The peak resident memory of `orders <args>` as a process, in KiB: the median of `times` runs
/// under GNU time (`/usr/bin/time -f %M`). `None` where GNU time is missing.
pub fn peak_kib(
    orders: &Path,
    env: &[(&str, &Path)],
    args: &[&str],
    times: usize,
) -> anyhow::Result<Option<u64>> {
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        return Ok(None);
    }
    let out = tempfile::NamedTempFile::new()?;
    let mut peaks = Vec::with_capacity(times);
    for _ in 0..times {
        let mut command = std::process::Command::new(time);
        command.args(["-f", "%M", "-o"]).arg(out.path()).arg(orders).args(args);
        command.env("ORDERS_NO_AUTOSTART", "1").stdout(std::process::Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        let status = command.status()?;
        anyhow::ensure!(status.success(), "orders {args:?} failed: {status}");
        peaks.push(std::fs::read_to_string(out.path())?.trim().parse::<u64>()?);
    }
    peaks.sort_unstable();
    Ok(peaks.get(peaks.len() / 2).copied())
}

/// A backup to `file` while one client places orders one after the other: the backup's report
/// and every create's latency meanwhile (issue 15: commands keep being answered).
pub async fn creates_during_backup(paths: &Paths, file: &Path) -> anyhow::Result<(BackupReport, Latencies)> {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let creating = tokio::spawn({
        let (paths, done) = (paths.clone(), std::sync::Arc::clone(&done));
        async move {
            let mut client = Client::connect(&paths).await?;
            let mut latencies = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let request = create("backup".to_owned(), 2)?;
                let sent = Instant::now();
                let _: OrderView = client.call(&request).await.map_err(|f| anyhow::anyhow!(f.message))?;
                latencies.push(sent.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut client = Client::connect(paths).await?;
    let request = Request::Backup(BackupRequest { path: file.display().to_string() });
    let report = client.call_within(&request, Duration::from_secs(3600)).await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let latencies = creating.await??;
    let report: BackupReport = report.map_err(|f| anyhow::anyhow!(f.message))?;
    Ok((report, Latencies(latencies)))
}

/// What the daemon's writer did, from its metrics (issue 16): batches committed, the commands
/// in them, and the time its store spent committing them.
#[derive(Clone, Copy, Debug, Default)]
pub struct WriterCounts {
    pub batches: f64,
    pub commands: f64,
    pub commit_seconds: f64,
}

impl WriterCounts {
    /// The daemon's counts so far.
    pub async fn read(paths: &Paths) -> anyhow::Result<WriterCounts> {
        let mut client = Client::connect(paths).await?;
        let metrics: MetricsText = client
            .call(&Request::Metrics(MetricsRequest {}))
            .await
            .map_err(|f| anyhow::anyhow!(f.message))?;
        let value = |name: &str| {
            metrics
                .text
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
                .unwrap_or(0.0)
        };
        Ok(WriterCounts {
            batches: value("orders_writer_batch_commands_count"),
            commands: value("orders_writer_batch_commands_sum"),
            commit_seconds: value("orders_store_commit_duration_seconds_sum"),
        })
    }

    /// What happened between `earlier` and these counts: the mean commands per batch and the
    /// mean commit, in milliseconds.
    pub fn since(self, earlier: WriterCounts) -> (f64, f64) {
        let batches = (self.batches - earlier.batches).max(1.0);
        (
            (self.commands - earlier.commands) / batches,
            (self.commit_seconds - earlier.commit_seconds) * 1000.0 / batches,
        )
    }
}

/// The counts of several daemons on one database, as one writer's (issue 20).
impl std::iter::Sum for WriterCounts {
    fn sum<I: Iterator<Item = WriterCounts>>(counts: I) -> WriterCounts {
        counts.fold(WriterCounts::default(), |all, one| WriterCounts {
            batches: all.batches + one.batches,
            commands: all.commands + one.commands,
            commit_seconds: all.commit_seconds + one.commit_seconds,
        })
    }
}
