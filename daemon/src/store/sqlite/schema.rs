//! The database schema and its migrations, tracked by SQLite's `user_version`.
//!
//! Each step runs once, in order, inside the transaction that bumps `user_version`; a database
//! written by a newer build (a higher version than this one knows) is refused, never "fixed".

use rusqlite::{Connection, TransactionBehavior};

use crate::store::StoreError;

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
    // 3: clients' retry keys are unique: the event that created an order holds its key.
    "
        CREATE UNIQUE INDEX events_by_idempotency_key ON events (idempotency_key) WHERE idempotency_key IS NOT NULL;
    ",
    // 4: the read model is stored in (user, created_at, id) order, so that a customer's orders
    // lie together (listing them read a page per order before); `id` gets a unique index. The
    // table is rebuilt from the log on start.
    "
    DROP TABLE orders;
    CREATE TABLE orders (
        id            TEXT    NOT NULL,
        user          TEXT    NOT NULL,
        total         INTEGER NOT NULL,
        status        TEXT    NOT NULL,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL,
        cancel_reason TEXT,
        approved_at   INTEGER,
        delivered_at  INTEGER,
        cancelled_at  INTEGER,
        PRIMARY KEY (user, created_at, id)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX orders_by_id ON orders (id);
    CREATE INDEX orders_by_time ON orders (created_at, id);
    UPDATE checkpoints SET position = 0 WHERE projection = 'orders';
    ",
    // 5: status filters (`list --status S`, newest first) read an index instead of the whole
    // table. `list --user U --status S` keeps the primary key (one customer's orders) and
    // filters those by status.
    "
    CREATE INDEX orders_by_status ON orders (status, created_at, id);
    ",
    // 6: the store knows itself (issue 12): its id, minted by the daemon (`store::identity`),
    // and an application id marking the file as an orders database.
    "
    CREATE TABLE store_identity (
        singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
        id        TEXT    NOT NULL
    );
    PRAGMA application_id = 1869767794;
    ",
    // 7: short ids (issue 18): commands take the end of an order id, at least 8 hex digits, and
    // tables show the shortest one that is unique. The ends of the ids, by their last 8 hex
    // digits, are a projection of the log kept off the write path (`tails`), caught up from the
    // start of the log by the upkeep task.
    "
    CREATE TABLE order_tails (
        tail TEXT NOT NULL,   -- the last 8 hex digits of the id
        id   TEXT NOT NULL,
        PRIMARY KEY (tail, id)
    ) WITHOUT ROWID;
    INSERT INTO checkpoints (projection, position) VALUES ('order_tails', 0);
    ",
];

/// The schema version this build writes.
pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`CURRENT_VERSION`], one step per transaction.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    migrate_to(conn, CURRENT_VERSION)
}

