//! What a person sees on a terminal (issue 18): a real pseudo-terminal, rendered.

use crate::fixture::TestDaemon;
use crate::terminal::Screen;

/// `--color auto` colours a terminal, and `NO_COLOR` takes the colour away.
#[test]
fn a_terminal_gets_colour_unless_no_color() {
    let daemon = TestDaemon::start();
    let id = daemon.create("alice", 2);
    let mut coloured = daemon.command();
    coloured.env_remove("NO_COLOR").args(["show", &id]);
    let screen = Screen::run(&coloured, 80);
    assert_eq!(screen.code(), 0, "{}", screen.text());
    assert!(screen.raw.contains("\u{1b}["), "colour on a terminal: {:?}", screen.raw);
    let screen = Screen::run(daemon.command().args(["show", &id]), 80);
    assert!(!screen.raw.contains('\u{1b}'), "NO_COLOR: {:?}", screen.raw);
    assert!(screen.text().contains("alice"), "{}", screen.text());
    assert!(screen.wrapped_rows().is_empty(), "show fits 80 columns:\n{}", screen.text());
}
/// A name longer than a table leaves room for.
const LONG_NAME: &str = "a customer with a name long enough to push every table past the edge";

/// `orders list` in an 80-column terminal: no row wraps; a long name is cut, marked with an
/// ellipsis, and `--wide` shows it whole (and whole ids).
#[test]
fn list_fits_eighty_columns() {
    let daemon = TestDaemon::start();
    for total in 1..=4 {
        daemon.create("alice", total);
    }
    let long = daemon.create(LONG_NAME, 2);
    let screen = Screen::run(daemon.command().args(["list", "--user", "alice"]), 80);
    assert_eq!(screen.code(), 0, "{}", screen.text());
    assert!(screen.wrapped_rows().is_empty(), "wrapped rows:\n{}", screen.text());
    assert_eq!(screen.text().lines().count(), 5, "a header and four rows:\n{}", screen.text());

    let screen = Screen::run(daemon.command().arg("list"), 80);
    assert!(screen.wrapped_rows().is_empty(), "wrapped rows:\n{}", screen.text());
    assert!(screen.text().contains("a custom") && screen.text().contains('…'), "{}", screen.text());
    let wide = Screen::run(daemon.command().args(["list", "--wide"]), 200);
    assert!(wide.text().contains(LONG_NAME) && wide.text().contains(&long), "{}", wide.text());
}

/// `events`, `history` and `watch` in 80 columns: a header, then one line an event, cut to fit;
/// `--wide` shows the whole stream and payload.
#[test]
fn event_lines_fit_eighty_columns() {
    let daemon = TestDaemon::start();
    let id = daemon.create(LONG_NAME, 2);
    daemon.wait_for_status(&id, "delivered");
    for args in [vec!["events"], vec!["history", &id], vec!["watch", &id]] {
        let screen = Screen::run(daemon.command().args(&args), 80);
        assert_eq!(screen.code(), 0, "{args:?}: {}", screen.text());
        assert!(screen.wrapped_rows().is_empty(), "{args:?} wrapped rows:\n{}", screen.text());
        let text = screen.text();
        assert!(text.lines().next().is_some_and(|header| header.contains("POSITION")), "{args:?}: {text}");
        assert!(text.contains("OrderPlaced") && text.contains('…'), "{args:?}: {text}");
    }
    let wide = Screen::run(daemon.command().args(["events", "--wide"]), 250);
    let text = wide.text();
    assert!(text.contains(&format!("order-{id}")) && text.contains(LONG_NAME), "{text}");
}

