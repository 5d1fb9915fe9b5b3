//! The writer: one thread owns the read-write connection and commits commands in batches.
//!
//! Group commit: the thread takes every command waiting in its queue (up to [`MAX_BATCH`]), runs
//! them in one transaction of the store, commits once, and only then acknowledges them. One
//! fsync pays for the whole batch. Each command is a unit of work of the [`Batch`] the store
//! runs; how a failed unit is undone alone is the store's policy (see `store::sqlite::write`).
//! The store blocks, so it lives on this plain thread and never crosses an `.await`. Between
//! batches the thread also carries a replay forward, a chunk at a time.
//!
//! A batch of saga steps alone (a payment decision, a delivery) waits up to [`Pacing::linger`] for a
//! customer's command to share its commit, when customers wrote a moment ago (issue 14). A
//! client placing orders one after the other otherwise pays two fsyncs per create: its next
//! create waits behind the commit of the previous order's payment, which the payment worker
//! sends the instant the create is committed. Saga steps are background work; a millisecond
//! more for them is worth one fsync less for the person waiting. A step somebody waits for
//! (`create --wait`) never waits.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flume::{RecvTimeoutError, TryRecvError};
use jiff::Timestamp;
use orders_shared::protocol::{ErrorBody, ErrorCode, OrderView};
use orders_shared::{DeliveryEvent, DomainEvent, OrderEvent, PaymentEvent, StreamId, StreamKind};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::clock::RecordedTimes;
use crate::command::{Policy, WriteCommand, storage_error_body};
use crate::identity::Acknowledged;
use crate::metrics::Metrics;
use crate::replay::{Rebuild, ReplayJob};
use crate::settlements::Settlements;
use crate::steps::{DeliveryDue, PaymentDue};
use crate::store::{Batch, Outcome, Position, RecordedEvent, Store, StoreError, Wants, WriteTx};
use crate::unit_of_work::UnitOfWork;

/// The most commands committed in one transaction.
pub const MAX_BATCH: usize = 1024;

/// How a batch of saga steps alone waits for a customer's command to share its commit, and how
/// a replay goes.
#[derive(Clone, Copy, Debug)]
pub struct Pacing {
    /// The longest wait.
    pub linger: Duration,
    /// How recently customers must have written for such a batch to wait at all: a daemon
    /// nobody is talking to commits its payments and deliveries at once.
    pub customers_active: Duration,
    /// A pause before each chunk of a replay, for tests only (which must watch a replay of a few
    /// thousand events in progress, on a terminal); zero otherwise ([`crate::Config::replay_pause`]).
    pub replay_pause: Duration,
}

impl Default for Pacing {
    /// A millisecond: several times a client's round trip over the socket, a fraction of the
    /// time a script takes to start `orders` again.
    fn default() -> Pacing {
        Pacing {
            linger: Duration::from_millis(1),
            customers_active: Duration::from_millis(100),
            replay_pause: Duration::ZERO,
        }
    }
}

pub type WriteResult = Result<OrderView, ErrorBody>;

/// What the writer is asked to do.
enum Job {
    Command(CommandJob),
    Replay(ReplayJob),
    /// Somebody began to wait for an order: a lingering batch looks again at who waits.
    Nudge,
}

struct CommandJob {
    command: WriteCommand,
    reply: oneshot::Sender<WriteResult>,
}

/// A handle to the writer thread; cheap to clone. The thread ends when every handle is gone.
#[derive(Clone)]
pub struct Writer {
    /// A bounded queue (commands wait for room: backpressure); flume because the writer's end
    /// blocks with a deadline (the linger) while the senders are async.
    jobs: flume::Sender<Job>,
    metrics: Arc<Metrics>,
}

