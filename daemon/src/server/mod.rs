//! The socket server: accepts connections, reads request lines and hands them to the router.
//!
//! Connections are bounded (a semaphore), each one checked for its peer's uid, read with an idle
//! timeout and a maximum line length. An error on one connection is logged and ends that
//! connection only. Every handler watches the one shutdown token; a request already being
//! handled is finished before the daemon stops.
//!
//! - [`context`]: what requests are served with, starting and ready;
//! - `router`: the one router, each request to the handler named after it;
//! - `queries`: the read requests and their views; `streams`: the requests that answer in
//!   many lines (`watch`, `replay`, waits); `events`: `events` pages and follows.

pub mod api;
mod context;
mod events;
mod export;
pub mod http;
pub mod metrics;
mod queries;
mod router;
mod streams;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use interprocess::local_socket::tokio::Listener;
use interprocess::local_socket::tokio::prelude::*;
use orders_shared::protocol::{Addressed, ErrorBody, ErrorCode, MAX_REQUEST_BYTES, Reply, Request};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::codec::AnyDelimiterCodecError;
use tokio_util::task::TaskTracker;

pub use self::context::{Context, Limits, Reach, Serving};
use self::router::Handled;
use crate::connection::{Lines, MAX_LINGERING, REPLY_BUDGET};
use crate::metrics::Refusal;
use crate::paths::ServedStore;

/// Accepts connections until shutdown, then waits for every handler to finish. It serves from
/// the first instant, while the daemon starts (see [`Serving`]).
pub async fn serve(listener: Listener, serving: Arc<Serving>, limits: Limits) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let budget = Arc::new(Semaphore::new(REPLY_BUDGET));
    let lingering = Arc::new(Semaphore::new(MAX_LINGERING));
    let handlers = TaskTracker::new();
    let own_uid = rustix::process::geteuid().as_raw();
    let mut backoff = Backoff::default();
    while let Some(stream) = backoff.accept(&serving.shutdown, "socket", || listener.accept()).await {
        let permit = Arc::clone(&slots).try_acquire_owned().ok();
        let serving = Arc::clone(&serving);
        let limits = limits.clone();
        let lines = Lines::new(stream, serving.shutdown.clone(), limits.drain_timeout, Arc::clone(&budget));
        let lingering = Arc::clone(&lingering);
        handlers.spawn(async move {
            let refused = Refused { own_uid, lingering };
            if let Err(error) = handle_connection(lines, permit, refused, &serving, &limits).await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    handlers.close();
    handlers.wait().await;
}

/// How an accept loop waits after a failed accept (out of file descriptors, typically): a little,
/// then longer, rather than spin.
pub(super) struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff(Self::FIRST)
    }
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const LONGEST: Duration = Duration::from_secs(1);

    /// The next connection `accept` takes; `None` once `shutdown` is cancelled.
    pub(super) async fn accept<T, F: Future<Output = io::Result<T>>>(
        &mut self,
        shutdown: &tokio_util::sync::CancellationToken,
        what: &str,
        mut accept: impl FnMut() -> F,
    ) -> Option<T> {
        loop {
            let accepted = tokio::select! {
                // A stopping daemon takes no connection that came at the same moment.
                biased;
                () = shutdown.cancelled() => return None,
                accepted = accept() => accepted,
            };
            match accepted {
                Ok(accepted) => {
                    self.0 = Self::FIRST;
                    return Some(accepted);
                }
                Err(error) => {
                    tracing::warn!(%error, "{what}: accept failed");
                    tokio::time::sleep(self.0).await;
                    self.0 = (self.0 * 2).min(Self::LONGEST);
                }
            }
        }
    }
}

/// What a refusal needs: whom the daemon serves, and room to linger.
struct Refused {
    own_uid: u32,
    /// Refused connections lingering to drain their request ([`MAX_LINGERING`] permits).
    lingering: Arc<Semaphore>,
}

impl Refused {
    async fn tell(self, lines: Lines, error: ErrorBody) -> io::Result<()> {
        lines.refuse(Reply::error(error), self.lingering.try_acquire_owned().ok()).await
    }
}

