//! Reads for queries, on blocking threads, so that reads never wait for the writer.
//!
//! At most [`MAX_READERS`] reads run at once (each holds a connection of the store's read pool,
//! with its own page cache, so memory stays flat under any load); reads beyond the bound wait
//! their turn. Bulk reads (pieces of `events` pages and follows) are fewer still.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::store::{ReadSource, Reads, StoreError};

/// The most reads running at once (and so the most read connections open).
pub const MAX_READERS: usize = 16;

/// The most bulk reads (pieces of `events` pages and follows) running at once: a crowd asking
/// for the whole log leaves the rest of the pool, and the CPU, to everybody else (issue 11).
pub const MAX_BULK_READS: usize = 2;

pub struct Readers {
    source: Arc<dyn ReadSource>,
    slots: Semaphore,
    /// Bulk reads, [`MAX_BULK_READS`] at once, each also under `slots`.
    bulk: Semaphore,
}

impl Readers {
    pub fn new(source: Box<dyn ReadSource>) -> Arc<Readers> {
        Arc::new(Readers {
            source: Arc::from(source),
            slots: Semaphore::new(MAX_READERS),
            bulk: Semaphore::new(MAX_BULK_READS),
        })
    }

    /// Runs a query on a blocking thread with a read snapshot.
    pub async fn read<T, F>(&self, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Reads) -> Result<T, StoreError> + Send + 'static,
    {
        let _slot = self.slots.acquire().await.map_err(|_| StoreError::Closed)?;
        let source = Arc::clone(&self.source);
        tokio::task::spawn_blocking(move || {
            let mut query = Some(query);
            let mut result = None;
            source.with_reads(&mut |reads| result = query.take().map(|query| query(reads)))?;
            result.unwrap_or(Err(StoreError::Closed))
        })
        .await
        .map_err(|e| StoreError::Failed(format!("a query panicked: {e}"), None))?
    }

    /// Like [`read`](Self::read), for a bulk read: at most [`MAX_BULK_READS`] run at once.
    pub async fn read_bulk<T, F>(&self, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Reads) -> Result<T, StoreError> + Send + 'static,
    {
        let _bulk = self.bulk.acquire().await.map_err(|_| StoreError::Closed)?;
        self.read(query).await
    }

    /// Refuses every further read and lets go of the store's read connections, so that the
    /// writer's connection is the last to close (SQLite then checkpoints and removes its WAL).
    pub fn close(&self) {
        self.slots.close();
        self.bulk.close();
        self.source.close();
    }
}
