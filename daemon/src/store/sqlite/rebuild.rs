//! The replay's fresh table and its swap, in SQLite.
//!
//! A rebuild fills `orders_rebuild` a chunk at a time, each chunk in its own transaction. The
//! chunk that finds the end of the log swaps the table in for the live one in that same
//! transaction (which holds the write lock, so nothing can be appended meanwhile): one atomic
//! rename. A rebuild that fails, is abandoned, or dies with the daemon leaves the live table
//! in place; the half-built table is dropped on the next start. `replay --check` builds into a
//! temporary table instead and compares it with the live one, swapping nothing.

use orders_shared::protocol::Difference;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::events::EventStore;
use super::read_model::{self, Projector};
use super::schema::ORDERS_TABLE;
use crate::store::{Position, RebuildChunk, Rebuilt, StoreError};

/// The table a replay builds before it is renamed to `orders`.
const REBUILD_TABLE: &str = "orders_rebuild";
/// The temporary table `replay --check` builds and compares.
const CHECK_TABLE: &str = "orders_check";
/// How many differing orders a check report shows (it counts them all).
const MAX_EXAMPLES: usize = 20;

/// The table a rebuild fills.
fn table(check: bool) -> String {
    if check { format!("temp.{CHECK_TABLE}") } else { REBUILD_TABLE.to_owned() }
}

/// Drops what an interrupted rebuild left behind (the daemon died while it ran).
pub(super) fn drop_leftovers(conn: &Connection) -> Result<bool, StoreError> {
    let leftover: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [REBUILD_TABLE],
            |row| row.get(0),
        )
        .optional()?;
    if leftover.is_some() {
        conn.execute_batch(&format!("DROP TABLE {REBUILD_TABLE}"))?;
    }
    Ok(leftover.is_some())
}

/// Creates the empty table a rebuild fills; returns the log's head.
pub(super) fn start(conn: &Connection, check: bool) -> Result<Position, StoreError> {
    if check {
        conn.execute_batch(&format!("DROP TABLE IF EXISTS temp.{CHECK_TABLE}"))?;
        read_model::create_table(conn, "temp", CHECK_TABLE, "_check")?;
    } else {
        drop_leftovers(conn)?;
        // Index names outlive the rename, so alternate them between rebuilds.
        let taken: bool = conn.query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'index' AND name = 'orders_by_id_a'",
            [],
            |row| row.get(0),
        )?;
        read_model::create_table(conn, "main", REBUILD_TABLE, if taken { "_b" } else { "_a" })?;
    }
    EventStore::new(conn).head()
}

/// Applies the next chunk in its own transaction; at the end of the log, finishes (swaps, or
/// compares) in that same transaction.
pub(super) fn chunk(
    conn: &mut Connection,
    check: bool,
    after: Position,
    chunk: usize,
) -> Result<RebuildChunk, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (read, last) = Projector::new(&table(check)).apply_log(&tx, after, chunk)?;
    let finished = if read < chunk { Some(finish(&tx, check, last)?) } else { None };
    tx.commit()?;
    Ok(RebuildChunk { read, last, finished })
}

/// The log is all applied and nothing can be appended before this transaction commits.
fn finish(tx: &Connection, check: bool, last: Position) -> Result<Rebuilt, StoreError> {
    let (differences, examples) = if check {
        let found = compare(tx)?;
        tx.execute_batch(&format!("DROP TABLE temp.{CHECK_TABLE}"))?;
        found
    } else {
        tx.execute_batch(&format!(
            "DROP TABLE {ORDERS_TABLE}; ALTER TABLE {REBUILD_TABLE} RENAME TO {ORDERS_TABLE};"
        ))?;
        read_model::set_checkpoint(tx, last)?;
        (0, Vec::new())
    };
    let orders: i64 = tx.query_row(&format!("SELECT count(*) FROM {ORDERS_TABLE}"), [], |row| row.get(0))?;
    Ok(Rebuilt { orders: orders.try_into().unwrap_or_default(), differences, examples })
}

/// Drops the half-built table; the live read model stays as it was.
pub(super) fn abandon(conn: &Connection, check: bool) -> Result<(), StoreError> {
    conn.execute_batch(&format!("DROP TABLE IF EXISTS {}", table(check)))?;
    Ok(())
}

/// The orders whose live and rebuilt rows differ, counted, with the first few shown.
fn compare(tx: &Connection) -> Result<(u64, Vec<Difference>), StoreError> {
    let columns = read_model::COLUMNS;
    let live = format!("main.{ORDERS_TABLE}");
    let rebuilt = format!("temp.{CHECK_TABLE}");
    let mut differing = tx.prepare(&format!(
        "SELECT id FROM (SELECT {columns} FROM {live} EXCEPT SELECT {columns} FROM {rebuilt}) \
         UNION SELECT id FROM (SELECT {columns} FROM {rebuilt} EXCEPT SELECT {columns} FROM {live}) \
         ORDER BY id"
    ))?;
    let ids = differing.query_map([], |row| row.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
    let as_json = |table: &str, id: &str| -> Result<Option<serde_json::Value>, StoreError> {
        let row: Option<String> = tx
            .query_row(
                &format!(
                    "SELECT json_object('id', id, 'user', user, 'total', total, 'status', status, \
                     'created_at', created_at, 'updated_at', updated_at, 'cancel_reason', cancel_reason, \
                     'approved_at', approved_at, 'delivered_at', delivered_at, 'cancelled_at', cancelled_at) \
                     FROM {table} WHERE id = ?1"
                ),
                [id],
                |row| row.get(0),
            )
            .optional()?;
        Ok(row.and_then(|text| serde_json::from_str(&text).ok()))
    };
    let examples = ids
        .iter()
        .take(MAX_EXAMPLES)
        .map(|id| {
            Ok(Difference { id: id.clone(), live: as_json(&live, id)?, rebuilt: as_json(&rebuilt, id)? })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok((ids.len() as u64, examples))
}
