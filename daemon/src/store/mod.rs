//! The storage seam: what the daemon needs from an event store, whatever keeps it.
//!
//! The engine (the writer, the command handlers, the policies), the sagas, replay, the checker
//! and the server's queries see storage through the traits of this module only; a backend
//! implements them and is the only code that names its driver:
//!
//! - [`sqlite`]: the embedded default, one file with its WAL;
//! - `memory`: everything in memory, for the engine's tests (the proof that the seam is real).
//!
//! Both pass one conformance suite (`conformance`, run against every backend).
//!
//! The seam is synchronous. The writer is one thread that owns its connection and commits a
//! batch of commands at a time (group commit); the domain is synchronous on purpose; a read
//! runs on a blocking thread of the pool. An async trait would buy nothing here: a backend on a
//! networked database keeps its round trips down by the batch shape instead — [`Batch::wants`]
//! names every stream and idempotency key a batch needs before its first unit runs, so that a
//! backend may load them all in one call.
//!
//! - [`Store`]: the write side and the start-up, owned by the writer thread;
//! - [`Batch`] and [`WriteTx`]: one batch's units of work inside one transaction;
//! - [`ReadSource`] and [`Reads`]: the read side, named queries on a consistent snapshot;
//! - [`StoreError`]: failures in words no driver owns; each backend classifies its own errors.

#[cfg(test)]
mod conformance;
#[cfg(test)]
pub mod memory;
pub mod postgres;
pub mod sqlite;

use std::fmt;
use std::path::Path;

use jiff::Timestamp;
use orders_shared::protocol::{
    ClusterDaemon, Cursor, ExportedEvent, ExportedMetadata, ListRequest, OrderPage, OrderView,
};
use orders_shared::{DecodeError, DomainEvent, OrderEvent, OrderId, OrderStatus, StreamId, Total};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::identity::{Found, StoreId};

/// A place in the global log: 1 for the first event, each event one more than the last.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position(i64);

impl Position {
    /// Before the first event: an empty log's head, a read from the start.
    pub const START: Position = Position(0);

    pub const fn new(position: i64) -> Position {
        Position(position)
    }

    pub const fn get(self) -> i64 {
        self.0
    }

    pub const fn next(self) -> Position {
        Position(self.0 + 1)
    }

    /// How many events lie after `earlier` up to here (positions are dense: rows are never deleted).
    pub fn since(self, earlier: Position) -> u64 {
        u64::try_from(self.0 - earlier.0).unwrap_or_default()
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A stream's version: 1 for its first event; 0 ([`Version::NONE`]) before it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(i64);

impl Version {
    /// A stream with no event yet.
    pub const NONE: Version = Version(0);

    pub const fn new(version: i64) -> Version {
        Version(version)
    }

    pub const fn get(self) -> i64 {
        self.0
    }

    pub const fn next(self) -> Version {
        Version(self.0 + 1)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Who and what caused an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// The command that started the whole workflow; shared by every event it led to.
    pub correlation_id: Uuid,
    /// The command or event that directly caused this one.
    pub causation_id: Uuid,
    /// The client's retry key, on the event that created the order.
    pub idempotency_key: Option<String>,
}

impl Metadata {
    /// A command that starts a workflow: it is its own correlation and cause.
    pub fn new_command() -> Metadata {
        let id = Uuid::now_v7();
        Metadata { correlation_id: id, causation_id: id, idempotency_key: None }
    }

    /// A step caused by a recorded event: same workflow, that event as the cause.
    pub fn caused_by(cause: &RecordedEvent) -> Metadata {
        Metadata {
            correlation_id: cause.metadata.correlation_id,
            causation_id: cause.event_id,
            idempotency_key: None,
        }
    }
}

/// An event as stored, with its place in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedEvent {
    pub position: Position,
    pub event_id: Uuid,
    pub stream: StreamId,
    pub version: Version,
    pub recorded_at: Timestamp,
    pub metadata: Metadata,
    pub event: DomainEvent,
}

/// An event exactly as the store keeps it: its payload as it was written, at the schema version
/// it was written in, never upcast. What `export` writes and `import` loads (issue 15), so that
/// an export of an import is the export it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    pub position: Position,
    pub event_id: Uuid,
    pub stream: StreamId,
    pub version: Version,
    pub event_type: String,
    pub schema_version: u32,
    /// A JSON object.
    pub payload: String,
    pub metadata: Metadata,
    pub recorded_at: Timestamp,
}

impl StoredEvent {
    /// The event this build reads from it (an older schema version upcast).
    pub fn decode(self) -> Result<RecordedEvent, StoreError> {
        let position = self.position;
        Ok(RecordedEvent {
            position,
            event_id: self.event_id,
            stream: self.stream,
            version: self.version,
            recorded_at: self.recorded_at,
            event: DomainEvent::decode(&self.event_type, self.schema_version, &self.payload)
                .map_err(|source| StoreError::Decode { position, source })?,
            metadata: self.metadata,
        })
    }

