//! A batch of units of work in one PostgreSQL transaction, committed once (group commit).
//!
//! PostgreSQL aborts a whole transaction on any error, and every statement is a round trip, so
//! the batch is planned rather than run statement by statement as on SQLite:
//!
//! 1. One query reads the head and the database's clock (event times are the database's), one
//!    more every stream and idempotency key the batch [wants](crate::store::Batch::wants), one
//!    more the read-model rows of those orders.
//! 2. The units run against that state in memory: their appends, projections and saga steps
//!    are buffered, an expected version is checked against the stream as the batch knows it (a
//!    conflict is found without a failing statement), and a unit that fails after writing is
//!    undone alone by a journal — no savepoints, so no subtransactions.
//! 3. The buffers are written in a few statements (`unnest` of arrays: every event in one, every
//!    changed row in one, the saga steps, the checkpoint) and the transaction committed.
//!
//! A statement that fails when the buffers are written (a constraint the memory did not know of:
//! a row written by hand, say) fails the transaction; the batch is then run again one unit per
//! transaction, so that only the unit at fault is refused. Any error of the database while the
//! units run (a lost connection) fails the whole batch: nothing of it is stored.
//!
//! Several daemons may write the database (issue 20), one transaction at a time: each batch
//! takes the writers' lock first ([`sql::lock_writers`]), so positions are given here, from the
//! head read under it, and commit in position order; the primary key would refuse a position
//! given twice all the same.

use std::collections::{HashMap, HashSet};

use jiff::Timestamp;
use orders_shared::protocol::OrderView;
use orders_shared::{DomainEvent, OrderEvent, OrderId, StreamId, StreamKind, Total};
use postgres::Transaction;
use uuid::Uuid;

use super::projection::Rows;
use super::schema::ORDERS_TABLE;
use super::sql::{self, EVENT_COLUMNS, Statements};
use crate::store::{Batch, Metadata, Outcome, Position, RecordedEvent, StoreError, Version, WriteTx};

/// How often a unit is run after an optimistic-concurrency conflict, in all.
const MAX_ATTEMPTS: usize = 3;

/// SQLSTATE class 23, integrity constraint violations, which the classification keeps in the
/// error's text (`... (SQLSTATE 23505)`).
fn is_constraint(error: &StoreError) -> bool {
    error.to_string().contains("(SQLSTATE 23")
}

/// A commit whose outcome the database did not tell: the connection was lost as it committed.
/// The batch's last event says, once the database can be asked again, whether it was stored.
pub(super) struct Unknown {
    pub last: Option<(Position, Uuid)>,
    pub error: StoreError,
}

/// Writes the batch; `Ok(Some(_))` when its commit's outcome is unknown.
pub(super) fn write(
    client: &mut postgres::Client,
    statements: &mut Statements,
    batch: &mut dyn Batch,
    claimant: &Claimant<'_>,
) -> Result<Option<Unknown>, StoreError> {
    let all: Vec<usize> = (0..batch.units()).collect();
    match run(client, statements, batch, &all, claimant) {
        Ok(()) => Ok(None),
        Err(Failure::Committing(unknown)) => Ok(Some(unknown)),
        Err(Failure::Writing(error)) if is_constraint(&error) && all.len() > 1 => {
            tracing::warn!(%error, "a batch could not be written; running its commands one at a time");
            batch.restart();
            let mut units = all.into_iter();
            while let Some(index) = units.next() {
                match run(client, statements, batch, &[index], claimant) {
                    Ok(()) => {}
                    Err(Failure::Writing(error)) => batch.fail(index, error),
                    Err(Failure::Committing(unknown)) => return Ok(Some(unknown)),
                    Err(Failure::Database(error)) => {
                        // The units before were committed: their answers stand. This one and
                        // the rest are answered with the database's failure.
                        let text = error.to_string();
                        batch.fail(index, error);
                        for rest in units.by_ref() {
                            batch.fail(
                                rest,
                                StoreError::Unavailable {
                                    reason: "the database failed during the batch",
                                    detail: text.clone(),
                                    cause: None,
                                },
                            );
                        }
                    }
                }
            }
            Ok(None)
        }
        Err(Failure::Writing(error) | Failure::Database(error)) => Err(error),
    }
}

/// Why a batch was not committed.
enum Failure {
    /// Writing the buffers failed: a unit may be at fault.
    Writing(StoreError),
    /// The database failed otherwise: the whole batch is lost.
    Database(StoreError),
    /// The connection was lost during the commit: stored or not, the database will say.
    Committing(Unknown),
}

