//! The command line, as clap reads it. The man pages are generated from these definitions.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use jiff::Timestamp;
use orders_daemon::settings::{self, Bound};
use orders_shared::protocol::{Cursor, IdempotencyKey};
use orders_shared::short_id::OrderRef;
use orders_shared::{NewUserId, OrderStatus, Total, UserId};

const ABOUT: &str = "Place, follow and cancel orders";

const LONG_ABOUT: &str = "\
Place, follow and cancel orders.

`orders` is the command-line client of the orders daemon, which keeps every order as a log of \
events in SQLite. The first command starts the daemon in the background when none is running.";

#[derive(Debug, Parser)]
#[command(name = "orders", version, about = ABOUT, long_about = LONG_ABOUT, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// The heading of the options every command takes, apart from each command's own (issue 18).
const GLOBAL: &str = "Global options";

#[derive(Debug, Args)]
pub struct GlobalArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Print JSON instead of text, for scripts
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,

    /// Colour the text output and the log of `daemon run` on stderr: auto (on a terminal, unless
    /// NO_COLOR is set or TERM is dumb), always, never
    #[arg(long, global = true, value_name = "WHEN", default_value = "auto", help_heading = GLOBAL)]
    pub color: ColorChoice,

    /// Show times in UTC rather than the local time zone (JSON is always UTC)
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub utc: bool,

    /// Never start a daemon; fail when none is running
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        env = "ORDERS_NO_AUTOSTART",
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub no_autostart: bool,
}

/// Where the daemon is: its socket and its data directory (the store every request names).
#[derive(Clone, Debug, Args)]
pub struct StoreArgs {
    /// The daemon's socket [default: $XDG_RUNTIME_DIR/orders/orders.sock]
    #[arg(long, global = true, env = "ORDERS_SOCKET", value_name = "PATH", help_heading = GLOBAL)]
    pub socket: Option<PathBuf>,

    /// The daemon's data directory [default: $XDG_DATA_HOME/orders]
    #[arg(long, global = true, env = "ORDERS_DATA_DIR", value_name = "DIR", help_heading = GLOBAL)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Place an order; prints its id
    #[command(after_help = "Example:\n  id=$(orders create --user alice --total 2)")]
    Create(CreateArgs),