    /// The line of an export that holds it. An event this build cannot read is not exported:
    /// `import` would refuse it, and the export would not be the archive it claims to be.
    pub fn export(self) -> Result<ExportedEvent, StoreError> {
        let position = self.position;
        DomainEvent::decode(&self.event_type, self.schema_version, &self.payload)
            .map_err(|source| StoreError::Decode { position, source })?;
        let data = RawValue::from_string(self.payload).map_err(|e| {
            StoreError::Corrupt(format!("event at position {position}: its payload is not JSON: {e}"))
        })?;
        Ok(ExportedEvent {
            position: position.get(),
            event_id: self.event_id,
            stream: self.stream,
            version: self.version.get(),
            event_type: self.event_type,
            schema_version: self.schema_version,
            data,
            metadata: ExportedMetadata {
                correlation_id: self.metadata.correlation_id,
                causation_id: self.metadata.causation_id,
                idempotency_key: self.metadata.idempotency_key,
            },
            recorded_at: self.recorded_at,
        })
    }
}

/// The cursor of the event at `position`, or of the place where it will be (issue 12). On the
/// stores of today it is the decimal position; clients must not rely on that (a store whose log
/// commits out of position order carries more).
pub fn cursor(position: Position) -> Cursor {
    Cursor::try_from(position.to_string()).expect("a decimal number is a valid cursor")
}

/// The first position a cursor reads from; `None` for one no store gave out (positions start at 1).
pub fn position(cursor: &Cursor) -> Option<Position> {
    cursor.as_str().parse::<i64>().ok().filter(|position| *position >= 1).map(Position)
}

/// Applies one order event to an order's read-model row, as SQLite's statements do: a placed
/// order is inserted (once: the id is unique), the others update the row if there is one. `at`
/// is kept to the millisecond, as the stores keep it. For the backends that project in memory
/// before they write the rows (memory, PostgreSQL).
pub fn apply_order_event(
    row: &mut Option<OrderView>,
    order: OrderId,
    event: &OrderEvent,
    at: Timestamp,
) -> Result<(), StoreError> {
    let at = Timestamp::from_millisecond(at.as_millisecond()).unwrap_or(at);
    if let OrderEvent::Placed { user, total } = event {
        if row.is_some() {
            return Err(StoreError::Failed(format!("order {order} is in the read model already"), None));
        }
        *row = Some(OrderView {
            id: order,
            user: user.as_str().to_owned(),
            total: total.get(),
            status: OrderStatus::Pending,
            cancel_reason: None,
            created_at: at,
            updated_at: at,
            approved_at: None,
            delivered_at: None,
            cancelled_at: None,
        });
        return Ok(());
    }
    let Some(view) = row else { return Ok(()) };
    view.updated_at = at;
    match event {
        OrderEvent::Placed { .. } => {}
        OrderEvent::Approved => {
            view.status = OrderStatus::Approved;
            view.approved_at = Some(at);
        }
        OrderEvent::Delivered => {
            view.status = OrderStatus::Delivered;
            view.delivered_at = Some(at);
        }
        OrderEvent::Cancelled { reason } => {
            view.status = OrderStatus::Cancelled;
            view.cancel_reason = Some(*reason);
            view.cancelled_at = Some(at);
        }
    }
    Ok(())
}

/// Why the store could not do what it was asked, in words no driver owns.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended to the stream since it was read: decide again on the new state.
    #[error("stream {stream} moved on while deciding (expected version {expected})")]
    Conflict { stream: StreamId, expected: Version },
    #[error(
        "the database was written by a newer version of orders (schema {found}; this build knows up to {supported}); \
         upgrade orders or point it at another data directory"
    )]
    NewerSchema { found: i64, supported: i64 },
    #[error("event at position {position} cannot be read: {source}")]
    Decode { position: Position, source: DecodeError },
    /// A stored value is not what the schema says (a row edited by hand, a bug).
    #[error("the database is inconsistent: {0}")]
    Corrupt(String),
    /// The database itself is damaged (a page of the file, not a value in it).
    #[error("{0}")]
    Damaged(String, #[source] Option<Cause>),
    /// A passing fault: the disk is full, the database is locked or cannot be written; waiting
    /// it out may help. `reason` says it for people, `detail` is the backend's own words.
    #[error("{detail}")]
    Unavailable {
        reason: &'static str,
        detail: String,
        #[source]
        cause: Option<Cause>,
    },
    /// The backend rolled the whole transaction back by itself (after a full disk or an I/O error).
    #[error("the transaction was rolled back after: {0}")]
    RolledBack(String),
    /// The store is closed: the daemon is shutting down.
    #[error("the store is closed: the daemon is shutting down")]
    Closed,
    /// Anything else the backend reports: a bug more likely than a fault.
    #[error("{0}")]
    Failed(String, #[source] Option<Cause>),
    /// The backend does not do this; the message says what to use instead.
    #[error("{0}")]
    Unsupported(String),
    /// The database file is a symlink, no regular file, or cannot be opened.
    #[error(transparent)]
    File(#[from] crate::files::FileError),
}

/// What the driver gave as the cause of its own error, kept as the source of a classified one:
/// a report of the whole chain (`{:#}`, as the start-up prints it) reads as it did when the
/// driver's error was carried whole.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Cause(pub String);

impl StoreError {
    /// Whether the error says the database itself is damaged (for `check` to report, not fail on).
    pub fn is_damage(&self) -> bool {
        matches!(self, StoreError::Damaged(..) | StoreError::Decode { .. })
    }
}

/// A backend: the write side of the store and what the daemon does with it at start-up. The
/// writer thread owns it; every method may block.
pub trait Store: Send + 'static {
    /// What the database says about its identity, read before [`migrate`](Self::migrate) (an
    /// older schema has none, a new database nothing at all).
    fn found(&mut self) -> Result<Found, StoreError>;

    /// Brings the schema to the newest this build knows; refuses a newer one.
    fn migrate(&mut self) -> Result<(), StoreError>;

    /// The store's identity: the one it has, or a new one when it has none or `mint` asks.
    fn ensure_identity(&mut self, mint: bool) -> Result<StoreId, StoreError>;

    /// The newest position (`START` for an empty log).
    fn head(&mut self) -> Result<Position, StoreError>;

    /// The time recorded with the newest event (`None` for an empty log).
    fn newest_recorded_at(&mut self) -> Result<Option<Timestamp>, StoreError>;

    /// The last position the read model reflects.
    fn checkpoint(&mut self) -> Result<Position, StoreError>;

    /// Applies the next `chunk` events past the checkpoint to the read model and moves the
    /// checkpoint, in one transaction (a catch-up killed halfway resumes there). `None` when
    /// nothing was left; else how many events it read.
    fn catch_up_chunk(&mut self, chunk: usize) -> Result<Option<u64>, StoreError>;

    /// The open saga steps, as stored (the sagas decode them).
    fn open_steps(&mut self) -> Result<OpenSteps, StoreError>;

    /// Runs every unit of `batch` in one transaction and commits it once. A unit that fails
    /// is undone alone (how — savepoints, or running the rest again — is the backend's
    /// policy); the read model's checkpoint moves to the batch's last event in the same
    /// transaction. An error means nothing of the batch was stored.
    fn write(&mut self, batch: &mut dyn Batch) -> Result<(), StoreError>;

    /// Starts rebuilding the read model into a fresh place beside the live one (`check`: a
    /// scratch one, compared at the end and never swapped in). Returns the log's head.
    fn rebuild_start(&mut self, check: bool) -> Result<Position, StoreError>;

    /// Applies the next `chunk` events after `after` to the rebuild in one transaction; the
    /// chunk that reaches the end of the log finishes it in that same transaction (the swap
    /// is atomic: nothing can be appended between the last event applied and the swap).
    fn rebuild_chunk(
        &mut self,
        check: bool,
        after: Position,
        chunk: usize,
    ) -> Result<RebuildChunk, StoreError>;

    /// Drops an unfinished rebuild; the live read model stays as it was.
    fn rebuild_abandon(&mut self, check: bool) -> Result<(), StoreError>;

    /// Loads a log recorded elsewhere (`orders import`) in one transaction: `load` inserts its
    /// events as they were stored, projects them, and opens the saga steps they leave open, then
    /// says whether to keep it all (`false`, or an error: nothing is kept). The read model's
    /// checkpoint moves to the last event in the same transaction. Returns what `load` said.
    fn import(
        &mut self,
        load: &mut dyn FnMut(&mut dyn ImportTx) -> Result<bool, StoreError>,
    ) -> Result<bool, StoreError>;

    /// Drops what an interrupted rebuild left behind (the daemon died while it ran); whether
    /// there was anything.
    fn drop_leftovers(&mut self) -> Result<bool, StoreError>;

    /// Where queries get their read snapshots.
    fn reads(&self) -> Result<Box<dyn ReadSource>, StoreError>;

    /// Work the backend wants done now and then, away from the writer (SQLite: copying the WAL
    /// back into the database); `None` if it needs none.
    fn upkeep(&self) -> Result<Option<Box<dyn Upkeep>>, StoreError>;

    /// The daemon's part in a store several daemons share; `None` for a store only this daemon
    /// opens (SQLite's file is locked to one).
    fn cluster(&self) -> Result<Option<Box<dyn Cluster>>, StoreError> {
        Ok(None)
    }
}

/// What a store shared by several daemons (PostgreSQL, issue 20) gives each of them, on a
/// connection of its own, from a blocking thread: wake-ups when another daemon commits, the
/// heartbeat and the list of daemons, and the saga steps another daemon left behind.
pub trait Cluster: Send + 'static {
    /// Waits until another daemon announces a commit, or `timeout`; whether one was announced.
    fn wait(&mut self, timeout: std::time::Duration) -> Result<bool, StoreError>;

    /// Says this daemon is alive; the daemons sharing the store, this one among them.
    fn heartbeat(&mut self) -> Result<Vec<ClusterDaemon>, StoreError>;

    /// Saga steps no live daemon is carrying out: deliveries overdue by more than `grace`, and
    /// payment steps whose lease expired — those are claimed for this daemon, with a new lease.
    fn orphaned_steps(&mut self, grace: std::time::Duration) -> Result<OpenSteps, StoreError>;

    /// Removes this daemon from the list (a clean stop).
    fn leave(&mut self);
}

