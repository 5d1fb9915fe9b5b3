//! The orders daemon as a library: `run` serves one data directory until told to stop.
//!
//! - [`store`]: the SQLite event store (write side) and its schema;
//! - [`identity`]: a store knows itself, and the daemon notices one that vanished or went back;
//! - [`clock`]: recorded times that never go backwards;
//! - [`projection`]: the orders read model (read side) and its queries;
//! - [`commands`]: command handlers deciding with the domain of `orders-shared`;
//! - [`policies`]: how the order, payment and delivery contexts react to each other's events;
//! - [`sagas`]: the payment and delivery steps that wait for a provider or a due time;
//! - [`writer`]: the thread that owns the write connection and group-commits commands;
//! - [`replay`]: rebuilding the read model from the log, online;
//! - [`check`]: the invariant checker over the whole log;
//! - [`server`]: the Unix socket server and its router;
//! - [`paths`], [`lock`], [`logging`]: where things live, one daemon per data directory, logs;
//! - [`files`]: the daemon's own files, owner-only and never opened through a symlink;
//! - [`settings`]: the bounds of the daemon's durations.
//!
//! The `orders` binary calls [`run`] for `orders daemon run`; tests can call it directly.

pub mod check;
pub mod checkpointer;
pub mod clock;
pub mod commands;
pub mod files;
pub mod identity;
pub mod lock;
pub mod logging;
pub mod paths;
pub mod policies;
pub mod projection;
pub mod readers;
pub mod replay;
pub mod sagas;
pub mod server;
pub mod settings;
pub mod settlements;
pub mod store;
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
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::{Clock, RecordedTimes};
use crate::commands::Policy;
use crate::identity::{Acknowledged, Backwards, Verdict};
use crate::lock::DataDirLock;
use crate::paths::Paths;
use crate::readers::Readers;
use crate::server::{Context, Limits};
use crate::settlements::Settlements;
use crate::writer::{Announcements, Writer};

/// How a daemon is set up.
#[derive(Clone, Debug)]
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
    /// Serve a store that vanished, was replaced or went backwards, under a new identity
    /// (`--accept-store-change`; issue 12).
    pub accept_store_change: bool,
    /// Where recorded times come from: the machine's clock (tests move it).
    pub clock: Clock,
}

impl Config {
    pub const DEFAULT_DELIVERY_DELAY: Duration = Duration::from_secs(3);

    pub fn new(paths: Paths) -> Config {
        Config {
            paths,
            limits: Limits { max_connections: 1024, idle_timeout: Duration::from_secs(30) },
            log_file: std::path::PathBuf::new(),
            delivery_delay: Self::DEFAULT_DELIVERY_DELAY,
            payment_latency: Duration::ZERO,
            payment_provider: Arc::new(EvenOddProvider),
            accept_store_change: false,
            clock: Clock::system(),
        }
    }

    /// Refuses durations past their [`settings`] bounds, as the command line does: a delay too
    /// long would be stored in every delivery's due time (issue 11).
    pub fn check(&self) -> anyhow::Result<()> {
        settings::DELIVERY_DELAY.check(self.delivery_delay).map_err(anyhow::Error::msg)?;
        settings::PAYMENT_DELAY.check(self.payment_latency).map_err(anyhow::Error::msg)?;
        settings::IDLE_TIMEOUT.check(self.limits.idle_timeout).map_err(anyhow::Error::msg)?;
        Ok(())
    }
}

