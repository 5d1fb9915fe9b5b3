//! The read side in SQLite: the `orders` table, a projection of the event log, and the queries
//! on it.
//!
//! The writer applies each event in the same transaction that appends it, so a reply reflects its
//! own command, and the checkpoint (last applied global position) moves with the table. On start
//! the projection catches up from its checkpoint.

use jiff::Timestamp;
use orders_shared::protocol::{ListRequest, OrderPage, OrderView};
use orders_shared::{DomainEvent, OrderEvent, OrderId};
use rusqlite::{Connection, OptionalExtension, Row, ToSql, params};

use super::schema::ORDERS_TABLE;
use crate::store::{Position, RecordedEvent, StoreError};

const PROJECTION: &str = "orders";

/// The read model's columns, in the order of the table the migrations produce.
pub const COLUMNS: &str = "id, user, total, status, created_at, updated_at, cancel_reason, approved_at, \
     delivered_at, cancelled_at";

/// Creates an empty read-model table as the current schema has it (the migrations build the live
/// one; `replay` builds fresh ones with this). `schema` is `main` or `temp`; index names get
/// `suffix`, because they live on after the table is renamed.
///
/// The rows are stored in `(user, created_at, id)` order, so that one customer's orders — what
/// `list --user` reads — lie side by side; `id` has its own unique index for `show` and for the
/// projection's updates. `(created_at, id)` serves listing everyone's orders newest first, and
/// `(status, created_at, id)` the same filtered by status (`list --status`); with a user as well,
/// SQLite keeps to the primary key, one customer's orders, and filters them.
pub fn create_table(conn: &Connection, schema: &str, table: &str, suffix: &str) -> Result<(), StoreError> {
    conn.execute_batch(&format!(
        "CREATE TABLE {schema}.{table} (
             id            TEXT    NOT NULL,
             user          TEXT    NOT NULL,
             total         INTEGER NOT NULL,
             status        TEXT    NOT NULL,
             created_at    INTEGER NOT NULL,
             updated_at    INTEGER NOT NULL,
             cancel_reason TEXT,
             approved_at   INTEGER,
             delivered_at  INTEGER,
             cancelled_at  INTEGER,
             PRIMARY KEY (user, created_at, id)
         ) WITHOUT ROWID;
         CREATE UNIQUE INDEX {schema}.orders_by_id{suffix} ON {table} (id);
         CREATE INDEX {schema}.orders_by_time{suffix} ON {table} (created_at, id);
         CREATE INDEX {schema}.orders_by_status{suffix} ON {table} (status, created_at, id);"
    ))?;
    Ok(())
}

/// Writes order events into one read-model table (the live one, or one being rebuilt). The SQL
/// is built once per table, not once per event.
#[derive(Debug)]
pub struct Projector {
    place: String,
    approve: String,
    deliver: String,
    cancel: String,
}

impl Projector {
    pub fn new(table: &str) -> Projector {
        Projector {
            place: format!(
                "INSERT INTO {table} (id, user, total, status, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, 'pending', ?4, ?4)"
            ),
            approve: format!(
                "UPDATE {table} SET status = 'approved', approved_at = ?2, updated_at = ?2 WHERE id = ?1"
            ),
            deliver: format!(
                "UPDATE {table} SET status = 'delivered', delivered_at = ?2, updated_at = ?2 WHERE id = ?1"
            ),
            cancel: format!(
                "UPDATE {table} SET status = 'cancelled', cancel_reason = ?3, cancelled_at = ?2, \
                 updated_at = ?2 WHERE id = ?1"
            ),
        }
    }

    /// Applies one order event; `order` is the order's id as text, `at` the event's time in ms.
    fn apply(&self, conn: &Connection, order: &str, event: &OrderEvent, at: i64) -> Result<(), StoreError> {
        match event {
            OrderEvent::Placed { user, total } => {
                conn.prepare_cached(&self.place)?.execute(params![order, user.as_str(), total.get(), at])?
            }
            OrderEvent::Approved => conn.prepare_cached(&self.approve)?.execute(params![order, at])?,
            OrderEvent::Delivered => conn.prepare_cached(&self.deliver)?.execute(params![order, at])?,
            OrderEvent::Cancelled { reason } => {
                conn.prepare_cached(&self.cancel)?.execute(params![order, at, reason.as_str()])?
            }
        };
        Ok(())
    }