    /// Show one order
    #[command(
        after_help = "Examples:\n  orders show 019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6b\n  orders show 4f5a6b2e   # the short id `orders list` shows"
    )]
    Show(OrderArg),

    /// List orders, newest first
    #[command(after_help = "Example:\n  orders list --user alice")]
    List(ListArgs),

    /// Show every event of an order, from all contexts, in order
    #[command(after_help = "Example:\n  orders history 4f5a6b2e")]
    History(ViewedOrderArgs),

    /// Follow one order's events as they happen, through daemon restarts; exits when it is
    /// delivered or cancelled
    #[command(after_help = "Example:\n  orders watch \"$(orders create --user alice --total 2)\"")]
    Watch(ViewedOrderArgs),

    /// List the global event log, or follow it as events are appended
    #[command(
        after_help = "Examples:\n  orders events --from 100 --limit 20\n  orders events --follow --json"
    )]
    Events(EventsArgs),

    /// Rebuild the read side (the orders table) from the event log, online
    #[command(
        after_help = "Examples:\n  orders replay\n  orders replay --check   # compare only; exit code 7 on a difference"
    )]
    Replay(ReplayArgs),

    /// Verify the whole event log: every order's state machine, stream versions without gaps, the
    /// sagas' open steps and the read model (exit code 7 on a problem)
    #[command(
        after_help = "Examples:\n  orders check || echo \"the data needs attention\"\n  orders check --file ~/backups/orders-2026-12-03.db   # a backup, where it lands; no daemon needed"
    )]
    Check(CheckArgs),

    /// Write a consistent copy of the whole store to FILE while the daemon keeps serving (owner-only,
    /// replaced atomically; a single SQLite file)
    #[command(after_help = "Example:\n  orders backup ~/backups/orders-$(date +%F).db")]
    Backup(BackupArgs),

    /// Make a backup the store: checked first, the old store kept aside, a new store identity;
    /// a running daemon is stopped and started again
    #[command(after_help = "Example:\n  orders restore ~/backups/orders-2026-12-03.db")]
    Restore(RestoreArgs),

    /// Print the event log as the store keeps it, one JSON object per line (every field), for an
    /// archive or for `orders import`
    #[command(
        after_help = "Examples:\n  orders export | gzip > orders-$(date +%F).ndjson.gz\n  orders export --from 1001 --to 2000 > part.ndjson"
    )]
    Export(ExportArgs),

    /// Load an export into an empty store: every line proven legal first, all or nothing; the
    /// read model and the open saga steps are rebuilt, the store gets a new identity; a running
    /// daemon is stopped and started again
    #[command(
        after_help = "Examples:\n  orders import orders.ndjson\n  gunzip -c orders-2026-12-03.ndjson.gz | orders import -"
    )]
    Import(ImportArgs),

    /// Print the daemon's metrics in Prometheus' text format (what --metrics-listen serves over
    /// HTTP); never starts a daemon
    #[command(after_help = "Example:\n  orders metrics | grep '^orders_commands_total'")]
    Metrics,

    /// Cancel an order that is not delivered yet
    #[command(after_help = "Example:\n  orders cancel 4f5a6b2e")]
    Cancel(OrderArg),

    /// Run, start, stop or inspect the daemon
    #[command(subcommand)]
    Daemon(DaemonCommand),

    /// Print a shell completion script
    #[command(after_help = "Examples (a fresh home has none of these directories yet):\n  \
                      mkdir -p ~/.local/share/bash-completion/completions\n  \
                      orders completions bash > ~/.local/share/bash-completion/completions/orders\n  \
                      mkdir -p ~/.config/fish/completions\n  \
                      orders completions fish > ~/.config/fish/completions/orders.fish\n  \
                      mkdir -p ~/.zfunc   # and in ~/.zshrc, before compinit: fpath=(~/.zfunc $fpath)\n  \
                      orders completions zsh > ~/.zfunc/_orders")]
    Completions(CompletionsArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to colour a stream: `auto` colours a terminal, unless `NO_COLOR` is set and not
    /// empty (https://no-color.org) or `TERM` is `dumb`.
    pub fn colours(self, is_terminal: bool) -> bool {
        self.colours_in(
            is_terminal,
            std::env::var_os("NO_COLOR").as_deref(),
            std::env::var_os("TERM").as_deref(),
        )
    }

    fn colours_in(self, is_terminal: bool, no_color: Option<&OsStr>, term: Option<&OsStr>) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                is_terminal && no_color.is_none_or(OsStr::is_empty) && term != Some(OsStr::new("dumb"))
            }
        }
    }
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The customer placing the order: 1 to 128 printable characters, no whitespace at either end,
    /// nothing invisible (zero-width characters, soft hyphens, other format characters), no
    /// combining mark first and no control of the text's direction (such as U+202E)
    #[arg(long, short)]
    pub user: NewUserId,

    /// The order's total in minor currency units: a positive whole number
    #[arg(long, short, allow_negative_numbers = true)]
    pub total: Total,

    /// Return only once the order has settled (delivered or cancelled); on a terminal, its status
    /// is shown on stderr as it changes (pending → approved → delivered)
    #[arg(long, short)]
    pub wait: bool,

    /// With --wait: give up after this long (exit code 6); at most 30 days (720h), counted in
    /// whole milliseconds (rounded up)
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = parse_wait_timeout, requires = "wait")]
    pub timeout: Duration,

    /// A retry key: repeating the command with the same key returns the same order instead of
    /// placing another one (the same key with another user or total is refused)
    #[arg(long, short = 'k', value_name = "KEY")]
    pub idempotency_key: Option<IdempotencyKey>,

    /// Print nothing but the id, even with --wait
    #[arg(long, short, conflicts_with = "json")]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct OrderArg {
    /// The order: its id, as `orders create` printed it, or its short id, as `orders list` shows
    /// it (the end of the id, at least 8 hex digits)
    #[arg(value_name = "ID")]
    pub id: OrderRef,
}

/// An order whose events are shown.
#[derive(Debug, Args)]
pub struct ViewedOrderArgs {
    #[command(flatten)]
    pub order: OrderArg,

    /// Whole stream names and times to the millisecond; lines are not cut to the terminal's width
    #[arg(long, conflicts_with = "json")]
    pub wide: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this customer's orders (any name the log holds, even one a new order may no longer
    /// take, such as one with a trailing space)
    #[arg(long, short)]
    pub user: Option<UserId>,

