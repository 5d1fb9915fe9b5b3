//! This daemon among several sharing one database (issue 20): a thread that follows what the
//! other daemons commit and takes up what they left.
//!
//! Once a second, or as soon as the database announces another daemon's commit
//! ([`Cluster::wait`]), it
//!
//! - reads the log's head and moves the daemon's own (what `events --follow` and `watch` wait
//!   on), and when somebody waits for an order to settle, the events since, waking the waiters
//!   of orders delivered or cancelled on another daemon;
//!
//! and once a second it
//!
//! - beats ([`Cluster::heartbeat`]) and keeps the list of daemons `status` shows;
//! - hands the sagas the steps no live daemon carries out ([`Cluster::orphaned_steps`]):
//!   deliveries overdue by more than [`GRACE`], payment steps whose lease expired.
//!
//! Stopping, it removes the daemon from the list.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use orders_shared::protocol::ClusterDaemon;
use orders_shared::{DomainEvent, OrderEvent, OrderId};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use uuid::Uuid;

use crate::files;
use crate::settlements::Settlements;
use crate::steps::{self, DeliveryDue, PaymentDue, StuckSteps};
use crate::store::{Cluster, Position, ReadSource, StoreError};

/// How often the daemon looks whatever it heard, beats, and looks for orphaned steps.
pub const POLL: Duration = Duration::from_secs(1);

/// How long the thread waits for a notification at a time (and so, at most, for a stop).
const MOMENT: Duration = Duration::from_millis(100);

/// How long past its due time a delivery is left to the daemon that armed it before any daemon
/// takes it. A lost daemon's deliveries go at most `GRACE + POLL` late (more while it holds the
/// writers' lock: the server ends such a session after 5 seconds idle).
pub const GRACE: Duration = Duration::from_secs(2);

/// A step handed to the sagas is not handed again sooner (they retry it themselves).
const HANDED_AGAIN_AFTER: Duration = Duration::from_secs(30);

/// The most events read at once when following.
const CHUNK: usize = 1000;

/// The file of the data directory that keeps its daemon's id among those sharing a database.
pub const ID_FILE: &str = "daemon.id";

/// The data directory's daemon id: the one it keeps, or a new one kept from now on. One daemon
/// at a time serves a data directory (its lock), so a daemon started again is the same member
/// of the cluster: it takes up the payment steps leased to it at once, not when they expire.
pub fn member_id(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(ID_FILE);
    if let Some(text) = files::read_private(&path)? {
        match text.trim().parse::<Uuid>() {
            Ok(id) => return Ok(id.to_string()),
            Err(_) => tracing::warn!(file = %path.display(), "it holds no daemon id; a new one replaces it"),
        }
    }
    let id = Uuid::now_v7().to_string();
    files::replace_private(&path, &format!("{id}\n"))?;
    Ok(id)
}

/// The daemons sharing the store, as the last heartbeat listed them.
#[derive(Debug, Default)]
pub struct Members(Mutex<Vec<ClusterDaemon>>);

impl Members {
    pub fn listed(&self) -> Vec<ClusterDaemon> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set(&self, members: Vec<ClusterDaemon>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = members;
    }
}

/// Where the thread hands what it finds.
pub struct Handles {
    pub head: watch::Sender<Position>,
    pub settlements: Arc<Settlements>,
    pub payments: UnboundedSender<PaymentDue>,
    pub deliveries: UnboundedSender<DeliveryDue>,
    pub stuck: Arc<StuckSteps>,
    pub members: Arc<Members>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Starts the thread; it ends once `stop` is cancelled (within [`POLL`]). The receiver
/// resolves once the daemon has beaten for the first time, listed among the others.
pub fn spawn(
    cluster: Box<dyn Cluster>,
    reads: Box<dyn ReadSource>,
    seen: Position,
    handles: Handles,
    stop: CancellationToken,
) -> std::io::Result<(std::thread::JoinHandle<()>, oneshot::Receiver<()>)> {
    let (listed, first) = oneshot::channel();
    let thread = std::thread::Builder::new().name("orders-cluster".to_owned()).spawn(move || {
        let mut member = Follower {
            cluster,
            reads,
            seen,
            handles,
            handed: HashMap::new(),
            last_look: None,
            last_follow: None,
        };
        member.run(&stop, listed);
    })?;
    Ok((thread, first))
}

struct Follower {
    cluster: Box<dyn Cluster>,
    reads: Box<dyn ReadSource>,
    /// The head as this thread last read it.
    seen: Position,
    handles: Handles,
    /// Deliveries handed to the saga, and when.
    handed: HashMap<OrderId, Instant>,
    last_look: Option<Instant>,
    last_follow: Option<Instant>,
}

impl Follower {
    fn run(&mut self, stop: &CancellationToken, listed: oneshot::Sender<()>) {
        // Listed or not (the database may be down), the daemon goes on starting.
        let first = self.look();
        let _ = listed.send(());
        let mut failing = false;
        if let Err(error) = first {
            tracing::warn!(%error, "cannot follow the other daemons on the database; trying again each second");
            failing = true;
        }
        while !stop.is_cancelled() {
            match self.round() {
                Ok(()) => failing = false,
                Err(error) => {
                    if !failing {
                        tracing::warn!(%error, "cannot follow the other daemons on the database; trying again each second");
                    }
                    failing = true;
                    std::thread::sleep(POLL);
                }
            }
        }
        self.cluster.leave();
        self.reads.close();
    }

