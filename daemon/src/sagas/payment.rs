//! The payment saga's step: ask the provider about a requested payment and record its decision.

use std::sync::Arc;
use std::time::Duration;

use orders_shared::{OrderId, PaymentProvider};

use crate::command::WriteCommand;
use crate::steps::PaymentDue;
use crate::store::StepKind;

/// The provider, and how long it takes to answer (simulated; 0 for the even/odd rule).
#[derive(Clone, Debug)]
pub struct Provider {
    pub decides: Arc<dyn PaymentProvider>,
    pub latency: Duration,
}

impl super::Step for PaymentDue {
    const KIND: StepKind = StepKind::Payment;
    type Context = Provider;

    fn order(&self) -> OrderId {
        self.order
    }

    fn due_in(&self, provider: &Provider) -> Duration {
        provider.latency
    }

    fn command(&self, provider: &Provider) -> WriteCommand {
        let decision = provider.decides.decide(self.order, self.amount);
        WriteCommand::DecidePayment { order: self.order, decision }
    }
}
