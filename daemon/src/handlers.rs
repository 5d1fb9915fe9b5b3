//! The command handlers: load an aggregate, let the domain decide, record the events — through
//! a [`UnitOfWork`], inside the writer's transaction. Each returns the order as its command left
//! it (read-your-writes).

use orders_shared::protocol::{CreateRequest, OrderView};
use orders_shared::{
    CancelReason, Delivery, DomainEvent, Order, OrderCommand, OrderEvent, OrderId, OrderStatus, Payment,
    PaymentDecision,
};
use uuid::Uuid;

use crate::command::{CommandError, WriteCommand};
use crate::policies::{Loaded, Reactions};
use crate::store::{Metadata, Version};
use crate::unit_of_work::UnitOfWork;

/// Runs a command to completion inside `unit`.
pub fn run(unit: &mut UnitOfWork<'_>, command: &WriteCommand) -> Result<OrderView, CommandError> {
    match command {
        WriteCommand::Create(request) => create(unit, request),
        WriteCommand::Cancel(id) => cancel(unit, *id),
        WriteCommand::DecidePayment { order, decision } => decide_payment(unit, *order, decision),
        WriteCommand::Deliver(order) => deliver(unit, *order),
    }
}

fn create(unit: &mut UnitOfWork<'_>, request: &CreateRequest) -> Result<OrderView, CommandError> {
    let mut metadata = Metadata::new_command();
    if let Some(key) = &request.idempotency_key {
        // A retry: the order this key created, if the request is the same.
        if let Some(first) = unit.tx().find_by_idempotency_key(key.as_str())? {
            let id = first.stream.order;
            let same = matches!(&first.event, DomainEvent::Order(OrderEvent::Placed { user, total })
                if user == request.user.as_user() && *total == request.total);
            if !same {
                return Err(CommandError::KeyReused { key: key.as_str().to_owned(), order: id });
            }
            return unit.view(id);
        }
        metadata.idempotency_key = Some(key.as_str().to_owned());
    }
    let id = OrderId::from_uuid(Uuid::now_v7());
    let place = OrderCommand::Place { user: request.user.as_user().clone(), total: request.total };
    let order = Loaded { state: Order::Absent, version: Version::NONE, last: None };
    unit.execute(id, &order, &place, &metadata)?;
    unit.view(id)
}

fn cancel(unit: &mut UnitOfWork<'_>, id: OrderId) -> Result<OrderView, CommandError> {
    let order = unit.load::<Order>(id)?;
    let cancel = OrderCommand::Cancel { reason: CancelReason::CustomerRequest };
    unit.execute(id, &order, &cancel, &Metadata::new_command())?;
    unit.view(id)
}

/// The payment saga's step: record the provider's decision, once.
fn decide_payment(
    unit: &mut UnitOfWork<'_>,
    id: OrderId,
    decision: &PaymentDecision,
) -> Result<OrderView, CommandError> {
    let payment = unit.load::<Payment>(id)?;
    match &payment.last {
        Some(_) if payment.state.is_pending() && unit.tx().payment_taken_over(id)? => {
            // This daemon's lease ran out and another one claimed the step (issue 20): its
            // decision is the one recorded.
            tracing::info!(order = %id, "another daemon took this payment step over; its decision is recorded");
        }
        Some(requested) if payment.state.is_pending() => {
            let caused = Metadata::caused_by(requested);
            unit.execute(id, &payment, &decision.as_command(), &caused)?;
        }
        // Decided already: this is a re-run after a crash, or a duplicate.
        _ => tracing::debug!(order = %id, "payment decided already; nothing to do"),
    }
    unit.view(id)
}

/// The delivery saga's step: deliver an order whose delivery is due, once.
fn deliver(unit: &mut UnitOfWork<'_>, id: OrderId) -> Result<OrderView, CommandError> {
    let delivery = unit.load::<Delivery>(id)?;
    let order = unit.load::<Order>(id)?;
    match &delivery.last {
        Some(scheduled) if delivery.state.is_scheduled() => {
            if order.state.status() != Some(OrderStatus::Approved) {
                return Err(CommandError::Invariant(format!(
                    "delivery of order {id} is scheduled but the order is {:?}",
                    order.state.status()
                )));
            }
            let caused = Metadata::caused_by(scheduled);
            unit.execute(id, &order, &OrderCommand::Deliver, &caused)?;
        }
        // Delivered already, or cancelled meanwhile: the cancel won the race.
        _ => tracing::debug!(order = %id, "delivery not scheduled any more; nothing to do"),
    }
    unit.view(id)
}
