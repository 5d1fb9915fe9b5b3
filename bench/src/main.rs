//! `orders-bench`: measures the orders daemon through its socket, next to the raw SQLite
//! ceiling for the same rows measured in the same run, and reports ratios.
//!
//! Run it with `bench/run` (builds the release binaries first); `--quick` is a smoke run.

mod daemon;
mod raw;
mod report;
mod seed;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use orders::client::Client;
use orders_shared::protocol::{ReplayReport, ReplayRequest, Request};

use crate::daemon::Daemon;
use crate::report::{Machine, Report};

#[derive(Debug, Parser)]
#[command(
    name = "orders-bench",
    about = "Benchmarks of the orders daemon, as ratios of a raw SQLite ceiling"
)]
struct Args {
    /// A smoke run: small sizes, a few seconds
    #[arg(long)]
    quick: bool,

    /// Where to write the results as JSON
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,

    /// Only these sections (comma-separated): replay
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut report = Report { machine: Machine::probe(), quick: args.quick, figures: Vec::new() };
    println!(
        "machine: {} ({} cores), Linux {}, SQLite {}",
        report.machine.cpu, report.machine.cores, report.machine.kernel, report.machine.sqlite
    );
    Report::header();
    let wanted = |section: &str| args.only.is_empty() || args.only.iter().any(|s| s == section);
    if wanted("replay") {
        let sizes: &[u64] = if args.quick { &[20_000] } else { &[100_000, 1_000_000] };
        for &events in sizes {
            runtime.block_on(replay(events, &mut report))?;
        }
    }
    report.write(&args.out)?;
    println!("results written to {}", args.out.display());
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
        let mut client = Client::connect(&daemon.socket).await?;
        let started = Instant::now();
        client.send(&Request::Replay(ReplayRequest { check: false })).await?;
        let done: ReplayReport = loop {
            let reply = client.receive().await?.ok_or_else(|| anyhow::anyhow!("the daemon hung up"))?;
            if reply.progress.is_none() {
                break orders::client::data(reply).map_err(|f| anyhow::anyhow!(f.message))?;
            }
        };
        let took = started.elapsed();
        anyhow::ensure!(done.events as i64 == seeded, "replayed {} of {seeded} events", done.events);
        ours = ours.max(done.events as f64 / took.as_secs_f64());
    }
    let (peak_kib, _) = daemon.memory_kib()?;
    let fds = daemon.open_fds()?;
    daemon.stop()?;
    report.add(
        format!("replay, {seeded} events"),
        "events/s",
        ours,
        Some(ceiling),
        format!("{orders} delivered orders; chunks of {}", orders_daemon::replay::CHUNK),
    );
    report.add(
        format!("daemon peak RSS after replaying {seeded} events"),
        "MiB",
        peak_kib as f64 / 1024.0,
        None,
        "VmHWM",
    );
    report.add(format!("daemon open fds after replaying {seeded} events"), "fds", fds as f64, None, "");
    Ok(())
}
