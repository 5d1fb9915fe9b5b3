//! Who waits for which order to settle (`orders create --wait`, the `wait` request).
//!
//! The writer calls [`Settlements::settled`] after committing an order's last event; a waiter
//! subscribes *before* reading the order's status, so that a settlement between the read and
//! the wait cannot be missed.

use std::collections::HashMap;
use std::sync::Mutex;

use orders_shared::OrderId;
use tokio::sync::oneshot;

#[derive(Debug, Default)]
pub struct Settlements {
    waiting: Mutex<HashMap<OrderId, Vec<oneshot::Sender<()>>>>,
}

impl Settlements {
    /// Resolves when the order settles (or when the daemon drops the registry).
    pub fn subscribe(&self, order: OrderId) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.lock().entry(order).or_default().push(tx);
        rx
    }

    /// Drops the subscriptions of waiters that gave up on an order.
    pub fn forget_abandoned(&self, order: OrderId) {
        let mut waiting = self.lock();
        if let Some(senders) = waiting.get_mut(&order) {
            senders.retain(|sender| !sender.is_closed());
            if senders.is_empty() {
                waiting.remove(&order);
            }
        }
    }

    /// Wakes everybody waiting for this order.
    pub fn settled(&self, order: OrderId) {
        let senders = self.lock().remove(&order);
        for sender in senders.into_iter().flatten() {
            let _ = sender.send(());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<OrderId, Vec<oneshot::Sender<()>>>> {
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