/// Brings the database up to `target` (tests build old databases with it).
pub fn migrate_to(conn: &mut Connection, target: i64) -> Result<(), StoreError> {
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version > CURRENT_VERSION {
            return Err(StoreError::NewerSchema { found: version, supported: CURRENT_VERSION });
        }
        if version >= target {
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

#[cfg(test)]
mod tests {
    use orders_shared::protocol::OrderView;
    use orders_shared::{CancelReason, OrderId, OrderStatus};
    use rusqlite::params;

    use super::*;
    use crate::store::sqlite::open_writer;
    use crate::store::sqlite::read_model as projection;

    /// A database as the first release wrote it: schema 1, where `OrderCancelled` was version 1
    /// and had no reason. Upgraded, its events are upcast and its read model rebuilt.
    #[test]
    fn a_schema_1_database_is_migrated_and_its_old_events_upcast() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = open_writer(&dir.path().join("old.db")).expect("open");
        migrate_to(&mut conn, 1).expect("schema 1");
        let id = "019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6b";
        let insert = "INSERT INTO events (event_id, stream_id, version, type, schema_version, payload, \
                      correlation_id, causation_id, recorded_at) VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?6, ?7)";
        let correlation = "019a6b2e-0000-7000-8000-000000000000";
        for (version, event_type, payload, event_id, at) in [
            (
                1,
                "OrderPlaced",
                r#"{"user":"alice","total":2}"#,
                "019a6b2e-0000-7000-8000-000000000001",
                1_700_000_000_000_i64,
            ),
            (2, "OrderCancelled", "{}", "019a6b2e-0000-7000-8000-000000000002", 1_700_000_001_000),
        ] {
            conn.execute(
                insert,
                params![event_id, format!("order-{id}"), version, event_type, payload, correlation, at],
            )
            .expect("insert a v1 event");
        }
        conn.execute(
            "INSERT INTO orders VALUES (?1, 'alice', 2, 'cancelled', 1700000000000, 1700000001000)",
            [id],
        )
        .expect("the v1 read model");

        migrate(&mut conn).expect("migrate to the current schema");
        assert_eq!(
            projection::catch_up(&conn).expect("rebuild"),
            2,
            "the read model was rebuilt from the log"
        );
        let order: OrderView =
            projection::get(&conn, id.parse::<OrderId>().expect("id")).expect("read").expect("found");
        assert_eq!(order.status, OrderStatus::Cancelled);
        assert_eq!(
            order.cancel_reason,
            Some(CancelReason::CustomerRequest),
            "v1 cancels were the customer's"
        );
        assert_eq!(order.cancelled_at.map(|t| t.as_millisecond()), Some(1_700_000_001_000));
    }

    /// A daemon killed during a catch-up (which can take a while after a migration resets the read
    /// model) resumes it on the next start; nothing is applied twice.
    #[test]
    fn a_catch_up_interrupted_between_chunks_resumes() {
        let mut db = crate::testing::Db::new();
        let orders: Vec<_> = (0..10).map(|n| db.create(2 + 2 * n)).collect();
        let expected: Vec<_> = orders.iter().map(|id| db.view(*id)).collect();
        db.conn().execute_batch("DELETE FROM orders; UPDATE checkpoints SET position = 0").expect("reset");
        projection::catch_up_chunk(db.store.conn(), 7).expect("one chunk").expect("something to apply");
        // The daemon dies here; on the next start the catch-up goes on from its checkpoint.
        assert_eq!(projection::catch_up(db.store.conn()).expect("catch up"), 20 - 7);
        let rebuilt: Vec<_> = orders.iter().map(|id| db.view(*id)).collect();
        assert_eq!(rebuilt, expected);
    }

    /// `replay` builds tables with `projection::create_table`; they must be the tables the
    /// migrations build, column for column.
    #[test]
    fn a_rebuilt_read_model_table_has_the_migrated_columns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = open_writer(&dir.path().join("t.db")).expect("open");
        migrate(&mut conn).expect("migrate");
        projection::create_table(&conn, "main", "fresh", "_test").expect("create");
        let columns = |table: &str| {
            let mut info = conn.prepare(&format!("PRAGMA table_info({table})")).expect("pragma");
            info.query_map([], |row| {
                Ok((
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, bool>(3)?,
                    row.get::<_, i64>(5)?,
                ))
            })
            .expect("rows")
            .collect::<Result<Vec<_>, _>>()
            .expect("columns")
        };
        assert_eq!(columns(ORDERS_TABLE), columns("fresh"));
        let names: Vec<String> = columns("fresh").into_iter().map(|(name, ..)| name).collect();
        assert_eq!(names.join(", "), projection::COLUMNS);
        // And index for index (their names differ by the suffix alone).
        assert_eq!(indexes(&conn, ORDERS_TABLE, ""), indexes(&conn, "fresh", "_test"));
    }

    /// A table's indexes: name without `suffix`, unique, and columns.
    fn indexes(conn: &rusqlite::Connection, table: &str, suffix: &str) -> Vec<(String, bool, String)> {
        let mut list = conn.prepare(&format!("PRAGMA index_list({table})")).expect("pragma");
        let mut found: Vec<(String, bool, String)> = list
            .query_map([], |row| Ok((row.get::<_, String>(1)?, row.get::<_, bool>(2)?)))
            .expect("rows")
            .map(|row| {
                let (name, unique) = row.expect("index");
                let mut info = conn.prepare(&format!("PRAGMA index_info({name})")).expect("pragma");
                let columns: Vec<String> = info
                    // An expression's column has no name.
                    .query_map([], |row| {
                        Ok(row.get::<_, Option<String>>(2)?.unwrap_or_else(|| "<expr>".into()))
                    })
                    .expect("rows")
                    .collect::<Result<_, _>>()
                    .expect("columns");
                (name.strip_suffix(suffix).unwrap_or(&name).to_owned(), unique, columns.join(", "))
            })
            .filter(|(name, ..)| !name.starts_with("sqlite_autoindex"))
            .collect();
        found.sort();
        found
    }

    /// A database of the previous release (schema 4, no status index) opens, gains the index and
    /// keeps its read model: the migration adds an index and rebuilds nothing.
    #[test]
    fn a_schema_4_database_gains_the_status_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.db");
        let mut db = crate::testing::Db::new();
        let order = db.create(2);
        // The same events in a schema-4 file.
        let mut conn = open_writer(&path).expect("open");
        migrate_to(&mut conn, 4).expect("schema 4");
        conn.execute_batch(&format!(
            "ATTACH '{}' AS current; INSERT INTO events SELECT * FROM current.events; \
             INSERT INTO orders SELECT * FROM current.orders; \
             UPDATE checkpoints SET position = (SELECT max(position) FROM events); DETACH current;",
            db.path().display()
        ))
        .expect("copy");
        assert!(!indexes(&conn, ORDERS_TABLE, "").iter().any(|(name, ..)| name == "orders_by_status"));

        migrate(&mut conn).expect("migrate");
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0)).expect("version");
        assert_eq!(version, CURRENT_VERSION);
        assert!(
            indexes(&conn, ORDERS_TABLE, "").contains(&(
                "orders_by_status".to_owned(),
                false,
                "status, created_at, id".to_owned()
            )),
            "{:?}",
            indexes(&conn, ORDERS_TABLE, "")
        );
        assert_eq!(projection::catch_up(&conn).expect("catch up"), 0, "the read model is kept");
        let page = projection::list(
            &conn,
            &orders_shared::protocol::ListRequest {
                status: Some(OrderStatus::Pending),
                ..Default::default()
            },
        )
        .expect("list");
        assert_eq!(page.orders.iter().map(|o| o.id).collect::<Vec<_>>(), [order]);
    }
}
