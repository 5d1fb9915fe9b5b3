//! One function per command: build the request, call the daemon, print the reply.

use std::io::{self, IsTerminal, Write};

use orders_daemon::paths::Paths;
use orders_shared::protocol::{
    CancelRequest, CheckReport, CheckRequest, CreateRequest, EventView, HistoryRequest, ListRequest,
    OrderPage, OrderView, Request, ShowRequest, WaitRequest,
};

use crate::args::{Cli, Command, DaemonCommand, GlobalArgs, ListArgs};
use crate::failure::{Exit, Failure};
use crate::output;
use crate::{daemon, eventlog};

/// Runs every command but `daemon run`, which `main` runs on its own runtime.
pub async fn run(cli: Cli) -> Result<(), Failure> {
    let paths = resolve_paths(&cli.global)?;
    let global = &cli.global;
    let out = &mut io::stdout().lock();
    let autostart = !global.no_autostart;
    let color = global.color.colours(io::stdout().is_terminal());
    match cli.command {
        Command::Create(args) => {
            let request = Request::Create(CreateRequest {
                user: args.user,
                total: args.total,
                idempotency_key: args.idempotency_key,
            });
            let mut client = daemon::connect(&paths, autostart).await?;
            let order: OrderView = client.call(&request).await?;
            if !args.wait {
                return print_order_or_id(out, &order, global.json);
            }
            if !global.json {
                // The id first, so that it is known even if the wait runs out of time.
                writeln!(out, "{}", order.id)?;
                out.flush()?;
            }
            let timeout_ms = crate::args::whole_millis_up(args.timeout);
            let wait = Request::Wait(WaitRequest { id: order.id, timeout_ms: Some(timeout_ms) });
            match client.call::<OrderView>(&wait).await {
                Ok(settled) if global.json => output::json(out, &settled)?,
                Ok(settled) => {
                    if let Some(reason) = settled.cancel_reason.filter(|_| !args.quiet) {
                        eprintln!("order {} was cancelled: {reason}", settled.id);
                    }
                }
                Err(failure) => {
                    if global.json {
                        output::json(out, &order)?;
                    }
                    return Err(failure);
                }
            }
        }
        Command::Watch(args) => {
            let mut client = daemon::connect(&paths, autostart).await?;
            eventlog::watch(&mut client, args.id, global.json, out).await?;
        }
        Command::Events(args) => {
            let mut client = daemon::connect(&paths, autostart).await?;
            let mut buffered = io::BufWriter::new(&mut *out);
            eventlog::events(&mut client, args, global.json, &mut buffered).await?;
            buffered.flush()?;
        }
        Command::Replay(args) => {
            let mut client = daemon::connect(&paths, autostart).await?;
            eventlog::replay(&mut client, args.check, global.json, out).await?;
        }
        Command::History(args) => {
            let request = Request::History(HistoryRequest { id: args.id });
            let events: Vec<EventView> = daemon::connect(&paths, autostart).await?.call(&request).await?;
            if global.json {
                output::json(out, &events)?;
            } else {
                output::events(out, &events)?;
            }
        }
        Command::Show(args) => {
            let request = Request::Show(ShowRequest { id: args.id });
            let order: OrderView = daemon::connect(&paths, autostart).await?.call(&request).await?;
            if global.json {
                output::json(out, &order)?;
            } else {
                output::order(out, &order, color)?;
            }
        }
        Command::Cancel(args) => {
            let request = Request::Cancel(CancelRequest { id: args.id });
            let order: OrderView = daemon::connect(&paths, autostart).await?.call(&request).await?;
            if global.json {
                output::json(out, &order)?;
            } else {
                writeln!(out, "cancelled {}", order.id)?;
            }
        }
        Command::List(args) => {
            let quiet = args.quiet;
            let orders = list(&paths, autostart, args).await?;
            if global.json {
                output::json(out, &orders)?;
            } else if quiet {
                for order in &orders {
                    writeln!(out, "{}", order.id)?;
                }
            } else if orders.is_empty() {
                eprintln!("no orders");
            } else {
                output::orders(out, &orders, color)?;
            }
        }
        Command::Check => {
            let report: CheckReport = daemon::connect(&paths, autostart)
                .await?
                .call_within(&Request::Check(CheckRequest {}), CHECK_TIMEOUT)
                .await?;
            if global.json {
                output::json(out, &report)?;
            } else {
                output::check(out, &report)?;
            }
            if report.problems > 0 {
                return Err(Failure::new(
                    Exit::CheckFailed,
                    format!("the check found {} problems", report.problems),
                ));
            }
        }
        Command::Completions(args) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(args.shell, &mut command, "orders", out);
        }
        Command::Daemon(DaemonCommand::Start(args)) => {
            let status = daemon::start(&paths, &args).await?;
            if global.json {
                output::json(out, &status)?;
            } else {
                writeln!(out, "daemon running (pid {}) on {}", status.pid, status.socket)?;
            }
        }
        Command::Daemon(DaemonCommand::Restart(args)) => {
            let status = daemon::restart(&paths, &args).await?;
            if global.json {
                output::json(out, &status)?;
            } else {
                writeln!(out, "daemon restarted (pid {}) on {}", status.pid, status.socket)?;
            }
        }
        Command::Daemon(DaemonCommand::Stop) => match daemon::stop(&paths).await? {
            Some(status) if !global.json => writeln!(out, "daemon stopped (pid {})", status.pid)?,
            Some(status) => output::json(out, &status)?,
            None => eprintln!("no daemon is running on {}", paths.socket.display()),
        },
        Command::Daemon(DaemonCommand::Status) => {
            let status = daemon::status(&paths).await?;
            if global.json {
                output::json(out, &status)?;
            } else {
                output::status(out, &status)?;
            }
        }
        Command::Daemon(DaemonCommand::Run(_)) => unreachable!("main runs the daemon itself"),
    }
    Ok(())
}

