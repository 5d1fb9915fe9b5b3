//! The event store: an append-only log of domain events in SQLite.
//!
//! The interface is kept narrow on purpose (append with an expected version, read a stream, read
//! all from a position) so that another backend could stand in for SQLite. Appends run inside
//! the caller's transaction, so the read model and the saga state commit with the events.
//! `UNIQUE (stream_id, version)` is the optimistic-concurrency check: a second writer of the
//! same version gets [`StoreError::Conflict`], never a silent merge.

pub mod identity;
pub mod schema;

use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;
use orders_shared::protocol::Cursor;
use orders_shared::{DecodeError, DomainEvent, StreamId};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Row, params};
use uuid::Uuid;

/// `SQLITE_CONSTRAINT_UNIQUE`: the extended result code of a UNIQUE violation.
const SQLITE_CONSTRAINT_UNIQUE: i32 = 2067;

/// How long a connection waits for a lock held by another connection before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Who and what caused an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// The command that started the whole workflow; shared by every event it led to.
    pub correlation_id: Uuid,
    /// The command or event that directly caused this one.
    pub causation_id: Uuid,
    /// The client's retry key, on the event that created the order.
    pub idempotency_key: Option<String>,
}

/// An event as stored, with its place in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedEvent {
    pub position: i64,
    pub event_id: Uuid,
    pub stream: StreamId,
    pub version: i64,
    pub recorded_at: Timestamp,
    pub metadata: Metadata,
    pub event: DomainEvent,
}

/// The cursor of the event at `position`, or of the place where it will be (issue 12). On SQLite
/// it is the decimal position; clients must not rely on that (another store's carries more).
pub fn cursor(position: i64) -> Cursor {
    Cursor::try_from(position.to_string()).expect("a decimal number is a valid cursor")
}

/// The first position a cursor reads from; `None` for one this store never gave out (positions
/// start at 1).
pub fn position(cursor: &Cursor) -> Option<i64> {
    cursor.as_str().parse::<i64>().ok().filter(|position| *position >= 1)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("stream {stream} moved on while deciding (expected version {expected})")]
    Conflict { stream: StreamId, expected: i64 },
    #[error(
        "the database was written by a newer version of orders (schema {found}; this build knows up to {supported}); \
         upgrade orders or point it at another data directory"
    )]
    NewerSchema { found: i64, supported: i64 },
    #[error("event at position {position} cannot be read: {source}")]
    Decode { position: i64, source: DecodeError },
    #[error("the database is inconsistent: {0}")]
    Corrupt(String),
    /// SQLite rolled the whole transaction back by itself (after a full disk or an I/O error).
    #[error("the transaction was rolled back after: {0}")]
    RolledBack(String),
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// The database file is a symlink, no regular file, or cannot be opened.
    #[error(transparent)]
    File(#[from] crate::files::FileError),
}

impl From<rusqlite::types::FromSqlError> for StoreError {
    fn from(error: rusqlite::types::FromSqlError) -> Self {
        StoreError::Corrupt(format!("a stored value has the wrong type: {error}"))
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
        let companion = std::path::PathBuf::from(companion);
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

/// Opens a read-write connection to a database this process already has open (the
/// checkpointer's), through SQLite alone: no raw open or close of its files (see [`open_writer`]).
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
    // The checkpointer task copies the WAL back; the writer only steps in past 32 MiB.
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// The WAL size (in pages) past which a committing connection checkpoints by itself.
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 8192;

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

const EVENT_COLUMNS: &str = "position, event_id, stream_id, version, type, schema_version, payload, \
     correlation_id, causation_id, idempotency_key, recorded_at";

/// The event log, seen through one connection (or transaction).
pub struct EventStore<'c> {
    conn: &'c Connection,
}

impl<'c> EventStore<'c> {
    pub fn new(conn: &'c Connection) -> Self {
        Self { conn }
    }

