//! The sagas' workers: the steps of the payment and delivery processes that cannot run inside
//! the transaction that opens them — the payment provider's decision and the delivery at its due
//! time. Each step is a command to the writer, idempotent by construction (see
//! `commands::UnitOfWork::decide_payment` and `deliver`), so a step re-run after a crash records
//! nothing twice. Their open steps are in the database (`payment_requests`, `delivery_timers`)
//! and are loaded again on start.

pub mod delivery;
pub mod payment;

#[cfg(test)]
mod tests;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::writer::WriteResult;

/// How long a step that failed for a passing reason (disk full, locked database) waits before
/// it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Whether a failed step should be tried again later, logging the failure.
fn should_retry(
    step: &str,
    order: &orders_shared::OrderId,
    result: &WriteResult,
    shutdown: &CancellationToken,
) -> bool {
    match result {
        Ok(_) => false,
        // Shutting down: the step stays open in the database and resumes on the next start.
        Err(_) if shutdown.is_cancelled() => false,
        Err(error) => {
            tracing::error!(%order, step, code = ?error.code, "{}; retrying in {RETRY_AFTER:?}", error.message);
            true
        }
    }
}