/// Runs the units `units` of `batch` in one transaction and commits them.
fn run(
    client: &mut postgres::Client,
    statements: &mut Statements,
    batch: &mut dyn Batch,
    units: &[usize],
    claimant: &Claimant<'_>,
) -> Result<(), Failure> {
    let mut tx = client.transaction().map_err(|e| Failure::Database(e.into()))?;
    let waiting = std::time::Instant::now();
    sql::lock_writers(statements, &mut tx).map_err(Failure::Database)?;
    batch.waited_for_writers(waiting.elapsed());
    let mut state = prepare(&mut tx, statements, batch, claimant).map_err(Failure::Database)?;
    for &index in units {
        run_unit(&mut tx, statements, &mut state, batch, index);
        if let Some(error) = state.broken.take() {
            return Err(Failure::Database(error));
        }
    }
    state.flush(&mut tx, statements, batch.last_position(), claimant).map_err(Failure::Writing)?;
    let last = state.events.last().map(|event| (event.position, event.event_id));
    let committing = std::time::Instant::now();
    if let Err(error) = tx.commit() {
        let error = StoreError::from(error);
        return Err(match (client.is_closed(), last) {
            (true, Some(_)) => Failure::Committing(Unknown { last, error }),
            _ => Failure::Database(error),
        });
    }
    batch.committed(committing.elapsed());
    Ok(())
}

/// Reads what the batch needs before its first unit: the head and the clock and the payment
/// steps of its orders that other daemons took over, the streams and keys it wants, and their
/// orders' rows. All of it under the writers' lock, before the first write.
fn prepare(
    tx: &mut Transaction<'_>,
    statements: &mut Statements,
    batch: &mut dyn Batch,
    claimant: &Claimant<'_>,
) -> Result<State, StoreError> {
    let wants = batch.wants();
    let paying: Vec<String> =
        wants.streams.iter().filter(|s| s.kind == StreamKind::Payment).map(|s| s.order.to_string()).collect();
    let row = statements.query_one(
        tx,
        "SELECT (SELECT coalesce(max(position), 0) FROM events), \
                (extract(epoch from clock_timestamp()) * 1000)::bigint, \
                ARRAY(SELECT order_id FROM payment_requests WHERE order_id = ANY($1) AND claimed_by <> $2)",
        &[&paying, &claimant.me],
    )?;
    let head = Position::new(row.try_get(0)?);
    let now = sql::time(row.try_get(1)?, || "the database's clock".to_owned())?;
    batch.database_time(now);
    let mut state = State::new(head);
    for order in row.try_get::<_, Vec<String>>(2)? {
        let id = order
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("payment step of '{order}': no order id")))?;
        state.taken_over.insert(id);
    }
    state.load(tx, statements, &wants.streams, &wants.idempotency_keys)?;
    let orders = wants.streams.iter().filter(|s| s.kind == StreamKind::Order).map(|s| s.order);
    state.rows.load(statements, tx, orders)?;
    Ok(state)
}

/// Runs one unit, again after a conflict; undoes it when it fails after writing.
fn run_unit(
    tx: &mut Transaction<'_>,
    statements: &mut Statements,
    state: &mut State,
    batch: &mut dyn Batch,
    index: usize,
) {
    for attempt in 1..=MAX_ATTEMPTS {
        let mark = state.mark();
        let outcome = batch.run(index, &mut Tx { tx, statements, state });
        match outcome {
            Outcome::Done => return,
            Outcome::Refused { .. } => {
                // Refused before writing; undo all the same should a read have loaded anything.
                state.undo(mark);
                return;
            }
            Outcome::Failed { why, conflict } => {
                state.undo(mark);
                if !(conflict && attempt < MAX_ATTEMPTS) || state.broken.is_some() {
                    return;
                }
                tracing::debug!(why, attempt, "retrying after a conflict");
            }
        }
    }
}

/// A saga step's row as the batch leaves it: written (`Some`) or deleted (`None`).
type Step<T> = Option<T>;

/// One undoable change of the batch's state.
enum Undo {
    /// A stream the batch had not known: forget it.
    NewStream(StreamId),
    /// A stream that had this many events.
    StreamLength(StreamId, usize),
    Key(String, Option<Option<RecordedEvent>>),
    Row(OrderId, Option<Option<OrderView>>, bool),
    Payment(OrderId, Option<Step<(i64, i64)>>),
    Timer(OrderId, Option<Step<i64>>),
}

