//! `orders-daemon`: the daemon's own binary. `orders daemon run` execs it, and the client's
//! autostart starts it; it runs the daemon in this process until SIGTERM or SIGINT.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use orders::args::{DaemonBinaryCommand, DaemonCli, RunArgs};
use orders::commands;
use orders::failure::{Exit, Failure};
use orders_daemon::logging::Stderr;

fn main() -> ExitCode {
    let cli: DaemonCli = match orders::usage::parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let result = match &cli.command {
        DaemonBinaryCommand::Run(args) => run(&cli, args),
        DaemonBinaryCommand::Check(args) => check_copy(&args.file),
        DaemonBinaryCommand::Restore(args) => restore(&cli, &args.file),
        DaemonBinaryCommand::Import(args) => import(&cli, &args.file, args.store.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let _ = writeln!(std::io::stderr(), "{failure}");
            ExitCode::from(failure.exit.code())
        }
    }
}

/// `orders-daemon check --file FILE`: the report as JSON on stdout, whatever it found (the
/// client prints it and chooses the exit code); a file that cannot be checked is a failure.
fn check_copy(file: &std::path::Path) -> Result<(), Failure> {
    let report = orders_daemon::check_copy(file)
        .map_err(|e| Failure::new(Exit::Failure, format!("cannot check {}: {e}", file.display())))?;
    print_json(&report)
}

/// `orders-daemon restore --file FILE`: what was done, as JSON on stdout.
fn restore(cli: &DaemonCli, file: &std::path::Path) -> Result<(), Failure> {
    let paths = commands::resolve_paths(&cli.store)?;
    let report = orders_daemon::restore::restore(&paths, file)
        .map_err(|e| Failure::new(Exit::Failure, format!("nothing was restored: {e:#}")))?;
    print_json(&report)
}

/// `orders-daemon import --file FILE`: what was done, as JSON on stdout. `-` reads stdin.
fn import(cli: &DaemonCli, file: &std::path::Path, store: Option<&str>) -> Result<(), Failure> {
    let paths = commands::resolve_paths(&cli.store)?;
    let postgres = store
        .map(orders_daemon::store::postgres::Target::parse)
        .transpose()
        .map_err(|e| Failure::new(Exit::Usage, e))?;
    let refused = |e: anyhow::Error| Failure::new(Exit::Failure, format!("nothing was imported: {e:#}"));
    // Large reads: the export is read a line at a time from this buffer.
    const BUFFER: usize = 1 << 20;
    let report = if file.as_os_str() == "-" {
        let mut input = std::io::BufReader::with_capacity(BUFFER, std::io::stdin().lock());
        orders_daemon::import::import(&paths, postgres.as_ref(), None, &mut input)
    } else {
        let opened = std::fs::File::open(file).map_err(|e| {
            Failure::new(Exit::Failure, format!("nothing was imported: {}: {e}", file.display()))
        })?;
        let mut input = std::io::BufReader::with_capacity(BUFFER, opened);
        orders_daemon::import::import(&paths, postgres.as_ref(), Some(file), &mut input)
    }
    .map_err(refused)?;
    print_json(&report)
}

/// A report on one line of stdout, for the client that runs this binary to read.
fn print_json(report: &impl serde::Serialize) -> Result<(), Failure> {
    let json = serde_json::to_string(report).map_err(|e| Failure::new(Exit::Failure, e.to_string()))?;
    writeln!(std::io::stdout(), "{json}").map_err(|e| Failure::new(Exit::Failure, e.to_string()))
}

fn run(cli: &DaemonCli, args: &RunArgs) -> Result<(), Failure> {
    let failed = |e: anyhow::Error| Failure::new(Exit::Failure, format!("{e:#}"));
    // First, while this is the only thread: it takes the variables out of the environment. A
    // daemon the client starts in the background has no service manager.
    let passed_socket = if args.background {
        orders_daemon::service::ignore_the_manager();
        None
    } else {
        orders_daemon::service::passed_socket().map_err(failed)?
    };
    if args.background {
        // Leave the client's session, so that its terminal's signals do not reach the daemon.
        let _ = rustix::process::setsid();
    }
    let paths = commands::resolve_paths(&cli.store)?;
    let log_file = match &args.log_file {
        Some(path) => path.clone(),
        None => paths.log_file(),
    };
    let stderr = if args.background {
        Stderr::Off
    } else if cli.color.colours(std::io::stderr().is_terminal()) {
        Stderr::Coloured
    } else {
        Stderr::Plain
    };
    orders_daemon::logging::init(&args.log_level, &log_file, stderr).map_err(failed)?;
    let mut config = orders_daemon::Config::new(paths);
    config.log_file = log_file.clone();
    config.limits.max_connections = args.max_connections as usize;
    config.limits.idle_timeout = args.idle_timeout;
    config.limits.drain_timeout = args.drain_timeout;
    config.delivery_delay = args.delivery_delay;
    config.payment_latency = args.payment_delay;
    config.catch_up_pause = test_pause("ORDERS_TEST_CATCH_UP_PAUSE_MS");
    config.replay_pause = test_pause("ORDERS_TEST_REPLAY_PAUSE_MS");
    config.accept_store_change = args.accept_store_change;
    config.metrics_listen = args.metrics_listen;
    if args.http.is_none() && (args.http_token_file.is_some() || args.http_insecure_local) {
        tracing::warn!("--http-token-file and --http-insecure-local do nothing without --http (ORDERS_HTTP)");
    }
    config.http = args.http.map(|address| orders_daemon::HttpConfig {
        address,
        // Relative to where the daemon was started; it changes no directory, but say it whole.
        token_file: args
            .http_token_file
            .as_ref()
            .map(|file| std::path::absolute(file).unwrap_or(file.clone())),
        insecure_local: args.http_insecure_local,
    });
    config.passed_socket = passed_socket;
    if let Some(url) = &args.store {
        let target =
            orders_daemon::store::postgres::Target::parse(url).map_err(|e| Failure::new(Exit::Usage, e))?;
        config.store = Some(target);
    }
    // Tests move the daemon's clock (ORDERS_TEST_CLOCK_OFFSET_MS); it is no setting for users.
    config.clock = orders_daemon::clock::Clock::from_env().map_err(|e| Failure::new(Exit::Usage, e))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("orders-daemon")
        .build()
        .map_err(|e| Failure::new(Exit::Failure, format!("cannot start the runtime: {e}")))?;
    let result = runtime.block_on(async {
        let stop = orders_daemon::stop_signal()?;
        orders_daemon::run(config, stop).await
    });
    // Once `run` is done the daemon has stopped; a blocking task still waiting on a database
    // that does not answer (a frozen server) must not keep the process, and its data
    // directory's lock, alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result.map_err(|e| {
        tracing::error!("{e:#}");
        failed(e)
    })
}

/// `ORDERS_TEST_CATCH_UP_PAUSE_MS`, `ORDERS_TEST_REPLAY_PAUSE_MS`: a pause before each chunk of
/// the start-up's catch-up, or of a replay, so that tests can watch a daemon that is starting or
/// replaying (docs/ARCHITECTURE.md). Not in `--help`: they only slow the daemon down.
fn test_pause(variable: &str) -> std::time::Duration {
    std::env::var(variable)
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(std::time::Duration::ZERO, std::time::Duration::from_millis)
}