/// Background work of a backend, run a moment after commits on a blocking thread.
pub trait Upkeep: Send + 'static {
    fn after_commits(&mut self) -> Result<(), StoreError>;
}

/// One chunk of a rebuild: how many events it read, the last position it applied, and at the
/// end of the log what the rebuild found.
#[derive(Debug)]
pub struct RebuildChunk {
    pub read: usize,
    pub last: Position,
    pub finished: Option<Rebuilt>,
}

/// A finished rebuild: the orders in the read model and, for a check, how the live one differs.
#[derive(Debug, Default)]
pub struct Rebuilt {
    pub orders: u64,
    pub differences: u64,
    pub examples: Vec<orders_shared::protocol::Difference>,
}

/// The units of work of one batch, as the engine runs them. The backend calls [`run`](Self::run)
/// for each unit in order, inside its transaction, and may run the batch again from the start
/// after [`restart`](Self::restart).
pub trait Batch {
    /// How many units of work it has.
    fn units(&self) -> usize;

    /// Every stream and idempotency key the batch's units read, as far as the commands tell:
    /// a backend on a networked database may load them in one round trip before the first unit.
    fn wants(&self) -> Wants;

    /// Runs unit `index` in `tx`; its answer stays with the batch.
    fn run(&mut self, index: usize, tx: &mut dyn WriteTx) -> Outcome;

