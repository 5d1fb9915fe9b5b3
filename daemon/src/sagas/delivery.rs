//! The delivery saga's step: deliver an order when its delivery falls due. The timers are durable
//! (`delivery_timers`); the scheduler keeps the pending ones in memory, by due time.

use std::time::Duration;

use jiff::Timestamp;
use orders_shared::OrderId;

use crate::commands::WriteCommand;

/// A delivery and when it is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeliveryDue {
    pub due_at: Timestamp,
    pub order: OrderId,
}

impl super::Step for DeliveryDue {
    const NAME: &'static str = "delivery";
    type Context = ();

    fn order(&self) -> OrderId {
        self.order
    }

    fn due_in(&self, (): &()) -> Duration {
        Duration::try_from(self.due_at.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO)
    }

    fn command(&self, (): &()) -> WriteCommand {
        WriteCommand::Deliver(self.order)
    }
}

/// The deliveries still scheduled, as stored (to resume them on start).
pub fn open(conn: &rusqlite::Connection) -> Result<Vec<DeliveryDue>, crate::store::StoreError> {
    let mut select = conn.prepare("SELECT order_id, due_at FROM delivery_timers")?;
    let rows = select.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))?;
    rows.map(|row| {
        let (order, due_at) = row?;
        let corrupt = || crate::store::StoreError::Corrupt(format!("delivery timer {order}"));
        Ok(DeliveryDue {
            order: order.parse().map_err(|_| corrupt())?,
            due_at: Timestamp::from_millisecond(due_at).map_err(|_| corrupt())?,
        })
    })
    .collect()
}
