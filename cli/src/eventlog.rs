//! The commands that read the event log or stream from it: `events`, `export`, `watch`, `replay`.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use orders_daemon::paths::Paths;
use orders_shared::OrderId;
use orders_shared::protocol::{
    Cursor, ErrorCode, EventPage, EventView, EventsRequest, ExportEnd, ExportRequest, ExportSummary,
    OrderView, ReplayProgress, ReplayReport, ReplayRequest, Reply, Request, WatchRequest,
};
use serde_json::Value;

use crate::args::{EventsArgs, ExportArgs};
use crate::client::Client;
use crate::failure::{Exit, Failure};
use crate::output::{self, EventLines, ShortIds};
use crate::reconnect::{self, Halt, Reconnect};

/// Replays shorter than this show no progress bar.
const QUIET_REPLAY: Duration = Duration::from_millis(300);

/// How the event commands print events: one JSON object a line with `--json`, else text lines
/// under a header, orders named by their short ids.
pub struct Printer {
    json: bool,
    lines: EventLines,
    names: Names,
}

impl Printer {
    /// Short ids are learnt from the daemon at `paths`, unless the output has no use for them
    /// (`--json`, `--wide`).
    pub fn new(json: bool, lines: EventLines, paths: &Paths) -> Printer {
        let names = Names::new((!json && lines.wants_short_ids()).then(|| paths.clone()));
        Printer { json, lines, names }
    }

    /// Prints `events`, having learnt the short ids of the orders they name.
    async fn print(&mut self, out: &mut impl Write, events: &[EventView]) -> Result<(), Failure> {
        let short = self.names.learn(events).await;
        for event in events {
            output::emit(out, self.json, event, |out| self.lines.line(out, event, short))?;
        }
        Ok(())
    }
}

/// The short ids of the orders that events name, learnt as the events come, over a connection of
/// their own (the first one streams); none with `--json` or `--wide`.
struct Names {
    paths: Option<Paths>,
    client: Option<Client>,
    known: ShortIds,
}

impl Names {
    /// Names that learn short ids from the daemon at `paths`; none when `None`.
    fn new(paths: Option<Paths>) -> Names {
        Names { paths, client: None, known: ShortIds::new() }
    }

    /// Learns the short ids of the orders `events` name that it does not know yet. Short ids
    /// are for the eye: when they cannot be had (the daemon went away), the lines show whole
    /// stream names, and the events go on.
    async fn learn(&mut self, events: &[EventView]) -> &ShortIds {
        let Some(paths) = &self.paths else { return &self.known };
        let unknown: Vec<OrderId> =
            events.iter().filter_map(EventLines::order).filter(|id| !self.known.contains_key(id)).collect();
        if unknown.is_empty() {
            return &self.known;
        }
        let learnt = async {
            let client = match &mut self.client {
                Some(client) => client,
                client => client.insert(crate::daemon::connect(paths, false).await?.0),
            };
            crate::ids::learn(client, &mut self.known, unknown).await
        };
        if learnt.await.is_err() {
            // A new connection next time: the daemon may be back.
            self.client = None;
        }
        &self.known
    }
}

/// Reads the next line of a streaming reply.
async fn next(client: &mut Client) -> Result<Reply, Failure> {
    match client.receive().await {
        Ok(Some(reply)) => Ok(reply),
        Ok(None) => Err(client.lost(std::io::ErrorKind::UnexpectedEof.into())),
        Err(error) => Err(client.lost(error)),
    }
}

/// `orders events`: the log from a cursor, page by page; with `--follow`, then every new event
/// as it is appended.
pub async fn events(
    client: &mut Client,
    args: EventsArgs,
    printer: &mut Printer,
    out: &mut impl Write,
) -> Result<(), Failure> {
    if args.follow {
        return follow(client, args, printer, out).await;
    }
    let mut from = args.from;
    let mut first = true;
    let mut left = args.limit;
    loop {
        let limit = left.map_or(EventsRequest::MAX_LIMIT, |left| left.min(EventsRequest::MAX_LIMIT));
        let request =
            Request::Events(EventsRequest { from: from.clone(), limit: Some(limit), follow: false });
        let page: EventPage = match client.call(&request).await {
            Err(failure) if first => return Err(refused_cursor(failure)),
            page => page?,
        };
        first = false;
        let read = page.events.len() as u64;
        printer.print(out, &page.events).await?;
        match (page.events.last(), left.as_mut()) {
            (_, Some(left)) if *left <= read => return Ok(()),
            (Some(_), _) if read == limit => {
                from = Some(page.next.clone());
                if let Some(left) = left.as_mut() {
                    *left -= read;
                }
            }
            _ => return Ok(()),
        }
    }
}