fn print_order_or_id(out: &mut impl Write, order: &OrderView, json: bool) -> Result<(), Failure> {
    if json {
        output::json(out, order)?;
    } else {
        writeln!(out, "{}", order.id)?;
    }
    Ok(())
}

/// A check walks the whole log: give it time (about 10 s per million orders).
const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

pub fn resolve_paths(global: &GlobalArgs) -> Result<Paths, Failure> {
    Paths::resolve(global.data_dir.clone(), global.socket.clone())
        .map_err(|e| Failure::new(Exit::Usage, e.to_string()))
}

/// Reads as many pages as asked for.
async fn list(paths: &Paths, autostart: bool, args: ListArgs) -> Result<Vec<OrderView>, Failure> {
    let mut client = daemon::connect(paths, autostart).await?;
    let mut orders = Vec::new();
    let mut request = ListRequest {
        user: args.user,
        status: args.status,
        since: args.since,
        limit: Some(if args.all { ListRequest::MAX_LIMIT } else { args.limit.min(ListRequest::MAX_LIMIT) }),
        before: None,
    };
    loop {
        let page: OrderPage = client.call(&Request::List(request.clone())).await?;
        let last = page.orders.last().map(|order| order.id);
        orders.extend(page.orders);
        let wanted = args.all || (orders.len() as u64) < u64::from(args.limit);
        match last {
            Some(last) if page.more && wanted => {
                request.before = Some(last);
                if !args.all {
                    let left = u64::from(args.limit) - orders.len() as u64;
                    request.limit = Some(left.min(u64::from(ListRequest::MAX_LIMIT)) as u32);
                }
            }
            _ => return Ok(orders),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(error: io::Error) -> Self {
        if error.kind() == io::ErrorKind::BrokenPipe {
            // `orders list | head`: the reader has seen enough.
            return Failure::broken_pipe();
        }
        Failure::new(Exit::Failure, format!("cannot write the output: {error}"))
    }
}
