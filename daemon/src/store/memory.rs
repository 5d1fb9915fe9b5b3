//! The in-memory backend: the whole store in the process's memory, for the engine's tests and
//! the model-based property test — the proof that the seam is real. It behaves as the SQLite
//! backend does on every method of the seam (the conformance suite holds both to it), and keeps
//! nothing when the process ends.
//!
//! Everything a commit changes lives in one `State`. Readers take the current state, an
//! `Arc`, and read it as long as they like: a consistent snapshot. The writer works on a copy
//! and swaps it in at the commit, so a read sees a batch entirely or not at all. Inside a batch
//! each unit keeps a journal of what it changed (a `Journal`); a unit that fails is undone from
//! it alone, the way a savepoint is rolled back. A rebuild fills a scratch read model the
//! writer alone sees, and the chunk that reaches the end of the log swaps it in with the same
//! commit. A commit copies the whole state (the events are shared, not copied): cheap for the
//! logs of tests, not meant for millions of events.
//!
//! What SQLite stores it stores the same way: times to the millisecond, each event through its
//! payload (what is read back is what decoding the stored payload gives), positions dense from 1,
//! an idempotency key at most once in the log.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use jiff::Timestamp;
use orders_shared::protocol::{Difference, ListRequest, OrderPage, OrderView};
use orders_shared::{DeliveryEvent, DomainEvent, OrderEvent, OrderId, StreamId, StreamKind, Total};
use uuid::Uuid;

use crate::identity::{Found, StoreId};
use crate::store::{
    Backlog, Batch, Counts, ImportTx, Metadata, OpenSteps, Outcome, Position, ReadSource, Reads,
    RebuildChunk, Rebuilt, RecordedEvent, StepKind, Store, StoreError, StoredDelivery, StoredEvent,
    StoredOrder, StoredPayment, StoredValue, Upkeep, Version, Walked, Walking, WriteTx,
};

/// How often a unit is run after an optimistic-concurrency conflict, in all (as SQLite does).
const MAX_ATTEMPTS: usize = 3;
/// How many differing orders a check report shows (it counts them all).
const MAX_EXAMPLES: usize = 20;

