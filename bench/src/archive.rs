//! Export and import (issue 15) on a seeded store: `orders export` to a file while the daemon
//! serves, then `orders-daemon import` of that file (what `orders import` runs) into a new data
//! directory, against the raw ceiling of the same rows inserted by a plain loop.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

use crate::daemon::{self, Daemon};
use crate::raw;
use crate::report::Report;
use crate::seed;

/// Runs `program args` with `env`, stdout into `stdout`, under GNU time when it is there: the
/// wall time and the process's peak memory in KiB (`None` without GNU time).
fn timed(
    program: &Path,
    args: &[&str],
    env: &[(&str, &Path)],
    stdout: Stdio,
) -> anyhow::Result<(Duration, Option<u64>)> {
    let time = Path::new("/usr/bin/time");
    let peak = tempfile::NamedTempFile::new()?;
    let mut command = if time.exists() {
        let mut command = Command::new(time);
        command.args(["-f", "%M", "-o"]).arg(peak.path()).arg(program);
        command
    } else {
        Command::new(program)
    };
    command.args(args).env("ORDERS_NO_AUTOSTART", "1").stdout(stdout).stderr(Stdio::inherit());
    for (key, value) in env {
        command.env(key, value);
    }
    let started = Instant::now();
    let status = command.status().with_context(|| format!("run {}", program.display()))?;
    let took = started.elapsed();
    ensure!(status.success(), "{} {args:?} failed: {status}", program.display());
    let kib = std::fs::read_to_string(peak.path()).ok().and_then(|text| text.trim().parse().ok());
    Ok((took, kib))
}

/// Export and import of a store of about `events` events (delivered orders, 7 events each).
pub async fn export_and_import(report: &mut Report, events: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let orders = (events / 7) as usize;
    let data_dir = dir.path().join("data");
    let seeded = tokio::task::block_in_place(|| seed::delivered_orders(&data_dir, orders, orders / 100))?;
    let database = data_dir.join(orders_daemon::paths::DATABASE_FILE);
    let export = dir.path().join("orders.ndjson");
    let mib = |kib: u64| kib as f64 / 1024.0;

    let daemon = Daemon::start(dir.path(), &[])?;
    let (_, rss_before) = daemon.memory_kib()?;
    let env =
        [("ORDERS_SOCKET", daemon.socket.as_path()), ("ORDERS_DATA_DIR", daemon.paths.data_dir.as_path())];
    let file = std::fs::File::create(&export)?;
    let (took, client_kib) =
        tokio::task::block_in_place(|| timed(&daemon::orders_binary()?, &["export"], &env, file.into()))?;
    let (_, rss_after) = daemon.memory_kib()?;
    daemon.stop()?;
    let bytes = std::fs::metadata(&export)?.len();
    report.add(
        format!("export, {seeded} events"),
        "events/s",
        seeded as f64 / took.as_secs_f64(),
        None,
        format!("`orders export > file`, {:.0} MiB of NDJSON", bytes as f64 / (1 << 20) as f64),
    );
    if let Some(kib) = client_kib {
        report.add(
            format!("export, {seeded} events, client peak memory"),
            "MiB",
            mib(kib),
            None,
            "GNU time's %M",
        );
    }
    report.add(
        format!("export, {seeded} events, daemon memory growth"),
        "MiB",
        mib(rss_after.saturating_sub(rss_before)),
        None,
        format!("VmRSS {:.0} MiB before, {:.0} MiB after", mib(rss_before), mib(rss_after)),
    );

    let ceiling_db = dir.path().join("raw-import.db");
    let (rows, ceiling_took) = tokio::task::block_in_place(|| raw::insert_events(&database, &ceiling_db))?;
    ensure!(rows as i64 == seeded, "the raw loop inserted {rows} of {seeded} events");

    let target = dir.path().join("imported");
    std::fs::create_dir(&target)?;
    std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let socket = dir.path().join("imported.sock");
    let env = [("ORDERS_SOCKET", socket.as_path()), ("ORDERS_DATA_DIR", target.as_path())];
    let binary = daemon::orders_binary()?.with_file_name("orders-daemon");
    let argument = format!("--file={}", export.display());
    let (took, import_kib) =
        tokio::task::block_in_place(|| timed(&binary, &["import", &argument], &env, Stdio::null()))?;
    report.add(
        format!("import, {seeded} events"),
        "events/s",
        seeded as f64 / took.as_secs_f64(),
        Some(rows as f64 / ceiling_took.as_secs_f64()),
        "`orders import`, whole: proof of every line, load, read model, steps, check; raw: the rows \
         inserted in one transaction",
    );
    if let Some(kib) = import_kib {
        report.add(format!("import, {seeded} events, peak memory"), "MiB", mib(kib), None, "GNU time's %M");
    }
    Ok(())
}
