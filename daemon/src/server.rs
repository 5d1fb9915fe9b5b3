//! The socket server: accepts connections, reads request lines and routes them.
//!
//! Connections are bounded (a semaphore), each one checked for its peer's uid, read with an idle
//! timeout and a maximum line length. An error on one connection is logged and ends that
//! connection only. Every handler watches the one shutdown token; a request already being
//! handled is finished before the daemon stops.

use std::io;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use interprocess::local_socket::tokio::Listener;
use interprocess::local_socket::tokio::prelude::*;
use jiff::Timestamp;
use orders_shared::protocol::{
    Addressed, DaemonState, DaemonStatus, ErrorBody, ErrorCode, EventView, MAX_REQUEST_BYTES, OrderView,
    PROTOCOL_VERSION, Reply, Request, WaitRequest,
};
use orders_shared::{OrderId, StreamId, StreamKind};
use serde_json::value::RawValue;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::codec::AnyDelimiterCodecError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::commands::{WriteCommand, storage_error_body};
use crate::connection::{Lines, MAX_LINGERING, REPLY_BUDGET};
use crate::event_stream::{events_page, follow_events};

use crate::paths::{Paths, ServedStore};
use crate::projection;
use crate::readers::Readers;
use crate::replay::ReplayJob;
use crate::settlements::Settlements;
use crate::startup::Startup;
use crate::store::{EventStore, RecordedEvent, StoreError};
use crate::writer::Writer;

/// Everything a request handler may use.
pub struct Context {
    pub writer: Writer,
    pub readers: Arc<Readers>,
    pub paths: Paths,
    /// The store every request must name (issue 12).
    pub store: ServedStore,
    pub started_at: Timestamp,
    /// Cancelled once to stop the daemon: by a signal, or by a `shutdown` request.
    pub shutdown: CancellationToken,
    /// The newest committed global position.
    pub head: watch::Receiver<i64>,
    /// Orders being waited for.
    pub settlements: Arc<Settlements>,
    /// Where the daemon logs, for `status`.
    pub log_file: std::path::PathBuf,
    /// The saga steps that cannot be carried out, for `status`.
    pub stuck: Arc<crate::sagas::StuckSteps>,
    /// The clock recorded times come from, to compare with the log for `status`.
    pub clock: crate::clock::Clock,
    /// The store this daemon serves.
    pub store_id: crate::identity::StoreId,
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
}

impl Serving {
    pub fn new(paths: Paths, store: ServedStore, log_file: std::path::PathBuf) -> Serving {
        Serving {
            store,
            shutdown: CancellationToken::new(),
            startup: Startup::default(),
            ready: OnceLock::new(),
            paths,
            started_at: Timestamp::now(),
            log_file,
        }
    }

    /// From now on requests are served with `context`.
    pub fn ready(&self, context: Arc<Context>) {
        if self.ready.set(context).is_err() {
            tracing::error!("the daemon was made ready twice; the first context stays");
        }
    }

    pub fn started_at(&self) -> Timestamp {
        self.started_at
    }

    fn context(&self) -> Option<&Context> {
        self.ready.get().map(Arc::as_ref)
    }

    /// What a starting daemon says about itself.
    fn starting_status(&self) -> DaemonStatus {
        DaemonStatus {
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
        }
    }

    /// The answer to a request that a starting daemon cannot serve yet: nothing was done.
    fn starting_error(&self) -> ErrorBody {
        let message = format!("the daemon is starting: {}", self.startup.progress());
        ErrorBody::new(ErrorCode::Starting, message)
    }
}

/// Limits that keep one client from starving the others.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
    /// How long a piece of a reply may wait for its client to read it (see [`crate::connection`]).
    pub drain_timeout: Duration,
}

