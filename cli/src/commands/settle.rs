//! `create --wait`: waiting until a new order settles (delivered or cancelled), across daemon
//! restarts (the wait is asked again of the daemon that comes back, within the same `--timeout`),
//! and on a terminal its status shown on stderr as it changes (issue 18):
//! `pending → approved → delivered`. With stderr not a terminal, or `--quiet`, nothing is shown
//! and the daemon's `wait` does the waiting; to show the steps, the order is watched instead (the
//! stream `orders watch` reads), with the deadline kept here.

use std::io::{self, Write};
use std::time::Duration;

use orders_shared::protocol::{EventView, OrderView, Reply, Request, WaitRequest, WatchRequest};
use orders_shared::{OrderId, OrderStatus};
use tokio::time::Instant;

use crate::client::{Client, no_answer, reply_timeout};
use crate::failure::{Exit, Failure};
use crate::reconnect::{self, Halt, Reconnect};

/// Waits until the order settles or `timeout` runs out; the settled order. `show` puts its
/// status on stderr as it changes.
pub(super) async fn until_settled(
    client: &mut Client,
    id: OrderId,
    timeout: Duration,
    show: bool,
) -> Result<OrderView, Failure> {
    let deadline = Instant::now() + timeout;
    let mut reconnect = Reconnect::begin(client).await?;
    let mut shown = Statuses::new(show);
    // The whole timeout at first (the daemon's message names it), what is left of it after a
    // restart.
    let mut left = timeout;
    loop {
        let attempt = if show {
            watch(client, id, deadline, timeout, &mut shown).await
        } else {
            wait(client, id, left).await
        };
        let loss = match attempt {
            Ok(order) => {
                shown.show(order.status);
                shown.end();
                return Ok(order);
            }
            Err(Halt::Failed(failure)) => {
                shown.end();
                return Err(failure);
            }
            Err(Halt::Lost(loss)) => loss,
        };
        shown.end();
        let back = reconnect.rejoin(loss, "waiting for the order again");
        *client = tokio::time::timeout_at(deadline, back).await.map_err(|_| {
            Failure::new(
                Exit::Unavailable,
                format!(
                    "the daemon went away while waiting for order {id} and was not back within {timeout:?}"
                ),
            )
            .with_hint(format!("`orders show {id}` tells where it is once a daemon runs"))
        })??;
        left = deadline.saturating_duration_since(Instant::now());
    }
}

/// The daemon's `wait`, for `left`.
async fn wait(client: &mut Client, id: OrderId, left: Duration) -> Result<OrderView, Halt> {
    let timeout_ms = crate::args::whole_millis_up(left).max(1);
    let request = Request::Wait(WaitRequest { id, timeout_ms: Some(timeout_ms) });
    // The daemon answers by its own deadline.
    let patience = Duration::from_millis(timeout_ms) + reply_timeout();
    let reply = tokio::time::timeout(patience, async {
        reconnect::open(client, &request).await?;
        reconnect::next_line(client).await
    })
    .await
    .map_err(|_| Halt::Failed(no_answer(client.paths(), &request, patience)))??;
    Ok(client.data(reply)?)
}

/// The order's events until it settles, each status shown as it comes; a timeout like the
/// daemon's own when the deadline passes first.
async fn watch(
    client: &mut Client,
    id: OrderId,
    deadline: Instant,
    timeout: Duration,
    shown: &mut Statuses,
) -> Result<OrderView, Halt> {
    let watched = async {
        reconnect::open(client, &Request::Watch(WatchRequest { id })).await?;
        loop {
            match reconnect::next_line(client).await? {
                Reply::Event(event) => {
                    if let Some(status) = status_after(&event) {
                        shown.show(status);
                    }
                }
                reply => return Ok::<_, Halt>(client.data::<OrderView>(reply)?),
            }
        }
    };
    match tokio::time::timeout_at(deadline, watched).await {
        Ok(settled) => settled,
        Err(_) => {
            let now = shown.last().map_or_else(|| "unsettled".to_owned(), |status| status.to_string());
            Err(Halt::Failed(Failure::new(
                Exit::Timeout,
                format!("order {id} is still {now} after {timeout:?}"),
            )))
        }
    }
}

/// The status an order event moves the order to; `None` for the payment's and delivery's events.
fn status_after(event: &EventView) -> Option<OrderStatus> {
    match event.event_type.as_str() {
        "OrderPlaced" => Some(OrderStatus::Pending),
        "OrderApproved" => Some(OrderStatus::Approved),
        "OrderDelivered" => Some(OrderStatus::Delivered),
        "OrderCancelled" => Some(OrderStatus::Cancelled),
        _ => None,
    }
}

/// The statuses shown on stderr, on one line that grows as the order moves.
struct Statuses {
    /// Whether they are shown at all (stderr is a terminal, no `--quiet`).
    enabled: bool,
    /// Each status once, in the order seen: an order never comes back to one.
    seen: Vec<OrderStatus>,
    /// The line is on the screen and not ended yet: a note (the daemon went away) ends it first,
    /// and the next status starts a new one with the statuses so far.
    open: bool,
}

impl Statuses {
    fn new(enabled: bool) -> Statuses {
        Statuses { enabled, seen: Vec::new(), open: false }
    }

    fn last(&self) -> Option<OrderStatus> {
        self.seen.last().copied()
    }

    /// Shows `status`, unless it is on the line already.
    fn show(&mut self, status: OrderStatus) {
        if !self.enabled {
            return;
        }
        let news = !self.seen.contains(&status);
        if news {
            self.seen.push(status);
        }
        let text = if !self.open {
            self.seen.iter().map(ToString::to_string).collect::<Vec<_>>().join(" → ")
        } else if news {
            format!(" → {status}")
        } else {
            return;
        };
        let mut stderr = io::stderr().lock();
        // stderr gone: nobody is left to show it to.
        let _ = stderr.write_all(text.as_bytes()).and_then(|()| stderr.flush());
        self.open = true;
    }

    /// Ends the line, if one is open.
    fn end(&mut self) {
        if self.open {
            eprintln!();
            self.open = false;
        }
    }
}
