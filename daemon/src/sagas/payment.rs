//! The payment saga's worker: asks the provider about every requested payment and records its
//! decision.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use orders_shared::{OrderId, PaymentProvider, Total};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{RETRY_AFTER, should_retry};
use crate::commands::WriteCommand;
use crate::writer::Writer;

/// A payment waiting for the provider's decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PaymentDue {
    pub order: OrderId,
    pub amount: Total,
}

/// The most decisions sent to the writer before awaiting their commit.
const BATCH: usize = 1024;

/// Decides payments until shutdown. `latency` simulates a slow provider (0 in production use of
/// the even/odd rule); each payment then waits on its own, without holding up the others.
pub async fn run(
    provider: Arc<dyn PaymentProvider>,
    latency: Duration,
    mut due: mpsc::UnboundedReceiver<PaymentDue>,
    retry: mpsc::UnboundedSender<PaymentDue>,
    writer: Writer,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            received = due.recv_many(&mut batch, BATCH) => if received == 0 { return },
        }
        if latency.is_zero() {
            decide(&*provider, batch.drain(..), &writer, &retry, &shutdown).await;
            continue;
        }
        for payment in batch.drain(..) {
            let (provider, writer, retry, shutdown) =
                (provider.clone(), writer.clone(), retry.clone(), shutdown.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(latency) => decide(&*provider, [payment], &writer, &retry, &shutdown).await,
                }
            });
        }
    }
}

/// Asks the provider and records each decision; all of them share the writer's next commits.
async fn decide(
    provider: &dyn PaymentProvider,
    payments: impl IntoIterator<Item = PaymentDue>,
    writer: &Writer,
    retry: &mpsc::UnboundedSender<PaymentDue>,
    shutdown: &CancellationToken,
) {
    let mut pending = Vec::new();
    for payment in payments {
        let decision = provider.decide(payment.order, payment.amount);
        let command = WriteCommand::DecidePayment { order: payment.order, decision };
        pending.push(async move { (payment, writer.execute(command).await) });
    }
    for (payment, result) in join_all(pending).await {
        if should_retry("payment decision", &payment.order, &result, shutdown) {
            let retry = retry.clone();
            tokio::spawn(async move {
                tokio::time::sleep(RETRY_AFTER).await;
                let _ = retry.send(payment);
            });
        }
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
