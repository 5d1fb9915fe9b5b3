//! Test helpers: a store (SQLite in a temporary directory, or in memory), driven through the
//! writer's own commit path ([`writer::commit`]), one batch per call.

use jiff::{SignedDuration, Timestamp};
use orders_shared::protocol::{CreateRequest, OrderView};
use orders_shared::{EvenOddProvider, OrderId, PaymentProvider, StreamKind, Total};

use crate::command::{Policy, WriteCommand};
use crate::steps;
use crate::store::memory::MemoryStore;
use crate::store::postgres::{PgStore, Target};
use crate::store::sqlite::SqliteStore;
use crate::store::{
    Batch, Outcome, Position, ReadSource, Reads, RecordedEvent, Store, StoreError, Wants, WriteTx,
};
use crate::writer::{self, WriteResult};

pub struct Db<S: Store = SqliteStore> {
    pub store: S,
    reads: Box<dyn ReadSource>,
    pub policy: Policy,
    dir: Option<tempfile::TempDir>,
    /// A PostgreSQL store's database, dropped with it.
    _database: Option<testpg::Database>,
}

impl Db<SqliteStore> {
    /// A migrated SQLite store in a temporary directory.
    pub fn new() -> Db {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("t.db")).expect("open");
        Db::on(store, Some(dir))
    }

    /// The database file.
    pub fn path(&self) -> std::path::PathBuf {
        self.dir.as_ref().expect("a directory").path().join("t.db")
    }

    /// The same, with another delay from approval to delivery.
    pub fn with_delivery_delay(delay: SignedDuration) -> Db {
        Db { policy: Policy { delivery_delay: delay }, ..Db::new() }
    }
}

impl Db<PgStore> {
    /// A migrated PostgreSQL store in a fresh database of the test process's private cluster;
    /// `None` (the cluster said why) when PostgreSQL is not installed, outside CI.
    pub fn postgres() -> Option<Db<PgStore>> {
        let database = testpg::cluster()?.fresh_database();
        let target = Target::parse(&database.url).expect("the cluster's URL");
        let db = Db::on(PgStore::open(&target).expect("open the PostgreSQL store"), None);
        Some(Db { _database: Some(database), ..db })
    }
}

impl Db<MemoryStore> {
    /// An empty store in memory.
    pub fn memory() -> Db<MemoryStore> {
        Db::on(MemoryStore::new(), None)
    }
}

impl<S: Store> Db<S> {
    /// A store, migrated, with the default 3 s delivery delay.
    pub fn on(mut store: S, dir: Option<tempfile::TempDir>) -> Db<S> {
        store.migrate().expect("migrate");
        let reads = store.reads().expect("reads");
        Db {
            store,
            reads,
            policy: Policy { delivery_delay: SignedDuration::from_secs(3) },
            dir,
            _database: None,
        }
    }

    /// One command in its own batch, as the writer runs it.
    pub fn run(&mut self, command: WriteCommand) -> WriteResult {
        self.run_batch(vec![command]).pop().expect("one answer")
    }

    /// Commands in one batch, as the writer runs them; each one's answer.
    pub fn run_batch(&mut self, commands: Vec<WriteCommand>) -> Vec<WriteResult> {
        self.commit(&commands).expect("committed").0
    }

    /// Commands in one batch; the answers and the events recorded, or why nothing was stored.
    pub fn commit(
        &mut self,
        commands: &[WriteCommand],
    ) -> Result<(Vec<WriteResult>, Vec<RecordedEvent>), StoreError> {
        let now = Timestamp::from_millisecond(Timestamp::now().as_millisecond()).expect("now");
        writer::commit(&mut self.store, commands, now, &self.policy)
    }

    pub fn create(&mut self, total: i64) -> OrderId {
        let request = CreateRequest {
            user: "alice".parse().expect("user"),
            total: Total::try_from(total).expect("total"),
            idempotency_key: None,
        };
        self.run(WriteCommand::Create(request)).expect("create").id
    }

    pub fn decide(&mut self, order: OrderId) -> OrderView {
        let payment = self.open_payment(order).expect("an open payment request");
        let decision = EvenOddProvider.decide(order, payment);
        self.run(WriteCommand::DecidePayment { order, decision }).expect("decide")
    }

