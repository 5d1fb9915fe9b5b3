//! The order commands: `create`, `show`, `list`, `history`, `cancel`.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use orders_shared::OrderId;
use orders_shared::protocol::{
    CancelRequest, CountRequest, CreateRequest, EventView, HistoryRequest, ListRequest, OrderCount,
    OrderPage, OrderView, Request, ShowRequest,
};
use orders_shared::short_id::OrderRef;

use super::Context;
use crate::args::{CreateArgs, ListArgs, ViewedOrderArgs};
use crate::client::Client;
use crate::failure::{Exit, Failure};
use crate::ids;
use crate::output::{self, ShortIds};

/// `orders create`: the new order's id (or the order with `--json`); with `--wait`, then waits
/// until it has settled.
pub(super) async fn create(ctx: &mut Context, args: CreateArgs) -> Result<(), Failure> {
    let CreateArgs { user, total, wait, timeout, idempotency_key, quiet } = args;
    let request = Request::Create(CreateRequest { user, total, idempotency_key });
    let mut client = ctx.connect().await?;
    let order: OrderView = client.call(&request).await?;
    if !wait {
        return ctx.emit(&order, |out| writeln!(out, "{}", order.id));
    }
    wait_until_settled(ctx, &mut client, order, timeout, quiet).await
}

/// `create --wait`: the text output has the id before the wait, so that it is known even if the
/// wait runs out of time; the JSON output is the settled order, or the new one if the wait fails.
async fn wait_until_settled(
    ctx: &mut Context,
    client: &mut Client,
    order: OrderView,
    timeout: Duration,
    quiet: bool,
) -> Result<(), Failure> {
    if !ctx.json {
        writeln!(ctx.out, "{}", order.id)?;
        ctx.out.flush()?;
    }
    let show = !quiet && std::io::stderr().is_terminal();
    match super::settle::until_settled(client, order.id, timeout, show).await {
        // For people the id is printed already: only a cancellation has more to say, on stderr,
        // and exit code 8, so that `create --wait && ship` ships nothing cancelled.
        Ok(settled) => {
            ctx.emit(&settled, |_| Ok(()))?;
            match settled.cancel_reason {
                None => Ok(()),
                Some(_) if quiet || ctx.json => Err(Failure::silent(Exit::Cancelled)),
                Some(reason) => Err(Failure::new(
                    Exit::Cancelled,
                    format!("order {} was cancelled: {reason}", settled.id),
                )),
            }
        }
        Err(failure) => {
            if ctx.json {
                output::json(&mut ctx.out, &order)?;
            }
            Err(failure)
        }
    }
}

/// `orders show`.
pub(super) async fn show(ctx: &mut Context, id: OrderRef) -> Result<(), Failure> {
    let mut client = ctx.connect().await?;
    let id = ids::resolve(&mut client, id).await?;
    let order: OrderView = client.call(&Request::Show(ShowRequest { id })).await?;
    let look = ctx.look(false);
    ctx.emit(&order, |out| output::order(out, &order, &look))
}

/// `orders cancel`.
pub(super) async fn cancel(ctx: &mut Context, id: OrderRef) -> Result<(), Failure> {
    let mut client = ctx.connect().await?;
    let id = ids::resolve(&mut client, id).await?;
    let order: OrderView = client.call(&Request::Cancel(CancelRequest { id })).await?;
    ctx.emit(&order, |out| writeln!(out, "cancelled {}", order.id))
}

/// `orders history`.
pub(super) async fn history(ctx: &mut Context, args: ViewedOrderArgs) -> Result<(), Failure> {
    let mut client = ctx.connect().await?;
    let id = ids::resolve(&mut client, args.order.id).await?;
    let events: Vec<EventView> = client.call(&Request::History(HistoryRequest { id })).await?;
    let look = ctx.look(args.wide);
    ctx.emit(&events, |out| output::events(out, &events, &look))
}

/// `orders list`: a table, the ids alone with `--quiet`, or a word on stderr if there are none;
/// with `--count`, how many there are.
pub(super) async fn list(ctx: &mut Context, mut args: ListArgs) -> Result<(), Failure> {
    let (quiet, limit, wide) = (args.quiet, args.limit, args.wide);
    let mut client = ctx.connect().await?;
    if args.count {
        let request = CountRequest { user: args.user, status: args.status, since: args.since };
        let counted: OrderCount = client.call(&Request::Count(request)).await?;
        return ctx.emit(&counted, |out| writeln!(out, "{}", counted.count));
    }
    let before = match args.before.take() {
        Some(before) => Some(ids::resolve(&mut client, before).await?),
        None => None,
    };
    let (orders, more) = read_pages(&mut client, args, before).await?;
    if more && let Some(last) = orders.last() {
        // Never a silent cut (issue 18): on stderr, so that stdout stays the rows alone.
        eprintln!(
            "note: showing the newest {limit}; more with --limit N or --all, or the next page with --before {}",
            last.id
        );
    }
    let mut short = ShortIds::new();
    if !quiet && !ctx.json && !wide {
        // Short ids are for the eye: without them the table shows whole ids.
        if ids::learn(&mut client, &mut short, orders.iter().map(|order| order.id)).await.is_err() {
            short.clear();
        }
    }
    let look = ctx.look(wide);
    ctx.emit(&orders, |out| {
        if quiet {
            for order in &orders {
                writeln!(out, "{}", order.id)?;
            }
        } else if orders.is_empty() {
            eprintln!("no orders");
        } else {
            output::orders(out, &orders, &short, &look)?;
        }
        Ok(())
    })
}

/// Reads as many pages as asked for; `true` beside them when more orders follow.
async fn read_pages(
    client: &mut Client,
    args: ListArgs,
    before: Option<OrderId>,
) -> Result<(Vec<OrderView>, bool), Failure> {
    let mut orders = Vec::new();
    let mut request = ListRequest {
        user: args.user,
        status: args.status,
        since: args.since,
        limit: Some(if args.all { ListRequest::MAX_LIMIT } else { args.limit.min(ListRequest::MAX_LIMIT) }),
        before,
    };
    loop {
        let page: OrderPage = client.call(&Request::List(request.clone())).await?;
        let last = page.orders.last().map(|order| order.id);
        orders.extend(page.orders);
        let wanted = args.all || (orders.len() as u64) < u64::from(args.limit);
        match last {
            Some(last) if page.more && wanted => {
                request.before = Some(last);
                if !args.all {
                    let left = u64::from(args.limit) - orders.len() as u64;
                    request.limit = Some(left.min(u64::from(ListRequest::MAX_LIMIT)) as u32);
                }
            }
            _ => return Ok((orders, page.more && last.is_some())),
        }
    }
}
