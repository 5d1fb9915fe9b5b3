//! What the commands print: aligned text for people, JSON for scripts. Errors go to stderr.

use std::collections::HashMap;
use std::io::{self, Write};

use comfy_table::presets::NOTHING;
use comfy_table::{Cell, CellAlignment, Color, Table};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ZonedDateTime};
use orders_shared::protocol::{DaemonState, EventView, OrderView};
use orders_shared::{OrderId, OrderStatus};
use serde::Serialize;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

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

/// How text output looks: colours, whole ids or short ones, the time zone, and the width to fit.
#[derive(Clone, Debug)]
pub struct Look {
    pub color: bool,
    /// Whole ids and times to the millisecond, nothing cut to the terminal's width (`--wide`).
    pub wide: bool,
    pub times: Times,
    /// The terminal's width, when stdout is a terminal: rows are cut to fit it.
    pub width: Option<usize>,
}

impl Look {
    /// The look of stdout: its width when it is a terminal.
    pub fn new(color: bool, wide: bool, utc: bool) -> Look {
        let width = rustix::termios::tcgetwinsize(io::stdout())
            .ok()
            .map(|size| usize::from(size.ws_col))
            .filter(|columns| *columns > 0);
        Look { color, wide, times: Times::new(utc), width }
    }

    /// The width rows are cut to: none with `--wide` or off a terminal.
    fn fit(&self) -> Option<usize> {
        self.width.filter(|_| !self.wide)
    }

    /// How an order is named in a table: its short id, or the whole id with `--wide` (or when the
    /// daemon gave no short id).
    fn id(&self, id: OrderId, short: &ShortIds) -> String {
        match short.get(&id) {
            Some(short) if !self.wide => short.clone(),
            _ => id.to_string(),
        }
    }
}

/// The short ids of the orders a table shows, as the daemon found them (`short_ids`).
pub type ShortIds = HashMap<OrderId, String>;

/// Times as people read them: in one zone, the local one or UTC (`--utc`), always named.
#[derive(Clone, Debug)]
pub struct Times {
    zone: TimeZone,
}

impl Times {
    pub fn new(utc: bool) -> Times {
        Times { zone: if utc { TimeZone::UTC } else { TimeZone::system() } }
    }

    fn zoned(&self, at: Timestamp) -> ZonedDateTime {
        at.to_zoned_datetime(self.zone.clone())
    }

    /// The zone's abbreviation at that time (CET, CEST, UTC, or an offset such as +0530).
    pub fn zone_at(&self, at: Timestamp) -> String {
        self.zoned(at).strftime("%Z").to_string()
    }

    /// To the second: `2026-12-03 15:17:25`.
    pub fn seconds(&self, at: Timestamp) -> String {
        self.zoned(at).strftime("%Y-%m-%d %H:%M:%S").to_string()
    }

    /// To the millisecond: `2026-12-03 15:17:25.123`.
    pub fn millis(&self, at: Timestamp) -> String {
        self.zoned(at).strftime("%Y-%m-%d %H:%M:%S%.3f").to_string()
    }

    /// A time of an event's data beside the event's own time: only the time of day when it falls
    /// on the same day, to the millisecond when `precise`.
    fn beside(&self, at: Timestamp, row: Timestamp, precise: bool) -> String {
        let (at, row) = (self.zoned(at), self.zoned(row));
        let format = match (at.date() == row.date(), precise) {
            (true, false) => "%H:%M:%S",
            (true, true) => "%H:%M:%S%.3f",
            (false, false) => "%Y-%m-%d %H:%M:%S",
            (false, true) => "%Y-%m-%d %H:%M:%S%.3f",
        };
        at.strftime(format).to_string()
    }