/// Where a unit began, to undo it.
#[derive(Clone, Copy)]
struct Mark {
    journal: usize,
    events: usize,
    next: Position,
}

/// What the batch knows and has buffered.
struct State {
    next: Position,
    streams: HashMap<StreamId, Vec<RecordedEvent>>,
    keys: HashMap<String, Option<RecordedEvent>>,
    rows: Rows,
    /// The events appended, in position order.
    events: Vec<RecordedEvent>,
    payments: HashMap<OrderId, Step<(i64, i64)>>,
    timers: HashMap<OrderId, Step<i64>>,
    journal: Vec<Undo>,
    /// The database failed while a unit ran: the batch is lost.
    broken: Option<StoreError>,
    /// The orders among the batch's whose payment step another daemon has taken over (its lease).
    taken_over: HashSet<OrderId>,
}

/// This daemon among those writing the database: the payment steps it opens are leased to it
/// for `lease_ms`, and a decision of a step another daemon has taken over is not recorded.
pub(super) struct Claimant<'a> {
    pub me: &'a str,
    pub lease_ms: i64,
}

impl State {
    fn new(head: Position) -> State {
        State {
            next: head.next(),
            streams: HashMap::new(),
            keys: HashMap::new(),
            rows: Rows::new(ORDERS_TABLE),
            events: Vec::new(),
            payments: HashMap::new(),
            timers: HashMap::new(),
            journal: Vec::new(),
            broken: None,
            taken_over: HashSet::new(),
        }
    }

