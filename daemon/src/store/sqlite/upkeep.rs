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
}

impl WalCheckpoints {
    pub(super) fn open(database: &Path) -> Result<WalCheckpoints, StoreError> {
        Ok(WalCheckpoints { conn: open_another_writer(database)? })
    }
}

impl Upkeep for WalCheckpoints {
    /// The ends of the orders placed since (`tails`), then the WAL copied back.
    fn after_commits(&mut self) -> Result<(), StoreError> {
        // A chunk a transaction, so that the writer gets its turn between them (a store of a
        // million orders, new to the table, takes fifty).
        while super::tails::catch_up(&mut self.conn)? == super::tails::CHUNK {}
        let (log, copied) = self.conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        })?;
        tracing::trace!(log, copied, "checkpoint");
        Ok(())
    }
}