    /// Unit `index`'s writes could not be kept (the backend failed to keep them): it is
    /// answered with `error`, and its events are forgotten.
    fn fail(&mut self, index: usize, error: StoreError);

    /// Forgets every answer: the backend rolled the transaction back and runs the batch again.
    fn restart(&mut self);

    /// The last position the kept units recorded: the read model's checkpoint moves there.
    fn last_position(&self) -> Option<Position>;

    /// The database's time at the start of the batch's transaction, from a backend whose
    /// clock is the database's (PostgreSQL): the batch stamps its events with it, never before
    /// the newest time the log holds. Called before the first unit runs.
    fn database_time(&mut self, now: Timestamp) {
        let _ = now;
    }

    /// The backend committed the batch's transaction, which took `took` (its fsync, mostly):
    /// for the metrics (issue 16). A backend that cannot tell does not call it.
    fn committed(&mut self, took: std::time::Duration) {
        let _ = took;
    }

    /// The backend waited `took` for its turn among the writers of several daemons sharing the
    /// store (issue 20): for the metrics. Only such a backend calls it.
    fn waited_for_writers(&mut self, took: std::time::Duration) {
        let _ = took;
    }
}

/// What a batch's units read.
#[derive(Debug, Default)]
pub struct Wants {
    pub streams: Vec<StreamId>,
    pub idempotency_keys: Vec<String>,
}