    /// Only orders in this state: pending, approved, delivered or cancelled
    #[arg(long, short, value_parser = statuses())]
    pub status: Option<OrderStatus>,

    /// Only orders created since then: a time (2026-11-25T10:00:00Z, 2026-11-25 10:00), a day
    /// (2026-11-25, from local midnight) or a time ago (30m, 2h, 7d)
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    pub since: Option<Timestamp>,

    /// Print the ids only (whole), one a line
    #[arg(long, short, conflicts_with = "json")]
    pub quiet: bool,

    /// Whole ids and times to the millisecond; names are not cut to the terminal's width
    #[arg(long, conflicts_with_all = ["quiet", "json"])]
    pub wide: bool,

    /// Print how many orders match instead of listing them (it reads every one)
    #[arg(long, conflicts_with_all = ["quiet", "wide", "limit", "all", "before"])]
    pub count: bool,

    /// Show at most this many orders
    #[arg(long, default_value_t = 100, value_parser = at_least_one::<u32>)]
    pub limit: u32,

    /// Show every order (no limit)
    #[arg(long, conflicts_with = "limit")]
    pub all: bool,

    /// Only orders older than this one, in the same order: the next page after the last id of
    /// the previous one (newer orders never shift the pages that follow)
    #[arg(long, value_name = "ID")]
    pub before: Option<OrderRef>,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Start at this event: a cursor that `events --json` printed (its `cursor` field); with the
    /// SQLite store a position of the log (from 1) is a cursor too [default: the start of the log]
    #[arg(long, value_name = "CURSOR")]
    pub from: Option<Cursor>,

    /// Stop after this many events
    #[arg(long, value_name = "N", value_parser = at_least_one::<u64>)]
    pub limit: Option<u64>,

    /// Keep printing new events as they are appended, until interrupted; through daemon restarts
    /// (it waits for the daemon to come back, never starts one, and goes on after the last event
    /// printed), but not into another store (exit code 9)
    #[arg(long, short)]
    pub follow: bool,

    /// Whole stream names and times to the millisecond; lines are not cut to the terminal's width
    #[arg(long, conflicts_with = "json")]
    pub wide: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Start at the event with this cursor (a cursor `orders events` printed, or the `next` of an
    /// earlier export) [default: the first event]
    #[arg(long, value_name = "CURSOR")]
    pub from: Option<Cursor>,

    /// End with the event with this cursor [default: the newest event when the export begins]
    #[arg(long, value_name = "CURSOR")]
    pub to: Option<Cursor>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The export to load; `-` reads standard input
    #[arg(value_name = "FILE", default_value = "-")]
    pub file: PathBuf,

    /// Load it into this empty PostgreSQL database instead of the data directory's store; the
    /// daemon, if it ran, is started again on it (how a SQLite store moves to PostgreSQL)
    #[arg(long, env = "ORDERS_STORE", value_name = "URL", hide_env_values = true)]
    pub store: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Check this copy of a store (what `orders backup` wrote) instead of the daemon's, read-only
    /// and without a daemon: a damaged copy or one with problems is exit code 7, a file that is no
    /// orders store (or of a newer version) exit code 1
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The copy to restore (what `orders backup` wrote)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where the copy goes (a file there is replaced); outside the data directory
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Rebuild into a scratch table and report differences from the live read model, without
    /// replacing it (exit code 7 on a difference)
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Run the daemon in the foreground (for systemd, containers and debugging)
    Run(RunArgs),

    /// Start the daemon in the background; returns once it answers
    Start(RunArgs),

    /// Stop the daemon; returns once it has exited
    Stop,

    /// Stop the daemon (by signal if it is stuck) and start a new one
    Restart(RunArgs),

    /// Report whether the daemon runs, and how it is doing
    Status,
}

/// `orders-daemon`, the daemon's own binary: what `orders daemon run` becomes and what autostart
/// starts. The client does not link the daemon, so that it starts in a blink (issue 14).
#[derive(Debug, Parser)]
#[command(
    name = "orders-daemon",
    version,
    about = "The orders daemon (`orders daemon run` runs it; see `orders help daemon run`)"
)]
pub struct DaemonCli {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Colour the log on stderr: auto (on a terminal, unless NO_COLOR is set or TERM is dumb),
    /// always, never
    #[arg(long, global = true, value_name = "WHEN", default_value = "auto")]
    pub color: ColorChoice,

