//! The PostgreSQL backend (issue 19): the store in a PostgreSQL database, for users who outgrow
//! one machine's disk or want the database their operations team already runs. It is the only
//! code of the daemon that names `postgres`.
//!
//! - [`connect`]: where the database is (libpq's conventions), TLS, and the errors classified;
//! - [`schema`]: migrations under an advisory lock, the store's identity, the daemons sharing it;
//! - `cluster`: a daemon's own connection for wake-ups, heartbeats and orphaned saga steps;
//! - `write`: a batch planned in memory and written in a few statements (group commit);
//! - `projection`: the read model projected in memory and upserted; `rebuild`: replay's swap;
//! - `reads`: the pool of read connections and the named queries; `import`: a log loaded.
//!
//! Several daemons, on several hosts, may serve one database (issue 20): their writers take turns
//! under an advisory lock, one transaction at a time (see `write`). When the database goes away
//! (a restart, a network cut) the batch in flight fails as `unavailable` and nothing of it is
//! kept; the next batch opens a new connection, so the daemon recovers by itself.

mod cluster;
pub mod connect;
mod import;
mod projection;
mod reads;
mod rebuild;
pub mod schema;
mod sql;
#[cfg(test)]
mod tests;
mod write;

use std::time::{Duration, Instant};

use jiff::Timestamp;
use postgres::Client;

pub use self::connect::Target;
use self::sql::{Link, Statements};
use crate::identity::{Found, StoreId};
use crate::store::{
    Batch, Cluster, ImportTx, OpenSteps, Position, ReadSource, RebuildChunk, Store, StoreError, Upkeep,
};

/// How long a writer waits for the database to say whether a commit it lost sight of was
/// stored, before the daemon exits (its next start reads what is stored).
const SETTLE_FOR: Duration = Duration::from_secs(30);

/// A writer's connection idle for longer is checked before a batch (one round trip): a server's
/// `idle_session_timeout` may have closed it, which the client learns only when it next speaks.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// How long the writer's transactions may wait for a lock (the writers' lock, held by another
/// daemon's batch) or sit idle (a daemon frozen in a batch holds the writers' lock: the server
/// ends its session after this, so that the others go on), and the longest statement.
/// The server's own keepalives and user timeout on this session's socket (TCP only) notice a
/// host that vanished within seconds, not the system's two hours.
const WRITER_SESSION: &str = "SET lock_timeout = '10s'; SET idle_in_transaction_session_timeout = '5s'; \
                              SET statement_timeout = '60s'; SET tcp_keepalives_idle = 5; \
                              SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3; \
                              SET tcp_user_timeout = 10000";

/// How much longer than the provider's latency a payment step is leased to the daemon that
/// asks the provider, before another daemon may take it over (issue 20).
pub const LEASE_MARGIN: Duration = Duration::from_secs(3);

/// The PostgreSQL store: the writer's connection, and where the others connect.
pub struct PgStore {
    target: Target,
    /// This daemon among those sharing the database: its data directory's id (a UUID); for
    /// what is no daemon (an import), a new one, never registered.
    me: String,
    /// Whether it registers among the daemons sharing the database.
    member: bool,
    /// How long a payment step this daemon opens or claims is leased to it.
    payment_lease: Duration,
    conn: Option<(Link, Statements)>,
    /// When the writer's connection last did something.
    used: Instant,
    /// What this daemon knows the database to be: its identity, and the newest position it
    /// committed. A database found otherwise after a reconnection (a replica that lags behind,
    /// a dump restored under the same name) is not written to.
    identity: Option<StoreId>,
    committed: Position,
    /// Why the store is no longer written to, once it was found to be another.
    refused: Option<String>,
}

impl PgStore {
    /// Connects to the database, for a daemon that will serve it: takes the one-daemon lock and
    /// refuses when another daemon holds it.
    pub fn open(target: &Target) -> Result<PgStore, StoreError> {
        let mut store = PgStore {
            target: target.clone(),
            me: uuid::Uuid::now_v7().to_string(),
            member: false,
            payment_lease: LEASE_MARGIN,
            conn: None,
            used: Instant::now(),
            identity: None,
            committed: Position::START,
            refused: None,
        };
        store.connection()?;
        Ok(store)
    }

    /// Leases the payment steps this daemon opens or takes over for the provider's `latency`
    /// and [`LEASE_MARGIN`] more: another daemon takes a step over only once that has passed.
    pub fn with_payment_latency(mut self, latency: Duration) -> PgStore {
        self.payment_lease = latency.saturating_add(LEASE_MARGIN);
        self
    }

