//! Read-only connections for queries, so that reads never wait for the writer (WAL).
//!
//! A small pool: r2d2_sqlite and deadpool-sqlite lag behind the rusqlite release we use, and
//! all a pool needs here is "take an idle connection or open one, give it back afterwards".

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use crate::store::{self, StoreError};

/// Idle connections kept open; more are opened under load and closed afterwards.
const MAX_IDLE: usize = 8;

pub struct Readers {
    database: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    pub fn new(database: PathBuf) -> Arc<Readers> {
        Arc::new(Readers { database, idle: Mutex::new(Vec::new()) })
    }

    /// Runs a query on a blocking thread with a read-only connection.
    pub async fn read<T, F>(self: &Arc<Self>, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = Arc::clone(self);
        tokio::task::spawn_blocking(move || readers.with_connection(query))
            .await
            .map_err(|e| StoreError::Corrupt(format!("a query panicked: {e}")))?
    }

    /// Runs a query on the calling thread (which may block).
    pub fn with_connection<T>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => store::open_reader(&self.database)?,
        };
        let result = query(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
        result
    }
}
