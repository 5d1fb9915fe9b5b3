//! Read-only connections for queries, so that reads never wait for the writer (WAL).
//!
//! A small bounded pool: at most [`MAX_READERS`] connections exist, and all of them are kept once
//! opened, so memory stays flat under any load (each connection has its own page cache) and
//! reads beyond the bound wait their turn. r2d2_sqlite and deadpool-sqlite lag behind the
//! rusqlite release used here, and this is all a pool needs to do.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::Semaphore;

use crate::store::{self, StoreError};

/// The most read connections open at once (and the most reads running at once).
pub const MAX_READERS: usize = 16;

/// The most bulk reads (pieces of `events` pages and follows) running at once: a crowd asking
/// for the whole log leaves the rest of the pool, and the CPU, to everybody else (issue 11).
pub const MAX_BULK_READS: usize = 2;

pub struct Readers {
    database: PathBuf,
    idle: Mutex<Vec<Connection>>,
    slots: Semaphore,
    /// Bulk reads, [`MAX_BULK_READS`] at once, each also under `slots`.
    bulk: Semaphore,
}

impl Readers {
    pub fn new(database: PathBuf) -> Arc<Readers> {
        Arc::new(Readers {
            database,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(MAX_READERS),
            bulk: Semaphore::new(MAX_BULK_READS),
        })
    }

    /// Runs a query on a blocking thread with a read-only connection.
    pub async fn read<T, F>(self: &Arc<Self>, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| StoreError::Corrupt("the reader pool is closed".into()))?;
        let readers = Arc::clone(self);
        tokio::task::spawn_blocking(move || readers.with_connection(query))
            .await
            .map_err(|e| StoreError::Corrupt(format!("a query panicked: {e}")))?
    }

    /// Like [`read`](Self::read), for a bulk read: at most [`MAX_BULK_READS`] run at once.
    pub async fn read_bulk<T, F>(self: &Arc<Self>, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let _bulk =
            self.bulk.acquire().await.map_err(|_| StoreError::Corrupt("the reader pool is closed".into()))?;
        self.read(query).await
    }

    /// Runs a query on the calling thread (which may block), with a connection of the pool.
    fn with_connection<T>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => store::open_reader(&self.database)?,
        };
        let result = query(&conn);
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(conn);
        result
    }
}
