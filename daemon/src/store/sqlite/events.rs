//! The event log's table: appends with an expected version, streams, the log from a position.
//!
//! `UNIQUE (stream_id, version)` is the optimistic-concurrency check: a second writer of the
//! same version gets [`StoreError::Conflict`], never a silent merge.

use jiff::Timestamp;
use orders_shared::{DomainEvent, StreamId};
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, params};
use uuid::Uuid;

use crate::store::{Metadata, Position, RecordedEvent, StoreError, StoredEvent, Version};

/// `SQLITE_CONSTRAINT_UNIQUE`: the extended result code of a UNIQUE violation.
const SQLITE_CONSTRAINT_UNIQUE: i32 = 2067;

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
        expected_version: Version,
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
        let mut version = expected_version;
        for event in events {
            version = version.next();
            let event_id = Uuid::now_v7();
            let result = insert.execute(params![
                event_id.to_string(),
                stream_text,
                version.get(),
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
                position: Position::new(self.conn.last_insert_rowid()),
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
    pub fn read_all(&self, after: Position, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        // The limit is written into the SQL: as a bound value it makes SQLite plan the query
        // anew on every use (see `read_stream`).
        let mut select = self.conn.prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE position > ?1 ORDER BY position LIMIT {limit}"
        ))?;
        let rows = select.query_map([after.get()], read_row)?;
        rows.map(|row| row?).collect()
    }

    /// Up to `limit` events after global position `after`, in log order, as stored.
    pub fn read_stored(&self, after: Position, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let mut select = self.conn.prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE position > ?1 ORDER BY position LIMIT {limit}"
        ))?;
        let rows = select.query_map([after.get()], stored_row)?;
        rows.map(|row| row?).collect()
    }

    /// Inserts an event recorded elsewhere (an import), as it was: its position too.
    pub fn insert_stored(&self, event: &StoredEvent) -> Result<(), StoreError> {
        let mut insert = self.conn.prepare_cached(
            "INSERT INTO events (position, event_id, stream_id, version, type, schema_version, payload, \
                                 correlation_id, causation_id, idempotency_key, recorded_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        insert.execute(params![
            event.position.get(),
            event.event_id.to_string(),
            event.stream.to_string(),
            event.version.get(),
            event.event_type,
            event.schema_version,
            event.payload,
            event.metadata.correlation_id.to_string(),
            event.metadata.causation_id.to_string(),
            event.metadata.idempotency_key,
            event.recorded_at.as_millisecond(),
        ])?;
        Ok(())
    }

    /// The position of the newest event (`START` for an empty log).
    pub fn head(&self) -> Result<Position, StoreError> {
        let head = self
            .conn
            .prepare_cached("SELECT COALESCE(MAX(position), 0) FROM events")?
            .query_row([], |row| row.get(0))?;
        Ok(Position::new(head))
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
    Ok(stored_row(row)?.and_then(StoredEvent::decode))
}

/// Reads one row as stored; the outer error is SQLite's, the inner one a value that is not what
/// the schema says.
fn stored_row(row: &Row<'_>) -> rusqlite::Result<Result<StoredEvent, StoreError>> {
    let position = Position::new(row.get(0)?);
    let event_id: String = row.get(1)?;
    let stream_id: String = row.get(2)?;
    let version = Version::new(row.get(3)?);
    let event_type: String = row.get(4)?;
    let schema_version: u32 = row.get(5)?;
    let payload: String = row.get(6)?;
    let correlation_id: String = row.get(7)?;
    let causation_id: String = row.get(8)?;
    let idempotency_key: Option<String> = row.get(9)?;
    let recorded_at: i64 = row.get(10)?;
    let stored = (|| {
        let corrupt = |what: &str| StoreError::Corrupt(format!("event at position {position}: bad {what}"));
        Ok(StoredEvent {
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
            event_type,
            schema_version,
            payload,
        })
    })();
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::{open_writer, schema};
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
        store.append(a, Version::NONE, &[placed()], &metadata(), now).expect("append a");
        store.append(b, Version::NONE, &[placed()], &metadata(), now).expect("append b");
        let approved = store
            .append(a, Version::new(1), &[OrderEvent::Approved.into()], &metadata(), now)
            .expect("append a again");
        assert_eq!((approved[0].position, approved[0].version), (Position::new(3), Version::new(2)));

        let events = store.read_stream(a).expect("read");
        assert_eq!(events.iter().map(|e| e.version.get()).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(events[1], approved[0]);
        assert_eq!(events[0].recorded_at, now);
        let all = store.read_all(Position::new(1), 10).expect("read all");
        assert_eq!(all.iter().map(|e| e.position.get()).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(store.head().expect("head"), Position::new(3));
    }

    #[test]
    fn a_stale_expected_version_is_a_conflict_and_writes_nothing() {
        let (_dir, conn) = store();
        let store = EventStore::new(&conn);
        let a = stream();
        store.append(a, Version::NONE, &[placed()], &metadata(), Timestamp::now()).expect("first");
        let second = store.append(a, Version::NONE, &[placed()], &metadata(), Timestamp::now());
        assert!(matches!(second, Err(StoreError::Conflict { expected: Version::NONE, .. })), "{second:?}");
        assert_eq!(store.read_stream(a).expect("read").len(), 1);
    }

    #[test]
    fn the_log_refuses_updates_and_deletes() {
        let (_dir, conn) = store();
        EventStore::new(&conn)
            .append(stream(), Version::NONE, &[placed()], &metadata(), Timestamp::now())
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
