//! The PostgreSQL schema, its migrations, the store's identity, and the daemons that share it.
//!
//! Migrations run each in its own transaction (PostgreSQL's DDL is transactional) under a
//! transaction-level advisory lock, so that two daemons starting together migrate once: the
//! second waits, then finds the schema current. The version is a row of `orders_schema`; a
//! database of a newer version is refused, never "fixed".
//!
//! Several daemons may share a database (issue 20): each registers in `orders_daemons` under its
//! data directory's id and beats every second; daemons of another version are refused while
//! they live. The advisory lock key of replays is here too (the writers' is `sql`'s).

use orders_shared::protocol::OrderView;
use postgres::{Client, GenericClient};

use super::sql::Statements;
use crate::identity::{Found, StoreId};
use crate::store::StoreError;

/// The advisory lock key of schema migrations ("ordr" "migr").
const MIGRATION_LOCK: i64 = 0x6F72_6472_6D69_6772;
/// The advisory lock key the first PostgreSQL version held for as long as its one daemon served
/// the database ("ordr" "dmon"): a migration waits for no such daemon.
const OLD_DAEMON_LOCK: i64 = 0x6F72_6472_646D_6F6E;
/// The advisory lock key of a replay in progress, held by the session of the daemon that runs
/// it: one replay at a time in the cluster ("ordr" "rply").
pub const REPLAY_LOCK: i64 = 0x6F72_6472_7270_6C79;

/// The database's clock in Unix milliseconds, as the schema keeps times.
pub const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";
/// A daemon whose heartbeat is younger counts as live (its heartbeat comes every second).
pub const LIVE_FOR_MS: i64 = 10_000;
/// A daemon silent for longer is removed from `orders_daemons` when another one starts.
const FORGET_AFTER_MS: i64 = 24 * 3_600_000;

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
    // 2 (issue 20): several daemons on one database. Each registers itself and beats every
    // second; a payment step is leased by the daemon that asks the provider.
    "
    DROP TABLE orders_daemon;
    CREATE TABLE orders_daemons (
        id           text   PRIMARY KEY,   -- the daemon's data directory's (daemon.id), a UUID
        host         text   NOT NULL,
        data_dir     text   NOT NULL,
        pid          bigint NOT NULL,
        version      text   NOT NULL,      -- of orders
        started_at   bigint NOT NULL,      -- the database's clock, Unix milliseconds
        heartbeat_at bigint NOT NULL
    );
    ALTER TABLE payment_requests
        ADD COLUMN claimed_by  text,       -- the daemon that asks the provider (orders_daemons.id)
        ADD COLUMN lease_until bigint;     -- after which another daemon may take the step over
    -- Each daemon looks each second for expired leases and overdue timers.
    CREATE INDEX payment_requests_by_lease ON payment_requests (lease_until);
    CREATE INDEX delivery_timers_by_due ON delivery_timers (due_at);
    -- Every commit that appends events wakes the daemons listening (an empty payload: it only
    -- says to look again).
    CREATE FUNCTION orders_notify_commit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_notify('orders_commits', ''); RETURN NULL; END $$;
    CREATE TRIGGER events_notify_commit AFTER INSERT ON events
        FOR EACH STATEMENT EXECUTE FUNCTION orders_notify_commit();
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
pub fn migrate(client: &mut Client, me: &str, database: &str) -> Result<(), StoreError> {
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
        if version >= 2 {
            // A schema this build changes must not change under daemons of another version.
            same_version(&mut tx, me, database)?;
        }
        // Only the first PostgreSQL schema had the one-daemon lock and its `orders_daemon` row.
        if version == 1
            && let Some(who) = older_daemon(&mut tx)?
        {
            return Err(StoreError::Unavailable {
                reason: "an older daemon serves this database",
                detail: format!(
                    "{who} serves this database with an older version of orders: stop it before this version \
                     upgrades the schema"
                ),
                cause: None,
            });
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

/// Whether a daemon of the first PostgreSQL version (one daemon per database, by a session
/// lock) still serves the database: it must be stopped before the schema moves on.
fn older_daemon(client: &mut impl GenericClient) -> Result<Option<String>, StoreError> {
    let held: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1)",
            &[&(OLD_DAEMON_LOCK >> 32), &(OLD_DAEMON_LOCK & 0xFFFF_FFFF)],
        )?
        .try_get(0)?;
    if !held {
        return Ok(None);
    }
    let row = client.query_opt("SELECT host, pid, version FROM orders_daemon", &[]).ok().flatten();
    let who = row
        .and_then(|row| {
            Some((
                row.try_get::<_, String>(0).ok()?,
                row.try_get::<_, i64>(1).ok()?,
                row.try_get::<_, String>(2).ok()?,
            ))
        })
        .map(|(host, pid, version)| format!("pid {pid} on host {host} (orders {version})"))
        .unwrap_or_else(|| "a daemon of an older version".to_owned());
    Ok(Some(who))
}

