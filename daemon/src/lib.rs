//! The orders daemon as a library: `run` serves one data directory until told to stop.
//!
//! - [`store`]: the storage seam, and its backends: [`store::sqlite`] (the default), memory
//!   (tests);
//! - `identity`: a store knows itself, and the daemon notices one that vanished or went back;
//! - [`clock`]: recorded times that never go backwards;
//! - [`command`]: the writer's commands and how their failures reach clients; `unit_of_work`:
//!   one command inside the writer's transaction; `handlers`: deciding with the domain of
//!   `orders-shared`;
//! - `policies`: how the order, payment and delivery contexts react to each other's events;
//! - `steps`: the sagas' open steps; `sagas`: the payment and delivery steps that wait for a
//!   provider or a due time;
//! - [`writer`]: the thread that owns the store and group-commits commands;
//! - [`replay`]: rebuilding the read model from the log, online;
//! - `check`: the invariant checker over the whole log;
//! - `server`: the Unix socket server, its router, queries and streams (`events` pages and
//!   follows among them); `connection`: one client's connection, with what it may hold bounded;
//!   `readers`: the bounded reads; `upkeep`: the store's background work;
//! - [`paths`], [`lock`], [`logging`]: where things live, one daemon per data directory, logs;
//! - [`files`]: the daemon's own files, owner-only and never opened through a symlink;
//! - [`settings`]: the bounds of the daemon's durations;
//! - [`metrics`]: what the daemon counts, in Prometheus' text format (`server::metrics` scrapes,
//!   `server::http` serves it over HTTP); [`service`]: systemd's passed socket and readiness;
//! - `startup`: what the daemon does between binding its socket and serving, and its progress.
//!
//! The `orders-daemon` binary (what `orders daemon run` execs) calls [`run`]; tests can call it directly.

mod backup;
mod check;
pub mod clock;
mod cluster;
pub mod command;
mod connection;
pub mod files;
mod handlers;
mod identity;
pub mod import;
pub mod lock;
pub mod logging;
pub mod metrics;
pub mod paths;
mod policies;
mod readers;
pub mod replay;
pub mod restore;
mod sagas;
mod server;
pub mod service;
pub mod settings;
mod settlements;
mod startup;
mod steps;
pub mod store;
mod unit_of_work;
mod upkeep;
pub mod writer;

#[cfg(test)]
mod testing;

use std::future::Future;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use interprocess::local_socket::tokio::Listener;
use interprocess::local_socket::tokio::prelude::*;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use interprocess::os::unix::local_socket::ListenerOptionsExt;
use jiff::{SignedDuration, Timestamp};
use orders_shared::payment::{EvenOddProvider, PaymentProvider};
use tokio_util::task::TaskTracker;

use crate::clock::{Clock, RecordedTimes};
use crate::command::Policy;
use crate::lock::DataDirLock;
use crate::paths::Paths;
use crate::readers::Readers;
pub use crate::server::Limits;
use crate::server::Reach;
use crate::server::{Context, Serving};
use crate::settlements::Settlements;
use crate::steps::{DeliveryDue, PaymentDue};
use crate::writer::{Announcements, Writer};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// How a daemon is set up.
#[derive(Debug)]
pub struct Config {
    pub paths: Paths,
    pub limits: Limits,
    /// Where the daemon logs (reported by `status`; logging itself is set up by the caller).
    pub log_file: std::path::PathBuf,
    /// From approval to delivery.
    pub delivery_delay: Duration,
    /// How long the payment provider takes to decide (simulated; 0 for the even/odd rule).
    pub payment_latency: Duration,
    /// Decides payments.
    pub payment_provider: Arc<dyn PaymentProvider>,
    /// A pause before each chunk of the start-up's catch-up, for tests only (which must see a
    /// catch-up in progress); zero otherwise. `orders daemon run` takes it from
    /// `ORDERS_TEST_CATCH_UP_PAUSE_MS`.
    pub catch_up_pause: Duration,
    /// A pause before each chunk of a replay, for tests only (which must see a replay in
    /// progress, its progress bar on a terminal); zero otherwise. `orders daemon run` takes it
    /// from `ORDERS_TEST_REPLAY_PAUSE_MS`.
    pub replay_pause: Duration,
    /// Serve a store that vanished, was replaced or went backwards, under a new identity
    /// (`--accept-store-change`; issue 12).
    pub accept_store_change: bool,
    /// Where recorded times come from: the machine's clock (tests move it).
    pub clock: Clock,
    /// Where to serve the metrics over HTTP (`--metrics-listen`); off when `None` (issue 16).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The original service's HTTP endpoints (`--http`); off when `None` (issue 17).
    pub http: Option<HttpConfig>,
    /// The listening socket the service manager passed ([`service::passed_socket`]): served
    /// instead of binding one, and never removed.
    pub passed_socket: Option<std::os::unix::net::UnixListener>,
    /// The PostgreSQL database to serve (`--store`, issue 19); `None`: the data directory's
    /// SQLite file, the default.
    pub store: Option<store::postgres::Target>,
}

