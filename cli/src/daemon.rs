//! Finding, starting and stopping the daemon.
//!
//! Autostart is serialised by a lock file beside the socket: of many clients that find no daemon
//! at the same instant, the first starts one and the others, once they get the lock, find it
//! answering. The daemon itself holds a lock on its data directory, so that a second one can
//! never serve the same data.
//!
//! Nothing here deletes anything at the socket path: a file there that is not a live socket is
//! for the daemon to replace (a dead socket) or refuse (anything else).

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use orders_daemon::files::{self, Access};
use orders_daemon::lock::{self, Holder};
use orders_daemon::paths::{DAEMON_BINARY, Paths};
use orders_shared::protocol::{DaemonStatus, ErrorCode, Request, ShutdownRequest, StatusRequest};
use rustix::process::{Pid, Signal, kill_process};

use crate::args::RunArgs;
use crate::client::Client;
use crate::failure::{Exit, Failure};

/// How long a daemon just spawned may take to answer on its socket (it binds it before it opens
/// the store: answering is quick, being ready may take long; see [`crate::starting`]).
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a stopping daemon may take to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Connects to the daemon, starting one first if none runs and `autostart` allows it; beside
/// the connection, the status of the daemon it started, if it did.
pub async fn connect(paths: &Paths, autostart: bool) -> Result<(Client, Option<DaemonStatus>), Failure> {
    match Client::connect(paths).await {
        Ok(client) => return Ok((client, None)),
        Err(error) if is_absent(&error) => {}
        Err(error) => return Err(cannot_connect(paths, &error)),
    }
    if !autostart {
        return Err(match whereabouts(paths).await {
            Whereabouts::Nobody => not_running(paths).with_hint(format!(
                "start one with `{}`, or unset ORDERS_NO_AUTOSTART to have it started on demand",
                paths.command_line("daemon start")
            )),
            other => other.failure(paths, None),
        });
    }
    let started = start_in_background(paths, &[], None).await?;
    let client = Client::connect(paths).await.map_err(|error| cannot_connect(paths, &error))?;
    Ok((client, started))
}

/// Nothing listens on the socket: no file, or a file left by a daemon that died.
fn is_absent(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused)
}

fn not_running(paths: &Paths) -> Failure {
    Failure::new(Exit::Unavailable, format!("no daemon is running on {}", paths.socket.display()))
        .with_hint(format!("start one with `{}`", paths.command_line("daemon start")))
}

fn cannot_connect(paths: &Paths, error: &io::Error) -> Failure {
    Failure::new(
        Exit::Unavailable,
        format!("cannot connect to the daemon on {}: {error}", paths.socket.display()),
    )
}

/// Where the daemon of a data directory is, when nothing answers on the socket in use.
enum Whereabouts {
    /// Nobody holds the data directory.
    Nobody,
    /// Its daemon answers on its own socket, which is another one (issue 12: `--socket alt.sock`).
    Elsewhere { holder: Holder, theirs: Paths },
    /// Its daemon does not answer, on this socket or on its own.
    Wedged { holder: Holder, theirs: Paths, what: String },
}

/// Asks the lock who holds the data directory, and that holder whether it answers where it listens.
async fn whereabouts(paths: &Paths) -> Whereabouts {
    let Some(holder) = lock::holder(&paths.data_dir) else { return Whereabouts::Nobody };
    let socket = holder.socket.clone().unwrap_or_else(|| paths.socket.clone());
    let theirs = Paths { data_dir: paths.data_dir.clone(), socket };
    if theirs.socket == paths.socket {
        let what = format!("its socket {} is gone", paths.socket.display());
        return Whereabouts::Wedged { holder, theirs, what };
    }
    if answers(&theirs).await {
        return Whereabouts::Elsewhere { holder, theirs };
    }
    let what = format!("does not answer on its socket {}", theirs.socket.display());
    Whereabouts::Wedged { holder, theirs, what }
}