/// The last event `events --follow` printed: where it resumes.
struct Printed {
    cursor: Cursor,
    event_id: String,
    position: i64,
}

/// `orders events --follow`: the log, then each new event, until interrupted or `--limit`; across
/// daemon restarts (issue 18). After a lost connection it asks again from the cursor of the last
/// event it printed, which the daemon sends first: it must be that very event (else the log is
/// another one) and is left out, so nothing is printed twice and nothing is skipped.
async fn follow(
    client: &mut Client,
    args: EventsArgs,
    printer: &mut Printer,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let mut reconnect = Reconnect::begin(client).await?;
    let mut last: Option<Printed> = None;
    let mut left = args.limit;
    loop {
        // The event the daemon sends first when resuming, printed already.
        let mut again = last.as_ref().map(|last| last.event_id.clone());
        let request = Request::Events(EventsRequest {
            from: last.as_ref().map_or_else(|| args.from.clone(), |last| Some(last.cursor.clone())),
            limit: left.map(|left| left + u64::from(again.is_some())),
            follow: true,
        });
        let streamed = async {
            reconnect::open(client, &request).await?;
            loop {
                match reconnect::next_line(client).await? {
                    Reply::Event(event) => {
                        if let Some(printed) = again.take() {
                            if event.event_id != printed {
                                let what = format!(
                                    "position {} holds another event than the one printed",
                                    event.position
                                );
                                return Err(Halt::Failed(reconnect.log_replaced(&what)));
                            }
                            continue;
                        }
                        printer.print(out, std::slice::from_ref(&event)).await?;
                        out.flush()?;
                        left = left.map(|left| left.saturating_sub(1));
                        last = Some(Printed {
                            cursor: event.cursor,
                            event_id: event.event_id,
                            position: event.position,
                        });
                    }
                    reply => {
                        return match client.data::<Value>(reply) {
                            Ok(_) => Ok(()),
                            // Its own cursor unknown to the daemon: another log.
                            Err(failure)
                                if again.is_some() && failure.refusal == Some(ErrorCode::InvalidRequest) =>
                            {
                                Err(Halt::Failed(
                                    reconnect.log_replaced("it does not know the last event printed"),
                                ))
                            }
                            Err(failure) if last.is_none() => Err(Halt::Failed(refused_cursor(failure))),
                            Err(failure) => Err(Halt::Failed(failure)),
                        };
                    }
                }
            }
        };
        let loss = match streamed.await {
            Ok(()) => return Ok(()),
            Err(Halt::Failed(failure)) => return Err(failure),
            Err(Halt::Lost(loss)) => loss,
        };
        if left == Some(0) {
            return Ok(());
        }
        let resuming = match &last {
            Some(last) => format!("following on after position {}", last.position),
            None => "following from the start again".to_owned(),
        };
        *client = reconnect.rejoin(loss, &resuming).await?;
    }
}

/// `orders export`: each record line's object, as the daemon wrote it, on a line of `out`, then
/// the end line (`{"end":summary}`); the summary on stderr too, as JSON with `--json`, else as a
/// sentence when stderr is a terminal. An export the daemon could not finish is a failure, and
/// what was printed has no end line.
pub async fn export(
    client: &mut Client,
    args: ExportArgs,
    json: bool,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let request = Request::Export(ExportRequest { from: args.from, to: args.to });
    let mut reply = client.first_reply(&request, None).await.map_err(refused_cursor)?;
    loop {
        if let Reply::Record(record) = reply {
            out.write_all(record.get().as_bytes())?;
            out.write_all(b"\n")?;
            reply = next(client).await.map_err(|failure| {
                failure.with_hint(
                    "the export is incomplete: what was printed has no end line, and `orders import` \
                     refuses it; run the export again",
                )
            })?;
            continue;
        }
        let summary: ExportSummary = client.data(reply).map_err(refused_cursor)?;
        // The last line: without it, `import` knows an export cut short.
        let end = ExportEnd { end: summary };
        output::json(&mut *out, &end)?;
        out.flush()?;
        let summary = end.end;
        if json {
            let line =
                serde_json::to_string(&summary).map_err(|e| Failure::new(Exit::Failure, e.to_string()))?;
            eprintln!("{line}");
        } else if std::io::stderr().is_terminal() {
            let range = match (&summary.first, &summary.last) {
                (Some(first), Some(last)) => format!(" ({first} to {last})"),
                _ => String::new(),
            };
            eprintln!("exported {} events{range}; go on later with --from {}", summary.events, summary.next);
        }
        return Ok(());
    }
}

