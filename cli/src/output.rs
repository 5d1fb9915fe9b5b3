//! What the commands print: aligned text for people, JSON for scripts. Errors go to stderr.

use std::io::{self, Write};

use comfy_table::presets::NOTHING;
use comfy_table::{Cell, CellAlignment, Color, Table};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use orders_shared::OrderStatus;
use orders_shared::protocol::{DaemonState, EventView, OrderView};
use serde::Serialize;

/// One JSON document on one line.
pub fn json(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    // A write error keeps its kind: a closed pipe (`| head`) ends the output quietly.
    serde_json::to_writer(&mut *out, value).map_err(|e| match e.io_error_kind() {
        Some(kind) => io::Error::from(kind),
        None => io::Error::other(e),
    })?;
    writeln!(out)
}

/// What every command prints: with `--json` the value as one JSON document, otherwise the text
/// that `text` writes for people.
pub fn emit<W: Write, T: Serialize>(
    out: &mut W,
    json: bool,
    value: &T,
    text: impl FnOnce(&mut W) -> io::Result<()>,
) -> io::Result<()> {
    if json { self::json(out, value) } else { text(out) }
}

/// A point in time as people read it here: local time, to the second.
pub fn local_time(at: Timestamp) -> String {
    at.to_zoned_datetime(TimeZone::system()).strftime("%Y-%m-%d %H:%M:%S").to_string()
}

/// How a status looks on a terminal.
fn status_cell(status: OrderStatus, text: String) -> Cell {
    let color = match status {
        OrderStatus::Pending => Color::Yellow,
        OrderStatus::Approved => Color::Cyan,
        OrderStatus::Delivered => Color::Green,
        OrderStatus::Cancelled => Color::Red,
    };
    Cell::new(text).fg(color)
}

/// A table without borders, coloured only when asked to.
fn plain_table(color: bool) -> Table {
    let mut table = Table::new();
    table.load_style(NOTHING);
    if color {
        table.enforce_styling();
    } else {
        table.force_no_tty();
    }
    table
}

/// One order, one field a line; transitions and the cancel reason only when they happened.
pub fn order(out: &mut impl Write, order: &OrderView, color: bool) -> io::Result<()> {
    let status = match order.cancel_reason {
        Some(reason) => format!("{} ({reason})", order.status),
        None => order.status.to_string(),
    };
    let mut table = plain_table(color);
    table.add_row(vec![Cell::new("id:"), Cell::new(order.id)]);
    // A name the store holds may predate the rule for new ones (issue 18): shown escaped.
    table.add_row(vec![Cell::new("user:"), Cell::new(orders_shared::text::escaped(&order.user, false))]);
    table.add_row(vec![Cell::new("total:"), Cell::new(order.total)]);
    table.add_row(vec![Cell::new("status:"), status_cell(order.status, status)]);
    table.add_row(vec![Cell::new("created:"), Cell::new(local_time(order.created_at))]);
    let transitions = [
        ("approved:", order.approved_at),
        ("delivered:", order.delivered_at),
        ("cancelled:", order.cancelled_at),
    ];
    for (name, at) in transitions {
        if let Some(at) = at {
            table.add_row(vec![Cell::new(name), Cell::new(local_time(at))]);
        }
    }
    table.add_row(vec![Cell::new("updated:"), Cell::new(local_time(order.updated_at))]);
    print_table(out, table)
}

/// Events as a table: where in the log, when, what, and the payload as `key=value`.
pub fn events(out: &mut impl Write, events: &[EventView]) -> io::Result<()> {
    let mut table = plain_table(false);
    table.set_header(["POSITION", "TIME", "TYPE", "DATA"]);
    for event in events {
        table.add_row([
            event.position.to_string(),
            precise_local_time(event.recorded_at),
            event.event_type.clone(),
            key_values(&event.data),
        ]);
    }
    print_table(out, table)
}

fn key_values(data: &serde_json::Value) -> String {
    let Some(fields) = data.as_object() else { return data.to_string() };
    // What a terminal would obey is shown escaped, never sent to it as it is.
    let text = |value: &serde_json::Value| match value {
        serde_json::Value::String(text) => orders_shared::text::escaped(text, false).into_owned(),
        other => other.to_string(),
    };
    fields.iter().map(|(key, value)| format!("{key}={}", text(value))).collect::<Vec<_>>().join(" ")
}