/// Whether a daemon answers on these paths' socket (with anything, a refusal included).
async fn answers(paths: &Paths) -> bool {
    let Ok(mut client) = Client::connect(paths).await else { return false };
    let status = client.call::<DaemonStatus>(&Request::Status(StatusRequest {}));
    tokio::time::timeout(ANSWER_TIMEOUT, status)
        .await
        .is_ok_and(|answer| answer.is_ok() || answer.is_err_and(|failure| failure.refusal.is_some()))
}

impl Whereabouts {
    /// Why nothing answers on `paths.socket`; `example` is the command the hint shows.
    fn failure(self, paths: &Paths, example: Option<&str>) -> Failure {
        match self {
            Whereabouts::Nobody => not_running(paths),
            Whereabouts::Elsewhere { holder, theirs } => elsewhere(paths, &holder, &theirs, example),
            Whereabouts::Wedged { holder, theirs, what } => wedged(&theirs, &holder, &what),
        }
    }
}

/// The daemon of this data directory is healthy on another socket: name it, never call it gone.
fn elsewhere(paths: &Paths, holder: &Holder, theirs: &Paths, example: Option<&str>) -> Failure {
    let pid = holder.pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default();
    let hint = match example {
        Some(args) => format!(
            "reach it with `--socket {}` (or ORDERS_SOCKET): `{}`",
            theirs.socket.display(),
            theirs.command_line(args)
        ),
        None => format!("reach it with `--socket {}` (or ORDERS_SOCKET)", theirs.socket.display()),
    };
    Failure::new(
        Exit::Unavailable,
        format!(
            "the daemon{pid} serving {} listens on {}, not on {}",
            paths.data_dir.display(),
            theirs.socket.display(),
            paths.socket.display()
        ),
    )
    .with_hint(hint)
}

fn path_failure(error: impl std::fmt::Display) -> Failure {
    Failure::new(Exit::Failure, error.to_string())
}

/// Starts a daemon in the background unless one answers already; returns the status of the one
/// it started, ready, if it did. A daemon it starts is waited for until it is ready, and a failing start-up is reported
/// with what the daemon wrote on stderr. Other clients are held back (by the start lock) only
/// until its socket answers: from then on each of them waits for it on its own.
pub async fn start_in_background(
    paths: &Paths,
    args: &[OsString],
    store: Option<&str>,
) -> Result<Option<DaemonStatus>, Failure> {
    let lock = start_lock(paths)?;
    start_holding(paths, args, store, lock).await
}

/// The start lock (`<socket>.lock`), taken: no client starts a daemon on these paths while it is
/// held (they wait for it). `import` and `restore` hold it from stopping the daemon until they
/// have started it again, so that a client's autostart cannot take the data directory between.
pub fn start_lock(paths: &Paths) -> Result<std::fs::File, Failure> {
    paths.ensure_socket_dir().map_err(path_failure)?;
    let lock_path = paths.start_lock_file();
    // 0600, and never through a symlink: as root, a planted link would create or truncate its target.
    let lock = files::open_private(&lock_path, Access::ReadWrite).map_err(path_failure)?.file;
    lock.lock().map_err(|e| path_failure(format!("cannot lock {}: {e}", lock_path.display())))?;
    Ok(lock)
}

