//! `orders-bench`: measures the orders daemon through its socket, next to the raw SQLite
//! ceiling for the same rows measured in the same run, and reports ratios; on PostgreSQL too
//! (the `postgres` section, issue 19), against a raw PostgreSQL ceiling.
//!
//! Run it with `bench/run` (builds the release binaries first); `--quick` is a smoke run.

mod archive;
mod daemon;
mod load;
mod pages;
mod postgres;
mod raw;
mod report;
mod seed;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use orders::client::Client;
use orders_shared::OrderStatus;
use orders_shared::protocol::{ReplayReport, ReplayRequest, Reply, Request};

use crate::daemon::Daemon;
use crate::load::Latencies;
use crate::report::{Machine, Report, SoakSample};

#[derive(Debug, Parser)]
#[command(
    name = "orders-bench",
    about = "Benchmarks of the orders daemon, as ratios of raw SQLite and PostgreSQL ceilings"
)]
struct Args {
    /// A smoke run: small sizes, short runs
    #[arg(long)]
    quick: bool,

    /// Where to write the results as JSON
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,

    /// Only these sections (comma-separated): creates, sequential, pages, settled, index, postgres,
    /// cluster (several daemons on one PostgreSQL database), replay, list, archive, cli, slow-readers
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,

    /// Also run a soak of this many seconds: high concurrency, memory and descriptors sampled
    #[arg(long, value_name = "SECONDS")]
    soak: Option<u64>,

    /// In the postgres section, print each daemon's statements with their calls and the server's
    /// time (pg_stat_statements), to see where the time goes
    #[arg(long)]
    pg_statements: bool,

    /// A server setting for the postgres section (ALTER SYSTEM, then a restart), to measure a
    /// tuning: `--pg-set max_parallel_workers_per_gather=0`; repeatable
    #[arg(long, value_name = "NAME=VALUE")]
    pg_set: Vec<String>,

    /// The cqrs-es + sqlite-es peer's binary (see `bench/run --peer`), run in the same session
    #[arg(long, value_name = "PATH")]
    peer: Option<PathBuf>,
}

/// The connection counts of the creates figures.
const CONNECTIONS: [usize; 4] = [1, 8, 64, 256];

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut report = Report { machine: Machine::probe(), quick: args.quick, ..Report::default() };
    println!(
        "machine: {} ({} cores), Linux {}, SQLite {}",
        report.machine.cpu, report.machine.cores, report.machine.kernel, report.machine.sqlite
    );
    Report::header();
    let wanted = |section: &str| args.only.is_empty() || args.only.iter().any(|s| s == section);
    let seconds = if args.quick { 0.5 } else { 5.0 };
    let mut settled_ours = None;
    if wanted("creates") {
        runtime.block_on(creates(&mut report, args.quick, Duration::from_secs_f64(seconds)))?;
    }
    if wanted("sequential") {
        runtime.block_on(sequential(&mut report, args.quick, Duration::from_secs_f64(seconds)))?;
    }
    if wanted("pages") {
        wal_frames(&mut report, args.quick)?;
    }
    if wanted("settled") {
        settled_ours =
            Some(runtime.block_on(settled(&mut report, args.quick, Duration::from_secs_f64(seconds)))?);
    }
    if wanted("index") {
        runtime.block_on(status_index_cost(&mut report, Duration::from_secs_f64(seconds)))?;
    }
    let parts = postgres::Parts { one_daemon: wanted("postgres"), cluster: wanted("cluster") };
    if parts.one_daemon || parts.cluster {
        // After creates and settled: it sets its figures beside theirs.
        let duration = Duration::from_secs_f64(seconds);
        let server = postgres::Tuning { statements: args.pg_statements, settings: args.pg_set.clone() };
        runtime.block_on(postgres::section(&mut report, args.quick, duration, &server, parts))?;
    }
    if wanted("replay") {
        let sizes: &[u64] = if args.quick { &[20_000] } else { &[100_000, 1_000_000] };
        for &events in sizes {
            runtime.block_on(replay(events, &mut report))?;
        }
    }
    if wanted("list") {
        runtime.block_on(list_and_memory(&mut report, if args.quick { 20_000 } else { 1_000_000 }))?;
    }
    if wanted("archive") {
        runtime
            .block_on(archive::export_and_import(&mut report, if args.quick { 20_000 } else { 1_000_000 }))?;
    }
    if wanted("slow-readers") {
        let clients = if args.quick { 60 } else { 600 };
        runtime.block_on(slow_readers(&mut report, clients, Duration::from_secs_f64(seconds)))?;
    }
    if wanted("cli") {
        cli(&mut report, if args.quick { 20 } else { 200 })?;
    }
    if let Some(peer) = &args.peer {
        compare_with_peer(&mut report, peer, args.quick, settled_ours)?;
    }
    if let Some(soak_seconds) = args.soak {
        runtime.block_on(soak(&mut report, Duration::from_secs(soak_seconds)))?;
    }
    report.write(&args.out)?;
    println!("results written to {}", args.out.display());
    Ok(())
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Acknowledged creates at 1, 8, 64 and 256 connections, each on a fresh daemon, against the
/// raw loop writing the same rows with the group-commit batch of the same size. The payment
/// saga is held back (a provider latency of an hour), so this is the command path alone; the
/// whole life cycle is the `settled` figure.
async fn creates(report: &mut Report, quick: bool, duration: Duration) -> anyhow::Result<()> {
    for connections in CONNECTIONS {
        let dir = tempfile::tempdir()?;
        let count = if quick { 200 * connections.min(20) } else { (2_000 * connections).min(100_000) };
        let (ids, took) =
            tokio::task::block_in_place(|| raw::creates(&dir.path().join("raw.db"), connections, count))?;
        let ceiling = ids.len() as f64 / took.as_secs_f64();

        let daemon = Daemon::start(dir.path(), &[("ORDERS_PAYMENT_DELAY", "1h")])?;
        let (acknowledged, took, latencies) = load::creates(&daemon.paths, connections, duration).await?;
        daemon.stop()?;
        report.add(
            format!("creates, {connections} connections"),
            "creates/s",
            acknowledged as f64 / took.as_secs_f64(),
            Some(ceiling),
            format!("raw: {connections} creates per transaction"),
        );
        report.add(
            format!("create latency p50, {connections} connections"),
            "ms",
            ms(latencies.percentile(50.0)),
            None,
            "",
        );
        report.add(
            format!("create latency p99, {connections} connections"),
            "ms",
            ms(latencies.percentile(99.0)),
            None,
            "",
        );
        report.add(
            format!("create latency max, {connections} connections"),
            "ms",
            ms(latencies.max()),
            None,
            "",
        );
    }
    Ok(())
}

