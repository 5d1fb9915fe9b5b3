//! Command handlers: load an aggregate, let the domain decide, record the events.
//!
//! Each handler runs inside the writer's transaction through a [`UnitOfWork`], which appends
//! events with their expected version and applies them to the read model in the same
//! transaction.

use jiff::Timestamp;
use orders_shared::protocol::{CreateRequest, ErrorBody, ErrorCode, OrderView};
use orders_shared::{DomainEvent, Order, OrderCommand, OrderError, OrderEvent, OrderId, StreamId};
use rusqlite::Connection;
use uuid::Uuid;

use crate::projection;
use crate::store::schema::ORDERS_TABLE;
use crate::store::{EventStore, Metadata, RecordedEvent, StoreError};

/// A command for the writer.
#[derive(Clone, Debug)]
pub enum WriteCommand {
    Create(CreateRequest),
    Cancel(OrderId),
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("order {id}: {source}")]
    Order { id: OrderId, source: OrderError },
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
            CommandError::Order { .. } => ErrorBody::new(ErrorCode::Rejected, self.to_string()),
            CommandError::Store(error) => storage_error_body(&error),
        }
    }
}

/// Storage failures as clients see them: a fault they can wait out, or a bug.
pub fn storage_error_body(error: &StoreError) -> ErrorBody {
    use rusqlite::ErrorCode as Sqlite;
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

/// The work of one command inside the writer's transaction.
pub struct UnitOfWork<'c> {
    conn: &'c Connection,
    now: Timestamp,
    recorded: Vec<RecordedEvent>,
}

impl<'c> UnitOfWork<'c> {
    pub fn new(conn: &'c Connection, now: Timestamp) -> Self {
        Self { conn, now, recorded: Vec::new() }
    }

    /// The events this unit recorded, in log order.
    pub fn into_recorded(self) -> Vec<RecordedEvent> {
        self.recorded
    }

    /// An order's current state and the version it was read at.
    fn load_order(&self, id: OrderId) -> Result<(Order, i64), StoreError> {
        let events = EventStore::new(self.conn).read_stream(StreamId::order(id))?;
        let version = events.last().map_or(0, |e| e.version);
        let order = events.iter().fold(Order::Absent, |order, recorded| match &recorded.event {
            DomainEvent::Order(event) => order.evolve(event),
        });
        Ok((order, version))
    }

    /// Appends events to a stream at the version they were decided on, and projects them.
    fn record(
        &mut self,
        stream: StreamId,
        expected_version: i64,
        events: Vec<DomainEvent>,
        metadata: &Metadata,
    ) -> Result<(), StoreError> {
        let recorded =
            EventStore::new(self.conn).append(stream, expected_version, &events, metadata, self.now)?;
        for event in &recorded {
            projection::apply(self.conn, ORDERS_TABLE, event)?;
        }
        self.recorded.extend(recorded);
        Ok(())
    }

    fn view(&self, id: OrderId) -> Result<OrderView, CommandError> {
        projection::get(self.conn, id)?.ok_or(CommandError::Order { id, source: OrderError::NotFound })
    }

    /// Runs a command to completion inside this unit.
    pub fn execute(&mut self, command: &WriteCommand) -> Result<OrderView, CommandError> {
        match command {
            WriteCommand::Create(request) => self.create(request),
            WriteCommand::Cancel(id) => self.cancel(*id),
        }
    }

    fn create(&mut self, request: &CreateRequest) -> Result<OrderView, CommandError> {
        let id = OrderId::from_uuid(Uuid::now_v7());
        let command = OrderCommand::Place { user: request.user.clone(), total: request.total };
        let events = Order::Absent.decide(&command).map_err(|source| CommandError::Order { id, source })?;
        self.record(StreamId::order(id), 0, wrap(events), &new_command())?;
        self.view(id)
    }

    fn cancel(&mut self, id: OrderId) -> Result<OrderView, CommandError> {
        let (order, version) = self.load_order(id)?;
        let events =
            order.decide(&OrderCommand::Cancel).map_err(|source| CommandError::Order { id, source })?;
        self.record(StreamId::order(id), version, wrap(events), &new_command())?;
        self.view(id)
    }
}

fn wrap(events: Vec<OrderEvent>) -> Vec<DomainEvent> {
    events.into_iter().map(DomainEvent::Order).collect()
}

/// Metadata of a command that starts a workflow: it is its own correlation and cause.
fn new_command() -> Metadata {
    let id = Uuid::now_v7();
    Metadata { correlation_id: id, causation_id: id, idempotency_key: None }
}
