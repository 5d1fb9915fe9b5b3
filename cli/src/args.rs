//! The command line, as clap reads it. The man pages are generated from these definitions.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use orders_shared::{OrderId, Total, UserId};

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

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The daemon's socket [default: $XDG_RUNTIME_DIR/orders/orders.sock]
    #[arg(long, global = true, env = "ORDERS_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// The daemon's data directory [default: $XDG_DATA_HOME/orders]
    #[arg(long, global = true, env = "ORDERS_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Print JSON instead of text, for scripts
    #[arg(long, global = true)]
    pub json: bool,

    /// Never start a daemon; fail when none is running
    #[arg(
        long,
        global = true,
        env = "ORDERS_NO_AUTOSTART",
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub no_autostart: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Place an order; prints its id
    #[command(after_help = "Example:\n  id=$(orders create --user alice --total 2)")]
    Create(CreateArgs),

    /// Show one order
    #[command(after_help = "Example:\n  orders show 019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6b")]
    Show(OrderArg),

    /// List orders, newest first
    #[command(after_help = "Example:\n  orders list --user alice")]
    List(ListArgs),

    /// Show every event of an order, from all contexts, in order
    #[command(after_help = "Example:\n  orders history 019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6b")]
    History(OrderArg),

    /// Follow one order's events as they happen; exits when it is delivered or cancelled
    #[command(after_help = "Example:\n  orders watch \"$(orders create --user alice --total 2)\"")]
    Watch(OrderArg),

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

    /// Cancel an order that is not delivered yet
    #[command(after_help = "Example:\n  orders cancel 019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6b")]
    Cancel(OrderArg),

    /// Run, start, stop or inspect the daemon
    #[command(subcommand)]
    Daemon(DaemonCommand),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The customer placing the order (1 to 128 printable characters)
    #[arg(long, short)]
    pub user: UserId,

    /// The order's total in minor currency units: a positive whole number
    #[arg(long, short, allow_negative_numbers = true)]
    pub total: Total,

    /// Return only once the order has settled (delivered or cancelled)
    #[arg(long, short)]
    pub wait: bool,

    /// With --wait: give up after this long (exit code 6)
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = parse_duration, requires = "wait")]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct OrderArg {
    /// The order's id, as `orders create` printed it
    #[arg(value_name = "ID")]
    pub id: OrderId,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this customer's orders
    #[arg(long, short)]
    pub user: Option<UserId>,

    /// Show at most this many orders
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,

    /// Show every order (no limit)
    #[arg(long, conflicts_with = "limit")]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Start at this position of the log (positions start at 1)
    #[arg(long, default_value_t = 1, value_name = "POSITION", value_parser = clap::value_parser!(i64).range(1..))]
    pub from: i64,

    /// Stop after this many events
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,

    /// Keep printing new events as they are appended, until interrupted
    #[arg(long, short)]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Rebuild into a scratch table and report differences from the live read model, without
    /// replacing it
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

/// The daemon's settings.
#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// Log level: error, warn, info, debug, trace (or a tracing filter directive)
    #[arg(long, env = "ORDERS_LOG", default_value = "info", value_name = "LEVEL")]
    pub log_level: String,

    /// The log file [default: $XDG_STATE_HOME/orders/daemon.log]
    #[arg(long, env = "ORDERS_LOG_FILE", value_name = "PATH")]
    pub log_file: Option<PathBuf>,

    /// The most client connections served at once
    #[arg(long, env = "ORDERS_MAX_CONNECTIONS", default_value_t = 1024, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// From an order's approval to its delivery
    #[arg(long, env = "ORDERS_DELIVERY_DELAY", default_value = "3s", value_name = "DURATION",
          value_parser = parse_duration)]
    pub delivery_delay: Duration,

    /// How long the payment provider takes to decide (simulated latency, for demos and tests)
    #[arg(long, env = "ORDERS_PAYMENT_DELAY", default_value = "0", value_name = "DURATION",
          value_parser = parse_duration)]
    pub payment_delay: Duration,

    /// Close a connection that sends no request for this long
    #[arg(long, env = "ORDERS_IDLE_TIMEOUT", default_value = "30s", value_name = "DURATION",
          value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Log to the file only, not to stderr (set when the client starts the daemon)
    #[arg(long, hide = true)]
    pub background: bool,
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
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
    }
}