/// Serves until `shutdown` resolves or a client asks it to stop, then finishes the requests in
/// flight, closes the database and removes the socket.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    config.check()?;
    let paths = config.paths.clone();
    paths.ensure_data_dir()?;
    let _lock = DataDirLock::acquire(&paths)?;
    let mut limits = config.limits.clone();
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

    let database = paths.database();
    let mut conn = store::open_writer(&database)
        .with_context(|| format!("cannot open the database {}", database.display()))?;
    // Before anything is written to it: is this the store the data directory remembers?
    let id_file = paths.data_dir.join(identity::FILE_NAME);
    let found = store::identity::found(&conn)
        .with_context(|| format!("cannot open the database {}", database.display()))?;
    let mint = accept_store(
        identity::judge(found, identity::read_file(&id_file)?, config.accept_store_change, Backwards::Refuse),
        &database,
    )?;
    store::schema::migrate(&mut conn)
        .with_context(|| format!("cannot use the database {}", database.display()))?;
    if replay::drop_leftovers(&conn)? {
        tracing::warn!("dropped the table of a replay that did not finish (the daemon died during it)");
    }
    let caught_up = projection::catch_up(&conn).context("cannot bring the read model up to date")?;
    if caught_up > 0 {
        tracing::info!(events = caught_up, "read model caught up with the event log");
    }
    let head = store::EventStore::new(&conn).head()?;
    let store_id = store::identity::ensure(&conn, mint)?;
    let acknowledged = Arc::new(Acknowledged::create(&id_file, store_id, head)?);
    let clock = config.clock;
    let newest = store::EventStore::new(&conn).newest_recorded_at()?;
    if let Some(newest) = newest
        && let Some(behind) = clock::behind(clock.now(), newest)
    {
        tracing::warn!(
            behind_ms = behind.as_millis(),
            %newest,
            "the clock is {behind:#} behind the newest recorded event ({newest}): new events are recorded              no earlier than that, and deliveries go at most their delay from now. Is the clock right?"
        );
    }
    // A stored step that cannot be carried out is reported and kept, never a reason not to start.
    let stuck = Arc::new(sagas::StuckSteps::default());
    let sagas::Stored { steps: open_payments, stuck: stuck_payments } = sagas::payment::open(&conn)?;
    let sagas::Stored { steps: open_deliveries, stuck: stuck_deliveries } = sagas::delivery::open(&conn)?;
    for step in stuck_payments.into_iter().chain(stuck_deliveries) {
        stuck.add(step);
    }

    let (head_tx, head_rx) = tokio::sync::watch::channel(head);
    let (payments_tx, payments_rx) = tokio::sync::mpsc::unbounded_channel();
    let (deliveries_tx, deliveries_rx) = tokio::sync::mpsc::unbounded_channel();
    let settlements = Arc::new(Settlements::default());
    // Resume the open saga steps of the previous run before anything new can be announced.
    let resumed = (open_payments.len(), open_deliveries.len());
    let behind = open_deliveries.iter().filter(|due| due.clock_behind(clock.now())).count();
    if behind > 0 {
        tracing::warn!(
            deliveries = behind,
            "{behind} deliveries were approved later than the clock says it is now: each goes at most              its delivery delay from now, not at its recorded due time"
        );
    }
    for due in open_payments {
        let _ = payments_tx.send(due);
    }
    for due in open_deliveries {
        let _ = deliveries_tx.send(due);
    }
    let policy = Policy {
        // Whole milliseconds, like every time the store keeps.
        delivery_delay: SignedDuration::from_millis(
            i64::try_from(config.delivery_delay.as_millis()).context("the delivery delay is too long")?,
        ),
    };
    let announcements = Announcements {
        head: head_tx,
        payments: payments_tx,
        deliveries: deliveries_tx,
        settlements: Arc::clone(&settlements),
        acknowledged: Some(Arc::clone(&acknowledged)),
    };
    let stop = CancellationToken::new();
    let times = RecordedTimes::new(clock, newest.unwrap_or(Timestamp::UNIX_EPOCH));
    let (writer, writer_thread) = Writer::spawn(conn, policy, announcements, times, stop.clone())?;

    let listener = bind(&paths).await?;
    let context = Arc::new(Context {
        writer,
        readers: Readers::new(database),
        paths: paths.clone(),
        started_at: clock.now(),
        clock,
        store_id,
        shutdown: stop,
        head: head_rx,
        settlements,
        log_file: config.log_file.clone(),
        stuck: Arc::clone(&stuck),
    });
    let workers = TaskTracker::new();
    let provider = sagas::payment::Provider {
        decides: Arc::clone(&config.payment_provider),
        latency: config.payment_latency,
    };
    let (writer, stopping) = (&context.writer, &context.shutdown);
    workers.spawn(sagas::run(payments_rx, provider, writer.clone(), Arc::clone(&stuck), stopping.clone()));
    workers.spawn(sagas::run(deliveries_rx, clock, writer.clone(), Arc::clone(&stuck), stopping.clone()));
    workers.spawn(checkpointer::run(
        paths.database(),
        acknowledged,
        context.head.clone(),
        context.shutdown.clone(),
    ));
    workers.close();
    tracing::info!(
        pid = std::process::id(),
        socket = %paths.socket.display(),
        data_dir = %paths.data_dir.display(),
        store = %store_id,
        events = head,
        delivery_delay = ?config.delivery_delay,
        payment_delay = ?config.payment_latency,
        idle_timeout = ?limits.idle_timeout,
        resumed_payments = resumed.0,
        resumed_deliveries = resumed.1,
        "daemon ready"
    );
    let stuck_count = stuck.count();
    if stuck_count > 0 {
        tracing::warn!(
            stuck = stuck_count,
            "{stuck_count} stored saga steps cannot be carried out; everything else is served \
             (orders daemon status and orders check name them)"
        );
    }

    let stop = context.shutdown.clone();
    let stop_on_signal = async move {
        tokio::select! {
            () = shutdown => stop.cancel(),
            () = stop.cancelled() => {}
        }
    };
    tokio::join!(server::serve(listener, Arc::clone(&context), limits), stop_on_signal);

    // Every handler has finished; the workers stop on the same token. The last writer handle
    // goes with the context.
    workers.wait().await;
    drop(context);
    tokio::task::spawn_blocking(move || writer_thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the writer thread panicked"))?;
    tracing::info!("daemon stopped");
    Ok(())
}

/// What the daemon does with the store it found: refuse it (an error saying what was found and
/// what to do), or serve it — under a new identity (`Ok(true)`) when a change was accepted.
fn accept_store(verdict: Verdict, database: &std::path::Path) -> anyhow::Result<bool> {
    let name = database.display().to_string();
    match verdict {
        Verdict::Serve => Ok(false),
        Verdict::Refuse(change) => anyhow::bail!(
            "{}. Refusing to serve it. Put the right database back (orders.db together with its orders.db-wal \
             file), or, if this is the store to serve from now on, start the daemon once with \
             --accept-store-change (ORDERS_ACCEPT_STORE_CHANGE=1)",
            change.describe(&name)
        ),
        Verdict::Accept { change, mint } => {
            tracing::warn!(
                "{}; accepted (--accept-store-change): serving it{}",
                change.describe(&name),
                if mint { " as a new store" } else { "" }
            );
            Ok(mint)
        }
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
                    "another daemon answers on {}; stop it first (orders daemon stop) or choose another socket (--socket, ORDERS_SOCKET)",
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