/// A store in memory. `MemoryStore::new()` is an empty store, migrated already.
pub struct MemoryStore {
    /// The committed state, shared with every reader; replaced whole at each commit.
    committed: Arc<Mutex<Arc<State>>>,
    /// The read model a replay builds, beside the live one (the writer's alone, as SQLite's
    /// `orders_rebuild` is until it is renamed).
    rebuild: Option<ReadModel>,
    /// The read model `replay --check` builds, compared at the end and never swapped in.
    check: Option<ReadModel>,
    /// A fault for tests: the next commit fails and stores nothing.
    fail_next_commit: bool,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore {
            committed: Arc::new(Mutex::new(Arc::new(State::default()))),
            rebuild: None,
            check: None,
            fail_next_commit: false,
        }
    }

    /// Makes the next commit (a batch, a catch-up or rebuild chunk) fail as a full disk would:
    /// [`StoreError::Unavailable`], and nothing of it stored.
    pub fn fail_next_commit(&mut self) {
        self.fail_next_commit = true;
    }

    /// The state as last committed.
    fn snapshot(&self) -> Arc<State> {
        Arc::clone(&self.committed.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Commits `state`: from now on every read sees it.
    fn commit(&mut self, state: State) -> Result<(), StoreError> {
        if std::mem::take(&mut self.fail_next_commit) {
            return Err(StoreError::Unavailable {
                reason: "the disk is full",
                detail: "the commit failed (a fault set by a test)".to_owned(),
                cause: None,
            });
        }
        *self.committed.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(state);
        Ok(())
    }

    /// The scratch read model of a rebuild.
    fn scratch(&mut self, check: bool) -> &mut Option<ReadModel> {
        if check { &mut self.check } else { &mut self.rebuild }
    }
}

/// Everything a commit changes.
#[derive(Clone, Debug, Default)]
struct State {
    identity: Option<StoreId>,
    log: Log,
    read_model: ReadModel,
    /// The last position the read model reflects.
    checkpoint: Position,
    /// The open payment requests: amount, and when requested (ms).
    payments: BTreeMap<OrderId, PaymentRow>,
    /// The delivery timers: when each is due.
    timers: BTreeMap<OrderId, Timestamp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PaymentRow {
    amount: Total,
    requested_at: Timestamp,
}

/// The event log, with the indexes SQLite keeps on its table.
#[derive(Clone, Debug, Default)]
struct Log {
    /// The event at position `p` is at index `p - 1`.
    events: Vec<Arc<RecordedEvent>>,
    /// Each stream's events (their indexes), oldest first.
    streams: HashMap<StreamId, Vec<usize>>,
    /// The event that holds each idempotency key.
    keys: HashMap<String, usize>,
}

impl Log {
    fn head(&self) -> Position {
        Position::new(self.events.len() as i64)
    }

    fn newest_recorded_at(&self) -> Option<Timestamp> {
        self.events.last().map(|event| event.recorded_at)
    }

    /// Up to `limit` events after `after`, in log order.
    fn after(&self, after: Position, limit: usize) -> &[Arc<RecordedEvent>] {
        let start = usize::try_from(after.get()).unwrap_or(0).min(self.events.len());
        let end = start.saturating_add(limit).min(self.events.len());
        &self.events[start..end]
    }

    fn stream(&self, stream: StreamId) -> Vec<RecordedEvent> {
        self.streams
            .get(&stream)
            .map(|indexes| indexes.iter().map(|&index| RecordedEvent::clone(&self.events[index])).collect())
            .unwrap_or_default()
    }

    fn version(&self, stream: StreamId) -> Version {
        self.streams
            .get(&stream)
            .and_then(|indexes| indexes.last())
            .map_or(Version::NONE, |&index| self.events[index].version)
    }

    /// Whether the order's stream is in the log.
    fn has_order(&self, order: OrderId) -> bool {
        self.streams.contains_key(&StreamId::order(order))
    }

    fn append(
        &mut self,
        stream: StreamId,
        expected: Version,
        events: &[DomainEvent],
        metadata: &Metadata,
        now: Timestamp,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let conflict = || StoreError::Conflict { stream, expected };
        if self.version(stream) != expected {
            return Err(conflict());
        }
        // SQLite's unique index on the key: a second event with it is refused the same way.
        if let Some(key) = &metadata.idempotency_key
            && (self.keys.contains_key(key) || events.len() > 1)
        {
            return Err(conflict());
        }
        let mut recorded = Vec::with_capacity(events.len());
        let mut version = expected;
        for event in events {
            version = version.next();
            let answer = RecordedEvent {
                position: self.head().next(),
                event_id: Uuid::now_v7(),
                stream,
                version,
                recorded_at: now,
                metadata: metadata.clone(),
                event: event.clone(),
            };
            // What is read back is what SQLite reads back: the stored payload, decoded; the time
            // to the millisecond.
            let decoded = DomainEvent::decode(event.event_type(), event.schema_version(), &event.payload())
                .map_err(|source| StoreError::Decode { position: answer.position, source })?;
            let stored = RecordedEvent { recorded_at: to_millisecond(now), event: decoded, ..answer.clone() };
            let index = self.events.len();
            self.events.push(Arc::new(stored));
            self.streams.entry(stream).or_default().push(index);
            if let Some(key) = &metadata.idempotency_key {
                self.keys.insert(key.clone(), index);
            }
            recorded.push(answer);
        }
        Ok(recorded)
    }

    /// Appends an event recorded elsewhere (an import) at the next position, as SQLite stores it.
    fn insert_stored(&mut self, stored: &StoredEvent) -> Result<(), StoreError> {
        if stored.position != self.head().next() {
            return Err(StoreError::Failed(
                format!("position {} where {} was due", stored.position, self.head().next()),
                None,
            ));
        }
        if stored.version != self.version(stored.stream).next() {
            return Err(StoreError::Conflict { stream: stored.stream, expected: stored.version });
        }
        if let Some(key) = &stored.metadata.idempotency_key
            && self.keys.contains_key(key)
        {
            return Err(StoreError::Conflict { stream: stored.stream, expected: stored.version });
        }
        let mut event = stored.clone().decode()?;
        event.recorded_at = to_millisecond(event.recorded_at);
        let index = self.events.len();
        self.streams.entry(event.stream).or_default().push(index);
        if let Some(key) = &event.metadata.idempotency_key {
            self.keys.insert(key.clone(), index);
        }
        self.events.push(Arc::new(event));
        Ok(())
    }

    /// Forgets every event past the first `len` (a unit's appends, undone).
    fn truncate(&mut self, len: usize) {
        while self.events.len() > len {
            let Some(event) = self.events.pop() else { break };
            let index = self.events.len();
            if let Some(indexes) = self.streams.get_mut(&event.stream) {
                indexes.retain(|&i| i != index);
                if indexes.is_empty() {
                    self.streams.remove(&event.stream);
                }
            }
            if let Some(key) = &event.metadata.idempotency_key
                && self.keys.get(key) == Some(&index)
            {
                self.keys.remove(key);
            }
        }
    }
}

/// An import's transaction: a copy of the state, committed whole or dropped.
struct ImportState<'s> {
    state: &'s mut State,
}

impl ImportTx for ImportState<'_> {
    fn head(&mut self) -> Result<Position, StoreError> {
        Ok(self.state.log.head())
    }

    fn insert(&mut self, event: &StoredEvent) -> Result<(), StoreError> {
        self.state.log.insert_stored(event)
    }

    fn project(&mut self, event: &RecordedEvent) -> Result<(), StoreError> {
        self.state.read_model.project(event)
    }

    fn open_payment_request(
        &mut self,
        order: OrderId,
        amount: Total,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let row = PaymentRow { amount, requested_at: to_millisecond(at) };
        if self.state.payments.insert(order, row).is_some() {
            return Err(StoreError::Failed(
                format!("order {order} has an open payment request already"),
                None,
            ));
        }
        Ok(())
    }

    fn set_delivery_timer(&mut self, order: OrderId, due_at: Timestamp) -> Result<(), StoreError> {
        if self.state.timers.insert(order, to_millisecond(due_at)).is_some() {
            return Err(StoreError::Failed(format!("order {order} has a delivery timer already"), None));
        }
        Ok(())
    }
}

