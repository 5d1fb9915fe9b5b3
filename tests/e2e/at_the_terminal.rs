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
