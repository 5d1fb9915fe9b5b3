//! Starting up: what the daemon does between binding its socket and serving, and how far it
//! has come (issue 12).
//!
//! A long catch-up at start (a read model to rebuild from 4.9M events took 57 s) used to look
//! like a dead daemon: no socket until it was done, so autostart gave up, `status` called the
//! socket gone and `restart` killed the healthy daemon. Now the socket is bound first and the
//! server answers while this runs: `status` with the [`StartProgress`], `shutdown` by stopping
//! the start-up between two chunks, everything else with `starting`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use orders_shared::protocol::{StartProgress, StartStep};
use tokio_util::sync::CancellationToken;

use crate::clock::{self, Clock};
use crate::identity::{self, Acknowledged, StoreId, Verdict};
use crate::steps::{self, DeliveryDue, PaymentDue, StuckSteps};
use crate::store::{Position, Store, StoreError};

/// How far the start-up has come, written by the start-up thread and read by the server.
#[derive(Debug)]
pub struct Startup {
    /// A [`StartStep`], as its index in [`STEPS`].
    step: AtomicU8,
    applied: AtomicU64,
    total: AtomicU64,
}

const STEPS: [StartStep; 3] = [StartStep::OpeningStore, StartStep::CatchingUp, StartStep::ResumingSagas];

impl Default for Startup {
    fn default() -> Startup {
        Startup { step: AtomicU8::new(0), applied: AtomicU64::new(0), total: AtomicU64::new(0) }
    }
}

impl Startup {
    pub fn progress(&self) -> StartProgress {
        let step = STEPS.get(usize::from(self.step.load(Ordering::Acquire))).copied();
        StartProgress {
            step: step.unwrap_or(StartStep::Unknown),
            applied: self.applied.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
        }
    }

    fn enter(&self, step: StartStep, total: u64) {
        self.applied.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
        let index = STEPS.iter().position(|known| *known == step).unwrap_or_default();
        self.step.store(u8::try_from(index).unwrap_or_default(), Ordering::Release);
    }

    fn applied(&self, events: u64) {
        self.applied.fetch_add(events, Ordering::Relaxed);
    }
}

/// The store, opened, migrated and caught up, with the saga steps to resume.
pub struct Prepared {
    pub store: Box<dyn Store>,
    pub head: Position,
    pub open_payments: Vec<PaymentDue>,
    pub open_deliveries: Vec<DeliveryDue>,
    pub stuck: StuckSteps,
    /// The identity of the store, and the record of its acknowledged position beside it.
    pub store_id: StoreId,
    pub acknowledged: Arc<Acknowledged>,
    /// The newest recorded time in the log, if any: new events are recorded no earlier.
    pub newest: Option<jiff::Timestamp>,
}

/// What the data directory remembers of its store, and what the daemon was told about it.
pub struct Known {
    /// The record of the store's identity and acknowledged position, beside the database.
    pub id_file: PathBuf,
    /// Serve a store that vanished, was replaced or went backwards (`--accept-store-change`).
    pub accept_store_change: bool,
    pub clock: Clock,
}

/// The most events a catch-up applies per transaction (and between two looks at the stop token).
const MAX_CHUNK: u64 = 10_000;
/// The fewest, so that a small catch-up is not a crowd of tiny transactions.
const MIN_CHUNK: u64 = 100;