/// A time as SQLite keeps it: whole milliseconds.
fn to_millisecond(time: Timestamp) -> Timestamp {
    Timestamp::from_millisecond(time.as_millisecond()).unwrap_or(time)
}

/// The read model: one row per order.
#[derive(Clone, Debug, Default, PartialEq)]
struct ReadModel {
    orders: BTreeMap<OrderId, OrderView>,
}

impl ReadModel {
    /// Applies one order event, as SQLite's statements do.
    fn apply(&mut self, order: OrderId, event: &OrderEvent, at: Timestamp) -> Result<(), StoreError> {
        let mut row = self.orders.remove(&order);
        let applied = super::apply_order_event(&mut row, order, event, at);
        if let Some(view) = row {
            self.orders.insert(order, view);
        }
        applied
    }

    /// Applies a just-recorded event (the order events; the others show through the order's).
    fn project(&mut self, recorded: &RecordedEvent) -> Result<(), StoreError> {
        match &recorded.event {
            DomainEvent::Order(event) => self.apply(recorded.stream.order, event, recorded.recorded_at),
            DomainEvent::Payment(_) | DomainEvent::Delivery(_) => Ok(()),
        }
    }

    /// Applies up to `limit` events of the log after `after` (the order events of order
    /// streams): how many it read, and the last position.
    fn apply_log(
        &mut self,
        log: &Log,
        after: Position,
        limit: usize,
    ) -> Result<(usize, Position), StoreError> {
        let events = log.after(after, limit);
        for recorded in events {
            if let (StreamKind::Order, DomainEvent::Order(event)) = (recorded.stream.kind, &recorded.event) {
                self.apply(recorded.stream.order, event, recorded.recorded_at)?;
            }
        }
        Ok((events.len(), events.last().map_or(after, |event| event.position)))
    }

