//! The sagas' workers: the steps of the payment and delivery processes that cannot run inside
//! the transaction that opens them — the payment provider's decision and the delivery at its due
//! time. Each step is a command to the writer, idempotent by construction (see
//! `commands::UnitOfWork::decide_payment` and `deliver`), so a step re-run after a crash records
//! nothing twice. Their open steps are in the database (`payment_requests`, `delivery_timers`)
//! and are loaded again on start.
//!
//! Both workers are one scheduler ([`run`]): a heap of steps by due time; the steps that fall due
//! together go to the writer together (and share its commits); a step that fails for a passing
//! reason (disk full) is tried again a second later, any other failure is logged and left open.
//!
//! A stored step the daemon cannot carry out — a row that does not decode, a due time it cannot
//! represent or schedule, an order the step cannot find — never stops the daemon from starting:
//! it is left out of the schedule, kept in the database untouched (a fixed build, or a repair,
//! can still run it), and reported by `status`, `check` and the log ([`StuckSteps`]).

pub mod delivery;
pub mod payment;

#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::join_all;
use orders_shared::OrderId;
use orders_shared::protocol::{ErrorCode, StuckStep};
use rusqlite::Connection;
use rusqlite::types::{Value, ValueRef};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::commands::WriteCommand;
use crate::store::StoreError;
use crate::writer::Writer;

/// How long a step that failed for a passing reason waits before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The most steps sent to the writer at once.
const BATCH: usize = 1024;

/// One kind of saga step.
pub trait Step: Copy + Ord + Debug + Send + 'static {
    /// For logs.
    const NAME: &'static str;

    /// The table that keeps the open steps.
    const TABLE: &'static str;

    /// What carrying a step out needs (the payment provider).
    type Context: Send + Sync;

    fn order(&self) -> OrderId;

    /// How long from now until the step is due (zero when it is due already).
    fn due_in(&self, context: &Self::Context) -> Duration;

    /// The writer's command that carries the step out.
    fn command(&self, context: &Self::Context) -> WriteCommand;
}

/// The stored steps of one kind: those to run, and those that cannot be.
#[derive(Debug)]
pub struct Stored<S> {
    pub steps: Vec<S>,
    pub stuck: Vec<Stuck>,
}

/// A stored step that cannot be carried out, and the key of its row.
#[derive(Clone, Debug)]
pub struct Stuck {
    /// `payment_requests` or `delivery_timers`.
    pub table: &'static str,
    /// Its `order_id` as SQLite holds it (it may be what is damaged).
    pub key: Value,
    pub step: StuckStep,
}

/// How many stuck steps `status` lists (it counts them all).
pub const STUCK_LISTED: usize = 10;

/// The steps of this run that cannot be carried out: found on start, or failed for good since.
/// They stay in the database; this is what `status` reports about them.
#[derive(Debug, Default)]
pub struct StuckSteps {
    inner: Mutex<StuckInner>,
}