impl Config {
    pub const DEFAULT_DELIVERY_DELAY: Duration = Duration::from_secs(3);

    pub fn new(paths: Paths) -> Config {
        Config {
            paths,
            limits: Limits {
                max_connections: 1024,
                idle_timeout: Duration::from_secs(30),
                drain_timeout: connection::DEFAULT_DRAIN_TIMEOUT,
            },
            log_file: std::path::PathBuf::new(),
            delivery_delay: Self::DEFAULT_DELIVERY_DELAY,
            payment_latency: Duration::ZERO,
            payment_provider: Arc::new(EvenOddProvider),
            catch_up_pause: Duration::ZERO,
            replay_pause: Duration::ZERO,
            accept_store_change: false,
            clock: Clock::system(),
            metrics_listen: None,
            http: None,
            passed_socket: None,
            store: None,
        }
    }

    /// Refuses durations past their [`settings`] bounds, as the command line does: a delay too
    /// long would be stored in every delivery's due time (issue 11).
    pub fn check(&self) -> anyhow::Result<()> {
        settings::DELIVERY_DELAY.check(self.delivery_delay).map_err(anyhow::Error::msg)?;
        settings::PAYMENT_DELAY.check(self.payment_latency).map_err(anyhow::Error::msg)?;
        settings::IDLE_TIMEOUT.check(self.limits.idle_timeout).map_err(anyhow::Error::msg)?;
        settings::DRAIN_TIMEOUT.check(self.limits.drain_timeout).map_err(anyhow::Error::msg)?;
        if let Some(http) = &self.http {
            http.check()?;
        }
        Ok(())
    }
}

/// The original service's HTTP endpoints (issue 17): where, and who may use them.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    pub address: std::net::SocketAddr,
    /// The bearer token's file (`--http-token-file`): owner-only, read at start.
    pub token_file: Option<std::path::PathBuf>,
    /// No token, on a loopback address only (`--http-insecure-local`).
    pub insecure_local: bool,
}

impl HttpConfig {
    /// The shortest token taken: a guessable one would open the door to any local user.
    pub const MIN_TOKEN: usize = 16;
    /// The longest (the file is read up to 4 KiB: a longer one would be cut).
    pub const MAX_TOKEN: usize = 1024;

    /// A token, or a loopback address with `--http-insecure-local`: anything else is refused.
    pub fn check(&self) -> anyhow::Result<()> {
        let loopback = self.address.ip().is_loopback();
        if self.token_file.is_none() && !self.insecure_local {
            anyhow::bail!(
                "the HTTP endpoints on {} need a bearer token: --http-token-file FILE (ORDERS_HTTP_TOKEN_FILE), \
                 a file only you can read{}",
                self.address,
                if loopback { "; or, on this loopback address, --http-insecure-local" } else { "" }
            );
        }
        if self.token_file.is_none() && !loopback {
            anyhow::bail!(
                "--http-insecure-local is for a loopback address only: {} can be reached from other machines; \
                 give a token (--http-token-file FILE)",
                self.address
            );
        }
        Ok(())
    }