    /// Applies the log after position `after`, at most `limit` events of it (the order events;
    /// the payment and delivery contexts show through the order's own). This is the fast path of
    /// catch-up and replay: it decodes only what the projection needs. Returns how many events
    /// it read and the last position.
    pub fn apply_log(
        &self,
        conn: &Connection,
        after: Position,
        limit: usize,
    ) -> Result<(usize, Position), StoreError> {
        // A literal limit: a bound one makes SQLite plan the query anew on every use.
        let mut select = conn.prepare_cached(&format!(
            "SELECT position, stream_id, type, schema_version, payload, recorded_at FROM events \
             WHERE position > ?1 ORDER BY position LIMIT {limit}"
        ))?;
        let mut rows = select.query([after.get()])?;
        let (mut read, mut last) = (0, after);
        while let Some(row) = rows.next()? {
            read += 1;
            last = Position::new(row.get(0)?);
            let Some(order) = row.get_ref(1)?.as_str()?.strip_prefix("order-") else { continue };
            let (event_type, version, payload) =
                (row.get_ref(2)?.as_str()?, row.get(3)?, row.get_ref(4)?.as_str()?);
            let event = match DomainEvent::decode(event_type, version, payload) {
                Ok(DomainEvent::Order(event)) => event,
                Ok(_) => continue,
                Err(source) => return Err(StoreError::Decode { position: last, source }),
            };
            self.apply(conn, order, &event, row.get(5)?)?;
        }
        Ok((read, last))
    }
}

/// The projector of the live table.
fn live() -> &'static Projector {
    static LIVE: std::sync::OnceLock<Projector> = std::sync::OnceLock::new();
    LIVE.get_or_init(|| Projector::new(ORDERS_TABLE))
}

/// Applies a just-recorded event to the live read model.
pub fn apply(conn: &Connection, recorded: &RecordedEvent) -> Result<(), StoreError> {
    match &recorded.event {
        DomainEvent::Order(event) => live().apply(
            conn,
            &recorded.stream.order.to_string(),
            event,
            recorded.recorded_at.as_millisecond(),
        ),
        DomainEvent::Payment(_) | DomainEvent::Delivery(_) => Ok(()),
    }
}

/// The last global position the read model reflects.
pub fn checkpoint(conn: &Connection) -> Result<Position, StoreError> {
    let position = conn
        .prepare_cached("SELECT position FROM checkpoints WHERE projection = ?1")?
        .query_row([PROJECTION], |row| row.get(0))?;
    Ok(Position::new(position))
}

pub fn set_checkpoint(conn: &Connection, position: Position) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE checkpoints SET position = ?2 WHERE projection = ?1")?
        .execute(params![PROJECTION, position.get()])?;
    Ok(())
}

/// Applies whatever the log holds past the checkpoint: after a schema migration that resets the
/// read model, or when the projection learns new events. Returns how many events it applied.
#[cfg(test)]
pub fn catch_up(conn: &Connection) -> Result<u64, StoreError> {
    let mut applied = 0;
    while let Some(read) = catch_up_chunk(conn, 10_000)? {
        applied += read;
    }
    Ok(applied)
}

/// Applies the next chunk and moves the checkpoint in one transaction, so that a daemon killed
/// during a catch-up resumes where it stopped (the projection's inserts must never run twice).
/// `None` when there was nothing left.
pub fn catch_up_chunk(conn: &Connection, chunk: usize) -> Result<Option<u64>, StoreError> {
    let tx = conn.unchecked_transaction()?;
    let (read, last) = live().apply_log(&tx, checkpoint(&tx)?, chunk)?;
    if read == 0 {
        return Ok(None);
    }
    set_checkpoint(&tx, last)?;
    tx.commit()?;
    Ok(Some(read as u64))
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
    let Some((sql, values)) = list_query(conn, request, limit)? else {
        return Ok(OrderPage { orders: Vec::new(), more: false });
    };
    let mut select = conn.prepare_cached(&sql)?;
    let params: Vec<&dyn ToSql> = values.iter().map(|value| value.as_ref()).collect();
    let mut orders =
        select.query_map(params.as_slice(), read_view)?.map(|row| row?).collect::<Result<Vec<_>, _>>()?;
    let more = orders.len() > limit as usize;
    orders.truncate(limit as usize);
    Ok(OrderPage { orders, more })
}

/// An SQL statement and the values of its parameters.
type Query = (String, Vec<Box<dyn ToSql>>);

/// The query of a page (one row more than `limit`, to tell whether more follow) and its
/// values; `None` when the cursor names no order.
fn list_query(conn: &Connection, request: &ListRequest, limit: u32) -> Result<Option<Query>, StoreError> {
    let Some((filter, mut values)) = filter(conn, request)? else {
        return Ok(None);
    };
    values.push(Box::new(i64::from(limit) + 1));
    let sql = format!(
        "SELECT {VIEW_COLUMNS} FROM {ORDERS_TABLE} {filter} ORDER BY created_at DESC, id DESC LIMIT ?{}",
        values.len()
    );
    Ok(Some((sql, values)))
}

