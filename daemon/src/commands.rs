//! Command handlers: load an aggregate, let the domain decide, record the events.
//!
//! Each handler runs inside the writer's transaction through a [`UnitOfWork`]. Recording an
//! event appends it at the version the aggregate was loaded at (the optimistic-concurrency
//! check), applies it to the read model, and runs the [policies](crate::policies) that react to
//! it — all in the same transaction, so a command and every consequence of it commit together or
//! not at all.

use jiff::{SignedDuration, Timestamp};
use orders_shared::protocol::{CreateRequest, ErrorBody, ErrorCode, OrderView};
use orders_shared::{
    Aggregate, CancelReason, Delivery, DomainEvent, Order, OrderCommand, OrderError, OrderEvent, OrderId,
    OrderStatus, Payment, PaymentDecision, StreamId, delivery::DeliveryError, payment::PaymentError,
};
use rusqlite::{Connection, params};
use uuid::Uuid;

use crate::store::{EventStore, Metadata, RecordedEvent, StoreError};
use crate::{policies, projection};

/// A command for the writer: from a customer, or a step of a saga.
#[derive(Clone, Debug)]
pub enum WriteCommand {
    Create(CreateRequest),
    Cancel(OrderId),
    /// The payment provider's decision on an order's payment.
    DecidePayment {
        order: OrderId,
        decision: PaymentDecision,
    },
    /// An order's delivery is due.
    Deliver(OrderId),
}

/// Settings the policies need.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Approval to delivery.
    pub delivery_delay: SignedDuration,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("order {id}: {source}")]
    Order { id: OrderId, source: OrderError },
    #[error(
        "the idempotency key '{key}' was used for another order ({order}, with another user or total); \
         use a new key for a new order"
    )]
    KeyReused { key: String, order: OrderId },
    /// A saga met a state the rules say cannot happen: a bug, or a damaged log.
    #[error("invariant broken: {0}")]
    Invariant(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CommandError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, CommandError::Store(StoreError::Conflict { .. }))
    }

    pub fn into_body(self) -> ErrorBody {
        match self {
            CommandError::Order { id, source: OrderError::NotFound } => {
                ErrorBody::new(ErrorCode::NotFound, format!("no order {id}"))
            }
            CommandError::Order { .. } | CommandError::KeyReused { .. } => {
                ErrorBody::new(ErrorCode::Rejected, self.to_string())
            }
            CommandError::Invariant(_) => ErrorBody::new(ErrorCode::Internal, self.to_string()),
            CommandError::Store(error) => storage_error_body(&error),
        }
    }
}

/// How an aggregate's refusal becomes a command error.
pub trait Refusal {
    fn refused(self, order: OrderId) -> CommandError;
}

impl Refusal for OrderError {
    fn refused(self, id: OrderId) -> CommandError {
        CommandError::Order { id, source: self }
    }
}

impl Refusal for PaymentError {
    fn refused(self, order: OrderId) -> CommandError {
        CommandError::Invariant(format!("payment of order {order}: {self}"))
    }
}

impl Refusal for DeliveryError {
    fn refused(self, order: OrderId) -> CommandError {
        CommandError::Invariant(format!("delivery of order {order}: {self}"))
    }
}

/// Storage failures as clients see them: a fault they can wait out, or a bug.
pub fn storage_error_body(error: &StoreError) -> ErrorBody {
    use rusqlite::ErrorCode as Sqlite;
    if let StoreError::RolledBack(cause) = error {
        return ErrorBody::new(ErrorCode::Unavailable, format!("nothing was stored: {cause}"));
    }
    if let StoreError::Sqlite(rusqlite::Error::SqliteFailure(failure, _)) = error {
        let reason = match failure.code {
            Sqlite::DiskFull => Some("the disk is full"),
            Sqlite::ReadOnly => Some("the database is read-only"),
            Sqlite::CannotOpen | Sqlite::SystemIoFailure => Some("the database cannot be written"),
            Sqlite::DatabaseBusy | Sqlite::DatabaseLocked => {
                Some("the database is locked by another process")
            }
            _ => None,
        };
        if let Some(reason) = reason {
            return ErrorBody::new(
                ErrorCode::Unavailable,
                format!("nothing was stored: {reason} ({error}); retry once the fault is fixed"),
            );
        }
    }
    ErrorBody::new(ErrorCode::Internal, format!("nothing was stored: {error}"))
}