/// What one script feels (issue 14): one connection placing orders one after the other, with
/// the sagas as in production — totals alternating even and odd, deliveries after the default
/// 3 s landing meanwhile — against a bare SQLite transaction appending one event on the same disk,
/// measured in the same run. Also the `fsync` calls the daemon made per acknowledged create.
async fn sequential(report: &mut Report, quick: bool, duration: Duration) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let commits = if quick { 300 } else { 3_000 };
    let bare = Latencies(tokio::task::block_in_place(|| {
        raw::one_event_commits(&dir.path().join("raw.db"), commits)
    })?);
    let daemon = Daemon::start(dir.path(), &[("ORDERS_DELIVERY_DELAY", "3s")])?;
    let syncs = tokio::task::block_in_place(|| daemon::SyncCounter::attach(daemon.pid(), dir.path()));
    let ours = load::sequential(&daemon.paths, duration.max(Duration::from_secs(4))).await?;
    let syncs = syncs.and_then(daemon::SyncCounter::finish);
    daemon.stop()?;
    for (p, name) in [(50.0, "p50"), (99.0, "p99")] {
        report.add(
            format!("sequential create {name}, 1 connection, sagas on"),
            "ms",
            ms(ours.percentile(p)),
            Some(ms(bare.percentile(p))),
            format!("bare one-event commit {name}; totals 2,3,2,3..., deliveries after 3 s"),
        );
    }
    if let Some(syncs) = syncs {
        report.add(
            "fsync calls per acknowledged create, sequential",
            "fsyncs",
            syncs as f64 / ours.0.len() as f64,
            None,
            format!("{syncs} fsync/fdatasync calls for {} creates (perf stat)", ours.0.len()),
        );
    }
    Ok(())
}

