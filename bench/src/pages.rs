//! What one commit writes (issue 14): the WAL frames — pages of 4 KiB — of each kind of commit
//! the daemon makes, through its own writer path on a store that already holds many orders (so
//! that its B-trees have their real depth). Each commit starts on an empty WAL; a second
//! connection reads how many frames it left there.

use std::path::Path;

use jiff::{SignedDuration, Timestamp};
use orders_daemon::command::{Policy, WriteCommand};
use orders_daemon::store::sqlite::{self as store, SqliteStore};
use orders_daemon::writer;
use orders_shared::protocol::CreateRequest;
use orders_shared::{OrderId, PaymentDecision, Total};

/// Average frames of each kind of commit, over `rounds` orders, on the seeded store at `data_dir`.
pub struct Frames {
    pub create: f64,
    pub payment: f64,
    pub create_with_payment: f64,
    pub delivery: f64,
    pub one_event: f64,
}

pub fn frames(data_dir: &Path, rounds: usize) -> anyhow::Result<Frames> {
    let database = data_dir.join(orders_daemon::paths::DATABASE_FILE);
    let mut store = SqliteStore::open(&database)?;
    let raw = store::open_another_writer(&database)?;
    let policy = Policy { delivery_delay: SignedDuration::ZERO };
    // Frames in the WAL after `commands` committed alone on an empty one.
    let mut measure = |commands: &[WriteCommand]| -> anyhow::Result<(u64, Vec<OrderId>)> {
        raw.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        let now = Timestamp::from_millisecond(Timestamp::now().as_millisecond())?;
        let (answers, _) = writer::commit(&mut store, commands, now, &policy)?;
        let ids = answers
            .into_iter()
            .map(|answer| Ok(answer.map_err(|e| anyhow::anyhow!(e.message))?.id))
            .collect::<anyhow::Result<_>>()?;
        let frames: i64 = raw.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))?;
        Ok((frames as u64, ids))
    };
    let create = |n: usize| -> anyhow::Result<WriteCommand> {
        Ok(WriteCommand::Create(CreateRequest {
            user: format!("pages{:04}", n % 1000).parse()?,
            total: Total::try_from(2)?,
            idempotency_key: None,
        }))
    };
    let approve = |order| WriteCommand::DecidePayment { order, decision: PaymentDecision::Approved };
    let mut sums = [0_u64; 4];
    for n in 0..rounds {
        let (frames, ids) = measure(&[create(n)?])?;
        sums[0] += frames;
        sums[1] += measure(&[approve(ids[0])])?.0;
        sums[3] += measure(&[WriteCommand::Deliver(ids[0])])?.0;
    }
    // A create sharing its commit with the previous order's payment, as the writer's linger
    // makes it for a client placing orders one after the other.
    let mut previous = measure(&[create(0)?])?.1[0];
    for n in 0..rounds {
        let (frames, ids) = measure(&[create(n)?, approve(previous)])?;
        sums[2] += frames;
        previous = ids[0];
    }
    let one_event = one_event_frames(&raw, rounds)?;
    let average = |sum: u64| sum as f64 / rounds as f64;
    Ok(Frames {
        create: average(sums[0]),
        payment: average(sums[1]),
        create_with_payment: average(sums[2]),
        delivery: average(sums[3]),
        one_event,
    })
}

/// The bare reference: frames of a transaction appending one event row to the same log.
fn one_event_frames(raw: &rusqlite::Connection, rounds: usize) -> anyhow::Result<f64> {
    let mut sum = 0;
    for n in 0..rounds {
        raw.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        raw.execute(
            "INSERT INTO events (event_id, stream_id, version, type, schema_version, payload, correlation_id, \
             causation_id, idempotency_key, recorded_at) VALUES (?1, ?2, 1, 'BenchEvent', 1, '{}', ?1, ?1, NULL, ?3)",
            rusqlite::params![uuid::Uuid::now_v7().to_string(), format!("bench-{n}-{}", uuid::Uuid::now_v7()), 0],
        )?;
        let frames: i64 = raw.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))?;
        sum += frames as u64;
    }
    Ok(sum as f64 / rounds as f64)
}
