//! The payment saga's step: ask the provider about a requested payment and record its decision.

use std::sync::Arc;
use std::time::Duration;

use orders_shared::{OrderId, PaymentProvider, Total};
use rusqlite::types::ValueRef;

use super::{Stored, stored_order, stored_text, stuck_row};

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
    const TABLE: &'static str = "payment_requests";
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

/// The payments still waiting for a decision, as stored (to resume them on start), and those
/// that cannot be carried out.
pub fn open(conn: &rusqlite::Connection) -> Result<Stored<PaymentDue>, crate::store::StoreError> {
    let mut select = conn.prepare(
        "SELECT order_id, amount, EXISTS (SELECT 1 FROM events \
             WHERE stream_id = 'order-' || t.order_id AND version = 1) \
         FROM payment_requests t ORDER BY requested_at",
    )?;
    let mut rows = select.query([])?;
    let mut stored = Stored { steps: Vec::new(), stuck: Vec::new() };
    while let Some(row) = rows.next()? {
        let (order, amount, known) = (row.get_ref(0)?, row.get_ref(1)?, row.get::<_, bool>(2)?);
        match decode(order, amount, known) {
            Ok(due) => stored.steps.push(due),
            Err(problem) => stored.stuck.push(stuck_row::<PaymentDue>(order, problem)),
        }
    }
    Ok(stored)
}

/// One stored payment request, or what keeps it from being carried out.
fn decode(order: ValueRef<'_>, amount: ValueRef<'_>, known: bool) -> Result<PaymentDue, String> {
    let order = stored_order(order)?;
    let amount = match amount {
        ValueRef::Integer(n) => {
            Total::try_from(n).map_err(|_| format!("its amount {n} is not a valid total"))?
        }
        other => return Err(format!("its amount is {}, not a whole number", stored_text(other))),
    };
    if !known {
        return Err("its order is not in the event log".to_owned());
    }
    Ok(PaymentDue { order, amount })
}
