//! Streams that outlive their daemon (issue 18): `events --follow`, `watch` and `create --wait`
//! hold one connection for as long as they run, and a daemon stopped and started again meanwhile
//! (a restart, an upgrade, a `kill -9` and a new start) must not end them. When the connection
//! breaks, or the daemon ends the stream saying it is shutting down, they wait for a daemon to
//! answer on the socket again, as `tail -F` waits for its file, and carry on where they were.
//!
//! They never start a daemon while they wait, whatever autostart says: one stopped with `orders
//! daemon stop` stays stopped until somebody starts it. Autostart applies to the command's first
//! connection only, as for every command.
//!
//! What a stream printed was read from one store. A daemon that comes back serving another one
//! (its store id changed: `restore` or `import` replaced it) numbers other events with the same
//! positions, so going on would print a gap or repeats: that ends the stream, exit code 9.

use std::io;
use std::time::Duration;

use orders_daemon::paths::Paths;
use orders_shared::protocol::{
    DaemonState, DaemonStatus, ErrorBody, ErrorCode, Reply, Request, StatusRequest,
};

use crate::client::Client;
use crate::failure::{Exit, Failure};

/// The first pause between two attempts to reach the daemon again; it doubles up to [`MOST`].
const FIRST: Duration = Duration::from_millis(50);
/// The longest pause between two attempts: a daemon back is noticed within a second.
const MOST: Duration = Duration::from_secs(1);

/// How long the daemon that ended a stream as `unavailable` must go on answering, ready, before
/// it counts as not stopping after all.
const SAME_DAEMON_GRACE: Duration = Duration::from_secs(2);
/// How long a daemon found on the socket may take to answer `status`: a stopping one keeps its
/// socket without accepting for a moment, and a connection it never takes must not hold us.
const ANSWER: Duration = Duration::from_secs(2);

/// How a stream lost its daemon.
#[derive(Debug)]
pub enum Loss {
    /// The connection closed or broke (the daemon stopped, or was killed).
    Connection(io::Error),
    /// The daemon ended the stream with this error: `unavailable` (it is shutting down, or cannot
    /// read its store) or `starting`.
    Ended(ErrorBody),
}

impl Loss {
    fn describe(&self) -> String {
        match self {
            Loss::Connection(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                "the daemon closed the connection".to_owned()
            }
            Loss::Connection(error) => format!("lost the connection to the daemon ({error})"),
            Loss::Ended(error) => format!("the daemon ended the stream ({})", error.message),
        }
    }
}

/// Why a stream stopped before its end: its daemon went away (it may come back), or the command
/// failed for good (its output was closed, the daemon refused it).
#[derive(Debug)]
pub enum Halt {
    Lost(Loss),
    Failed(Failure),
}

impl From<Loss> for Halt {
    fn from(loss: Loss) -> Self {
        Halt::Lost(loss)
    }
}

impl From<Failure> for Halt {
    fn from(failure: Failure) -> Self {
        Halt::Failed(failure)
    }
}

impl From<io::Error> for Halt {
    fn from(error: io::Error) -> Self {
        Halt::Failed(error.into())
    }
}

/// Sends a stream's request: a connection that broke is a [`Loss`].
pub async fn open(client: &mut Client, request: &Request) -> Result<(), Loss> {
    client.send(request).await.map_err(Loss::Connection)
}

/// The next line of a stream, or how the daemon was lost.
pub async fn next_line(client: &mut Client) -> Result<Reply, Loss> {
    match client.receive().await {
        Ok(Some(Reply::Error(error)))
            if matches!(error.code, ErrorCode::Unavailable | ErrorCode::Starting) =>
        {
            Err(Loss::Ended(error))
        }
        Ok(Some(reply)) => Ok(reply),
        Ok(None) => Err(Loss::Connection(io::ErrorKind::UnexpectedEof.into())),
        Err(error) => Err(Loss::Connection(error)),
    }
}

/// The daemon a stream reads from, and how to find it again.
pub struct Reconnect {
    paths: Paths,
    /// The daemon process last talked to: one that said `unavailable` and is still there, ready,
    /// did not go away (its store failed), and waiting for it would never end.
    pid: u32,
    /// The identity of the store the stream reads (absent from daemons before issue 12).
    store_id: Option<String>,
}

/// What one attempt to reach the daemon found.
enum Attempt {
    /// Nothing answers (yet), or it is busy.
    Absent,
    Starting(DaemonStatus),
    Ready(Box<Client>, DaemonStatus),
}