/// The daemons registered on the database whose heartbeat is recent, other than `me`, with
/// the version of orders each runs.
fn live_others(client: &mut impl GenericClient, me: &str) -> Result<Vec<(String, i64, String)>, StoreError> {
    let rows = client.query(
        &format!(
            "SELECT host, pid, version FROM orders_daemons WHERE id <> $1 \
             AND heartbeat_at > {NOW_MS} - $2 ORDER BY started_at"
        ),
        &[&me, &LIVE_FOR_MS],
    )?;
    rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))).collect()
}

/// The live daemons registered on the database, named for a message; `None` when there are none
/// (or the schema has no list yet).
pub fn live_daemons(client: &mut impl GenericClient) -> Result<Option<String>, StoreError> {
    if !client.query_one("SELECT to_regclass('orders_daemons') IS NOT NULL", &[])?.try_get::<_, bool>(0)? {
        return Ok(None);
    }
    let live: Vec<String> = live_others(client, "")?
        .into_iter()
        .map(|(host, pid, _)| format!("pid {pid} on host {host}"))
        .collect();
    Ok((!live.is_empty()).then(|| live.join(", ")))
}

/// Refuses to go on beside live daemons of another version of orders: daemons on one database
/// run one version (an upgrade stops them all, then starts the new build).
fn same_version(client: &mut impl GenericClient, me: &str, database: &str) -> Result<(), StoreError> {
    let ours = env!("CARGO_PKG_VERSION");
    let others: Vec<String> = live_others(client, me)?
        .into_iter()
        .filter(|(_, _, version)| version != ours)
        .map(|(host, pid, version)| format!("pid {pid} on host {host} runs orders {version}"))
        .collect();
    if others.is_empty() {
        return Ok(());
    }
    Err(StoreError::Unavailable {
        reason: "daemons of another version serve this database",
        detail: format!(
            "daemons of another version of orders serve the PostgreSQL database {database} ({}); this is orders \
             {ours}. Daemons sharing a database run one version: stop them all, then start the new one everywhere",
            others.join("; ")
        ),
        cause: None,
    })
}

/// Registers this daemon (`me`, new at each start) among those sharing the database, or
/// refuses when live daemons run another version. Rows of daemons silent for long are removed.
pub fn register(client: &mut Client, me: &Me<'_>, database: &str) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    same_version(&mut tx, me.id, database)?;
    twin(&mut tx, me)?;
    tx.execute(
        &format!("DELETE FROM orders_daemons WHERE heartbeat_at < {NOW_MS} - $1"),
        &[&FORGET_AFTER_MS],
    )?;
    heartbeat(&mut tx, me)?;
    tx.commit()?;
    Ok(())
}

