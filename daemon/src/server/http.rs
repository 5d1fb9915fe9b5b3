//! The daemon's one HTTP server, off unless asked: `GET /metrics` (`--metrics-listen`, issue 16)
//! and the original service's order endpoints (`--http`, issue 17, `super::api`), on one
//! listener when both name the same address, on two otherwise.
//!
//! hyper serves each connection; the accept loop is ours, as the socket's is: a bounded number of
//! connections (one more is closed at once), a time limit on reading a request's head (a client
//! that trickles its headers is dropped) and on answering, and a graceful stop on the daemon's
//! shutdown token. axum routes. Nothing here is privileged: the metrics carry no order data.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Backoff;
use super::context::Serving;
use crate::metrics::Refusal;

/// The most HTTP connections open at once: scrapers are few.
const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send a request's head, the first and each later one.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an answer may take (a scrape waits for a read slot at most this long).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the requests in flight may take to finish once the daemon stops.
const DRAIN: Duration = Duration::from_secs(2);

/// Binds an HTTP listener for `what`: before the store is opened, so that an address in use or
/// not allowed is the start's error, at once.
pub fn bind(address: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    let cannot = || format!("cannot serve {what} on {address}");
    let listener = std::net::TcpListener::bind(address).with_context(cannot)?;
    listener.set_nonblocking(true).with_context(cannot)?;
    TcpListener::from_std(listener).with_context(cannot)
}

/// The URL of `path` on `listener`: for every interface (`0.0.0.0`, `[::]`), the loopback one.
pub fn url(listener: &TcpListener, path: &str) -> Option<String> {
    let mut address = listener.local_addr().ok()?;
    if address.ip().is_unspecified() {
        address.set_ip(match address.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Some(format!("http://{address}{path}"))
}

/// The metrics' route.
pub fn metrics_router(serving: Arc<Serving>) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(serving)
}

async fn metrics(State(serving): State<Arc<Serving>>) -> Response {
    match tokio::time::timeout(ANSWER_TIMEOUT, super::metrics::exposition(&serving)).await {
        Ok(text) => ([(header::CONTENT_TYPE, text.content_type)], text.text).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "the daemon did not answer in time; try again\n")
            .into_response(),
    }
}

/// Serves `router` on `listener` until the daemon stops, then lets the requests in flight finish
/// (for [`DRAIN`] at most).
pub async fn serve(listener: TcpListener, router: Router, serving: Arc<Serving>) {
    let shutdown = serving.shutdown.clone();
    let metrics = Arc::clone(&serving.metrics);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let connections = TaskTracker::new();
    let mut backoff = Backoff::default();
    while let Some((stream, peer)) = backoff.accept(&shutdown, "HTTP", || listener.accept()).await {
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            // Counted, not logged as a warning: anyone who reaches the port could fill the log.
            tracing::debug!(%peer, limit = MAX_CONNECTIONS, "closed an HTTP connection: too many open");
            metrics.refused(Refusal::HttpLimit);
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _permit = permit;
            serve_connection(stream, peer, service, &shutdown).await;
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    service: TowerToHyperService<Router>,
    shutdown: &CancellationToken,
) {
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            match tokio::time::timeout(DRAIN, connection.as_mut()).await {
                Ok(served) => served,
                Err(_) => return,
            }
        }
    };
    if let Err(error) = served {
        tracing::debug!(%peer, %error, "HTTP connection ended with an error");
    }
}