/// An aggregate as loaded from its stream.
#[derive(Debug)]
pub struct Loaded<A> {
    pub state: A,
    /// The stream's last version: appends are expected to follow it.
    pub version: i64,
    /// The stream's last event, the cause of a saga step that continues it.
    pub last: Option<RecordedEvent>,
}

/// The work of one command inside the writer's transaction.
pub struct UnitOfWork<'c> {
    conn: &'c Connection,
    now: Timestamp,
    policy: &'c Policy,
    recorded: Vec<RecordedEvent>,
    /// Whether it wrote anything: a command that fails after writing must be rolled back.
    wrote: bool,
}

impl<'c> UnitOfWork<'c> {
    pub fn new(conn: &'c Connection, now: Timestamp, policy: &'c Policy) -> Self {
        Self { conn, now, policy, recorded: Vec::new(), wrote: false }
    }

    /// The events this unit recorded, in log order.
    pub fn into_recorded(self) -> Vec<RecordedEvent> {
        self.recorded
    }

    /// Whether it changed the database (a refusal decided before any write leaves it unchanged).
    pub fn wrote(&self) -> bool {
        self.wrote
    }

    pub fn now(&self) -> Timestamp {
        self.now
    }

    pub fn policy(&self) -> &Policy {
        self.policy
    }

    /// An aggregate's current state, folded from its stream.
    pub fn load<A: Aggregate>(&self, order: OrderId) -> Result<Loaded<A>, StoreError> {
        let events = EventStore::new(self.conn).read_stream(StreamId::new(A::KIND, order))?;
        let state =
            events.iter().filter_map(|recorded| A::event_of(&recorded.event)).fold(A::default(), A::evolve);
        Ok(Loaded { state, version: events.last().map_or(0, |e| e.version), last: events.into_iter().last() })
    }

    /// Decides a command on a loaded aggregate and records what it decided.
    pub fn execute<A>(
        &mut self,
        order: OrderId,
        aggregate: &Loaded<A>,
        command: &A::Command,
        metadata: &Metadata,
    ) -> Result<(), CommandError>
    where
        A: Aggregate,
        A::Error: Refusal,
    {
        let events = aggregate.state.decide(command).map_err(|refusal| refusal.refused(order))?;
        let events = events.into_iter().map(Into::into).collect();
        // A stream's times never go backwards (issue 12): the writer stamps no earlier than the
        // log's newest time, and this holds even for a stream recorded later than that (a log
        // written before the clamp, by a clock that jumped).
        if let Some(last) = &aggregate.last
            && last.recorded_at > self.now
        {
            self.now = last.recorded_at;
        }
        self.record(StreamId::new(A::KIND, order), aggregate.version, events, metadata)
    }

    /// Appends events at the version they were decided on, projects them and lets the policies
    /// react to each.
    fn record(
        &mut self,
        stream: StreamId,
        expected_version: i64,
        events: Vec<DomainEvent>,
        metadata: &Metadata,
    ) -> Result<(), CommandError> {
        self.wrote = true;
        let recorded =
            EventStore::new(self.conn).append(stream, expected_version, &events, metadata, self.now)?;
        for event in &recorded {
            projection::apply(self.conn, event)?;
        }
        self.recorded.extend(recorded.iter().cloned());
        for event in &recorded {
            policies::react(self, event)?;
        }
        Ok(())
    }

    fn view(&self, id: OrderId) -> Result<OrderView, CommandError> {
        projection::get(self.conn, id)?.ok_or(CommandError::Order { id, source: OrderError::NotFound })
    }

    /// Runs a command to completion inside this unit.
    pub fn run(&mut self, command: &WriteCommand) -> Result<OrderView, CommandError> {
        match command {
            WriteCommand::Create(request) => self.create(request),
            WriteCommand::Cancel(id) => self.cancel(*id),
            WriteCommand::DecidePayment { order, decision } => self.decide_payment(*order, decision),
            WriteCommand::Deliver(order) => self.deliver(*order),
        }
    }