    #[command(subcommand)]
    pub command: DaemonBinaryCommand,
}

#[derive(Debug, Subcommand)]
pub enum DaemonBinaryCommand {
    /// Run the daemon in the foreground
    Run(RunArgs),

    /// Check a copy of a store (a backup) without a daemon and print the report as JSON (what
    /// `orders check --file` runs)
    Check(CopyArgs),

    /// Make a copy of a store (a backup) the data directory's store, with no daemon serving it,
    /// and print what was done as JSON (what `orders restore` runs)
    Restore(CopyArgs),

    /// Load an export (`-`: standard input) into the data directory's empty store, or the empty
    /// PostgreSQL database of --store (ORDERS_STORE), with no daemon serving it, and print what
    /// was done as JSON (what `orders import` runs)
    Import(DaemonImportArgs),
}

#[derive(Debug, Args)]
pub struct DaemonImportArgs {
    /// The export
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,

    /// The PostgreSQL database to load it into, instead of the data directory's SQLite file
    #[arg(long, env = "ORDERS_STORE", value_name = "URL", hide_env_values = true)]
    pub store: Option<String>,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The copy of a store
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,
}

impl DaemonCli {
    /// The arguments of `orders-daemon` that run the daemon `orders daemon run` was asked for:
    /// every setting spelled out, so that the daemon reads back exactly the values the client read
    /// (from flags or the environment).
    pub fn arguments(store: &StoreArgs, color: ColorChoice, run: &RunArgs) -> Vec<OsString> {
        let mut arguments: Vec<OsString> = vec!["run".into()];
        arguments.extend(run.forwarded());
        if run.background {
            arguments.push("--background".into());
        }
        for (flag, path) in [("--socket", &store.socket), ("--data-dir", &store.data_dir)] {
            if let Some(path) = path {
                arguments.push(flag_value(flag, path.as_os_str()));
            }
        }
        let color = clap::ValueEnum::to_possible_value(&color).map(|value| value.get_name().to_owned());
        arguments.push(flag_value("--color", OsStr::new(&color.unwrap_or_else(|| "auto".to_owned()))));
        arguments
    }
}

/// `--flag=value` as one argument: a value that begins with `-` (`--socket=-x.sock`) is then
/// never read as an option, and a path that is not UTF-8 goes over byte for byte.
fn flag_value(flag: &str, value: &OsStr) -> OsString {
    let mut argument = OsString::from(flag);
    argument.push("=");
    argument.push(value);
    argument
}