/// `create --wait` on a terminal shows the order's status on stderr as it changes, on one line;
/// stdout is the id alone as ever, and off a terminal nothing is shown (issue 18).
#[test]
fn create_wait_shows_the_status_as_it_changes_on_a_terminal() {
    let daemon = TestDaemon::start();
    let screen =
        Screen::run(daemon.command().args(["create", "--user", "tia", "--total", "2", "--wait"]), 80);
    let text = screen.text();
    assert_eq!(screen.code(), 0, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "the id, then the statuses: {text}");
    assert_eq!(lines[0].len(), 36, "the id first: {text}");
    assert_eq!(lines[1], "pending → approved → delivered", "{text}");

    let screen =
        Screen::run(daemon.command().args(["create", "--user", "tia", "--total", "3", "--wait"]), 80);
    let text = screen.text();
    assert_eq!(screen.code(), 8, "an odd total is declined and cancelled: {text}");
    assert!(text.contains("\npending → cancelled\n"), "{text}");

    // stderr elsewhere: the terminal gets the id alone.
    let mut command = daemon.command();
    command.args(["create", "--user", "tia", "--total", "2", "--wait"]);
    let screen = Screen::run_with(&command, 80, |c| c.stderr(std::process::Stdio::null()));
    assert_eq!(screen.code(), 0);
    assert_eq!(screen.text().len(), 36, "the id alone: {}", screen.text());
    let output = daemon.run(["create", "--user", "tia", "--total", "2", "--wait"]);
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stderr), "", "nothing off a terminal");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim().len(), 36);
}

/// A command that starts the daemon says so once on a terminal, in text mode; the daemon it
/// started lets go of the terminal (the screen ends); with `--json`, or off a terminal, nothing
/// is said (issue 18).
#[test]
fn autostart_is_told_once_on_a_terminal_and_nowhere_else() {
    let daemon = TestDaemon::stopped_with(&[]);
    let mut create = daemon.command_with_autostart();
    create.args(["create", "--user", "ava", "--total", "2"]);
    let screen = Screen::run(&create, 80);
    let text = screen.text();
    assert_eq!(screen.code(), 0, "{text}");
    let pid =
        orders_daemon::lock::holder(&daemon.data_dir()).and_then(|holder| holder.pid).expect("a daemon");
    let told = format!("started the orders daemon in the background (pid {pid}, data in {}", daemon.store());
    assert_eq!(text.matches(&told).count(), 1, "{text}");
    assert_eq!(text.matches("started the orders daemon").count(), 1, "once: {text}");
    // Running now: nothing to tell.
    let screen = Screen::run(&create, 80);
    assert!(!screen.text().contains("started"), "{}", screen.text());

    let stop = daemon.command().args(["daemon", "stop"]).output().expect("daemon stop");
    assert!(stop.status.success(), "{stop:?}");
    let mut json = daemon.command_with_autostart();
    json.args(["create", "--user", "ava", "--total", "2", "--json"]);
    let screen = Screen::run(&json, 200);
    assert_eq!(screen.code(), 0, "{}", screen.text());
    assert!(!screen.text().contains("started"), "not with --json: {}", screen.text());

    let stop = daemon.command().args(["daemon", "stop"]).output().expect("daemon stop");
    assert!(stop.status.success(), "{stop:?}");
    let output = daemon
        .command_with_autostart()
        .args(["create", "--user", "ava", "--total", "2"])
        .output()
        .expect("create");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stderr), "", "off a terminal, nothing is said");
    assert!(orders_daemon::lock::holder(&daemon.data_dir()).is_some(), "it did start one");
}

/// The README's main job (issue 18): the daemon the first command starts runs in the
/// background, detached from the terminal (which closes when the command ends, the daemon
/// holding none of it) and on after it closed, until `orders daemon stop`.
#[test]
fn an_autostarted_daemon_outlives_the_terminal_until_stopped() {
    let daemon = TestDaemon::stopped_with(&[]);
    let mut create = daemon.command_with_autostart();
    create.args(["create", "--user", "alice", "--total", "2", "--wait"]);
    let screen = Screen::run(&create, 80);
    assert_eq!(screen.code(), 0, "{}", screen.text());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let status = daemon.json(["daemon", "status"]);
    assert_eq!(status["orders"], 1, "the daemon runs on after the terminal closed: {status}");
    assert!(daemon.ok(["daemon", "stop"]).starts_with("daemon stopped"));
    assert_eq!(crate::fixture::code(&daemon.run(["daemon", "status"])), 5, "stopped");
}

