//! The PostgreSQL schema, its migrations, the store's identity, and the lock that keeps one
//! daemon per database.
//!
//! Migrations run each in its own transaction (PostgreSQL's DDL is transactional) under a
//! transaction-level advisory lock, so that two daemons starting together migrate once: the
//! second waits, then finds the schema current. The version is a row of `orders_schema`; a
//! database of a newer version is refused, never "fixed".
//!
//! Until several daemons may share a database (the next step), a daemon holds a session-level
//! advisory lock on its writer's connection for as long as it serves, and records who it is in
//! `orders_daemon`, so that a second daemon is refused with the first one named.

use orders_shared::protocol::OrderView;
use postgres::{Client, GenericClient};

use super::sql::Statements;
use crate::identity::{Found, StoreId};
use crate::store::StoreError;

/// The advisory lock key of schema migrations ("ordr" "migr").
const MIGRATION_LOCK: i64 = 0x6F72_6472_6D69_6772;
/// The advisory lock key of the one daemon serving the database ("ordr" "dmon").
pub const DAEMON_LOCK: i64 = 0x6F72_6472_646D_6F6E;

/// Step N brings a database from version N to N + 1.
const MIGRATIONS: &[&str] = &[
    // 1: everything the SQLite store has at its schema 7, in PostgreSQL's words. Ids are text as
    // there (the stream id is `order-<uuid>`); times are Unix milliseconds; payloads are kept as
    // the text they were written in (jsonb would reformat them, and an export must give back
    // the bytes it was given).
    "
    CREATE TABLE orders_schema (
        singleton integer PRIMARY KEY CHECK (singleton = 1),
        version   integer NOT NULL
    );
    INSERT INTO orders_schema VALUES (1, 0);

    CREATE TABLE events (
        position        bigint  PRIMARY KEY,   -- global order of the log; rows are never deleted
        event_id        text    NOT NULL,
        stream_id       text    NOT NULL,      -- order-<uuid>
        version         bigint  NOT NULL,      -- 1, 2, ... within the stream
        type            text    NOT NULL,
        schema_version  integer NOT NULL,
        payload         text    NOT NULL,      -- a JSON object, as written
        correlation_id  text    NOT NULL,
        causation_id    text    NOT NULL,
        idempotency_key text,
        recorded_at     bigint  NOT NULL,      -- Unix time, milliseconds
        CONSTRAINT events_stream_version UNIQUE (stream_id, version)
    );
    CREATE UNIQUE INDEX events_by_idempotency_key ON events (idempotency_key) WHERE idempotency_key IS NOT NULL;
    CREATE FUNCTION orders_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'the event log is append-only'; END $$;
    CREATE TRIGGER events_are_append_only BEFORE UPDATE OR DELETE ON events
        FOR EACH ROW EXECUTE FUNCTION orders_append_only();
    CREATE TRIGGER events_are_never_truncated BEFORE TRUNCATE ON events
        FOR EACH STATEMENT EXECUTE FUNCTION orders_append_only();

    CREATE TABLE checkpoints (
        projection text   PRIMARY KEY,
        position   bigint NOT NULL
    );
    INSERT INTO checkpoints (projection, position) VALUES ('orders', 0);

    CREATE TABLE payment_requests (
        order_id     text   PRIMARY KEY,
        amount       bigint NOT NULL,
        requested_at bigint NOT NULL
    );
    CREATE TABLE delivery_timers (
        order_id text   PRIMARY KEY,
        due_at   bigint NOT NULL
    );

    CREATE TABLE store_identity (
        singleton integer PRIMARY KEY CHECK (singleton = 1),
        id        text    NOT NULL
    );

    CREATE TABLE orders_daemon (
        singleton  integer PRIMARY KEY CHECK (singleton = 1),
        host       text    NOT NULL,
        pid        bigint  NOT NULL,
        version    text    NOT NULL,
        started_at bigint  NOT NULL
    );
    ",
];

/// The schema version this build writes.
pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

/// The read model's table; `replay` builds a fresh one beside it and renames it into place.
pub const ORDERS_TABLE: &str = "orders";

/// Creates an empty read-model table (the migrations' live one, or a replay's fresh one),
/// its indexes named after it: `list --user` reads `(user_name, created_at, id)`, everyone's
/// list `(created_at, id)`, `list --status` `(status, created_at, id)`, short ids the last 8
/// characters of the id.
pub fn create_orders_table(
    client: &mut impl GenericClient,
    table: &str,
    temporary: bool,
) -> Result<(), StoreError> {
    let kind = if temporary { "TEMPORARY TABLE" } else { "TABLE" };
    client.batch_execute(&format!(
        "CREATE {kind} {table} (
             id            text   PRIMARY KEY,
             user_name     text   NOT NULL,
             total         bigint NOT NULL,
             status        text   NOT NULL,
             cancel_reason text,
             created_at    bigint NOT NULL,
             updated_at    bigint NOT NULL,
             approved_at   bigint,
             delivered_at  bigint,
             cancelled_at  bigint
         );
         CREATE INDEX {table}_by_user ON {table} (user_name, created_at, id);
         CREATE INDEX {table}_by_time ON {table} (created_at, id);
         CREATE INDEX {table}_by_status ON {table} (status, created_at, id);
         CREATE INDEX {table}_by_tail ON {table} (right(id, 8));"
    ))?;
    Ok(())
}

