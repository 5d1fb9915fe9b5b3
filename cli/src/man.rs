//! The man pages in `man/` are generated from the clap definitions, plus the sections clap does
//! not know (examples, exit status, environment, files); this test fails when they are stale.
//! Regenerate them with `UPDATE_MAN=1 cargo test -p orders man_pages`.

use std::path::Path;

use clap::{Command, CommandFactory};
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, roman};

use crate::args::Cli;

const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "Success."),
    (
        "1",
        "Any other failure: an unexpected daemon or storage error; a backup target, or a copy to check or restore, that is refused; an import that is refused (a line that is no legal next event, a store that holds events).",
    ),
    (
        "2",
        "Usage error: an unknown option, or an invalid total, user, order id, time, duration, cursor or listening address; an export range that ends before it begins.",
    ),
    ("3", "No order with that id."),
    (
        "4",
        "Refused by the business rules: cancelling a cancelled or delivered order, or reusing an idempotency key for another order.",
    ),
    (
        "5",
        "No daemon answers (and autostart is off or failed), it is stuck, it speaks another protocol version, or it cannot serve the request now.",
    ),
    ("6", "create --wait timed out before the order settled; the id was printed all the same."),
    (
        "7",
        "replay --check, check or check --file found the data inconsistent, or check found the database file damaged.",
    ),
    ("8", "The order waited for ended cancelled (create --wait, watch)."),
    (
        "9",
        "The daemon came back from a restart serving another store (a restore or an import replaced it) while events --follow, watch or create --wait read the old one.",
    ),
];

const ENVIRONMENT: &[(&str, &str)] = &[
    ("ORDERS_SOCKET", "The daemon's socket (--socket)."),
    ("ORDERS_DATA_DIR", "The daemon's data directory (--data-dir)."),
    ("ORDERS_NO_AUTOSTART", "Set to 1 to never start a daemon on demand."),
    ("ORDERS_LOG, ORDERS_LOG_FILE", "The daemon's log level and log file."),
    ("ORDERS_DELIVERY_DELAY", "The daemon's delay from approval to delivery (3s)."),
    ("ORDERS_PAYMENT_DELAY", "The simulated latency of the payment provider (0)."),
    (
        "ORDERS_MAX_CONNECTIONS, ORDERS_IDLE_TIMEOUT, ORDERS_DRAIN_TIMEOUT",
        "The daemon's connection limit, idle timeout and drain timeout.",
    ),
    (
        "ORDERS_METRICS_LISTEN",
        "Where the daemon serves its metrics over HTTP, such as 127.0.0.1:9464 (--metrics-listen; off unless set).",
    ),
    (
        "ORDERS_HTTP, ORDERS_HTTP_TOKEN_FILE, ORDERS_HTTP_INSECURE_LOCAL",
        "The original order service's HTTP endpoints: where (--http; off unless set), the bearer token's file, or no token on a loopback address.",
    ),
    (
        "ORDERS_STORE",
        "The PostgreSQL database that keeps the store (--store), as a libpq URL, which several daemons may share; the data directory's SQLite file when unset.",
    ),
    (
        "PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, PGPASSFILE, PGSSLMODE, PGSSLROOTCERT, PGCONNECT_TIMEOUT, PGAPPNAME",
        "What an ORDERS_STORE URL leaves out, as libpq reads them.",
    ),
    (
        "LISTEN_FDS, LISTEN_PID, NOTIFY_SOCKET",
        "Set by systemd: the daemon serves the socket passed by orders.socket (socket activation), and reports readiness (Type=notify).",
    ),
    ("JOURNAL_STREAM", "Set by systemd: the daemon's stderr lines go to the journal, without a time."),
    (
        "XDG_DATA_HOME, XDG_RUNTIME_DIR",
        "Where the defaults of the data directory, the log and the socket are.",
    ),
    ("NO_COLOR", "Set (and not empty) to turn colour off."),
    ("TERM", "dumb turns colour off under --color auto."),
];

const FILES: &[(&str, &str)] = &[
    (
        "$XDG_DATA_HOME/orders/orders.db",
        "The SQLite database: the event log, the read model and the open saga steps.",
    ),
    (
        "$XDG_DATA_HOME/orders/daemon.pid",
        "Names the running daemon's pid and socket, removed when it exits (the daemon locks the directory itself, which must be mode 0700).",
    ),
    (
        "$XDG_RUNTIME_DIR/orders/orders.sock",
        "The daemon's socket (/tmp/orders-UID/orders.sock without XDG_RUNTIME_DIR).",
    ),
    (
        "$XDG_DATA_HOME/orders/daemon.log",
        "The daemon's log, one per data directory, rotated at 10 MiB: daemon.log.1 to daemon.log.5 are the older ones.",
    ),
    (
        "~/.config/systemd/user/orders.socket, orders.service",
        "systemd user units, copied from contrib/systemd/ in the source: socket activation and readiness (see README.md).",
    ),
];

fn section(roff: &mut Roff, title: &str, entries: &[(&str, &str)]) {
    roff.control("SH", [title]);
    for (term, text) in entries {
        roff.control("TP", []);
        roff.text([bold(*term)]);
        roff.text([roman(*text)]);
    }
}

