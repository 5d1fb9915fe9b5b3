//! One function per command: build the request, call the daemon, print the reply. `run` only
//! dispatches; the order commands live in `orders`, the daemon's management in `daemon`, the
//! commands over the event log here (their streaming is `eventlog`'s).

mod daemon;
mod orders;
mod settle;

use std::io::{self, IsTerminal, StdoutLock, Write};
use std::process::Stdio;

use orders_daemon::paths::Paths;
use orders_shared::protocol::{
    BackupReport, BackupRequest, CheckReport, CheckRequest, DaemonStatus, ImportReport, MetricsRequest,
    MetricsText, Request, RestoreReport, StatusRequest,
};
use serde::Serialize;

use crate::args::{
    BackupArgs, CheckArgs, Cli, Command, CompletionsArgs, DaemonCommand, EventsArgs, ExportArgs, GlobalArgs,
    ImportArgs, ReplayArgs, RestoreArgs, StoreArgs, ViewedOrderArgs,
};
use crate::client::Client;
use crate::eventlog;
use crate::failure::{Exit, Failure};
use crate::output;

/// Runs every command but `daemon run`, which `main` runs on its own runtime.
pub async fn run(cli: Cli) -> Result<(), Failure> {
    let ctx = &mut Context::new(&cli.global)?;
    match cli.command {
        Command::Create(args) => orders::create(ctx, args).await,
        Command::Watch(args) => watch(ctx, args).await,
        Command::Events(args) => events(ctx, args).await,
        Command::Replay(args) => replay(ctx, args).await,
        Command::History(args) => orders::history(ctx, args).await,
        Command::Show(args) => orders::show(ctx, args.id).await,
        Command::Cancel(args) => orders::cancel(ctx, args.id).await,
        Command::List(args) => orders::list(ctx, args).await,
        Command::Check(args) => check(ctx, args).await,
        Command::Backup(args) => backup(ctx, args).await,
        Command::Restore(args) => restore(ctx, args).await,
        Command::Export(args) => export(ctx, args).await,
        Command::Import(args) => import(ctx, args).await,
        Command::Metrics => metrics(ctx).await,
        Command::Completions(args) => completions(ctx, args),
        Command::Daemon(DaemonCommand::Start(args)) => daemon::start(ctx, &args).await,
        Command::Daemon(DaemonCommand::Restart(args)) => daemon::restart(ctx, &args).await,
        Command::Daemon(DaemonCommand::Stop) => daemon::stop(ctx).await,
        Command::Daemon(DaemonCommand::Status) => daemon::status(ctx).await,
        Command::Daemon(DaemonCommand::Run(_)) => unreachable!("main runs the daemon itself"),
    }
}

/// What every command needs: where the daemon is, how to print, and stdout itself.
struct Context {
    paths: Paths,
    /// Start the daemon if none answers (`--no-autostart` turns it off).
    autostart: bool,
    json: bool,
    /// Colour the text output (`--color`, or whether stdout is a terminal).
    color: bool,
    /// Times in UTC (`--utc`), not in the local zone.
    utc: bool,
    out: StdoutLock<'static>,
}

impl Context {
    fn new(global: &GlobalArgs) -> Result<Self, Failure> {
        let paths = resolve_paths(&global.store)?;
        let out = io::stdout().lock();
        let color = global.color.colours(io::stdout().is_terminal());
        Ok(Self { paths, autostart: !global.no_autostart, json: global.json, color, utc: global.utc, out })
    }

    /// How the text output looks, with `--wide` or without.
    fn look(&self, wide: bool) -> output::Look {
        output::Look::new(self.color, wide, self.utc)
    }