    /// The token, read from its file: a regular file of the user's that nobody else may read,
    /// never through a symlink, holding one line of at least [`Self::MIN_TOKEN`] characters.
    fn token(&self) -> anyhow::Result<Option<String>> {
        use std::os::unix::fs::MetadataExt;
        let Some(path) = &self.token_file else { return Ok(None) };
        let cannot =
            |why: String| anyhow::anyhow!("cannot use the HTTP token file {}: {why}", path.display());
        let (text, meta) = match files::read_private_with_meta(path) {
            Ok(Some(read)) => read,
            Ok(None) => return Err(cannot("it does not exist".into())),
            Err(files::FileError::Symlink { .. }) => {
                return Err(cannot("it is a symbolic link; give the file itself".into()));
            }
            Err(error) => return Err(cannot(error.to_string())),
        };
        let uid = rustix::process::geteuid().as_raw();
        if meta.uid() != uid {
            return Err(cannot(format!("it belongs to uid {}, not to you", meta.uid())));
        }
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(cannot(format!(
                "its mode is {mode:04o}: others may read it; chmod 600 {}",
                path.display()
            )));
        }
        let token = text.trim();
        // Visible ASCII only: an HTTP header carries nothing else, so another token could never match.
        let visible = token.bytes().all(|byte| byte.is_ascii_graphic());
        if !(Self::MIN_TOKEN..=Self::MAX_TOKEN).contains(&token.len()) || !visible {
            return Err(cannot(format!(
                "it must hold one token of {} to {} visible ASCII characters, without spaces (such as the \
                 output of `openssl rand -hex 32`)",
                Self::MIN_TOKEN,
                Self::MAX_TOKEN
            )));
        }
        Ok(Some(token.to_owned()))
    }
}

/// Serves until `shutdown` resolves or a client asks it to stop, then finishes the requests in
/// flight, closes the database and removes the socket.
///
/// The socket is bound before the store is opened: while the daemon starts (a long catch-up of
/// the read model) it answers `status` with its progress, `shutdown` by stopping, and everything
/// else with `starting` (issue 12). A start-up that fails removes the socket and returns the error.
pub async fn run(mut config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    config.check()?;
    let paths = config.paths.clone();
    paths.ensure_data_dir()?;
    let lock = DataDirLock::acquire(&paths)?;
    let limits = affordable_limits(config.limits.clone());
    let token = config.http.as_ref().map(HttpConfig::token).transpose()?.flatten();
    let (metrics_listener, api_listener) = bind_http(&config)?;
    let passed = config.passed_socket.take();
    let socket_activated = passed.is_some();
    let listener = match passed {
        Some(passed) => adopt(passed, &paths)?,
        None => bind(&paths).await?,
    };
    let store = paths::ServedStore::new(&paths)?;
    // The metrics are on their own listener, or on the endpoints' when both share an address.
    let metrics_at =
        metrics_listener.as_ref().or(api_listener.as_ref().filter(|_| config.metrics_listen.is_some()));
    let reach = Reach {
        metrics_url: metrics_at.and_then(|listener| server::http::url(listener, "/metrics")),
        http_url: api_listener.as_ref().and_then(|listener| server::http::url(listener, "/")),
        socket_activated,
        database: config.store.as_ref().map(store::postgres::Target::describe),
    };
    if let Some(url) = &reach.metrics_url {
        tracing::info!(%url, "serving metrics over HTTP");
    }
    let serving = Arc::new(Serving::new(paths, store, config.log_file.clone(), reach));

    let stop = serving.shutdown.clone();
    let on_server = config.store.is_some();
    let stop_on_signal = async move {
        tokio::select! {
            () = shutdown => stop.cancel(),
            () = stop.cancelled() => {}
        }
        if on_server {
            stop_by(SERVER_STOP);
        }
    };
    let starting = async {
        let started = start(&config, &serving, &limits, &lock).await;
        if !matches!(started, Ok(Some(_))) {
            // Failed or stopped: the server stops too, and its socket goes with it.
            serving.shutdown.cancel();
        }
        started
    };
    let http = serve_http(&serving, metrics_listener, api_listener, &config, token);
    let ((), started, (), (), ()) = tokio::join!(
        server::serve(listener, Arc::clone(&serving), limits.clone()),
        starting,
        stop_on_signal,
        http,
        keep_the_manager_told(&serving)
    );
    let stopped = match started {
        Ok(Some(running)) => running.stop(serving).await,
        Ok(None) => {
            tracing::info!("daemon stopped during its start-up");
            Ok(())
        }
        Err(error) => Err(error),
    };
    service::flush();
    stopped
}

