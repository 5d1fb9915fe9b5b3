//! The daemon on PostgreSQL (issue 19), as ratios of the raw PostgreSQL ceiling measured in the
//! same run, and beside the SQLite daemon's figures of the same run (the `creates` and `settled`
//! sections, when they ran first).
//!
//! The server is a private, durable cluster on this machine (`testpg` with
//! [`durable`](testpg::Options::durable): fsync and synchronous commit on, as SQLite's
//! `synchronous=FULL` is), reached over its Unix socket; each daemon and each ceiling gets a
//! fresh database. Without PostgreSQL installed the section is skipped, and says so.

mod cluster;
mod raw;

use std::time::Duration;

use orders_daemon::paths::Paths;

use crate::daemon::Daemon;
use crate::load::{self, WriterCounts};
use crate::report::Report;

/// The connections of the throughput figures, and the creates per transaction of the ceilings:
/// the group commit's batch at that concurrency (each connection has one command in flight).
const CONNECTIONS: usize = 64;

/// What the section changes on the server, to see where the time goes or what a tuning gives.
#[derive(Debug, Default)]
pub struct Tuning {
    /// Print what each daemon's (and ceiling's) statements cost the server (pg_stat_statements).
    pub statements: bool,
    /// Server settings, `name=value`, set before anything is measured.
    pub settings: Vec<String>,
}

/// Which parts of the section run: each measures the raw ceilings first.
#[derive(Clone, Copy, Debug)]
pub struct Parts {
    /// One daemon on the database (`--only postgres`).
    pub one_daemon: bool,
    /// Several daemons on one database, the writer lock and the follower lag (`--only cluster`,
    /// issue 20).
    pub cluster: bool,
}

pub async fn section(
    report: &mut Report,
    quick: bool,
    duration: Duration,
    tuning: &Tuning,
    parts: Parts,
) -> anyhow::Result<()> {
    let options = testpg::Options { durable: true };
    let Some(cluster) = tokio::task::block_in_place(|| testpg::own_cluster_with(options)) else {
        println!("  postgres: skipped, no PostgreSQL to run (see the line above)");
        return Ok(());
    };
    let mut settings = tuning.settings.clone();
    if tuning.statements {
        settings.push("shared_preload_libraries=pg_stat_statements".to_owned());
    }
    if !settings.is_empty() {
        tokio::task::block_in_place(|| -> anyhow::Result<()> {
            for setting in &settings {
                let (name, value) = setting
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--pg-set {setting}: NAME=VALUE expected"))?;
                let value = value.replace('\'', "''");
                cluster.sql("postgres", &format!("ALTER SYSTEM SET {name} = '{value}'"));
                println!("  postgres: set {name} = '{value}'");
            }
            cluster.restart();
            if tuning.statements {
                cluster.sql("postgres", "CREATE EXTENSION pg_stat_statements");
            }
            Ok(())
        })?;
    }
    let server = Server { cluster: &cluster, statements: tuning.statements };
    let version = tokio::task::block_in_place(|| cluster.sql("postgres", "SHOW server_version"));
    println!(
        "  postgres: PostgreSQL {version}, a private cluster over its Unix socket: fsync, full_page_writes \
         and synchronous_commit on, shared_buffers 128MB"
    );
    report.machine.postgresql = Some(if tuning.settings.is_empty() {
        version
    } else {
        format!("{version}, with {}", tuning.settings.join(", "))
    });
    let result = measure(report, &server, quick, duration, parts).await;
    tokio::task::block_in_place(|| drop(cluster));
    result
}

/// A figure of the SQLite daemon in this run, and its ratio to the SQLite ceiling.
type SqliteFigure = Option<(f64, Option<f64>)>;

async fn measure(
    report: &mut Report,
    server: &Server<'_>,
    quick: bool,
    duration: Duration,
    parts: Parts,
) -> anyhow::Result<()> {
    let figure = |name: String| report.figures.iter().find(|f| f.name == name).map(|f| (f.ours, f.ratio));
    let sqlite_creates = figure(format!("creates, {CONNECTIONS} connections"));
    let sqlite_settled = figure(format!("settled orders, {CONNECTIONS} connections"));
    // (The creates section names its one connection "1 connections".)
    let sqlite_p50 = figure("create latency p50, 1 connections".to_owned());

    // The ceilings, each on a fresh database with the daemon's schema.
    let count = if quick { 4_000 } else { 100_000 };
    let (created, took) = server.off_runtime(|url| raw::creates(url, CONNECTIONS, count))?;
    let create_ceiling = created.len() as f64 / took.as_secs_f64();
    let count = if quick { 2_000 } else { 30_000 };
    let (orders, took) = server.off_runtime(|url| raw::settled(url, CONNECTIONS, count))?;
    let settled_ceiling = orders as f64 / took.as_secs_f64();
    report.add(
        format!("PostgreSQL raw ceiling, {CONNECTIONS} creates a transaction"),
        "rows/s",
        create_ceiling * 4.0,
        None,
        format!(
            "{create_ceiling:.0} creates/s: 2 events, an orders row and a payment request each, \
             the checkpoint each transaction"
        ),
    );
    if parts.one_daemon {
        creates(report, server, duration, create_ceiling, sqlite_creates).await?;
        settled(report, server, duration, settled_ceiling, sqlite_settled).await?;
        one_client(report, server, duration, sqlite_p50).await?;
    }
    if parts.cluster {
        let ceilings = cluster::Ceilings { creates: create_ceiling, settled: settled_ceiling };
        cluster::measure(report, server, quick, duration, ceilings).await?;
    }
    Ok(())
}

