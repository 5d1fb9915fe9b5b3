//! The PostgreSQL backend (issue 19): the store in a PostgreSQL database, for users who outgrow
//! one machine's disk or want the database their operations team already runs. It is the only
//! code of the daemon that names `postgres`.
//!
//! - [`connect`]: where the database is (libpq's conventions), TLS, and the errors classified;
//! - [`schema`]: migrations under an advisory lock, the store's identity, the one-daemon lock;
//! - `write`: a batch planned in memory and written in a few statements (group commit);
//! - `projection`: the read model projected in memory and upserted; `rebuild`: replay's swap;
//! - `reads`: the pool of read connections and the named queries; `import`: a log loaded.
//!
//! The writer's connection holds the one-daemon lock. When the database goes away (a restart, a
//! network cut) the batch in flight fails as `unavailable` and nothing of it is kept; the next
//! batch opens a new connection and takes the lock again, so the daemon recovers by itself.

pub mod connect;
mod import;
mod projection;
mod reads;
mod rebuild;
pub mod schema;
mod sql;
mod write;

use jiff::Timestamp;
use postgres::Client;

pub use self::connect::Target;
use self::sql::{Link, Statements};
use crate::identity::{Found, StoreId};
use crate::store::{
    Batch, ImportTx, OpenSteps, Position, ReadSource, RebuildChunk, Store, StoreError, Upkeep,
};

/// The PostgreSQL store: the writer's connection, and where the others connect.
pub struct PgStore {
    target: Target,
    conn: Option<(Link, Statements)>,
    /// Whether the one-daemon lock was taken (the daemon serves, rather than inspects).
    serving: bool,
}

impl PgStore {
    /// Connects to the database, for a daemon that will serve it: takes the one-daemon lock and
    /// refuses when another daemon holds it.
    pub fn open(target: &Target) -> Result<PgStore, StoreError> {
        let mut store = PgStore { target: target.clone(), conn: None, serving: true };
        store.connection()?;
        Ok(store)
    }

    /// The writer's connection, opened again (and the lock taken again) if the database closed
    /// it.
    fn connection(&mut self) -> Result<(&mut Client, &mut Statements), StoreError> {
        if self.conn.as_ref().is_some_and(|(client, _)| client.is_closed()) {
            tracing::warn!(database = %self.target.describe(), "the connection to the database was lost; connecting again");
            self.conn = None;
        }
        if self.conn.is_none() {
            let mut client = Link::new(self.target.connect("writer")?);
            let mut statements = Statements::default();
            if self.serving {
                schema::serve(&mut client, &mut statements, &self.target.describe())?;
            }
            self.conn = Some((client, statements));
        }
        let (client, statements) = self.conn.as_mut().expect("connected above");
        Ok((client, statements))
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
        let serving = self.serving;
        self.with(|client, statements| {
            schema::migrate(client)?;
            if serving { schema::announce(client, statements) } else { Ok(()) }
        })
    }

    fn ensure_identity(&mut self, mint: bool) -> Result<StoreId, StoreError> {
        self.with(|client, _| schema::ensure_identity(client, mint))
    }

    fn head(&mut self) -> Result<Position, StoreError> {
        self.with(|client, statements| sql::head(statements, client))
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

    fn open_steps(&mut self) -> Result<OpenSteps, StoreError> {
        self.with(|client, _| reads::open_steps(client))
    }

    fn write(&mut self, batch: &mut dyn Batch) -> Result<(), StoreError> {
        self.with(|client, statements| write::write(client, statements, batch))
    }

    fn rebuild_start(&mut self, check: bool) -> Result<Position, StoreError> {
        self.with(|client, statements| rebuild::start(client, statements, check))
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
}
