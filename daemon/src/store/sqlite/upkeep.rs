//! WAL checkpoints away from the writer, and the ends of order ids (`tails`).
//!
//! In WAL mode every commit appends to the `-wal` file, and a checkpoint copies those pages back
//! into the database file. SQLite's automatic checkpoint runs inside the committing thread —
//! here the writer, where the profile showed it taking a sixth of the writer's time and
//! stalling the commands of the batch. The daemon's upkeep task does it instead, on its own
//! connection, a moment after commits: a PASSIVE checkpoint never waits for the writer or the
//! readers. The writer's own automatic checkpoint stays on, at a higher threshold, as a safety net.

use std::path::Path;

use rusqlite::Connection;

use super::open::open_another_writer;
use crate::store::{StoreError, Upkeep};

pub(super) struct WalCheckpoints {
    conn: Connection,
    /// The ends of ids could not be caught up last time (said once a streak, at warn).
    tails_failing: bool,
}

impl WalCheckpoints {
    pub(super) fn open(database: &Path) -> Result<WalCheckpoints, StoreError> {
        Ok(WalCheckpoints { conn: open_another_writer(database)?, tails_failing: false })
    }

    /// Catches `order_tails` up, a chunk a transaction, so that the writer gets its turn between
    /// them (a store of a million orders, new to the table, takes fifty).
    fn catch_up_tails(&mut self) -> Result<(), StoreError> {
        while super::tails::catch_up(&mut self.conn)? == super::tails::CHUNK {}
        Ok(())
    }
}

impl Upkeep for WalCheckpoints {
    /// The ends of the orders placed since (`tails`), then the WAL copied back, whether or not
    /// the first could be done.
    fn after_commits(&mut self) -> Result<(), StoreError> {
        match self.catch_up_tails() {
            Ok(()) if self.tails_failing => {
                self.tails_failing = false;
                tracing::info!("the ends of order ids are caught up again");
            }
            Ok(()) => {}
            Err(error) if !self.tails_failing => {
                self.tails_failing = true;
                // Answers stay exact (the orders past the table's checkpoint are read from the
                // log), but that part of each short-id query grows until this is caught up.
                tracing::warn!(%error, "cannot catch up the ends of order ids (short ids); retrying after commits");
            }
            Err(_) => {}
        }
        let (log, copied) = self.conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        })?;
        tracing::trace!(log, copied, "checkpoint");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Db;

    /// The WAL is copied back even when the ends of ids cannot be caught up (here: their table is
    /// gone), and the upkeep does not fail for it.
    #[test]
    fn the_wal_is_checkpointed_whatever_the_ends_of_ids_do() {
        let mut db = Db::new();
        db.create(2);
        db.conn().execute_batch("DROP TABLE order_tails").expect("drop");
        db.create(4);
        let mut upkeep = WalCheckpoints::open(&db.path()).expect("open");
        upkeep.after_commits().expect("the upkeep goes on");
        assert!(upkeep.tails_failing, "and knows the ends of ids are behind");
    }
}