/// What the writer announces after each commit, and to whom.
pub struct Announcements {
    /// The newest committed global position.
    pub head: watch::Sender<Position>,
    /// Payments requested: to the payment saga's worker.
    pub payments: mpsc::UnboundedSender<PaymentDue>,
    /// Deliveries scheduled: to the delivery saga's worker.
    pub deliveries: mpsc::UnboundedSender<DeliveryDue>,
    /// Orders settled: to whoever waits for them.
    pub settlements: Arc<Settlements>,
    /// The last committed position: to the data directory's record of its store (issue 12;
    /// `None` in tests of the writer alone).
    pub acknowledged: Option<Arc<Acknowledged>>,
    /// Batches, commits and replays: to the metrics (issue 16).
    pub metrics: Arc<Metrics>,
}

impl Announcements {
    fn committed(&self, recorded: &[RecordedEvent]) {
        for event in recorded {
            let order = event.stream.order;
            match &event.event {
                DomainEvent::Payment(PaymentEvent::Requested { amount }) => {
                    let _ = self.payments.send(PaymentDue { order, amount: *amount });
                }
                DomainEvent::Delivery(DeliveryEvent::Scheduled { due_at }) => {
                    let scheduled_at = Some(event.recorded_at);
                    let _ = self.deliveries.send(DeliveryDue { due_at: *due_at, order, scheduled_at });
                }
                DomainEvent::Order(OrderEvent::Delivered | OrderEvent::Cancelled { .. }) => {
                    self.settlements.settled(order);
                }
                _ => {}
            }
        }
        if let Some(last) = recorded.last() {
            if let Some(acknowledged) = &self.acknowledged {
                acknowledged.record(last.position.get());
            }
            // Another daemon's commits may have moved it further already (issue 20).
            self.head.send_if_modified(|head| {
                let moved = last.position > *head;
                if moved {
                    *head = last.position;
                }
                moved
            });
        }
    }
}

impl Writer {
    /// Starts the writer thread on an open, migrated store; `times` stamps its batches.
    pub fn spawn(
        store: Box<dyn Store>,
        policy: Policy,
        announcements: Announcements,
        times: RecordedTimes,
        shutdown: CancellationToken,
    ) -> std::io::Result<(Writer, JoinHandle<()>)> {
        Writer::spawn_paced(store, policy, announcements, times, Pacing::default(), shutdown)
    }

    /// The same, with another pacing of saga steps or replays (tests stretch them).
    pub fn spawn_paced(
        store: Box<dyn Store>,
        policy: Policy,
        announcements: Announcements,
        times: RecordedTimes,
        pacing: Pacing,
        shutdown: CancellationToken,
    ) -> std::io::Result<(Writer, JoinHandle<()>)> {
        let (jobs, queue) = flume::bounded(MAX_BATCH * 4);
        let metrics = Arc::clone(&announcements.metrics);
        let writing = Writing { policy, announcements, pacing };
        let thread = std::thread::Builder::new()
            .name("orders-writer".into())
            .spawn(move || run(store, queue, &writing, times, &shutdown))?;
        Ok((Writer { jobs, metrics }, thread))
    }

    /// Executes a command; the reply comes after its transaction is durable.
    /// Counted in the metrics by command and outcome, with its latency.
    pub async fn execute(&self, command: WriteCommand) -> WriteResult {
        let arrived = Instant::now();
        let kind = command.kind();
        let result = self.queue(command).await;
        self.metrics.command(kind, arrived.elapsed(), result.as_ref().map(|_| ()));
        result
    }

    async fn queue(&self, command: WriteCommand) -> WriteResult {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send_async(Job::Command(CommandJob { command, reply }))
            .await
            .map_err(|_| shutting_down())?;
        answer.await.map_err(|_| shutting_down())?
    }

    /// Tells the writer that somebody began to wait for an order to settle (`wait`, which
    /// `create --wait` sends right after its create): a batch holding that order's step, waiting
    /// for a customer's command, stops waiting. Never blocks; a full queue has no lingering batch.
    pub fn nudge(&self) {
        let _ = self.jobs.try_send(Job::Nudge);
    }

    /// Starts rebuilding the read model; progress and the report come through the job's channels.
    pub async fn replay(&self, job: ReplayJob) -> Result<(), ErrorBody> {
        self.jobs.send_async(Job::Replay(job)).await.map_err(|_| shutting_down())
    }
}