/// Renders one page; clap_mangen's own sections, then ours before the version.
fn page(cmd: &Command, top: bool) -> Vec<u8> {
    let man =
        Man::new(cmd.clone()).source(format!("orders {}", env!("CARGO_PKG_VERSION"))).manual("orders manual");
    let render = |part: &dyn Fn(&mut Vec<u8>) -> std::io::Result<()>| {
        let mut buffer = Vec::new();
        part(&mut buffer).expect("render a section");
        buffer
    };
    let mut parts = vec![
        render(&|w| man.render_title(w)),
        render(&|w| man.render_name_section(w)),
        render(&|w| man.render_synopsis_section(w)),
        render(&|w| man.render_description_section(w)),
        render(&|w| man.render_options_section(w)),
    ];
    if cmd.has_subcommands() {
        parts.push(render(&|w| man.render_subcommands_section(w)));
    }
    let mut ours = Roff::default();
    if let Some(examples) = cmd.get_after_help() {
        ours.control("SH", ["EXAMPLES"]);
        ours.control("nf", []);
        for line in examples.to_string().lines().filter(|line| !line.ends_with(':')) {
            ours.text([roman(line.trim())]);
        }
        ours.control("fi", []);
    }
    section(&mut ours, "EXIT STATUS", EXIT_STATUS);
    if top {
        section(&mut ours, "ENVIRONMENT", ENVIRONMENT);
        section(&mut ours, "FILES", FILES);
    }
    parts.push(ours.render().into_bytes());
    parts.push(render(&|w| man.render_version_section(w)));

    // Every part begins with the same two-line preamble; keep the first one only.
    let mut page = Vec::new();
    for (n, part) in parts.iter().enumerate() {
        let text = String::from_utf8_lossy(part);
        let body: String =
            if n == 0 { text.into_owned() } else { text.lines().skip(2).map(|l| format!("{l}\n")).collect() };
        page.extend_from_slice(body.as_bytes());
    }
    page
}

/// Every page: `orders.1` and one per subcommand, recursively (`orders-daemon-start.1`).
fn pages() -> Vec<(String, Vec<u8>)> {
    fn walk(cmd: &Command, top: bool, out: &mut Vec<(String, Vec<u8>)>) {
        for sub in cmd.get_subcommands().filter(|sub| !sub.is_hide_set()) {
            walk(sub, false, out);
        }
        let name = cmd.get_display_name().unwrap_or_else(|| cmd.get_name());
        out.push((format!("{name}.1"), page(cmd, top)));
    }
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    walk(&cmd, true, &mut out);
    out.sort();
    out
}

#[test]
fn man_pages_match_the_command_line() {
    let man = Path::new(env!("CARGO_MANIFEST_DIR")).join("../man");
    let pages = pages();
    if std::env::var_os("UPDATE_MAN").is_some() {
        let _ = std::fs::remove_dir_all(&man);
        std::fs::create_dir_all(&man).expect("create man/");
        for (name, page) in &pages {
            std::fs::write(man.join(name), page).expect("write a page");
        }
        return;
    }
    let stale =
        "man/ is out of date with the command line: run `UPDATE_MAN=1 cargo test -p orders man_pages`";
    let mut committed: Vec<String> = std::fs::read_dir(&man)
        .map(|entries| {
            entries.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect()
        })
        .unwrap_or_default();
    committed.sort();
    let generated: Vec<String> = pages.iter().map(|(name, _)| name.clone()).collect();
    assert_eq!(generated, committed, "{stale}");
    for (name, page) in pages {
        let have = std::fs::read(man.join(&name)).expect("committed page");
        assert!(page == have, "{name} differs. {stale}");
    }
}

/// Exit code 7 is `check`'s as much as `replay --check`'s (issue 18: the pages said only
/// `replay --check`), and each command's own page says so where it describes the command.
#[test]
fn exit_code_7_names_every_command_that_exits_with_it() {
    let (_, meaning) = EXIT_STATUS.iter().find(|(code, _)| *code == "7").expect("code 7");
    for command in ["replay --check", "check,", "check --file"] {
        assert!(meaning.contains(command), "code 7 names {command}: {meaning}");
    }
    let page = |name: &str| {
        let (_, page) = pages().into_iter().find(|(page, _)| page == name).expect("the page");
        String::from_utf8(page).expect("utf-8")
    };
    let replay = page("orders-replay.1");
    assert!(replay.contains("without replacing it (exit code 7 on a difference)"), "{replay}");
    let check = page("orders-check.1");
    for says in
        ["the read model (exit code 7 on a problem)", "a damaged copy or one with problems is exit code 7"]
    {
        assert!(check.contains(says), "{says}: {check}");
    }
}

#[test]
fn every_page_documents_the_exit_codes() {
    for (name, page) in pages() {
        let page = String::from_utf8(page).expect("utf-8");
        assert!(page.contains(".SH \"EXIT STATUS\""), "{name}");
        assert_eq!(page.matches(".ie \\n(.g .ds Aq").count(), 1, "{name}: one preamble");
    }
}