/// How a unit of work ended, for the backend to keep or undo its writes.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Its writes are to be kept.
    Done,
    /// Refused before it wrote anything: nothing to undo.
    Refused { why: String },
    /// Failed after writing: its writes must be undone. With `conflict`, a stream moved on
    /// meanwhile and running the unit again may succeed.
    Failed { why: String, conflict: bool },
}

/// One batch's transaction, as a unit of work sees it: everything it reads is as of its
/// own writes and those of the units before it.
pub trait WriteTx {
    /// Every event of one stream, oldest first.
    fn read_stream(&mut self, stream: StreamId) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The event recorded with a client's idempotency key, if any.
    fn find_by_idempotency_key(&mut self, key: &str) -> Result<Option<RecordedEvent>, StoreError>;

    /// Appends events to a stream whose last version the caller saw as `expected` ([`Version::NONE`]
    /// for a new stream), at time `now`. Fails with [`StoreError::Conflict`] if the stream moved on.
    fn append(
        &mut self,
        stream: StreamId,
        expected: Version,
        events: &[DomainEvent],
        metadata: &Metadata,
        now: Timestamp,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Applies a recorded event to the read model.
    fn project(&mut self, event: &RecordedEvent) -> Result<(), StoreError>;

    /// One order as the read model shows it now.
    fn order(&mut self, id: OrderId) -> Result<Option<OrderView>, StoreError>;

    /// Opens the payment saga's step: a payment awaiting the provider.
    fn open_payment_request(
        &mut self,
        order: OrderId,
        amount: Total,
        at: Timestamp,
    ) -> Result<(), StoreError>;

    fn close_payment_request(&mut self, order: OrderId) -> Result<(), StoreError>;

    /// Whether another daemon has taken the order's payment step over (its lease expired and it
    /// claimed the step): this daemon's decision is then not recorded. Never, on a store only
    /// one daemon writes.
    fn payment_taken_over(&mut self, order: OrderId) -> Result<bool, StoreError> {
        let _ = order;
        Ok(false)
    }

    /// Arms the delivery saga's durable timer.
    fn set_delivery_timer(&mut self, order: OrderId, due_at: Timestamp) -> Result<(), StoreError>;

    fn clear_delivery_timer(&mut self, order: OrderId) -> Result<(), StoreError>;
}

/// An import's transaction (see [`Store::import`]).
pub trait ImportTx {
    /// The newest position: an import goes into an empty store only.
    fn head(&mut self) -> Result<Position, StoreError>;

    /// Inserts an event as it was stored elsewhere: its position (the next one), id, version,
    /// payload and time kept.
    fn insert(&mut self, event: &StoredEvent) -> Result<(), StoreError>;