    fn list(&self, request: &ListRequest) -> OrderPage {
        let limit =
            request.limit.unwrap_or(ListRequest::DEFAULT_LIMIT).clamp(1, ListRequest::MAX_LIMIT) as usize;
        let orders = self.list_all(request);
        let more = orders.len() > limit;
        OrderPage { orders: orders.into_iter().take(limit).cloned().collect(), more }
    }

    /// Every order a request's filters and cursor keep, newest first.
    fn list_all(&self, request: &ListRequest) -> Vec<&OrderView> {
        // Orders older than the cursor, in (created_at, id) order; a cursor naming no order
        // gives an empty page.
        let before = match request.before {
            Some(id) => match self.orders.get(&id) {
                Some(cursor) => Some(sort_key(cursor)),
                None => return Vec::new(),
            },
            None => None,
        };
        let mut orders: Vec<&OrderView> = self
            .orders
            .values()
            .filter(|view| request.user.as_ref().is_none_or(|user| view.user == user.as_str()))
            .filter(|view| request.status.is_none_or(|status| view.status == status))
            .filter(|view| {
                request.since.is_none_or(|since| view.created_at.as_millisecond() >= since.as_millisecond())
            })
            .filter(|view| before.is_none_or(|before| sort_key(view) < before))
            .collect();
        orders.sort_unstable_by_key(|view| std::cmp::Reverse(sort_key(view)));
        orders
    }
}

/// The order of a page: creation time, then id (an id's order is that of its text).
fn sort_key(view: &OrderView) -> (i64, OrderId) {
    (view.created_at.as_millisecond(), view.id)
}

/// A row as `replay --check` shows it: its columns as SQLite's `json_object` gives them.
fn row_json(view: &OrderView) -> serde_json::Value {
    let ms = |time: Option<Timestamp>| time.map(|time| time.as_millisecond());
    serde_json::json!({
        "id": view.id.to_string(),
        "user": view.user,
        "total": view.total,
        "status": view.status.as_str(),
        "created_at": view.created_at.as_millisecond(),
        "updated_at": view.updated_at.as_millisecond(),
        "cancel_reason": view.cancel_reason.map(|reason| reason.as_str()),
        "approved_at": ms(view.approved_at),
        "delivered_at": ms(view.delivered_at),
        "cancelled_at": ms(view.cancelled_at),
    })
}

/// The orders whose live and rebuilt rows differ, counted, with the first few shown.
fn compare(live: &ReadModel, rebuilt: &ReadModel) -> (u64, Vec<Difference>) {
    let mut ids: Vec<OrderId> = live.orders.keys().chain(rebuilt.orders.keys()).copied().collect();
    ids.sort_unstable();
    ids.dedup();
    let differing: Vec<OrderId> =
        ids.into_iter().filter(|id| live.orders.get(id) != rebuilt.orders.get(id)).collect();
    let examples = differing
        .iter()
        .take(MAX_EXAMPLES)
        .map(|id| Difference {
            id: id.to_string(),
            live: live.orders.get(id).map(row_json),
            rebuilt: rebuilt.orders.get(id).map(row_json),
        })
        .collect();
    (differing.len() as u64, examples)
}

