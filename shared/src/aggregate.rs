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
}

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
