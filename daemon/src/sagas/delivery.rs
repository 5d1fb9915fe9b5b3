//! The delivery saga's step: deliver an order when its delivery falls due. The timers are durable
//! (`delivery_timers`); the scheduler keeps the pending ones in memory, by due time.

use std::time::Duration;

use jiff::Timestamp;
use orders_shared::OrderId;
use rusqlite::types::ValueRef;

use super::{Stored, stored_order, stored_text, stuck_row};

use crate::commands::WriteCommand;

/// A delivery and when it is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeliveryDue {
    pub due_at: Timestamp,
    pub order: OrderId,
}

impl super::Step for DeliveryDue {
    const NAME: &'static str = "delivery";
    const TABLE: &'static str = "delivery_timers";
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

/// The deliveries still scheduled, as stored (to resume them on start), and those that cannot
/// be carried out.
pub fn open(conn: &rusqlite::Connection) -> Result<Stored<DeliveryDue>, crate::store::StoreError> {
    let mut select = conn.prepare(
        "SELECT order_id, due_at, EXISTS (SELECT 1 FROM events \
             WHERE stream_id = 'order-' || t.order_id AND version = 1) \
         FROM delivery_timers t",
    )?;
    let mut rows = select.query([])?;
    let mut stored = Stored { steps: Vec::new(), stuck: Vec::new() };
    while let Some(row) = rows.next()? {
        let (order, due_at, known) = (row.get_ref(0)?, row.get_ref(1)?, row.get::<_, bool>(2)?);
        match decode(order, due_at, known) {
            Ok(due) => stored.steps.push(due),
            Err(problem) => stored.stuck.push(stuck_row::<DeliveryDue>(order, problem)),
        }
    }
    Ok(stored)
}

/// One stored timer, or what keeps it from being carried out.
fn decode(order: ValueRef<'_>, due_at: ValueRef<'_>, known: bool) -> Result<DeliveryDue, String> {
    let order = stored_order(order)?;
    let ValueRef::Integer(ms) = due_at else {
        return Err(format!("its due time is {}, not a number of milliseconds", stored_text(due_at)));
    };
    if ms < 0 {
        // No daemon writes one: approval happens now, and the delay is never negative.
        return Err(format!("it is due {ms} ms before 1970, a time no daemon writes"));
    }
    let due_at = Timestamp::from_millisecond(ms)
        .map_err(|_| format!("it is due {ms} ms after 1970, past the last time this daemon can represent"))?;
    if !known {
        return Err("its order is not in the event log".to_owned());
    }
    Ok(DeliveryDue { due_at, order })
}