impl State {
    fn open_steps(&self) -> OpenSteps {
        let mut payments: Vec<(&OrderId, &PaymentRow)> = self.payments.iter().collect();
        payments.sort_by_key(|(order, row)| (row.requested_at, **order));
        let payments = payments
            .into_iter()
            .map(|(order, row)| StoredPayment {
                order: StoredValue::text(&order.to_string()),
                amount: StoredValue::Integer(row.amount.get()),
                known: self.log.has_order(*order),
            })
            .collect();
        let deliveries = self
            .timers
            .iter()
            .map(|(order, due_at)| StoredDelivery {
                order: StoredValue::text(&order.to_string()),
                due_at: StoredValue::Integer(due_at.as_millisecond()),
                known: self.log.has_order(*order),
                scheduled_at: self
                    .log
                    .stream(StreamId::new(StreamKind::Delivery, *order))
                    .iter()
                    .rev()
                    .find(|event| {
                        matches!(event.event, DomainEvent::Delivery(DeliveryEvent::Scheduled { .. }))
                    })
                    .map(|event| event.recorded_at),
            })
            .collect();
        OpenSteps { payments, deliveries }
    }
}

impl Store for MemoryStore {
    fn found(&mut self) -> Result<Found, StoreError> {
        let state = self.snapshot();
        Ok(Found { id: state.identity, head: state.log.head().get() })
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn ensure_identity(&mut self, mint: bool) -> Result<StoreId, StoreError> {
        let current = self.snapshot();
        if !mint && let Some(id) = current.identity {
            return Ok(id);
        }
        let id = StoreId::new();
        let mut state = State::clone(&current);
        state.identity = Some(id);
        self.commit(state)?;
        tracing::info!(store = %id, "the store has a new identity");
        Ok(id)
    }

    fn head(&mut self) -> Result<Position, StoreError> {
        Ok(self.snapshot().log.head())
    }

    fn newest_recorded_at(&mut self) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.snapshot().log.newest_recorded_at())
    }

    fn checkpoint(&mut self) -> Result<Position, StoreError> {
        Ok(self.snapshot().checkpoint)
    }

    fn catch_up_chunk(&mut self, chunk: usize) -> Result<Option<u64>, StoreError> {
        let mut state = State::clone(&self.snapshot());
        let State { log, read_model, checkpoint, .. } = &mut state;
        let (read, last) = read_model.apply_log(log, *checkpoint, chunk)?;
        if read == 0 {
            return Ok(None);
        }
        *checkpoint = last;
        self.commit(state)?;
        Ok(Some(read as u64))
    }

    fn open_steps(&mut self) -> Result<OpenSteps, StoreError> {
        Ok(self.snapshot().open_steps())
    }

    fn write(&mut self, batch: &mut dyn Batch) -> Result<(), StoreError> {
        let mut state = State::clone(&self.snapshot());
        for index in 0..batch.units() {
            for attempt in 1..=MAX_ATTEMPTS {
                let mut tx = Tx { journal: Journal::new(&state), state: &mut state };
                let outcome = batch.run(index, &mut tx);
                let journal = tx.journal;
                match outcome {
                    Outcome::Done => break,
                    Outcome::Failed { why, conflict: true } if attempt < MAX_ATTEMPTS => {
                        tracing::debug!(why, attempt, "retrying after a conflict");
                        journal.undo(&mut state);
                    }
                    // A refused unit wrote nothing; should it have, it is undone all the same.
                    Outcome::Refused { .. } | Outcome::Failed { .. } => {
                        journal.undo(&mut state);
                        break;
                    }
                }
            }
        }
        if let Some(last) = batch.last_position() {
            state.checkpoint = last;
        }
        self.commit(state)
    }

    fn rebuild_start(&mut self, check: bool) -> Result<Position, StoreError> {
        *self.scratch(check) = Some(ReadModel::default());
        Ok(self.snapshot().log.head())
    }

    fn rebuild_chunk(
        &mut self,
        check: bool,
        after: Position,
        chunk: usize,
    ) -> Result<RebuildChunk, StoreError> {
        let current = self.snapshot();
        let Some(scratch) = self.scratch(check).as_ref() else {
            return Err(StoreError::Failed("no rebuild of the read model is under way".to_owned(), None));
        };
        // A chunk is one transaction: it is applied to a copy, kept only if it all worked.
        let mut rebuilt = scratch.clone();
        let (read, last) = rebuilt.apply_log(&current.log, after, chunk)?;
        if read == chunk {
            *self.scratch(check) = Some(rebuilt);
            return Ok(RebuildChunk { read, last, finished: None });
        }
        // The end of the log: finish in the same commit, so nothing can come in between.
        let finished = if check {
            let (differences, examples) = compare(&current.read_model, &rebuilt);
            Rebuilt { orders: current.read_model.orders.len() as u64, differences, examples }
        } else {
            let mut state = State::clone(&current);
            state.read_model = rebuilt;
            state.checkpoint = last;
            let orders = state.read_model.orders.len() as u64;
            self.commit(state)?;
            Rebuilt { orders, differences: 0, examples: Vec::new() }
        };
        *self.scratch(check) = None;
        Ok(RebuildChunk { read, last, finished: Some(finished) })
    }

    fn rebuild_abandon(&mut self, check: bool) -> Result<(), StoreError> {
        *self.scratch(check) = None;
        Ok(())
    }

    fn import(
        &mut self,
        load: &mut dyn FnMut(&mut dyn ImportTx) -> Result<bool, StoreError>,
    ) -> Result<bool, StoreError> {
        let mut state = State::clone(&self.snapshot());
        let keep = load(&mut ImportState { state: &mut state })?;
        if keep {
            state.checkpoint = state.log.head();
            self.commit(state)?;
        }
        Ok(keep)
    }

    fn drop_leftovers(&mut self) -> Result<bool, StoreError> {
        Ok(self.rebuild.take().is_some())
    }

    fn reads(&self) -> Result<Box<dyn ReadSource>, StoreError> {
        Ok(Box::new(Snapshots { committed: Arc::clone(&self.committed) }))
    }

    fn upkeep(&self) -> Result<Option<Box<dyn Upkeep>>, StoreError> {
        Ok(None)
    }
}