/// What the database says about itself, before it is migrated.
pub fn found(client: &mut Client) -> Result<Found, StoreError> {
    let row = client.query_one(
        "SELECT to_regclass('store_identity') IS NOT NULL, to_regclass('events') IS NOT NULL",
        &[],
    )?;
    let id = if row.try_get(0)? { stored_id(client)? } else { None };
    let head = if row.try_get(1)? {
        client.query_one("SELECT coalesce(max(position), 0) FROM events", &[])?.try_get(0)?
    } else {
        0
    };
    Ok(Found { id, head })
}

fn stored_id(client: &mut impl GenericClient) -> Result<Option<StoreId>, StoreError> {
    let row = client.query_opt("SELECT id FROM store_identity", &[])?;
    row.map(|row| {
        let text: String = row.try_get(0)?;
        text.parse().map_err(|_| StoreError::Corrupt(format!("the store identity '{text}' is no UUID")))
    })
    .transpose()
}

/// The identity after migrating: the one the store has, or a new one.
pub fn ensure_identity(client: &mut Client, mint: bool) -> Result<StoreId, StoreError> {
    if !mint && let Some(id) = stored_id(client)? {
        return Ok(id);
    }
    let id = StoreId::new();
    client.execute(
        "INSERT INTO store_identity (singleton, id) VALUES (1, $1) \
         ON CONFLICT (singleton) DO UPDATE SET id = excluded.id",
        &[&id.to_string()],
    )?;
    tracing::info!(store = %id, "the store has a new identity");
    Ok(id)
}

/// Brings the schema to [`CURRENT_VERSION`], one step per transaction, under the migration lock.
pub fn migrate(client: &mut Client) -> Result<(), StoreError> {
    loop {
        let mut tx = client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
        let version: i64 =
            if tx.query_one("SELECT to_regclass('orders_schema') IS NOT NULL", &[])?.try_get(0)? {
                i64::from(tx.query_one("SELECT version FROM orders_schema", &[])?.try_get::<_, i32>(0)?)
            } else {
                0
            };
        if version > CURRENT_VERSION {
            return Err(StoreError::NewerSchema { found: version, supported: CURRENT_VERSION });
        }
        if version >= CURRENT_VERSION {
            return Ok(());
        }
        let step =
            usize::try_from(version).map_err(|_| StoreError::Corrupt(format!("schema version {version}")))?;
        tx.batch_execute(MIGRATIONS[step])?;
        if step == 0 {
            create_orders_table(&mut tx, ORDERS_TABLE, false)?;
        }
        let next = i32::try_from(version + 1).unwrap_or(i32::MAX);
        tx.execute("UPDATE orders_schema SET version = $1", &[&next])?;
        tx.commit()?;
        tracing::info!(from = version, to = version + 1, "migrated the PostgreSQL schema");
    }
}

