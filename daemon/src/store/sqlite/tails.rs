//! The ends of order ids, for short ids (issue 18), kept off the write path.
//!
//! A short id is the end of an order id, and its last 8 hex digits are random: an index on them,
//! kept in the writer's transactions, wrote a random page for every order placed and cost the
//! writer 10–20% of its peak (docs/BENCHMARKS.md). So `order_tails` is a projection of its own:
//! the upkeep task catches it up a moment after commits, many orders in one transaction, and a
//! query reads the table and, from the log, the few orders placed past its checkpoint, in one
//! statement (one snapshot). It is derived from the log alone, so a replay of the read model
//! leaves it be, and an import or a fresh store catch it up from position 0.

use orders_shared::OrderId;
use orders_shared::short_id::MIN_DIGITS;
use rusqlite::{Connection, TransactionBehavior, params};

use crate::store::StoreError;

/// Its name in `checkpoints`.
const PROJECTION: &str = "order_tails";

/// The orders placed one catch-up reads at most.
pub(super) const CHUNK: usize = 20_000;

/// The orders whose ids end with `suffix` (at least 8 lowercase hex digits), in id order, at most
/// `limit`: the table's, and those placed past its checkpoint, read from the log.
const ENDING_WITH: &str = "SELECT id FROM ( \
         SELECT id FROM order_tails WHERE tail = ?1 \
         UNION \
         SELECT substr(stream_id, 7) AS id FROM events \
          WHERE position > (SELECT position FROM checkpoints WHERE projection = 'order_tails') \
            AND type = 'OrderPlaced' AND substr(stream_id, -8) = ?1 \
     ) WHERE substr(replace(id, '-', ''), -?2) = ?3 ORDER BY id LIMIT ?4";

/// The orders whose ids end with `suffix` (at least 8 lowercase hex digits, dashes left out),
/// in id order, at most `limit`: see [`ENDING_WITH`].
pub(super) fn ids_ending_with(
    conn: &Connection,
    suffix: &str,
    limit: usize,
) -> Result<Vec<OrderId>, StoreError> {
    let Some(tail) = suffix.len().checked_sub(MIN_DIGITS).and_then(|start| suffix.get(start..)) else {
        debug_assert!(false, "a short id of fewer than {MIN_DIGITS} digits: {suffix}");
        return Ok(Vec::new());
    };
    let mut select = conn.prepare_cached(ENDING_WITH)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows =
        select.query_map(params![tail, suffix.len() as i64, suffix, limit], |row| row.get::<_, String>(0))?;
    rows.map(|id| {
        let id = id?;
        id.parse().map_err(|_| StoreError::Corrupt(format!("the order id {id:?} in the log is not a UUID")))
    })
    .collect()
}

/// Adds the orders placed past the checkpoint, at most [`CHUNK`] of them, in one transaction, and
/// moves the checkpoint; returns how many it added. Runs on the upkeep's own connection.
pub(super) fn catch_up(conn: &mut Connection) -> Result<usize, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let from: i64 =
        tx.query_row("SELECT position FROM checkpoints WHERE projection = ?1", [PROJECTION], |row| {
            row.get(0)
        })?;
    let placed: Vec<(i64, String)> = tx
        .prepare_cached(
            "SELECT position, substr(stream_id, 7) FROM events \
             WHERE position > ?1 AND type = 'OrderPlaced' ORDER BY position LIMIT ?2",
        )?
        .query_map(params![from, CHUNK as i64], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    // A whole chunk: up to its last order; less: the log is read to its head.
    let to = match placed.last() {
        Some((position, _)) if placed.len() == CHUNK => *position,
        _ => tx.query_row("SELECT coalesce(max(position), 0) FROM events", [], |row| row.get(0))?,
    };
    if to == from {
        return Ok(0);
    }
    {
        let mut insert =
            tx.prepare_cached("INSERT OR IGNORE INTO order_tails (tail, id) VALUES (substr(?1, -8), ?1)")?;
        for (_, id) in &placed {
            insert.execute([id])?;
        }
    }
    tx.execute("UPDATE checkpoints SET position = ?2 WHERE projection = ?1", params![PROJECTION, to])?;
    tx.commit()?;
    Ok(placed.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Db;

    fn ending(db: &Db, suffix: &str) -> Vec<String> {
        let ids = ids_ending_with(db.conn(), suffix, 10).expect("read");
        ids.iter().map(ToString::to_string).collect()
    }

    /// The same answer before the catch-up (from the log), after it (from the table), and with
    /// orders on both sides of the checkpoint.
    #[test]
    fn ids_are_found_on_both_sides_of_the_checkpoint() {
        let mut db = Db::new();
        let first = db.create(2).to_string();
        let tail = first.replace('-', "")[24..].to_owned();
        assert_eq!(ending(&db, &tail), [first.as_str()], "from the log");
        let mut conn = crate::store::sqlite::open_writer(&db.path()).expect("another connection");
        assert_eq!(catch_up(&mut conn).expect("caught up"), 1);
        assert_eq!(catch_up(&mut conn).expect("nothing more"), 0);
        assert_eq!(ending(&db, &tail), [first.as_str()], "from the table");
        let second = db.create(4).to_string();
        let second_tail = second.replace('-', "")[24..].to_owned();
        assert_eq!(ending(&db, &second_tail), [second.as_str()], "past the checkpoint");
        assert_eq!(ending(&db, &tail), [first.as_str()], "before it");
        let plan: Vec<String> = db
            .conn()
            .prepare(&format!("EXPLAIN QUERY PLAN {ENDING_WITH}"))
            .expect("explain")
            .query_map(params![tail, 8, tail, 10], |row| row.get(3))
            .expect("plan")
            .collect::<Result<_, _>>()
            .expect("steps");
        let plan = plan.join("; ");
        assert!(plan.contains("SEARCH order_tails USING PRIMARY KEY (tail=?)"), "{plan}");
        assert!(plan.contains("SEARCH events USING INTEGER PRIMARY KEY (rowid>?)"), "{plan}");
    }
}
