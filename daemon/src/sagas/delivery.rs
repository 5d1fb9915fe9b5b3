//! The delivery saga's worker: a timer per scheduled delivery; when one is due, the order is
//! delivered. The timers themselves are durable (`delivery_timers`); this keeps the next ones
//! in memory, ordered by due time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use futures_util::future::join_all;
use jiff::Timestamp;
use orders_shared::OrderId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{RETRY_AFTER, should_retry};
use crate::commands::WriteCommand;
use crate::writer::Writer;

/// A delivery and when it is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeliveryDue {
    pub due_at: Timestamp,
    pub order: OrderId,
}

/// Delivers orders as they fall due, until shutdown. Overdue ones (after a restart) go at once.
pub async fn run(mut due: mpsc::UnboundedReceiver<DeliveryDue>, writer: Writer, shutdown: CancellationToken) {
    let mut timers: BinaryHeap<Reverse<DeliveryDue>> = BinaryHeap::new();
    let mut incoming = Vec::new();
    loop {
        let wait = timers.peek().map(|Reverse(next)| until(next.due_at));
        tokio::select! {
            () = shutdown.cancelled() => return,
            received = due.recv_many(&mut incoming, 1024) => {
                if received == 0 {
                    return;
                }
                timers.extend(incoming.drain(..).map(Reverse));
            }
            () = sleep_or_forever(wait) => {
                let now = Timestamp::now();
                let mut ready = Vec::new();
                while let Some(Reverse(next)) = timers.peek() && next.due_at <= now {
                    ready.push(next.order);
                    timers.pop();
                }
                let writer = &writer;
                let results = join_all(ready.into_iter().map(|order| async move {
                    (order, writer.execute(WriteCommand::Deliver(order)).await)
                }))
                .await;
                for (order, result) in results {
                    if should_retry("delivery", &order, &result, &shutdown) {
                        let due_at = Timestamp::now() + RETRY_AFTER;
                        timers.push(Reverse(DeliveryDue { due_at, order }));
                    }
                }
            }
        }
    }
}

fn until(at: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO)
}

async fn sleep_or_forever(wait: Option<Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
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
