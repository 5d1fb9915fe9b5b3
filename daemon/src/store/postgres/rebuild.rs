//! The replay's fresh table and its swap, in PostgreSQL.
//!
//! As on SQLite: a rebuild fills `orders_rebuild` a chunk at a time, each chunk its own
//! transaction, and the chunk that reaches the end of the log swaps it in for the live table in
//! that same transaction — the writer's, so nothing is appended between the last event applied
//! and the swap. The swap drops the live table and renames the new one and its indexes; readers
//! wait for it only while it commits. `replay --check` builds into a temporary table of the
//! writer's session and compares, swapping nothing.

use orders_shared::protocol::Difference;
use postgres::{Client, GenericClient};

use super::projection::{Rows, apply_log};
use super::schema::{ORDERS_TABLE, REPLAY_LOCK, create_orders_table};
use super::sql::{self, Statements};
use crate::store::{Position, RebuildChunk, Rebuilt, StoreError};

/// The table a replay builds before it is renamed to `orders`.
const REBUILD_TABLE: &str = "orders_rebuild";
/// The temporary table `replay --check` builds and compares.
const CHECK_TABLE: &str = "orders_check";
/// How many differing orders a check report shows (it counts them all).
const MAX_EXAMPLES: usize = 20;
/// How long the swap waits for the live table's readers before the replay fails (and can be
/// run again): commands queue behind a lock that waits.
const SWAP_LOCK_TIMEOUT: &str = "5s";
/// The suffixes of the read model's indexes (see `create_orders_table`).
const INDEXES: [&str; 5] = ["pkey", "by_user", "by_time", "by_status", "by_tail"];

fn table(check: bool) -> &'static str {
    if check { CHECK_TABLE } else { REBUILD_TABLE }
}

/// Drops the table of a replay that did not finish — unless a replay runs now, on any daemon
/// (its session holds the replay lock): a starting daemon never drops another one's rebuild.
pub(super) fn drop_leftovers(client: &mut Client) -> Result<bool, StoreError> {
    if !try_lock_replays(client)? {
        return Ok(false);
    }
    let dropped = drop_rebuild(client);
    unlock_replays(client)?;
    dropped
}

fn drop_rebuild(client: &mut Client) -> Result<bool, StoreError> {
    let found: bool =
        client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&REBUILD_TABLE])?.try_get(0)?;
    if found {
        client.batch_execute(&format!("DROP TABLE {REBUILD_TABLE}"))?;
    }
    Ok(found)
}

fn try_lock_replays(client: &mut Client) -> Result<bool, StoreError> {
    Ok(client.query_one("SELECT pg_try_advisory_lock($1)", &[&REPLAY_LOCK])?.try_get(0)?)
}

fn unlock_replays(client: &mut Client) -> Result<(), StoreError> {
    client.query_one("SELECT pg_advisory_unlock($1)", &[&REPLAY_LOCK])?;
    Ok(())
}

/// Starts a rebuild. A replay takes the replay lock on this session for as long as it runs, and
/// is refused while another daemon's runs; a check builds a table of its own session's and
/// needs no lock.
pub(super) fn start(
    client: &mut Client,
    statements: &mut Statements,
    check: bool,
    database: &str,
) -> Result<Position, StoreError> {
    if check {
        client.batch_execute(&format!("DROP TABLE IF EXISTS pg_temp.{CHECK_TABLE}"))?;
        create_orders_table(client, CHECK_TABLE, true)?;
    } else {
        if !try_lock_replays(client)? {
            return Err(StoreError::Unavailable {
                reason: "another daemon is replaying",
                detail: format!(
                    "another daemon sharing the database {database} is rebuilding the read model; \
                     one replay runs at a time: try again when it has finished"
                ),
                cause: None,
            });
        }
        let started = drop_rebuild(client).and_then(|_| create_orders_table(client, REBUILD_TABLE, false));
        if let Err(error) = started {
            let _ = unlock_replays(client);
            return Err(error);
        }
    }
    sql::head(statements, client)
}

