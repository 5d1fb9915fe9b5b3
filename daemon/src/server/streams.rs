//! The requests that answer in many lines or after a while: `watch` (an order's events as they
//! come), `replay` (its progress), waits for an order to settle, and the wait for the next commit
//! that followers share.

use std::io;
use std::time::Duration;

use orders_shared::OrderId;
use orders_shared::protocol::{ErrorBody, ErrorCode, OrderView, Reply, WaitRequest};
use tokio::sync::watch;

use super::context::Context;
use super::queries::{event_view, find_order, read_error_body};
use crate::connection::Lines;
use crate::replay::ReplayJob;
use crate::store::Position;

/// Waits for the next commit. `false` when the client left; an error reply when the daemon stops.
pub(super) async fn wait_for_news(
    context: &Context,
    lines: &mut Lines,
    head: &mut watch::Receiver<Position>,
) -> io::Result<bool> {
    loop {
        tokio::select! {
            changed = head.changed() => return Ok(changed.is_ok()),
            () = context.shutdown.cancelled() => {
                lines.reply(Reply::error(ErrorBody::new(ErrorCode::Unavailable, "the daemon is shutting down"))).await?;
                return Ok(false);
            }
            incoming = lines.next() => match incoming {
                None | Some(Err(_)) => return Ok(false),
                // A streaming connection takes no more requests; its input is ignored.
                Some(Ok(_)) => {}
            },
        }
    }
}

/// `watch`: an order's events so far, then each new one, until it is delivered or cancelled;
/// the last line is the settled order.
pub(super) async fn watch_order(context: &Context, lines: &mut Lines, id: OrderId) -> io::Result<()> {
    let mut head = context.head.clone();
    let mut after = Position::START;
    loop {
        head.borrow_and_update();
        let found = context
            .readers
            // One snapshot: three streams and the row, as of the same commit.
            .read(move |reads| reads.watched(id))
            .await;
        let (events, order) = match found {
            Ok(found) => found,
            Err(error) => return lines.reply(Reply::error(read_error_body(&error))).await,
        };
        let Some(order) = order else {
            return lines
                .reply(Reply::error(ErrorBody::new(ErrorCode::NotFound, format!("no order {id}"))))
                .await;
        };
        let seen = after;
        for event in events.iter().filter(|event| event.position > seen) {
            after = event.position;
            lines.reply(Reply::event(event_view(event))).await?;
        }
        if order.status.is_settled() {
            return lines.reply(Reply::data(order)).await;
        }
        if !wait_for_news(context, lines, &mut head).await? {
            return Ok(());
        }
    }
}

/// `replay`: starts the rebuild on the writer, relays its progress, then its report. A client
/// that goes away abandons it (the writer notices the dropped report channel).
pub(super) async fn replay(context: &Context, lines: &mut Lines, check: bool) -> io::Result<()> {
    let (progress_tx, mut progress) = tokio::sync::mpsc::unbounded_channel();
    let (done_tx, mut done) = tokio::sync::oneshot::channel();
    let job = ReplayJob { check, progress: progress_tx, done: done_tx };
    if let Err(error) = context.writer.replay(job).await {
        return lines.reply(Reply::error(error)).await;
    }
    tracing::info!(check, "replay started");
    loop {
        tokio::select! {
            biased;
            Some(step) = progress.recv() => lines.reply(Reply::progress(step)).await?,
            result = &mut done => {
                let reply = match result {
                    Ok(Ok(report)) => Reply::data(report),
                    Ok(Err(error)) => Reply::error(error),
                    Err(_) => Reply::error(ErrorBody::new(ErrorCode::Unavailable, "the daemon is shutting down")),
                };
                return lines.reply(reply).await;
            }
        }
    }
}

/// Answers once the order is delivered or cancelled, or with `timeout`.
pub(super) async fn wait_until_settled(
    context: &Context,
    request: &WaitRequest,
) -> Result<OrderView, ErrorBody> {
    let timeout = Duration::from_millis(request.timeout_ms.unwrap_or(WaitRequest::DEFAULT_TIMEOUT_MS));
    let deadline = tokio::time::Instant::now() + timeout;
    let id = request.id;
    loop {
        // Subscribe first, then look: a settlement in between cannot be missed.
        let mut subscription = context.settlements.subscribe(id);
        // A step of this order held back for a customer's command goes now (issue 14).
        context.writer.nudge();
        let order = find_order(context, id).await?;
        if order.status.is_settled() {
            return Ok(order);
        }
        tokio::select! {
            () = subscription.settled() => {}
            () = tokio::time::sleep_until(deadline) => {
                // Its status now, not when the wait began (issue 18: "still pending" about an
                // order approved meanwhile).
                let now = find_order(context, id).await?;
                if now.status.is_settled() {
                    return Ok(now);
                }
                return Err(ErrorBody::new(
                    ErrorCode::Timeout,
                    format!("order {id} is still {} after {timeout:?}", now.status),
                ));
            }
            () = context.shutdown.cancelled() => {
                return Err(ErrorBody::new(ErrorCode::Unavailable, "the daemon is shutting down"));
            }
        }
    }
}
