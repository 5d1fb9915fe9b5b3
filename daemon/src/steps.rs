//! The open steps of the sagas — a payment awaiting the provider, a delivery awaiting its due
//! time — as the writer announces them and the sagas' workers carry them out, and those stored
//! steps that cannot be carried out.
//!
//! The writer and the sagas both use these types; neither imports the other for them.
//!
//! A stored step the daemon cannot carry out — a row that does not decode, a due time it cannot
//! represent or schedule, an order the step cannot find — never stops the daemon from starting:
//! it is left out of the schedule, kept in the store untouched (a fixed build, or a repair, can
//! still run it), and reported by `status`, `check` and the log ([`StuckSteps`]).
//!
//! A due time is wall-clock time, recorded at approval. A clock behind the approval (set back,
//! or a data directory moved to a machine whose clock is behind) would make it look far away:
//! a delivery is never scheduled further from now than the delay it was scheduled with — its
//! due time less its recorded approval time (issue 12).

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use orders_shared::protocol::StuckStep;
use orders_shared::{OrderId, Total};

use crate::store::{OpenSteps, Reads, StepKind, StoreError, StoredDelivery, StoredPayment, StoredValue};

/// A payment waiting for the provider's decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PaymentDue {
    pub order: OrderId,
    pub amount: Total,
}

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

/// The name of a kind of step, for people.
pub fn step_name(kind: StepKind) -> &'static str {
    match kind {
        StepKind::Payment => "payment decision",
        StepKind::Delivery => "delivery",
    }
}

/// The stored steps: those to run, and those that cannot be.
#[derive(Debug, Default)]
pub struct Decoded {
    pub payments: Vec<PaymentDue>,
    pub deliveries: Vec<DeliveryDue>,
    pub stuck: Vec<Stuck>,
}

/// Decodes the open steps as stored.
pub fn decode(stored: OpenSteps) -> Decoded {
    let mut decoded = Decoded::default();
    for row in stored.payments {
        match decode_payment(&row) {
            Ok(due) => decoded.payments.push(due),
            Err(problem) => decoded.stuck.push(Stuck::row(StepKind::Payment, row.order, problem)),
        }
    }
    for row in stored.deliveries {
        match decode_delivery(&row) {
            Ok(due) => decoded.deliveries.push(due),
            Err(problem) => decoded.stuck.push(Stuck::row(StepKind::Delivery, row.order, problem)),
        }
    }
    decoded
}

/// The order of a stored step, or what is wrong with its id.
fn stored_order(value: &StoredValue) -> Result<OrderId, String> {
    match value {
        StoredValue::Text(text) => std::str::from_utf8(text)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| format!("{:?} is not an order id", value.to_string())),
        other => Err(format!("its order id is {other}, not text")),
    }
}

/// One stored payment request, or what keeps it from being carried out.
fn decode_payment(row: &StoredPayment) -> Result<PaymentDue, String> {
    let order = stored_order(&row.order)?;
    let amount = match row.amount {
        StoredValue::Integer(n) => {
            Total::try_from(n).map_err(|_| format!("its amount {n} is not a valid total"))?
        }
        ref other => return Err(format!("its amount is {other}, not a whole number")),
    };
    if !row.known {
        return Err("its order is not in the event log".to_owned());
    }
    Ok(PaymentDue { order, amount })
}

/// One stored timer, or what keeps it from being carried out.
fn decode_delivery(row: &StoredDelivery) -> Result<DeliveryDue, String> {
    let order = stored_order(&row.order)?;
    let StoredValue::Integer(ms) = row.due_at else {
        return Err(format!("its due time is {}, not a number of milliseconds", row.due_at));
    };
    if ms < 0 {
        // No daemon writes one: approval happens now, and the delay is never negative.
        return Err(format!("it is due {ms} ms before 1970, a time no daemon writes"));
    }
    let due_at = Timestamp::from_millisecond(ms)
        .map_err(|_| format!("it is due {ms} ms after 1970, past the last time this daemon can represent"))?;
    if !row.known {
        return Err("its order is not in the event log".to_owned());
    }
    Ok(DeliveryDue { due_at, order, scheduled_at: row.scheduled_at })
}

/// A stored step that cannot be carried out, and the key of its row.
#[derive(Clone, Debug)]
pub struct Stuck {
    pub kind: StepKind,
    /// Its order id as the store holds it (it may be what is damaged).
    pub key: StoredValue,
    pub step: StuckStep,
}

impl Stuck {
    /// A step of this run that failed for good.
    pub fn step(kind: StepKind, order: OrderId, problem: String) -> Stuck {
        let order = order.to_string();
        Stuck {
            kind,
            key: StoredValue::text(&order),
            step: StuckStep { step: step_name(kind).to_owned(), order, problem },
        }
    }

    /// A stored row that cannot be carried out.
    fn row(kind: StepKind, order: StoredValue, problem: String) -> Stuck {
        let text = order.to_string();
        Stuck { kind, key: order, step: StuckStep { step: step_name(kind).to_owned(), order: text, problem } }
    }

    /// The step's identity in the registry.
    fn id(&self) -> (StepKind, String) {
        (self.kind, format!("{:?}", self.key))
    }
}

/// How many stuck steps `status` lists (it counts them all).
pub const STUCK_LISTED: usize = 10;

/// The steps of this run that cannot be carried out: found on start, or failed for good since.
/// They stay in the store; this is what `status` reports about them.
#[derive(Debug, Default)]
pub struct StuckSteps {
    inner: Mutex<StuckInner>,
}

#[derive(Debug, Default)]
struct StuckInner {
    /// One step is counted once, however often it fails.
    seen: HashSet<(StepKind, String)>,
    steps: Vec<Stuck>,
}

impl StuckSteps {
    /// Records a step that cannot be carried out, and logs it.
    pub fn add(&self, stuck: Stuck) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if !inner.seen.insert(stuck.id()) {
            return;
        }
        tracing::warn!(order = %stuck.step.order, step = %stuck.step.step,
            "{}; the step is kept in the database but not carried out (see `orders check`)", stuck.step.problem);
        inner.steps.push(stuck);
    }

    /// How many were recorded.
    pub fn count(&self) -> usize {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).steps.len()
    }

    /// How many are still stored, and the first few. A step closed meanwhile (its order
    /// cancelled, its row mended or removed by hand) is forgotten.
    pub fn still_stored(&self, reads: &mut dyn Reads) -> Result<(u64, Vec<StuckStep>), StoreError> {
        let steps = self.inner.lock().unwrap_or_else(PoisonError::into_inner).steps.clone();
        let mut gone = HashSet::new();
        for stuck in &steps {
            if !reads.step_stored(stuck.kind, &stuck.key)? {
                gone.insert(stuck.id());
            }
        }
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if !gone.is_empty() {
            inner.steps.retain(|stuck| !gone.contains(&stuck.id()));
            inner.seen.retain(|key| !gone.contains(key));
        }
        let listed = inner.steps.iter().take(STUCK_LISTED).map(|stuck| stuck.step.clone()).collect();
        Ok((inner.steps.len() as u64, listed))
    }
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
