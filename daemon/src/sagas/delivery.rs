//! The delivery saga's step: deliver an order when its delivery falls due. The timers are durable
//! (`delivery_timers`); the scheduler keeps the pending ones in memory, by due time.
//!
//! A due time is wall-clock time, recorded at approval. A clock behind the approval (set back,
//! or a data directory moved to a machine whose clock is behind) would make it look far away:
//! a delivery is never scheduled further from now than the delay it was scheduled with — its
//! due time less its recorded approval time (issue 12).

use std::time::Duration;

use jiff::Timestamp;
use orders_shared::OrderId;
use rusqlite::types::ValueRef;

use super::{Stored, stored_order, stored_text, stuck_row};

use crate::clock::Clock;
use crate::commands::WriteCommand;

/// A delivery and when it is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeliveryDue {
    pub due_at: Timestamp,
    pub order: OrderId,
    /// When it was scheduled (its order approved), as recorded; `None` if its event is missing.
    pub scheduled_at: Option<Timestamp>,
}

impl DeliveryDue {
    /// How long from `now` until it is due: never longer than the delay it was scheduled with.
    pub fn wait(&self, now: Timestamp) -> Duration {
        let mut wait = self.due_at.duration_since(now);
        if let Some(scheduled_at) = self.scheduled_at
            && now < scheduled_at
        {
            let delay = self.due_at.duration_since(scheduled_at);
            tracing::debug!(order = %self.order, %scheduled_at, %now,
                "the clock is behind the approval of this order: its delivery goes {delay:#} from now");
            wait = wait.min(delay);
        }
        Duration::try_from(wait).unwrap_or(Duration::ZERO)
    }

    /// Whether the clock (at `now`) is behind the recorded approval.
    pub fn clock_behind(&self, now: Timestamp) -> bool {
        self.scheduled_at.is_some_and(|scheduled_at| now < scheduled_at)
    }
}

impl super::Step for DeliveryDue {
    const NAME: &'static str = "delivery";
    const TABLE: &'static str = "delivery_timers";
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

/// The deliveries still scheduled, as stored (to resume them on start), and those that cannot
/// be carried out.
pub fn open(conn: &rusqlite::Connection) -> Result<Stored<DeliveryDue>, crate::store::StoreError> {
    let mut select = conn.prepare(
        "SELECT order_id, due_at, EXISTS (SELECT 1 FROM events \
             WHERE stream_id = 'order-' || t.order_id AND version = 1), \
             (SELECT recorded_at FROM events WHERE stream_id = 'delivery-' || t.order_id \
                 AND type = 'DeliveryScheduled' ORDER BY version DESC LIMIT 1) \
         FROM delivery_timers t",
    )?;
    let mut rows = select.query([])?;
    let mut stored = Stored { steps: Vec::new(), stuck: Vec::new() };
    while let Some(row) = rows.next()? {
        let (order, due_at, known) = (row.get_ref(0)?, row.get_ref(1)?, row.get::<_, bool>(2)?);
        let scheduled_at = match row.get_ref(3)? {
            ValueRef::Integer(ms) => Timestamp::from_millisecond(ms).ok(),
            _ => None,
        };
        match decode(order, due_at, known) {
            Ok(due) => stored.steps.push(DeliveryDue { scheduled_at, ..due }),
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
    Ok(DeliveryDue { due_at, order, scheduled_at: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(ms).expect("time")
    }

    /// Approved at 10 s with a 3 s delay: due at 13 s.
    fn due() -> DeliveryDue {
        DeliveryDue {
            due_at: at(13_000),
            order: OrderId::from_uuid(uuid::Uuid::nil()),
            scheduled_at: Some(at(10_000)),
        }
    }

    #[test]
    fn a_delivery_is_due_at_its_due_time_on_a_right_clock() {
        assert_eq!(due().wait(at(11_000)), Duration::from_secs(2));
        assert_eq!(due().wait(at(20_000)), Duration::ZERO, "overdue: at once");
        assert!(!due().clock_behind(at(10_000)));
    }

    #[test]
    fn a_clock_behind_the_approval_waits_the_delay_and_no_longer() {
        let two_hours_behind = at(10_000 - 7_200_000);
        assert_eq!(due().wait(two_hours_behind), Duration::from_secs(3));
        assert!(due().clock_behind(two_hours_behind));
        let without = DeliveryDue { scheduled_at: None, ..due() };
        assert_eq!(without.wait(at(12_000)), Duration::from_secs(1), "no approval time: as stored");
    }
}
