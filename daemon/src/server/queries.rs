//! The read requests — `show`, `list`, `history`, `resolve`, `short_ids`, `status`, `check`, `backup` — and the views they answer
//! with. Each runs on a read snapshot of the store ([`crate::readers`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use orders_shared::OrderId;
use orders_shared::protocol::{
    BackupReport, DaemonState, DaemonStatus, ErrorBody, ErrorCode, EventView, ListRequest, OrderCount,
    OrderView, PROTOCOL_VERSION, ResolveRequest, Resolved, ShortIdsRequest,
};
use orders_shared::short_id::{self, OrderRef};
use serde_json::value::RawValue;

use super::context::Context;
use crate::command::storage_error_body;
use crate::store::{Position, RecordedEvent, StoreError};

/// A read that failed: classified like a storage failure, told as what it is.
pub(super) fn read_error_body(error: &StoreError) -> ErrorBody {
    ErrorBody { message: format!("cannot read the database: {error}"), ..storage_error_body(error) }
}

pub(super) fn to_json(data: impl serde::Serialize) -> Box<RawValue> {
    orders_shared::protocol::raw(&data)
}

/// `list`: serialised on the reader's thread, where the rows are dropped; only their JSON comes back.
pub(super) async fn list_orders(context: &Context, request: ListRequest) -> Result<Box<RawValue>, ErrorBody> {
    context
        .readers
        .read(move |reads| reads.list(&request).map(to_json))
        .await
        .map_err(|error| read_error_body(&error))
}

/// `count`: how many orders the filters match; a bulk read, since it reads every matching row.
pub(super) async fn count_orders(context: &Context, request: ListRequest) -> Result<OrderCount, ErrorBody> {
    let count = context.readers.read_bulk(move |reads| reads.count_orders(&request)).await;
    count.map(|count| OrderCount { count }).map_err(|error| read_error_body(&error))
}

/// `check`: a database too damaged even to be opened for it is a problem of the data, reported
/// as such (issue 12).
pub(super) async fn check_database(context: &Context) -> Result<Box<RawValue>, ErrorBody> {
    let started = std::time::Instant::now();
    match context.readers.read(crate::check::check).await {
        Ok(report) => Ok(to_json(report)),
        Err(error) if error.is_damage() => Ok(to_json(crate::check::damaged(&error.to_string(), started))),
        Err(error) => Err(read_error_body(&error)),
    }
}

/// `backup`: a copy of the store on a read snapshot, while writes go on (`crate::backup`).
pub(super) async fn backup(context: &Context, path: String) -> Result<BackupReport, ErrorBody> {
    let (paths, log_file) = (context.paths.clone(), context.log_file.clone());
    // A bulk read: a crowd of backups leaves the rest of the read slots to everybody else.
    let report = context
        .readers
        .read_bulk(move |reads| {
            let protected = crate::backup::Protected { paths: &paths, log_file: &log_file };
            Ok(crate::backup::backup(reads, &protected, std::path::Path::new(&path)))
        })
        .await
        .map_err(|error| read_error_body(&error))?
        .map_err(crate::backup::BackupError::into_body)?;
    tracing::info!(path = %report.path, events = report.events, ms = report.duration_ms, "backup made");
    Ok(report)
}

pub(super) async fn find_order(context: &Context, id: OrderId) -> Result<OrderView, ErrorBody> {
    let found =
        context.readers.read(move |reads| reads.order(id)).await.map_err(|error| read_error_body(&error))?;
    found.ok_or_else(|| ErrorBody::new(ErrorCode::NotFound, format!("no order {id}")))
}

/// `resolve`: the orders a whole id or the end of one names, in id order (issue 18).
pub(super) async fn resolve(context: &Context, id: String) -> Result<Resolved, ErrorBody> {
    let reference =
        OrderRef::parse(&id).map_err(|error| ErrorBody::new(ErrorCode::InvalidRequest, error.to_string()))?;
    let most = ResolveRequest::MAX_CANDIDATES;
    let mut ids = context
        .readers
        .read(move |reads| match reference {
            OrderRef::Id(id) => Ok(reads.order(id)?.map(|order| order.id).into_iter().collect()),
            OrderRef::Suffix(digits) => reads.ids_ending_with(&digits, most + 1),
        })
        .await
        .map_err(|error| read_error_body(&error))?;
    let more = ids.len() > most;
    ids.truncate(most);
    Ok(Resolved { ids, more })
}

