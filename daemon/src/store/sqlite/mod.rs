//! The SQLite backend, the embedded default: one database file with its WAL, written by one
//! connection on the writer thread and read by a small pool of read-only connections. It is the
//! only code of the daemon that names `rusqlite`.
//!
//! - [`events`]: the event log's table; [`read_model`]: the `orders` table and its queries;
//! - `write`: a batch in one transaction, and what it does when a unit fails;
//! - `rebuild`: the replay's fresh table and its swap; `reads`: the read pool and the
//!   named queries, the checker's walk among them; `upkeep`: WAL checkpoints;
//! - [`schema`]: migrations; [`identity`]: the store's identity as SQLite keeps it;
//! - `open`: connections and their pragmas; `steps`: the saga steps' rows as stored;
//! - `import`: a log recorded elsewhere, loaded in one transaction.
//!
//! Errors are classified here ([`From<rusqlite::Error>`](StoreError)): a full disk, a read-only
//! or locked database are passing faults (`Unavailable`), a damaged file is `Damaged`, a UNIQUE
//! violation on `(stream_id, version)` a `Conflict`; anything else `Failed`.

pub mod events;
pub mod identity;
mod import;
mod open;
pub mod read_model;
mod reads;
mod rebuild;
pub mod schema;
mod steps;
mod tails;
mod upkeep;
mod write;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use rusqlite::{Connection, ErrorCode};

use self::events::EventStore;
pub use self::open::{open_another_writer, open_reader, open_writer};
use crate::identity::{Found, StoreId};
use crate::store::{
    Batch, Cause, ImportTx, OpenSteps, Position, ReadSource, RebuildChunk, Store, StoreError, Upkeep,
};

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        let cause = cause(&error);
        if let rusqlite::Error::SqliteFailure(failure, _) = &error {
            let reason = match failure.code {
                ErrorCode::DiskFull => Some("the disk is full"),
                ErrorCode::ReadOnly => Some("the database is read-only"),
                ErrorCode::CannotOpen | ErrorCode::SystemIoFailure => Some("the database cannot be written"),
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                    Some("the database is locked by another process")
                }
                ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                    return StoreError::Damaged(error.to_string(), cause);
                }
                _ => None,
            };
            if let Some(reason) = reason {
                return StoreError::Unavailable { reason, detail: error.to_string(), cause };
            }
        }
        StoreError::Failed(error.to_string(), cause)
    }
}

/// The rest of the driver's chain beneath its error, as one text.
fn cause(error: &rusqlite::Error) -> Option<Cause> {
    let mut chain = std::iter::successors(std::error::Error::source(error), |e| e.source());
    let first = chain.next()?.to_string();
    Some(Cause(chain.fold(first, |text, next| format!("{text}: {next}"))))
}

impl From<rusqlite::types::FromSqlError> for StoreError {
    fn from(error: rusqlite::types::FromSqlError) -> Self {
        StoreError::Corrupt(format!("a stored value has the wrong type: {error}"))
    }
}

/// The SQLite store: the writer's connection, and the file for the others.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (or creates) the database at `path` for writing; see [`open_writer`].
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        Ok(SqliteStore { conn: open_writer(path)?, path: path.to_path_buf() })
    }

    /// What a copy of a store (`orders backup`) is, read-only: where it really is (a symlink
    /// followed) and its schema version, once it is proven a regular file with no `-wal` beside it
    /// (that would be part of it, and copied without it the store would lose it), an orders
    /// database (its `application_id`), of this version or an older one.
    pub fn inspect(path: &Path) -> Result<(PathBuf, i64), StoreError> {
        let refuse = |why: String| Err(StoreError::Unsupported(why));
        let file = match std::fs::canonicalize(path) {
            Ok(file) => file,
            Err(error) => return refuse(format!("{}: {error}", path.display())),
        };
        match std::fs::metadata(&file) {
            Ok(meta) if meta.is_file() => {}
            Ok(meta) => {
                return refuse(format!("{} is {}, not a file", path.display(), crate::files::kind(&meta)));
            }
            Err(error) => return refuse(format!("{}: {error}", path.display())),
        }
        let mut wal = file.clone().into_os_string();
        wal.push("-wal");
        if std::fs::metadata(&wal).is_ok_and(|meta| meta.len() > 0) {
            return refuse(format!(
                "{} has a -wal file beside it, which is part of the database: copy a store with `orders \
                 backup`, or fold the -wal in first (sqlite3 FILE 'PRAGMA wal_checkpoint(TRUNCATE)')",
                path.display()
            ));
        }
        let conn = open_reader(&file)?;
        let application: i32 = conn.pragma_query_value(None, "application_id", |row| row.get(0))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if application != identity::APPLICATION_ID {
            return refuse(format!("{} is not an orders store", path.display()));
        }
        if version > schema::CURRENT_VERSION {
            return refuse(format!(
                "{} is a store of a newer version of orders (schema {version}; this build knows up to {}): \
                 use a newer orders",
                path.display(),
                schema::CURRENT_VERSION
            ));
        }
        Ok((file, version))
    }

    /// The reads of a copy of a store, opened read-only, once it is proven an orders database of
    /// this build's schema: `orders check --file` checks it without a daemon.
    pub fn open_copy(path: &Path) -> Result<Box<dyn ReadSource>, StoreError> {
        let (file, version) = SqliteStore::inspect(path)?;
        if version < schema::CURRENT_VERSION {
            return Err(StoreError::Unsupported(format!(
                "{} is a store of an older version (schema {version}; this build's is {}): `orders \
                 restore` migrates it",
                path.display(),
                schema::CURRENT_VERSION
            )));
        }
        Ok(Box::new(reads::Pool::new(file)))
    }

    /// The writer's connection, for the backend's own tests.
    #[cfg(test)]
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }
}

