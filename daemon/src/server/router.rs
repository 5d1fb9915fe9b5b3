//! The one router: every request goes to the handler named after it. Those that answer in one
//! line go through [`route`]; the streaming ones write their own lines.

use std::io;

use orders_shared::protocol::{ErrorBody, Reply, Request};
use serde_json::value::RawValue;

use super::context::Context;
use super::events::{events_page, follow_events};
use super::export::export;
use super::queries::{
    backup, check_database, count_orders, find_order, list_orders, order_history, resolve, short_ids, status,
    to_json,
};
use super::streams::{replay, wait_until_settled, watch_order};
use crate::command::WriteCommand;
use crate::connection::Lines;

/// Whether the connection goes on after a request.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Handled {
    Open,
    /// The client went away while its request waited.
    Closed,
}

/// Serves one request of a ready daemon on its connection.
pub(super) async fn handle(context: &Context, lines: &mut Lines, request: Request) -> io::Result<Handled> {
    let reply = match request {
        // Streaming requests write their own lines.
        Request::Events(request) if request.follow => {
            follow_events(context, lines, request).await?;
            return Ok(Handled::Open);
        }
        // A page is written a piece at a time, as it is read.
        Request::Events(request) => {
            events_page(context, lines, request).await?;
            return Ok(Handled::Open);
        }
        Request::Export(request) => {
            export(context, lines, request).await?;
            return Ok(Handled::Open);
        }
        Request::Watch(request) => {
            watch_order(context, lines, request.id).await?;
            return Ok(Handled::Open);
        }
        Request::Replay(request) => {
            replay(context, lines, request.check).await?;
            return Ok(Handled::Open);
        }
        // A wait may last days: a client that hangs up meanwhile frees its slot at once.
        Request::Wait(wait) => tokio::select! {
            reply = route(context, Request::Wait(wait)) => reply,
            () = lines.until_gone() => return Ok(Handled::Closed),
        },
        request => {
            tracing::trace!(cmd = request.name(), "request");
            route(context, request).await
        }
    };
    lines.reply(reply).await?;
    Ok(Handled::Open)
}

/// The one router: every request goes to the handler named after it.
pub(super) async fn route(context: &Context, request: Request) -> Reply {
    let result = match request {
        Request::Create(create) => write(context, WriteCommand::Create(create)).await,
        Request::Cancel(cancel) => write(context, WriteCommand::Cancel(cancel.id)).await,
        Request::Show(show) => find_order(context, show.id).await.map(to_json),
        Request::List(list) => list_orders(context, list).await,
        Request::Wait(wait) => wait_until_settled(context, &wait).await.map(to_json),
        Request::History(history) => order_history(context, history.id).await.map(to_json),
        Request::Resolve(request) => resolve(context, request.id).await.map(to_json),
        Request::ShortIds(request) => short_ids(context, request.ids).await.map(to_json),
        Request::Count(request) => count_orders(context, request.into()).await.map(to_json),
        Request::Events(_) | Request::Export(_) | Request::Watch(_) | Request::Replay(_) => {
            unreachable!("streaming requests are handled by the connection")
        }
        Request::Check(_) => check_database(context).await,
        Request::Backup(request) => backup(context, request.path).await.map(to_json),
        Request::Status(_) => status(context).await.map(to_json),
        Request::Metrics(_) => Ok(to_json(super::metrics::metrics(context).await)),
        Request::Shutdown(_) => {
            let status = super::queries::stopping_status(context).await;
            tracing::info!("shutdown requested by a client");
            context.shutdown.cancel();
            Ok(to_json(status))
        }
    };
    match result {
        Ok(data) => Reply::Data(data),
        Err(error) => Reply::error(error),
    }
}

async fn write(context: &Context, command: WriteCommand) -> Result<Box<RawValue>, ErrorBody> {
    context.writer.execute(command).await.map(to_json)
}
