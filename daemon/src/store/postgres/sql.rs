//! What every part of the PostgreSQL backend shares: a connection with its prepared statements,
//! and the rows of the log and of the read model as the store's types.
//!
//! A statement named by text is prepared once per connection and kept: a query sent as text
//! would cost a round trip to prepare it every time, and round trips are what a networked store
//! spends its time on.

use std::collections::HashMap;

use jiff::Timestamp;
use orders_shared::protocol::OrderView;
use postgres::types::ToSql;
use postgres::{GenericClient, Row, Statement};

use crate::store::{Metadata, Position, RecordedEvent, StoreError, StoredEvent, Version};

/// The log's columns, in the order [`stored_event`] reads them.
pub const EVENT_COLUMNS: &str = "position, event_id, stream_id, version, type, schema_version, payload, \
     correlation_id, causation_id, idempotency_key, recorded_at";

/// The read model's columns, in the order [`view`] reads them and the upserts write them.
pub const VIEW_COLUMNS: &str = "id, user_name, total, status, cancel_reason, created_at, updated_at, \
     approved_at, delivered_at, cancelled_at";

/// A parameter of a statement.
pub type Param<'a> = &'a (dyn ToSql + Sync);

/// Prepared statements of one connection, by their text.
#[derive(Default)]
pub struct Statements {
    prepared: HashMap<String, Statement>,
}