/// The colour sequences in `raw` and the text each one colours, up to the next sequence.
fn coloured_spans(raw: &str) -> Vec<(String, String)> {
    let mut spans = Vec::new();
    let mut rest = raw;
    while let Some(start) = rest.find("\u{1b}[") {
        let after = &rest[start + 2..];
        let Some(end) = after.find(|c: char| !(c.is_ascii_digit() || c == ';')) else { break };
        let (code, tail) = (&after[..end], &after[end..]);
        rest = tail.strip_prefix('m').unwrap_or(tail);
        let text = &rest[..rest.find('\u{1b}').unwrap_or(rest.len())];
        spans.push((code.to_owned(), text.to_owned()));
    }
    spans
}

/// `--color always` wins over NO_COLOR (issue 18): the status is coloured, and never a bare
/// `\e[m` (an empty colour, as crossterm wrote under NO_COLOR).
#[test]
fn color_always_wins_over_no_color_and_writes_no_empty_sequence() {
    let daemon = TestDaemon::start();
    let id = daemon.create("alice", 2);
    daemon.wait_for_status(&id, "delivered");
    let screen = Screen::run(daemon.command().args(["--color", "always", "show", &id]), 80);
    assert_eq!(screen.code(), 0, "{}", screen.text());
    let spans = coloured_spans(&screen.raw);
    assert!(spans.iter().any(|(_, text)| text == "delivered"), "the status is coloured: {:?}", screen.raw);
    assert!(spans.iter().all(|(code, _)| !code.is_empty()), "no bare \\e[m: {:?}", screen.raw);
}

/// Colour wraps only the visible text: no padding inside the codes, in `show` (where the status
/// is padded to the widest value) and in `list` (statuses of different lengths).
#[test]
fn colour_wraps_only_the_visible_text() {
    let daemon = TestDaemon::start_with(&[("ORDERS_DELIVERY_DELAY", "1h")]);
    let approved = daemon.create("alice", 2);
    let cancelled = daemon.create("bob", 3);
    daemon.wait_for_status(&approved, "approved");
    daemon.wait_for_status(&cancelled, "cancelled");
    for args in [vec!["show", approved.as_str()], vec!["show", cancelled.as_str()], vec!["list"]] {
        let mut command = daemon.command();
        command.env_remove("NO_COLOR").args(&args);
        let screen = Screen::run(&command, 120);
        assert_eq!(screen.code(), 0, "{}", screen.text());
        let spans = coloured_spans(&screen.raw);
        assert!(!spans.is_empty(), "{args:?}: coloured on a terminal: {:?}", screen.raw);
        for (code, text) in &spans {
            if code != "39" && code != "0" && !code.is_empty() {
                assert_eq!(text.trim(), text, "{args:?}: padding inside the colour: {:?}", screen.raw);
                assert!(!text.is_empty(), "{args:?}: an empty colour: {:?}", screen.raw);
            }
        }
        assert!(screen.wrapped_rows().is_empty(), "{args:?}:\n{}", screen.text());
    }
}

/// With colour off — `--color never`, or `TERM=dumb` — not one escape byte, clap's own help and
/// usage errors included (issue 18: clap coloured them whatever `--color` said).
#[test]
fn colour_off_means_not_one_escape_byte() {
    let daemon = TestDaemon::start();
    let id = daemon.create("alice", 2);
    daemon.wait_for_status(&id, "delivered");
    let commands: [&[&str]; 5] = [
        &["show", &id],
        &["list"],
        &["show", "--bogus"],
        &["help", "create"],
        &["create", "--user", " x", "--total", "2"],
    ];
    for args in commands {
        let mut never = daemon.command();
        never.env_remove("NO_COLOR").arg("--color=never").args(args);
        let mut dumb = daemon.command();
        dumb.env_remove("NO_COLOR").env("TERM", "dumb").args(args);
        for (how, command) in [("--color never", never), ("TERM=dumb", dumb)] {
            let screen = Screen::run(&command, 80);
            assert!(!screen.raw.contains('\u{1b}'), "{how} {args:?}: {:?}", screen.raw);
            assert!(!screen.text().is_empty(), "{how} {args:?} printed something");
        }
        // And the same command coloured when colour is on, so that the check above means something.
        let mut always = daemon.command();
        always.arg("--color=always").args(args);
        let screen = Screen::run(&always, 80);
        assert!(screen.raw.contains('\u{1b}'), "--color always {args:?}: {:?}", screen.raw);
    }
}