    /// Applies an inserted event to the read model.
    fn project(&mut self, event: &RecordedEvent) -> Result<(), StoreError>;

    /// Opens a payment saga's step, as [`WriteTx::open_payment_request`] does.
    fn open_payment_request(
        &mut self,
        order: OrderId,
        amount: Total,
        at: Timestamp,
    ) -> Result<(), StoreError>;

    /// Arms a delivery saga's timer, as [`WriteTx::set_delivery_timer`] does.
    fn set_delivery_timer(&mut self, order: OrderId, due_at: Timestamp) -> Result<(), StoreError>;
}

/// Where queries get read snapshots: a pool of connections, or the memory itself. Shared by
/// every query; [`close`](Self::close) lets go of what it holds, so that the writer closes last.
pub trait ReadSource: Send + Sync + 'static {
    /// Runs `query` on a snapshot, on the calling (blocking) thread.
    fn with_reads(&self, query: &mut dyn FnMut(&mut dyn Reads)) -> Result<(), StoreError>;

    /// Lets go of every idle connection; a read after it opens a new one.
    fn close(&self);
}

/// The named read queries, each on one consistent snapshot.
pub trait Reads {
    /// One order as the read model shows it.
    fn order(&mut self, id: OrderId) -> Result<Option<OrderView>, StoreError>;

    /// A page of orders, newest first, filtered as asked.
    fn list(&mut self, request: &ListRequest) -> Result<OrderPage, StoreError>;

    /// How many orders the filters of a list request match, its limit and cursor aside
    /// (`list --count`: it reads every matching row).
    fn count_orders(&mut self, request: &ListRequest) -> Result<u64, StoreError>;

    /// The orders whose id ends with `suffix` — at least
    /// [`MIN_DIGITS`](orders_shared::short_id::MIN_DIGITS) lowercase hex digits, dashes left
    /// out — in id order, at most `limit` of them (short ids, issue 18).
    fn ids_ending_with(&mut self, suffix: &str, limit: usize) -> Result<Vec<OrderId>, StoreError>;

    /// Every event of an order's streams (order, payment, delivery) in log order, as of one
    /// commit. The log alone: `history` must show it even when the read-model row is unreadable.
    fn history(&mut self, id: OrderId) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The same, and the order's read-model row, as of one commit (what `watch` follows).
    fn watched(&mut self, id: OrderId) -> Result<(Vec<RecordedEvent>, Option<OrderView>), StoreError>;

    /// Up to `limit` events after `after`, in log order, and the head, as of one commit.
    fn events(&mut self, after: Position, limit: usize)
    -> Result<(Vec<RecordedEvent>, Position), StoreError>;

    /// Up to `limit` events after `after`, in log order, exactly as stored (what `export`
    /// writes), and the head, as of one commit.
    fn stored_events(
        &mut self,
        after: Position,
        limit: usize,
    ) -> Result<(Vec<StoredEvent>, Position), StoreError>;

    /// What `status` counts.
    fn counts(&mut self) -> Result<Counts, StoreError>;

    /// How far behind the read model and the sagas' open steps are, for the metrics (issue 16).
    fn backlog(&mut self) -> Result<Backlog, StoreError>;

    /// Whether a saga step's row is still stored.
    fn step_stored(&mut self, kind: StepKind, key: &StoredValue) -> Result<bool, StoreError>;

    /// The checker's walk over the whole store: the backend's own integrity check, then each
    /// order with everything stored about it, then what belongs to no order.
    fn walk(&mut self, visit: &mut dyn FnMut(Walking)) -> Result<Walked, StoreError>;

    /// A consistent copy of the whole store, as of one commit, into `into`: an empty file the
    /// caller made (owner-only) and renames into place (`crate::backup`). Writers go on
    /// meanwhile. Returns the events and orders the copy holds, counted in the copy. A backend
    /// whose database is backed up by its own tools (a server's dumps and replicas) says so
    /// with [`StoreError::Unsupported`].
    fn backup(&mut self, into: &Path) -> Result<(u64, u64), StoreError>;
}