/// [`start_in_background`], with the start lock taken already; it is released once the new
/// daemon answers. `store` (a PostgreSQL URL given as `--store`) goes to the daemon in its
/// environment, never on its command line, which every user of the machine can read.
pub async fn start_holding(
    paths: &Paths,
    args: &[OsString],
    store: Option<&str>,
    lock: std::fs::File,
) -> Result<Option<DaemonStatus>, Failure> {
    // Another client may have started one while this one waited for the lock.
    if Client::connect(paths).await.is_ok() {
        return Ok(None);
    }
    // A daemon holding the data directory elsewhere, or wedged, is told of: one started here
    // could not get the data directory anyway.
    match whereabouts(paths).await {
        Whereabouts::Nobody => {}
        other => return Err(other.failure(paths, None)),
    }
    let binary = binary()?;
    let mut command = Command::new(&binary);
    if let Some(url) = store {
        command.env("ORDERS_STORE", url);
    }
    let mut child = command
        .args(["run", "--background"])
        .args(args)
        .env("ORDERS_DATA_DIR", &paths.data_dir)
        .env("ORDERS_SOCKET", &paths.socket)
        // A service manager's variables in the client's environment are not for this daemon:
        // it would tell another service's manager it is ready, or take a descriptor for a socket.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Failure::new(Exit::Unavailable, format!("cannot start the daemon {}: {e}", binary.display()))
        })?;

    let mut client = answering(paths, &mut child, args).await?;
    drop(lock);
    match client.wait_until_ready("the daemon is starting").await {
        Ok(status) => Ok(Some(status)),
        // The daemon closes its socket just before it exits: give it a moment to be reaped, so
        // that its own words on stderr are what the user reads.
        Err(failure) => match exited_soon(&mut child).await {
            Some(status) => {
                Err(start_failed(paths, &mut child, args, &format!("the daemon exited at start ({status})")))
            }
            None => Err(failure),
        },
    }
}

/// The daemon's binary, beside this one (the client does not link the daemon, issue 14). It is
/// run as whoever runs `orders`, so it must be as trustworthy as this binary: a regular file that
/// belongs to this user or root and that nobody else may write, in a directory that nobody else
/// may rename it in (a sticky `/tmp` lets others plant an `orders-daemon` beside a copied
/// `orders`; that one is refused).
pub fn binary() -> Result<PathBuf, Failure> {
    let exe = std::env::current_exe()
        .map_err(|e| Failure::new(Exit::Unavailable, format!("cannot find the orders binary: {e}")))?;
    let binary = exe.with_file_name(DAEMON_BINARY);
    let refuse = |why: String| {
        Failure::new(Exit::Unavailable, format!("cannot run the daemon's binary {}: {why}", binary.display()))
            .with_hint("`cargo install --path cli` installs both binaries; in a source tree, `cargo build --release -p orders` builds both")
    };
    let meta = match std::fs::metadata(&binary) {
        Ok(meta) => meta,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(refuse("it is missing (it is installed beside orders)".to_owned()));
        }
        Err(error) => return Err(refuse(error.to_string())),
    };
    if !meta.is_file() {
        return Err(refuse("it is not a regular file".to_owned()));
    }
    trusted(&meta).map_err(|why| refuse(format!("the file {why}")))?;
    if let Some(dir) = binary.parent() {
        let dir_meta = std::fs::metadata(dir).map_err(|e| refuse(format!("{}: {e}", dir.display())))?;
        let sticky = dir_meta.mode() & 0o1000 != 0;
        trusted(&dir_meta)
            .or_else(|why| if sticky && dir_meta.uid() == 0 { Ok(()) } else { Err(why) })
            .map_err(|why| refuse(format!("its directory {why}")))?;
    }
    if meta.mode() & 0o111 == 0 {
        return Err(refuse("it is not executable".to_owned()));
    }
    Ok(binary)
}