/// The daemon refused the request made of the user's own `--from`: a usage error (exit 2), as a
/// bad argument is.
fn refused_cursor(failure: Failure) -> Failure {
    if failure.refusal == Some(ErrorCode::InvalidRequest) {
        return Failure { exit: Exit::Usage, ..failure };
    }
    failure
}

/// `orders watch`: an order's events as they happen, then its settled state; across daemon
/// restarts (issue 18): it watches again and leaves out the events it printed already.
pub async fn watch(
    client: &mut Client,
    id: OrderId,
    printer: &mut Printer,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let json = printer.json;
    let mut reconnect = Reconnect::begin(client).await?;
    let mut printed: HashSet<String> = HashSet::new();
    loop {
        let watched = async {
            reconnect::open(client, &Request::Watch(WatchRequest { id })).await?;
            loop {
                match reconnect::next_line(client).await? {
                    Reply::Event(event) => {
                        if printed.insert(event.event_id.clone()) {
                            printer.print(out, std::slice::from_ref(&event)).await?;
                            out.flush()?;
                        }
                    }
                    reply => return Ok::<_, Halt>(client.data::<OrderView>(reply)?),
                }
            }
        };
        let order = match watched.await {
            Ok(order) => order,
            Err(Halt::Failed(failure)) => return Err(failure),
            Err(Halt::Lost(loss)) => {
                *client = reconnect.rejoin(loss, "watching the order again").await?;
                continue;
            }
        };
        output::emit(out, json, &order, |out| match order.cancel_reason {
            Some(reason) => writeln!(out, "order {} is {} ({reason})", order.id, order.status),
            None => writeln!(out, "order {} is {}", order.id, order.status),
        })?;
        // Exit code 8 for a cancelled order: the last line said it already (issue 18).
        return match order.status {
            orders_shared::OrderStatus::Cancelled => Err(Failure::silent(Exit::Cancelled)),
            _ => Ok(()),
        };
    }
}

/// `orders replay [--check]`: relays the daemon's progress to a bar on a terminal, then reports.
pub async fn replay(
    client: &mut Client,
    check: bool,
    json: bool,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let mut first = Some(client.first_reply(&Request::Replay(ReplayRequest { check }), None).await?);
    // A `dumb` terminal cannot redraw a line: no bar there (issue 18).
    let show_bar = !json
        && std::io::stderr().is_terminal()
        && std::env::var_os("TERM").is_none_or(|term| term != "dumb");
    let mut bar: Option<ReplayBar> = None;
    let report: ReplayReport = loop {
        let reply = match first.take() {
            Some(reply) => reply,
            None => next(client).await?,
        };
        let Reply::Progress(progress) = reply else {
            if let Some(bar) = bar.take() {
                bar.bar.finish_and_clear();
            }
            break client.data(reply)?;
        };
        if show_bar && bar.is_none() && progress.elapsed_ms >= QUIET_REPLAY.as_millis() as u64 {
            bar = Some(ReplayBar::new(&progress, check));
        }
        if let Some(bar) = &bar {
            bar.show(&progress);
        }
    };
    output::emit(out, json, &report, |out| print_report(out, &report))?;
    if report.differences > 0 {
        return Err(Failure::new(
            Exit::CheckFailed,
            format!("the read model differs from the event log in {} orders", report.differences),
        )
        .with_hint(format!("rebuild it with `{}`", client.paths().command_line("replay"))));
    }
    Ok(())
}

/// The bar of a replay that has run long enough to show one, drawn from the daemon's figures
/// alone (issue 18): indicatif's own estimate saw the first jump (0 to 108,000 events at once) as
/// the pace of a moment, and showed 775,681,156/s and 0 s left for a replay going at 328,000/s.
struct ReplayBar {
    bar: ProgressBar,
    /// The replay's elapsed time as the daemon last told it, read by the template's `{pace}`.
    elapsed_ms: Arc<AtomicU64>,
}

impl ReplayBar {
    /// At the daemon's position from its first frame: never a frame at 0 before it.
    fn new(progress: &ReplayProgress, check: bool) -> ReplayBar {
        let elapsed_ms = Arc::new(AtomicU64::new(progress.elapsed_ms));
        let elapsed = Arc::clone(&elapsed_ms);
        let style =
            ProgressStyle::with_template("{prefix} [{wide_bar}] {human_pos}/{human_len} events ({pace})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .with_key("pace", move |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                    let progress = ReplayProgress {
                        applied: state.pos(),
                        total: state.len().unwrap_or(0),
                        elapsed_ms: elapsed.load(Ordering::Relaxed),
                    };
                    let _ = out.write_str(&pace(&progress));
                })
                .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(progress.total), ProgressDrawTarget::stderr())
            .with_style(style)
            .with_prefix(if check { "checking" } else { "replaying" })
            .with_position(progress.applied);
        ReplayBar { bar, elapsed_ms }
    }

    /// The daemon's latest figures, in one update: one frame, never a pace of one moment beside
    /// the position of another.
    fn show(&self, progress: &ReplayProgress) {
        self.elapsed_ms.store(progress.elapsed_ms, Ordering::Relaxed);
        self.bar.update(|state| {
            state.set_len(progress.total);
            state.set_pos(progress.applied);
        });
    }
}