/// Takes the one-daemon lock on `client`'s session and records this daemon as its holder, or
/// says who holds it.
pub fn serve(client: &mut Client, statements: &mut Statements, database: &str) -> Result<(), StoreError> {
    let host = host_name();
    let pid = i64::from(std::process::id());
    let mut taken = try_lock(client)?;
    if !taken && holder(client).is_some_and(|(h, p, ..)| h == host && p == pid) {
        // This very daemon holds it, on a connection it lost (the server has not noticed yet:
        // a network cut, a half-open connection): end that session and take the lock again.
        tracing::warn!(%database, "ending this daemon's own lost session, which still holds the database");
        client.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1 AND pid <> pg_backend_pid()",
            &[&(DAEMON_LOCK >> 32), &(DAEMON_LOCK & 0xFFFF_FFFF)],
        )?;
        for _ in 0..50 {
            taken = try_lock(client)?;
            if taken {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    if !taken {
        let holder = holder(client)
            .map(|(host, pid, version, started)| {
                let since =
                    jiff::Timestamp::from_millisecond(started).map(|t| t.to_string()).unwrap_or_default();
                format!("pid {pid} on host {host} (orders {version}, since {since})")
            })
            .unwrap_or_else(|| "a daemon that has not said who it is".to_owned());
        return Err(StoreError::Unavailable {
            reason: "another daemon serves this database",
            detail: format!(
                "another orders daemon already serves the PostgreSQL database {database}: {holder}; \
                 stop it first (several daemons on one database come in a later version)"
            ),
            cause: None,
        });
    }
    announce(client, statements)
}

fn try_lock(client: &mut Client) -> Result<bool, StoreError> {
    Ok(client.query_one("SELECT pg_try_advisory_lock($1)", &[&DAEMON_LOCK])?.try_get(0)?)
}

/// Who says it serves the database: host, pid, version, since when (ms).
fn holder(client: &mut Client) -> Option<(String, i64, String, i64)> {
    let row = client.query_opt("SELECT host, pid, version, started_at FROM orders_daemon", &[]).ok()??;
    Some((row.try_get(0).ok()?, row.try_get(1).ok()?, row.try_get(2).ok()?, row.try_get(3).ok()?))
}

fn host_name() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}

/// Records this daemon as the one serving the database, once the schema has the table for it.
pub fn announce(client: &mut Client, statements: &mut Statements) -> Result<(), StoreError> {
    if !client.query_one("SELECT to_regclass('orders_daemon') IS NOT NULL", &[])?.try_get::<_, bool>(0)? {
        return Ok(());
    }
    let host = host_name();
    statements.execute(
        client,
        "INSERT INTO orders_daemon (singleton, host, pid, version, started_at) \
         VALUES (1, $1, $2, $3, (extract(epoch from clock_timestamp()) * 1000)::bigint) \
         ON CONFLICT (singleton) DO UPDATE SET host = excluded.host, pid = excluded.pid, \
             version = excluded.version, started_at = excluded.started_at",
        &[&host, &i64::from(std::process::id()), &env!("CARGO_PKG_VERSION")],
    )?;
    Ok(())
}

/// The values of a read-model row in [`VIEW_COLUMNS`](super::sql::VIEW_COLUMNS) order, as
/// arrays of one upsert (`unnest`).
#[derive(Default)]
pub struct RowArrays {
    pub ids: Vec<String>,
    pub users: Vec<String>,
    pub totals: Vec<i64>,
    pub statuses: Vec<&'static str>,
    pub reasons: Vec<Option<&'static str>>,
    pub created: Vec<i64>,
    pub updated: Vec<i64>,
    pub approved: Vec<Option<i64>>,
    pub delivered: Vec<Option<i64>>,
    pub cancelled: Vec<Option<i64>>,
}

impl RowArrays {
    pub fn push(&mut self, view: &OrderView) {
        let ms = |t: Option<jiff::Timestamp>| t.map(|t| t.as_millisecond());
        self.ids.push(view.id.to_string());
        self.users.push(view.user.clone());
        self.totals.push(view.total);
        self.statuses.push(view.status.as_str());
        self.reasons.push(view.cancel_reason.map(|reason| reason.as_str()));
        self.created.push(view.created_at.as_millisecond());
        self.updated.push(view.updated_at.as_millisecond());
        self.approved.push(ms(view.approved_at));
        self.delivered.push(ms(view.delivered_at));
        self.cancelled.push(ms(view.cancelled_at));
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Inserts or replaces these rows in `table`, in one statement.
    pub fn upsert(
        &self,
        statements: &mut Statements,
        client: &mut impl GenericClient,
        table: &str,
    ) -> Result<(), StoreError> {
        if self.is_empty() {
            return Ok(());
        }
        statements.execute(client, &self.sql(table, 1), &self.params())?;
        Ok(())
    }

    /// The upsert of these rows into `table`, its parameters numbered from `first`.
    pub fn sql(&self, table: &str, first: usize) -> String {
        let columns = super::sql::VIEW_COLUMNS;
        let types =
            ["text", "text", "bigint", "text", "text", "bigint", "bigint", "bigint", "bigint", "bigint"];
        let arrays: Vec<String> =
            types.iter().enumerate().map(|(n, kind)| format!("${}::{kind}[]", first + n)).collect();
        format!(
            "INSERT INTO {table} ({columns}) SELECT * FROM unnest({}) \
             ON CONFLICT (id) DO UPDATE SET user_name = excluded.user_name, total = excluded.total, \
             status = excluded.status, cancel_reason = excluded.cancel_reason, \
             created_at = excluded.created_at, updated_at = excluded.updated_at, \
             approved_at = excluded.approved_at, delivered_at = excluded.delivered_at, \
             cancelled_at = excluded.cancelled_at",
            arrays.join(", ")
        )
    }

    /// The parameters of [`sql`](Self::sql), in its order.
    pub fn params(&self) -> [super::sql::Param<'_>; 10] {
        [
            &self.ids,
            &self.users,
            &self.totals,
            &self.statuses,
            &self.reasons,
            &self.created,
            &self.updated,
            &self.approved,
            &self.delivered,
            &self.cancelled,
        ]
    }
}
