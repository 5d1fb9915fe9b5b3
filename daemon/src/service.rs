//! Running under a service manager (systemd, issue 16): the listening socket it may pass
//! (socket activation, `LISTEN_FDS`/`LISTEN_PID`), and what the daemon tells it (`Type=notify`:
//! `READY=1`, `STOPPING=1`, `STATUS=`, and `EXTEND_TIMEOUT_USEC` while a long start-up runs, so
//! that the manager does not kill a healthy daemon that is catching up). Without a manager —
//! no `LISTEN_FDS`, no `NOTIFY_SOCKET` — all of it does nothing, and the daemon binds its own
//! socket as always.

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use sd_notify::NotifyState;

/// The listening socket passed by the service manager, if any. Call it before any thread is
/// started: it reads and then removes `LISTEN_FDS`/`LISTEN_PID` (so that nothing the daemon
/// might start inherits them), and the environment is not safe to change once threads run.
/// Variables meant for another process (`LISTEN_PID` naming another) are ignored, as systemd
/// says.
pub fn passed_socket() -> anyhow::Result<Option<UnixListener>> {
    let mut passed = listenfd::ListenFd::from_env();
    match passed.len() {
        0 => return Ok(None),
        1 => {}
        more => anyhow::bail!(
            "the service manager passed {more} sockets; the daemon listens on one (one ListenStream= in orders.socket)"
        ),
    }
    let listener = passed
        .take_unix_listener(0)
        .context(
            "the service manager passed a socket the daemon cannot listen on (ListenStream= must be a path)",
        )?
        .context("the service manager passed no socket")?;
    Ok(Some(listener))
}

/// Checks that a passed socket is the one the daemon is configured for: clients find the daemon
/// by its socket path, so serving another would leave them knocking on a door nobody answers.
pub fn check_passed(listener: &UnixListener, socket: &Path) -> anyhow::Result<()> {
    let address = listener.local_addr().context("cannot read the passed socket's address")?;
    let Some(passed) = address.as_pathname() else {
        anyhow::bail!("the service manager passed a socket with no path; ListenStream= must be a path")
    };
    let same = passed == socket
        || matches!((std::fs::canonicalize(passed), std::fs::canonicalize(socket)), (Ok(a), Ok(b)) if a == b);
    if !same {
        anyhow::bail!(
            "the service manager passed the socket {}, but this daemon's socket is {}: give the daemon the same \
             path (--socket or ORDERS_SOCKET in orders.service, or ListenStream= in orders.socket)",
            passed.display(),
            socket.display()
        );
    }
    Ok(())
}

/// Whether a service manager listens for the daemon's news.
pub fn is_notified() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Tells the service manager; a failure is logged, never fatal (the daemon serves all the same).
fn tell(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// The daemon serves requests.
pub fn ready(status: &str) {
    tell(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// The daemon is stopping: finishing the requests in flight.
pub fn stopping() {
    tell(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// The start-up goes on: give it `more` time from now, and say how far it has come.
pub fn starting(more: Duration, status: &str) {
    let usec = u32::try_from(more.as_micros()).unwrap_or(u32::MAX);
    tell(&[NotifyState::ExtendTimeoutUsec(usec), NotifyState::Status(status)]);
}