    /// A connection to the daemon, started first if need be and allowed. A daemon started so is
    /// told of once on stderr, for people: in text mode, when stderr is a terminal (issue 18).
    async fn connect(&self) -> Result<Client, Failure> {
        let (client, started) = crate::daemon::connect(&self.paths, self.autostart).await?;
        if let Some(status) = started
            && !self.json
            && io::stderr().is_terminal()
        {
            eprintln!(
                "note: started the orders daemon in the background (pid {}, data in {}); `{}` stops it",
                status.pid,
                status.data_dir,
                self.paths.command_line("daemon stop")
            );
        }
        Ok(client)
    }

    /// Prints `value` as JSON with `--json`, otherwise what `text` writes.
    fn emit<T: Serialize>(
        &mut self,
        value: &T,
        text: impl FnOnce(&mut StdoutLock<'static>) -> io::Result<()>,
    ) -> Result<(), Failure> {
        Ok(output::emit(&mut self.out, self.json, value, text)?)
    }
}

/// `orders watch`: the short id is resolved on the connection that then streams.
async fn watch(ctx: &mut Context, args: ViewedOrderArgs) -> Result<(), Failure> {
    let mut client = ctx.connect().await?;
    let id = crate::ids::resolve(&mut client, args.order.id).await?;
    let mut printer =
        eventlog::Printer::new(ctx.json, output::EventLines::new(ctx.look(args.wide)), &ctx.paths);
    eventlog::watch(&mut client, id, &mut printer, &mut ctx.out).await
}

/// `orders events`: a page of events is many small writes, so they go through a buffer.
async fn events(ctx: &mut Context, args: EventsArgs) -> Result<(), Failure> {
    let mut client = ctx.connect().await?;
    // Short ids come over a second connection: the first one streams.
    let mut printer =
        eventlog::Printer::new(ctx.json, output::EventLines::new(ctx.look(args.wide)), &ctx.paths);
    let mut buffered = io::BufWriter::new(&mut ctx.out);
    eventlog::events(&mut client, args, &mut printer, &mut buffered).await?;
    buffered.flush()?;
    Ok(())
}

/// `orders export`: a million lines, written through a buffer.
async fn export(ctx: &mut Context, args: ExportArgs) -> Result<(), Failure> {
    let mut client = ctx.connect().await?;
    let mut buffered = io::BufWriter::with_capacity(1 << 16, &mut ctx.out);
    eventlog::export(&mut client, args, ctx.json, &mut buffered).await
}

/// `orders replay`.
async fn replay(ctx: &mut Context, args: ReplayArgs) -> Result<(), Failure> {
    let mut client = ctx.connect().await?;
    eventlog::replay(&mut client, args.check, ctx.json, &mut ctx.out).await
}

/// `orders metrics`: the daemon's metrics in Prometheus' text format, as its HTTP endpoint serves
/// them (issue 16). Like `daemon status`, it never starts a daemon.
async fn metrics(ctx: &mut Context) -> Result<(), Failure> {
    let metrics: MetricsText =
        crate::daemon::ask_running(&ctx.paths, &Request::Metrics(MetricsRequest {}), "metrics").await?;
    ctx.emit(&metrics, |out| out.write_all(metrics.text.as_bytes()))
}

/// A check walks the whole log and a backup copies the whole store: give them time (about 10 s
/// and 20 s per million orders here).
const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// `orders check`: the report, and a failure (exit 7) if it found problems. With `--file`, a
/// copy of a store is checked by the daemon's binary, without a daemon (the client does not
/// link the checker).
async fn check(ctx: &mut Context, args: CheckArgs) -> Result<(), Failure> {
    let report: CheckReport = match &args.file {
        Some(file) => check_copy(file)?,
        None => ctx.connect().await?.call_within(&Request::Check(CheckRequest {}), CHECK_TIMEOUT).await?,
    };
    ctx.emit(&report, |out| output::check(out, &report))?;
    if report.problems > 0 {
        let problems = if report.problems == 1 {
            "1 problem".to_owned()
        } else {
            format!("{} problems", report.problems)
        };
        return Err(Failure::new(Exit::CheckFailed, format!("the check found {problems}")));
    }
    Ok(())
}

/// `orders-daemon check --file FILE`, and its report.
fn check_copy(file: &std::path::Path) -> Result<CheckReport, Failure> {
    on_a_copy("check", file, None, None)
}

/// Runs `orders-daemon <what> --file FILE` (on the data directory of `paths`, if given) and
/// reads the JSON it prints; its error, as it said it, otherwise.
fn on_a_copy<T: serde::de::DeserializeOwned>(
    what: &str,
    file: &std::path::Path,
    paths: Option<&Paths>,
    store: Option<&str>,
) -> Result<T, Failure> {
    let mut command = std::process::Command::new(crate::daemon::binary()?);
    // A PostgreSQL URL in the environment, never on a command line every user can read.
    match store {
        Some(url) => command.env("ORDERS_STORE", url),
        None => command.env_remove("ORDERS_STORE"),
    };
    // `--file=PATH`, one argument: a name that begins with `-` is no option.
    let mut argument = std::ffi::OsString::from("--file=");
    argument.push(file);
    // `-` is standard input, passed on (`orders import -`).
    let stdin = if file.as_os_str() == "-" { Stdio::inherit() } else { Stdio::null() };
    command.arg(what).arg(argument).stdin(stdin);
    if let Some(paths) = paths {
        command.env("ORDERS_DATA_DIR", &paths.data_dir).env("ORDERS_SOCKET", &paths.socket);
    }
    let output =
        command.output().map_err(|e| Failure::new(Exit::Failure, format!("cannot run {what}: {e}")))?;
    if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&output.status) {
        return Err(Failure::new(
            Exit::Failure,
            match what {
                "check" => format!("`orders-daemon check` was killed by signal {signal} before it reported"),
                _ => format!(
                    "`orders-daemon {what}` was killed by signal {signal} before it reported: the data \
                     directory holds the store it had or the new one, whole (the daemon settles which when \
                     it starts)"
                ),
            },
        ));
    }
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr);
        let said = said.trim().strip_prefix("error: ").unwrap_or(said.trim());
        return Err(Failure::new(Exit::Failure, said.to_owned()));
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|e| Failure::new(Exit::Failure, format!("the report of {what} cannot be read: {e}")))
}