/// The WAL frames (pages) each kind of commit writes, on a store of 100,000 delivered orders,
/// against a transaction appending one event row to the same log.
fn wal_frames(report: &mut Report, quick: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("data");
    let (orders, rounds) = if quick { (2_000, 20) } else { (100_000, 200) };
    seed::delivered_orders(&data_dir, orders, orders / 100)?;
    let frames = pages::frames(&data_dir, rounds)?;
    let note =
        |what: &str| format!("{what}; {orders} orders stored; one event alone {:.1}", frames.one_event);
    for (name, value, what) in [
        ("create", frames.create, "OrderPlaced, PaymentRequested"),
        ("payment decision", frames.payment, "PaymentApproved, OrderApproved, DeliveryScheduled"),
        ("create + the previous payment", frames.create_with_payment, "the two in one commit"),
        ("delivery", frames.delivery, "OrderDelivered, DeliveryCompleted"),
    ] {
        report.add(
            format!("WAL frames per commit: {name}"),
            "pages",
            value,
            Some(frames.one_event),
            note(what),
        );
    }
    Ok(())
}

/// Orders through their whole life (create, payment, delivery with no delay) from 64
/// connections, each waiting for its order to settle, against the raw loop writing every row of
/// those lives, 64 orders per transaction per step. Returns our figure.
async fn settled(report: &mut Report, quick: bool, duration: Duration) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let count = if quick { 2_000 } else { 30_000 };
    let (orders, took) = tokio::task::block_in_place(|| raw::settled(&dir.path().join("raw.db"), 64, count))?;
    let ceiling = orders as f64 / took.as_secs_f64();
    let daemon = Daemon::start(dir.path(), &[])?;
    let (settled, took) = load::settled(&daemon.paths, 64, duration).await?;
    daemon.stop()?;
    let ours = settled as f64 / took.as_secs_f64();
    report.add(
        "settled orders, 64 connections",
        "orders/s",
        ours,
        Some(ceiling),
        "create -> payment -> delivery, delay 0",
    );
    Ok(ours)
}

/// What the status index costs the writer: creates and settled orders at 64 connections, each
/// on a fresh daemon with the index and on one whose index was dropped, in the same run.
async fn status_index_cost(report: &mut Report, duration: Duration) -> anyhow::Result<()> {
    let mut figures = Vec::new();
    // A fresh data directory at the current schema, with or without the index.
    let fresh = |with_index: bool| -> anyhow::Result<tempfile::TempDir> {
        let dir = tempfile::tempdir()?;
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir)?;
        let mut conn =
            orders_daemon::store::sqlite::open_writer(&data_dir.join(orders_daemon::paths::DATABASE_FILE))?;
        orders_daemon::store::sqlite::schema::migrate(&mut conn)?;
        if !with_index {
            conn.execute_batch("DROP INDEX orders_by_status")?;
        }
        Ok(dir)
    };
    for with_index in [false, true, false, true] {
        let dir = fresh(with_index)?;
        let daemon = Daemon::start(dir.path(), &[("ORDERS_PAYMENT_DELAY", "1h")])?;
        let (created, took, _) = load::creates(&daemon.paths, 64, duration).await?;
        daemon.stop()?;
        // Not the same directory: its held-back payments would all resume at once.
        let dir = fresh(with_index)?;
        let daemon = Daemon::start(dir.path(), &[])?;
        let (settled, settled_took) = load::settled(&daemon.paths, 64, duration).await?;
        daemon.stop()?;
        figures.push((
            with_index,
            created as f64 / took.as_secs_f64(),
            settled as f64 / settled_took.as_secs_f64(),
        ));
    }
    // Best of two each: the machine is shared.
    let best = |with: bool, pick: fn(&(bool, f64, f64)) -> f64| {
        figures.iter().filter(|f| f.0 == with).map(pick).fold(0.0, f64::max)
    };
    for (name, unit, pick) in [
        (
            "creates, 64 connections",
            "creates/s",
            (|f: &(bool, f64, f64)| f.1) as fn(&(bool, f64, f64)) -> f64,
        ),
        ("settled orders, 64 connections", "orders/s", |f: &(bool, f64, f64)| f.2),
    ] {
        let (with, without) = (best(true, pick), best(false, pick));
        report.add(
            format!("{name}, with the status index"),
            unit,
            with,
            None,
            format!("without it {without:.0} ({:+.1} %); best of two each", (with / without - 1.0) * 100.0),
        );
    }
    Ok(())
}

