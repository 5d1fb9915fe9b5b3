//! The orders domain and wire protocol, shared by the daemon and the CLI.
//!
//! Pure types and decisions: no I/O, no clock, no database. Each aggregate has
//! `decide(&state, &command) -> Result<Vec<Event>, Error>` for its rules and `evolve(state, &event)`
//! to fold its history; [`event`] says how events are stored and read back; [`protocol`] is the
//! request/reply format of the Unix socket.

pub mod event;
pub mod order;
pub mod protocol;

pub use event::{DecodeError, DomainEvent, StreamId, StreamKind};
pub use order::{Order, OrderCommand, OrderError, OrderEvent, OrderId, OrderStatus, Total, UserId};
pub use protocol::PROTOCOL_VERSION;