    /// Appends events to a stream whose last version the caller saw as `expected_version`
    /// (0 for a new stream). Fails with [`StoreError::Conflict`] if the stream moved on.
    pub fn append(
        &self,
        stream: StreamId,
        expected_version: i64,
        events: &[DomainEvent],
        metadata: &Metadata,
        now: Timestamp,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut insert = self.conn.prepare_cached(
            "INSERT INTO events (event_id, stream_id, version, type, schema_version, payload, \
                                 correlation_id, causation_id, idempotency_key, recorded_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let stream_text = stream.to_string();
        let correlation = metadata.correlation_id.to_string();
        let causation = metadata.causation_id.to_string();
        let mut recorded = Vec::with_capacity(events.len());
        for (offset, event) in (1..).zip(events) {
            let version = expected_version + offset;
            let event_id = Uuid::now_v7();
            let result = insert.execute(params![
                event_id.to_string(),
                stream_text,
                version,
                event.event_type(),
                event.schema_version(),
                event.payload(),
                correlation,
                causation,
                metadata.idempotency_key,
                now.as_millisecond(),
            ]);
            match result {
                Ok(_) => {}
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == ErrorCode::ConstraintViolation
                        && e.extended_code == SQLITE_CONSTRAINT_UNIQUE =>
                {
                    return Err(StoreError::Conflict { stream, expected: expected_version });
                }
                Err(e) => return Err(e.into()),
            }
            recorded.push(RecordedEvent {
                position: self.conn.last_insert_rowid(),
                event_id,
                stream,
                version,
                recorded_at: now,
                metadata: metadata.clone(),
                event: event.clone(),
            });
        }
        Ok(recorded)
    }

    /// Every event of one stream, oldest first.
    pub fn read_stream(&self, stream: StreamId) -> Result<Vec<RecordedEvent>, StoreError> {
        // No ORDER BY: with one, SQLite plans this query anew after every change of its bound
        // value (rusqlite's statement cache clears the bindings), which cost the writer a third
        // of its time. A stream is a handful of events; they are sorted here.
        let mut select =
            self.conn.prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ?1"))?;
        let rows = select.query_map([stream.to_string()], read_row)?;
        let mut events = rows.map(|row| row?).collect::<Result<Vec<_>, StoreError>>()?;
        events.sort_unstable_by_key(|event| event.version);
        Ok(events)
    }

    /// Every event of several streams, in log order.
    pub fn read_streams(&self, streams: &[StreamId]) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut events = Vec::new();
        for stream in streams {
            events.extend(self.read_stream(*stream)?);
        }
        events.sort_by_key(|event| event.position);
        Ok(events)
    }

    /// Up to `limit` events after global position `after`, in log order.
    pub fn read_all(&self, after: i64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        // The limit is written into the SQL: as a bound value it makes SQLite plan the query
        // anew on every use (see `read_stream`).
        let mut select = self.conn.prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE position > ?1 ORDER BY position LIMIT {limit}"
        ))?;
        let rows = select.query_map([after], read_row)?;
        rows.map(|row| row?).collect()
    }

    /// The position of the newest event (0 for an empty log).
    pub fn head(&self) -> Result<i64, StoreError> {
        let head = self
            .conn
            .prepare_cached("SELECT COALESCE(MAX(position), 0) FROM events")?
            .query_row([], |row| row.get(0))?;
        Ok(head)
    }

    /// The time recorded with the newest event (`None` for an empty log).
    pub fn newest_recorded_at(&self) -> Result<Option<Timestamp>, StoreError> {
        let ms: Option<i64> = self
            .conn
            .prepare_cached("SELECT recorded_at FROM events ORDER BY position DESC LIMIT 1")?
            .query_row([], |row| row.get(0))
            .optional()?;
        ms.map(|ms| {
            Timestamp::from_millisecond(ms)
                .map_err(|_| StoreError::Corrupt(format!("the newest event's time {ms} is out of range")))
        })
        .transpose()
    }

    /// The event recorded with a client's idempotency key, if any.
    pub fn find_by_idempotency_key(&self, key: &str) -> Result<Option<RecordedEvent>, StoreError> {
        let found = self
            .conn
            .prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE idempotency_key = ?1"))?
            .query_row([key], read_row)
            .optional()?;
        found.transpose()
    }
}