/// Replay of a log of about `events` events: the daemon's `replay` against a plain loop
/// rebuilding the same table in the same chunks. Best of two runs each.
async fn replay(events: u64, report: &mut Report) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let orders = (events / 7) as usize; // a delivered order has 7 events
    let data_dir = dir.path().join("data");
    let seeded = tokio::task::block_in_place(|| seed::delivered_orders(&data_dir, orders, orders / 100))?;
    let database = data_dir.join(orders_daemon::paths::DATABASE_FILE);

    let mut ceiling: f64 = 0.0;
    for _ in 0..2 {
        let (applied, took) =
            tokio::task::block_in_place(|| raw::rebuild(&database, orders_daemon::replay::CHUNK))?;
        ceiling = ceiling.max(applied as f64 / took.as_secs_f64());
    }

    let daemon = Daemon::start(dir.path(), &[])?;
    let mut ours: f64 = 0.0;
    for _ in 0..2 {
        let mut client = Client::connect(&daemon.paths).await?;
        let started = Instant::now();
        client.send(&Request::Replay(ReplayRequest { check: false })).await?;
        let done: ReplayReport = loop {
            let reply = client.receive().await?.ok_or_else(|| anyhow::anyhow!("the daemon hung up"))?;
            if !matches!(reply, Reply::Progress(_)) {
                break client.data(reply).map_err(|f| anyhow::anyhow!(f.message))?;
            }
        };
        let took = started.elapsed();
        anyhow::ensure!(done.events as i64 == seeded, "replayed {} of {seeded} events", done.events);
        ours = ours.max(done.events as f64 / took.as_secs_f64());
    }
    let (peak_kib, _) = daemon.memory_kib()?;
    daemon.stop()?;
    report.add(
        format!("replay, {seeded} events"),
        "events/s",
        ours,
        Some(ceiling),
        format!("{orders} delivered orders; chunks of {}", orders_daemon::replay::CHUNK),
    );
    report.add(
        format!("daemon peak RSS, replaying {seeded} events"),
        "MiB",
        peak_kib as f64 / 1024.0,
        None,
        "VmHWM",
    );
    Ok(())
}

/// One user's orders among `orders` (100 orders a user), over the socket and straight from
/// SQLite; then the daemon's memory and descriptors with that many orders, after serving
/// lists and a burst of new orders.
async fn list_and_memory(report: &mut Report, orders: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("data");
    let users = orders / 100;
    let seeding = Instant::now();
    tokio::task::block_in_place(|| seed::delivered_orders(&data_dir, orders, users))?;
    println!("  (seeded {orders} delivered orders in {:.0} s)", seeding.elapsed().as_secs_f64());
    let database = data_dir.join(orders_daemon::paths::DATABASE_FILE);
    let raw = Latencies(tokio::task::block_in_place(|| raw::list_latencies(&database, users, 2_000))?);
    let old_plan = Latencies(tokio::task::block_in_place(|| {
        raw::status_list_latencies(&database, "cancelled", 20, true)
    })?);
    let raw_by_status = Latencies(tokio::task::block_in_place(|| {
        raw::status_list_latencies(&database, "cancelled", 2_000, false)
    })?);

    let daemon = Daemon::start(dir.path(), &[])?;
    let ours = load::lists(&daemon.paths, users, 2_000).await?;
    report.add(
        format!("list one user's 100 orders among {orders}, p50"),
        "ms",
        ms(ours.percentile(50.0)),
        None,
        format!("raw query p50 {:.3} ms", ms(raw.percentile(50.0))),
    );
    report.add(
        format!("list one user's 100 orders among {orders}, p99"),
        "ms",
        ms(ours.percentile(99.0)),
        None,
        format!("raw query p99 {:.3} ms", ms(raw.percentile(99.0))),
    );
    let by_status = load::lists_by_status(&daemon.paths, OrderStatus::Cancelled, 2_000).await?;
    report.add(
        format!(
            "list --status cancelled ({} of {}) among {orders}, p50",
            (orders / seed::CANCELLED_EVERY).min(100),
            orders / seed::CANCELLED_EVERY
        ),
        "ms",
        ms(by_status.percentile(50.0)),
        None,
        format!(
            "p99 {:.3} ms; raw query p50 {:.3} ms, without the status index {:.1} ms",
            ms(by_status.percentile(99.0)),
            ms(raw_by_status.percentile(50.0)),
            ms(old_plan.percentile(50.0))
        ),
    );
    let (backup, during) = load::creates_during_backup(&daemon.paths, &dir.path().join("backup.db")).await?;
    report.add(
        format!("backup of {orders} orders (VACUUM INTO), while creating"),
        "s",
        backup.duration_ms as f64 / 1000.0,
        None,
        format!("{:.1} MB, {} events", backup.bytes as f64 / 1e6, backup.events),
    );
    report.add(
        format!("longest create during the backup of {orders} orders"),
        "ms",
        ms(during.max()),
        None,
        format!(
            "{} creates; p50 {:.3} ms, p99 {:.3} ms",
            during.0.len(),
            ms(during.percentile(50.0)),
            ms(during.percentile(99.0))
        ),
    );
    load::creates(&daemon.paths, 64, Duration::from_secs(3)).await?;
    load::settled(&daemon.paths, 64, Duration::from_secs(3)).await?;
    let (peak_kib, rss_kib) = daemon.memory_kib()?;
    let fds = daemon.open_fds()?;
    daemon.stop()?;
    report.add(
        format!("daemon peak RSS with {orders} orders"),
        "MiB",
        peak_kib as f64 / 1024.0,
        None,
        format!("after lists and 6 s of load at 64 connections; current {:.1} MiB", rss_kib as f64 / 1024.0),
    );
    report.add(
        format!("daemon open fds with {orders} orders"),
        "fds",
        fds as f64,
        None,
        "idle, after the load",
    );
    Ok(())
}