impl Reconnect {
    /// The daemon a stream begins with: waits until it is ready, and notes which it is.
    pub async fn begin(client: &mut Client) -> Result<Reconnect, Failure> {
        let status = client.wait_until_ready("the daemon is starting").await?;
        Ok(Reconnect { paths: client.paths().clone(), pid: status.pid, store_id: status.store_id })
    }

    /// Waits until a daemon answers on the socket again, is ready and serves the same store, and
    /// returns a connection to it; for as long as that takes (interrupt it to stop). Says on
    /// stderr once that it waits, and once that it goes on (`resuming` says how). A daemon of
    /// another store, another version or another data directory ends the wait with its failure.
    pub async fn rejoin(&mut self, loss: Loss, resuming: &str) -> Result<Client, Failure> {
        eprintln!("note: {}; waiting for it to come back", loss.describe());
        let mut pause = FIRST;
        let mut told_starting = false;
        // When the same daemon still answers, ready, after ending a stream as `unavailable`.
        let mut same_since: Option<std::time::Instant> = None;
        loop {
            match self.attempt().await? {
                Attempt::Absent => {}
                Attempt::Starting(status) => {
                    if !told_starting {
                        let progress = status.start.map_or_else(|| "starting".to_owned(), |p| p.to_string());
                        eprintln!(
                            "note: the daemon (pid {}) is starting: {progress}; waiting for it",
                            status.pid
                        );
                        told_starting = true;
                    }
                }
                Attempt::Ready(client, status) => {
                    self.same_store(&status)?;
                    if let Loss::Ended(error) = &loss
                        && error.code == ErrorCode::Unavailable
                        && status.pid == self.pid
                    {
                        // Still there and ready a while later: it is not shutting down, it ended
                        // the stream for another reason. (A daemon that is stopping may still
                        // answer a moment before it goes.)
                        let since = *same_since.get_or_insert_with(std::time::Instant::now);
                        if since.elapsed() >= SAME_DAEMON_GRACE {
                            return Err(client.failure(error.clone()));
                        }
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(MOST);
                        continue;
                    }
                    self.pid = status.pid;
                    eprintln!("note: the daemon is back (pid {}); {resuming}", status.pid);
                    return Ok(*client);
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MOST);
        }
    }

    /// Connects and asks for the status, once.
    async fn attempt(&self) -> Result<Attempt, Failure> {
        let mut client = match Client::connect(&self.paths).await {
            Ok(client) => client,
            // The socket served by another user: nothing to wait for.
            Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
                return Err(Failure::new(Exit::Unavailable, error.to_string()));
            }
            Err(_) => return Ok(Attempt::Absent),
        };
        let Ok(reply) = client.exchange(&Request::Status(StatusRequest {}), Some(ANSWER)).await else {
            return Ok(Attempt::Absent);
        };
        match client.data::<DaemonStatus>(reply) {
            Ok(status) if status.state == DaemonState::Starting => Ok(Attempt::Starting(status)),
            Ok(status) => Ok(Attempt::Ready(Box::new(client), status)),
            Err(failure)
                if matches!(
                    failure.refusal,
                    Some(ErrorCode::Busy | ErrorCode::Unavailable | ErrorCode::Starting)
                ) =>
            {
                Ok(Attempt::Absent)
            }
            // Another store's daemon on this socket, another version: what any command says.
            Err(failure) => Err(failure),
        }
    }

    /// The daemon serves the store the stream began with, or the stream cannot go on.
    fn same_store(&self, status: &DaemonStatus) -> Result<(), Failure> {
        match (&self.store_id, &status.store_id) {
            (Some(ours), Some(now)) if ours != now => Err(store_replaced(&self.paths, ours, now)),
            _ => Ok(()),
        }
    }

    /// The stream read on from where it was found another event there than the one it printed:
    /// the log is not the one it read (a daemon without store ids, whose store was replaced).
    pub fn log_replaced(&self, what: &str) -> Failure {
        Failure::new(
            Exit::StoreReplaced,
            format!(
                "the daemon on {} no longer serves the log this command was reading: {what}",
                self.paths.socket.display()
            ),
        )
        .with_hint(AGAIN)
    }
}

const AGAIN: &str = "what was printed came from the store before; run the command again to read the new one";

fn store_replaced(paths: &Paths, ours: &str, now: &str) -> Failure {
    Failure::new(
        Exit::StoreReplaced,
        format!(
            "the daemon on {} now serves another store (id {now}, not {ours}: a restore or an import \
             replaced it); its positions name other events, so this command stops here",
            paths.socket.display()
        ),
    )
    .with_hint(AGAIN)
}
