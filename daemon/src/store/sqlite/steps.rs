//! The saga steps' tables (`payment_requests`, `delivery_timers`) as stored: values read as
//! SQLite holds them, since a row edited by hand or damaged must be reported as it is.

use jiff::Timestamp;
use orders_shared::{OrderId, Total};
use rusqlite::{Connection, params};

use crate::store::{OpenSteps, StoreError, StoredDelivery, StoredPayment, StoredValue};

/// Opens the payment saga's step: a payment awaiting the provider.
pub(super) fn open_payment_request(
    conn: &Connection,
    order: OrderId,
    amount: Total,
    at: Timestamp,
) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT INTO payment_requests (order_id, amount, requested_at) VALUES (?1, ?2, ?3)")?
        .execute(params![order.to_string(), amount.get(), at.as_millisecond()])?;
    Ok(())
}

/// Arms the delivery saga's durable timer.
pub(super) fn set_delivery_timer(
    conn: &Connection,
    order: OrderId,
    due_at: Timestamp,
) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT INTO delivery_timers (order_id, due_at) VALUES (?1, ?2)")?
        .execute(params![order.to_string(), due_at.as_millisecond()])?;
    Ok(())
}

/// A value as SQLite holds it.
pub(super) fn stored_value(value: rusqlite::types::ValueRef<'_>) -> StoredValue {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => StoredValue::Null,
        ValueRef::Integer(n) => StoredValue::Integer(n),
        ValueRef::Real(x) => StoredValue::Real(x),
        ValueRef::Text(text) => StoredValue::Text(text.to_vec()),
        ValueRef::Blob(bytes) => StoredValue::Blob(bytes.to_vec()),
    }
}

/// The same value, to bind in a statement.
pub(super) fn sql_value(value: &StoredValue) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match value {
        StoredValue::Null => Value::Null,
        StoredValue::Integer(n) => Value::Integer(*n),
        StoredValue::Real(x) => Value::Real(*x),
        // Text that is not UTF-8 is kept as its bytes (it then compares equal to nothing).
        StoredValue::Text(text) => {
            String::from_utf8(text.clone()).map_or_else(|e| Value::Blob(e.into_bytes()), Value::Text)
        }
        StoredValue::Blob(bytes) => Value::Blob(bytes.clone()),
    }
}

/// The open saga steps as stored, with whether each one's order is in the log.
pub(super) fn open_steps(conn: &Connection) -> Result<OpenSteps, StoreError> {
    let mut steps = OpenSteps::default();
    let mut payments = conn.prepare_cached(
        "SELECT order_id, amount, EXISTS (SELECT 1 FROM events \
             WHERE stream_id = 'order-' || t.order_id AND version = 1) \
         FROM payment_requests t ORDER BY requested_at",
    )?;
    let mut rows = payments.query([])?;
    while let Some(row) = rows.next()? {
        steps.payments.push(StoredPayment {
            order: stored_value(row.get_ref(0)?),
            amount: stored_value(row.get_ref(1)?),
            known: row.get(2)?,
        });
    }
    let mut deliveries = conn.prepare_cached(
        "SELECT order_id, due_at, EXISTS (SELECT 1 FROM events \
             WHERE stream_id = 'order-' || t.order_id AND version = 1), \
             (SELECT recorded_at FROM events WHERE stream_id = 'delivery-' || t.order_id \
                 AND type = 'DeliveryScheduled' ORDER BY version DESC LIMIT 1) \
         FROM delivery_timers t",
    )?;
    let mut rows = deliveries.query([])?;
    while let Some(row) = rows.next()? {
        let scheduled_at = match row.get_ref(3)? {
            rusqlite::types::ValueRef::Integer(ms) => Timestamp::from_millisecond(ms).ok(),
            _ => None,
        };
        steps.deliveries.push(StoredDelivery {
            order: stored_value(row.get_ref(0)?),
            due_at: stored_value(row.get_ref(1)?),
            known: row.get(2)?,
            scheduled_at,
        });
    }
    Ok(steps)
}