fn shutting_down() -> ErrorBody {
    ErrorBody::new(ErrorCode::Unavailable, "the daemon is shutting down; nothing was stored")
}

/// What the writer thread works with, besides its store and queue.
struct Writing {
    policy: Policy,
    announcements: Announcements,
    pacing: Pacing,
}

fn run(
    mut store: Box<dyn Store>,
    queue: flume::Receiver<Job>,
    writing: &Writing,
    mut times: RecordedTimes,
    shutdown: &CancellationToken,
) {
    let Writing { policy, announcements, pacing } = writing;
    let _loud = StopOnPanic(shutdown);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut rebuild: Option<Rebuild> = None;
    let mut customers_wrote: Option<Instant> = None;
    // Block for work only when no rebuild is waiting for its next chunk.
    while let Some(first) = next_job(&queue, rebuild.is_some()) {
        let mut next = first;
        let mut linger = Linger::new(customers_wrote, pacing);
        while let Some(job) = next {
            match job {
                Job::Command(job) => batch.push(job),
                Job::Replay(job) => start_rebuild(store.as_mut(), job, &mut rebuild),
                Job::Nudge => {}
            }
            next = if batch.len() >= MAX_BATCH {
                None
            } else if rebuild.is_none() && may_wait(&batch, &announcements.settlements) {
                linger.next(&queue)
            } else {
                queue.try_recv().ok()
            };
        }
        if !batch.is_empty() {
            if batch.iter().any(|job| job.command.is_customers()) {
                customers_wrote = Some(Instant::now());
            }
            commit_batch(store.as_mut(), &mut batch, policy, announcements, &mut times);
        }
        if let Some(current) = rebuild.take() {
            if !pacing.replay_pause.is_zero() {
                std::thread::sleep(pacing.replay_pause);
            }
            rebuild = step_rebuild(store.as_mut(), current, shutdown);
            announcements.metrics.replay(rebuild.as_ref().map(Rebuild::progress));
        }
    }
    if let Some(unfinished) = rebuild {
        unfinished
            .abandon(store.as_mut(), ErrorBody::new(ErrorCode::Unavailable, "the daemon is shutting down"));
    }
    if let Some(acknowledged) = &announcements.acknowledged {
        acknowledged.sync(true);
    }
    tracing::debug!("writer stopped: no more commands");
}

/// Whether a batch may wait for a customer's command: it holds saga steps alone (or nothing
/// yet), and nobody waits for any of their orders to settle (`create --wait`, `wait`): a step
/// somebody waits for is never held back.
fn may_wait(batch: &[CommandJob], settlements: &Settlements) -> bool {
    !batch.is_empty()
        && batch
            .iter()
            .all(|job| job.command.step_order().is_some_and(|order| !settlements.is_awaited(order)))
}

/// The wait of a batch of saga steps for a customer's command (see [`Pacing`]).
struct Linger {
    /// Until when the batch may wait; `None` when customers are not writing now.
    until: Option<Instant>,
}

impl Linger {
    fn new(customers_wrote: Option<Instant>, pacing: &Pacing) -> Linger {
        let now = Instant::now();
        let active = customers_wrote.is_some_and(|at| now.duration_since(at) < pacing.customers_active);
        Linger { until: active.then(|| now + pacing.linger) }
    }

    /// The next job: one waiting already, or one that comes before the linger ends.
    fn next(&mut self, queue: &flume::Receiver<Job>) -> Option<Job> {
        match self.until {
            Some(until) => match queue.recv_deadline(until) {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    self.until = None;
                    None
                }
            },
            None => queue.try_recv().ok(),
        }
    }
}