/// Opens the store and brings it to where the daemon can serve: blocking, for a blocking thread.
/// `None` when `stop` was cancelled first (between two chunks of the catch-up, each committed
/// with its checkpoint, so the next start resumes there). `pause` waits before each chunk: 0
/// except in tests, which must see a catch-up in progress.
pub fn prepare(
    open: impl FnOnce() -> Result<Box<dyn Store>, StoreError>,
    database: &str,
    known: &Known,
    startup: &Startup,
    stop: &CancellationToken,
    pause: Duration,
) -> anyhow::Result<Option<Prepared>> {
    let mut store = open().with_context(|| format!("cannot open the database {database}"))?;
    // Before anything is written to it: is this the store the data directory remembers?
    let found = store.found().with_context(|| format!("cannot open the database {database}"))?;
    let remembered = identity::remembered(&known.id_file, &found)?;
    let mint = accept_store(identity::judge(found, remembered, known.accept_store_change), database)?;
    store.migrate().with_context(|| format!("cannot use the database {database}"))?;
    if store.drop_leftovers()? {
        tracing::warn!("dropped the table of a replay that did not finish (the daemon died during it)");
    }
    if !catch_up(store.as_mut(), startup, stop, pause).context("cannot bring the read model up to date")? {
        return Ok(None);
    }
    startup.enter(StartStep::ResumingSagas, 0);
    let head = store.head()?;
    let store_id = store.ensure_identity(mint)?;
    let acknowledged = Arc::new(Acknowledged::create(&known.id_file, store_id, head.get())?);
    let now = known.clock.now();
    let newest = store.newest_recorded_at()?;
    if let Some(newest) = newest
        && let Some(behind) = clock::behind(now, newest)
    {
        tracing::warn!(
            behind_ms = behind.as_millis(),
            %newest,
            "the clock is {behind:#} behind the newest recorded event ({newest}): new events are recorded \
             no earlier than that, and deliveries go at most their delay from now. Is the clock right?"
        );
    }
    // A stored step that cannot be carried out is reported and kept, never a reason not to start.
    let stuck = StuckSteps::default();
    let steps::Decoded { payments: open_payments, deliveries: open_deliveries, stuck: unfit } =
        steps::decode(store.open_steps()?);
    for step in unfit {
        stuck.add(step);
    }
    let behind = open_deliveries.iter().filter(|due| due.clock_behind(now)).count();
    if behind > 0 {
        tracing::warn!(
            deliveries = behind,
            "{behind} deliveries were approved later than the clock says it is now: each goes at most \
             its delivery delay from now, not at its recorded due time"
        );
    }
    Ok(Some(Prepared { store, head, open_payments, open_deliveries, stuck, store_id, acknowledged, newest }))
}

/// What the daemon does with the store it found: refuse it (an error saying what was found and
/// what to do), or serve it — under a new identity (`Ok(true)`) when a change was accepted.
fn accept_store(verdict: Verdict, database: &str) -> anyhow::Result<bool> {
    let name = database.to_owned();
    match verdict {
        Verdict::Serve => Ok(false),
        Verdict::Refuse(change) => anyhow::bail!(
            "{}. Refusing to serve it. Put the right database back (orders.db together with its orders.db-wal \
             file), or, if this is the store to serve from now on, start the daemon once with \
             --accept-store-change (ORDERS_ACCEPT_STORE_CHANGE=1)",
            change.describe(&name)
        ),
        Verdict::Accept(change) => {
            tracing::warn!(
                "{}; accepted (--accept-store-change): serving it as a new store",
                change.describe(&name)
            );
            Ok(true)
        }
    }
}

/// Applies the log past the read model's checkpoint in chunks of about a hundredth of it,
/// publishing progress after each. `false` when stopped first.
pub(crate) fn catch_up(
    store: &mut dyn Store,
    startup: &Startup,
    stop: &CancellationToken,
    pause: Duration,
) -> Result<bool, StoreError> {
    let checkpoint = store.checkpoint()?;
    // Positions are dense (rows are never deleted): the gap is the number of events to apply.
    let total = store.head()?.since(checkpoint);
    startup.enter(StartStep::CatchingUp, total);
    if total > 0 {
        tracing::info!(events = total, from = checkpoint.get(), "read model catching up with the event log");
    }
    let chunk = (total / 100).clamp(MIN_CHUNK, MAX_CHUNK) as usize;
    let mut applied = 0;
    loop {
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
        if stop.is_cancelled() {
            tracing::info!(
                applied,
                of = total,
                "start-up stopped during the catch-up; the next start resumes it"
            );
            return Ok(false);
        }
        let Some(read) = store.catch_up_chunk(chunk)? else { break };
        applied += read;
        startup.applied(read);
    }
    if applied > 0 {
        tracing::info!(events = applied, "read model caught up with the event log");
    }
    Ok(true)
}