async fn handle_connection(
    mut lines: Lines,
    permit: Option<OwnedSemaphorePermit>,
    refused: Refused,
    serving: &Serving,
    limits: &Limits,
) -> io::Result<()> {
    let own_uid = refused.own_uid;
    let peer_uid = lines.peer_uid();
    if peer_uid != Some(own_uid) {
        tracing::warn!(?peer_uid, "refused a connection from another user");
        serving.metrics.refused(Refusal::OtherUser);
        let message = format!("this daemon serves uid {own_uid} only");
        return refused.tell(lines, ErrorBody::new(ErrorCode::PermissionDenied, message)).await;
    }
    let Some(_permit) = permit else {
        tracing::warn!(limit = limits.max_connections, "refused a connection: too many open");
        serving.metrics.refused(Refusal::Limit);
        let message =
            format!("the daemon is at its limit of {} connections; retry shortly", limits.max_connections);
        return refused.tell(lines, ErrorBody::new(ErrorCode::Busy, message)).await;
    };
    let _open = serving.metrics.connection();
    // After a decoding error, the framed stream yields one `None` before it reads on.
    let mut after_error = false;
    loop {
        let next = tokio::select! {
            // A stopping daemon reads no request that came at the same moment: it would answer
            // `status` as though it were not stopping.
            biased;
            () = serving.shutdown.cancelled() => return Ok(()),
            next = tokio::time::timeout(limits.idle_timeout, lines.next()) => next,
        };
        let line = match next {
            Err(_) => {
                let message = format!("no request for {:?}; closing the connection", limits.idle_timeout);
                return lines.reply(Reply::error(ErrorBody::new(ErrorCode::Busy, message))).await;
            }
            Ok(None) if after_error => {
                after_error = false;
                continue;
            }
            Ok(None) => return Ok(()),
            Ok(Some(Err(AnyDelimiterCodecError::MaxChunkLengthExceeded))) => {
                // The codec skips the rest of the line; the connection carries on after it.
                let message = format!("the request is longer than {MAX_REQUEST_BYTES} bytes");
                lines.reply(Reply::error(ErrorBody::new(ErrorCode::TooLarge, message))).await?;
                after_error = true;
                continue;
            }
            Ok(Some(Err(AnyDelimiterCodecError::Io(error)))) => return Err(error),
            Ok(Some(Ok(line))) => line,
        };
        if line.trim_ascii().is_empty() {
            continue;
        }
        let parsed = parse(serving.store(), &line);
        let Some(context) = serving.context() else {
            lines.reply(while_starting(serving, parsed)).await?;
            continue;
        };
        match parsed {
            Ok(request) => {
                if router::handle(context, &mut lines, request).await? == Handled::Closed {
                    return Ok(());
                }
            }
            Err(error) => lines.reply(Reply::error(error)).await?,
        }
    }
}

/// Reads a request line meant for the store this daemon serves: one naming another store is
/// answered `wrong_store`, never served from the wrong data (issue 12), starting or ready.
fn parse(served: &ServedStore, line: &[u8]) -> Result<Request, ErrorBody> {
    let Addressed { store, request } = Request::parse(line)?;
    served.check(&store)?;
    Ok(request)
}

/// A starting daemon's router: it tells how far it has come and can be stopped; everything else
/// waits for it to be ready (issue 12).
fn while_starting(serving: &Serving, parsed: Result<Request, ErrorBody>) -> Reply {
    match parsed {
        Ok(Request::Status(_)) => Reply::data(serving.starting_status()),
        Ok(Request::Metrics(_)) => Reply::data(metrics::text(&serving.metrics, metrics::starting(serving))),
        Ok(Request::Shutdown(_)) => {
            tracing::info!("shutdown requested by a client during the start-up");
            serving.shutdown.cancel();
            Reply::data(serving.starting_status())
        }
        Ok(_) => Reply::error(serving.starting_error()),
        Err(error) => Reply::error(error),
    }
}
