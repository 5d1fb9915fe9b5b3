//! What the three aggregates have in common, so that the daemon loads, decides and records
//! them the same way: fold a stream's events with `evolve`, decide a command, append the result.

use std::fmt::{Debug, Display};

use crate::delivery::{Delivery, DeliveryCommand, DeliveryError, DeliveryEvent};
use crate::event::{DomainEvent, StreamKind};
use crate::order::{Order, OrderCommand, OrderError, OrderEvent};
use crate::payment::{Payment, PaymentCommand, PaymentError, PaymentEvent};

pub trait Aggregate: Default + Debug + Sized {
    type Command: Debug;
    type Event: Clone + PartialEq + Debug + Into<DomainEvent>;
    type Error: Display + Debug;

    /// The kind of stream that holds this aggregate's events.
    const KIND: StreamKind;

    fn decide(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    fn evolve(self, event: &Self::Event) -> Self;

    /// This aggregate's event, if the stored event is one.
    fn event_of(event: &DomainEvent) -> Option<&Self::Event>;

    /// The command that, decided on the state before the event, records exactly that event. The
    /// invariant checker uses it to prove that a stored stream follows the rules.
    fn command_for(event: &Self::Event) -> Self::Command;

    /// Proves a stored event legal on this state: the command that records it
    /// ([`command_for`](Self::command_for)), decided here, records exactly that event. The
    /// invariant checker proves every stored stream with it, and `import` every imported one.
    fn prove(&self, event: &Self::Event) -> Result<(), Illegal> {
        match self.decide(&Self::command_for(event)) {
            Ok(decided) if decided.len() == 1 && decided[0] == *event => Ok(()),
            Ok(decided) => Err(Illegal(format!("{event:?} is not what the rules decide ({decided:?})"))),
            Err(refusal) => {
                let event: DomainEvent = event.clone().into();
                Err(Illegal(format!("{} breaks the rules: {refusal}", event.event_type())))
            }
        }
    }
}

/// Why a stored event is not what its aggregate's rules record on the state before it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Illegal(pub String);

impl Aggregate for Order {
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;
    const KIND: StreamKind = StreamKind::Order;

    fn decide(&self, command: &OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        Order::decide(self, command)
    }

    fn evolve(self, event: &OrderEvent) -> Self {
        Order::evolve(self, event)
    }

    fn command_for(event: &OrderEvent) -> Self::Command {
        event.as_command()
    }

    fn event_of(event: &DomainEvent) -> Option<&OrderEvent> {
        match event {
            DomainEvent::Order(event) => Some(event),
            _ => None,
        }
    }
}

impl Aggregate for Payment {
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = PaymentError;
    const KIND: StreamKind = StreamKind::Payment;

    fn decide(&self, command: &PaymentCommand) -> Result<Vec<PaymentEvent>, PaymentError> {
        Payment::decide(self, command)
    }

    fn evolve(self, event: &PaymentEvent) -> Self {
        Payment::evolve(self, event)
    }

    fn command_for(event: &PaymentEvent) -> Self::Command {
        event.as_command()
    }

    fn event_of(event: &DomainEvent) -> Option<&PaymentEvent> {
        match event {
            DomainEvent::Payment(event) => Some(event),
            _ => None,
        }
    }
}

impl Aggregate for Delivery {
    type Command = DeliveryCommand;
    type Event = DeliveryEvent;
    type Error = DeliveryError;
    const KIND: StreamKind = StreamKind::Delivery;

    fn decide(&self, command: &DeliveryCommand) -> Result<Vec<DeliveryEvent>, DeliveryError> {
        Delivery::decide(self, command)
    }

    fn evolve(self, event: &DeliveryEvent) -> Self {
        Delivery::evolve(self, event)
    }

    fn command_for(event: &DeliveryEvent) -> Self::Command {
        event.as_command()
    }

    fn event_of(event: &DomainEvent) -> Option<&DeliveryEvent> {
        match event {
            DomainEvent::Delivery(event) => Some(event),
            _ => None,
        }
    }
}
