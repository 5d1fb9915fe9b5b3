//! What the server serves with: a starting daemon's [`Serving`], the ready daemon's [`Context`],
//! and the [`Limits`] of every connection.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use jiff::Timestamp;
use orders_shared::protocol::{DaemonState, DaemonStatus, ErrorBody, ErrorCode, PROTOCOL_VERSION};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::paths::{Paths, ServedStore};
use crate::readers::Readers;
use crate::settlements::Settlements;
use crate::startup::Startup;
use crate::store::Position;
use crate::writer::Writer;

/// Everything a request handler may use.
pub struct Context {
    pub writer: Writer,
    pub readers: Arc<Readers>,
    pub paths: Paths,
    pub started_at: Timestamp,
    /// Cancelled once to stop the daemon: by a signal, or by a `shutdown` request.
    pub shutdown: CancellationToken,
    /// The newest committed global position.
    pub head: watch::Receiver<Position>,
    /// Orders being waited for.
    pub settlements: Arc<Settlements>,
    /// Where the daemon logs, for `status`.
    pub log_file: std::path::PathBuf,
    /// The saga steps that cannot be carried out, for `status`.
    pub stuck: Arc<crate::steps::StuckSteps>,
    /// The clock recorded times come from, to compare with the log for `status`.
    pub clock: crate::clock::Clock,
    /// The store this daemon serves.
    pub store_id: crate::identity::StoreId,
    /// What the daemon counts (the starting daemon's, carried on).
    pub metrics: Arc<Metrics>,
    /// How the daemon is reached besides its socket, for `status`.
    pub reach: Reach,
    /// The last sample of the store for the metrics, which scrapes share.
    pub last_sample: crate::metrics::LastSample,
    /// The daemons sharing the store (PostgreSQL; none listed on SQLite), for `status`.
    pub members: Arc<crate::cluster::Members>,
}

/// What the server serves: a daemon starting up (issue 12), then, once [`ready`](Self::ready),
/// its full [`Context`]. Each request is routed by the state it finds.
pub struct Serving {
    /// Cancelled once to stop the daemon, starting or ready: by a signal, or by `shutdown`.
    pub shutdown: CancellationToken,
    /// How far the start-up has come, for `status` and the `starting` replies.
    pub startup: Startup,
    /// Set once, when the start-up is done.
    ready: OnceLock<Arc<Context>>,
    paths: Paths,
    /// The store every request must name, checked from the first instant (issue 12).
    store: ServedStore,
    started_at: Timestamp,
    log_file: std::path::PathBuf,
    /// What the daemon counts, for `metrics` and the HTTP endpoint (issue 16).
    pub metrics: Arc<Metrics>,
    /// How the daemon is reached besides its socket, for `status`.
    pub reach: Reach,
}

/// How the daemon is reached, as `status` says: its HTTP listeners, and whether its socket came
/// from the service manager (issue 16, 17).
#[derive(Clone, Debug, Default)]
pub struct Reach {
    /// Where the metrics are served over HTTP, as a URL (`--metrics-listen`).
    pub metrics_url: Option<String>,
    /// Where the HTTP endpoints are served, as a URL (`--http`).
    pub http_url: Option<String>,
    /// The socket was passed by the service manager.
    pub socket_activated: bool,
    /// The PostgreSQL database served (`--store`), as `status` names it: never its password.
    /// `None`: the data directory's SQLite file.
    pub database: Option<String>,
}

impl Reach {
    /// Its part of a status.
    pub(super) fn tell(&self, status: &mut DaemonStatus) {
        status.metrics_url.clone_from(&self.metrics_url);
        status.http_url.clone_from(&self.http_url);
        status.socket_activated = self.socket_activated;
        if let Some(database) = &self.database {
            status.database.clone_from(database);
        }
    }
}

impl Serving {
    pub fn new(paths: Paths, store: ServedStore, log_file: std::path::PathBuf, reach: Reach) -> Serving {
        let started_at = Timestamp::now();
        Serving {
            store,
            shutdown: CancellationToken::new(),
            startup: Startup::default(),
            ready: OnceLock::new(),
            paths,
            started_at,
            log_file,
            metrics: Arc::new(Metrics::new(started_at)),
            reach,
        }
    }

    /// From now on requests are served with `context`.
    pub fn ready(&self, context: Arc<Context>) {
        if self.ready.set(context).is_err() {
            tracing::error!("the daemon was made ready twice; the first context stays");
        }
    }

    /// The store every request must name.
    pub(super) fn store(&self) -> &ServedStore {
        &self.store
    }

    pub fn started_at(&self) -> Timestamp {
        self.started_at
    }

    /// Whether the start-up is done.
    pub fn is_ready(&self) -> bool {
        self.ready.get().is_some()
    }

    pub(super) fn context(&self) -> Option<&Context> {
        self.ready.get().map(Arc::as_ref)
    }

    /// Lets go of the read connections once nothing is served any more, so that the writer's
    /// connection closes last (SQLite then checkpoints the WAL and removes it).
    pub fn close_readers(&self) {
        if let Some(context) = self.context() {
            context.readers.close();
        }
    }

    /// What a starting daemon says about itself.
    pub(super) fn starting_status(&self) -> DaemonStatus {
        let mut status = DaemonStatus {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            protocol: PROTOCOL_VERSION,
            started_at: self.started_at,
            socket: self.paths.socket.display().to_string(),
            data_dir: self.paths.data_dir.display().to_string(),
            database: self.paths.database().display().to_string(),
            events: 0,
            orders: 0,
            pending_payments: 0,
            pending_deliveries: 0,
            log_file: self.log_file.display().to_string(),
            stuck_steps: 0,
            stuck: Vec::new(),
            store_id: None,
            clock_behind_ms: None,
            state: DaemonState::Starting,
            start: Some(self.startup.progress()),
            metrics_url: None,
            http_url: None,
            socket_activated: false,
            daemons: Vec::new(),
        };
        self.reach.tell(&mut status);
        status
    }

    /// The answer to a request that a starting daemon cannot serve yet: nothing was done.
    pub(super) fn starting_error(&self) -> ErrorBody {
        let message = format!("the daemon is starting: {}", self.startup.progress());
        ErrorBody::new(ErrorCode::Starting, message)
    }
}

/// Limits that keep one client from starving the others.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
    /// How long a piece of a reply may wait for its client to read it (see `crate::connection`).
    pub drain_timeout: Duration,
}