/// Decodes one row; the outer error is SQLite's, the inner one a row this build cannot read.
fn read_row(row: &Row<'_>) -> rusqlite::Result<Result<RecordedEvent, StoreError>> {
    let position: i64 = row.get(0)?;
    let event_id: String = row.get(1)?;
    let stream_id: String = row.get(2)?;
    let version: i64 = row.get(3)?;
    let event_type: String = row.get(4)?;
    let schema_version: u32 = row.get(5)?;
    let payload: String = row.get(6)?;
    let correlation_id: String = row.get(7)?;
    let causation_id: String = row.get(8)?;
    let idempotency_key: Option<String> = row.get(9)?;
    let recorded_at: i64 = row.get(10)?;
    let decoded = (|| {
        let corrupt = |what: &str| StoreError::Corrupt(format!("event at position {position}: bad {what}"));
        Ok(RecordedEvent {
            position,
            event_id: event_id.parse().map_err(|_| corrupt("event id"))?,
            stream: stream_id.parse().map_err(|source| StoreError::Decode { position, source })?,
            version,
            recorded_at: Timestamp::from_millisecond(recorded_at).map_err(|_| corrupt("time"))?,
            metadata: Metadata {
                correlation_id: correlation_id.parse().map_err(|_| corrupt("correlation id"))?,
                causation_id: causation_id.parse().map_err(|_| corrupt("causation id"))?,
                idempotency_key,
            },
            event: DomainEvent::decode(&event_type, schema_version, &payload)
                .map_err(|source| StoreError::Decode { position, source })?,
        })
    })();
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use orders_shared::{OrderEvent, OrderId, Total};

    fn store() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = open_writer(&dir.path().join("t.db")).expect("open");
        schema::migrate(&mut conn).expect("migrate");
        (dir, conn)
    }

    fn placed() -> DomainEvent {
        OrderEvent::Placed {
            user: "alice".parse().expect("valid user"),
            total: Total::try_from(2).expect("valid total"),
        }
        .into()
    }

    fn metadata() -> Metadata {
        let id = Uuid::now_v7();
        Metadata { correlation_id: id, causation_id: id, idempotency_key: None }
    }

    fn stream() -> StreamId {
        StreamId::order(OrderId::from_uuid(Uuid::now_v7()))
    }

    #[test]
    fn appended_events_read_back_in_order_with_positions_and_versions() {
        let (_dir, conn) = store();
        let store = EventStore::new(&conn);
        let (a, b) = (stream(), stream());
        let now = Timestamp::from_millisecond(1_700_000_000_123).expect("valid time");
        store.append(a, 0, &[placed()], &metadata(), now).expect("append a");
        store.append(b, 0, &[placed()], &metadata(), now).expect("append b");
        let approved =
            store.append(a, 1, &[OrderEvent::Approved.into()], &metadata(), now).expect("append a again");
        assert_eq!((approved[0].position, approved[0].version), (3, 2));

        let events = store.read_stream(a).expect("read");
        assert_eq!(events.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(events[1], approved[0]);
        assert_eq!(events[0].recorded_at, now);
        let all = store.read_all(1, 10).expect("read all");
        assert_eq!(all.iter().map(|e| e.position).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(store.head().expect("head"), 3);
    }

    #[test]
    fn a_stale_expected_version_is_a_conflict_and_writes_nothing() {
        let (_dir, conn) = store();
        let store = EventStore::new(&conn);
        let a = stream();
        store.append(a, 0, &[placed()], &metadata(), Timestamp::now()).expect("first");
        let second = store.append(a, 0, &[placed()], &metadata(), Timestamp::now());
        assert!(matches!(second, Err(StoreError::Conflict { expected: 0, .. })), "{second:?}");
        assert_eq!(store.read_stream(a).expect("read").len(), 1);
    }

    #[test]
    fn the_log_refuses_updates_and_deletes() {
        let (_dir, conn) = store();
        EventStore::new(&conn)
            .append(stream(), 0, &[placed()], &metadata(), Timestamp::now())
            .expect("append");
        assert!(conn.execute("UPDATE events SET payload = '{}'", []).is_err());
        assert!(conn.execute("DELETE FROM events", []).is_err());
    }

    #[test]
    fn a_database_from_a_newer_build_is_refused() {
        let (dir, conn) = store();
        conn.pragma_update(None, "user_version", schema::CURRENT_VERSION + 1).expect("bump");
        drop(conn);
        let mut conn = open_writer(&dir.path().join("t.db")).expect("open");
        assert!(matches!(schema::migrate(&mut conn), Err(StoreError::NewerSchema { .. })));
    }
}
