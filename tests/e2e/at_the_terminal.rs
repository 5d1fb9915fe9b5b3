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