/// `328,267/s, 1 s left`: the replay's events over the time it has run, and the time the rest
/// takes at that pace, in whole seconds rounded up (a replay not done never shows 0 s left).
fn pace(progress: &ReplayProgress) -> String {
    let Some(per_second) = progress.events_per_second() else { return "starting".to_owned() };
    let per_second = indicatif::HumanCount(per_second.round() as u64);
    match progress.time_left() {
        Some(left) => format!("{per_second}/s, {} left", whole_seconds_up(left)),
        None => format!("{per_second}/s"),
    }
}

/// A duration as people read a countdown: `1 s`, `59 s`, `2 min 5 s`, `1 h 3 min`, rounded up.
fn whole_seconds_up(duration: Duration) -> String {
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min {} s", seconds / 60, seconds % 60),
        _ => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
    }
}

fn print_report(out: &mut impl Write, report: &ReplayReport) -> std::io::Result<()> {
    let seconds = report.duration_ms as f64 / 1000.0;
    let speed = report.events_per_second.round();
    if !report.check {
        return writeln!(
            out,
            "replayed {} events into {} orders in {seconds:.2} s ({speed} events/s)",
            report.events, report.orders
        );
    }
    if report.differences == 0 {
        return writeln!(
            out,
            "the read model matches the event log: {} events, {} orders, checked in {seconds:.2} s",
            report.events, report.orders
        );
    }
    writeln!(out, "{} orders differ between the read model and the event log:", report.differences)?;
    for difference in &report.examples {
        writeln!(
            out,
            "  {}: {}",
            difference.id,
            describe(difference.live.as_ref(), difference.rebuilt.as_ref())
        )?;
    }
    if report.examples.len() as u64 > report.differences {
        writeln!(out, "  ... and {} more", report.differences - report.examples.len() as u64)?;
    }
    Ok(())
}

/// What differs between a live row and the rebuilt one, field by field.
fn describe(live: Option<&Value>, rebuilt: Option<&Value>) -> String {
    match (live, rebuilt) {
        (None, _) => "missing from the read model".to_owned(),
        (_, None) => "in the read model but not in the event log".to_owned(),
        (Some(live), Some(rebuilt)) => {
            let empty = serde_json::Map::new();
            let (live, rebuilt) = (live.as_object().unwrap_or(&empty), rebuilt.as_object().unwrap_or(&empty));
            let fields: Vec<String> = rebuilt
                .iter()
                .filter(|(key, value)| live.get(*key) != Some(value))
                .map(|(key, value)| {
                    format!("{key} is {} but the log says {value}", live.get(key).unwrap_or(&Value::Null))
                })
                .collect();
            fields.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use orders_shared::protocol::ReplayProgress;

    use super::{pace, whole_seconds_up};

    #[test]
    fn the_pace_is_the_daemon_s_and_the_time_left_never_0_before_the_end() {
        let early = ReplayProgress { applied: 108_000, total: 328_000, elapsed_ms: 329 };
        assert_eq!(pace(&early), "328,267/s, 1 s left");
        let slow = ReplayProgress { applied: 2_000, total: 1_000_000, elapsed_ms: 1_000 };
        assert_eq!(pace(&slow), "2,000/s, 8 min 19 s left");
        let almost = ReplayProgress { applied: 999_999, total: 1_000_000, elapsed_ms: 3_000 };
        assert_eq!(pace(&almost), "333,333/s, 1 s left");
        let done = ReplayProgress { applied: 10, total: 10, elapsed_ms: 3_000 };
        assert_eq!(pace(&done), "3/s, 0 s left");
        assert_eq!(pace(&ReplayProgress { applied: 0, total: 10, elapsed_ms: 0 }), "starting");
    }

    #[test]
    fn a_countdown_reads_in_whole_seconds_rounded_up() {
        assert_eq!(whole_seconds_up(Duration::from_millis(1)), "1 s");
        assert_eq!(whole_seconds_up(Duration::from_secs(59)), "59 s");
        assert_eq!(whole_seconds_up(Duration::from_millis(59_001)), "1 min 0 s");
        assert_eq!(whole_seconds_up(Duration::from_secs(3_780)), "1 h 3 min");
    }
}