/// The daemon's settings.
#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// Log level: error, warn, info, debug, trace or off, or directives such as
    /// orders_daemon=debug,warn (a level for a module, and one for the rest)
    #[arg(long, env = "ORDERS_LOG", default_value = "info", value_name = "LEVEL", value_parser = settings::log_filter)]
    pub log_level: String,

    /// The log file, rotated at 10 MiB with 5 old files kept (daemon.log.1 is the newest)
    /// [default: daemon.log in the data directory]
    #[arg(long, env = "ORDERS_LOG_FILE", value_name = "PATH")]
    pub log_file: Option<PathBuf>,

    /// The most client connections served at once
    #[arg(long, env = "ORDERS_MAX_CONNECTIONS", default_value_t = 1024, value_name = "N",
          value_parser = at_least_one::<u32>)]
    pub max_connections: u32,

    /// From an order's approval to its delivery; at most 7 days (168h)
    #[arg(long, env = "ORDERS_DELIVERY_DELAY", default_value = "3s", value_name = "DURATION",
          value_parser = parse_delivery_delay)]
    pub delivery_delay: Duration,

    /// How long the payment provider takes to decide (simulated latency, for demos and tests); at
    /// most 1 day (24h)
    #[arg(long, env = "ORDERS_PAYMENT_DELAY", default_value = "0", value_name = "DURATION",
          value_parser = parse_payment_delay)]
    pub payment_delay: Duration,

    /// Close a connection that sends no request for this long; at least 100ms, at most 1 day (24h)
    #[arg(long, env = "ORDERS_IDLE_TIMEOUT", default_value = "30s", value_name = "DURATION",
          value_parser = parse_idle_timeout)]
    pub idle_timeout: Duration,

    /// Drop a connection whose client takes no part of a reply for this long; at least 100ms, at most 1 day (24h)
    #[arg(long, env = "ORDERS_DRAIN_TIMEOUT", default_value = "10s", value_name = "DURATION",
          value_parser = parse_drain_timeout)]
    pub drain_timeout: Duration,

    /// Serve the metrics in Prometheus' text format over HTTP at ADDRESS (an IP address and a port,
    /// such as 127.0.0.1:9464), path /metrics; off unless given. Port 0 takes a free port, which
    /// `orders daemon status` names
    #[arg(long, env = "ORDERS_METRICS_LISTEN", value_name = "ADDRESS", value_parser = parse_listen_address)]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// Serve the original order service's HTTP endpoints at ADDRESS (an IP address and a port, such
    /// as 127.0.0.1:3000): POST /order/, PUT /order/cancel, GET /order/ID, GET /orders. Off unless
    /// given; needs --http-token-file, or --http-insecure-local on a loopback address
    #[arg(long, env = "ORDERS_HTTP", value_name = "ADDRESS", value_parser = parse_listen_address)]
    pub http: Option<std::net::SocketAddr>,

    /// The bearer token the HTTP endpoints require (Authorization: Bearer TOKEN), in a file only
    /// you can read (mode 0600): one line of at least 16 characters, such as `openssl rand -hex 32`
    #[arg(long, env = "ORDERS_HTTP_TOKEN_FILE", value_name = "FILE")]
    pub http_token_file: Option<PathBuf>,

    /// Serve the HTTP endpoints without a token, on a loopback address only: any local user can
    /// then place and cancel orders as you
    #[arg(long, env = "ORDERS_HTTP_INSECURE_LOCAL", value_parser = clap::builder::FalseyValueParser::new())]
    pub http_insecure_local: bool,

    /// Serve the database even though it is not the store this data directory last served: it
    /// was emptied, replaced or went backwards (e.g. its -wal file was deleted). The store gets
    /// a new identity; give it once, after a restore or a repair you mean
    #[arg(long, env = "ORDERS_ACCEPT_STORE_CHANGE", value_parser = clap::builder::FalseyValueParser::new())]
    pub accept_store_change: bool,

    /// Keep the store in this PostgreSQL database instead of the data directory's SQLite file: a
    /// URL such as postgres://orders@db.example/orders?sslmode=verify-full. What it leaves out
    /// comes from libpq's variables and files (PGHOST, PGUSER, PGPASSWORD, PGPASSFILE or
    /// ~/.pgpass, PGSSLMODE, PGSSLROOTCERT ...). Several daemons, each with a data directory of its
    /// own, may serve one database (`daemon status` lists them). The data directory still holds the
    /// daemon's lock, log and identity files. Rather put a password in PGPASSFILE than in the URL:
    /// command lines are visible to every user of the machine
    #[arg(long, env = "ORDERS_STORE", value_name = "URL", hide_env_values = true)]
    pub store: Option<String>,

    /// Log to the file only, not to stderr (set when the client starts the daemon)
    #[arg(long, hide = true)]
    pub background: bool,
}

impl RunArgs {
    /// The settings as arguments that `daemon run` reads back unchanged (`--background` aside):
    /// what `daemon start`, `restart` and autostart pass on.
    pub fn forwarded(&self) -> Vec<OsString> {
        let mut forwarded = vec![
            flag_value("--log-level", OsStr::new(&self.log_level)),
            flag_value("--max-connections", OsStr::new(&self.max_connections.to_string())),
            flag_value("--idle-timeout", OsStr::new(&exact(self.idle_timeout))),
            flag_value("--drain-timeout", OsStr::new(&exact(self.drain_timeout))),
            flag_value("--delivery-delay", OsStr::new(&exact(self.delivery_delay))),
            flag_value("--payment-delay", OsStr::new(&exact(self.payment_delay))),
        ];
        if let Some(log_file) = &self.log_file {
            forwarded.push(flag_value("--log-file", log_file.as_os_str()));
        }
        if self.accept_store_change {
            forwarded.push("--accept-store-change".into());
        }
        if let Some(address) = self.metrics_listen {
            forwarded.push(flag_value("--metrics-listen", OsStr::new(&address.to_string())));
        }
        if let Some(address) = self.http {
            forwarded.push(flag_value("--http", OsStr::new(&address.to_string())));
        }
        if let Some(file) = &self.http_token_file {
            // Whole: the daemon may not run where this command runs.
            let file = std::path::absolute(file).unwrap_or_else(|_| file.clone());
            forwarded.push(flag_value("--http-token-file", file.as_os_str()));
        }
        if self.http_insecure_local {
            forwarded.push("--http-insecure-local".into());
        }
        forwarded
    }
}

