//! The read side: the `orders` table, a projection of the event log, and the queries on it.
//!
//! The writer applies each event in the same transaction that appends it, so a reply reflects its
//! own command, and the checkpoint (last applied global position) moves with the table. On start
//! the projection catches up from its checkpoint.

use jiff::Timestamp;
use orders_shared::protocol::{ListRequest, OrderPage, OrderView};
use orders_shared::{DomainEvent, OrderEvent, OrderId};
use rusqlite::{Connection, OptionalExtension, Row, ToSql, params};

use crate::store::schema::ORDERS_TABLE;
use crate::store::{EventStore, RecordedEvent, StoreError};

const PROJECTION: &str = "orders";

/// Applies one event to a read-model table (the live one, or one being rebuilt).
pub fn apply(conn: &Connection, table: &str, recorded: &RecordedEvent) -> Result<(), StoreError> {
    let order = recorded.stream.order.to_string();
    let at = recorded.recorded_at.as_millisecond();
    match &recorded.event {
        DomainEvent::Order(OrderEvent::Placed { user, total }) => {
            conn.prepare_cached(&format!(
                "INSERT INTO {table} (id, user, total, status, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, 'pending', ?4, ?4)"
            ))?
            .execute(params![order, user.as_str(), total.get(), at])?;
        }
        DomainEvent::Order(OrderEvent::Approved) => {
            conn.prepare_cached(&format!(
                "UPDATE {table} SET status = 'approved', approved_at = ?2, updated_at = ?2 WHERE id = ?1"
            ))?
            .execute(params![order, at])?;
        }
        DomainEvent::Order(OrderEvent::Delivered) => {
            conn.prepare_cached(&format!(
                "UPDATE {table} SET status = 'delivered', delivered_at = ?2, updated_at = ?2 WHERE id = ?1"
            ))?
            .execute(params![order, at])?;
        }
        DomainEvent::Order(OrderEvent::Cancelled { reason }) => {
            conn.prepare_cached(&format!(
                "UPDATE {table} SET status = 'cancelled', cancel_reason = ?3, cancelled_at = ?2, updated_at = ?2 \
                 WHERE id = ?1"
            ))?
            .execute(params![order, at, reason.as_str()])?;
        }
        // The payment and delivery contexts show through the order's own events.
        DomainEvent::Payment(_) | DomainEvent::Delivery(_) => {}
    }
    Ok(())
}

/// The last global position the read model reflects.
pub fn checkpoint(conn: &Connection) -> Result<i64, StoreError> {
    let position = conn
        .prepare_cached("SELECT position FROM checkpoints WHERE projection = ?1")?
        .query_row([PROJECTION], |row| row.get(0))?;
    Ok(position)
}

pub fn set_checkpoint(conn: &Connection, position: i64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE checkpoints SET position = ?2 WHERE projection = ?1")?
        .execute(params![PROJECTION, position])?;
    Ok(())
}

/// Applies whatever the log holds past the checkpoint (after a crash between the two, or when a
/// new projection is added). Returns how many events it applied.
pub fn catch_up(conn: &Connection) -> Result<u64, StoreError> {
    const CHUNK: usize = 10_000;
    let store = EventStore::new(conn);
    let mut position = checkpoint(conn)?;
    let mut applied = 0;
    loop {
        let events = store.read_all(position, CHUNK)?;
        let Some(last) = events.last() else { break };
        position = last.position;
        for event in &events {
            apply(conn, ORDERS_TABLE, event)?;
        }
        applied += events.len() as u64;
        set_checkpoint(conn, position)?;
    }
    Ok(applied)
}

const VIEW_COLUMNS: &str =
    "id, user, total, status, cancel_reason, created_at, updated_at, approved_at, delivered_at, cancelled_at";

fn read_view(row: &Row<'_>) -> rusqlite::Result<Result<OrderView, StoreError>> {
    let id: String = row.get(0)?;
    let user: String = row.get(1)?;
    let total: i64 = row.get(2)?;
    let status: String = row.get(3)?;
    let cancel_reason: Option<String> = row.get(4)?;
    let times: [Option<i64>; 5] = [row.get(5)?, row.get(6)?, row.get(7)?, row.get(8)?, row.get(9)?];
    let corrupt = |what: &str| StoreError::Corrupt(format!("read model row {id}: bad {what}"));
    let time = |ms: Option<i64>| {
        ms.map(|ms| Timestamp::from_millisecond(ms).map_err(|_| corrupt("time"))).transpose()
    };
    Ok((|| {
        let [created_at, updated_at, approved_at, delivered_at, cancelled_at] = times;
        Ok(OrderView {
            id: id.parse().map_err(|_| corrupt("id"))?,
            total,
            status: status.parse().map_err(|_| corrupt("status"))?,
            cancel_reason: cancel_reason
                .map(|r| r.parse().map_err(|_| corrupt("cancel reason")))
                .transpose()?,
            created_at: time(created_at)?.ok_or_else(|| corrupt("created_at"))?,
            updated_at: time(updated_at)?.ok_or_else(|| corrupt("updated_at"))?,
            approved_at: time(approved_at)?,
            delivered_at: time(delivered_at)?,
            cancelled_at: time(cancelled_at)?,
            user,
        })
    })())
}

/// One order by id.
pub fn get(conn: &Connection, id: OrderId) -> Result<Option<OrderView>, StoreError> {
    conn.prepare_cached(&format!("SELECT {VIEW_COLUMNS} FROM {ORDERS_TABLE} WHERE id = ?1"))?
        .query_row([id.to_string()], read_view)
        .optional()?
        .transpose()
}

/// A page of orders, newest first, filtered as asked.
pub fn list(conn: &Connection, request: &ListRequest) -> Result<OrderPage, StoreError> {
    let limit = request.limit.unwrap_or(ListRequest::DEFAULT_LIMIT).clamp(1, ListRequest::MAX_LIMIT);
    let mut conditions = Vec::new();
    let mut values: Vec<Box<dyn ToSql>> = Vec::new();
    if let Some(user) = &request.user {
        values.push(Box::new(user.as_str().to_owned()));
        conditions.push(format!("user = ?{}", values.len()));
    }
    if let Some(before) = request.before {
        // Orders older than the cursor, in (created_at, id) order: the order of the indexes.
        let Some(cursor) = get(conn, before)? else {
            return Ok(OrderPage { orders: Vec::new(), more: false });
        };
        values.push(Box::new(cursor.created_at.as_millisecond()));
        values.push(Box::new(cursor.id.to_string()));
        conditions.push(format!("(created_at, id) < (?{}, ?{})", values.len() - 1, values.len()));
    }
    let filter =
        if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
    values.push(Box::new(i64::from(limit) + 1));
    let sql = format!(
        "SELECT {VIEW_COLUMNS} FROM {ORDERS_TABLE} {filter} ORDER BY created_at DESC, id DESC LIMIT ?{}",
        values.len()
    );
    let mut select = conn.prepare_cached(&sql)?;
    let params: Vec<&dyn ToSql> = values.iter().map(|value| value.as_ref()).collect();
    let mut orders =
        select.query_map(params.as_slice(), read_view)?.map(|row| row?).collect::<Result<Vec<_>, _>>()?;
    let more = orders.len() > limit as usize;
    orders.truncate(limit as usize);
    Ok(OrderPage { orders, more })
}
