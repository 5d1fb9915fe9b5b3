//! What the commands print: aligned text for people, JSON for scripts. Errors go to stderr.

use std::collections::HashMap;
use std::io::{self, Write};

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

    #[cfg(test)]
    fn in_zone(zone: &str) -> Times {
        Times { zone: TimeZone::get(zone).expect("a zone") }
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

    /// A column of times under `title`, to the second (to the millisecond when `wide`), with
    /// the zone in the header: `CREATED (CET)`. Times on both sides of a change to or from summer
    /// time are the zone's wall-clock times all the same, and the header names both
    /// (`CREATED (EST/EDT)`), so that the column keeps its width; `--wide` puts each time's zone
    /// beside it.
    fn column(&self, title: &str, at: &[Timestamp], wide: bool) -> (String, Vec<String>) {
        let format = if wide { Times::millis } else { Times::seconds };
        let zones: Vec<String> = at.iter().map(|at| self.zone_at(*at)).collect();
        let mut distinct: Vec<&str> = Vec::new();
        for zone in &zones {
            if !distinct.contains(&zone.as_str()) {
                distinct.push(zone);
            }
        }
        if wide && distinct.len() > 1 {
            let cells = at.iter().zip(&zones).map(|(at, zone)| format!("{} {zone}", format(self, *at)));
            return (title.to_owned(), cells.collect());
        }
        let title =
            if distinct.is_empty() { title.to_owned() } else { format!("{title} ({})", distinct.join("/")) };
        (title, at.iter().map(|at| format(self, *at)).collect())
    }
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
    /// nothing is shown escaped, and a name with whitespace at an end (stored before the rule
    /// against it) quoted, so that `"alice "` does not pass for `alice` (issue 18).
    fn stored(text: &str) -> Cell {
        if text.is_empty() || text.trim() != text {
            return Cell::new(quoted(text));
        }
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
                line.push_str(&" ".repeat(GAP));
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

/// One order, one field a line; transitions and the cancel reason only when they happened;
/// each time with its zone.
pub fn order(out: &mut impl Write, order: &OrderView, look: &Look) -> io::Result<()> {
    let status = match order.cancel_reason {
        Some(reason) => format!("{} ({reason})", order.status),
        None => order.status.to_string(),
    };
    let time = |at: Timestamp| Cell::new(format!("{} {}", look.times.seconds(at), look.times.zone_at(at)));
    let mut rows = vec![
        vec![Cell::new("id:"), Cell::new(order.id)],
        vec![Cell::new("user:"), Cell::stored(&order.user)],
        vec![Cell::new("total:"), Cell::new(order.total)],
        vec![Cell::new("status:"), Cell::coloured(status, Colour::of(order.status))],
        vec![Cell::new("created:"), time(order.created_at)],
    ];
    let transitions = [
        ("approved:", order.approved_at),
        ("delivered:", order.delivered_at),
        ("cancelled:", order.cancelled_at),
    ];
    for (name, at) in transitions {
        if let Some(at) = at {
            rows.push(vec![Cell::new(name), time(at)]);
        }
    }
    rows.push(vec![Cell::new("updated:"), time(order.updated_at)]);
    print_columns(out, &rows, &[], look.color)
}

/// An order's events as a table (`history`): where in the log, when, what, and the payload as
/// `key=value`, cut to the terminal's width.
pub fn events(out: &mut impl Write, events: &[EventView], look: &Look) -> io::Result<()> {
    let at: Vec<Timestamp> = events.iter().map(|event| event.recorded_at).collect();
    let (time_title, times) = look.times.column("TIME", &at, look.wide);
    let positions: Vec<String> = events.iter().map(|event| event.position.to_string()).collect();
    let types: Vec<String> = events
        .iter()
        .map(|event| orders_shared::text::escaped(&event.event_type, false).into_owned())
        .collect();
    let before_data =
        widest(&positions, "POSITION") + widest(&times, &time_title) + widest(&types, "TYPE") + 3 * GAP;
    let header = vec![Cell::new("POSITION"), Cell::new(time_title), Cell::new("TYPE"), Cell::new("DATA")];
    let mut rows = vec![header];
    for (event, ((position, time), event_type)) in
        events.iter().zip(positions.into_iter().zip(times).zip(types))
    {
        let data = key_values(&event.data, &look.times, event.recorded_at, look.wide);
        let data = match look.fit() {
            Some(columns) => cut(&data, columns.saturating_sub(before_data).max(MIN_CUT)),
            None => data,
        };
        rows.push(vec![Cell::new(position), Cell::new(time), Cell::new(event_type), Cell::new(data)]);
    }
    print_columns(out, &rows, &[0], false)
}

/// The columns between two cells of a table.
const GAP: usize = 2;

/// A cell is cut no shorter than this; a terminal narrower than the rest of the row wraps.
const MIN_CUT: usize = 6;

/// An event's line is cut no shorter than its position, time, order and type.
const MIN_LINE: usize = 60;

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
        EventLines { look, zone: String::new(), headed: false }
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
        if !self.headed {
            // The zone of the first event: what the lines below are in, but for a change to or
            // from summer time on the way, which those lines then name.
            self.zone.clone_from(&zone);
        }
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

    /// Cut to the terminal's width, but never shorter than the line's first columns: a narrower
    /// terminal wraps.
    fn fit(&self, line: &str) -> String {
        match self.look.fit() {
            Some(columns) => cut(line, columns.max(MIN_LINE)),
            None => line.to_owned(),
        }
    }
}

/// Orders as an aligned table with a header: short ids, and the user cut to fit the terminal's
/// width (whole with `--wide`).
pub fn orders(out: &mut impl Write, orders: &[OrderView], short: &ShortIds, look: &Look) -> io::Result<()> {
    let created: Vec<Timestamp> = orders.iter().map(|order| order.created_at).collect();
    let updated: Vec<Timestamp> = orders.iter().map(|order| order.updated_at).collect();
    let (created_title, created) = look.times.column("CREATED", &created, look.wide);
    let (updated_title, updated) = look.times.column("UPDATED", &updated, look.wide);
    let ids: Vec<String> = orders.iter().map(|order| look.id(order.id, short)).collect();
    let totals: Vec<String> = orders.iter().map(|order| order.total.to_string()).collect();
    let statuses: Vec<String> = orders.iter().map(|order| order.status.to_string()).collect();
    let beside_user = widest(&ids, "ID")
        + widest(&totals, "TOTAL")
        + widest(&statuses, "STATUS")
        + widest(&created, &created_title)
        + widest(&updated, &updated_title)
        + 5 * GAP;
    // Cut only as far as a name stays readable; a terminal narrower than that wraps.
    let user_width = look.fit().map(|columns| columns.saturating_sub(beside_user).max(MIN_CUT));
    let header = ["ID", "USER", "TOTAL", "STATUS", &created_title, &updated_title].map(Cell::new).into();
    let mut rows = vec![header];
    let columns = ids.into_iter().zip(totals).zip(created).zip(updated);
    for (order, (((id, total), created), updated)) in orders.iter().zip(columns) {
        let mut user = Cell::stored(&order.user);
        if let Some(width) = user_width {
            user.text = cut(&user.text, width);
        }
        rows.push(vec![
            Cell::new(id),
            user,
            Cell::new(total),
            Cell::coloured(order.status, Colour::of(order.status)),
            Cell::new(created),
            Cell::new(updated),
        ]);
    }
    print_columns(out, &rows, &[2], look.color)
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

/// The daemons sharing a PostgreSQL database, one line each: this one marked, the silent ones
/// said to be.
fn cluster_rows(out: &mut impl Write, daemons: &[orders_shared::protocol::ClusterDaemon]) -> io::Result<()> {
    if daemons.is_empty() {
        return Ok(());
    }
    let live = daemons.iter().filter(|daemon| daemon.live).count();
    writeln!(out, "  {:<10} {live} live on this database", "daemons:")?;
    for daemon in daemons {
        let heard = Timestamp::now().duration_since(daemon.heartbeat_at);
        let heard = jiff::SignedDuration::from_secs(heard.as_secs().max(0));
        let state = match (daemon.this, daemon.live) {
            (true, _) => "this daemon".to_owned(),
            (false, true) => format!("heartbeat {heard:#} ago"),
            (false, false) => format!("silent for {heard:#} (gone?)"),
        };
        writeln!(
            out,
            "    pid {} on {}, orders {}, since {}: {state}",
            daemon.pid,
            daemon.host,
            daemon.version,
            daemon.started_at.strftime("%Y-%m-%d %H:%M:%S UTC")
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
    cluster_rows(out, &status.daemons)?;
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

    use super::{Cell, Colour, Times, cut, key_values, print_columns, quoted};

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a time")
    }

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
        assert_eq!(Cell::stored("alice ").text, r#""alice ""#, "not to pass for alice");
        assert_eq!(Cell::stored(" alice").text, r#"" alice""#);
        assert_eq!(Cell::stored("bob smith").text, "bob smith");
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

    /// Times on both sides of a change to summer time keep the column's width: both zones in the
    /// header; `--wide` names each time's.
    #[test]
    fn a_column_across_summer_time_names_both_zones_in_its_header() {
        let new_york = Times::in_zone("America/New_York");
        let at = [at("2026-01-15T12:00:00Z"), at("2026-07-15T12:00:00Z")];
        let (title, cells) = new_york.column("CREATED", &at, false);
        assert_eq!(title, "CREATED (EST/EDT)");
        assert_eq!(cells, ["2026-01-15 07:00:00", "2026-07-15 08:00:00"]);
        let (title, cells) = new_york.column("CREATED", &at, true);
        assert_eq!(title, "CREATED");
        assert_eq!(cells, ["2026-01-15 07:00:00.000 EST", "2026-07-15 08:00:00.000 EDT"]);
        let (title, _) = new_york.column("CREATED", &at[..1], true);
        assert_eq!(title, "CREATED (EST)");
    }

    #[test]
    fn a_cut_keeps_to_the_width_wide_characters_counting_twice() {
        assert_eq!(cut("alice", 5), "alice");
        assert_eq!(cut("alexandria", 6), "alexa…");
        assert_eq!(cut("東京都の人", 6), "東京…");
    }
}
