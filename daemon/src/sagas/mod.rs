//! The sagas' workers: the steps of the payment and delivery processes that cannot run inside
//! the transaction that opens them — the payment provider's decision and the delivery at its due
//! time. Each step is a command to the writer, idempotent by construction (see
//! `handlers::decide_payment` and `deliver`), so a step re-run after a crash records
//! nothing twice. Their open steps are in the database (`payment_requests`, `delivery_timers`)
//! and are loaded again on start.
//!
//! Both workers are one scheduler ([`run`]): a heap of steps by due time; the steps that fall due
//! together go to the writer together (and share its commits); a step that fails for a passing
//! reason (disk full) is tried again a second later, any other failure is logged, left open and
//! reported as stuck (see [`crate::steps`]).

pub mod delivery;
pub mod payment;

#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Debug;
use std::time::Duration;

use futures_util::future::join_all;
use orders_shared::OrderId;
use orders_shared::protocol::{ErrorCode, OrderView};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::command::WriteCommand;
use crate::metrics::Metrics;
use crate::steps::{Stuck, StuckSteps};
use crate::store::StepKind;
use crate::writer::Writer;

/// How long a step that failed for a passing reason waits before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The most steps sent to the writer at once.
const BATCH: usize = 1024;

/// One kind of saga step.
pub trait Step: Copy + Ord + Debug + Send + 'static {
    /// Which kind of step it is.
    const KIND: StepKind;

    /// What carrying a step out needs (the payment provider).
    type Context: Send + Sync;

    fn order(&self) -> OrderId;

    /// How long from now until the step is due (zero when it is due already).
    fn due_in(&self, context: &Self::Context) -> Duration;

    /// The writer's command that carries the step out.
    fn command(&self, context: &Self::Context) -> WriteCommand;

    /// Carried out, with `answer`: counted in the metrics.
    fn done(&self, answer: &OrderView, metrics: &Metrics) {
        let _ = (answer, metrics);
    }
}

/// Runs steps as they fall due, until shutdown. A step that cannot be scheduled or fails for
/// good goes to `stuck`.
pub async fn run<S: Step>(
    mut incoming: mpsc::UnboundedReceiver<S>,
    context: S::Context,
    writer: Writer,
    stuck: std::sync::Arc<StuckSteps>,
    metrics: std::sync::Arc<Metrics>,
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
                Ok(answer) => step.done(&answer, &metrics),
                // Shutting down: the step stays open in the database and resumes on the next start.
                Err(_) if shutdown.is_cancelled() => {}
                // A passing fault (a full disk, a busy database): try again shortly.
                Err(error) if matches!(error.code, ErrorCode::Unavailable | ErrorCode::Busy) => {
                    tracing::warn!(order = %step.order(), step = crate::steps::step_name(S::KIND),
                        "{}; retrying in {RETRY_AFTER:?}", error.message);
                    waiting.push(Reverse((Instant::now() + RETRY_AFTER, step)));
                }
                // Anything else is a bug or a damaged log: retrying cannot help. The step stays open
                // in the database (and `orders check` reports it); the next start tries it again.
                Err(error) => {
                    tracing::error!(order = %step.order(), step = crate::steps::step_name(S::KIND), code = ?error.code,
                        "{}; left open until the next start", error.message);
                    stuck.add(stuck_step::<S>(&step, error.message));
                }
            }
        }
    }
}

fn stuck_step<S: Step>(step: &S, problem: String) -> Stuck {
    Stuck::step(S::KIND, step.order(), problem)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