/// One event on one line, for logs that stream: position, time, stream, type, payload.
pub fn event_line(out: &mut impl Write, event: &EventView) -> io::Result<()> {
    writeln!(
        out,
        "{:>8}  {}  {:<45}  {:<17}  {}",
        event.position,
        precise_local_time(event.recorded_at),
        event.stream,
        event.event_type,
        key_values(&event.data)
    )
}

/// Local time to the millisecond, for event logs.
pub fn precise_local_time(at: Timestamp) -> String {
    at.to_zoned_datetime(TimeZone::system()).strftime("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

fn print_table(out: &mut impl Write, mut table: Table) -> io::Result<()> {
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    for line in table.lines() {
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Orders as an aligned table with a header.
pub fn orders(out: &mut impl Write, orders: &[OrderView], color: bool) -> io::Result<()> {
    let mut table = plain_table(color);
    table.set_header(["ID", "USER", "TOTAL", "STATUS", "CREATED", "UPDATED"]);
    for order in orders {
        table.add_row(vec![
            Cell::new(order.id),
            Cell::new(orders_shared::text::escaped(&order.user, false)),
            Cell::new(order.total),
            status_cell(order.status, order.status.to_string()),
            Cell::new(local_time(order.created_at)),
            Cell::new(local_time(order.updated_at)),
        ]);
    }
    if let Some(column) = table.column_mut(2) {
        column.set_cell_alignment(CellAlignment::Right);
    }
    print_table(out, table)
}

/// Where the metrics are served, and whether the socket came from the service manager.
fn service_rows(out: &mut impl Write, status: &orders_shared::protocol::DaemonStatus) -> io::Result<()> {
    if let Some(url) = &status.metrics_url {
        writeln!(out, "  {:<10} {url}", "metrics:")?;
    }
    if let Some(url) = &status.http_url {
        writeln!(out, "  {:<10} {url} (the original order endpoints)", "http:")?;
    }
    if status.socket_activated {
        writeln!(
            out,
            "  {:<10} the socket was passed by the service manager (socket activation)",
            "systemd:"
        )?;
    }
    Ok(())
}

/// The daemon's report for `orders daemon status`.
pub fn status(out: &mut impl Write, status: &orders_shared::protocol::DaemonStatus) -> io::Result<()> {
    let uptime = Timestamp::now().duration_since(status.started_at);
    let uptime = std::time::Duration::from_secs(uptime.as_secs().max(0).unsigned_abs());
    if let (DaemonState::Starting, Some(progress)) = (status.state, status.start) {
        writeln!(out, "orders daemon {} is starting (protocol {})", status.version, status.protocol)?;
        let rows = [
            ("pid", status.pid.to_string()),
            ("start", progress.to_string()),
            ("socket", status.socket.clone()),
            ("data dir", status.data_dir.clone()),
            ("database", status.database.clone()),
            ("log", status.log_file.clone()),
        ];
        for (name, value) in rows {
            writeln!(out, "  {:<10} {value}", format!("{name}:"))?;
        }
        return service_rows(out, status);
    }
    writeln!(out, "orders daemon {} is running (protocol {})", status.version, status.protocol)?;
    let rows = [
        ("pid", status.pid.to_string()),
        ("uptime", format!("{:#}", jiff::SignedDuration::try_from(uptime).unwrap_or_default())),
        ("socket", status.socket.clone()),
        ("data dir", status.data_dir.clone()),
        ("database", status.database.clone()),
        ("log", status.log_file.clone()),
        ("events", status.events.to_string()),
        ("orders", status.orders.to_string()),
        (
            "pending",
            format!("{} payments, {} deliveries", status.pending_payments, status.pending_deliveries),
        ),
    ];
    for (name, value) in rows {
        writeln!(out, "  {:<10} {value}", format!("{name}:"))?;
    }
    service_rows(out, status)?;
    if let Some(store) = &status.store_id {
        writeln!(out, "  {:<10} {store}", "store:")?;
    }
    if let Some(behind) = status.clock_behind_ms {
        let behind = jiff::SignedDuration::from_millis(i64::try_from(behind).unwrap_or(i64::MAX));
        writeln!(
            out,
            "  {:<10} {behind:#} behind the newest recorded event: new events are recorded no earlier \
             than it, deliveries go at most their delay from now (is the clock right?)",
            "clock:"
        )?;
    }
    if status.stuck_steps > 0 {
        writeln!(
            out,
            "  {:<10} {} saga steps cannot be carried out (kept, not run; orders check names them all)",
            "stuck:", status.stuck_steps
        )?;
        for stuck in &status.stuck {
            writeln!(out, "    {} of order {}: {}", stuck.step, stuck.order, stuck.problem)?;
        }
    }
    Ok(())
}

/// What `orders check` found.
pub fn restore(
    out: &mut impl Write,
    report: &orders_shared::protocol::RestoreReport,
    restarted: bool,
) -> io::Result<()> {
    writeln!(
        out,
        "restored {} events of {} orders from {} into {} in {:.2} s (new store id {})",
        report.events,
        report.orders,
        report.from,
        report.database,
        report.duration_ms as f64 / 1000.0,
        report.store_id
    )?;
    if let Some(aside) = &report.kept_aside {
        writeln!(out, "the store it replaced is kept at {aside}")?;
    }
    if restarted {
        restarted_note(out)?;
    }
    Ok(())
}

pub fn import(
    out: &mut impl Write,
    report: &orders_shared::protocol::ImportReport,
    restarted: bool,
) -> io::Result<()> {
    writeln!(
        out,
        "imported {} events of {} orders from {} into {} in {:.2} s (new store id {})",
        report.events,
        report.orders,
        report.from,
        report.database,
        report.duration_ms as f64 / 1000.0,
        report.store_id
    )?;
    let open: Vec<String> = [(report.open_payments, "payment"), (report.open_deliveries, "delivery")]
        .into_iter()
        .filter(|(count, _)| *count > 0)
        .map(|(count, step)| match (count, step) {
            (1, step) => format!("1 {step}"),
            (count, "delivery") => format!("{count} deliveries"),
            (count, step) => format!("{count} {step}s"),
        })
        .collect();
    if !open.is_empty() {
        let when = if restarted { "now" } else { "once it starts" };
        writeln!(
            out,
            "the daemon carries out what the log left open {when}: {} (a delivery already due at once)",
            open.join(" and ")
        )?;
    }
    if restarted {
        restarted_note(out)?;
    }
    Ok(())
}

/// After `restore` or `import`: the daemon they stopped runs again, with which settings.
fn restarted_note(out: &mut impl Write) -> io::Result<()> {
    writeln!(
        out,
        "the daemon was stopped for it and started again, with the default settings and the ORDERS_* \
         variables of this environment (`orders daemon restart` with yours, if they differ)"
    )
}

pub fn backup(out: &mut impl Write, report: &orders_shared::protocol::BackupReport) -> io::Result<()> {
    writeln!(
        out,
        "backed up {} events of {} orders to {} ({:.1} MB) in {:.2} s",
        report.events,
        report.orders,
        report.path,
        report.bytes as f64 / 1e6,
        report.duration_ms as f64 / 1000.0
    )
}

pub fn check(out: &mut impl Write, report: &orders_shared::protocol::CheckReport) -> io::Result<()> {
    let seconds = report.duration_ms as f64 / 1000.0;
    if report.damaged {
        writeln!(out, "the database file is damaged; the check stopped after {seconds:.2} s:")?;
        for problem in &report.listed {
            writeln!(out, "  {}", problem.message)?;
        }
        return Ok(());
    }
    if report.problems == 0 {
        return writeln!(
            out,
            "checked {} events of {} orders in {seconds:.2} s: no problems",
            report.events, report.orders
        );
    }
    writeln!(
        out,
        "checked {} events of {} orders in {seconds:.2} s: {} problems",
        report.events, report.orders, report.problems
    )?;
    for problem in &report.listed {
        writeln!(out, "  {}", problem.message)?;
    }
    if (report.listed.len() as u64) < report.problems {
        writeln!(out, "  ... and {} more", report.problems - report.listed.len() as u64)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::key_values;

    #[test]
    fn control_characters_in_event_data_are_shown_escaped() {
        let data = serde_json::json!({"reason": "\u{1b}[2Jgone\n", "amount": 2});
        let shown = key_values(&data);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.contains(r"reason=\u{1b}[2Jgone\u{a}"), "{shown}");
    }
}