/// Creates at 64 connections with the payment saga held back, as in the `creates` section.
async fn creates(
    report: &mut Report,
    server: &Server<'_>,
    duration: Duration,
    ceiling: f64,
    sqlite: SqliteFigure,
) -> anyhow::Result<()> {
    let ((creates, took, latencies), writer) = server
        .on_daemon(&[("ORDERS_PAYMENT_DELAY", "1h")], |paths| async move {
            load::creates(&paths, CONNECTIONS, duration).await
        })
        .await?;
    let ours = creates as f64 / took.as_secs_f64();
    report.add_vs(
        format!("creates on PostgreSQL, {CONNECTIONS} connections"),
        "creates/s",
        ours,
        ceiling,
        "raw pg",
        format!(
            "p50 {:.2} ms, p99 {:.2} ms; {:.1} commands a commit, commit {:.2} ms{}",
            crate::ms(latencies.percentile(50.0)),
            crate::ms(latencies.percentile(99.0)),
            writer.0,
            writer.1,
            beside(sqlite)
        ),
    );
    if let Some((figure, _)) = sqlite {
        let name = format!("creates, PostgreSQL vs SQLite, {CONNECTIONS} conn.");
        report.add_vs(name, "creates/s", ours, figure, "sqlite", "both daemons, this run");
    }
    Ok(())
}

/// Orders through their whole life at 64 connections, as in the `settled` section.
async fn settled(
    report: &mut Report,
    server: &Server<'_>,
    duration: Duration,
    ceiling: f64,
    sqlite: SqliteFigure,
) -> anyhow::Result<()> {
    let ((settled, took), writer) = server
        .on_daemon(&[], |paths| async move { load::settled(&paths, CONNECTIONS, duration).await })
        .await?;
    let ours = settled as f64 / took.as_secs_f64();
    report.add_vs(
        format!("settled orders on PostgreSQL, {CONNECTIONS} connections"),
        "orders/s",
        ours,
        ceiling,
        "raw pg",
        format!(
            "create -> payment -> delivery, delay 0; {:.1} commands a commit, commit {:.2} ms{}",
            writer.0,
            writer.1,
            beside(sqlite)
        ),
    );
    if let Some((figure, _)) = sqlite {
        let name = format!("settled, PostgreSQL vs SQLite, {CONNECTIONS} conn.");
        report.add_vs(name, "orders/s", ours, figure, "sqlite", "both daemons, this run");
    }
    Ok(())
}

/// What one client feels: its creates' p50, beside the SQLite daemon's.
async fn one_client(
    report: &mut Report,
    server: &Server<'_>,
    duration: Duration,
    sqlite: SqliteFigure,
) -> anyhow::Result<()> {
    let ((creates, took, latencies), writer) = server
        .on_daemon(&[("ORDERS_PAYMENT_DELAY", "1h")], |paths| async move {
            load::creates(&paths, 1, duration).await
        })
        .await?;
    let p50 = crate::ms(latencies.percentile(50.0));
    let note = format!(
        "p99 {:.2} ms, {:.0} creates/s; commit {:.2} ms",
        crate::ms(latencies.percentile(99.0)),
        creates as f64 / took.as_secs_f64(),
        writer.1
    );
    let name = "create latency p50 on PostgreSQL, 1 connection";
    match sqlite {
        Some((figure, _)) => report.add_vs(name, "ms", p50, figure, "sqlite", note),
        None => report.add(name, "ms", p50, None, note),
    }
    Ok(())
}

/// The SQLite daemon's figure for a note, when its section ran.
fn beside(sqlite: SqliteFigure) -> String {
    match sqlite {
        Some((figure, ratio)) => {
            format!("; SQLite daemon {figure:.0}/s ({:.2} of its raw)", ratio.unwrap_or_default())
        }
        None => String::new(),
    }
}

/// The writer counts of several daemons on one database, summed.
async fn writer_counts(daemons: &[Paths]) -> anyhow::Result<WriterCounts> {
    let mut counts = Vec::with_capacity(daemons.len());
    for paths in daemons {
        counts.push(WriterCounts::read(paths).await?);
    }
    Ok(counts.into_iter().sum())
}