    /// Serves the database as the daemon `id` (its data directory's), registered among those
    /// sharing it once the schema is migrated.
    pub fn as_member(mut self, id: String) -> PgStore {
        self.me = id;
        self.member = true;
        self
    }

    /// The writer's connection, opened again (and the lock taken again) if the database closed
    /// it, and then proven to be the store this daemon served.
    fn connection(&mut self) -> Result<(&mut Client, &mut Statements), StoreError> {
        if let Some(why) = &self.refused {
            return Err(StoreError::Unavailable {
                reason: "the database is not the store this daemon served",
                detail: why.clone(),
                cause: None,
            });
        }
        let stale = self.used.elapsed() >= IDLE_CHECK;
        if let Some((client, _)) = &mut self.conn
            && (client.is_closed() || (stale && client.is_valid(IDLE_CHECK).is_err()))
        {
            tracing::warn!(database = %self.target.describe(), "the connection to the database was lost; connecting again");
            self.conn = None;
        }
        if self.conn.is_none() {
            let mut client = Link::new(self.target.connect("writer")?)?;
            client.batch_execute(WRITER_SESSION)?;
            let mut statements = Statements::default();
            if let Some(why) = self.changed_behind_our_back(&mut client, &mut statements)? {
                tracing::error!(database = %self.target.describe(), "{why}; nothing more is written to it");
                self.refused = Some(why.clone());
                return Err(StoreError::Unavailable {
                    reason: "the database is not the store this daemon served",
                    detail: why,
                    cause: None,
                });
            }
            self.conn = Some((client, statements));
        }
        self.used = Instant::now();
        let (client, statements) = self.conn.as_mut().expect("connected above");
        Ok((client, statements))
    }

    /// Why the database just connected to is not the one this daemon has been writing, if it
    /// is not: another identity, or fewer events than it committed.
    fn changed_behind_our_back(
        &self,
        client: &mut Client,
        statements: &mut Statements,
    ) -> Result<Option<String>, StoreError> {
        let Some(identity) = self.identity else { return Ok(None) };
        let found = schema::found(client)?;
        if found.id != Some(identity) {
            return Ok(Some(format!(
                "the database {} now holds another store (its identity changed from {identity}); restart \
                 the daemon to have it checked",
                self.target.describe()
            )));
        }
        let head = sql::head(statements, client)?;
        if head < self.committed {
            return Ok(Some(format!(
                "the database {} went backwards: it ends at event {head}, but this daemon had stored {} \
                 (a replica that lags behind, or a restored dump?); restart the daemon to have it checked",
                self.target.describe(),
                self.committed
            )));
        }
        Ok(None)
    }

    /// Learns, once the database can be asked, whether a commit that lost its connection was
    /// stored: its last event at its position. The daemon exits if the database cannot be asked
    /// in time, since it could neither say a command was stored nor that it was not; its next
    /// start reads what is stored.
    fn settle(&mut self, unknown: write::Unknown) -> Result<bool, StoreError> {
        let Some((position, event_id)) = unknown.last else { return Err(unknown.error) };
        let deadline = Instant::now() + SETTLE_FOR;
        loop {
            self.conn = None;
            let found = self.with(|client, statements| {
                let row = statements.query_opt(
                    client,
                    "SELECT event_id FROM events WHERE position = $1",
                    &[&position.get()],
                )?;
                Ok(row.map(|row| row.try_get::<_, String>(0)).transpose()?)
            });
            match found {
                Ok(found) => return Ok(found.as_deref() == Some(event_id.to_string().as_str())),
                Err(error) if Instant::now() < deadline => {
                    tracing::warn!(%error, "cannot learn yet whether a batch was stored; asking again");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(error) => {
                    tracing::error!(
                        %error,
                        "the connection to the database was lost as a batch committed, and for {}s the \
                         database could not say whether it was stored: the daemon exits, and its next start \
                         reads what is stored",
                        SETTLE_FOR.as_secs()
                    );
                    std::process::exit(1);
                }
            }
        }
    }

    /// Runs `work` on the writer's connection; a connection the database closed meanwhile is
    /// dropped, so that the next call connects again.
    fn with<T>(
        &mut self,
        work: impl FnOnce(&mut Client, &mut Statements) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let (client, statements) = self.connection()?;
        let result = work(client, statements);
        if result.is_err() && self.conn.as_ref().is_some_and(|(client, _)| client.is_closed()) {
            self.conn = None;
        }
        result
    }

    /// Runs SQL on the writer's connection, for the backend's own tests.
    #[cfg(test)]
    pub(crate) fn execute(&mut self, sql: &str) -> Result<(), StoreError> {
        self.with(|client, _| Ok(client.batch_execute(sql)?))
    }

    /// What the store is, for `status`: the backend and the database, never a password.
    pub fn describe(&self) -> String {
        self.target.describe()
    }
}

impl Store for PgStore {
    fn found(&mut self) -> Result<Found, StoreError> {
        self.with(|client, _| schema::found(client))
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let (me, database, member) = (self.me.clone(), self.target.describe(), self.member);
        self.with(|client, _| {
            schema::migrate(client, &me, &database)?;
            if member {
                schema::register(client, &me, &database)?;
            }
            Ok(())
        })
    }

