//! Finding, starting and stopping the daemon.
//!
//! Autostart is serialised by a lock file beside the socket: of many clients that find no daemon
//! at the same instant, the first starts one and the others, once they get the lock, find it
//! answering. The daemon itself holds a lock on its data directory, so that a second one can
//! never serve the same data.
//!
//! Nothing here deletes anything at the socket path: a file there that is not a live socket is
//! for the daemon to replace (a dead socket) or refuse (anything else).

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use orders_daemon::files::{self, Access};
use orders_daemon::lock::{self, Holder};
use orders_daemon::paths::{Paths, default_log_file};
use orders_shared::protocol::{DaemonStatus, Request, ShutdownRequest, StatusRequest};
use rustix::process::{Pid, Signal, kill_process};

use crate::args::RunArgs;
use crate::client::Client;
use crate::failure::{Exit, Failure};

/// How long a starting daemon may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a stopping daemon may take to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Connects to the daemon, starting one first if none runs and `autostart` allows it.
pub async fn connect(paths: &Paths, autostart: bool) -> Result<Client, Failure> {
    match Client::connect(&paths.socket).await {
        Ok(client) => return Ok(client),
        Err(error) if is_absent(&error) => {}
        Err(error) => return Err(cannot_connect(paths, &error)),
    }
    if !autostart {
        return Err(not_running(paths).with_hint(
            "start one with `orders daemon start`, or unset ORDERS_NO_AUTOSTART to have it started on demand",
        ));
    }
    start_in_background(paths, &[]).await?;
    Client::connect(&paths.socket).await.map_err(|error| cannot_connect(paths, &error))
}

/// Nothing listens on the socket: no file, or a file left by a daemon that died.
fn is_absent(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused)
}

fn not_running(paths: &Paths) -> Failure {
    Failure::new(Exit::Unavailable, format!("no daemon is running on {}", paths.socket.display()))
        .with_hint("start one with `orders daemon start`")
}

fn cannot_connect(paths: &Paths, error: &io::Error) -> Failure {
    Failure::new(
        Exit::Unavailable,
        format!("cannot connect to the daemon on {}: {error}", paths.socket.display()),
    )
}

fn path_failure(error: impl std::fmt::Display) -> Failure {
    Failure::new(Exit::Failure, error.to_string())
}

