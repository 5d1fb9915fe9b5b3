//! `orders`: parse the command line, run the command, exit with a documented code.
//!
//! The client does not link the daemon (issue 14): `orders daemon run` becomes `orders-daemon`,
//! installed beside it (`bin/orders-daemon.rs`).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use orders::args::{Cli, Command, DaemonCli, DaemonCommand, GlobalArgs, RunArgs};
use orders::commands;
use orders::failure::{Exit, Failure};

fn main() -> ExitCode {
    // A shell asking for completions (`ORDERS_COMPLETE` set) is answered, and the process ends
    // there (`orders::complete`).
    if let Some(problem) = orders::complete::misset() {
        let _ = writeln!(std::io::stderr(), "error: {problem}");
        return ExitCode::from(Exit::Usage.code());
    }
    clap_complete::CompleteEnv::with_factory(orders::complete::command).var(orders::complete::VAR).complete();
    let cli: Cli = match orders::usage::parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let result = match &cli.command {
        Command::Daemon(DaemonCommand::Run(args)) => run_daemon(&cli.global, args),
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::new(Exit::Failure, format!("cannot start: {e}")))
            .and_then(|runtime| runtime.block_on(commands::run(cli))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) if failure.broken_pipe => ExitCode::SUCCESS,
        Err(failure) if failure.silent => ExitCode::from(failure.exit.code()),
        Err(failure) => {
            // stderr may be gone too; there is nobody left to tell then.
            let _ = writeln!(std::io::stderr(), "{failure}");
            ExitCode::from(failure.exit.code())
        }
    }
}

/// `orders daemon run`: this process becomes the daemon, `orders-daemon run` with the same
/// settings. The same process (exec, not a child), so that a service manager's socket and
/// readiness notification, signals and the pid it watches all stay as they were.
fn run_daemon(global: &GlobalArgs, args: &RunArgs) -> Result<(), Failure> {
    let binary = orders::daemon::binary()?;
    let mut command = std::process::Command::new(&binary);
    if let Some(url) = &args.store {
        // In the environment, not on the command line that every user can read.
        command.env("ORDERS_STORE", url);
    }
    let error = command.args(DaemonCli::arguments(&global.store, global.color, args)).exec();
    Err(Failure::new(Exit::Failure, format!("cannot run the daemon {}: {error}", binary.display())))
}