    fn ensure_identity(&mut self, mint: bool) -> Result<StoreId, StoreError> {
        let identity = self.with(|client, _| schema::ensure_identity(client, mint))?;
        self.identity = Some(identity);
        Ok(identity)
    }

    fn head(&mut self) -> Result<Position, StoreError> {
        let head = self.with(|client, statements| sql::head(statements, client))?;
        self.committed = self.committed.max(head);
        Ok(head)
    }

    fn newest_recorded_at(&mut self) -> Result<Option<Timestamp>, StoreError> {
        self.with(|client, statements| {
            let row = statements.query_opt(
                client,
                "SELECT recorded_at FROM events ORDER BY position DESC LIMIT 1",
                &[],
            )?;
            row.map(|row| sql::time(row.try_get(0)?, || "the newest event".to_owned())).transpose()
        })
    }

    fn checkpoint(&mut self) -> Result<Position, StoreError> {
        self.with(|client, statements| sql::checkpoint(statements, client))
    }

    fn catch_up_chunk(&mut self, chunk: usize) -> Result<Option<u64>, StoreError> {
        self.with(|client, statements| projection::catch_up_chunk(statements, client, chunk))
    }

    /// Every delivery timer (one delivered by two daemons is recorded once), and the payment
    /// steps this daemon may carry out: its own, and those whose lease expired, claimed now.
    fn open_steps(&mut self) -> Result<OpenSteps, StoreError> {
        let (me, lease) = (self.me.clone(), self.payment_lease);
        self.with(|client, statements| {
            cluster::claim_payments(client, statements, &me, lease)?;
            reads::open_steps(client, Some(&me))
        })
    }

    fn write(&mut self, batch: &mut dyn Batch) -> Result<(), StoreError> {
        let lease_ms = i64::try_from(self.payment_lease.as_millis()).unwrap_or(i64::MAX);
        let me = self.me.clone();
        let claimant = write::Claimant { me: &me, lease_ms };
        let unknown = self.with(|client, statements| write::write(client, statements, batch, &claimant))?;
        if let Some(unknown) = unknown {
            let error = unknown.error.to_string();
            if !self.settle(unknown)? {
                return Err(StoreError::Unavailable {
                    reason: "the connection to the database was lost as the batch committed",
                    detail: error,
                    cause: None,
                });
            }
            tracing::warn!("a batch whose commit lost its connection was stored all the same");
        }
        if let Some(last) = batch.last_position() {
            self.committed = self.committed.max(last);
        }
        Ok(())
    }

    fn rebuild_start(&mut self, check: bool) -> Result<Position, StoreError> {
        let database = self.target.describe();
        self.with(|client, statements| rebuild::start(client, statements, check, &database))
    }

    fn rebuild_chunk(
        &mut self,
        check: bool,
        after: Position,
        chunk: usize,
    ) -> Result<RebuildChunk, StoreError> {
        self.with(|client, statements| rebuild::chunk(client, statements, check, after, chunk))
    }

    fn rebuild_abandon(&mut self, check: bool) -> Result<(), StoreError> {
        self.with(|client, _| rebuild::abandon(client, check))
    }

    fn import(
        &mut self,
        load: &mut dyn FnMut(&mut dyn ImportTx) -> Result<bool, StoreError>,
    ) -> Result<bool, StoreError> {
        self.with(|client, statements| import::import(client, statements, load))
    }

    fn drop_leftovers(&mut self) -> Result<bool, StoreError> {
        self.with(|client, _| rebuild::drop_leftovers(client))
    }

    fn reads(&self) -> Result<Box<dyn ReadSource>, StoreError> {
        Ok(Box::new(reads::Pool::new(self.target.clone())))
    }

    fn upkeep(&self) -> Result<Option<Box<dyn Upkeep>>, StoreError> {
        // The database vacuums and checkpoints itself.
        Ok(None)
    }

    fn cluster(&self) -> Result<Option<Box<dyn Cluster>>, StoreError> {
        Ok(Some(Box::new(cluster::Presence::new(self.target.clone(), self.me.clone(), self.payment_lease))))
    }
}