    /// Loads streams and idempotency keys in one query.
    fn load(
        &mut self,
        tx: &mut Transaction<'_>,
        statements: &mut Statements,
        streams: &[StreamId],
        keys: &[String],
    ) -> Result<(), StoreError> {
        let streams: Vec<StreamId> =
            streams.iter().filter(|s| !self.streams.contains_key(s)).copied().collect();
        let keys: Vec<&String> = keys.iter().filter(|k| !self.keys.contains_key(*k)).collect();
        if streams.is_empty() && keys.is_empty() {
            return Ok(());
        }
        let stream_texts: Vec<String> = streams.iter().map(ToString::to_string).collect();
        // Each condition alone when the other has nothing to find: an `OR` of the two makes the
        // planner combine both indexes for every call.
        let rows = match (stream_texts.is_empty(), keys.is_empty()) {
            (false, true) => statements.query(
                tx,
                &format!("SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ANY($1) ORDER BY position"),
                &[&stream_texts],
            )?,
            (true, false) => statements.query(
                tx,
                &format!("SELECT {EVENT_COLUMNS} FROM events WHERE idempotency_key = ANY($1) ORDER BY position"),
                &[&keys],
            )?,
            _ => statements.query(
                tx,
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ANY($1) OR idempotency_key = ANY($2) \
                     ORDER BY position"
                ),
                &[&stream_texts, &keys],
            )?,
        };
        for stream in streams {
            self.streams.insert(stream, Vec::new());
        }
        for key in keys {
            self.keys.insert(key.clone(), None);
        }
        for row in &rows {
            let event = sql::recorded_event(row)?;
            if let Some(key) = &event.metadata.idempotency_key
                && let Some(slot) = self.keys.get_mut(key)
            {
                *slot = Some(event.clone());
            }
            if let Some(events) = self.streams.get_mut(&event.stream) {
                events.push(event);
            }
        }
        Ok(())
    }

    fn mark(&self) -> Mark {
        Mark { journal: self.journal.len(), events: self.events.len(), next: self.next }
    }

    fn undo(&mut self, mark: Mark) {
        while self.journal.len() > mark.journal {
            match self.journal.pop().expect("longer than the mark") {
                Undo::NewStream(stream) => {
                    self.streams.remove(&stream);
                }
                Undo::StreamLength(stream, length) => {
                    if let Some(events) = self.streams.get_mut(&stream) {
                        events.truncate(length);
                    }
                }
                Undo::Key(key, before) => match before {
                    Some(before) => {
                        self.keys.insert(key, before);
                    }
                    None => {
                        self.keys.remove(&key);
                    }
                },
                Undo::Row(order, before, changed) => self.rows.restore(order, before, changed),
                Undo::Payment(order, before) => put_back(&mut self.payments, order, before),
                Undo::Timer(order, before) => put_back(&mut self.timers, order, before),
            }
        }
        self.events.truncate(mark.events);
        self.next = mark.next;
    }

    /// Writes the buffers: every event, every changed row, the saga steps, and the checkpoint
    /// at `last`, the last position the kept units recorded.
    fn flush(
        &mut self,
        tx: &mut Transaction<'_>,
        statements: &mut Statements,
        last: Option<Position>,
        claimant: &Claimant<'_>,
    ) -> Result<(), StoreError> {
        let events = event_arrays(&self.events);
        let rows = self.rows.take_changed();
        let (paid, closed) = split(&self.payments);
        let (payment_orders, values): (Vec<String>, Vec<(i64, i64)>) = paid.into_iter().unzip();
        let (amounts, requested): (Vec<i64>, Vec<i64>) = values.into_iter().unzip();
        let (armed, cleared) = split(&self.timers);
        let (timer_orders, due): (Vec<String>, Vec<i64>) = armed.into_iter().unzip();
        let last = last.map(Position::get);

        // One statement, whatever the batch holds: each table's writes in a data-modifying
        // `WITH` of its own (they touch different rows), the checkpoint last.
        let mut parts: Vec<String> = Vec::new();
        let mut params: Vec<sql::Param<'_>> = Vec::new();
        if events.len() > 0 {
            parts.push(format!("events_written AS ({})", events.sql(params.len() + 1)));
            params.extend(events.params());
        }
        if !rows.is_empty() {
            parts.push(format!("rows_written AS ({})", rows.sql(ORDERS_TABLE, params.len() + 1)));
            params.extend(rows.params());
        }
        if !payment_orders.is_empty() {
            let n = params.len() + 1;
            parts.push(format!(
                "payments_opened AS (INSERT INTO payment_requests \
                     (order_id, amount, requested_at, claimed_by, lease_until) \
                 SELECT o, a, r, ${}, r + ${} FROM unnest(${n}::text[], ${}::bigint[], ${}::bigint[]) AS t(o, a, r) \
                 ON CONFLICT (order_id) DO UPDATE SET amount = excluded.amount, requested_at = excluded.requested_at, \
                     claimed_by = excluded.claimed_by, lease_until = excluded.lease_until)",
                n + 3,
                n + 4,
                n + 1,
                n + 2
            ));
            params.extend([
                &payment_orders as sql::Param<'_>,
                &amounts,
                &requested,
                &claimant.me,
                &claimant.lease_ms,
            ]);
        }
        if !closed.is_empty() {
            parts.push(format!(
                "payments_closed AS (DELETE FROM payment_requests WHERE order_id = ANY(${}))",
                params.len() + 1
            ));
            params.push(&closed);
        }
        if !timer_orders.is_empty() {
            let n = params.len() + 1;
            parts.push(format!(
                "timers_armed AS (INSERT INTO delivery_timers (order_id, due_at) \
                 SELECT * FROM unnest(${n}::text[], ${}::bigint[]) ON CONFLICT (order_id) \
                 DO UPDATE SET due_at = excluded.due_at)",
                n + 1
            ));
            params.extend([&timer_orders as sql::Param<'_>, &due]);
        }
        if !cleared.is_empty() {
            parts.push(format!(
                "timers_cleared AS (DELETE FROM delivery_timers WHERE order_id = ANY(${}))",
                params.len() + 1
            ));
            params.push(&cleared);
        }
        let last_statement = match &last {
            Some(last) => {
                params.push(last);
                format!("UPDATE checkpoints SET position = ${} WHERE projection = 'orders'", params.len())
            }
            None if parts.is_empty() => return Ok(()),
            None => "SELECT 1".to_owned(),
        };
        let statement = if parts.is_empty() {
            last_statement
        } else {
            format!("WITH {} {last_statement}", parts.join(", "))
        };
        statements.execute(tx, &statement, &params)?;
        Ok(())
    }
}

fn put_back<T>(steps: &mut HashMap<OrderId, Step<T>>, order: OrderId, before: Option<Step<T>>) {
    match before {
        Some(before) => steps.insert(order, before),
        None => steps.remove(&order),
    };
}

/// The saga steps to write and the ones to delete, by order id.
fn split<T: Copy>(steps: &HashMap<OrderId, Step<T>>) -> (Vec<(String, T)>, Vec<String>) {
    let mut written = Vec::new();
    let mut deleted = Vec::new();
    for (order, step) in steps {
        match step {
            Some(value) => written.push((order.to_string(), *value)),
            None => deleted.push(order.to_string()),
        }
    }
    (written, deleted)
}

/// Recorded events as the arrays of one insert.
fn event_arrays(events: &[RecordedEvent]) -> EventArrays {
    let mut columns = EventArrays::default();
    for event in events {
        columns.push(
            event.position,
            event.event_id,
            event.stream,
            event.version,
            event.event.event_type(),
            event.event.schema_version(),
            event.event.payload(),
            &event.metadata,
            event.recorded_at,
        );
    }
    columns
}

/// Events as the arrays of one `INSERT ... SELECT FROM unnest(...)`.
#[derive(Default)]
pub(super) struct EventArrays {
    positions: Vec<i64>,
    ids: Vec<String>,
    streams: Vec<String>,
    versions: Vec<i64>,
    types: Vec<String>,
    schemas: Vec<i32>,
    payloads: Vec<String>,
    correlations: Vec<String>,
    causations: Vec<String>,
    keys: Vec<Option<String>>,
    times: Vec<i64>,
}

impl EventArrays {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn push(
        &mut self,
        position: Position,
        event_id: Uuid,
        stream: StreamId,
        version: Version,
        event_type: &str,
        schema_version: u32,
        payload: String,
        metadata: &Metadata,
        at: Timestamp,
    ) {
        self.positions.push(position.get());
        self.ids.push(event_id.to_string());
        self.streams.push(stream.to_string());
        self.versions.push(version.get());
        self.types.push(event_type.to_owned());
        self.schemas.push(i32::try_from(schema_version).unwrap_or(i32::MAX));
        self.payloads.push(payload);
        self.correlations.push(metadata.correlation_id.to_string());
        self.causations.push(metadata.causation_id.to_string());
        self.keys.push(metadata.idempotency_key.clone());
        self.times.push(at.as_millisecond());
    }

    pub(super) fn len(&self) -> usize {
        self.positions.len()
    }

    pub(super) fn insert(
        &self,
        tx: &mut impl postgres::GenericClient,
        statements: &mut Statements,
    ) -> Result<(), StoreError> {
        statements.execute(tx, &self.sql(1), &self.params())?;
        Ok(())
    }

    /// The insert of these events, its parameters numbered from `first`.
    pub(super) fn sql(&self, first: usize) -> String {
        let types =
            ["bigint", "text", "text", "bigint", "text", "integer", "text", "text", "text", "text", "bigint"];
        let arrays: Vec<String> =
            types.iter().enumerate().map(|(n, kind)| format!("${}::{kind}[]", first + n)).collect();
        format!("INSERT INTO events ({EVENT_COLUMNS}) SELECT * FROM unnest({})", arrays.join(", "))
    }

    /// The parameters of [`sql`](Self::sql), in its order.
    pub(super) fn params(&self) -> [sql::Param<'_>; 11] {
        [
            &self.positions,
            &self.ids,
            &self.streams,
            &self.versions,
            &self.types,
            &self.schemas,
            &self.payloads,
            &self.correlations,
            &self.causations,
            &self.keys,
            &self.times,
        ]
    }
}

/// The batch's transaction as one unit of work sees it.
struct Tx<'a, 't> {
    tx: &'a mut Transaction<'t>,
    statements: &'a mut Statements,
    state: &'a mut State,
}

impl Tx<'_, '_> {
    /// Notes a failure of the database: the batch is lost whatever the unit makes of it.
    fn note<T>(&mut self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        result.map_err(|error| {
            let text = error.to_string();
            self.state.broken.get_or_insert(error);
            StoreError::Failed(text, None)
        })
    }

    fn row_changing(&mut self, order: OrderId) {
        let before = self.state.rows.known(order).cloned();
        let changed = self.state.rows.was_changed(order);
        self.state.journal.push(Undo::Row(order, before, changed));
    }
}

impl WriteTx for Tx<'_, '_> {
    fn read_stream(&mut self, stream: StreamId) -> Result<Vec<RecordedEvent>, StoreError> {
        if !self.state.streams.contains_key(&stream) {
            let loaded = self.state.load(self.tx, self.statements, &[stream], &[]);
            self.note(loaded)?;
        }
        Ok(self.state.streams.get(&stream).cloned().unwrap_or_default())
    }

    fn find_by_idempotency_key(&mut self, key: &str) -> Result<Option<RecordedEvent>, StoreError> {
        if !self.state.keys.contains_key(key) {
            let loaded = self.state.load(self.tx, self.statements, &[], &[key.to_owned()]);
            self.note(loaded)?;
        }
        Ok(self.state.keys.get(key).cloned().flatten())
    }

    fn append(
        &mut self,
        stream: StreamId,
        expected: Version,
        events: &[DomainEvent],
        metadata: &Metadata,
        now: Timestamp,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // A stream the batch has not read is new if the caller expects it to be (orders get
        // fresh ids); the primary key and `UNIQUE (stream_id, version)` would refuse it if not.
        if expected != Version::NONE && !self.state.streams.contains_key(&stream) {
            self.read_stream(stream)?;
        }
        let current = self
            .state
            .streams
            .get(&stream)
            .and_then(|events| events.last())
            .map_or(Version::NONE, |e| e.version);
        if current != expected {
            return Err(StoreError::Conflict { stream, expected });
        }
        // A client's key names one order: a key the log holds already is a conflict, as the
        // unique index would say (the batch's wants have loaded it, unless a unit goes its own way).
        if let Some(key) = &metadata.idempotency_key
            && self.find_by_idempotency_key(key)?.is_some()
        {
            return Err(StoreError::Conflict { stream, expected });
        }
        let undo = match self.state.streams.get(&stream) {
            Some(events) => Undo::StreamLength(stream, events.len()),
            None => Undo::NewStream(stream),
        };
        self.state.journal.push(undo);
        if stream.kind == StreamKind::Order && expected == Version::NONE {
            // A new order (its id just minted): its payment and delivery streams are empty, and
            // the policies that react to its placing read them from here, not the database
            // (`UNIQUE (stream_id, version)` still guards the log).
            for kind in [StreamKind::Payment, StreamKind::Delivery] {
                let other = StreamId::new(kind, stream.order);
                if let std::collections::hash_map::Entry::Vacant(empty) = self.state.streams.entry(other) {
                    empty.insert(Vec::new());
                    self.state.journal.push(Undo::NewStream(other));
                }
            }
        }
        let now = Timestamp::from_millisecond(now.as_millisecond()).unwrap_or(now);
        let mut recorded = Vec::with_capacity(events.len());
        let mut version = expected;
        for event in events {
            version = version.next();
            let position = self.state.next;
            self.state.next = position.next();
            recorded.push(RecordedEvent {
                position,
                event_id: Uuid::now_v7(),
                stream,
                version,
                recorded_at: now,
                metadata: metadata.clone(),
                event: event.clone(),
            });
        }
        self.state.streams.entry(stream).or_default().extend(recorded.iter().cloned());
        if let Some(key) = &metadata.idempotency_key
            && let Some(first) = recorded.first()
        {
            let before = self.state.keys.insert(key.clone(), Some(first.clone()));
            self.state.journal.push(Undo::Key(key.clone(), before));
        }
        self.state.events.extend(recorded.iter().cloned());
        Ok(recorded)
    }

    fn project(&mut self, event: &RecordedEvent) -> Result<(), StoreError> {
        let DomainEvent::Order(order_event) = &event.event else { return Ok(()) };
        let order = event.stream.order;
        let placed = matches!(order_event, OrderEvent::Placed { .. });
        if self.state.rows.known(order).is_none() && !placed {
            let loaded = self.state.rows.load(self.statements, self.tx, [order]);
            self.note(loaded)?;
        }
        self.row_changing(order);
        self.state.rows.project(self.statements, self.tx, event)
    }

    fn order(&mut self, id: OrderId) -> Result<Option<OrderView>, StoreError> {
        let row = self.state.rows.get(self.statements, self.tx, id);
        self.note(row)
    }

    fn open_payment_request(
        &mut self,
        order: OrderId,
        amount: Total,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let before = self.state.payments.insert(order, Some((amount.get(), at.as_millisecond())));
        self.state.journal.push(Undo::Payment(order, before));
        Ok(())
    }

    fn payment_taken_over(&mut self, order: OrderId) -> Result<bool, StoreError> {
        Ok(self.state.taken_over.contains(&order))
    }

    fn close_payment_request(&mut self, order: OrderId) -> Result<(), StoreError> {
        let before = self.state.payments.insert(order, None);
        self.state.journal.push(Undo::Payment(order, before));
        Ok(())
    }

    fn set_delivery_timer(&mut self, order: OrderId, due_at: Timestamp) -> Result<(), StoreError> {
        let before = self.state.timers.insert(order, Some(due_at.as_millisecond()));
        self.state.journal.push(Undo::Timer(order, before));
        Ok(())
    }

    fn clear_delivery_timer(&mut self, order: OrderId) -> Result<(), StoreError> {
        let before = self.state.timers.insert(order, None);
        self.state.journal.push(Undo::Timer(order, before));
        Ok(())
    }
}