/// A count of at least 1, refused in words: clap's own range said `0 is not in 1..=4294967295`.
fn at_least_one<N>(text: &str) -> Result<N, String>
where
    N: std::str::FromStr + PartialOrd + From<u8> + std::fmt::Display + num_bounds::Max,
{
    let refuse = || format!("'{text}' is not a count: give a whole number from 1 to {}", N::MAX);
    match text.trim().parse::<N>() {
        Ok(n) if n >= N::from(1) => Ok(n),
        _ => Err(refuse()),
    }
}

/// The largest value of a count's type, for the words of [`at_least_one`].
mod num_bounds {
    pub trait Max {
        const MAX: Self;
    }
    impl Max for u32 {
        const MAX: u32 = u32::MAX;
    }
    impl Max for u64 {
        const MAX: u64 = u64::MAX;
    }
}

/// An address to listen on: an IP address and a port (a host name would be resolved to several).
fn parse_listen_address(text: &str) -> Result<std::net::SocketAddr, String> {
    text.trim().parse().map_err(|_| {
        format!("'{text}' is not an address to listen on: give an IP address and a port, such as 127.0.0.1:9464 or [::1]:9464")
    })
}

/// A duration as `daemon run` reads it back unchanged: in nanoseconds. Whole milliseconds lost
/// what was finer (issue 11: `--idle-timeout 500us` became `0ms`, which `run` refuses).
fn exact(duration: Duration) -> String {
    format!("{}ns", duration.as_nanos())
}

/// Parses a point in time for `--since`: an RFC 3339 time, a local date and time, a local day, or
/// a span of time ago.
pub fn parse_since(text: &str) -> Result<Timestamp, String> {
    let text = text.trim();
    if let Ok(at) = text.parse::<Timestamp>() {
        return Ok(at);
    }
    let local = |civil: jiff::civil::DateTime| {
        civil
            .to_zoned_datetime(jiff::tz::TimeZone::system())
            .map(|zoned| zoned.timestamp())
            .map_err(|e| e.to_string())
    };
    if let Ok(civil) = text.parse::<jiff::civil::DateTime>() {
        return local(civil);
    }
    if let Ok(day) = text.parse::<jiff::civil::Date>() {
        return local(day.to_datetime(jiff::civil::Time::midnight()));
    }
    if let Ok(ago) = text.parse::<jiff::Span>() {
        let now = jiff::ZonedDateTime::now();
        return now.checked_sub(ago).map(|then| then.timestamp()).map_err(|e| e.to_string());
    }
    Err(format!(
        "invalid time '{text}': expected 2026-11-25T10:00:00Z, 2026-11-25 10:00, 2026-11-25, or a time ago such as 30m, 2h, 7d"
    ))
}

/// The longest `create --wait --timeout`: longer than any order can take to settle.
pub const WAIT_TIMEOUT: Bound = Bound {
    name: "the timeout",
    max: Duration::from_secs(30 * 24 * 3600),
    max_in_words: "30 days (720h)",
    min: Duration::ZERO,
};

/// `--delivery-delay`, within [`settings::DELIVERY_DELAY`] (issue 11).
pub fn parse_delivery_delay(text: &str) -> Result<Duration, String> {
    bounded(text, parse_duration(text)?, settings::DELIVERY_DELAY)
}

/// `--payment-delay`, within [`settings::PAYMENT_DELAY`].
pub fn parse_payment_delay(text: &str) -> Result<Duration, String> {
    bounded(text, parse_duration(text)?, settings::PAYMENT_DELAY)
}

/// `--idle-timeout`: more than 0, within [`settings::IDLE_TIMEOUT`].
pub fn parse_idle_timeout(text: &str) -> Result<Duration, String> {
    bounded(text, parse_positive_duration(text)?, settings::IDLE_TIMEOUT)
}

/// `--drain-timeout`: more than 0, within [`settings::DRAIN_TIMEOUT`].
pub fn parse_drain_timeout(text: &str) -> Result<Duration, String> {
    bounded(text, parse_positive_duration(text)?, settings::DRAIN_TIMEOUT)
}