/// What one unit of work changed, to undo it alone: the log only grows, so its length before
/// the unit is enough for the events; for every row, its value before the unit's first change.
struct Journal {
    events: usize,
    rows: Vec<(OrderId, Option<OrderView>)>,
    payments: Vec<(OrderId, Option<PaymentRow>)>,
    timers: Vec<(OrderId, Option<Timestamp>)>,
}

impl Journal {
    fn new(state: &State) -> Journal {
        Journal { events: state.log.events.len(), rows: Vec::new(), payments: Vec::new(), timers: Vec::new() }
    }

    /// Puts everything the unit changed back, latest change first.
    fn undo(self, state: &mut State) {
        state.log.truncate(self.events);
        fn put_back<V>(map: &mut BTreeMap<OrderId, V>, changes: Vec<(OrderId, Option<V>)>) {
            for (order, before) in changes.into_iter().rev() {
                match before {
                    Some(value) => map.insert(order, value),
                    None => map.remove(&order),
                };
            }
        }
        put_back(&mut state.read_model.orders, self.rows);
        put_back(&mut state.payments, self.payments);
        put_back(&mut state.timers, self.timers);
    }
}

/// One unit's view of the batch's state: as of its own writes and the earlier units'.
struct Tx<'s> {
    state: &'s mut State,
    journal: Journal,
}

