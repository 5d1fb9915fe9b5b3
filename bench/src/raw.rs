//! The raw SQLite ceilings: what a plain rusqlite loop does with the same rows, the same
//! settings and the same batch sizes as the daemon, with none of its machinery (no socket, no
//! domain, no sagas). Every daemon figure is reported as a ratio of its ceiling.

use std::path::Path;
use std::time::{Duration, Instant};

use orders_daemon::{projection, store};
use rusqlite::params;
use serde::Deserialize;

#[derive(Deserialize)]
struct Placed<'a> {
    user: &'a str,
    total: i64,
}

#[derive(Deserialize)]
struct Cancelled<'a> {
    reason: &'a str,
}

/// Rebuilds a copy of the read model from the log in chunks of `chunk` events per transaction,
/// as `replay` does; returns the events applied and the time it took.
pub fn rebuild(database: &Path, chunk: usize) -> anyhow::Result<(u64, Duration)> {
    let mut conn = store::open_writer(database)?;
    conn.execute_batch("DROP TABLE IF EXISTS raw_rebuild")?;
    projection::create_table(&conn, "main", "raw_rebuild", "_raw")?;
    let started = Instant::now();
    let mut cursor = 0_i64;
    let mut applied = 0_u64;
    loop {
        let tx = conn.transaction()?;
        let mut read = 0;
        {
            let mut select = tx.prepare_cached(
                "SELECT position, stream_id, type, payload, recorded_at FROM events WHERE position > ?1 \
                 ORDER BY position LIMIT ?2",
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO raw_rebuild (id, user, total, status, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, 'pending', ?4, ?4)",
            )?;
            let mut approve = tx.prepare_cached(
                "UPDATE raw_rebuild SET status = 'approved', approved_at = ?2, updated_at = ?2 WHERE id = ?1",
            )?;
            let mut deliver = tx.prepare_cached(
                "UPDATE raw_rebuild SET status = 'delivered', delivered_at = ?2, updated_at = ?2 WHERE id = ?1",
            )?;
            let mut cancel = tx.prepare_cached(
                "UPDATE raw_rebuild SET status = 'cancelled', cancel_reason = ?3, cancelled_at = ?2, \
                 updated_at = ?2 WHERE id = ?1",
            )?;
            let mut rows = select.query(params![cursor, chunk as i64])?;
            while let Some(row) = rows.next()? {
                read += 1;
                cursor = row.get(0)?;
                let stream: &str = row.get_ref(1)?.as_str()?;
                let Some(id) = stream.strip_prefix("order-") else { continue };
                let at: i64 = row.get(4)?;
                match row.get_ref(2)?.as_str()? {
                    "OrderPlaced" => {
                        let placed: Placed = serde_json::from_str(row.get_ref(3)?.as_str()?)?;
                        insert.execute(params![id, placed.user, placed.total, at])?;
                    }
                    "OrderApproved" => {
                        approve.execute(params![id, at])?;
                    }
                    "OrderDelivered" => {
                        deliver.execute(params![id, at])?;
                    }
                    "OrderCancelled" => {
                        let cancelled: Cancelled = serde_json::from_str(row.get_ref(3)?.as_str()?)?;
                        cancel.execute(params![id, at, cancelled.reason])?;
                    }
                    _ => {}
                }
            }
        }
        tx.commit()?;
        applied += read;
        if read < chunk as u64 {
            break;
        }
    }
    let elapsed = started.elapsed();
    conn.execute_batch("DROP TABLE raw_rebuild")?;
    Ok((applied, elapsed))
}