/// Runs `orders-daemon <what> --file FILE` on the data directory with no daemon serving it: a
/// running one is stopped first and started again afterwards, with the default settings
/// (`orders daemon restart` with yours, if they differ), whether it succeeded or not. The start
/// lock is held throughout, so that no client's autostart takes the directory in between. Its
/// report, and whether a daemon was stopped and started again.
async fn with_the_daemon_stopped<T: serde::de::DeserializeOwned>(
    paths: &Paths,
    what: &str,
    file: &std::path::Path,
    store: Option<&str>,
) -> Result<(T, bool), Failure> {
    let start_lock = crate::daemon::start_lock(paths)?;
    let was_running = crate::daemon::stop(paths).await?.is_some();
    let done: Result<T, Failure> = on_a_copy(what, file, Some(paths), store);
    if was_running {
        crate::daemon::start_holding(paths, &[], store, start_lock).await?;
    }
    Ok((done?, was_running))
}

/// `orders restore FILE`.
async fn restore(ctx: &mut Context, args: RestoreArgs) -> Result<(), Failure> {
    if std::env::var_os("ORDERS_STORE").is_some_and(|url| !url.is_empty()) {
        return Err(Failure::new(
            Exit::Usage,
            "nothing was restored: ORDERS_STORE names a PostgreSQL store, which is restored with the \
             database's own tools (pg_restore, a replica), or from an export with `orders import`; \
             `orders restore` puts a SQLite copy in the data directory (unset ORDERS_STORE for that)",
        ));
    }
    let file = absolute(&args.file)?;
    let (report, restarted): (RestoreReport, bool) =
        with_the_daemon_stopped(&ctx.paths, "restore", &file, None).await?;
    ctx.emit(&report, |out| output::restore(out, &report, restarted))
}