/// Binds the HTTP listeners: the metrics' (`--metrics-listen`) and the endpoints' (`--http`), or
/// one for both when they name the same address (then the second is `None`, the first the
/// endpoints').
fn bind_http(
    config: &Config,
) -> anyhow::Result<(Option<tokio::net::TcpListener>, Option<tokio::net::TcpListener>)> {
    use server::http::bind;
    let api = config.http.as_ref().map(|http| http.address);
    Ok(match (config.metrics_listen, api) {
        (Some(metrics), Some(api)) if metrics == api => {
            (None, Some(bind(api, "the metrics and the HTTP endpoints (--metrics-listen, --http)")?))
        }
        (metrics, api) => (
            metrics.map(|address| bind(address, "the metrics (--metrics-listen)")).transpose()?,
            api.map(|address| bind(address, "the HTTP endpoints (--http)")).transpose()?,
        ),
    })
}

/// Serves the HTTP listeners until the daemon stops.
async fn serve_http(
    serving: &Arc<Serving>,
    metrics: Option<tokio::net::TcpListener>,
    api: Option<tokio::net::TcpListener>,
    config: &Config,
    token: Option<String>,
) {
    let metrics_router = || server::http::metrics_router(Arc::clone(serving));
    let metrics =
        metrics.map(|listener| server::http::serve(listener, metrics_router(), Arc::clone(serving)));
    let api = api.zip(config.http.as_ref()).map(|(listener, http)| {
        if token.is_none() {
            tracing::warn!(address = %http.address, "the HTTP endpoints take requests without a token (--http-insecure-local)");
        }
        // The port bound, not the one asked for (0 takes a free one): `Host` names it.
        let address = listener.local_addr().unwrap_or(http.address);
        let door = Arc::new(server::api::Api { serving: Arc::clone(serving), token, address });
        let mut router = server::api::router(door);
        if config.metrics_listen == Some(http.address) {
            router = router.merge(metrics_router());
        }
        tracing::info!(%address, "serving the HTTP endpoints");
        server::http::serve(listener, router, Arc::clone(serving))
    });
    tokio::join!(
        async {
            if let Some(metrics) = metrics {
                metrics.await;
            }
        },
        async {
            if let Some(api) = api {
                api.await;
            }
        }
    );
}

/// Under a service manager that listens (`NOTIFY_SOCKET`): while the start-up runs, more time
/// every two seconds (a long catch-up must not look like a hung start), with its progress; at
/// the stop, `STOPPING=1`. `READY=1` goes as the daemon becomes ready ([`become_ready`]).
async fn keep_the_manager_told(serving: &Serving) {
    if !service::is_notified() {
        return;
    }
    // Each message gives 30 s more; one goes every 2 s, from the start.
    const EVERY: Duration = Duration::from_secs(2);
    let mut ticks = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            () = serving.shutdown.cancelled() => break,
            _ = ticks.tick(), if !serving.is_ready() => {
                service::starting(EVERY * 15, &format!("starting: {}", serving.startup.progress()));
            }
        }
    }
    service::stopping();
}

