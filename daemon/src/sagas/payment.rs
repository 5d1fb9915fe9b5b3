//! The payment saga's step: ask the provider about a requested payment and record its decision.

use std::sync::Arc;
use std::time::Duration;

use orders_shared::{OrderId, PaymentProvider, Total};

use crate::commands::WriteCommand;

/// A payment waiting for the provider's decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PaymentDue {
    pub order: OrderId,
    pub amount: Total,
}

/// The provider, and how long it takes to answer (simulated; 0 for the even/odd rule).
#[derive(Clone, Debug)]
pub struct Provider {
    pub decides: Arc<dyn PaymentProvider>,
    pub latency: Duration,
}

impl super::Step for PaymentDue {
    const NAME: &'static str = "payment decision";
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

/// The payments still waiting for a decision, as stored (to resume them on start).
pub fn open(conn: &rusqlite::Connection) -> Result<Vec<PaymentDue>, crate::store::StoreError> {
    let mut select = conn.prepare("SELECT order_id, amount FROM payment_requests ORDER BY requested_at")?;
    let rows = select.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))?;
    rows.map(|row| {
        let (order, amount) = row?;
        let corrupt = || crate::store::StoreError::Corrupt(format!("payment request {order}"));
        Ok(PaymentDue {
            order: order.parse().map_err(|_| corrupt())?,
            amount: Total::try_from(amount).map_err(|_| corrupt())?,
        })
    })
    .collect()
}