/// `orders import [FILE|-]`: refused at once when the running daemon's store holds events;
/// otherwise run with the daemon stopped, as `restore` is.
async fn import(ctx: &mut Context, args: ImportArgs) -> Result<(), Failure> {
    let file = if args.file.as_os_str() == "-" {
        if io::stdin().is_terminal() {
            return Err(Failure::new(
                Exit::Usage,
                "give the export to import as FILE, or pipe it in: `orders import FILE`, \
                 `gunzip -c FILE.gz | orders import -`",
            ));
        }
        args.file
    } else {
        absolute(&args.file)?
    };
    // The store the import goes into, as `status` names it: the running daemon's, unless it is
    // another PostgreSQL database (which `orders-daemon import` checks itself).
    let target = match &args.store {
        Some(url) => Some(
            orders_daemon::store::postgres::Target::parse(url)
                .map_err(|e| Failure::new(Exit::Usage, format!("nothing was imported: {e}")))?
                .describe(),
        ),
        None => None,
    };
    let running = match Client::connect(&ctx.paths).await {
        Ok(mut client) => client.call::<DaemonStatus>(&Request::Status(StatusRequest {})).await.ok(),
        Err(_) => None,
    };
    if target.is_none()
        && let Some(status) = &running
        && status.database.starts_with("postgres://")
    {
        // Without --store the import would go into the data directory's SQLite file, and the
        // daemon be started again on it: not what a user of this daemon means.
        return Err(Failure::new(
            Exit::Usage,
            format!(
                "nothing was imported: the running daemon serves the PostgreSQL database {}; to import \
                 into a PostgreSQL database, give it with --store (or ORDERS_STORE)",
                status.database
            ),
        ));
    }
    if let Some(status) = running
        && target.as_ref().is_none_or(|target| *target == status.database)
        && status.events > 0
    {
        return Err(Failure::new(
            Exit::Failure,
            format!(
                "nothing was imported: the store at {} holds {} events; an import goes into an empty \
                 store (another --data-dir, or move that store away first)",
                status.database, status.events
            ),
        ));
    }
    let (report, restarted): (ImportReport, bool) =
        with_the_daemon_stopped(&ctx.paths, "import", &file, args.store.as_deref()).await?;
    ctx.emit(&report, |out| output::import(out, &report, restarted))
}

/// `orders backup FILE`.
async fn backup(ctx: &mut Context, args: BackupArgs) -> Result<(), Failure> {
    let file = absolute(&args.file)?;
    let path = file.to_str().ok_or_else(|| {
        Failure::new(Exit::Usage, format!("{} is not a UTF-8 path; choose another name", file.display()))
    })?;
    let request = Request::Backup(BackupRequest { path: path.to_owned() });
    let report: BackupReport = ctx.connect().await?.call_within(&request, CHECK_TIMEOUT).await?;
    ctx.emit(&report, |out| output::backup(out, &report))
}

/// A path the user gave, made absolute here, where their working directory is (the daemon's is
/// not theirs).
fn absolute(path: &std::path::Path) -> Result<std::path::PathBuf, Failure> {
    std::path::absolute(path).map_err(|e| Failure::new(Exit::Usage, format!("{}: {e}", path.display())))
}

/// `orders completions <shell>`.
fn completions(ctx: &mut Context, args: CompletionsArgs) -> Result<(), Failure> {
    // Into a buffer first: a closed pipe (`orders completions bash | head -1`) must end the
    // output quietly (issue 18).
    let mut script = Vec::new();
    crate::complete::registration(args.shell, &mut script)
        .map_err(|e| Failure::new(Exit::Failure, format!("cannot write the script: {e}")))?;
    ctx.out.write_all(&script)?;
    Ok(())
}

pub fn resolve_paths(store: &StoreArgs) -> Result<Paths, Failure> {
    Paths::resolve(store.data_dir.clone(), store.socket.clone())
        .map_err(|e| Failure::new(Exit::Usage, e.to_string()))
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
