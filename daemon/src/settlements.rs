//! Who waits for which order to settle (`orders create --wait`, the `wait` request).
//!
//! The writer calls [`Settlements::settled`] after committing an order's last event. A waiter
//! subscribes *before* reading the order's status, so that a settlement between the read and
//! the wait cannot be missed; its [`Subscription`] unregisters itself when dropped, whether it
//! was woken, gave up, or found the order settled already (an order settles once: a leftover
//! subscription would stay forever).

use std::collections::HashMap;
use std::sync::Mutex;

use orders_shared::OrderId;
use tokio::sync::oneshot;

#[derive(Debug, Default)]
pub struct Settlements {
    waiting: Mutex<HashMap<OrderId, Vec<oneshot::Sender<()>>>>,
}

/// One waiter's interest in one order.
#[derive(Debug)]
pub struct Subscription<'a> {
    settlements: &'a Settlements,
    order: OrderId,
    woken: Option<oneshot::Receiver<()>>,
}

impl Subscription<'_> {
    /// Resolves when the order settles (or the registry goes away).
    pub async fn settled(&mut self) {
        if let Some(woken) = self.woken.as_mut() {
            let _ = woken.await;
        }
    }
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        drop(self.woken.take());
        self.settlements.forget_closed(self.order);
    }
}

impl Settlements {
    pub fn subscribe(&self, order: OrderId) -> Subscription<'_> {
        let (tx, rx) = oneshot::channel();
        self.lock().entry(order).or_default().push(tx);
        Subscription { settlements: self, order, woken: Some(rx) }
    }

    /// Wakes everybody waiting for this order.
    pub fn settled(&self, order: OrderId) {
        let senders = self.lock().remove(&order);
        for sender in senders.into_iter().flatten() {
            let _ = sender.send(());
        }
    }

    /// Whether somebody waits for this order to settle.
    pub fn is_awaited(&self, order: OrderId) -> bool {
        self.lock().contains_key(&order)
    }

    /// Whether somebody waits for any order.
    pub fn any_awaited(&self) -> bool {
        !self.lock().is_empty()
    }

    /// How many orders somebody waits for.
    #[cfg(test)]
    fn waited_for(&self) -> usize {
        self.lock().len()
    }

    /// Drops the subscriptions whose waiters are gone.
    fn forget_closed(&self, order: OrderId) {
        let mut waiting = self.lock();
        if let Some(senders) = waiting.get_mut(&order) {
            senders.retain(|sender| !sender.is_closed());
            if senders.is_empty() {
                waiting.remove(&order);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<OrderId, Vec<oneshot::Sender<()>>>> {
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> OrderId {
        OrderId::from_uuid(uuid::Uuid::now_v7())
    }

    #[tokio::test]
    async fn a_settlement_wakes_its_waiters_and_leaves_nothing_behind() {
        let settlements = Settlements::default();
        let id = order();
        let (mut first, mut second) = (settlements.subscribe(id), settlements.subscribe(id));
        settlements.settled(id);
        first.settled().await;
        second.settled().await;
        drop((first, second));
        assert_eq!(settlements.waited_for(), 0);
    }

    #[test]
    fn a_waiter_that_leaves_unwoken_unregisters() {
        let settlements = Settlements::default();
        let (id, other) = (order(), order());
        let staying = settlements.subscribe(id);
        // Found settled already, or timed out: either way it goes without being woken.
        drop(settlements.subscribe(id));
        drop(settlements.subscribe(other));
        assert_eq!(settlements.waited_for(), 1, "only the order still waited for");
        drop(staying);
        assert_eq!(settlements.waited_for(), 0);
    }
}