/// The next job: waiting for one, or only looking when a rebuild has a chunk to go (`Some(None)`:
/// nothing waits). `None` once every handle is gone.
fn next_job(queue: &flume::Receiver<Job>, busy: bool) -> Option<Option<Job>> {
    if busy {
        match queue.try_recv() {
            Ok(job) => Some(Some(job)),
            Err(TryRecvError::Empty) => Some(None),
            Err(TryRecvError::Disconnected) => None,
        }
    } else {
        queue.recv().ok().map(Some)
    }
}

/// Carries a rebuild one chunk forward; it comes back unless it finished or was given up.
fn step_rebuild(
    store: &mut dyn Store,
    mut rebuild: Rebuild,
    shutdown: &CancellationToken,
) -> Option<Rebuild> {
    let outcome = if shutdown.is_cancelled() {
        Err(ErrorBody::new(ErrorCode::Unavailable, "the daemon is shutting down"))
    } else if rebuild.is_abandoned() {
        Err(ErrorBody::new(ErrorCode::Unavailable, "its client went away"))
    } else {
        match rebuild.step(store) {
            Ok(None) => return Some(rebuild),
            Ok(Some(report)) => Ok(report),
            Err(error) => Err(storage_error_body(&error)),
        }
    };
    match outcome {
        Ok(report) => {
            tracing::info!(
                events = report.events,
                ms = report.duration_ms,
                check = report.check,
                "replay done"
            );
            rebuild.reply(Ok(report));
        }
        Err(why) => rebuild.abandon(store, why),
    }
    None
}

/// A writer that panics takes the daemon down with it, loudly, instead of leaving it up and
/// answering every write "shutting down".
struct StopOnPanic<'a>(&'a CancellationToken);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("the writer thread panicked; the daemon stops");
            self.0.cancel();
        }
    }
}

fn start_rebuild(store: &mut dyn Store, job: ReplayJob, rebuild: &mut Option<Rebuild>) {
    if rebuild.is_some() {
        let busy = ErrorBody::new(ErrorCode::Busy, "a replay is running already; wait for it to finish");
        let _ = job.done.send(Err(busy));
        return;
    }
    match Rebuild::start(store, job) {
        Ok(started) => *rebuild = Some(started),
        Err((job, error)) => {
            let _ = job.done.send(Err(storage_error_body(&error)));
        }
    }
}

/// Runs and commits one batch, then answers every job in it.
fn commit_batch(
    store: &mut dyn Store,
    batch: &mut Vec<CommandJob>,
    policy: &Policy,
    announcements: &Announcements,
    times: &mut RecordedTimes,
) {
    // Stored to the millisecond (the events in memory must equal the events read back), and
    // never before the log's newest time (issue 12).
    let now = times.now();
    let mut work = Work::new(batch.iter().map(|job| &job.command), now, policy);
    work.newest = times.newest();
    match store.write(&mut work) {
        Ok(()) => {
            let (commit_took, waited) = (work.commit_took, work.waited_for_writers);
            let (results, recorded) = work.into_answers();
            announcements.metrics.committed(batch.len(), recorded.len(), commit_took);
            if let Some(waited) = waited {
                announcements.metrics.waited_for_writers(waited);
            }
            if let Some(newest) = recorded.iter().map(|event| event.recorded_at).max() {
                times.recorded(newest);
            }
            for (job, result) in batch.drain(..).zip(results) {
                // The client may have gone away; its command is committed all the same.
                let _ = job.reply.send(result);
            }
            announcements.committed(&recorded);
        }
        Err(error) => {
            tracing::error!(%error, commands = batch.len(), "a batch could not be committed; nothing of it was stored");
            let body = storage_error_body(&error);
            for job in batch.drain(..) {
                let _ = job.reply.send(Err(body.clone()));
            }
        }
    }
}

/// Commits `commands` as one batch, as the writer does, without announcing anything: what the
/// tests and the benchmark's seeding drive. Returns each command's answer and the events
/// recorded, in log order.
pub fn commit(
    store: &mut dyn Store,
    commands: &[WriteCommand],
    now: Timestamp,
    policy: &Policy,
) -> Result<(Vec<WriteResult>, Vec<RecordedEvent>), StoreError> {
    let mut work = Work::new(commands.iter(), now, policy);
    work.given_time = true;
    store.write(&mut work)?;
    Ok(work.into_answers())
}