/// The limits asked for, within what the file descriptor limit affords.
fn affordable_limits(mut limits: Limits) -> Limits {
    let descriptors = raise_fd_limit();
    // Each connection holds a descriptor; keep some for the database, the log and the runtime.
    let affordable = usize::try_from(descriptors.saturating_sub(64)).unwrap_or(usize::MAX).max(1);
    if limits.max_connections > affordable {
        tracing::warn!(
            asked = limits.max_connections,
            allowed = affordable,
            descriptors,
            "fewer connections than asked: the file descriptor limit is too low"
        );
        limits.max_connections = affordable;
    }
    limits
}

/// How long a daemon on a database server may take to stop: its commands, sagas and writer wait
/// for the database, and a frozen one never answers (issue 20). Past it the process exits; what
/// was not answered was not acknowledged.
const SERVER_STOP: Duration = Duration::from_secs(15);

/// Exits the process if it has not ended `within` from now.
fn stop_by(within: Duration) {
    let watchdog = std::thread::Builder::new().name("orders-stop".to_owned()).spawn(move || {
        std::thread::sleep(within);
        tracing::error!(
            "the daemon did not stop within {within:?}: the database does not answer; exiting with what was in \
             flight unanswered (nothing unanswered was acknowledged)"
        );
        std::process::exit(1);
    });
    if let Err(error) = watchdog {
        tracing::warn!(%error, "no watchdog for the stop");
    }
}

/// How long a stopping daemon waits for its cluster thread (issue 20).
const CLUSTER_STOP: Duration = Duration::from_secs(3);
/// How long a stopping daemon on a database server waits for its writer: a batch commits in
/// milliseconds, but a frozen server never answers (SQLite's writer is always waited for: it
/// checkpoints the WAL as it closes).
const SERVER_WRITER_STOP: Duration = Duration::from_secs(10);

/// The parts of a ready daemon that must be stopped in order.
struct Running {
    workers: TaskTracker,
    writer_thread: std::thread::JoinHandle<()>,
    /// How long to wait for the writer thread; `None`: until it ends.
    writer_stop: Option<Duration>,
    /// Following the other daemons on a shared database (issue 20).
    cluster_thread: Option<std::thread::JoinHandle<()>>,
}

/// Waits for a thread to end, at most `limit`; a thread that outlives it is left to end with the
/// process (it waits for a database that does not answer).
async fn join(
    thread: std::thread::JoinHandle<()>,
    limit: Option<Duration>,
    what: &str,
) -> anyhow::Result<()> {
    let joined = tokio::task::spawn_blocking(move || thread.join());
    let joined = match limit {
        Some(limit) => match tokio::time::timeout(limit, joined).await {
            Ok(joined) => joined,
            Err(_) => {
                tracing::warn!(
                    "the database did not answer the {what} thread for {limit:?}; stopping without it"
                );
                return Ok(());
            }
        },
        None => joined.await,
    };
    joined?.map_err(|_| anyhow::anyhow!("the {what} thread panicked"))
}

impl Running {
    /// Once every handler has finished: the workers stop on the shutdown token, the last writer
    /// handle goes with the context, then the writer thread ends.
    async fn stop(self, serving: Arc<Serving>) -> anyhow::Result<()> {
        self.workers.wait().await;
        // The read connections go first, so that the writer's is the last to close: SQLite then
        // checkpoints the WAL into the database and removes it.
        serving.close_readers();
        drop(serving);
        join(self.writer_thread, self.writer_stop, "writer").await?;
        if let Some(cluster_thread) = self.cluster_thread {
            // It ends within a tenth of a second — unless the database froze under one of its
            // queries: then the daemon stops without it (its row ages out of the list).
            join(cluster_thread, Some(CLUSTER_STOP), "cluster").await?;
        }
        tracing::info!("daemon stopped");
        Ok(())
    }
}