/// Whether a file or directory belongs to this user or root and nobody else may write it.
fn trusted(meta: &std::fs::Metadata) -> Result<(), String> {
    let uid = rustix::process::geteuid().as_raw();
    if meta.uid() != uid && meta.uid() != 0 {
        return Err(format!("belongs to uid {}, neither to you (uid {uid}) nor to root", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!("may be written by others (mode {:o})", meta.mode() & 0o7777));
    }
    Ok(())
}

/// The exit status of a daemon that exits within a few seconds; `None` if it goes on.
async fn exited_soon(child: &mut Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the daemon just spawned answers on its socket, or exits.
async fn answering(paths: &Paths, child: &mut Child, args: &[OsString]) -> Result<Client, Failure> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match Client::connect(paths).await {
            Ok(client) => return Ok(client),
            Err(error) if is_absent(&error) => {}
            Err(error) => return Err(cannot_connect(paths, &error)),
        }
        if let Some(status) = child.try_wait().map_err(|e| path_failure(e.to_string()))? {
            return Err(start_failed(paths, child, args, &format!("the daemon exited at start ({status})")));
        }
        if Instant::now() > deadline {
            return Err(start_failed(
                paths,
                child,
                args,
                &format!("the daemon did not answer within {START_TIMEOUT:?}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn start_failed(paths: &Paths, child: &mut Child, args: &[OsString], what: &str) -> Failure {
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take()
        && child.try_wait().ok().flatten().is_some()
    {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let mut message = what.to_owned();
    let stderr = stderr.trim();
    if !stderr.is_empty() {
        message.push_str(":\n");
        message.push_str(stderr);
    }
    Failure::new(Exit::Unavailable, message)
        .with_hint(format!("see the daemon's log: {}", log_file_hint(paths, args).display()))
}

/// Where the daemon started with `args` logs: `--log-file` if forwarded, else as it resolves it.
fn log_file_hint(paths: &Paths, args: &[OsString]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    // `--log-file=PATH`, as `RunArgs::forwarded` spells it.
    let forwarded = args.iter().find_map(|arg| {
        arg.as_bytes()
            .strip_prefix(b"--log-file=")
            .map(|path| PathBuf::from(std::ffi::OsStr::from_bytes(path)))
    });
    forwarded
        .or_else(|| std::env::var_os("ORDERS_LOG_FILE").map(PathBuf::from))
        .unwrap_or_else(|| paths.log_file())
}

/// `orders daemon start`.
pub async fn start(paths: &Paths, args: &RunArgs) -> Result<DaemonStatus, Failure> {
    if let Some(status) = start_in_background(paths, &args.forwarded(), args.store.as_deref()).await? {
        return Ok(status);
    }
    // One was there already, perhaps starting: `start` returns once it is ready.
    let mut client = Client::connect(paths).await.map_err(|error| cannot_connect(paths, &error))?;
    client.wait_until_ready("the daemon is starting").await
}

/// How long `status`, `stop` and `restart` wait for an answer before calling a daemon wedged.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// `orders daemon status`: the running daemon's own report, or why there is none: not running,
/// listening on another socket, or wedged (it holds the data directory but does not answer, or
/// its socket is gone).
pub async fn status(paths: &Paths) -> Result<DaemonStatus, Failure> {
    ask_running(paths, &Request::Status(StatusRequest {}), "daemon status").await
}

/// Asks the running daemon, never starting one: what `status` and `metrics` do. `command` is
/// the command to suggest again once a daemon runs.
pub async fn ask_running<T: serde::de::DeserializeOwned>(
    paths: &Paths,
    request: &Request,
    command: &str,
) -> Result<T, Failure> {
    let mut client = match Client::connect(paths).await {
        Ok(client) => client,
        Err(error) if is_absent(&error) => {
            return Err(whereabouts(paths).await.failure(paths, Some(command)));
        }
        Err(error) => return Err(cannot_connect(paths, &error)),
    };
    match tokio::time::timeout(ANSWER_TIMEOUT, client.call(request)).await {
        Ok(answer) => answer,
        Err(_) => {
            let holder =
                lock::holder(&paths.data_dir).unwrap_or(Holder { pid: None, socket: None, task: None });
            Err(wedged(
                paths,
                &holder,
                &format!("does not answer on {} within {ANSWER_TIMEOUT:?}", paths.socket.display()),
            ))
        }
    }
}

/// The daemon holds the data directory but cannot be reached where it listens (`paths`).
fn wedged(paths: &Paths, holder: &Holder, what: &str) -> Failure {
    if let Some(failure) = busy(paths, holder) {
        return failure;
    }
    if let Err(why) = holder_is_daemon(paths, holder) {
        return not_a_daemon(paths, &why);
    }
    let pid = holder.pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default();
    Failure::new(Exit::Unavailable, format!("the daemon{pid} holds {} but {what}", paths.data_dir.display()))
        .with_hint(format!("replace it with `{}`", paths.command_line("daemon restart")))
}

/// The data directory is held by an `orders import` or `restore` at work, if it is: no daemon to
/// reach, stop or signal until it has finished.
fn busy(paths: &Paths, holder: &Holder) -> Option<Failure> {
    let task = holder.task.as_ref()?;
    let pid = holder.pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default();
    Some(
        Failure::new(
            Exit::Unavailable,
            format!(
                "an `orders {task}`{pid} is at work on {}: no daemon serves it until it has finished",
                paths.data_dir.display()
            ),
        )
        .with_hint("try again once it has finished"),
    )
}

/// What asking a daemon to stop came to.
enum Stopping {
    /// No daemon holds the data directory.
    Nothing,
    Stopped(Box<DaemonStatus>),
    /// It holds the data directory but does not answer or exit, or speaks another version: a
    /// signal may stop it.
    Unresponsive(Failure),
    /// It answers and must not be stopped by force: it serves another store, or listens on
    /// another socket.
    Refused(Failure),
}

async fn ask_to_stop(paths: &Paths) -> Stopping {
    let mut client = match Client::connect(paths).await {
        Ok(client) => client,
        Err(error) if is_absent(&error) => {
            return match whereabouts(paths).await {
                Whereabouts::Nobody => Stopping::Nothing,
                elsewhere @ Whereabouts::Elsewhere { .. } => {
                    Stopping::Refused(elsewhere.failure(paths, Some("daemon stop")))
                }
                Whereabouts::Wedged { holder, .. } if holder.task.is_some() => {
                    Stopping::Refused(busy(paths, &holder).unwrap_or_else(|| not_running(paths)))
                }
                wedged @ Whereabouts::Wedged { .. } => Stopping::Unresponsive(wedged.failure(paths, None)),
            };
        }
        Err(error) => return Stopping::Refused(cannot_connect(paths, &error)),
    };
    let status: DaemonStatus =
        match tokio::time::timeout(ANSWER_TIMEOUT, client.call(&Request::Shutdown(ShutdownRequest {}))).await
        {
            Ok(Ok(status)) => status,
            Ok(Err(failure)) if failure.refusal == Some(ErrorCode::ProtocolMismatch) => {
                return Stopping::Unresponsive(failure);
            }
            Ok(Err(failure)) => return Stopping::Refused(failure),
            Err(_) => {
                let holder =
                    lock::holder(&paths.data_dir).unwrap_or(Holder { pid: None, socket: None, task: None });
                return Stopping::Unresponsive(wedged(paths, &holder, "does not answer"));
            }
        };
    if !wait_for_exit(Path::new(&status.data_dir), Some(status.pid), STOP_TIMEOUT).await {
        return Stopping::Unresponsive(
            Failure::new(
                Exit::Failure,
                format!("the daemon (pid {}) did not exit within {STOP_TIMEOUT:?}", status.pid),
            )
            .with_hint(format!("`{}` stops it by force", paths.command_line("daemon restart"))),
        );
    }
    Stopping::Stopped(Box::new(status))
}

/// `orders daemon stop`: asks the daemon to stop and waits until it has exited. Returns the
/// stopped daemon's last status, or `None` when none was running.
pub async fn stop(paths: &Paths) -> Result<Option<DaemonStatus>, Failure> {
    match ask_to_stop(paths).await {
        Stopping::Nothing => Ok(None),
        Stopping::Stopped(status) => Ok(Some(*status)),
        Stopping::Unresponsive(failure) | Stopping::Refused(failure) => Err(failure),
    }
}

/// Waits until nobody holds the data directory's lock (the daemon holds it until its very last
/// instruction, and the kernel releases it when the process dies), or until `pid` is no longer
/// an orders daemon holding it: someone else's lock on the directory must not keep a stop
/// waiting (issue 11).
async fn wait_for_exit(data_dir: &Path, pid: Option<u32>, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while lock::holder(data_dir).is_some() && pid.is_none_or(|pid| lock::verify_daemon(pid, data_dir).is_ok())
    {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// `orders daemon restart`: stops the daemon — politely, or by signal when it is wedged (it holds
/// the data directory but does not answer, or its socket is gone) — then starts a new one. A
/// daemon that answers is never killed: not one serving another store, nor one of this data
/// directory that listens on another socket (issue 12: that moved a healthy daemon).
pub async fn restart(paths: &Paths, args: &RunArgs) -> Result<DaemonStatus, Failure> {
    match ask_to_stop(paths).await {
        Stopping::Nothing | Stopping::Stopped(_) => {}
        Stopping::Refused(failure) => return Err(refuse_restart(paths, failure)),
        Stopping::Unresponsive(failure) => {
            eprintln!("note: {}; stopping it by signal", failure.message);
            if let Some(holder) = lock::holder(&paths.data_dir) {
                terminate(paths, &holder).await?;
            }
        }
    }
    start(paths, args).await
}

/// Why a restart leaves an answering daemon alone, and how to do what was meant.
fn refuse_restart(paths: &Paths, failure: Failure) -> Failure {
    let Some(socket) = lock::holder(&paths.data_dir).and_then(|holder| holder.socket) else {
        return failure;
    };
    if socket == paths.socket || failure.refusal.is_some() {
        return failure;
    }
    let theirs = Paths { data_dir: paths.data_dir.clone(), socket };
    Failure { message: format!("{}; it answers there, so it is not restarted", failure.message), ..failure }
        .with_hint(format!(
            "restart it where it listens with `{}`; to move it, `{}` then `{}`",
            theirs.command_line("daemon restart"),
            theirs.command_line("daemon stop"),
            paths.command_line("daemon start")
        ))
}

/// Whether the holder file names an orders daemon of ours holding the data directory; why not
/// otherwise (a pid left by a daemon that crashed may name any process by now).
fn holder_is_daemon(paths: &Paths, holder: &Holder) -> Result<u32, String> {
    let pid = holder.pid.ok_or_else(|| format!("{} names no daemon pid", paths.holder_file().display()))?;
    lock::verify_daemon(pid, &paths.data_dir)
        .map_err(|why| format!("{} names pid {pid}, but {why}", paths.holder_file().display()))?;
    Ok(pid)
}

fn not_a_daemon(paths: &Paths, why: &str) -> Failure {
    Failure::new(
        Exit::Unavailable,
        format!("something holds the lock on {} but is no orders daemon: {why}", paths.data_dir.display()),
    )
    .with_hint(format!(
        "nothing was signalled; find the process that holds it (`fuser -v {}`) and stop it",
        paths.data_dir.display()
    ))
}

/// SIGTERM (and SIGCONT, so that a stopped process can act on it), then SIGKILL if it lingers;
/// only to a pid proven to be an orders daemon of ours holding this data directory.
async fn terminate(paths: &Paths, holder: &Holder) -> Result<(), Failure> {
    let raw = holder_is_daemon(paths, holder).map_err(|why| not_a_daemon(paths, &why))?;
    let pid = i32::try_from(raw)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| not_a_daemon(paths, &format!("{raw} is no pid")))?;
    let _ = kill_process(pid, Signal::TERM);
    let _ = kill_process(pid, Signal::CONT);
    if wait_for_exit(&paths.data_dir, Some(raw), Duration::from_secs(10)).await {
        return Ok(());
    }
    eprintln!("note: the daemon (pid {}) ignored SIGTERM; sending SIGKILL", pid.as_raw_nonzero());
    let _ = kill_process(pid, Signal::KILL);
    if wait_for_exit(&paths.data_dir, Some(raw), Duration::from_secs(10)).await {
        return Ok(());
    }
    Err(Failure::new(Exit::Failure, format!("the daemon (pid {}) would not exit", pid.as_raw_nonzero())))
}