/// How many orders the filters of `request` match, its limit aside (`list --count`): every
/// matching row is counted, through the index the page would read.
pub fn count(conn: &Connection, request: &ListRequest) -> Result<u64, StoreError> {
    let Some((filter, values)) = filter(conn, request)? else {
        return Ok(0);
    };
    let params: Vec<&dyn ToSql> = values.iter().map(|value| value.as_ref()).collect();
    let count: i64 = conn
        .prepare_cached(&format!("SELECT count(*) FROM {ORDERS_TABLE} {filter}"))?
        .query_row(params.as_slice(), |row| row.get(0))?;
    Ok(count.try_into().unwrap_or_default())
}

/// The `WHERE` clause of a request's filters and cursor, and its values; `None` when the cursor
/// names no order.
fn filter(conn: &Connection, request: &ListRequest) -> Result<Option<Query>, StoreError> {
    let mut conditions = Vec::new();
    let mut values: Vec<Box<dyn ToSql>> = Vec::new();
    if let Some(user) = &request.user {
        values.push(Box::new(user.as_str().to_owned()));
        conditions.push(format!("user = ?{}", values.len()));
    }
    if let Some(status) = request.status {
        values.push(Box::new(status.as_str()));
        conditions.push(format!("status = ?{}", values.len()));
    }
    if let Some(since) = request.since {
        values.push(Box::new(since.as_millisecond()));
        conditions.push(format!("created_at >= ?{}", values.len()));
    }
    if let Some(before) = request.before {
        // Orders older than the cursor, in (created_at, id) order: the order of the indexes.
        let Some(cursor) = get(conn, before)? else {
            return Ok(None);
        };
        values.push(Box::new(cursor.created_at.as_millisecond()));
        values.push(Box::new(cursor.id.to_string()));
        conditions.push(format!("(created_at, id) < (?{}, ?{})", values.len() - 1, values.len()));
    }
    let filter =
        if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
    Ok(Some((filter, values)))
}

#[cfg(test)]
mod tests {
    use orders_shared::OrderStatus;
    use orders_shared::protocol::ListRequest;
    use rusqlite::ToSql;

    use super::list_query;
    use crate::testing::Db;

    /// How SQLite runs the page query of a request.
    fn plan(db: &Db, request: &ListRequest) -> String {
        let (sql, values) = list_query(db.conn(), request, 100).expect("query").expect("no cursor");
        let params: Vec<&dyn ToSql> = values.iter().map(|value| value.as_ref()).collect();
        let mut explain = db.conn().prepare(&format!("EXPLAIN QUERY PLAN {sql}")).expect("explain");
        let steps = explain.query_map(params.as_slice(), |row| row.get::<_, String>(3)).expect("plan");
        steps.collect::<Result<Vec<_>, _>>().expect("steps").join("; ")
    }

    fn request(user: Option<&str>, status: Option<OrderStatus>) -> ListRequest {
        ListRequest { user: user.map(|u| u.parse().expect("user")), status, ..ListRequest::default() }
    }

    /// `list --status S` seeks its status in an index kept in the page's order (no scan, no
    /// sort); with a user it keeps to that customer's orders. On the migrated table and on one a
    /// replay built.
    #[test]
    fn status_filters_read_an_index_in_the_page_order() {
        let mut db = Db::new().with_order(2);
        for table in ["migrated", "rebuilt"] {
            let by_status = plan(&db, &request(None, Some(OrderStatus::Pending)));
            assert!(by_status.contains("USING INDEX orders_by_status"), "{table}: {by_status}");
            assert!(!by_status.contains("TEMP B-TREE"), "{table}: sorted: {by_status}");
            let mine = plan(&db, &request(Some("alice"), Some(OrderStatus::Pending)));
            assert!(mine.contains("USING PRIMARY KEY (user=?)"), "{table}: {mine}");
            assert!(!mine.contains("TEMP B-TREE"), "{table}: sorted: {mine}");
            let everyone = plan(&db, &request(None, None));
            assert!(everyone.contains("USING INDEX orders_by_time"), "{table}: {everyone}");

            if table == "rebuilt" {
                break;
            }
            // What replay does: a fresh table, renamed into place.
            super::create_table(db.conn(), "main", "orders_rebuild", "_a").expect("create");
            db.conn()
                .execute_batch("DROP TABLE orders; ALTER TABLE orders_rebuild RENAME TO orders;")
                .expect("swap");
            db.create(4);
        }
    }
}
