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