/// Starts a daemon in the background unless one answers already; returns whether it started one.
pub async fn start_in_background(paths: &Paths, args: &[String]) -> Result<bool, Failure> {
    paths.ensure_socket_dir().map_err(path_failure)?;
    let lock_path = paths.start_lock_file();
    // 0600, and never through a symlink: as root, a planted link would create or truncate its target.
    let lock = files::open_private(&lock_path, Access::ReadWrite).map_err(path_failure)?.file;
    lock.lock().map_err(|e| path_failure(format!("cannot lock {}: {e}", lock_path.display())))?;

    // Another client may have started one while this one waited for the lock.
    if Client::connect(&paths.socket).await.is_ok() {
        return Ok(false);
    }
    let exe =
        std::env::current_exe().map_err(|e| path_failure(format!("cannot find the orders binary: {e}")))?;
    let mut child = Command::new(exe)
        .args(["daemon", "run", "--background"])
        .args(args)
        .env("ORDERS_DATA_DIR", &paths.data_dir)
        .env("ORDERS_SOCKET", &paths.socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| path_failure(format!("cannot start the daemon: {e}")))?;

    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match Client::connect(&paths.socket).await {
            Ok(_) => return Ok(true),
            Err(error) if is_absent(&error) => {}
            Err(error) => return Err(cannot_connect(paths, &error)),
        }
        if let Some(status) = child.try_wait().map_err(|e| path_failure(e.to_string()))? {
            return Err(start_failed(&mut child, &format!("the daemon exited at start ({status})")));
        }
        if Instant::now() > deadline {
            return Err(start_failed(
                &mut child,
                &format!("the daemon did not answer within {START_TIMEOUT:?}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn start_failed(child: &mut Child, what: &str) -> Failure {
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
        .with_hint(format!("see the daemon's log: {}", log_file_hint().display()))
}

fn log_file_hint() -> PathBuf {
    std::env::var_os("ORDERS_LOG_FILE")
        .map(PathBuf::from)
        .or_else(|| default_log_file().ok())
        .unwrap_or_else(|| PathBuf::from("daemon.log"))
}

/// `orders daemon start`.
pub async fn start(paths: &Paths, args: &RunArgs) -> Result<DaemonStatus, Failure> {
    let mut forwarded = vec![
        "--log-level".to_owned(),
        args.log_level.clone(),
        "--max-connections".to_owned(),
        args.max_connections.to_string(),
        "--idle-timeout".to_owned(),
        exact(args.idle_timeout),
        "--delivery-delay".to_owned(),
        exact(args.delivery_delay),
        "--payment-delay".to_owned(),
        exact(args.payment_delay),
    ];
    if let Some(log_file) = &args.log_file {
        forwarded.extend(["--log-file".to_owned(), log_file.display().to_string()]);
    }
    if args.accept_store_change {
        forwarded.push("--accept-store-change".to_owned());
    }
    start_in_background(paths, &forwarded).await?;
    status(paths).await
}

/// A duration as `daemon run` reads it back unchanged: in nanoseconds. Whole milliseconds lost
/// what was finer (issue 11: `--idle-timeout 500us` became `0ms`, which `run` refuses).
fn exact(duration: std::time::Duration) -> String {
    format!("{}ns", duration.as_nanos())
}

/// How long `status`, `stop` and `restart` wait for an answer before calling a daemon wedged.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// `orders daemon status`: the running daemon's own report, or why there is none: not running,
/// or wedged (it holds the data directory but does not answer, or its socket is gone).
pub async fn status(paths: &Paths) -> Result<DaemonStatus, Failure> {
    let mut client = match Client::connect(&paths.socket).await {
        Ok(client) => client,
        Err(error) if is_absent(&error) => {
            return Err(match lock::holder(&paths.data_dir) {
                Some(holder) => {
                    wedged(paths, &holder, &format!("its socket {} is gone", paths.socket.display()))
                }
                None => not_running(paths),
            });
        }
        Err(error) => return Err(cannot_connect(paths, &error)),
    };
    match tokio::time::timeout(ANSWER_TIMEOUT, client.call(&Request::Status(StatusRequest {}))).await {
        Ok(answer) => answer,
        Err(_) => {
            let holder = lock::holder(&paths.data_dir).unwrap_or(Holder { pid: None, socket: None });
            Err(wedged(
                paths,
                &holder,
                &format!("does not answer on {} within {ANSWER_TIMEOUT:?}", paths.socket.display()),
            ))
        }
    }
}

fn wedged(paths: &Paths, holder: &Holder, what: &str) -> Failure {
    let pid = holder.pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default();
    Failure::new(Exit::Unavailable, format!("the daemon{pid} holds {} but {what}", paths.data_dir.display()))
        .with_hint("replace it with `orders daemon restart`")
}

/// `orders daemon stop`: asks the daemon to stop and waits until it has exited. Returns the
/// stopped daemon's last status, or `None` when none was running.
pub async fn stop(paths: &Paths) -> Result<Option<DaemonStatus>, Failure> {
    let mut client = match Client::connect(&paths.socket).await {
        Ok(client) => client,
        Err(error) if is_absent(&error) => return Ok(None),
        Err(error) => return Err(cannot_connect(paths, &error)),
    };
    let status: DaemonStatus =
        match tokio::time::timeout(ANSWER_TIMEOUT, client.call(&Request::Shutdown(ShutdownRequest {}))).await
        {
            Ok(answer) => answer?,
            Err(_) => {
                let holder = lock::holder(&paths.data_dir).unwrap_or(Holder { pid: None, socket: None });
                return Err(wedged(paths, &holder, "does not answer"));
            }
        };
    if !wait_for_exit(Path::new(&status.data_dir), STOP_TIMEOUT).await {
        return Err(Failure::new(
            Exit::Failure,
            format!("the daemon (pid {}) did not exit within {STOP_TIMEOUT:?}", status.pid),
        )
        .with_hint("`orders daemon restart` stops it by force"));
    }
    Ok(Some(status))
}

/// Waits until nobody holds the data directory's lock: the daemon holds it until its very last
/// instruction, and the kernel releases it when the process dies.
async fn wait_for_exit(data_dir: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while lock::holder(data_dir).is_some() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// `orders daemon restart`: stops the daemon — politely, or by signal when it is wedged (it holds
/// the data directory but does not answer, or its socket is gone) — then starts a new one.
pub async fn restart(paths: &Paths, args: &RunArgs) -> Result<DaemonStatus, Failure> {
    if let Err(failure) = stop(paths).await {
        eprintln!("note: {}; stopping it by signal", failure.message);
    }
    if let Some(holder) = lock::holder(&paths.data_dir) {
        terminate(paths, &holder).await?;
    }
    start(paths, args).await
}

/// SIGTERM (and SIGCONT, so that a stopped process can act on it), then SIGKILL if it lingers.
async fn terminate(paths: &Paths, holder: &Holder) -> Result<(), Failure> {
    let pid =
        holder.pid.and_then(|pid| i32::try_from(pid).ok()).and_then(Pid::from_raw).ok_or_else(|| {
            Failure::new(Exit::Failure, format!("{} names no daemon pid", paths.holder_file().display()))
        })?;
    let _ = kill_process(pid, Signal::TERM);
    let _ = kill_process(pid, Signal::CONT);
    if wait_for_exit(&paths.data_dir, Duration::from_secs(10)).await {
        return Ok(());
    }
    eprintln!("note: the daemon (pid {}) ignored SIGTERM; sending SIGKILL", pid.as_raw_nonzero());
    let _ = kill_process(pid, Signal::KILL);
    if wait_for_exit(&paths.data_dir, Duration::from_secs(10)).await {
        return Ok(());
    }
    Err(Failure::new(Exit::Failure, format!("the daemon (pid {}) would not exit", pid.as_raw_nonzero())))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::exact;
    use crate::args::{parse_delivery_delay, parse_idle_timeout, parse_payment_delay};

    #[test]
    fn forwarded_durations_read_back_unchanged() {
        let max = orders_daemon::settings::DELIVERY_DELAY.max;
        for duration in
            [Duration::from_nanos(1), Duration::from_micros(500), Duration::from_micros(1500), max]
        {
            assert_eq!(parse_delivery_delay(&exact(duration)), Ok(duration));
            assert_eq!(
                parse_idle_timeout(&exact(duration.min(Duration::from_secs(3600)))),
                Ok(duration.min(Duration::from_secs(3600)))
            );
        }
        assert_eq!(parse_payment_delay(&exact(Duration::ZERO)), Ok(Duration::ZERO));
    }
}
