//! The delivery saga's step: deliver an order when its delivery falls due. The timers are durable
//! (`delivery_timers`); the scheduler keeps the pending ones in memory, by due time. How long a
//! delivery waits is [`DeliveryDue::wait`]: never longer than its delay, whatever the clock says.

use std::time::Duration;

use orders_shared::OrderId;
use orders_shared::protocol::OrderView;

use crate::clock::Clock;
use crate::command::WriteCommand;
use crate::metrics::Metrics;
use crate::steps::DeliveryDue;
use crate::store::StepKind;

impl super::Step for DeliveryDue {
    const KIND: StepKind = StepKind::Delivery;
    type Context = Clock;

    fn order(&self) -> OrderId {
        self.order
    }

    fn due_in(&self, clock: &Clock) -> Duration {
        self.wait(clock.now())
    }

    fn command(&self, _: &Clock) -> WriteCommand {
        WriteCommand::Deliver(self.order)
    }

    /// How late the delivery was recorded, past its due time (none for an order cancelled
    /// meanwhile, which is not delivered).
    fn done(&self, answer: &OrderView, metrics: &Metrics) {
        if let Some(delivered_at) = answer.delivered_at {
            let late = Duration::try_from(delivered_at.duration_since(self.due_at)).unwrap_or(Duration::ZERO);
            metrics.delivered(late);
        }
    }
}