/// Opens and catches up the store on a blocking thread, then starts the writer and the workers
/// and makes the server ready. `None` when stopped first.
async fn start(
    config: &Config,
    serving: &Arc<Serving>,
    limits: &Limits,
    lock: &DataDirLock,
) -> anyhow::Result<Option<Running>> {
    let database = config.paths.database();
    let (progress, stop, pause) = (Arc::clone(serving), serving.shutdown.clone(), config.catch_up_pause);
    let postgres = config.store.clone();
    let latency = config.payment_latency;
    let member = match &postgres {
        Some(_) => Some(cluster::member_id(&config.paths.data_dir)?),
        None => None,
    };
    let data_dir = config.paths.data_dir.clone();
    let name = match &postgres {
        Some(target) => target.describe(),
        None => database.display().to_string(),
    };
    let open = move || -> Result<Box<dyn store::Store>, store::StoreError> {
        Ok(match &postgres {
            Some(target) => {
                let store = store::postgres::PgStore::open(target)?.with_payment_latency(latency);
                Box::new(match member {
                    Some(id) => store.as_member(id, &data_dir),
                    None => store,
                })
            }
            None => Box::new(store::sqlite::SqliteStore::open(&database)?),
        })
    };
    let known = startup::Known {
        id_file: config.paths.data_dir.join(identity::FILE_NAME),
        accept_store_change: config.accept_store_change,
        clock: config.clock,
    };
    let prepared = tokio::task::spawn_blocking(move || {
        startup::prepare(open, &name, &known, &progress.startup, &stop, pause)
    })
    .await??;
    let Some(prepared) = prepared else { return Ok(None) };
    // The database was opened by path: prove the path still leads into the locked directory
    // before anything is served from it.
    lock.check_unchanged(config.store.is_none())?;
    become_ready(config, serving, limits, prepared).await.map(Some)
}

/// Resumes the saga steps of the previous run, spawns the writer and the workers, and hands
/// the server its full context.
async fn become_ready(
    config: &Config,
    serving: &Serving,
    limits: &Limits,
    prepared: startup::Prepared,
) -> anyhow::Result<Running> {
    let startup::Prepared {
        store,
        head,
        open_payments,
        open_deliveries,
        stuck,
        store_id,
        acknowledged,
        newest,
    } = prepared;
    let stuck = Arc::new(stuck);
    let stopping = serving.shutdown.clone();
    let resumed = (open_payments.len(), open_deliveries.len());
    let (head_tx, head_rx) = tokio::sync::watch::channel(head);
    let (sagas, payments, deliveries) = saga_queues(open_payments, open_deliveries);
    let settlements = Arc::new(Settlements::default());
    let members = Arc::new(cluster::Members::default());
    let cluster = match store.cluster()? {
        Some(shared) => Some(cluster::spawn(
            shared,
            store.reads()?,
            head,
            cluster::Handles {
                head: head_tx.clone(),
                settlements: Arc::clone(&settlements),
                payments: payments.clone(),
                deliveries: deliveries.clone(),
                stuck: Arc::clone(&stuck),
                members: Arc::clone(&members),
                metrics: Arc::clone(&serving.metrics),
            },
            stopping.clone(),
        )?),
        None => None,
    };
    let cluster_thread = match cluster {
        Some((thread, listed)) => {
            let _ = listed.await;
            Some(thread)
        }
        None => None,
    };
    let announcements = Announcements {
        head: head_tx,
        payments,
        deliveries,
        settlements: Arc::clone(&settlements),
        acknowledged: Some(Arc::clone(&acknowledged)),
        metrics: Arc::clone(&serving.metrics),
    };
    let times = RecordedTimes::new(config.clock, newest.unwrap_or(Timestamp::UNIX_EPOCH));
    let reads = store.reads()?;
    let upkeep = store.upkeep().unwrap_or_else(|error| {
        tracing::warn!(
            %error,
            "no background upkeep: the writer checkpoints the WAL by itself, and the ends of order \
             ids are not caught up (short ids are read from the log, slower as it grows)"
        );
        None
    });
    let pacing = writer::Pacing { replay_pause: config.replay_pause, ..writer::Pacing::default() };
    let (writer, writer_thread) =
        Writer::spawn_paced(store, policy(config)?, announcements, times, pacing, stopping.clone())?;
    let workers = TaskTracker::new();
    let provider = sagas::payment::Provider {
        decides: Arc::clone(&config.payment_provider),
        latency: config.payment_latency,
    };
    let (payments, deliveries) = sagas;
    let metrics = &serving.metrics;
    workers.spawn(sagas::run(
        payments,
        provider,
        writer.clone(),
        Arc::clone(&stuck),
        Arc::clone(metrics),
        stopping.clone(),
    ));
    workers.spawn(sagas::run(
        deliveries,
        config.clock,
        writer.clone(),
        Arc::clone(&stuck),
        Arc::clone(metrics),
        stopping.clone(),
    ));
    workers.spawn(upkeep::run(upkeep, acknowledged, head_rx.clone(), stopping.clone()));
    workers.close();
    serving.ready(Arc::new(Context {
        writer,
        readers: Readers::new(reads),
        paths: config.paths.clone(),
        started_at: serving.started_at(),
        clock: config.clock,
        store_id,
        shutdown: stopping,
        head: head_rx,
        settlements,
        log_file: config.log_file.clone(),
        stuck: Arc::clone(&stuck),
        metrics: Arc::clone(&serving.metrics),
        reach: serving.reach.clone(),
        last_sample: Default::default(),
        members,
    }));
    log_ready(config, limits, head, store_id, resumed, stuck.count());
    service::ready(&format!("ready: {} events", head.get()));
    let writer_stop = config.store.is_some().then_some(SERVER_WRITER_STOP);
    Ok(Running { workers, writer_thread, writer_stop, cluster_thread })
}

