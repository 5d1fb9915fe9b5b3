//! What the commands print: aligned text for people, JSON for scripts. Errors go to stderr.

use std::io::{self, Write};

use comfy_table::presets::NOTHING;
use comfy_table::{CellAlignment, Table};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use orders_shared::protocol::OrderView;
use serde::Serialize;

/// One JSON document on one line.
pub fn json(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(io::Error::other)?;
    writeln!(out)
}

/// A point in time as people read it here: local time, to the second.
pub fn local_time(at: Timestamp) -> String {
    at.to_zoned_datetime(TimeZone::system()).strftime("%Y-%m-%d %H:%M:%S").to_string()
}

/// One order, one field a line.
pub fn order(out: &mut impl Write, order: &OrderView) -> io::Result<()> {
    let rows = [
        ("id", order.id.to_string()),
        ("user", order.user.clone()),
        ("total", order.total.to_string()),
        ("status", order.status.to_string()),
        ("created", local_time(order.created_at)),
        ("updated", local_time(order.updated_at)),
    ];
    for (name, value) in rows {
        writeln!(out, "{:<8} {value}", format!("{name}:"))?;
    }
    Ok(())
}

/// Orders as an aligned table with a header.
pub fn orders(out: &mut impl Write, orders: &[OrderView]) -> io::Result<()> {
    let mut table = Table::new();
    table.load_style(NOTHING).set_header(["ID", "USER", "TOTAL", "STATUS", "CREATED", "UPDATED"]);
    for order in orders {
        table.add_row([
            order.id.to_string(),
            order.user.clone(),
            order.total.to_string(),
            order.status.to_string(),
            local_time(order.created_at),
            local_time(order.updated_at),
        ]);
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    if let Some(column) = table.column_mut(2) {
        column.set_cell_alignment(CellAlignment::Right);
    }
    for line in table.lines() {
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// The daemon's report for `orders daemon status`.
pub fn status(out: &mut impl Write, status: &orders_shared::protocol::DaemonStatus) -> io::Result<()> {
    let uptime = Timestamp::now().duration_since(status.started_at);
    let uptime = std::time::Duration::from_secs(uptime.as_secs().max(0).unsigned_abs());
    writeln!(out, "orders daemon {} is running (protocol {})", status.version, status.protocol)?;
    let rows = [
        ("pid", status.pid.to_string()),
        ("uptime", format!("{:#}", jiff::SignedDuration::try_from(uptime).unwrap_or_default())),
        ("socket", status.socket.clone()),
        ("data dir", status.data_dir.clone()),
        ("database", status.database.clone()),
        ("events", status.events.to_string()),
        ("orders", status.orders.to_string()),
    ];
    for (name, value) in rows {
        writeln!(out, "  {:<10} {value}", format!("{name}:"))?;
    }
    Ok(())
}
