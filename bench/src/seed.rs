//! Fills a database with settled orders through the daemon's own writer path (no socket), in
//! large batches: the very events the daemon records, written fast.

use std::path::Path;

use jiff::{SignedDuration, Timestamp};
use orders_daemon::command::{Policy, WriteCommand};
use orders_daemon::store::Store;
use orders_daemon::store::sqlite::SqliteStore;
use orders_daemon::writer;
use orders_shared::protocol::CreateRequest;
use orders_shared::{PaymentDecision, Total};

/// Orders per batch while seeding.
const BATCH: usize = 1_000;

/// One order in this many is cancelled after approval instead of delivered (a rare status, for
/// `list --status`).
pub const CANCELLED_EVERY: usize = 1_000;

/// Seeds `orders` delivered orders spread over `users` customers (one in [`CANCELLED_EVERY`]
/// cancelled instead); returns the log's length.
pub fn delivered_orders(data_dir: &Path, orders: usize, users: usize) -> anyhow::Result<i64> {
    std::fs::create_dir_all(data_dir)?;
    let mut store = SqliteStore::open(&data_dir.join(orders_daemon::paths::DATABASE_FILE))?;
    store.migrate()?;
    let policy = Policy { delivery_delay: SignedDuration::ZERO };
    let mut placed = 0;
    while placed < orders {
        let now = Timestamp::from_millisecond(Timestamp::now().as_millisecond())?;
        let numbers = placed..(placed + BATCH).min(orders);
        let mut commit = |commands: &[WriteCommand]| -> anyhow::Result<Vec<orders_shared::OrderId>> {
            let (answers, _) = writer::commit(&mut store, commands, now, &policy)?;
            answers.into_iter().map(|answer| Ok(answer.map_err(|e| anyhow::anyhow!(e.message))?.id)).collect()
        };
        let creates: Vec<_> = numbers
            .clone()
            .map(|n| {
                let user = format!("user{:06}", n % users.max(1)).parse()?;
                let total = Total::try_from(2 * (1 + n as i64 % 500))?;
                Ok(WriteCommand::Create(CreateRequest { user, total, idempotency_key: None }))
            })
            .collect::<anyhow::Result<_>>()?;
        let ids = commit(&creates)?;
        let decisions: Vec<_> = ids
            .iter()
            .map(|&order| WriteCommand::DecidePayment { order, decision: PaymentDecision::Approved })
            .collect();
        commit(&decisions)?;
        let settle: Vec<_> = numbers
            .zip(&ids)
            .map(|(n, &order)| {
                if n % CANCELLED_EVERY == CANCELLED_EVERY - 1 {
                    WriteCommand::Cancel(order)
                } else {
                    WriteCommand::Deliver(order)
                }
            })
            .collect();
        commit(&settle)?;
        placed = (placed + BATCH).min(orders);
    }
    Ok(store.head()?.get())
}