/// One batch's commands as units of work.
struct Work<'a> {
    commands: Vec<&'a WriteCommand>,
    now: Timestamp,
    /// The newest time the log holds: no event is stamped before it (issue 12).
    newest: Timestamp,
    /// `now` was given by the caller ([`commit`]: tests and seeding), not the writer's clock: a
    /// database's clock does not replace it.
    given_time: bool,
    policy: &'a Policy,
    /// Each command's answer and the events it recorded, once it ran.
    answers: Vec<Option<(WriteResult, Vec<RecordedEvent>)>>,
    /// How long the store's commit took, if it told.
    commit_took: Option<Duration>,
    /// How long the batch waited for the other daemons' writers, if the store told.
    waited_for_writers: Option<Duration>,
}

impl<'a> Work<'a> {
    fn new(commands: impl Iterator<Item = &'a WriteCommand>, now: Timestamp, policy: &'a Policy) -> Self {
        let commands: Vec<_> = commands.collect();
        let answers = (0..commands.len()).map(|_| None).collect();
        Work {
            commands,
            now,
            newest: now,
            given_time: false,
            policy,
            answers,
            commit_took: None,
            waited_for_writers: None,
        }
    }

    /// Every command's answer, and the events of the batch in log order.
    fn into_answers(self) -> (Vec<WriteResult>, Vec<RecordedEvent>) {
        let mut recorded = Vec::new();
        let results = self
            .answers
            .into_iter()
            .map(|answer| {
                let (result, events) = answer.unwrap_or_else(|| (Err(not_run()), Vec::new()));
                recorded.extend(events);
                result
            })
            .collect();
        (results, recorded)
    }
}

/// The answer of a command the store never ran (a store that breaks the [`Batch`] contract).
fn not_run() -> ErrorBody {
    ErrorBody::new(ErrorCode::Internal, "the command was not run; nothing of it was stored")
}

