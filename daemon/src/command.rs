//! The writer's commands, and how their failures reach clients.
//!
//! A [`WriteCommand`] comes from a customer (create, cancel) or from a step of a saga (a payment
//! decision, a delivery due). The handlers (`handlers`) run it inside a unit of work
//! (`unit_of_work`); what can go wrong is a [`CommandError`], told to clients as an
//! [`ErrorBody`] with the codes of the wire protocol.

use jiff::SignedDuration;
use orders_shared::protocol::{CreateRequest, ErrorBody, ErrorCode};
use orders_shared::{OrderError, OrderId, PaymentDecision, delivery::DeliveryError, payment::PaymentError};

use crate::store::StoreError;

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

/// Which write command a command is, for the metrics (issue 16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandKind {
    Create,
    Cancel,
    DecidePayment,
    Deliver,
}

impl CommandKind {
    pub fn name(self) -> &'static str {
        match self {
            CommandKind::Create => "create",
            CommandKind::Cancel => "cancel",
            CommandKind::DecidePayment => "decide_payment",
            CommandKind::Deliver => "deliver",
        }
    }
}

impl WriteCommand {
    pub fn kind(&self) -> CommandKind {
        match self {
            WriteCommand::Create(_) => CommandKind::Create,
            WriteCommand::Cancel(_) => CommandKind::Cancel,
            WriteCommand::DecidePayment { .. } => CommandKind::DecidePayment,
            WriteCommand::Deliver(_) => CommandKind::Deliver,
        }
    }

    /// Whether a customer asked for it (create, cancel), rather than a step of a saga: someone
    /// is waiting for its answer.
    pub fn is_customers(&self) -> bool {
        matches!(self, WriteCommand::Create(_) | WriteCommand::Cancel(_))
    }

    /// The order a saga's step is for; `None` for a customer's command.
    pub fn step_order(&self) -> Option<OrderId> {
        match self {
            WriteCommand::DecidePayment { order, .. } | WriteCommand::Deliver(order) => Some(*order),
            WriteCommand::Create(_) | WriteCommand::Cancel(_) => None,
        }
    }
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
    match error {
        StoreError::RolledBack(cause) => {
            ErrorBody::new(ErrorCode::Unavailable, format!("nothing was stored: {cause}"))
        }
        StoreError::Unavailable { reason, detail, .. } => ErrorBody::new(
            ErrorCode::Unavailable,
            format!("nothing was stored: {reason} ({detail}); retry once the fault is fixed"),
        ),
        StoreError::Closed => {
            ErrorBody::new(ErrorCode::Unavailable, "the daemon is shutting down; nothing was stored")
        }
        _ => ErrorBody::new(ErrorCode::Internal, format!("nothing was stored: {error}")),
    }
}