/// One frame of `replay`'s progress bar, as drawn.
#[derive(Debug)]
struct BarFrame {
    position: u64,
    total: u64,
    /// Events a second, as shown.
    pace: Option<u64>,
    /// Whole seconds left, as shown.
    left: Option<u64>,
}

/// Every frame of the bar in what a command wrote: `[===> ] 12,000/54,000 events (60,123/s, 1 s
/// left)`.
fn bar_frames(raw: &str) -> Vec<BarFrame> {
    let number = |text: &str| text.trim().replace(',', "").parse::<u64>().ok();
    let mut frames = Vec::new();
    let mut rest = raw;
    while let Some(at) = rest.find(" events (") {
        let (before, after) = (&rest[..at], &rest[at + " events (".len()..]);
        rest = after;
        let Some(counts) = before.rsplit("] ").next() else { continue };
        let Some((position, total)) = counts.split_once('/') else { continue };
        let figures = &after[..after.find(')').unwrap_or(after.len())];
        let pace = figures.split_once("/s").and_then(|(pace, _)| number(pace));
        let left = figures
            .split_once(", ")
            .and_then(|(_, left)| left.strip_suffix(" s left"))
            .and_then(|left| left.rsplit(' ').next())
            .and_then(number);
        if let (Some(position), Some(total)) = (number(position), number(total)) {
            frames.push(BarFrame { position, total, pace, left });
        }
    }
    frames
}

/// `orders replay` on a terminal (issue 18): the bar shows the daemon's figures. Its position is
/// the events applied (never above the total, never back to 0, never 0 in a first frame); its
/// pace is at most the events over the time the whole command took (twice that, for a noisy
/// machine: the bar once showed 2,000 times the real pace); before the end the time left is
/// never 0 s. The daemon pauses before each chunk of 2,000 events, so that the replay lasts
/// about a second whatever the machine's speed (a bar shows from 0.3 s on).
#[test]
fn replay_progress_shows_the_daemon_s_figures() {
    let daemon = TestDaemon::start_with(&[("ORDERS_TEST_REPLAY_PAUSE_MS", "100")]);
    daemon.bulk_create(4_000, 40);
    daemon.wait_until_quiet();
    let events = daemon.json(["daemon", "status"])["events"].as_u64().expect("events");
    let started = std::time::Instant::now();
    let screen = Screen::run(daemon.command().arg("replay"), 120);
    let took = started.elapsed();
    assert_eq!(screen.code(), 0, "{}", screen.text());
    let frames = bar_frames(&screen.raw);
    assert!(!frames.is_empty(), "no bar in {took:?} for {events} events: {:?}", screen.raw);
    let ceiling = 2.0 * events as f64 / took.as_secs_f64();
    let mut last = 0;
    for frame in &frames {
        assert!(frame.position > 0 && frame.position <= frame.total, "{frame:?} in {frames:?}");
        assert_eq!(frame.total, events, "{frame:?}");
        assert!(frame.position >= last, "the bar went back: {frames:?}");
        last = frame.position;
        let pace = frame.pace.unwrap_or_else(|| panic!("a pace: {frame:?}"));
        assert!(pace as f64 <= ceiling, "{pace}/s for {events} events in {took:?}: {frames:?}");
        if frame.position < frame.total {
            assert!(frame.left.is_some_and(|left| left > 0), "0 s left before the end: {frames:?}");
        }
    }
    assert!(frames.iter().any(|frame| frame.position < frame.total), "a frame before the end: {frames:?}");
    assert!(screen.text().starts_with("replayed"), "the bar is cleared:\n{}", screen.text());

    // A dumb terminal cannot redraw a line: no bar, not one escape byte.
    let mut dumb = daemon.command();
    dumb.env("TERM", "dumb").arg("replay");
    let screen = Screen::run(&dumb, 120);
    assert_eq!(screen.code(), 0, "{}", screen.text());
    assert!(!screen.raw.contains('\u{1b}'), "TERM=dumb: {:?}", screen.raw);
    assert!(bar_frames(&screen.raw).is_empty(), "TERM=dumb: {:?}", screen.raw);
}
