//! What the commands print: aligned text for people, JSON for scripts. Errors go to stderr.

use std::io::{self, Write};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use orders_shared::OrderStatus;
use orders_shared::protocol::{DaemonState, EventView, OrderView};
use serde::Serialize;
use unicode_width::UnicodeWidthStr;

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

/// A colour of the text on a terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Colour {
    Red,
    Green,
    Yellow,
    Cyan,
}

impl Colour {
    /// Its SGR foreground code.
    fn code(self) -> u8 {
        match self {
            Colour::Red => 31,
            Colour::Green => 32,
            Colour::Yellow => 33,
            Colour::Cyan => 36,
        }
    }

    /// How a status looks on a terminal.
    fn of(status: OrderStatus) -> Colour {
        match status {
            OrderStatus::Pending => Colour::Yellow,
            OrderStatus::Approved => Colour::Cyan,
            OrderStatus::Delivered => Colour::Green,
            OrderStatus::Cancelled => Colour::Red,
        }
    }
}

/// One cell of a table: its text, and its colour on a terminal.
struct Cell {
    text: String,
    colour: Option<Colour>,
}

impl Cell {
    fn new(text: impl ToString) -> Cell {
        Cell { text: text.to_string(), colour: None }
    }

    /// Text that came from the store (a user's name): what a terminal would obey or show as
    /// nothing is shown escaped (issue 18).
    fn stored(text: &str) -> Cell {
        Cell::new(orders_shared::text::escaped(text, false))
    }

    fn coloured(text: impl ToString, colour: Colour) -> Cell {
        Cell { colour: Some(colour), ..Cell::new(text) }
    }
}

/// Rows of cells in columns two spaces apart, each as wide as its widest cell (in terminal
/// columns: `中` takes two), right-aligned in the columns named in `right`, with no trailing
/// spaces. A colour wraps the visible text of its cell only, never the padding (issue 18), and
/// with `color` off not one escape byte is written.
fn print_columns(out: &mut impl Write, rows: &[Vec<Cell>], right: &[usize], color: bool) -> io::Result<()> {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        widths.resize(widths.len().max(row.len()), 0);
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.text.width());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (column, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if column > 0 {
                line.push_str("  ");
            }
            let padding = " ".repeat(width - cell.text.width());
            if right.contains(&column) {
                line.push_str(&padding);
            }
            match cell.colour {
                Some(colour) if color => {
                    line.push_str(&format!("\u{1b}[{}m{}\u{1b}[39m", colour.code(), cell.text));
                }
                _ => line.push_str(&cell.text),
            }
            if !right.contains(&column) {
                line.push_str(&padding);
            }
        }
        writeln!(out, "{}", line.trim_end_matches(' '))?;
    }
    Ok(())
}

/// One order, one field a line; transitions and the cancel reason only when they happened.
pub fn order(out: &mut impl Write, order: &OrderView, color: bool) -> io::Result<()> {
    let status = match order.cancel_reason {
        Some(reason) => format!("{} ({reason})", order.status),
        None => order.status.to_string(),
    };
    let mut rows = vec![
        vec![Cell::new("id:"), Cell::new(order.id)],
        vec![Cell::new("user:"), Cell::stored(&order.user)],
        vec![Cell::new("total:"), Cell::new(order.total)],
        vec![Cell::new("status:"), Cell::coloured(status, Colour::of(order.status))],
        vec![Cell::new("created:"), Cell::new(local_time(order.created_at))],
    ];
    let transitions = [
        ("approved:", order.approved_at),
        ("delivered:", order.delivered_at),
        ("cancelled:", order.cancelled_at),
    ];
    for (name, at) in transitions {
        if let Some(at) = at {
            rows.push(vec![Cell::new(name), Cell::new(local_time(at))]);
        }
    }
    rows.push(vec![Cell::new("updated:"), Cell::new(local_time(order.updated_at))]);
    print_columns(out, &rows, &[], color)
}

/// Events as a table: where in the log, when, what, and the payload as `key=value`.
pub fn events(out: &mut impl Write, events: &[EventView]) -> io::Result<()> {
    let header = ["POSITION", "TIME", "TYPE", "DATA"].map(Cell::new).into();
    let rows = std::iter::once(header).chain(events.iter().map(|event| {
        vec![
            Cell::new(event.position),
            Cell::new(precise_local_time(event.recorded_at)),
            Cell::stored(&event.event_type),
            Cell::new(key_values(&event.data)),
        ]
    }));
    print_columns(out, &rows.collect::<Vec<_>>(), &[], false)
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

/// Orders as an aligned table with a header.
pub fn orders(out: &mut impl Write, orders: &[OrderView], color: bool) -> io::Result<()> {
    let header = ["ID", "USER", "TOTAL", "STATUS", "CREATED", "UPDATED"].map(Cell::new).into();
    let rows = std::iter::once(header).chain(orders.iter().map(|order| {
        vec![
            Cell::new(order.id),
            Cell::stored(&order.user),
            Cell::new(order.total),
            Cell::coloured(order.status, Colour::of(order.status)),
            Cell::new(local_time(order.created_at)),
            Cell::new(local_time(order.updated_at)),
        ]
    }));
    print_columns(out, &rows.collect::<Vec<_>>(), &[2], color)
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
    use super::{Cell, Colour, key_values, print_columns};

    #[test]
    fn columns_align_by_terminal_width_and_colour_only_the_text() {
        let rows = vec![
            vec![Cell::new("USER"), Cell::new("TOTAL"), Cell::new("STATUS")],
            vec![Cell::new("王小明"), Cell::new(3), Cell::coloured("cancelled", Colour::Red)],
            vec![Cell::new("al"), Cell::new(12), Cell::coloured("approved", Colour::Cyan)],
        ];
        let text = |color| {
            let mut out = Vec::new();
            print_columns(&mut out, &rows, &[1], color).expect("written");
            String::from_utf8(out).expect("utf-8")
        };
        assert_eq!(text(false), "USER    TOTAL  STATUS\n王小明      3  cancelled\nal         12  approved\n");
        assert_eq!(
            text(true),
            "USER    TOTAL  STATUS\n王小明      3  \u{1b}[31mcancelled\u{1b}[39m\nal         12  \u{1b}[36mapproved\u{1b}[39m\n"
        );
    }

    #[test]
    fn a_stored_name_is_shown_escaped() {
        assert_eq!(Cell::stored("evil\u{202e}ecila").text, "evil\\u{202e}ecila");
        assert_eq!(Cell::stored("王小明").text, "王小明");
    }

    #[test]
    fn control_characters_in_event_data_are_shown_escaped() {
        let data = serde_json::json!({"reason": "\u{1b}[2Jgone\n", "amount": 2});
        let shown = key_values(&data);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.contains(r"reason=\u{1b}[2Jgone\u{a}"), "{shown}");
    }
}