/// What the policies need of the configuration.
fn policy(config: &Config) -> anyhow::Result<Policy> {
    Ok(Policy {
        // Whole milliseconds, like every time the store keeps.
        delivery_delay: SignedDuration::from_millis(
            i64::try_from(config.delivery_delay.as_millis()).context("the delivery delay is too long")?,
        ),
    })
}

/// The workers' ends of the sagas' queues.
type SagaQueues = (UnboundedReceiver<PaymentDue>, UnboundedReceiver<DeliveryDue>);

/// The sagas' queues, holding the open steps of the previous run before anything new can be
/// announced: the workers' ends, then the writer's.
fn saga_queues(
    open_payments: Vec<PaymentDue>,
    open_deliveries: Vec<DeliveryDue>,
) -> (SagaQueues, UnboundedSender<PaymentDue>, UnboundedSender<DeliveryDue>) {
    let (payments_tx, payments_rx) = tokio::sync::mpsc::unbounded_channel();
    let (deliveries_tx, deliveries_rx) = tokio::sync::mpsc::unbounded_channel();
    for due in open_payments {
        let _ = payments_tx.send(due);
    }
    for due in open_deliveries {
        let _ = deliveries_tx.send(due);
    }
    ((payments_rx, deliveries_rx), payments_tx, deliveries_tx)
}

fn log_ready(
    config: &Config,
    limits: &Limits,
    head: store::Position,
    store_id: identity::StoreId,
    resumed: (usize, usize),
    stuck: usize,
) {
    let paths = &config.paths;
    tracing::info!(
        pid = std::process::id(),
        socket = %paths.socket.display(),
        data_dir = %paths.data_dir.display(),
        events = head.get(),
        store = %store_id,
        delivery_delay = ?config.delivery_delay,
        payment_delay = ?config.payment_latency,
        idle_timeout = ?limits.idle_timeout,
        drain_timeout = ?limits.drain_timeout,
        resumed_payments = resumed.0,
        resumed_deliveries = resumed.1,
        "daemon ready"
    );
    if stuck > 0 {
        tracing::warn!(
            stuck,
            "{stuck} stored saga steps cannot be carried out; everything else is served \
             (orders daemon status and orders check name them)"
        );
    }
}