/// The durable cluster, and whether to print each daemon's statements.
struct Server<'a> {
    cluster: &'a testpg::Cluster,
    statements: bool,
}

impl Server<'_> {
    /// Runs `work` on a fresh database with the daemon's schema, on a thread of its own: the
    /// synchronous client runs a runtime of its own, which must not be inside the benchmark's.
    fn off_runtime<T: Send>(&self, work: impl FnOnce(&str) -> anyhow::Result<T> + Send) -> anyhow::Result<T> {
        tokio::task::block_in_place(|| {
            let database = self.cluster.fresh_database();
            let result = std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        raw::migrate(&database.url)?;
                        if self.statements {
                            self.cluster.sql("postgres", "SELECT pg_stat_statements_reset()");
                        }
                        work(&database.url)
                    })
                    .join()
                    .map_err(|_| anyhow::anyhow!("the raw PostgreSQL loop panicked"))?
            });
            if self.statements {
                self.print_statements(&database.name);
            }
            result
        })
    }

    /// Starts a daemon on a fresh database (`ORDERS_STORE`) with `env`, runs `load` on it and
    /// stops it. Returns what `load` returned and the writer's mean batch (commands) and commit
    /// (ms) meanwhile.
    async fn on_daemon<T, F>(
        &self,
        env: &[(&str, &str)],
        load: impl FnOnce(Paths) -> F,
    ) -> anyhow::Result<(T, (f64, f64))>
    where
        F: Future<Output = anyhow::Result<T>>,
    {
        self.on_daemons(1, env, |mut daemons| load(daemons.remove(0))).await
    }

    /// [`on_daemon`](Server::on_daemon) with `count` daemons on the one fresh database, each with
    /// a data directory and socket of its own (issue 20): `load` gets their paths, and the mean
    /// batch and commit are over all their writers' commits.
    async fn on_daemons<T, F>(
        &self,
        count: usize,
        env: &[(&str, &str)],
        load: impl FnOnce(Vec<Paths>) -> F,
    ) -> anyhow::Result<(T, (f64, f64))>
    where
        F: Future<Output = anyhow::Result<T>>,
    {
        let database = tokio::task::block_in_place(|| self.cluster.fresh_database());
        let mut env = env.to_vec();
        env.push(("ORDERS_STORE", database.url.as_str()));
        let dirs = (0..count).map(|_| tempfile::tempdir()).collect::<Result<Vec<_>, _>>()?;
        // Started and stopped all at once: each takes a second or so either way.
        let daemons = tokio::task::block_in_place(|| {
            std::thread::scope(|scope| {
                let starting: Vec<_> =
                    dirs.iter().map(|dir| scope.spawn(|| Daemon::start(dir.path(), &env))).collect();
                starting
                    .into_iter()
                    .map(|daemon| daemon.join().map_err(|_| anyhow::anyhow!("starting a daemon panicked"))?)
                    .collect::<anyhow::Result<Vec<_>>>()
            })
        })?;
        let paths: Vec<Paths> = daemons.iter().map(|daemon| daemon.paths.clone()).collect();
        let before = writer_counts(&paths).await?;
        if self.statements {
            tokio::task::block_in_place(|| self.cluster.sql("postgres", "SELECT pg_stat_statements_reset()"));
        }
        let result = load(paths.clone()).await?;
        let writer = writer_counts(&paths).await?.since(before);
        if self.statements {
            tokio::task::block_in_place(|| self.print_statements(&database.name));
        }
        tokio::task::block_in_place(|| {
            std::thread::scope(|scope| {
                let stopping: Vec<_> =
                    daemons.into_iter().map(|daemon| scope.spawn(|| daemon.stop())).collect();
                stopping.into_iter().try_for_each(|daemon| {
                    daemon.join().map_err(|_| anyhow::anyhow!("stopping a daemon panicked"))?
                })
            })
        })?;
        tokio::task::block_in_place(|| drop((database, dirs)));
        Ok((result, writer))
    }

    /// The statements run in `database` since the last reset, the costliest first: calls, the
    /// server's time in all and per call (execution only: not the round trip, nor the wait for
    /// the client), rows, and the statement.
    fn print_statements(&self, database: &str) {
        let rows = self.cluster.sql(
            "postgres",
            &format!(
                "SELECT calls, round(total_exec_time::numeric, 1), round((total_exec_time / calls)::numeric, 3), \
                 rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 110) FROM pg_stat_statements \
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '{database}') \
                 ORDER BY total_exec_time DESC LIMIT 15"
            ),
        );
        println!("    {:>8} {:>10} {:>9} {:>9}  statement", "calls", "total ms", "ms/call", "rows");
        for row in rows.lines() {
            let fields: Vec<&str> = row.splitn(5, '|').collect();
            if let [calls, total, mean, count, query] = fields[..] {
                println!("    {calls:>8} {total:>10} {mean:>9} {count:>9}  {query}");
            }
        }
    }
}