    /// A column of times under `title`: the zone in the header when every time shares it (the
    /// usual case), beside each time when they differ (a change to or from summer time).
    fn column(
        &self,
        title: &str,
        at: &[Timestamp],
        format: fn(&Times, Timestamp) -> String,
    ) -> (String, Vec<String>) {
        let zones: Vec<String> = at.iter().map(|at| self.zone_at(*at)).collect();
        match zones.first() {
            Some(first) if zones.iter().all(|zone| zone == first) => {
                (format!("{title} ({first})"), at.iter().map(|at| format(self, *at)).collect())
            }
            _ => (
                title.to_owned(),
                at.iter().zip(&zones).map(|(at, zone)| format!("{} {zone}", format(self, *at))).collect(),
            ),
        }
    }
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
pub fn order(out: &mut impl Write, order: &OrderView, look: &Look) -> io::Result<()> {
    let status = match order.cancel_reason {
        Some(reason) => format!("{} ({reason})", order.status),
        None => order.status.to_string(),
    };
    let time = |at: Timestamp| format!("{} {}", look.times.seconds(at), look.times.zone_at(at));
    let mut table = plain_table(look.color);
    table.add_row(vec![Cell::new("id:"), Cell::new(order.id)]);
    table.add_row(vec![Cell::new("user:"), Cell::new(&order.user)]);
    table.add_row(vec![Cell::new("total:"), Cell::new(order.total)]);
    table.add_row(vec![Cell::new("status:"), status_cell(order.status, status)]);
    table.add_row(vec![Cell::new("created:"), Cell::new(time(order.created_at))]);
    let transitions = [
        ("approved:", order.approved_at),
        ("delivered:", order.delivered_at),
        ("cancelled:", order.cancelled_at),
    ];
    for (name, at) in transitions {
        if let Some(at) = at {
            table.add_row(vec![Cell::new(name), Cell::new(time(at))]);
        }
    }
    table.add_row(vec![Cell::new("updated:"), Cell::new(time(order.updated_at))]);
    print_table(out, table)
}

/// An order's events as a table (`history`): where in the log, when, what, and the payload as
/// `key=value`, cut to the terminal's width.
pub fn events(out: &mut impl Write, events: &[EventView], look: &Look) -> io::Result<()> {
    let format = if look.wide { Times::millis } else { Times::seconds };
    let at: Vec<Timestamp> = events.iter().map(|event| event.recorded_at).collect();
    let (time_title, times) = look.times.column("TIME", &at, format);
    let positions: Vec<String> = events.iter().map(|event| event.position.to_string()).collect();
    let types: Vec<String> = events.iter().map(|event| event.event_type.clone()).collect();
    let before_data =
        widest(&positions, "POSITION") + widest(&times, &time_title) + widest(&types, "TYPE") + 3 * GAP;
    let mut table = plain_table(false);
    table.set_header(["POSITION".to_owned(), time_title, "TYPE".to_owned(), "DATA".to_owned()]);
    for (event, ((position, time), event_type)) in
        events.iter().zip(positions.into_iter().zip(times).zip(types))
    {
        let data = key_values(&event.data, &look.times, event.recorded_at, look.wide);
        let data = match look.fit() {
            Some(columns) => cut(&data, columns.saturating_sub(before_data).max(MIN_CUT)),
            None => data,
        };
        table.add_row([position, time, event_type, data]);
    }
    if let Some(column) = table.column_mut(0) {
        column.set_cell_alignment(CellAlignment::Right);
    }
    print_table(out, table)
}

/// The columns between two cells of a table.
const GAP: usize = 2;

/// A cell is cut no shorter than this; a terminal narrower than the rest of the row wraps.
const MIN_CUT: usize = 6;

/// The display width of a column: its widest cell or its title.
fn widest(cells: &[String], title: &str) -> usize {
    cells.iter().map(|cell| cell.width()).chain([title.width()]).max().unwrap_or(0)
}

/// An event's payload as `key=value` pairs, logfmt-style: a value with a space, a quote, an
/// equals sign or nothing in it is quoted; what a terminal would obey is shown escaped; times are
/// shown in the table's zone, beside `row`, the event's own time.
fn key_values(data: &serde_json::Value, times: &Times, row: Timestamp, precise: bool) -> String {
    let Some(fields) = data.as_object() else { return data.to_string() };
    let text = |key: &str, value: &serde_json::Value| match value {
        serde_json::Value::String(text) => match text.parse::<Timestamp>() {
            Ok(at) if key.ends_with("_at") => times.beside(at, row, precise),
            _ => quoted(text),
        },
        other => other.to_string(),
    };
    fields.iter().map(|(key, value)| format!("{key}={}", text(key, value))).collect::<Vec<_>>().join(" ")
}

/// A value of a `key=value` pair: quoted (with `\` and `"` escaped) when it would not read back
/// as one value; what a terminal would obey is shown escaped (`\u{1b}`), inside quotes.
fn quoted(text: &str) -> String {
    let unsafe_here = orders_shared::text::is_unsafe;
    let plain = !text.is_empty()
        && !text.chars().any(|c| c.is_whitespace() || unsafe_here(c) || matches!(c, '"' | '=' | '\\'));
    if plain {
        return text.to_owned();
    }
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            c if unsafe_here(c) => quoted.extend(c.escape_unicode()),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// `text` cut to `columns` display columns, the cut marked with an ellipsis.
fn cut(text: &str, columns: usize) -> String {
    if text.width() <= columns {
        return text.to_owned();
    }
    let mut kept = String::new();
    let mut used = 0;
    for c in text.chars() {
        let width = c.width().unwrap_or(0);
        if used + width + 1 > columns {
            break;
        }
        used += width;
        kept.push(c);
    }
    kept.push('…');
    kept
}

/// Events one a line, as they stream (`events`, `watch`): position, time, order, type, payload,
/// under a header printed before the first. With `--wide`, the whole stream name and times to the
/// millisecond; otherwise the order's short id, and each line cut to the terminal's width.
pub struct EventLines {
    look: Look,
    /// The zone the header names; a time in another (summer time began) carries its own.
    zone: String,
    headed: bool,
}

impl EventLines {
    pub fn new(look: Look) -> EventLines {
        let zone = look.times.zone_at(Timestamp::now());
        EventLines { look, zone, headed: false }
    }

    /// The order an event is about.
    pub fn order(event: &EventView) -> Option<OrderId> {
        event.stream.split_once('-').and_then(|(_, id)| id.parse().ok())
    }

    /// Whether lines name orders by short id (not with `--wide`).
    pub fn wants_short_ids(&self) -> bool {
        !self.look.wide
    }

    /// One event, after the header if it is the first.
    pub fn line(&mut self, out: &mut impl Write, event: &EventView, short: &ShortIds) -> io::Result<()> {
        let times = &self.look.times;
        let (time, stream) = if self.look.wide {
            (times.millis(event.recorded_at), event.stream.clone())
        } else {
            let short = Self::order(event).and_then(|order| short.get(&order)).cloned();
            (times.seconds(event.recorded_at), short.unwrap_or_else(|| event.stream.clone()))
        };
        let zone = times.zone_at(event.recorded_at);
        let time = if zone == self.zone { time } else { format!("{time} {zone}") };
        let (time_width, stream_width) = if self.look.wide { (23, 45) } else { (19, 8) };
        if !self.headed {
            self.headed = true;
            let header = format!(
                "{:>8}  {:<time_width$}  {:<stream_width$}  {:<17}  DATA",
                "POSITION",
                format!("TIME ({})", self.zone),
                if self.look.wide { "STREAM" } else { "ORDER" },
                "TYPE",
            );
            writeln!(out, "{}", self.fit(&header))?;
        }
        let data = key_values(&event.data, times, event.recorded_at, self.look.wide);
        let line = format!(
            "{:>8}  {time:<time_width$}  {stream:<stream_width$}  {:<17}  {data}",
            event.position, event.event_type
        );
        writeln!(out, "{}", self.fit(line.trim_end()))
    }

    fn fit(&self, line: &str) -> String {
        match self.look.fit() {
            Some(columns) => cut(line, columns),
            None => line.to_owned(),
        }
    }
}

fn print_table(out: &mut impl Write, mut table: Table) -> io::Result<()> {
    for column in table.column_iter_mut() {
        column.set_padding((0, GAP as u16));
    }
    for line in table.lines() {
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Orders as an aligned table with a header: short ids, and the user cut to fit the terminal's
/// width (whole with `--wide`).
pub fn orders(out: &mut impl Write, orders: &[OrderView], short: &ShortIds, look: &Look) -> io::Result<()> {
    let format = if look.wide { Times::millis } else { Times::seconds };
    let created: Vec<Timestamp> = orders.iter().map(|order| order.created_at).collect();
    let updated: Vec<Timestamp> = orders.iter().map(|order| order.updated_at).collect();
    let (created_title, created) = look.times.column("CREATED", &created, format);
    let (updated_title, updated) = look.times.column("UPDATED", &updated, format);
    let ids: Vec<String> = orders.iter().map(|order| look.id(order.id, short)).collect();
    let totals: Vec<String> = orders.iter().map(|order| order.total.to_string()).collect();
    let statuses: Vec<String> = orders.iter().map(|order| order.status.to_string()).collect();
    let width = |cells: &[String], title: &str| {
        cells.iter().map(|cell| cell.width()).chain([title.width()]).max().unwrap_or(0)
    };
    let beside_user = width(&ids, "ID")
        + width(&totals, "TOTAL")
        + width(&statuses, "STATUS")
        + width(&created, &created_title)
        + width(&updated, &updated_title)
        + 5 * GAP;
    // Cut only as far as a name stays readable; a terminal narrower than that wraps.
    let user_width = look.fit().map(|columns| columns.saturating_sub(beside_user).max(6));
    let mut table = plain_table(look.color);
    table.set_header(["ID", "USER", "TOTAL", "STATUS", &created_title, &updated_title]);
    let rows = ids.into_iter().zip(totals).zip(created).zip(updated);
    for (order, (((id, total), created), updated)) in orders.iter().zip(rows) {
        let user = match user_width {
            Some(columns) => cut(&order.user, columns),
            None => order.user.clone(),
        };
        table.add_row(vec![
            Cell::new(id),
            Cell::new(user),
            Cell::new(total),
            status_cell(order.status, order.status.to_string()),
            Cell::new(created),
            Cell::new(updated),
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
    use jiff::Timestamp;

    use super::{Times, cut, key_values, quoted};

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a time")
    }

    #[test]
    fn control_characters_in_event_data_are_shown_escaped() {
        let data = serde_json::json!({"reason": "\u{1b}[2Jgone\n", "amount": 2});
        let shown = key_values(&data, &Times::new(true), at("2026-12-03T15:17:25Z"), false);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.contains(r#"reason="\u{1b}[2Jgone\u{a}""#), "{shown}");
    }

    #[test]
    fn values_that_would_not_read_back_as_one_are_quoted() {
        assert_eq!(quoted("payment_declined"), "payment_declined");
        assert_eq!(quoted("total is odd"), r#""total is odd""#);
        assert_eq!(quoted(""), r#""""#);
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quoted("a=b"), r#""a=b""#);
        let data = serde_json::json!({"reason": "total is odd", "amount": 3});
        let shown = key_values(&data, &Times::new(true), at("2026-12-03T15:17:25Z"), false);
        assert_eq!(shown, r#"amount=3 reason="total is odd""#);
    }

    /// A time in an event's data is in the table's zone, beside the event's own time: the time of
    /// day on the same day, the date too on another.
    #[test]
    fn times_in_event_data_are_in_the_tables_zone() {
        let utc = Times::new(true);
        let row = at("2026-12-03T15:17:25.100Z");
        let data = serde_json::json!({"due_at": "2026-12-03T15:17:28.100Z"});
        assert_eq!(key_values(&data, &utc, row, false), "due_at=15:17:28");
        assert_eq!(key_values(&data, &utc, row, true), "due_at=15:17:28.100");
        let data = serde_json::json!({"due_at": "2026-12-04T00:00:01.000Z"});
        assert_eq!(key_values(&data, &utc, row, false), "due_at=2026-12-04 00:00:01");
        assert_eq!(utc.zone_at(row), "UTC");
    }

    #[test]
    fn a_cut_keeps_to_the_width_wide_characters_counting_twice() {
        assert_eq!(cut("alice", 5), "alice");
        assert_eq!(cut("alexandria", 6), "alexa…");
        assert_eq!(cut("東京都の人", 6), "東京…");
    }
}