#[derive(Debug, Default)]
struct StuckInner {
    /// (table, key): one step is counted once, however often it fails.
    seen: HashSet<(&'static str, String)>,
    steps: Vec<Stuck>,
}

impl StuckSteps {
    /// Records a step that cannot be carried out, and logs it.
    pub fn add(&self, stuck: Stuck) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if !inner.seen.insert((stuck.table, format!("{:?}", stuck.key))) {
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
    pub fn still_stored(&self, conn: &Connection) -> Result<(u64, Vec<StuckStep>), StoreError> {
        let steps = self.inner.lock().unwrap_or_else(PoisonError::into_inner).steps.clone();
        let mut gone = HashSet::new();
        for stuck in &steps {
            let sql = format!("SELECT count(*) FROM {} WHERE order_id = ?1", stuck.table);
            let stored: i64 = conn.prepare_cached(&sql)?.query_row([&stuck.key], |row| row.get(0))?;
            if stored == 0 {
                gone.insert((stuck.table, format!("{:?}", stuck.key)));
            }
        }
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if !gone.is_empty() {
            inner.steps.retain(|stuck| !gone.contains(&(stuck.table, format!("{:?}", stuck.key))));
            inner.seen.retain(|key| !gone.contains(key));
        }
        let listed = inner.steps.iter().take(STUCK_LISTED).map(|stuck| stuck.step.clone()).collect();
        Ok((inner.steps.len() as u64, listed))
    }
}

/// A stored order id as text for a report, whatever SQLite holds in its place.
pub(crate) fn stored_text(value: ValueRef<'_>) -> String {
    match value {
        ValueRef::Text(text) => String::from_utf8_lossy(text).into_owned(),
        ValueRef::Integer(n) => n.to_string(),
        ValueRef::Real(x) => x.to_string(),
        ValueRef::Null => "NULL".to_owned(),
        ValueRef::Blob(bytes) => format!("a blob of {} bytes", bytes.len()),
    }
}

/// The order of a stored step, or what is wrong with its id.
pub(crate) fn stored_order(value: ValueRef<'_>) -> Result<OrderId, String> {
    match value {
        ValueRef::Text(text) => std::str::from_utf8(text)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| format!("{:?} is not an order id", stored_text(value))),
        other => Err(format!("its order id is {}, not text", stored_text(other))),
    }
}

/// Runs steps as they fall due, until shutdown. A step that cannot be scheduled or fails for
/// good goes to `stuck`.
pub async fn run<S: Step>(
    mut incoming: mpsc::UnboundedReceiver<S>,
    context: S::Context,
    writer: Writer,
    stuck: std::sync::Arc<StuckSteps>,
    shutdown: CancellationToken,
) {
    let mut waiting: BinaryHeap<Reverse<(Instant, S)>> = BinaryHeap::new();
    let mut received = Vec::with_capacity(BATCH);
    loop {
        let next = waiting.peek().map(|Reverse((at, _))| *at);
        tokio::select! {
            () = shutdown.cancelled() => return,
            count = incoming.recv_many(&mut received, BATCH) => {
                if count == 0 {
                    return;
                }
                let now = Instant::now();
                for step in received.drain(..) {
                    match now.checked_add(step.due_in(&context)) {
                        Some(at) => waiting.push(Reverse((at, step))),
                        None => stuck.add(stuck_step::<S>(&step, "due too far in the future to be scheduled".into())),
                    }
                }
            }
            () = sleep_until(next) => {}
        }
        let now = Instant::now();
        let mut ready = Vec::new();
        while ready.len() < BATCH
            && let Some(Reverse((at, _))) = waiting.peek()
            && *at <= now
        {
            let Some(Reverse((_, step))) = waiting.pop() else { break };
            ready.push(step);
        }
        if ready.is_empty() {
            continue;
        }
        let (writer, context) = (&writer, &context);
        let results = join_all(
            ready.into_iter().map(|step| async move { (step, writer.execute(step.command(context)).await) }),
        )
        .await;
        for (step, result) in results {
            match result {
                Ok(_) => {}
                // Shutting down: the step stays open in the database and resumes on the next start.
                Err(_) if shutdown.is_cancelled() => {}
                // A passing fault (a full disk, a busy database): try again shortly.
                Err(error) if matches!(error.code, ErrorCode::Unavailable | ErrorCode::Busy) => {
                    tracing::warn!(order = %step.order(), step = S::NAME,
                        "{}; retrying in {RETRY_AFTER:?}", error.message);
                    waiting.push(Reverse((Instant::now() + RETRY_AFTER, step)));
                }
                // Anything else is a bug or a damaged log: retrying cannot help. The step stays open
                // in the database (and `orders check` reports it); the next start tries it again.
                Err(error) => {
                    tracing::error!(order = %step.order(), step = S::NAME, code = ?error.code,
                        "{}; left open until the next start", error.message);
                    stuck.add(stuck_step::<S>(&step, error.message));
                }
            }
        }
    }
}

fn stuck_step<S: Step>(step: &S, problem: String) -> Stuck {
    let order = step.order().to_string();
    Stuck {
        table: S::TABLE,
        key: Value::Text(order.clone()),
        step: StuckStep { step: S::NAME.to_owned(), order, problem },
    }
}

/// A stored row that cannot be carried out, as [`Stored`] lists it.
pub(crate) fn stuck_row<S: Step>(order: ValueRef<'_>, problem: String) -> Stuck {
    Stuck {
        table: S::TABLE,
        // Text that is not UTF-8 is kept as its bytes (it then compares equal to nothing).
        key: Value::try_from(order)
            .unwrap_or_else(|_| Value::Blob(order.as_bytes().unwrap_or_default().to_vec())),
        step: StuckStep { step: S::NAME.to_owned(), order: stored_text(order), problem },
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