    fn create(&mut self, request: &CreateRequest) -> Result<OrderView, CommandError> {
        let mut metadata = Metadata::new_command();
        if let Some(key) = &request.idempotency_key {
            // A retry: the order this key created, if the request is the same.
            if let Some(first) = EventStore::new(self.conn).find_by_idempotency_key(key.as_str())? {
                let id = first.stream.order;
                let same = matches!(&first.event, DomainEvent::Order(OrderEvent::Placed { user, total })
                    if *user == request.user && *total == request.total);
                if !same {
                    return Err(CommandError::KeyReused { key: key.as_str().to_owned(), order: id });
                }
                return self.view(id);
            }
            metadata.idempotency_key = Some(key.as_str().to_owned());
        }
        let id = OrderId::from_uuid(Uuid::now_v7());
        let place = OrderCommand::Place { user: request.user.clone(), total: request.total };
        let order = Loaded { state: Order::Absent, version: 0, last: None };
        self.execute(id, &order, &place, &metadata)?;
        self.view(id)
    }

    fn cancel(&mut self, id: OrderId) -> Result<OrderView, CommandError> {
        let order = self.load::<Order>(id)?;
        let cancel = OrderCommand::Cancel { reason: CancelReason::CustomerRequest };
        self.execute(id, &order, &cancel, &Metadata::new_command())?;
        self.view(id)
    }

    /// The payment saga's step: record the provider's decision, once.
    fn decide_payment(&mut self, id: OrderId, decision: &PaymentDecision) -> Result<OrderView, CommandError> {
        let payment = self.load::<Payment>(id)?;
        match &payment.last {
            Some(requested) if payment.state.is_pending() => {
                let caused = Metadata::caused_by(requested);
                self.execute(id, &payment, &decision.as_command(), &caused)?;
            }
            // Decided already: this is a re-run after a crash, or a duplicate.
            _ => tracing::debug!(order = %id, "payment decided already; nothing to do"),
        }
        self.view(id)
    }

    /// The delivery saga's step: deliver an order whose delivery is due, once.
    fn deliver(&mut self, id: OrderId) -> Result<OrderView, CommandError> {
        let delivery = self.load::<Delivery>(id)?;
        let order = self.load::<Order>(id)?;
        match &delivery.last {
            Some(scheduled) if delivery.state.is_scheduled() => {
                if order.state.status() != Some(OrderStatus::Approved) {
                    return Err(CommandError::Invariant(format!(
                        "delivery of order {id} is scheduled but the order is {:?}",
                        order.state.status()
                    )));
                }
                let caused = Metadata::caused_by(scheduled);
                self.execute(id, &order, &OrderCommand::Deliver, &caused)?;
            }
            // Delivered already, or cancelled meanwhile: the cancel won the race.
            _ => tracing::debug!(order = %id, "delivery not scheduled any more; nothing to do"),
        }
        self.view(id)
    }

    /// Opens the payment saga's step for an order: a payment awaiting the provider.
    pub fn open_payment_request(&mut self, order: OrderId, amount: i64) -> Result<(), StoreError> {
        self.wrote = true;
        self.conn
            .prepare_cached(
                "INSERT INTO payment_requests (order_id, amount, requested_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![order.to_string(), amount, self.now.as_millisecond()])?;
        Ok(())
    }

    pub fn close_payment_request(&mut self, order: OrderId) -> Result<(), StoreError> {
        self.wrote = true;
        self.conn
            .prepare_cached("DELETE FROM payment_requests WHERE order_id = ?1")?
            .execute([order.to_string()])?;
        Ok(())
    }

    /// Arms the delivery saga's durable timer for an order.
    pub fn set_delivery_timer(&mut self, order: OrderId, due_at: Timestamp) -> Result<(), StoreError> {
        self.wrote = true;
        self.conn
            .prepare_cached("INSERT INTO delivery_timers (order_id, due_at) VALUES (?1, ?2)")?
            .execute(params![order.to_string(), due_at.as_millisecond()])?;
        Ok(())
    }

    pub fn clear_delivery_timer(&mut self, order: OrderId) -> Result<(), StoreError> {
        self.wrote = true;
        self.conn
            .prepare_cached("DELETE FROM delivery_timers WHERE order_id = ?1")?
            .execute([order.to_string()])?;
        Ok(())
    }
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