impl Statements {
    /// The statement of `sql` on the connection of `client` (a transaction of it), prepared on
    /// first use.
    pub fn get(&mut self, client: &mut impl GenericClient, sql: &str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = client.prepare(sql)?;
        self.prepared.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    pub fn query(
        &mut self,
        client: &mut impl GenericClient,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Vec<Row>, StoreError> {
        let statement = self.get(client, sql)?;
        Ok(client.query(&statement, params)?)
    }

    pub fn query_opt(
        &mut self,
        client: &mut impl GenericClient,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Option<Row>, StoreError> {
        let statement = self.get(client, sql)?;
        Ok(client.query_opt(&statement, params)?)
    }

    pub fn query_one(
        &mut self,
        client: &mut impl GenericClient,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Row, StoreError> {
        let statement = self.get(client, sql)?;
        Ok(client.query_one(&statement, params)?)
    }

    pub fn execute(
        &mut self,
        client: &mut impl GenericClient,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<u64, StoreError> {
        let statement = self.get(client, sql)?;
        Ok(client.execute(&statement, params)?)
    }
}

/// A connection that may be dropped anywhere. The synchronous client closes its connection on
/// its own runtime when dropped, which panics on a thread that drives async tasks (the daemon
/// drops its store and readers there when it stops, or when its start fails): there, the client
/// is closed on a thread of its own.
pub struct Link(Option<postgres::Client>);

impl Link {
    /// A new connection's session, set up for the store's statements: each statement is
    /// planned for its values (`plan_cache_mode = force_custom_plan`). Prepared once and run
    /// thousands of times, a statement would otherwise keep a generic plan made while the tables
    /// were small — a sequential scan of the log, kept as it grows (seen in the benchmark).
    pub fn new(mut client: postgres::Client) -> Result<Link, StoreError> {
        client.batch_execute("SET plan_cache_mode = force_custom_plan")?;
        Ok(Link(Some(client)))
    }
}

impl std::ops::Deref for Link {
    type Target = postgres::Client;

    fn deref(&self) -> &postgres::Client {
        self.0.as_ref().expect("a link holds its client until dropped")
    }
}

impl std::ops::DerefMut for Link {
    fn deref_mut(&mut self) -> &mut postgres::Client {
        self.0.as_mut().expect("a link holds its client until dropped")
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let Some(client) = self.0.take() else { return };
        if tokio::runtime::Handle::try_current().is_ok() {
            let closing =
                std::thread::Builder::new().name("orders-pg-close".to_owned()).spawn(move || drop(client));
            if let Err(error) = closing {
                tracing::warn!(%error, "cannot close a database connection cleanly; the database will notice it gone");
            }
        } else {
            drop(client);
        }
    }
}

/// A count as the store's unsigned number.
pub fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or_default()
}

/// A time in milliseconds as stored.
pub fn time(ms: i64, what: impl FnOnce() -> String) -> Result<Timestamp, StoreError> {
    Timestamp::from_millisecond(ms)
        .map_err(|_| StoreError::Corrupt(format!("{}: time {ms} out of range", what())))
}

/// One row of the log, selected with [`EVENT_COLUMNS`], as stored.
pub fn stored_event(row: &Row) -> Result<StoredEvent, StoreError> {
    let position = Position::new(row.try_get(0)?);
    let corrupt = |what: &str| StoreError::Corrupt(format!("event at position {position}: bad {what}"));
    let uuid = |index: usize, what: &str| -> Result<uuid::Uuid, StoreError> {
        row.try_get::<_, &str>(index)?.parse().map_err(|_| corrupt(what))
    };
    let schema_version: i32 = row.try_get(5)?;
    Ok(StoredEvent {
        position,
        event_id: uuid(1, "event id")?,
        stream: row
            .try_get::<_, &str>(2)?
            .parse()
            .map_err(|source| StoreError::Decode { position, source })?,
        version: Version::new(row.try_get(3)?),
        event_type: row.try_get(4)?,
        schema_version: u32::try_from(schema_version).map_err(|_| corrupt("schema version"))?,
        payload: row.try_get(6)?,
        metadata: Metadata {
            correlation_id: uuid(7, "correlation id")?,
            causation_id: uuid(8, "causation id")?,
            idempotency_key: row.try_get(9)?,
        },
        recorded_at: time(row.try_get(10)?, || format!("event at position {position}"))?,
    })
}

/// One row of the log, decoded.
pub fn recorded_event(row: &Row) -> Result<RecordedEvent, StoreError> {
    stored_event(row)?.decode()
}

/// Every row, decoded, in the order given.
pub fn recorded_events(rows: &[Row]) -> Result<Vec<RecordedEvent>, StoreError> {
    rows.iter().map(recorded_event).collect()
}

/// One read-model row, selected with [`VIEW_COLUMNS`].
pub fn view(row: &Row) -> Result<OrderView, StoreError> {
    let id: &str = row.try_get(0)?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("read model row {id}: bad {what}"));
    let optional = |index: usize| -> Result<Option<Timestamp>, StoreError> {
        row.try_get::<_, Option<i64>>(index)?
            .map(|ms| time(ms, || format!("read model row {id}")))
            .transpose()
    };
    Ok(OrderView {
        id: id.parse().map_err(|_| corrupt("id"))?,
        user: row.try_get(1)?,
        total: row.try_get(2)?,
        status: row.try_get::<_, &str>(3)?.parse().map_err(|_| corrupt("status"))?,
        cancel_reason: row
            .try_get::<_, Option<&str>>(4)?
            .map(|reason| reason.parse().map_err(|_| corrupt("cancel reason")))
            .transpose()?,
        created_at: time(row.try_get(5)?, || format!("read model row {id}"))?,
        updated_at: time(row.try_get(6)?, || format!("read model row {id}"))?,
        approved_at: optional(7)?,
        delivered_at: optional(8)?,
        cancelled_at: optional(9)?,
    })
}

/// The newest position of the log (`START` when empty).
pub fn head(statements: &mut Statements, client: &mut impl GenericClient) -> Result<Position, StoreError> {
    let row = statements.query_one(client, "SELECT coalesce(max(position), 0) FROM events", &[])?;
    Ok(Position::new(row.try_get(0)?))
}

/// The advisory lock key of the writers (issue 20): every transaction that appends events or
/// moves the read model takes it first, so that positions are given in commit order by
/// whichever daemon writes ("ordr" "wrtr").
pub const WRITER_LOCK: i64 = 0x6F72_6472_7772_7472;

/// Takes the writers' lock for the rest of the transaction (issue 20): whichever daemon holds it
/// is the only one appending, so the head it reads next is the head, positions are given in
/// commit order, and a reader's snapshot always holds a prefix of the log. Waits for the
/// daemon holding it (its batch), at most the session's `lock_timeout`.
pub fn lock_writers(statements: &mut Statements, client: &mut impl GenericClient) -> Result<(), StoreError> {
    statements.query_one(client, "SELECT pg_advisory_xact_lock($1)::text", &[&WRITER_LOCK])?;
    Ok(())
}

/// The last position the read model reflects.
pub fn checkpoint(
    statements: &mut Statements,
    client: &mut impl GenericClient,
) -> Result<Position, StoreError> {
    let row =
        statements.query_one(client, "SELECT position FROM checkpoints WHERE projection = 'orders'", &[])?;
    Ok(Position::new(row.try_get(0)?))
}

pub fn set_checkpoint(
    statements: &mut Statements,
    client: &mut impl GenericClient,
    position: Position,
) -> Result<(), StoreError> {
    statements.execute(
        client,
        "UPDATE checkpoints SET position = $1 WHERE projection = 'orders'",
        &[&position.get()],
    )?;
    Ok(())
}

/// Every event of several streams, in log order.
pub fn read_streams(
    statements: &mut Statements,
    client: &mut impl GenericClient,
    streams: &[String],
) -> Result<Vec<RecordedEvent>, StoreError> {
    let rows = statements.query(
        client,
        &format!("SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ANY($1) ORDER BY position"),
        &[&streams],
    )?;
    recorded_events(&rows)
}
