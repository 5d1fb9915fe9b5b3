//! Running under a service manager (systemd, issue 16): the listening socket it may pass
//! (socket activation, `LISTEN_FDS`/`LISTEN_PID`), and what the daemon tells it (`Type=notify`:
//! `READY=1`, `STOPPING=1`, `STATUS=`, and `EXTEND_TIMEOUT_USEC` while a long start-up runs, so
//! that the manager does not kill a healthy daemon that is catching up). Without a manager —
//! no `LISTEN_FDS`, no `NOTIFY_SOCKET` — all of it does nothing, and the daemon binds its own
//! socket as always.

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use sd_notify::NotifyState;

/// The listening socket passed by the service manager, if any. Call it before any thread is
/// started: it reads and then removes `LISTEN_FDS`/`LISTEN_PID` (so that nothing the daemon
/// might start inherits them), and the environment is not safe to change once threads run.
/// Variables meant for another process (`LISTEN_PID` naming another) are ignored, as systemd
/// says.
pub fn passed_socket() -> anyhow::Result<Option<UnixListener>> {
    // sd_listen_fds(3): without LISTEN_PID the descriptors are not for this process (listenfd
    // itself would take them).
    if std::env::var_os("LISTEN_PID").is_none() {
        return Ok(None);
    }
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
    !IGNORED.load(Ordering::Relaxed) && std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Set for a daemon that no service manager started (autostart's): `NOTIFY_SOCKET` in its
/// environment was meant for someone else.
static IGNORED: AtomicBool = AtomicBool::new(false);

/// Tells nothing to any service manager.
pub fn ignore_the_manager() {
    IGNORED.store(true, Ordering::Relaxed);
}

/// Waits a little (at most half a second) for the notifications queued so far to be sent: the
/// last, `STOPPING=1`, just before the process exits.
pub fn flush() {
    let queued = NOTIFIER.lock().unwrap_or_else(PoisonError::into_inner).queued;
    let deadline = std::time::Instant::now() + Duration::from_millis(500);
    while SENT.load(Ordering::Acquire) < queued && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Notifications sent (or given up on) by the notifying thread.
static SENT: AtomicU64 = AtomicU64::new(0);

/// Where the daemon is in its life, as told to the service manager: nothing is told out of order
/// (a "starting" after `READY=1` would stay on `systemctl status` for the daemon's whole life).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Starting,
    Ready,
    Stopping,
}

/// The notifications, sent in order by a thread of their own: the send is a blocking datagram,
/// and a manager that does not read (a full queue) must never stall the daemon. When the queue
/// here is full too, news is dropped: the manager is not listening anyway.
struct Notifier {
    phase: Phase,
    queue: Option<SyncSender<String>>,
    /// Notifications handed to the thread.
    queued: u64,
}

static NOTIFIER: Mutex<Notifier> = Mutex::new(Notifier { phase: Phase::Starting, queue: None, queued: 0 });

/// The most notifications waiting for the thread that sends them.
const QUEUED: usize = 8;

/// Tells the service manager `message` (lines such as `READY=1`) if the daemon is still in a
/// phase `from` allows, moving it to `to`.
fn tell(from: &[Phase], to: Phase, message: String) {
    if !is_notified() {
        return;
    }
    let mut notifier = NOTIFIER.lock().unwrap_or_else(PoisonError::into_inner);
    if !from.contains(&notifier.phase) {
        return;
    }
    notifier.phase = to;
    let queue = notifier.queue.get_or_insert_with(|| {
        let (queue, messages) = sync_channel::<String>(QUEUED);
        let spawned =
            std::thread::Builder::new().name("orders-notify".into()).spawn(move || send_all(&messages));
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot start the thread that notifies the service manager");
        }
        queue
    });
    if queue.try_send(message).is_ok() {
        notifier.queued += 1;
    }
}

/// Sends each notification; says once if they cannot be sent.
fn send_all(messages: &Receiver<String>) {
    let mut said = false;
    for message in messages {
        if let Err(error) = sd_notify::notify(&[NotifyState::Custom(message.trim_end())])
            && !said
        {
            tracing::warn!(%error, "cannot notify the service manager (NOTIFY_SOCKET); the daemon runs all the same");
            said = true;
        }
        SENT.fetch_add(1, Ordering::Release);
    }
}

/// The start-up goes on: give it `more` time from now, and say how far it has come.
pub fn starting(more: Duration, status: &str) {
    let usec = u32::try_from(more.as_micros()).unwrap_or(u32::MAX);
    tell(&[Phase::Starting], Phase::Starting, format!("EXTEND_TIMEOUT_USEC={usec}\nSTATUS={status}"));
}

/// The daemon serves requests.
pub fn ready(status: &str) {
    tell(&[Phase::Starting], Phase::Ready, format!("READY=1\nSTATUS={status}"));
}

/// The daemon is stopping: finishing the requests in flight.
pub fn stopping() {
    tell(&[Phase::Starting, Phase::Ready], Phase::Stopping, "STOPPING=1\nSTATUS=stopping".to_owned());
}
