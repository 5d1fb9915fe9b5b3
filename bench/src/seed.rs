//! Fills a database with settled orders through the daemon's own command handlers (no socket),
//! in large transactions: the very events the daemon records, written fast.

use std::path::Path;

use jiff::{SignedDuration, Timestamp};
use orders_daemon::commands::{Policy, UnitOfWork, WriteCommand};
use orders_daemon::{projection, store};
use orders_shared::protocol::CreateRequest;
use orders_shared::{PaymentDecision, Total};

/// Orders per transaction while seeding.
const BATCH: usize = 1_000;

/// One order in this many is cancelled after approval instead of delivered (a rare status, for
/// `list --status`).
pub const CANCELLED_EVERY: usize = 1_000;

/// Seeds `orders` delivered orders spread over `users` customers (one in [`CANCELLED_EVERY`]
/// cancelled instead); returns the log's length.
pub fn delivered_orders(data_dir: &Path, orders: usize, users: usize) -> anyhow::Result<i64> {
    std::fs::create_dir_all(data_dir)?;
    let mut conn = store::open_writer(&data_dir.join(orders_daemon::paths::DATABASE_FILE))?;
    store::schema::migrate(&mut conn)?;
    let policy = Policy { delivery_delay: SignedDuration::ZERO };
    let mut placed = 0;
    while placed < orders {
        let tx = conn.transaction()?;
        let now = Timestamp::from_millisecond(Timestamp::now().as_millisecond())?;
        for n in placed..(placed + BATCH).min(orders) {
            let user = format!("user{:06}", n % users.max(1)).parse()?;
            let total = Total::try_from(2 * (1 + n as i64 % 500))?;
            let mut unit = UnitOfWork::new(&tx, now, &policy);
            let order =
                unit.run(&WriteCommand::Create(CreateRequest { user, total, idempotency_key: None }))?.id;
            unit.run(&WriteCommand::DecidePayment { order, decision: PaymentDecision::Approved })?;
            if n % CANCELLED_EVERY == CANCELLED_EVERY - 1 {
                unit.run(&WriteCommand::Cancel(order))?;
            } else {
                unit.run(&WriteCommand::Deliver(order))?;
            }
        }
        let head = store::EventStore::new(&tx).head()?;
        projection::set_checkpoint(&tx, head)?;
        tx.commit()?;
        placed = (placed + BATCH).min(orders);
    }
    Ok(store::EventStore::new(&conn).head()?)
}