pub(super) fn chunk(
    client: &mut Client,
    statements: &mut Statements,
    check: bool,
    after: Position,
    chunk: usize,
) -> Result<RebuildChunk, StoreError> {
    let mut tx = client.transaction()?;
    // The chunk that finishes swaps the table in with nothing appended after its last event, so
    // the writers of every daemon must wait for it; whether a chunk finishes is known only once
    // it has read, so every chunk takes their lock (chunks are short, and replay pauses between
    // them).
    sql::lock_writers(statements, &mut tx)?;
    let mut rows = Rows::new(table(check));
    let (read, last) = apply_log(statements, &mut tx, &mut rows, after, chunk)?;
    let finished = if read < chunk { Some(finish(&mut tx, statements, check, last)?) } else { None };
    tx.commit()?;
    if finished.is_some() && !check {
        unlock_replays(client)?;
    }
    Ok(RebuildChunk { read, last, finished })
}

fn finish(
    tx: &mut impl GenericClient,
    statements: &mut Statements,
    check: bool,
    last: Position,
) -> Result<Rebuilt, StoreError> {
    let (differences, examples) = if check {
        let found = compare(tx)?;
        tx.batch_execute(&format!("DROP TABLE pg_temp.{CHECK_TABLE}"))?;
        found
    } else {
        // The swap waits for readers of the live table; a long one elsewhere (a dump) must not
        // hold every command behind the swap's lock for as long as it runs.
        let mut swap = format!(
            "SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'; DROP TABLE {ORDERS_TABLE}; \
             ALTER TABLE {REBUILD_TABLE} RENAME TO {ORDERS_TABLE};"
        );
        for index in INDEXES {
            swap.push_str(&format!(" ALTER INDEX {REBUILD_TABLE}_{index} RENAME TO {ORDERS_TABLE}_{index};"));
        }
        tx.batch_execute(&swap)?;
        sql::set_checkpoint(statements, tx, last)?;
        (0, Vec::new())
    };
    let orders: i64 = tx.query_one(&format!("SELECT count(*) FROM {ORDERS_TABLE}"), &[])?.try_get(0)?;
    Ok(Rebuilt { orders: sql::count(orders), differences, examples })
}

pub(super) fn abandon(client: &mut Client, check: bool) -> Result<(), StoreError> {
    let table = if check { format!("pg_temp.{CHECK_TABLE}") } else { REBUILD_TABLE.to_owned() };
    client.batch_execute(&format!("DROP TABLE IF EXISTS {table}"))?;
    if !check {
        unlock_replays(client)?;
    }
    Ok(())
}

/// The orders whose live and rebuilt rows differ, counted, with the first few shown.
fn compare(tx: &mut impl GenericClient) -> Result<(u64, Vec<Difference>), StoreError> {
    let columns = sql::VIEW_COLUMNS;
    // As every other query names it (the search path), never a schema of its own choosing.
    let live = ORDERS_TABLE.to_owned();
    let rebuilt = format!("pg_temp.{CHECK_TABLE}");
    let rows = tx.query(
        &format!(
            "SELECT id FROM (SELECT {columns} FROM {live} EXCEPT SELECT {columns} FROM {rebuilt}) a \
             UNION SELECT id FROM (SELECT {columns} FROM {rebuilt} EXCEPT SELECT {columns} FROM {live}) b \
             ORDER BY id"
        ),
        &[],
    )?;
    let ids = rows.iter().map(|row| row.try_get::<_, String>(0)).collect::<Result<Vec<_>, _>>()?;
    let mut as_json = |table: &str, id: &str| -> Result<Option<serde_json::Value>, StoreError> {
        let row = tx.query_opt(
            &format!(
                "SELECT json_build_object('id', id, 'user', user_name, 'total', total, 'status', status, \
                 'created_at', created_at, 'updated_at', updated_at, 'cancel_reason', cancel_reason, \
                 'approved_at', approved_at, 'delivered_at', delivered_at, 'cancelled_at', cancelled_at)::text \
                 FROM {table} WHERE id = $1"
            ),
            &[&id],
        )?;
        Ok(row
            .and_then(|row| row.try_get::<_, String>(0).ok())
            .and_then(|text| serde_json::from_str(&text).ok()))
    };
    let mut examples = Vec::new();
    for id in ids.iter().take(MAX_EXAMPLES) {
        examples.push(Difference {
            id: id.clone(),
            live: as_json(&live, id)?,
            rebuilt: as_json(&rebuilt, id)?,
        });
    }
    Ok((ids.len() as u64, examples))
}