#[cfg(test)]
impl crate::testing::Db<SqliteStore> {
    /// The writer's connection, for the backend's own tests.
    pub fn conn(&self) -> &Connection {
        self.store.conn()
    }

    /// A database with room for two pages more.
    pub fn nearly_full(&self) {
        let pages: i64 = self.conn().query_row("PRAGMA page_count", [], |row| row.get(0)).expect("pages");
        self.conn().pragma_update(None, "max_page_count", pages + 2).expect("a nearly full database");
    }

    pub fn room_again(&self) {
        self.conn().pragma_update(None, "max_page_count", 1_000_000).expect("room again");
    }

    /// Whether the writer's connection is outside any transaction.
    pub fn no_transaction_open(&self) -> bool {
        self.conn().is_autocommit()
    }
}

impl Store for SqliteStore {
    fn found(&mut self) -> Result<Found, StoreError> {
        identity::found(&self.conn)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        schema::migrate(&mut self.conn)
    }

    fn ensure_identity(&mut self, mint: bool) -> Result<StoreId, StoreError> {
        identity::ensure(&self.conn, mint)
    }

    fn head(&mut self) -> Result<Position, StoreError> {
        EventStore::new(&self.conn).head()
    }

    fn newest_recorded_at(&mut self) -> Result<Option<Timestamp>, StoreError> {
        EventStore::new(&self.conn).newest_recorded_at()
    }

    fn checkpoint(&mut self) -> Result<Position, StoreError> {
        read_model::checkpoint(&self.conn)
    }

    fn catch_up_chunk(&mut self, chunk: usize) -> Result<Option<u64>, StoreError> {
        read_model::catch_up_chunk(&self.conn, chunk)
    }

    fn open_steps(&mut self) -> Result<OpenSteps, StoreError> {
        steps::open_steps(&self.conn)
    }

    fn write(&mut self, batch: &mut dyn Batch) -> Result<(), StoreError> {
        write::write(&mut self.conn, batch)
    }

    fn rebuild_start(&mut self, check: bool) -> Result<Position, StoreError> {
        rebuild::start(&self.conn, check)
    }

    fn rebuild_chunk(
        &mut self,
        check: bool,
        after: Position,
        chunk: usize,
    ) -> Result<RebuildChunk, StoreError> {
        rebuild::chunk(&mut self.conn, check, after, chunk)
    }

    fn rebuild_abandon(&mut self, check: bool) -> Result<(), StoreError> {
        rebuild::abandon(&self.conn, check)
    }

    fn import(
        &mut self,
        load: &mut dyn FnMut(&mut dyn ImportTx) -> Result<bool, StoreError>,
    ) -> Result<bool, StoreError> {
        import::import(&mut self.conn, load)
    }

    fn drop_leftovers(&mut self) -> Result<bool, StoreError> {
        rebuild::drop_leftovers(&self.conn)
    }

    fn reads(&self) -> Result<Box<dyn ReadSource>, StoreError> {
        Ok(Box::new(reads::Pool::new(self.path.clone())))
    }

    fn upkeep(&self) -> Result<Option<Box<dyn Upkeep>>, StoreError> {
        // Never `open_writer`: its raw opens would drop the writer's locks (see there).
        Ok(Some(Box::new(upkeep::WalCheckpoints::open(&self.path)?)))
    }
}