    /// Waits a moment for another daemon's commit; follows when one came or a [`POLL`] has
    /// passed, and looks for the others and their orphaned steps each [`POLL`]. The moments
    /// are short so that a stopping daemon is not held up by this thread.
    fn round(&mut self) -> Result<(), StoreError> {
        if self.last_look.is_none_or(|at| at.elapsed() >= POLL) {
            self.look()?;
        }
        let woken = self.cluster.wait(MOMENT)?;
        if woken || self.last_follow.is_none_or(|at| at.elapsed() >= POLL) {
            self.last_follow = Some(Instant::now());
            self.follow()?;
        }
        Ok(())
    }

    /// Beats, lists the daemons, and hands the sagas what no live daemon carries out.
    fn look(&mut self) -> Result<(), StoreError> {
        self.last_look = Some(Instant::now());
        let members = self.cluster.heartbeat()?;
        self.handles.metrics.cluster(members.iter().filter(|member| member.live).count());
        self.handles.members.set(members);
        self.take_orphans()
    }

    /// Reads the head, and the events up to it when somebody waits for an order; wakes them.
    fn follow(&mut self) -> Result<(), StoreError> {
        let (mut after, settlements) = (self.seen, Arc::clone(&self.handles.settlements));
        let mut outcome: Result<(), StoreError> = Ok(());
        self.reads.with_reads(&mut |reads| {
            outcome = (|| {
                let (_, head) = reads.events(after, 0)?;
                // The head first, then the waiters: one who subscribes after this look reads
                // the order after the head was read, so it sees every commit up to it itself.
                if head > after && settlements.any_awaited() {
                    while after < head {
                        let (events, _) = reads.events(after, CHUNK)?;
                        let Some(last) = events.last() else { break };
                        after = last.position;
                        for event in &events {
                            if let DomainEvent::Order(OrderEvent::Delivered | OrderEvent::Cancelled { .. }) =
                                event.event
                            {
                                settlements.settled(event.stream.order);
                            }
                        }
                    }
                }
                after = after.max(head);
                Ok(())
            })();
        })?;
        outcome?;
        self.seen = after;
        self.handles.head.send_if_modified(|head| {
            let moved = after > *head;
            if moved {
                *head = after;
            }
            moved
        });
        Ok(())
    }

    /// Hands the sagas the steps no live daemon carries out.
    fn take_orphans(&mut self) -> Result<(), StoreError> {
        let steps::Decoded { payments, deliveries, stuck } =
            steps::decode(self.cluster.orphaned_steps(GRACE)?);
        for step in stuck {
            self.handles.stuck.add(step);
        }
        for due in payments {
            tracing::info!(order = %due.order, "taking over a payment step whose lease expired");
            let _ = self.handles.payments.send(due);
        }
        let now = Instant::now();
        self.handed.retain(|_, at| now.duration_since(*at) < HANDED_AGAIN_AFTER);
        for due in deliveries {
            if self.handed.insert(due.order, now).is_none() {
                tracing::debug!(order = %due.order, due_at = %due.due_at, "delivering an overdue delivery");
                let _ = self.handles.deliveries.send(due);
            }
        }
        Ok(())
    }
}