/// `create --timeout`, within [`WAIT_TIMEOUT`].
pub fn parse_wait_timeout(text: &str) -> Result<Duration, String> {
    bounded(text, parse_duration(text)?, WAIT_TIMEOUT)
}

fn bounded(text: &str, duration: Duration, bound: Bound) -> Result<Duration, String> {
    bound.check(duration).map_err(|why| format!("invalid duration '{text}': {why}"))
}

/// A duration as whole milliseconds for the wire (`wait`'s `timeout_ms`), rounded up so that a
/// wait is never shorter than asked: `500us` is 1 ms, not 0 (issue 11).
pub fn whole_millis_up(duration: Duration) -> u64 {
    let millis = duration.as_nanos().div_ceil(1_000_000);
    u64::try_from(millis).unwrap_or(u64::MAX)
}

/// Parses a duration that must not be zero.
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err(format!("invalid duration '{text}': it must be longer than 0")),
        duration => Ok(duration),
    }
}

/// Parses a duration such as `3s`, `250ms`, `1m30s` or `0`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid =
        || format!("invalid duration '{text}': expected a number with a unit, such as 3s, 250ms or 1m30s");
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    let span: jiff::SignedDuration = text.trim().parse().map_err(|_| invalid())?;
    Duration::try_from(span).map_err(|_| format!("invalid duration '{text}': it must not be negative"))
}

