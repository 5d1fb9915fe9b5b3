//! The database schema and its migrations, tracked by SQLite's `user_version`.
//!
//! Each step runs once, in order, inside the transaction that bumps `user_version`; a database
//! written by a newer build (a higher version than this one knows) is refused, never "fixed".

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// The read model's table; `replay` builds a fresh one beside it and renames it into place.
pub const ORDERS_TABLE: &str = "orders";

/// Step N brings a database from version N to N + 1.
const MIGRATIONS: &[&str] = &[
    // 1: the event log, the orders read model and the projection checkpoints.
    "
    CREATE TABLE events (
        position        INTEGER PRIMARY KEY,   -- global order of the log; rows are never deleted
        event_id        TEXT    NOT NULL,
        stream_id       TEXT    NOT NULL,      -- order-<uuid>
        version         INTEGER NOT NULL,      -- 1, 2, ... within the stream
        type            TEXT    NOT NULL,
        schema_version  INTEGER NOT NULL,
        payload         TEXT    NOT NULL,      -- JSON object
        correlation_id  TEXT    NOT NULL,
        causation_id    TEXT    NOT NULL,
        idempotency_key TEXT,
        recorded_at     INTEGER NOT NULL,      -- Unix time, milliseconds
        UNIQUE (stream_id, version)
    );
    CREATE TRIGGER events_are_append_only_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
    CREATE TRIGGER events_are_append_only_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;

    CREATE TABLE checkpoints (
        projection TEXT    PRIMARY KEY,
        position   INTEGER NOT NULL
    );
    INSERT INTO checkpoints (projection, position) VALUES ('orders', 0);

    CREATE TABLE orders (
        id         TEXT    PRIMARY KEY,
        user       TEXT    NOT NULL,
        total      INTEGER NOT NULL,
        status     TEXT    NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX orders_by_user ON orders (user, created_at, id);
    CREATE INDEX orders_by_time ON orders (created_at, id);
    ",
    // 2: payment and delivery sagas. Their open steps (a payment awaiting the provider, a
    // delivery awaiting its due time) are written with the events that open and close them.
    // The read model learns cancel reasons and transition times, so it is rebuilt from the log
    // (the checkpoint goes back to 0 and the daemon catches up on start).
    "
    CREATE TABLE payment_requests (
        order_id     TEXT    PRIMARY KEY,
        amount       INTEGER NOT NULL,
        requested_at INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE delivery_timers (
        order_id TEXT    PRIMARY KEY,
        due_at   INTEGER NOT NULL
    ) WITHOUT ROWID;

    ALTER TABLE orders ADD COLUMN cancel_reason TEXT;
    ALTER TABLE orders ADD COLUMN approved_at INTEGER;
    ALTER TABLE orders ADD COLUMN delivered_at INTEGER;
    ALTER TABLE orders ADD COLUMN cancelled_at INTEGER;
    DELETE FROM orders;
    UPDATE checkpoints SET position = 0 WHERE projection = 'orders';
    ",
];

/// The schema version this build writes.
pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`CURRENT_VERSION`], one step per transaction.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version > CURRENT_VERSION {
            return Err(StoreError::NewerSchema { found: version, supported: CURRENT_VERSION });
        }
        if version == CURRENT_VERSION {
            return Ok(());
        }
        let step =
            usize::try_from(version).map_err(|_| StoreError::Corrupt(format!("user_version {version}")))?;
        tx.execute_batch(MIGRATIONS[step])?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
        tracing::info!(from = version, to = version + 1, "migrated the database schema");
    }
}