/// `short_ids`: each order's short id, as of one snapshot: the shortest end that no other
/// order's id ends with, found among the orders that share its last 8 digits. Each group of
/// those is read once, however many of its orders are asked about, and at most
/// [`MAX_SHARING`](short_id::MAX_SHARING) + 1 rows of it: ids made to share their ends by the
/// thousand (an import can hold them) are shown whole, and cost no more than that to tell.
pub(super) async fn short_ids(context: &Context, ids: Vec<OrderId>) -> Result<Vec<String>, ErrorBody> {
    if ids.len() > ShortIdsRequest::MAX_IDS {
        return Err(ErrorBody::new(
            ErrorCode::InvalidRequest,
            format!("at most {} ids in one short_ids request, not {}", ShortIdsRequest::MAX_IDS, ids.len()),
        ));
    }
    let tail = |id: &OrderId| short_id::digits(*id)[short_id::ID_DIGITS - short_id::MIN_DIGITS..].to_owned();
    let mut by_tail: BTreeMap<String, BTreeSet<OrderId>> = BTreeMap::new();
    for id in &ids {
        by_tail.entry(tail(id)).or_default().insert(*id);
    }
    let short = context
        .readers
        .read(move |reads| {
            let mut short = HashMap::new();
            for (tail, asked) in by_tail {
                let mut group = reads.ids_ending_with(&tail, short_id::MAX_SHARING + 1)?;
                if group.len() > short_id::MAX_SHARING {
                    short.extend(asked.into_iter().map(|id| (id, short_id::digits(id))));
                    continue;
                }
                // An id the store does not hold is told from the group all the same.
                let held: HashSet<OrderId> = group.iter().copied().collect();
                group.extend(asked.into_iter().filter(|id| !held.contains(id)));
                short.extend(group.iter().copied().zip(short_id::shortest_unique(&group)));
            }
            Ok(short)
        })
        .await
        .map_err(|error| read_error_body(&error))?;
    Ok(ids.iter().map(|id| short.get(id).cloned().unwrap_or_else(|| short_id::digits(*id))).collect())
}

/// Every event of an order, from its order, payment and delivery streams, in log order.
pub(super) async fn order_history(context: &Context, id: OrderId) -> Result<Vec<EventView>, ErrorBody> {
    let events = context
        .readers
        .read(move |reads| reads.history(id))
        .await
        .map_err(|error| read_error_body(&error))?;
    if events.is_empty() {
        return Err(ErrorBody::new(ErrorCode::NotFound, format!("no order {id}")));
    }
    Ok(events.iter().map(event_view).collect())
}

pub(super) fn event_view(recorded: &RecordedEvent) -> EventView {
    EventView {
        position: recorded.position.get(),
        cursor: crate::store::cursor(recorded.position),
        event_id: recorded.event_id.to_string(),
        stream: recorded.stream.to_string(),
        version: recorded.version.get(),
        event_type: recorded.event.event_type().to_owned(),
        recorded_at: recorded.recorded_at,
        data: recorded.event.payload_value(),
        correlation_id: recorded.metadata.correlation_id.to_string(),
        causation_id: recorded.metadata.causation_id.to_string(),
    }
}

pub(super) async fn status(context: &Context) -> Result<DaemonStatus, ErrorBody> {
    let stuck = Arc::clone(&context.stuck);
    let (counts, (stuck_steps, stuck)) = context
        .readers
        .read(move |reads| Ok((reads.counts()?, stuck.still_stored(reads)?)))
        .await
        .map_err(|error| read_error_body(&error))?;
    Ok(described(context, counts, stuck_steps, stuck))
}

/// What a stopping daemon says of itself: its status, or when the store cannot be read (a
/// database that went away) the same without what it counts, so that `daemon stop` still learns
/// which daemon it stopped.
pub(super) async fn stopping_status(context: &Context) -> DaemonStatus {
    // A database that does not answer (a frozen server) must not hold the stop up.
    let counted = tokio::time::timeout(STOPPING_COUNTS, status(context)).await;
    match counted {
        Ok(Ok(status)) => status,
        Ok(Err(error)) => {
            tracing::warn!(error = %error.message, "stopping without reading the store's counts");
            described(context, crate::store::Counts::default(), 0, Vec::new())
        }
        Err(_) => {
            tracing::warn!(
                "stopping without the store's counts: the database did not answer within {STOPPING_COUNTS:?}"
            );
            described(context, crate::store::Counts::default(), 0, Vec::new())
        }
    }
}

/// How long a stopping daemon waits for the store's counts for its last status.
const STOPPING_COUNTS: std::time::Duration = std::time::Duration::from_secs(1);

fn described(
    context: &Context,
    counts: crate::store::Counts,
    stuck_steps: u64,
    stuck: Vec<orders_shared::protocol::StuckStep>,
) -> DaemonStatus {
    let mut status = DaemonStatus {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        protocol: PROTOCOL_VERSION,
        started_at: context.started_at,
        socket: context.paths.socket.display().to_string(),
        data_dir: context.paths.data_dir.display().to_string(),
        database: context.paths.database().display().to_string(),
        events: counts.head.since(Position::START),
        orders: counts.orders,
        pending_payments: counts.pending_payments,
        pending_deliveries: counts.pending_deliveries,
        log_file: context.log_file.display().to_string(),
        stuck_steps,
        stuck,
        store_id: Some(context.store_id.to_string()),
        clock_behind_ms: counts
            .newest
            .and_then(|newest| crate::clock::behind(context.clock.now(), newest))
            .map(|behind| behind.as_millis().try_into().unwrap_or(u64::MAX)),
        state: DaemonState::Ready,
        start: None,
        metrics_url: None,
        http_url: None,
        socket_activated: false,
        daemons: context.members.listed(),
    };
    context.reach.tell(&mut status);
    status
}
