//! The SQLite backend, the embedded default: one database file with its WAL, written by one
//! connection on the writer thread and read by a small pool of read-only connections. It is the
//! only code of the daemon that names `rusqlite`.
//!
//! - [`events`]: the event log's table; [`read_model`]: the `orders` table and its queries;
//! - [`write`]: a batch in one transaction, and what it does when a unit fails;
//! - [`rebuild`]: the replay's fresh table and its swap; [`reads`]: the read pool and the
//!   named queries, the checker's walk among them; [`upkeep`]: WAL checkpoints;
//! - [`schema`]: migrations; [`identity`]: the store's identity as SQLite keeps it.
//!
//! Errors are classified here ([`From<rusqlite::Error>`](StoreError)): a full disk, a read-only
//! or locked database are passing faults (`Unavailable`), a damaged file is `Damaged`, a UNIQUE
//! violation on `(stream_id, version)` a `Conflict`; anything else `Failed`.

pub mod events;
pub mod identity;
pub mod read_model;
mod reads;
mod rebuild;
pub mod schema;
mod upkeep;
mod write;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use self::events::EventStore;
use crate::identity::{Found, StoreId};
use crate::store::{
    Batch, Cause, OpenSteps, Position, ReadSource, RebuildChunk, Store, StoreError, StoredDelivery,
    StoredPayment, StoredValue, Upkeep,
};

/// How long a connection waits for a lock held by another connection before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The WAL size (in pages) past which a committing connection checkpoints by itself.
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 8192;

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

/// A value as SQLite holds it.
fn stored_value(value: rusqlite::types::ValueRef<'_>) -> StoredValue {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => StoredValue::Null,
        ValueRef::Integer(n) => StoredValue::Integer(n),
        ValueRef::Real(x) => StoredValue::Real(x),
        ValueRef::Text(text) => StoredValue::Text(text.to_vec()),
        ValueRef::Blob(bytes) => StoredValue::Blob(bytes.to_vec()),
    }
}

/// The same value, to bind in a statement.
fn sql_value(value: &StoredValue) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match value {
        StoredValue::Null => Value::Null,
        StoredValue::Integer(n) => Value::Integer(*n),
        StoredValue::Real(x) => Value::Real(*x),
        // Text that is not UTF-8 is kept as its bytes (it then compares equal to nothing).
        StoredValue::Text(text) => {
            String::from_utf8(text.clone()).map_or_else(|e| Value::Blob(e.into_bytes()), Value::Text)
        }
        StoredValue::Blob(bytes) => Value::Blob(bytes.clone()),
    }
}

/// Opens the daemon's first read-write connection: WAL, and `synchronous=FULL` so that a commit
/// is on disk before it is acknowledged.
///
/// The database is created 0600 whatever the umask (SQLite would make it 0644), never through a
/// symlink; SQLite gives its `-wal` and `-shm` the database's mode. Files left open to others
/// by an older version are tightened to 0600, and the log says so (issue 11). Those raw opens
/// happen here only, before this process holds any SQLite connection to the file: closing any
/// descriptor of a file drops every POSIX lock the process holds on it, SQLite's included, and
/// an outside reader could then delete the WAL under the daemon's feet. Any further connection
/// of the same process goes through [`open_another_writer`].
pub fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let opened = crate::files::open_private(path, crate::files::Access::ReadWrite)?;
    drop(opened.file);
    let mut tightened = vec![(path.to_path_buf(), opened.tightened_from)];
    for suffix in ["-wal", "-shm"] {
        let mut companion = path.as_os_str().to_owned();
        companion.push(suffix);
        let companion = PathBuf::from(companion);
        let from = crate::files::tighten_if_present(&companion)?;
        tightened.push((companion, from));
    }
    for (file, from) in tightened {
        if let Some(mode) = from {
            tracing::warn!(file = %file.display(), "the file was open to others (mode {mode:04o}); made it 0600");
        }
    }
    open_another_writer(path)
}

/// Opens a read-write connection to a database this process already has open (the upkeep's),
/// through SQLite alone: no raw open or close of its files (see [`open_writer`]).
pub fn open_another_writer(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // The upkeep task copies the WAL back; the writer only steps in past 32 MiB.
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Opens a read-only connection; under WAL it never waits for the writer.
pub fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
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
        open_steps(&self.conn)
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

/// The open saga steps as stored, with whether each one's order is in the log.
fn open_steps(conn: &Connection) -> Result<OpenSteps, StoreError> {
    let mut steps = OpenSteps::default();
    let mut payments = conn.prepare_cached(
        "SELECT order_id, amount, EXISTS (SELECT 1 FROM events \
             WHERE stream_id = 'order-' || t.order_id AND version = 1) \
         FROM payment_requests t ORDER BY requested_at",
    )?;
    let mut rows = payments.query([])?;
    while let Some(row) = rows.next()? {
        steps.payments.push(StoredPayment {
            order: stored_value(row.get_ref(0)?),
            amount: stored_value(row.get_ref(1)?),
            known: row.get(2)?,
        });
    }
    let mut deliveries = conn.prepare_cached(
        "SELECT order_id, due_at, EXISTS (SELECT 1 FROM events \
             WHERE stream_id = 'order-' || t.order_id AND version = 1), \
             (SELECT recorded_at FROM events WHERE stream_id = 'delivery-' || t.order_id \
                 AND type = 'DeliveryScheduled' ORDER BY version DESC LIMIT 1) \
         FROM delivery_timers t",
    )?;
    let mut rows = deliveries.query([])?;
    while let Some(row) = rows.next()? {
        let scheduled_at = match row.get_ref(3)? {
            rusqlite::types::ValueRef::Integer(ms) => Timestamp::from_millisecond(ms).ok(),
            _ => None,
        };
        steps.deliveries.push(StoredDelivery {
            order: stored_value(row.get_ref(0)?),
            due_at: stored_value(row.get_ref(1)?),
            known: row.get(2)?,
            scheduled_at,
        });
    }
    Ok(steps)
}