impl Batch for Work<'_> {
    fn units(&self) -> usize {
        self.commands.len()
    }

    fn wants(&self) -> Wants {
        let mut wants = Wants::default();
        for command in &self.commands {
            match command {
                WriteCommand::Create(request) => {
                    wants
                        .idempotency_keys
                        .extend(request.idempotency_key.iter().map(|key| key.as_str().to_owned()));
                }
                WriteCommand::Cancel(order)
                | WriteCommand::DecidePayment { order, .. }
                | WriteCommand::Deliver(order) => {
                    wants.streams.extend(StreamKind::ALL.map(|kind| StreamId::new(kind, *order)));
                }
            }
        }
        wants
    }

    fn run(&mut self, index: usize, tx: &mut dyn WriteTx) -> Outcome {
        let mut unit = UnitOfWork::new(tx, self.now, self.policy);
        match crate::handlers::run(&mut unit, self.commands[index]) {
            Ok(view) => {
                self.answers[index] = Some((Ok(view), unit.into_recorded()));
                Outcome::Done
            }
            Err(error) => {
                let (wrote, conflict) = (unit.wrote(), error.is_conflict());
                let body = error.into_body();
                let why = body.message.clone();
                self.answers[index] = Some((Err(body), Vec::new()));
                if wrote { Outcome::Failed { why, conflict } } else { Outcome::Refused { why } }
            }
        }
    }

    fn database_time(&mut self, now: Timestamp) {
        if self.given_time {
            return;
        }
        let now = Timestamp::from_millisecond(now.as_millisecond()).unwrap_or(now);
        self.now = now.max(self.newest);
    }

    fn fail(&mut self, index: usize, error: StoreError) {
        self.answers[index] = Some((Err(storage_error_body(&error)), Vec::new()));
    }

    fn restart(&mut self) {
        self.answers.iter_mut().for_each(|answer| *answer = None);
    }

    fn last_position(&self) -> Option<Position> {
        self.answers
            .iter()
            .flatten()
            .filter_map(|(_, events)| events.last())
            .map(|event| event.position)
            .max()
    }

    fn committed(&mut self, took: Duration) {
        self.commit_took = Some(took);
    }

    fn waited_for_writers(&mut self, took: Duration) {
        self.waited_for_writers = Some(took);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use orders_shared::protocol::CreateRequest;
    use orders_shared::{OrderEvent, OrderId, OrderStatus, PaymentDecision, StreamId, StreamKind, Total};
    use tokio::sync::{mpsc, oneshot, watch};

    use super::*;
    use crate::store::{Metadata, Version};
    use crate::testing::Db;

    fn job(command: WriteCommand) -> (CommandJob, oneshot::Receiver<WriteResult>) {
        let (reply, answer) = oneshot::channel();
        (CommandJob { command, reply }, answer)
    }

    /// What the writer needs around a batch, with nobody listening to its announcements.
    fn quiet_writer() -> (Announcements, Policy) {
        let (payments, _) = mpsc::unbounded_channel();
        let (deliveries, _) = mpsc::unbounded_channel();
        let announcements = Announcements {
            head: watch::channel(Position::START).0,
            payments,
            deliveries,
            settlements: Arc::new(crate::settlements::Settlements::default()),
            acknowledged: None,
            metrics: Arc::new(Metrics::new(Timestamp::now())),
        };
        (announcements, Policy { delivery_delay: jiff::SignedDuration::ZERO })
    }

    /// The writer's stamps on the machine's clock, as for a new log.
    fn times() -> RecordedTimes {
        RecordedTimes::new(crate::clock::Clock::system(), Timestamp::UNIX_EPOCH)
    }

    fn create(total: i64) -> WriteCommand {
        WriteCommand::Create(CreateRequest {
            user: "batch".parse().expect("user"),
            total: Total::try_from(total).expect("total"),
            idempotency_key: None,
        })
    }

    fn head<S: Store>(db: &Db<S>) -> Position {
        db.read(|reads| reads.counts()).head
    }

    /// A full database in the middle of a batch: whatever SQLite rolled back, the batch is
    /// answered as not stored and nothing of it is, and the next batch works once there is room.
    #[test]
    fn a_batch_that_fills_the_database_stores_nothing_of_it() {
        let mut db = Db::new();
        db.create(2);
        let before = head(&db);
        db.nearly_full();
        let (announcements, policy) = quiet_writer();
        let (jobs, answers): (Vec<_>, Vec<_>) = (0..400).map(|n| job(create(2 * n + 2))).unzip();
        let mut batch = jobs;
        commit_batch(&mut db.store, &mut batch, &policy, &announcements, &mut times());
        let answers: Vec<WriteResult> =
            answers.into_iter().map(|rx| rx.blocking_recv().expect("answered")).collect();
        let stored = answers.iter().filter(|answer| answer.is_ok()).count();
        assert_eq!(
            head(&db).since(before),
            2 * stored as u64,
            "what was answered stored is stored, and nothing else"
        );
        assert!(answers.iter().any(Result::is_err), "the database did fill up");
        assert!(db.no_transaction_open(), "no transaction left open");

        db.room_again();
        let (retry, answer) = job(create(4));
        commit_batch(&mut db.store, &mut vec![retry], &policy, &announcements, &mut times());
        assert!(answer.blocking_recv().expect("answered").is_ok());
    }

    /// A command that fails after it wrote (here: a payment decision whose order was forged
    /// into `approved` behind the rules' back) must not take the rest of its batch with it,
    /// nor leave half of itself behind.
    #[test]
    fn a_command_failing_after_it_wrote_is_rolled_back_alone() {
        let mut db = Db::new();
        let poisoned = db.create(2);
        db.forge(|tx| {
            let approved = [OrderEvent::Approved.into()];
            let now = Timestamp::now();
            tx.append(StreamId::order(poisoned), Version::new(1), &approved, &Metadata::new_command(), now)
                .map(drop)
        });
        let before = head(&db);

        let (first, first_answer) = job(create(4));
        let (bad, bad_answer) =
            job(WriteCommand::DecidePayment { order: poisoned, decision: PaymentDecision::Approved });
        let (refused, refused_answer) = job(WriteCommand::Cancel(OrderId::from_uuid(uuid::Uuid::now_v7())));
        let (last, last_answer) = job(create(6));
        let mut batch = vec![first, bad, refused, last];
        let (announcements, policy) = quiet_writer();
        commit_batch(&mut db.store, &mut batch, &policy, &announcements, &mut times());

        let answer = |rx: oneshot::Receiver<WriteResult>| rx.blocking_recv().expect("answered");
        assert_eq!(answer(first_answer).expect("first").status, OrderStatus::Pending);
        let error = answer(bad_answer).expect_err("the poisoned command fails");
        assert_eq!(error.code, ErrorCode::Internal, "{error:?}");
        assert_eq!(answer(refused_answer).expect_err("no such order").code, ErrorCode::NotFound);
        assert_eq!(answer(last_answer).expect("last").status, OrderStatus::Pending);
        let events = db.read(|reads| reads.history(poisoned));
        let payment: Vec<_> = events.iter().filter(|e| e.stream.kind == StreamKind::Payment).collect();
        assert_eq!(payment.len(), 1, "no PaymentApproved was left behind: {payment:?}");
        assert_eq!(head(&db).since(before), 4, "two creates of two events each");
    }

    /// A writer on an empty store in memory, pacing saga steps as told; and who waits for what.
    fn paced_writer(pacing: Pacing) -> (Writer, JoinHandle<()>, Arc<Settlements>) {
        let mut store = crate::store::memory::MemoryStore::new();
        store.migrate().expect("migrate");
        let (announcements, policy) = quiet_writer();
        let settlements = Arc::clone(&announcements.settlements);
        let (writer, thread) = Writer::spawn_paced(
            Box::new(store),
            policy,
            announcements,
            times(),
            pacing,
            CancellationToken::new(),
        )
        .expect("spawn the writer");
        (writer, thread, settlements)
    }

    /// Lets go of the last handle and waits for the writer thread to end.
    fn stop(writer: Writer, thread: JoinHandle<()>) {
        drop(writer);
        thread.join().expect("the writer thread");
    }

    fn approve(order: OrderId) -> WriteCommand {
        WriteCommand::DecidePayment { order, decision: PaymentDecision::Approved }
    }

    /// Issue 14: a payment decision sent while a customer is placing orders waits for the next
    /// create and shares its commit (one batch: one time for both), instead of taking a commit
    /// of its own that the create would queue behind.
    #[tokio::test]
    async fn a_saga_step_waits_for_a_customers_command_and_shares_its_commit() {
        let pacing = Pacing {
            linger: Duration::from_secs(30),
            customers_active: Duration::from_secs(60),
            ..Pacing::default()
        };
        let (writer, thread, _) = paced_writer(pacing);
        let first = writer.execute(create(2)).await.expect("created");
        let payment = tokio::spawn({
            let writer = writer.clone();
            async move { writer.execute(approve(first.id)).await }
        });
        // Long after the writer took the payment: were it committed alone, their times would differ.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = writer.execute(create(4)).await.expect("created");
        let approved = payment.await.expect("the payment's task").expect("approved");
        assert_eq!(approved.status, OrderStatus::Approved);
        assert_eq!(approved.approved_at, Some(second.created_at), "one commit, one time");
        stop(writer, thread);
    }

    /// A saga step waits only while customers are writing: on a daemon nobody talks to, it is
    /// committed at once, whatever the linger.
    #[tokio::test]
    async fn a_saga_step_goes_at_once_when_no_customer_is_writing() {
        let pacing = Pacing {
            linger: Duration::from_secs(30),
            customers_active: Duration::from_millis(100),
            ..Pacing::default()
        };
        let (writer, thread, _) = paced_writer(pacing);
        let order = writer.execute(create(2)).await.expect("created").id;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = std::time::Instant::now();
        writer.execute(approve(order)).await.expect("approved");
        assert!(started.elapsed() < Duration::from_secs(10), "it did not wait for the linger");
        stop(writer, thread);
    }

    /// A step somebody waits for (`create --wait`) is never held back, customers or not.
    #[tokio::test]
    async fn a_saga_step_somebody_waits_for_goes_at_once() {
        let pacing = Pacing {
            linger: Duration::from_secs(30),
            customers_active: Duration::from_secs(60),
            ..Pacing::default()
        };
        let (writer, thread, settlements) = paced_writer(pacing);
        let order = writer.execute(create(3)).await.expect("created").id;
        let waiting = settlements.subscribe(order);
        let started = std::time::Instant::now();
        let decision = PaymentDecision::Declined { reason: "odd total".into() };
        let declined = WriteCommand::DecidePayment { order, decision };
        let cancelled = writer.execute(declined).await.expect("declined");
        assert_eq!(cancelled.status, OrderStatus::Cancelled);
        assert!(started.elapsed() < Duration::from_secs(10), "it did not wait for the linger");
        drop(waiting);
        stop(writer, thread);
    }

    /// `create --wait` subscribes after its create was answered, while the order's payment
    /// may be waiting for a customer's command: the subscription's nudge sends it at once.
    #[tokio::test]
    async fn a_waiter_arriving_during_the_linger_ends_it() {
        let pacing = Pacing {
            linger: Duration::from_secs(30),
            customers_active: Duration::from_secs(60),
            ..Pacing::default()
        };
        let (writer, thread, settlements) = paced_writer(pacing);
        let order = writer.execute(create(2)).await.expect("created").id;
        let started = std::time::Instant::now();
        let payment = tokio::spawn({
            let writer = writer.clone();
            async move { writer.execute(approve(order)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let waiting = settlements.subscribe(order);
        writer.nudge();
        payment.await.expect("the payment's task").expect("approved");
        assert!(started.elapsed() < Duration::from_secs(10), "the nudge ended the linger");
        drop(waiting);
        stop(writer, thread);
    }

    /// Issue 12: with the clock set back an hour, the writer records no time before the log's
    /// newest, and a stream recorded later still (an old log) keeps its times in order.
    #[test]
    fn a_clock_set_back_records_no_time_before_the_log() {
        let mut db = Db::new();
        db.create(2);
        let newest = db.read(|reads| reads.counts()).newest.expect("one event");
        // An old log, written by a clock that was ahead: this order's stream ends an hour later.
        let later = newest.checked_add(jiff::SignedDuration::from_hours(1)).expect("later");
        let order = OrderId::from_uuid(uuid::Uuid::now_v7());
        db.forge(|tx| {
            let placed = [OrderEvent::Placed {
                user: "old".parse().expect("user"),
                total: Total::try_from(2).expect("total"),
            }
            .into()];
            for event in
                tx.append(StreamId::order(order), Version::NONE, &placed, &Metadata::new_command(), later)?
            {
                tx.project(&event)?;
            }
            Ok(())
        });
        let (announcements, policy) = quiet_writer();
        let behind = crate::clock::Clock::offset_by(jiff::SignedDuration::from_hours(-1));
        let mut times = RecordedTimes::new(behind, newest);
        let (created, created_answer) = job(create(4));
        let (cancel, cancel_answer) = job(WriteCommand::Cancel(order));
        commit_batch(&mut db.store, &mut vec![created, cancel], &policy, &announcements, &mut times);
        let created = created_answer.blocking_recv().expect("answered").expect("created");
        assert!(created.created_at >= newest, "{} < {newest}", created.created_at);
        let cancelled = cancel_answer.blocking_recv().expect("answered").expect("cancelled");
        assert_eq!(cancelled.cancelled_at, Some(later), "not before the stream's last event");
        assert!(times.stamp(crate::clock::Clock::system().now()).at >= later, "the newest time grew");
    }
}