/// `clients` connections that each ask for a page of 10,000 events (about 3 MB) and never read
/// it, while one other client places orders: the daemon's peak memory meanwhile, and that
/// client's create latency beside its latency with no slow readers, on the same daemon.
async fn slow_readers(report: &mut Report, clients: usize, duration: Duration) -> anyhow::Result<()> {
    use std::io::Write as _;
    let dir = tempfile::tempdir()?;
    tokio::task::block_in_place(|| seed::delivered_orders(&dir.path().join("data"), 2_000, 20))?;
    let daemon = Daemon::start(dir.path(), &[("ORDERS_PAYMENT_DELAY", "1h")])?;
    let (_, _, alone) = load::creates(&daemon.paths, 1, duration).await?;
    let (_, before_kib) = daemon.memory_kib()?;
    let store = std::fs::canonicalize(&daemon.paths.data_dir)?;
    let request = serde_json::json!({
        "v": orders_shared::PROTOCOL_VERSION,
        "store": store.display().to_string(),
        "cmd": "events",
        "limit": 10_000,
    });
    let line = format!("{request}\n");
    let mut stuck = Vec::with_capacity(clients);
    for _ in 0..clients {
        let mut stream = std::os::unix::net::UnixStream::connect(&daemon.socket)?;
        stream.write_all(line.as_bytes())?;
        stuck.push(stream);
    }
    let (_, _, beside) = load::creates(&daemon.paths, 1, duration).await?;
    let (peak_kib, _) = daemon.memory_kib()?;
    drop(stuck);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, after_kib) = daemon.memory_kib()?;
    daemon.stop()?;
    let mib = |kib: u64| kib as f64 / 1024.0;
    report.add(
        format!("daemon peak RSS, {clients} clients never reading a 10,000-event page"),
        "MiB",
        mib(peak_kib),
        None,
        format!("{:.1} MiB before them, {:.1} MiB once they left", mib(before_kib), mib(after_kib)),
    );
    for (p, name) in [(50.0, "p50"), (99.0, "p99")] {
        report.add(
            format!("create latency {name}, beside {clients} slow readers"),
            "ms",
            ms(beside.percentile(p)),
            None,
            format!("{:.2} ms with none, same daemon", ms(alone.percentile(p))),
        );
    }
    Ok(())
}

/// `orders create` as a whole process, against `orders --version` (start-up alone), and that
/// against the bare start of a process on this machine (`true`, which does nothing); the peak
/// memory of each (issue 14).
fn cli(report: &mut Report, times: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let daemon = Daemon::start(dir.path(), &[])?;
    let orders = daemon::orders_binary()?;
    let env =
        [("ORDERS_SOCKET", daemon.socket.as_path()), ("ORDERS_DATA_DIR", daemon.paths.data_dir.as_path())];
    let create_args = ["create", "--user", "cli", "--total", "2"];
    let create = load::processes(&orders, &env, &create_args, times)?;
    let version = load::processes(&orders, &env, &["--version"], times)?;
    let bare = load::processes(std::path::Path::new("/bin/true"), &[], &[], times)?;
    let peaks = (
        load::peak_kib(&orders, &env, &create_args, times.min(50))?,
        load::peak_kib(&orders, &env, &["--version"], times.min(50))?,
        load::peak_kib(std::path::Path::new("/bin/true"), &[], &[], times.min(50))?,
    );
    daemon.stop()?;
    report.add(
        "`orders create` as a process, median",
        "ms",
        ms(create.percentile(50.0)),
        None,
        format!("`orders --version` median {:.2} ms", ms(version.percentile(50.0))),
    );
    report.add_vs(
        "`orders --version` as a process, median",
        "ms",
        ms(version.percentile(50.0)),
        ms(bare.percentile(50.0)),
        "true",
        "against `true`: the bare start of a process here",
    );
    let mib = |kib: u64| kib as f64 / 1024.0;
    if let (Some(create), Some(version), Some(bare)) = peaks {
        report.add(
            "`orders create` as a process, peak memory",
            "MiB",
            mib(create),
            None,
            format!(
                "median of GNU time's %M; `orders --version` {:.1} MiB, `true` {:.1} MiB",
                mib(version),
                mib(bare)
            ),
        );
    }
    Ok(())
}