/// Raises the soft limit on open files to the hard one (many clients, each a descriptor) and
/// returns the limit in force.
fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum
        && setrlimit(Resource::Nofile, Rlimit { current: limit.maximum, maximum: limit.maximum }).is_ok()
    {
        return limit.maximum.unwrap_or(u64::MAX);
    }
    limit.current.unwrap_or(u64::MAX)
}

/// Binds the socket, replacing a stale one left by a crashed daemon but never a live one, and
/// never anything that is not a socket: a regular file, a FIFO or a device at the path (a
/// mistyped `--socket /dev/null`) is an error naming it, never deleted (issue 11).
async fn bind(paths: &Paths) -> anyhow::Result<Listener> {
    paths.ensure_socket_dir()?;
    let socket = &paths.socket;
    match std::fs::symlink_metadata(socket) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(error).with_context(|| format!("cannot check the socket path {}", socket.display()));
        }
        Ok(meta) if !meta.file_type().is_socket() => anyhow::bail!(
            "{} is {}, not a socket; refusing to replace it. Remove it yourself if it is not needed, \
             or choose another socket (--socket, ORDERS_SOCKET)",
            socket.display(),
            files::kind(&meta)
        ),
        Ok(_) => {
            let name = socket.as_path().to_fs_name::<GenericFilePath>()?;
            match interprocess::local_socket::tokio::Stream::connect(name).await {
                Ok(_) => anyhow::bail!(
                    "another daemon answers on {}; `orders --socket {} daemon status` names the data directory it \
                     serves (stop it there), or choose another socket (--socket, ORDERS_SOCKET)",
                    socket.display(),
                    socket.display()
                ),
                Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
                    tracing::info!(socket = %socket.display(), "replacing a stale socket left by a daemon that died");
                    std::fs::remove_file(socket)
                        .with_context(|| format!("cannot remove the stale socket {}", socket.display()))?;
                }
                Err(error) => {
                    return Err(error)
                        .with_context(|| format!("cannot check the existing socket {}", socket.display()));
                }
            }
        }
    }
    let name = socket.as_path().to_fs_name::<GenericFilePath>()?;
    ListenerOptions::new()
        .name(name)
        .mode(0o600)
        .create_tokio()
        .with_context(|| format!("cannot listen on {}", socket.display()))
}

/// Serves the socket the service manager passed (socket activation): after checking that it is
/// this daemon's socket, in a directory the daemon accepts. It was not made here and is never
/// removed here: the manager keeps listening on it while the daemon is stopped.
fn adopt(passed: std::os::unix::net::UnixListener, paths: &Paths) -> anyhow::Result<Listener> {
    service::check_passed(&passed, &paths.socket)?;
    paths.ensure_socket_dir()?;
    tracing::info!(socket = %paths.socket.display(), "serving the socket passed by the service manager");
    let fd = std::os::fd::OwnedFd::from(passed);
    // Made from a descriptor, the listener does not remove the socket's file when dropped.
    let listener = interprocess::os::unix::uds_local_socket::tokio::Listener::try_from(fd)
        .context("cannot serve the socket passed by the service manager")?;
    Ok(listener.into())
}

/// Checks a copy of a store (`orders check --file`, issue 15): read-only, without a daemon, with
/// the same checker as `orders check`. A file too damaged to open is a damaged report.
pub fn check_copy(path: &std::path::Path) -> Result<orders_shared::protocol::CheckReport, store::StoreError> {
    let started = std::time::Instant::now();
    let source = match store::sqlite::SqliteStore::open_copy(path) {
        Err(error) if error.is_damage() => return Ok(check::damaged(&error.to_string(), started)),
        opened => opened?,
    };
    check::check_source(source.as_ref())
}

/// Resolves on the first SIGTERM or SIGINT. SIGHUP is caught and ignored, so that a daemon
/// started from a terminal outlives it.
pub fn stop_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let hangup = signal(SignalKind::hangup())?;
    Ok(async move {
        let _hangup = hangup;
        let which = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!("{which} received: finishing the requests in flight, then stopping");
    })
}
