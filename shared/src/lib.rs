//! The orders domain and wire protocol, shared by the daemon and the CLI.
//!
//! Pure types and decisions: no I/O, no clock, no database. The aggregates — [`order`],
//! [`payment`] and [`delivery`], each its own bounded context and stream — have
//! `decide(&state, &command) -> Result<Vec<Event>, Error>` for its rules and `evolve(state, &event)`
//! to fold its history; [`event`] says how events are stored and read back; [`protocol`] is the
//! request/reply format of the Unix socket.

pub mod aggregate;
pub mod delivery;
pub mod event;
pub mod order;
pub mod payment;
pub mod protocol;
pub mod short_id;
pub mod text;

pub use aggregate::Aggregate;
pub use delivery::{Delivery, DeliveryCommand, DeliveryEvent};
pub use event::{DecodeError, DomainEvent, StreamId, StreamKind};
pub use order::{
    CancelReason, NewUserId, Order, OrderCommand, OrderError, OrderEvent, OrderId, OrderStatus, Total, UserId,
};
pub use payment::{EvenOddProvider, Payment, PaymentCommand, PaymentDecision, PaymentEvent, PaymentProvider};
pub use protocol::PROTOCOL_VERSION;
