//! The policies of the process managers: what each bounded context does when an event of
//! another one is recorded. They run inside the transaction that records the event, so a
//! consequence can never be lost, nor happen without its cause.
//!
//! Two steps cannot happen at once and are left to the sagas' workers instead: the payment
//! provider's decision (an outside call) and the delivery (a due time). Their open steps are
//! rows of `payment_requests` and `delivery_timers`, written here, in the same transaction as the
//! events that open and close them.
//!
//! ```text
//! OrderPlaced ──▶ PaymentRequested ─(provider)─▶ PaymentApproved ──▶ OrderApproved ──▶ DeliveryScheduled
//!                                               └▶ PaymentDeclined ──▶ OrderCancelled(payment_declined)
//! DeliveryScheduled ─(due time)─▶ OrderDelivered ──▶ DeliveryCompleted
//! OrderCancelled ──▶ PaymentRefunded (if paid), DeliveryCancelled (if scheduled)
//! PaymentApproved for an order cancelled meanwhile ──▶ PaymentRefunded
//! ```

use jiff::Timestamp;
use orders_shared::{
    Aggregate, CancelReason, Delivery, DeliveryCommand, DeliveryEvent, DomainEvent, Order, OrderCommand,
    OrderEvent, OrderId, Payment, PaymentCommand, PaymentEvent, Total,
};

use crate::command::{CommandError, Policy, Refusal};
use crate::store::{Metadata, RecordedEvent, StoreError, Version};

/// An aggregate as loaded from its stream.
#[derive(Debug)]
pub struct Loaded<A> {
    pub state: A,
    /// The stream's last version: appends are expected to follow it.
    pub version: Version,
    /// The stream's last event, the cause of a saga step that continues it.
    pub last: Option<RecordedEvent>,
}

/// What the policies do in the transaction of the event they react to: the unit of work
/// implements it, so that the policies are reached through it without knowing it.
pub trait Reactions {
    fn now(&self) -> Timestamp;

    fn policy(&self) -> &Policy;

    /// An aggregate's current state, folded from its stream.
    fn load<A: Aggregate>(&mut self, order: OrderId) -> Result<Loaded<A>, CommandError>;

    /// Decides a command on a loaded aggregate and records what it decided (and the reactions
    /// to that, in turn).
    fn execute<A>(
        &mut self,
        order: OrderId,
        aggregate: &Loaded<A>,
        command: &A::Command,
        metadata: &Metadata,
    ) -> Result<(), CommandError>
    where
        A: Aggregate,
        A::Error: Refusal;

    /// Opens the payment saga's step for an order: a payment awaiting the provider.
    fn open_payment_request(&mut self, order: OrderId, amount: Total) -> Result<(), StoreError>;

    fn close_payment_request(&mut self, order: OrderId) -> Result<(), StoreError>;

    /// Arms the delivery saga's durable timer for an order.
    fn set_delivery_timer(&mut self, order: OrderId, due_at: Timestamp) -> Result<(), StoreError>;

    fn clear_delivery_timer(&mut self, order: OrderId) -> Result<(), StoreError>;
}

/// Runs the reactions to one recorded event.
pub fn react(unit: &mut impl Reactions, cause: &RecordedEvent) -> Result<(), CommandError> {
    match &cause.event {
        DomainEvent::Order(event) => after_order(unit, cause, event),
        DomainEvent::Payment(event) => after_payment(unit, cause, event),
        DomainEvent::Delivery(event) => after_delivery(unit, cause, event),
    }
}

/// What the payment and delivery contexts do when an order changes.
fn after_order(
    unit: &mut impl Reactions,
    cause: &RecordedEvent,
    event: &OrderEvent,
) -> Result<(), CommandError> {
    let id = cause.stream.order;
    let caused = Metadata::caused_by(cause);
    match event {
        // Payment: every order placed asks for its payment.
        OrderEvent::Placed { total, .. } => {
            let payment = unit.load::<Payment>(id)?;
            unit.execute(id, &payment, &PaymentCommand::Request { amount: *total }, &caused)
        }
        // Delivery: an approved order is scheduled; its timer lives as long as the schedule.
        OrderEvent::Approved => {
            let delivery = unit.load::<Delivery>(id)?;
            let due_at = unit
                .now()
                .saturating_add(unit.policy().delivery_delay)
                .map_err(|e| CommandError::Invariant(format!("delivery due time out of range: {e}")))?;
            unit.execute(id, &delivery, &DeliveryCommand::Schedule { due_at }, &caused)
        }
        OrderEvent::Delivered => {
            let delivery = unit.load::<Delivery>(id)?;
            unit.execute(id, &delivery, &DeliveryCommand::Complete, &caused)
        }
        // A cancelled order gives back what was paid and calls off its delivery.
        OrderEvent::Cancelled { .. } => {
            let payment = unit.load::<Payment>(id)?;
            if matches!(payment.state, Payment::Approved { .. }) {
                unit.execute(id, &payment, &PaymentCommand::Refund, &caused)?;
            }
            let delivery = unit.load::<Delivery>(id)?;
            if delivery.state.is_scheduled() {
                unit.execute(id, &delivery, &DeliveryCommand::Cancel, &caused)?;
            }
            Ok(())
        }
    }
}

/// What the order context does with a payment's outcome; a requested payment opens its step.
fn after_payment(
    unit: &mut impl Reactions,
    cause: &RecordedEvent,
    event: &PaymentEvent,
) -> Result<(), CommandError> {
    let id = cause.stream.order;
    let caused = Metadata::caused_by(cause);
    match event {
        PaymentEvent::Requested { amount } => Ok(unit.open_payment_request(id, *amount)?),
        // The payment's outcome approves or cancels the order.
        PaymentEvent::Approved { .. } => {
            unit.close_payment_request(id)?;
            let order = unit.load::<Order>(id)?;
            match order.state {
                Order::Pending(_) => unit.execute(id, &order, &OrderCommand::Approve, &caused),
                // Cancelled while the provider decided: the money goes back.
                Order::Cancelled(..) => {
                    let payment = unit.load::<Payment>(id)?;
                    unit.execute(id, &payment, &PaymentCommand::Refund, &caused)
                }
                state => Err(unexpected(cause, &state)),
            }
        }
        PaymentEvent::Declined { .. } => {
            unit.close_payment_request(id)?;
            let order = unit.load::<Order>(id)?;
            match order.state {
                Order::Pending(_) => {
                    let cancel = OrderCommand::Cancel { reason: CancelReason::PaymentDeclined };
                    unit.execute(id, &order, &cancel, &caused)
                }
                // The customer cancelled first; nothing was paid, nothing to undo.
                Order::Cancelled(..) => Ok(()),
                state => Err(unexpected(cause, &state)),
            }
        }
        PaymentEvent::Refunded { .. } => Ok(()),
    }
}

/// A scheduled delivery arms its durable timer; a completed or cancelled one clears it.
fn after_delivery(
    unit: &mut impl Reactions,
    cause: &RecordedEvent,
    event: &DeliveryEvent,
) -> Result<(), CommandError> {
    let id = cause.stream.order;
    match event {
        DeliveryEvent::Scheduled { due_at } => Ok(unit.set_delivery_timer(id, *due_at)?),
        DeliveryEvent::Completed | DeliveryEvent::Cancelled => Ok(unit.clear_delivery_timer(id)?),
    }
}

fn unexpected(cause: &RecordedEvent, order: &Order) -> CommandError {
    CommandError::Invariant(format!(
        "{} at position {} found order {} {:?}",
        cause.event.event_type(),
        cause.position,
        cause.stream.order,
        order.status()
    ))
}