/// Runs the cqrs-es + sqlite-es peer and sets our figures beside its.
fn compare_with_peer(
    report: &mut Report,
    peer: &std::path::Path,
    quick: bool,
    settled_ours: Option<f64>,
) -> anyhow::Result<()> {
    let mut command = std::process::Command::new(peer);
    if quick {
        command.arg("--quick");
    }
    let output = command.stderr(std::process::Stdio::inherit()).output()?;
    anyhow::ensure!(output.status.success(), "the peer failed: {}", output.status);
    let figures: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let ours_by_connections: std::collections::HashMap<usize, f64> = report
        .figures
        .iter()
        .filter(|f| f.name.starts_with("creates, ") && f.unit == "creates/s")
        .filter_map(|f| Some((f.name.split_whitespace().nth(1)?.parse().ok()?, f.ours)))
        .collect();
    for level in figures["creates"].as_array().into_iter().flatten() {
        let (Some(connections), Some(peer)) = (level["connections"].as_u64(), level["per_second"].as_f64())
        else {
            continue;
        };
        if let Some(ours) = ours_by_connections.get(&(connections as usize)) {
            report.add_vs_peer(
                format!("creates vs peer, {connections} connections"),
                "creates/s",
                *ours,
                peer,
                "peer in-process, no socket",
            );
        }
    }
    if let (Some(ours), Some(peer)) = (settled_ours, figures["settled"]["orders_per_second"].as_f64()) {
        report.add_vs_peer(
            "settled orders vs peer, 64 connections",
            "orders/s",
            ours,
            peer,
            "peer in-process, no socket",
        );
    }
    Ok(())
}

/// High concurrency for `duration` on one daemon: 64 connections taking orders through their
/// lives, while memory and descriptors are sampled every 10 s. Growth is the last sample against
/// the one at the end of the first minute (the warm-up).
async fn soak(report: &mut Report, duration: Duration) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let daemon = Daemon::start(dir.path(), &[])?;
    let paths = daemon.paths.clone();
    let load = tokio::spawn(async move { load::settled(&paths, 64, duration).await });
    let started = Instant::now();
    let mut samples = Vec::new();
    let every = Duration::from_secs(10).min(duration);
    // Samples while the load runs (the last one before it ends).
    while started.elapsed() + every < duration {
        tokio::time::sleep(every).await;
        let (_, rss_kib) = daemon.memory_kib()?;
        let sample = SoakSample {
            seconds: started.elapsed().as_secs(),
            rss_kib,
            anon_kib: daemon.anonymous_kib()?,
            fds: daemon.open_fds()?,
            settled: 0,
        };
        println!(
            "  soak {:>4} s: RSS {:>7} KiB (heap {:>7} KiB), {:>3} fds",
            sample.seconds, sample.rss_kib, sample.anon_kib, sample.fds
        );
        samples.push(sample);
    }
    let (settled, took) = load.await??;
    daemon.stop()?;
    if let Some(last) = samples.last_mut() {
        last.settled = settled;
    }
    let warm = samples.iter().find(|s| s.seconds >= 60).or(samples.first());
    if let (Some(warm), Some(last)) = (warm, samples.last()) {
        report.add(
            format!("soak RSS growth after warm-up, {} s", duration.as_secs()),
            "KiB",
            last.rss_kib as f64 - warm.rss_kib as f64,
            None,
            format!(
                "{} -> {} KiB; {settled} orders settled at {:.0}/s",
                warm.rss_kib,
                last.rss_kib,
                settled as f64 / took.as_secs_f64()
            ),
        );
        report.add(
            format!("soak fd growth after warm-up, {} s", duration.as_secs()),
            "fds",
            last.fds as f64 - warm.fds as f64,
            None,
            format!("{} -> {}", warm.fds, last.fds),
        );
    }
    report.soak = samples;
    Ok(())
}