/// Refuses to serve as `me` while a live daemon of another data directory does: a copy of this
/// one, with its `daemon.id`, on another host or beside it. The same id from this very data
/// directory on this host is its daemon of before (killed, or stopping): this one holds the
/// data directory's lock now.
fn twin(client: &mut impl GenericClient, me: &Me<'_>) -> Result<(), StoreError> {
    let Some(row) = client.query_opt(
        &format!(
            "SELECT host, pid, data_dir FROM orders_daemons WHERE id = $1 AND heartbeat_at > {NOW_MS} - $2"
        ),
        &[&me.id, &LIVE_FOR_MS],
    )?
    else {
        return Ok(());
    };
    let (host, pid, data_dir): (String, i64, String) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    let alive = || {
        i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok())
    };
    if host != host_name() || (data_dir != me.data_dir && alive()) {
        return Err(StoreError::Unavailable {
            reason: "another daemon serves under this daemon's id",
            detail: format!(
                "pid {pid} on host {host} ({data_dir}) serves the database under this data directory's daemon id \
                 ({}): was the data directory copied? Give each daemon a data directory of its own (remove the copy's \
                 daemon.id), or wait 10 seconds if that daemon is gone",
                me.id
            ),
            cause: None,
        });
    }
    Ok(())
}

/// This daemon, as it registers: its data directory's id, and the directory.
pub struct Me<'a> {
    pub id: &'a str,
    pub data_dir: &'a str,
}

/// Says this daemon is alive: its row, written again if it was removed meanwhile (and as it is
/// now, when its data directory's daemon starts again).
pub fn heartbeat(client: &mut impl GenericClient, me: &Me<'_>) -> Result<(), StoreError> {
    client.execute(
        &format!(
            "INSERT INTO orders_daemons (id, host, data_dir, pid, version, started_at, heartbeat_at) \
             VALUES ($1, $2, $5, $3, $4, {NOW_MS}, {NOW_MS}) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, host = excluded.host, \
                 data_dir = excluded.data_dir, pid = excluded.pid, version = excluded.version, \
                 started_at = CASE WHEN orders_daemons.pid = excluded.pid AND orders_daemons.host = excluded.host \
                     THEN orders_daemons.started_at ELSE excluded.started_at END"
        ),
        &[&me.id, &host_name(), &i64::from(std::process::id()), &env!("CARGO_PKG_VERSION"), &me.data_dir],
    )?;
    Ok(())
}

/// Removes this daemon's row (a clean stop) — unless its data directory's next daemon has
/// taken it over already — and lets its leased payment steps go to the others at once.
pub fn leave(client: &mut impl GenericClient, me: &str) -> Result<(), StoreError> {
    client.execute("UPDATE payment_requests SET lease_until = NULL WHERE claimed_by = $1", &[&me])?;
    client.execute(
        "DELETE FROM orders_daemons WHERE id = $1 AND host = $2 AND pid = $3",
        &[&me, &host_name(), &i64::from(std::process::id())],
    )?;
    Ok(())
}

/// The daemons registered on the database, oldest first.
pub fn members(
    client: &mut impl GenericClient,
    me: &str,
) -> Result<Vec<orders_shared::protocol::ClusterDaemon>, StoreError> {
    let rows = client.query(
        &format!(
            "SELECT id, host, pid, version, started_at, heartbeat_at, {NOW_MS} - heartbeat_at \
             FROM orders_daemons ORDER BY started_at, id"
        ),
        &[],
    )?;
    let time = |ms: i64| jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    rows.iter()
        .map(|row| {
            let id: String = row.try_get(0)?;
            let silent: i64 = row.try_get(6)?;
            Ok(orders_shared::protocol::ClusterDaemon {
                this: id == me,
                id,
                host: row.try_get(1)?,
                pid: row.try_get(2)?,
                version: row.try_get(3)?,
                started_at: time(row.try_get(4)?),
                heartbeat_at: time(row.try_get(5)?),
                live: silent < LIVE_FOR_MS,
            })
        })
        .collect()
}

fn host_name() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
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