    /// Runs a query on a read snapshot.
    pub fn read<T>(&self, query: impl FnOnce(&mut dyn Reads) -> Result<T, StoreError>) -> T {
        let mut query = Some(query);
        let mut result = None;
        self.reads
            .with_reads(&mut |reads| result = query.take().map(|query| query(reads)))
            .expect("a reader");
        result.expect("the query ran").expect("read")
    }

    /// The whole log as `orders export` prints it, its end line included.
    pub fn export(&self) -> String {
        let mut text = String::new();
        let mut after = Position::START;
        loop {
            let (events, _) = self.read(|reads| reads.stored_events(after, 1000));
            let Some(last) = events.last() else {
                let end = orders_shared::protocol::ExportSummary {
                    events: after.since(Position::START),
                    first: (after != Position::START).then(|| crate::store::cursor(Position::new(1))),
                    last: (after != Position::START).then(|| crate::store::cursor(after)),
                    next: crate::store::cursor(after.next()),
                };
                let end = orders_shared::protocol::ExportEnd { end };
                return text + &serde_json::to_string(&end).expect("json") + "\n";
            };
            after = last.position;
            for event in events {
                text += &serde_json::to_string(&event.export().expect("exportable")).expect("json");
                text.push('\n');
            }
        }
    }

    /// The types of every event of an order, in log order.
    pub fn types(&self, order: OrderId) -> Vec<&'static str> {
        let events = self.read(|reads| reads.history(order));
        events.iter().map(|event| event.event.event_type()).collect()
    }

    /// An order as the read model shows it.
    pub fn view(&self, order: OrderId) -> Option<OrderView> {
        self.read(|reads| reads.order(order))
    }

    pub fn open_payment(&mut self, order: OrderId) -> Option<Total> {
        let open = steps::decode(self.store.open_steps().expect("open steps"));
        open.payments.into_iter().find(|p| p.order == order).map(|p| p.amount)
    }

    pub fn timer(&mut self, order: OrderId) -> Option<Timestamp> {
        let open = steps::decode(self.store.open_steps().expect("open steps"));
        open.deliveries.into_iter().find(|d| d.order == order).map(|d| d.due_at)
    }

    /// How many delivery timers are stored, whatever they hold.
    pub fn timer_rows(&mut self) -> usize {
        self.store.open_steps().expect("open steps").deliveries.len()
    }

    /// The same, with one order of this total in it.
    pub fn with_order(mut self, total: i64) -> Db<S> {
        self.create(total);
        self
    }

    /// Every order of the log, oldest first.
    pub fn orders(&self) -> Vec<OrderId> {
        let (events, _) = self.read(|reads| reads.events(Position::START, usize::MAX >> 1));
        events
            .iter()
            .filter(|event| event.stream.kind == StreamKind::Order && event.version.get() == 1)
            .map(|event| event.stream.order)
            .collect()
    }

    /// Writes behind the rules' back, in one transaction of its own (as a bug or a hand edit
    /// would): no policy reacts, the read model and its checkpoint stay as they are.
    pub fn forge(&mut self, write: impl FnMut(&mut dyn WriteTx) -> Result<(), StoreError>) {
        let mut forge = Forge { write, failed: None };
        self.store.write(&mut forge).expect("forged");
        if let Some(error) = forge.failed {
            panic!("forging failed: {error}");
        }
    }
}

/// A batch of one unit that writes what a test says.
struct Forge<F> {
    write: F,
    failed: Option<StoreError>,
}

impl<F: FnMut(&mut dyn WriteTx) -> Result<(), StoreError>> Batch for Forge<F> {
    fn units(&self) -> usize {
        1
    }

    fn wants(&self) -> Wants {
        Wants::default()
    }

    fn run(&mut self, _: usize, tx: &mut dyn WriteTx) -> Outcome {
        match (self.write)(tx) {
            Ok(()) => Outcome::Done,
            Err(error) => {
                let why = error.to_string();
                self.failed = Some(error);
                Outcome::Failed { why, conflict: false }
            }
        }
    }

    fn fail(&mut self, _: usize, error: StoreError) {
        self.failed = Some(error);
    }

    fn restart(&mut self) {
        self.failed = None;
    }

    fn last_position(&self) -> Option<Position> {
        None
    }
}