/// What `status` counts, as of one commit.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub head: Position,
    pub orders: u64,
    pub pending_payments: u64,
    pub pending_deliveries: u64,
    pub newest: Option<Timestamp>,
}

/// How far behind the read model and the sagas' open steps are, as of one commit.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// The newest position of the log.
    pub head: Position,
    /// The last position the read model reflects.
    pub checkpoint: Position,
    /// Open saga steps: payments awaiting a decision, deliveries awaiting their due time.
    pub open_payments: u64,
    pub open_deliveries: u64,
    /// When the oldest open payment step was requested.
    pub oldest_payment: Option<Timestamp>,
    /// When the oldest open delivery step was scheduled: its order's approval.
    pub oldest_delivery: Option<Timestamp>,
    /// The earliest due time of an open delivery.
    pub earliest_due: Option<Timestamp>,
}

/// The two kinds of open saga step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StepKind {
    /// A payment awaiting the provider's decision.
    Payment,
    /// A delivery awaiting its due time.
    Delivery,
}

/// A value as a store holds it where the daemon wrote a typed one: what was found in a row
/// edited by hand or damaged must be reported as it is, not guessed at.
#[derive(Clone, Debug, PartialEq)]
pub enum StoredValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

impl StoredValue {
    pub fn text(text: &str) -> StoredValue {
        StoredValue::Text(text.as_bytes().to_vec())
    }
}

impl fmt::Display for StoredValue {
    /// As text for a report.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoredValue::Text(text) => f.write_str(&String::from_utf8_lossy(text)),
            StoredValue::Integer(n) => n.fmt(f),
            StoredValue::Real(x) => x.fmt(f),
            StoredValue::Null => f.write_str("NULL"),
            StoredValue::Blob(bytes) => write!(f, "a blob of {} bytes", bytes.len()),
        }
    }
}

/// The open saga steps as stored.
#[derive(Debug, Default)]
pub struct OpenSteps {
    pub payments: Vec<StoredPayment>,
    pub deliveries: Vec<StoredDelivery>,
}

/// A stored payment request, oldest first.
#[derive(Debug, Clone)]
pub struct StoredPayment {
    pub order: StoredValue,
    pub amount: StoredValue,
    /// Whether its order is in the log.
    pub known: bool,
}

/// A stored delivery timer.
#[derive(Debug, Clone)]
pub struct StoredDelivery {
    pub order: StoredValue,
    pub due_at: StoredValue,
    /// Whether its order is in the log.
    pub known: bool,
    /// When the delivery was scheduled, as recorded with its newest `DeliveryScheduled`.
    pub scheduled_at: Option<Timestamp>,
}

/// What the checker's walk meets, in log order of the orders' first events.
#[derive(Debug)]
pub enum Walking {
    Order(Box<StoredOrder>),
    /// An order stream whose id does not parse.
    MalformedStream(String),
}

/// One order as the checker's walk finds it: its three streams, its open-step rows, and its
/// read-model row (a row that cannot be read is its error).
#[derive(Debug)]
pub struct StoredOrder {
    pub id: OrderId,
    pub order: Vec<RecordedEvent>,
    pub payment: Vec<RecordedEvent>,
    pub delivery: Vec<RecordedEvent>,
    /// The amount of its open payment request, if a row is stored.
    pub payment_row: Option<StoredValue>,
    /// The due time of its delivery timer, if a row is stored.
    pub timer_row: Option<StoredValue>,
    pub view: Result<Option<OrderView>, StoreError>,
}

/// What the checker's walk found besides the orders.
#[derive(Debug, Default)]
pub struct Walked {
    /// What the backend's own integrity check found, a line each; when any, the walk stopped
    /// there and nothing else is filled in.
    pub damage: Vec<String>,
    /// Streams of the payment or delivery context whose order is not in the log.
    pub orphan_streams: Vec<String>,
    /// The open steps, as [`Store::open_steps`] gives them.
    pub steps: OpenSteps,
    /// Read-model rows (their ids as stored) of no order in the log.
    pub stray_rows: Vec<String>,
    /// How many events the log holds, its head, and the read model's checkpoint.
    pub counted: u64,
    pub head: Position,
    pub checkpoint: Position,
}
