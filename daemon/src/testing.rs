//! Test helpers: a real database in a temporary directory, driven through the command handlers
//! the writer runs, one committed transaction per command.

use jiff::{SignedDuration, Timestamp};
use orders_shared::protocol::{CreateRequest, OrderView};
use orders_shared::{EvenOddProvider, OrderId, PaymentProvider, StreamId, StreamKind, Total};
use rusqlite::Connection;

use crate::commands::{CommandError, Policy, UnitOfWork, WriteCommand};
use crate::store::{self, EventStore};

pub struct Db {
    dir: tempfile::TempDir,
    pub conn: Connection,
    pub policy: Policy,
}

impl Db {
    pub fn new() -> Db {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = store::open_writer(&dir.path().join("t.db")).expect("open");
        store::schema::migrate(&mut conn).expect("migrate");
        Db { dir, conn, policy: Policy { delivery_delay: SignedDuration::from_secs(3) } }
    }

    /// The database file.
    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("t.db")
    }

    /// The same, with another delay from approval to delivery.
    pub fn with_delivery_delay(delay: SignedDuration) -> Db {
        Db { policy: Policy { delivery_delay: delay }, ..Db::new() }
    }

    /// One command in its own committed transaction, as the writer runs it.
    pub fn run(&mut self, command: WriteCommand) -> Result<OrderView, CommandError> {
        let tx = self.conn.transaction().expect("begin");
        let now = Timestamp::from_millisecond(Timestamp::now().as_millisecond()).expect("now");
        let result = UnitOfWork::new(&tx, now, &self.policy).run(&command);
        // As the writer does after each batch.
        let head = EventStore::new(&tx).head().expect("head");
        crate::projection::set_checkpoint(&tx, head).expect("checkpoint");
        tx.commit().expect("commit");
        result
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

    /// The types of every event of an order, in log order.
    pub fn types(&self, order: OrderId) -> Vec<&'static str> {
        let streams = StreamKind::ALL.map(|kind| StreamId::new(kind, order));
        EventStore::new(&self.conn)
            .read_streams(&streams)
            .expect("read")
            .iter()
            .map(|event| event.event.event_type())
            .collect()
    }

    pub fn open_payment(&self, order: OrderId) -> Option<Total> {
        crate::sagas::payment::open(&self.conn)
            .expect("open")
            .steps
            .into_iter()
            .find(|p| p.order == order)
            .map(|p| p.amount)
    }

    /// How many delivery timers are stored, whatever they hold.
    pub fn timer_rows(&self) -> i64 {
        self.conn.query_row("SELECT count(*) FROM delivery_timers", [], |row| row.get(0)).expect("count")
    }

    pub fn timer(&self, order: OrderId) -> Option<Timestamp> {
        crate::sagas::delivery::open(&self.conn)
            .expect("open")
            .steps
            .into_iter()
            .find(|d| d.order == order)
            .map(|d| d.due_at)
    }
}

impl Db {
    /// An order as the read model shows it.
    pub fn view(&self, order: OrderId) -> Option<OrderView> {
        crate::projection::get(&self.conn, order).expect("read")
    }
}

impl Db {
    /// A database with one order of this total in it.
    pub fn with_order(mut self, total: i64) -> Db {
        self.create(total);
        self
    }

    /// Every order of the log, oldest first.
    pub fn orders(&self) -> Vec<OrderId> {
        let mut select = self
            .conn
            .prepare("SELECT stream_id FROM events WHERE version = 1 AND stream_id LIKE 'order-%' ORDER BY position")
            .expect("prepare");
        let ids = select.query_map([], |row| row.get::<_, String>(0)).expect("query");
        ids.map(|id| id.expect("row").parse::<StreamId>().expect("stream id").order).collect()
    }
}