/// The states `--status` takes, named for help, errors and completion.
fn statuses() -> impl clap::builder::TypedValueParser<Value = OrderStatus> {
    let names = OrderStatus::ALL.map(OrderStatus::as_str);
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(names).try_map(|name| name.parse::<OrderStatus>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
        DaemonCli::command().debug_assert();
    }

    #[test]
    fn forwarded_durations_read_back_unchanged() {
        let max = settings::DELIVERY_DELAY.max;
        for duration in
            [Duration::from_nanos(1), Duration::from_micros(500), Duration::from_micros(1500), max]
        {
            assert_eq!(parse_delivery_delay(&exact(duration)), Ok(duration));
            let idle = duration.clamp(Duration::from_millis(100), Duration::from_secs(3600));
            assert_eq!(parse_idle_timeout(&exact(idle)), Ok(idle));
        }
        assert_eq!(parse_payment_delay(&exact(Duration::ZERO)), Ok(Duration::ZERO));
    }

    /// `orders daemon run` becomes `orders-daemon run` with every setting spelled out: the
    /// daemon reads back what the client read, whatever the client was given.
    #[test]
    fn the_daemon_binary_reads_back_what_daemon_run_was_given() {
        let given = [
            "orders",
            "--socket=-s p.sock",
            "daemon",
            "run",
            "--data-dir",
            "/tmp/d",
            "--log-level",
            "debug",
            "--log-file=-l.log",
            "--max-connections",
            "7",
            "--delivery-delay",
            "1500us",
            "--payment-delay",
            "2s",
            "--idle-timeout",
            "500ms",
            "--drain-timeout",
            "3s",
            "--accept-store-change",
            "--background",
            "--color",
            "never",
        ];
        let (cli, daemon) = read_back(given.map(OsString::from));
        let (Command::Daemon(DaemonCommand::Run(run)), DaemonBinaryCommand::Run(read)) =
            (&cli.command, &daemon.command)
        else {
            panic!("not daemon run")
        };
        assert_eq!(format!("{read:?}"), format!("{run:?}"));
        assert_eq!(format!("{:?}", daemon.store), format!("{:?}", cli.global.store));
        assert_eq!(daemon.color, ColorChoice::Never);
    }

    /// A path that is not UTF-8 goes over byte for byte (it was turned into U+FFFD once).
    #[test]
    fn the_daemon_binary_reads_back_a_path_that_is_not_utf8() {
        use std::os::unix::ffi::OsStrExt;
        let log = OsStr::from_bytes(b"/tmp/l\xff.log");
        let given: Vec<OsString> =
            vec!["orders".into(), "daemon".into(), "run".into(), "--log-file".into(), log.into()];
        let (_, daemon) = read_back(given);
        let DaemonBinaryCommand::Run(read) = &daemon.command else { panic!("not run") };
        assert_eq!(read.log_file.as_deref().map(|p| p.as_os_str()), Some(log));
    }

    /// `orders <given>` (a `daemon run`), and `orders-daemon` run with what it forwards.
    fn read_back(given: impl IntoIterator<Item = OsString>) -> (Cli, DaemonCli) {
        let cli = Cli::try_parse_from(given).expect("orders daemon run");
        let Command::Daemon(DaemonCommand::Run(run)) = &cli.command else { panic!("not daemon run") };
        let arguments = DaemonCli::arguments(&cli.global.store, cli.global.color, run);
        let daemon = DaemonCli::try_parse_from(std::iter::once("orders-daemon".into()).chain(arguments))
            .expect("orders-daemon run");
        (cli, daemon)
    }

    #[test]
    fn auto_colours_a_terminal_unless_no_color_or_a_dumb_terminal() {
        let auto = ColorChoice::Auto;
        assert!(auto.colours_in(true, None, Some(OsStr::new("xterm"))));
        assert!(auto.colours_in(true, Some(OsStr::new("")), None));
        assert!(!auto.colours_in(false, None, Some(OsStr::new("xterm"))));
        assert!(!auto.colours_in(true, Some(OsStr::new("1")), Some(OsStr::new("xterm"))));
        assert!(!auto.colours_in(true, None, Some(OsStr::new("dumb"))));
        assert!(ColorChoice::Always.colours_in(false, None, Some(OsStr::new("dumb"))));
    }

    #[test]
    fn since_reads_times_days_and_times_ago() {
        let exact: Timestamp = "2026-11-25T10:00:00Z".parse().expect("time");
        assert_eq!(parse_since("2026-11-25T10:00:00Z"), Ok(exact));
        assert!(parse_since("2026-11-25").is_ok());
        assert!(parse_since("2026-11-25 10:00").is_ok());
        let hour_ago = parse_since("1h").expect("a time ago");
        let elapsed = Timestamp::now().duration_since(hour_ago).as_secs();
        assert!((3599..=3601).contains(&elapsed), "{elapsed}");
        assert!(parse_since("7d").is_ok());
        assert!(parse_since("yesterday-ish").is_err());
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-3s").is_err());
        assert!(parse_duration("3").is_err());
        assert!(parse_positive_duration("0").is_err());
        assert_eq!(parse_positive_duration("1s"), Ok(Duration::from_secs(1)));
    }

    #[test]
    fn delays_and_timeouts_past_their_bound_are_refused_in_words() {
        assert_eq!(parse_delivery_delay("168h"), Ok(Duration::from_secs(7 * 24 * 3600)));
        for (parse, text, says) in [
            (
                parse_delivery_delay as fn(&str) -> Result<Duration, String>,
                "999999999999s",
                "at most 7 days (168h)",
            ),
            (parse_delivery_delay, "168h 1ns", "the delivery delay must be at most 7 days (168h)"),
            (parse_payment_delay, "25h", "the payment delay must be at most 1 day (24h)"),
            (parse_idle_timeout, "24h 1s", "the idle timeout must be at most 1 day (24h)"),
            (parse_idle_timeout, "0", "longer than 0"),
            (parse_drain_timeout, "24h 1s", "the drain timeout must be at most 1 day (24h)"),
            (parse_drain_timeout, "0", "longer than 0"),
            (parse_idle_timeout, "1ns", "the idle timeout must be at least 100ms"),
            (parse_drain_timeout, "99ms", "the drain timeout must be at least 100ms"),
            (parse_wait_timeout, "721h", "the timeout must be at most 30 days (720h)"),
        ] {
            let refused = parse(text).expect_err(text);
            assert!(refused.contains(says) && refused.contains(text), "{text}: {refused}");
        }
        assert_eq!(parse_idle_timeout("100500us"), Ok(Duration::from_micros(100_500)));
        assert_eq!(parse_wait_timeout("720h"), Ok(WAIT_TIMEOUT.max));
    }

    #[test]
    fn a_wait_is_sent_in_whole_milliseconds_rounded_up() {
        assert_eq!(whole_millis_up(Duration::ZERO), 0);
        assert_eq!(whole_millis_up(Duration::from_nanos(1)), 1);
        assert_eq!(whole_millis_up(Duration::from_micros(500)), 1);
        assert_eq!(whole_millis_up(Duration::from_micros(1500)), 2);
        assert_eq!(whole_millis_up(Duration::from_secs(60)), 60_000);
        assert_eq!(whole_millis_up(Duration::MAX), u64::MAX);
    }
}
