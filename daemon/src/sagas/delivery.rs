//! The delivery saga's step: deliver an order when its delivery falls due. The timers are durable
//! (`delivery_timers`); the scheduler keeps the pending ones in memory, by due time. How long a
//! delivery waits is [`DeliveryDue::wait`]: never longer than its delay, whatever the clock says.

use std::time::Duration;

use orders_shared::OrderId;

use crate::clock::Clock;
use crate::command::WriteCommand;
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
}