/// Accepts connections until shutdown, then waits for every handler to finish. It serves from
/// the first instant, while the daemon starts (see [`Serving`]).
pub async fn serve(listener: Listener, serving: Arc<Serving>, limits: Limits) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let budget = Arc::new(Semaphore::new(REPLY_BUDGET));
    let lingering = Arc::new(Semaphore::new(MAX_LINGERING));
    let handlers = TaskTracker::new();
    let own_uid = rustix::process::geteuid().as_raw();
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            () = serving.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok(stream) => {
                backoff = Duration::from_millis(10);
                stream
            }
            Err(error) => {
                // Out of file descriptors, typically: wait a little rather than spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let permit = Arc::clone(&slots).try_acquire_owned().ok();
        let serving = Arc::clone(&serving);
        let limits = limits.clone();
        let lines = Lines::new(stream, serving.shutdown.clone(), limits.drain_timeout, Arc::clone(&budget));
        let lingering = Arc::clone(&lingering);
        handlers.spawn(async move {
            let refused = Refused { own_uid, lingering };
            if let Err(error) = handle_connection(lines, permit, refused, &serving, &limits).await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    handlers.close();
    handlers.wait().await;
}

/// What a refusal needs: whom the daemon serves, and room to linger.
struct Refused {
    own_uid: u32,
    /// Refused connections lingering to drain their request ([`MAX_LINGERING`] permits).
    lingering: Arc<Semaphore>,
}

impl Refused {
    async fn tell(self, lines: Lines, error: ErrorBody) -> io::Result<()> {
        lines.refuse(Reply::error(error), self.lingering.try_acquire_owned().ok()).await
    }
}

async fn handle_connection(
    mut lines: Lines,
    permit: Option<OwnedSemaphorePermit>,
    refused: Refused,
    serving: &Serving,
    limits: &Limits,
) -> io::Result<()> {
    let own_uid = refused.own_uid;
    let peer_uid = lines.peer_uid();
    if peer_uid != Some(own_uid) {
        tracing::warn!(?peer_uid, "refused a connection from another user");
        let message = format!("this daemon serves uid {own_uid} only");
        return refused.tell(lines, ErrorBody::new(ErrorCode::PermissionDenied, message)).await;
    }
    let Some(_permit) = permit else {
        tracing::warn!(limit = limits.max_connections, "refused a connection: too many open");
        let message =
            format!("the daemon is at its limit of {} connections; retry shortly", limits.max_connections);
        return refused.tell(lines, ErrorBody::new(ErrorCode::Busy, message)).await;
    };
    // After a decoding error, the framed stream yields one `None` before it reads on.
    let mut after_error = false;
    loop {
        let next = tokio::select! {
            () = serving.shutdown.cancelled() => return Ok(()),
            next = tokio::time::timeout(limits.idle_timeout, lines.next()) => next,
        };
        let line = match next {
            Err(_) => {
                let message = format!("no request for {:?}; closing the connection", limits.idle_timeout);
                return lines.reply(Reply::error(ErrorBody::new(ErrorCode::Busy, message))).await;
            }
            Ok(None) if after_error => {
                after_error = false;
                continue;
            }
            Ok(None) => return Ok(()),
            Ok(Some(Err(AnyDelimiterCodecError::MaxChunkLengthExceeded))) => {
                // The codec skips the rest of the line; the connection carries on after it.
                let message = format!("the request is longer than {MAX_REQUEST_BYTES} bytes");
                lines.reply(Reply::error(ErrorBody::new(ErrorCode::TooLarge, message))).await?;
                after_error = true;
                continue;
            }
            Ok(Some(Err(AnyDelimiterCodecError::Io(error)))) => return Err(error),
            Ok(Some(Ok(line))) => line,
        };
        if line.trim_ascii().is_empty() {
            continue;
        }
        let parsed = parse(&serving.store, &line);
        let Some(context) = serving.context() else {
            lines.reply(while_starting(serving, parsed)).await?;
            continue;
        };
        let reply = match parsed {
            // Streaming requests write their own lines.
            Ok(Request::Events(request)) if request.follow => {
                follow_events(context, &mut lines, request).await?;
                continue;
            }
            // A page is written a piece at a time, as it is read.
            Ok(Request::Events(request)) => {
                events_page(context, &mut lines, request).await?;
                continue;
            }
            Ok(Request::Watch(request)) => {
                watch_order(context, &mut lines, request.id).await?;
                continue;
            }
            Ok(Request::Replay(request)) => {
                replay(context, &mut lines, request.check).await?;
                continue;
            }
            // A wait may last days: a client that hangs up meanwhile frees its slot at once.
            Ok(Request::Wait(wait)) => tokio::select! {
                reply = route(context, Request::Wait(wait)) => reply,
                () = lines.until_gone() => return Ok(()),
            },
            Ok(request) => {
                tracing::trace!(cmd = request.name(), "request");
                route(context, request).await
            }
            Err(error) => Reply::error(error),
        };
        lines.reply(reply).await?;
    }
}

/// Reads a request line meant for the store this daemon serves: one naming another store is
/// answered `wrong_store`, never served from the wrong data (issue 12), starting or ready.
fn parse(served: &ServedStore, line: &[u8]) -> Result<Request, ErrorBody> {
    let Addressed { store, request } = Request::parse(line)?;
    served.check(&store)?;
    Ok(request)
}

/// A starting daemon's router: it tells how far it has come and can be stopped; everything else
/// waits for it to be ready (issue 12).
fn while_starting(serving: &Serving, parsed: Result<Request, ErrorBody>) -> Reply {
    match parsed {
        Ok(Request::Status(_)) => Reply::data(serving.starting_status()),
        Ok(Request::Shutdown(_)) => {
            tracing::info!("shutdown requested by a client during the start-up");
            serving.shutdown.cancel();
            Reply::data(serving.starting_status())
        }
        Ok(_) => Reply::error(serving.starting_error()),
        Err(error) => Reply::error(error),
    }
}

/// The one router: every request goes to the handler named after it.
async fn route(context: &Context, request: Request) -> Reply {
    let result = match request {
        Request::Create(create) => write(context, WriteCommand::Create(create)).await,
        Request::Cancel(cancel) => write(context, WriteCommand::Cancel(cancel.id)).await,
        Request::Show(show) => find_order(context, show.id).await.map(to_json),
        Request::List(list) => read(context, move |conn| projection::list(conn, &list)).await,
        Request::Wait(wait) => wait_until_settled(context, &wait).await.map(to_json),
        Request::History(history) => order_history(context, history.id).await.map(to_json),
        Request::Events(_) | Request::Watch(_) | Request::Replay(_) => {
            unreachable!("streaming requests are handled by the connection")
        }
        Request::Check(_) => check_database(context).await,
        Request::Status(_) => status(context).await.map(to_json),
        Request::Shutdown(_) => {
            let status = status(context).await;
            tracing::info!("shutdown requested by a client");
            context.shutdown.cancel();
            status.map(to_json)
        }
    };
    match result {
        Ok(data) => Reply::Data(data),
        Err(error) => Reply::error(error),
    }
}

/// A read that failed: classified like a storage failure, told as what it is.
pub(crate) fn read_error_body(error: &StoreError) -> ErrorBody {
    ErrorBody { message: format!("cannot read the database: {error}"), ..storage_error_body(error) }
}

fn to_json(data: impl serde::Serialize) -> Box<RawValue> {
    orders_shared::protocol::raw(&data)
}

async fn write(context: &Context, command: WriteCommand) -> Result<Box<RawValue>, ErrorBody> {
    context.writer.execute(command).await.map(to_json)
}

async fn read<T, F>(context: &Context, query: F) -> Result<Box<RawValue>, ErrorBody>
where
    T: serde::Serialize + Send + 'static,
    F: FnOnce(&rusqlite::Connection) -> Result<T, crate::store::StoreError> + Send + 'static,
{
    // Serialised on the reader's thread: the rows are dropped there, only their JSON comes back.
    context.readers.read(move |conn| query(conn).map(to_json)).await.map_err(|error| read_error_body(&error))
}

/// `check`: a database too damaged even to be opened for it is a problem of the data, reported
/// as such (issue 12).
async fn check_database(context: &Context) -> Result<Box<RawValue>, ErrorBody> {
    let started = std::time::Instant::now();
    match context.readers.read(crate::check::check).await {
        Ok(report) => Ok(to_json(report)),
        Err(error) if crate::check::is_damage(&error) => {
            Ok(to_json(crate::check::damaged(&error.to_string(), started)))
        }
        Err(error) => Err(read_error_body(&error)),
    }
}

async fn find_order(context: &Context, id: OrderId) -> Result<OrderView, ErrorBody> {
    let found = context
        .readers
        .read(move |conn| projection::get(conn, id))
        .await
        .map_err(|error| read_error_body(&error))?;
    found.ok_or_else(|| ErrorBody::new(ErrorCode::NotFound, format!("no order {id}")))
}

/// Waits for the next commit. `false` when the client left; an error reply when the daemon stops.
pub(crate) async fn wait_for_news(
    context: &Context,
    lines: &mut Lines,
    head: &mut watch::Receiver<i64>,
) -> io::Result<bool> {
    loop {
        tokio::select! {
            changed = head.changed() => return Ok(changed.is_ok()),
            () = context.shutdown.cancelled() => {
                lines.reply(Reply::error(ErrorBody::new(ErrorCode::Unavailable, "the daemon is shutting down"))).await?;
                return Ok(false);
            }
            incoming = lines.next() => match incoming {
                None | Some(Err(_)) => return Ok(false),
                // A streaming connection takes no more requests; its input is ignored.
                Some(Ok(_)) => {}
            },
        }
    }
}

/// `watch`: an order's events so far, then each new one, until it is delivered or cancelled;
/// the last line is the settled order.
async fn watch_order(context: &Context, lines: &mut Lines, id: OrderId) -> io::Result<()> {
    let mut head = context.head.clone();
    let mut after = 0;
    loop {
        head.borrow_and_update();
        let found = context
            .readers
            .read(move |conn| {
                // One snapshot: three streams and the row, as of the same commit.
                let snapshot = conn.unchecked_transaction()?;
                let streams = StreamKind::ALL.map(|kind| StreamId::new(kind, id));
                let events = EventStore::new(&snapshot).read_streams(&streams)?;
                Ok((events, projection::get(&snapshot, id)?))
            })
            .await;
        let (events, order) = match found {
            Ok(found) => found,
            Err(error) => return lines.reply(Reply::error(read_error_body(&error))).await,
        };
        let Some(order) = order else {
            return lines
                .reply(Reply::error(ErrorBody::new(ErrorCode::NotFound, format!("no order {id}"))))
                .await;
        };
        let seen = after;
        for event in events.iter().filter(|event| event.position > seen) {
            after = event.position;
            lines.reply(Reply::event(event_view(event))).await?;
        }
        if order.status.is_settled() {
            return lines.reply(Reply::data(order)).await;
        }
        if !wait_for_news(context, lines, &mut head).await? {
            return Ok(());
        }
    }
}

/// `replay`: starts the rebuild on the writer, relays its progress, then its report. A client
/// that goes away abandons it (the writer notices the dropped report channel).
async fn replay(context: &Context, lines: &mut Lines, check: bool) -> io::Result<()> {
    let (progress_tx, mut progress) = tokio::sync::mpsc::unbounded_channel();
    let (done_tx, mut done) = tokio::sync::oneshot::channel();
    let job = ReplayJob { check, progress: progress_tx, done: done_tx };
    if let Err(error) = context.writer.replay(job).await {
        return lines.reply(Reply::error(error)).await;
    }
    tracing::info!(check, "replay started");
    loop {
        tokio::select! {
            biased;
            Some(step) = progress.recv() => lines.reply(Reply::progress(step)).await?,
            result = &mut done => {
                let reply = match result {
                    Ok(Ok(report)) => Reply::data(report),
                    Ok(Err(error)) => Reply::error(error),
                    Err(_) => Reply::error(ErrorBody::new(ErrorCode::Unavailable, "the daemon is shutting down")),
                };
                return lines.reply(reply).await;
            }
        }
    }
}

/// Answers once the order is delivered or cancelled, or with `timeout`.
async fn wait_until_settled(context: &Context, request: &WaitRequest) -> Result<OrderView, ErrorBody> {
    let timeout = Duration::from_millis(request.timeout_ms.unwrap_or(WaitRequest::DEFAULT_TIMEOUT_MS));
    let deadline = tokio::time::Instant::now() + timeout;
    let id = request.id;
    loop {
        // Subscribe first, then look: a settlement in between cannot be missed.
        let mut subscription = context.settlements.subscribe(id);
        let order = find_order(context, id).await?;
        if order.status.is_settled() {
            return Ok(order);
        }
        tokio::select! {
            () = subscription.settled() => {}
            () = tokio::time::sleep_until(deadline) => {
                return Err(ErrorBody::new(
                    ErrorCode::Timeout,
                    format!("order {id} is still {} after {timeout:?}", order.status),
                ));
            }
            () = context.shutdown.cancelled() => {
                return Err(ErrorBody::new(ErrorCode::Unavailable, "the daemon is shutting down"));
            }
        }
    }
}

/// Every event of an order, from its order, payment and delivery streams, in log order.
async fn order_history(context: &Context, id: OrderId) -> Result<Vec<EventView>, ErrorBody> {
    let events = context
        .readers
        .read(move |conn| {
            // One snapshot: the three streams as of the same commit.
            let snapshot = conn.unchecked_transaction()?;
            let streams = StreamKind::ALL.map(|kind| StreamId::new(kind, id));
            EventStore::new(&snapshot).read_streams(&streams)
        })
        .await
        .map_err(|error| read_error_body(&error))?;
    if events.is_empty() {
        return Err(ErrorBody::new(ErrorCode::NotFound, format!("no order {id}")));
    }
    Ok(events.iter().map(event_view).collect())
}

pub fn event_view(recorded: &RecordedEvent) -> EventView {
    EventView {
        position: recorded.position,
        cursor: crate::store::cursor(recorded.position),
        event_id: recorded.event_id.to_string(),
        stream: recorded.stream.to_string(),
        version: recorded.version,
        event_type: recorded.event.event_type().to_owned(),
        recorded_at: recorded.recorded_at,
        data: recorded.event.payload_value(),
        correlation_id: recorded.metadata.correlation_id.to_string(),
        causation_id: recorded.metadata.causation_id.to_string(),
    }
}

async fn status(context: &Context) -> Result<DaemonStatus, ErrorBody> {
    let stuck = Arc::clone(&context.stuck);
    let ([events, orders, pending_payments, pending_deliveries], (stuck_steps, stuck), newest) = context
        .readers
        .read(move |conn| {
            let count = |table: &str| -> Result<u64, StoreError> {
                let n: i64 =
                    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| row.get(0))?;
                Ok(n.try_into().unwrap_or_default())
            };
            let store = EventStore::new(conn);
            let events = store.head()?.try_into().unwrap_or_default();
            let counts = [events, count("orders")?, count("payment_requests")?, count("delivery_timers")?];
            Ok((counts, stuck.still_stored(conn)?, store.newest_recorded_at()?))
        })
        .await
        .map_err(|error| read_error_body(&error))?;
    Ok(DaemonStatus {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        protocol: PROTOCOL_VERSION,
        started_at: context.started_at,
        socket: context.paths.socket.display().to_string(),
        data_dir: context.paths.data_dir.display().to_string(),
        database: context.paths.database().display().to_string(),
        events,
        orders,
        pending_payments,
        pending_deliveries,
        log_file: context.log_file.display().to_string(),
        stuck_steps,
        stuck,
        store_id: Some(context.store_id.to_string()),
        clock_behind_ms: newest
            .and_then(|newest| crate::clock::behind(context.clock.now(), newest))
            .map(|behind| behind.as_millis().try_into().unwrap_or(u64::MAX)),
        state: DaemonState::Ready,
        start: None,
    })
}