impl WriteTx for Tx<'_> {
    fn read_stream(&mut self, stream: StreamId) -> Result<Vec<RecordedEvent>, StoreError> {
        Ok(self.state.log.stream(stream))
    }

    fn find_by_idempotency_key(&mut self, key: &str) -> Result<Option<RecordedEvent>, StoreError> {
        let log = &self.state.log;
        Ok(log.keys.get(key).map(|&index| RecordedEvent::clone(&log.events[index])))
    }

    fn append(
        &mut self,
        stream: StreamId,
        expected: Version,
        events: &[DomainEvent],
        metadata: &Metadata,
        now: Timestamp,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.state.log.append(stream, expected, events, metadata, now)
    }

    fn project(&mut self, event: &RecordedEvent) -> Result<(), StoreError> {
        let order = event.stream.order;
        self.journal.rows.push((order, self.state.read_model.orders.get(&order).cloned()));
        self.state.read_model.project(event)
    }

    fn order(&mut self, id: OrderId) -> Result<Option<OrderView>, StoreError> {
        Ok(self.state.read_model.orders.get(&id).cloned())
    }

    fn open_payment_request(
        &mut self,
        order: OrderId,
        amount: Total,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        if self.state.payments.contains_key(&order) {
            return Err(StoreError::Failed(
                format!("order {order} has an open payment request already"),
                None,
            ));
        }
        self.journal.payments.push((order, None));
        self.state.payments.insert(order, PaymentRow { amount, requested_at: to_millisecond(at) });
        Ok(())
    }

    fn close_payment_request(&mut self, order: OrderId) -> Result<(), StoreError> {
        if let Some(row) = self.state.payments.remove(&order) {
            self.journal.payments.push((order, Some(row)));
        }
        Ok(())
    }

    fn set_delivery_timer(&mut self, order: OrderId, due_at: Timestamp) -> Result<(), StoreError> {
        if self.state.timers.contains_key(&order) {
            return Err(StoreError::Failed(format!("order {order} has a delivery timer already"), None));
        }
        self.journal.timers.push((order, None));
        self.state.timers.insert(order, to_millisecond(due_at));
        Ok(())
    }

    fn clear_delivery_timer(&mut self, order: OrderId) -> Result<(), StoreError> {
        if let Some(due_at) = self.state.timers.remove(&order) {
            self.journal.timers.push((order, Some(due_at)));
        }
        Ok(())
    }
}

/// The read side: each read takes the state as last committed.
struct Snapshots {
    committed: Arc<Mutex<Arc<State>>>,
}

impl ReadSource for Snapshots {
    fn with_reads(&self, query: &mut dyn FnMut(&mut dyn Reads)) -> Result<(), StoreError> {
        let state = Arc::clone(&self.committed.lock().unwrap_or_else(PoisonError::into_inner));
        query(&mut Snapshot { state });
        Ok(())
    }

    fn close(&self) {}
}

/// The named queries on one committed state.
struct Snapshot {
    state: Arc<State>,
}

impl Reads for Snapshot {
    fn order(&mut self, id: OrderId) -> Result<Option<OrderView>, StoreError> {
        Ok(self.state.read_model.orders.get(&id).cloned())
    }

    fn list(&mut self, request: &ListRequest) -> Result<OrderPage, StoreError> {
        Ok(self.state.read_model.list(request))
    }

    fn count_orders(&mut self, request: &ListRequest) -> Result<u64, StoreError> {
        Ok(self.state.read_model.list_all(request).len() as u64)
    }

    fn ids_ending_with(&mut self, suffix: &str, limit: usize) -> Result<Vec<OrderId>, StoreError> {
        // A scan, in id order: the memory store serves tests, not millions of orders.
        let orders = self.state.read_model.orders.keys().copied();
        Ok(orders.filter(|id| orders_shared::short_id::ends_with(*id, suffix)).take(limit).collect())
    }

    fn history(&mut self, id: OrderId) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut events: Vec<RecordedEvent> = StreamKind::ALL
            .into_iter()
            .flat_map(|kind| self.state.log.stream(StreamId::new(kind, id)))
            .collect();
        events.sort_by_key(|event| event.position);
        Ok(events)
    }

    fn watched(&mut self, id: OrderId) -> Result<(Vec<RecordedEvent>, Option<OrderView>), StoreError> {
        Ok((self.history(id)?, self.state.read_model.orders.get(&id).cloned()))
    }

    fn events(
        &mut self,
        after: Position,
        limit: usize,
    ) -> Result<(Vec<RecordedEvent>, Position), StoreError> {
        let log = &self.state.log;
        Ok((log.after(after, limit).iter().map(|event| RecordedEvent::clone(event)).collect(), log.head()))
    }

    fn stored_events(
        &mut self,
        after: Position,
        limit: usize,
    ) -> Result<(Vec<StoredEvent>, Position), StoreError> {
        // Kept decoded: written back as this build stores each event.
        let log = &self.state.log;
        let events = log
            .after(after, limit)
            .iter()
            .map(|event| StoredEvent {
                position: event.position,
                event_id: event.event_id,
                stream: event.stream,
                version: event.version,
                event_type: event.event.event_type().to_owned(),
                schema_version: event.event.schema_version(),
                payload: event.event.payload(),
                metadata: event.metadata.clone(),
                recorded_at: event.recorded_at,
            })
            .collect();
        Ok((events, log.head()))
    }

    fn counts(&mut self) -> Result<Counts, StoreError> {
        let state = &self.state;
        Ok(Counts {
            head: state.log.head(),
            orders: state.read_model.orders.len() as u64,
            pending_payments: state.payments.len() as u64,
            pending_deliveries: state.timers.len() as u64,
            newest: state.log.newest_recorded_at(),
        })
    }

    fn backlog(&mut self) -> Result<Backlog, StoreError> {
        let state = &self.state;
        Ok(Backlog {
            head: state.log.head(),
            checkpoint: state.checkpoint,
            open_payments: state.payments.len() as u64,
            open_deliveries: state.timers.len() as u64,
            oldest_payment: state.payments.values().map(|row| row.requested_at).min(),
            oldest_delivery: state
                .timers
                .keys()
                .filter_map(|order| state.read_model.orders.get(order).and_then(|view| view.approved_at))
                .min(),
            earliest_due: state.timers.values().min().copied(),
        })
    }

    fn step_stored(&mut self, kind: StepKind, key: &StoredValue) -> Result<bool, StoreError> {
        // Rows are keyed by the order id's text: only that exact text names one.
        let StoredValue::Text(text) = key else { return Ok(false) };
        let Some(order) = std::str::from_utf8(text)
            .ok()
            .and_then(|text| text.parse::<OrderId>().ok().filter(|order| order.to_string() == text))
        else {
            return Ok(false);
        };
        Ok(match kind {
            StepKind::Payment => self.state.payments.contains_key(&order),
            StepKind::Delivery => self.state.timers.contains_key(&order),
        })
    }

    fn walk(&mut self, visit: &mut dyn FnMut(Walking)) -> Result<Walked, StoreError> {
        let state = &self.state;
        let log = &state.log;
        // Nothing in memory can be damaged: no integrity check to run. Every order, in the
        // order of its first event; the streams of the other contexts whose order is missing.
        let mut walked = Walked::default();
        for first in log.events.iter().filter(|event| event.version == Version::new(1)) {
            let id = first.stream.order;
            if first.stream.kind != StreamKind::Order {
                if !log.has_order(id) {
                    walked.orphan_streams.push(first.stream.to_string());
                }
                continue;
            }
            let [order, payment, delivery] = StreamKind::ALL.map(|kind| log.stream(StreamId::new(kind, id)));
            visit(Walking::Order(Box::new(StoredOrder {
                id,
                order,
                payment,
                delivery,
                payment_row: state.payments.get(&id).map(|row| StoredValue::Integer(row.amount.get())),
                timer_row: state.timers.get(&id).map(|due_at| StoredValue::Integer(due_at.as_millisecond())),
                view: Ok(state.read_model.orders.get(&id).cloned()),
            })));
        }
        walked.steps = state.open_steps();
        walked.stray_rows = state
            .read_model
            .orders
            .keys()
            .filter(|id| !log.has_order(**id))
            .map(OrderId::to_string)
            .collect();
        walked.counted = log.events.len() as u64;
        walked.head = log.head();
        walked.checkpoint = state.checkpoint;
        Ok(walked)
    }

    fn backup(&mut self, _into: &std::path::Path) -> Result<(u64, u64), StoreError> {
        Err(StoreError::Unsupported("the in-memory store has no file to back up".to_owned()))
    }
}
