//! Tests of the daemon's parts that need SQLite itself: rows damaged or edited by hand, pages
//! overwritten, a read model reset behind the daemon's back.

mod check {
    use orders_shared::OrderId;
    use rusqlite::params;

    use crate::check::check;
    use crate::command::WriteCommand;
    use crate::testing::Db;

    /// The check on a connection opened after the damage (the writer's caches hold old pages).
    fn check_afresh(db: &Db) -> orders_shared::protocol::CheckReport {
        use crate::store::ReadSource;
        let pool = crate::store::sqlite::reads::Pool::new(db.path());
        let mut report = None;
        pool.with_reads(&mut |reads| report = Some(check(reads))).expect("open");
        report.expect("ran").expect("a report, not an error")
    }

    fn problems(db: &Db) -> Vec<String> {
        let report = db.read(check);
        assert_eq!(report.problems as usize, report.listed.len());
        report.listed.into_iter().map(|p| p.message).collect()
    }

    /// Appends an event behind the rules' back, as a bug or a damaged file would.
    fn forge(db: &Db, order: OrderId, stream: &str, version: i64, event_type: &str, payload: &str) {
        db.conn()
            .execute(
                "INSERT INTO events (event_id, stream_id, version, type, schema_version, payload, correlation_id, \
                 causation_id, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?1, ?1, 1800000000000)",
                params![
                    uuid::Uuid::now_v7().to_string(),
                    format!("{stream}-{order}"),
                    version,
                    event_type,
                    if event_type == "OrderCancelled" { 2 } else { 1 },
                    payload
                ],
            )
            .expect("forge");
    }

    #[test]
    fn a_sound_database_has_no_problems() {
        let mut db = Db::new();
        let delivered = db.create(2);
        db.decide(delivered);
        db.run(WriteCommand::Deliver(delivered)).expect("deliver");
        let declined = db.create(3);
        db.decide(declined);
        let cancelled = db.create(4);
        db.decide(cancelled);
        db.run(WriteCommand::Cancel(cancelled)).expect("cancel");
        db.create(6); // still pending
        let report = db.read(check);
        assert_eq!((report.orders, report.problems), (4, 0), "{:?}", report.listed);
    }

    #[test]
    fn an_event_against_the_rules_is_found() {
        let mut db = Db::new();
        let order = db.create(3);
        db.decide(order); // declined and cancelled: 4 order-stream events are versions 1..2
        forge(&db, order, "order", 3, "OrderDelivered", "{}");
        let found = problems(&db);
        assert!(found.iter().any(|p| p.contains("OrderDelivered breaks the rules")), "{found:?}");
    }

    #[test]
    fn a_gap_in_a_stream_is_found() {
        let db = Db::new().with_order(2);
        let order = db.orders()[0];
        forge(&db, order, "payment", 7, "PaymentRefunded", r#"{"amount":2}"#);
        let found = problems(&db);
        assert!(found.iter().any(|p| p.contains("version 7 where 2 was due")), "{found:?}");
    }

    #[test]
    fn a_missing_or_stray_saga_step_is_found() {
        let mut db = Db::new();
        let pending = db.create(2);
        let approved = db.create(4);
        db.decide(approved);
        db.conn()
            .execute("DELETE FROM payment_requests WHERE order_id = ?1", [pending.to_string()])
            .expect("damage");
        db.conn()
            .execute("DELETE FROM delivery_timers WHERE order_id = ?1", [approved.to_string()])
            .expect("damage");
        db.conn()
            .execute("INSERT INTO payment_requests VALUES (?1, 4, 0)", [approved.to_string()])
            .expect("damage");
        let found = problems(&db);
        assert!(found.iter().any(|p| p.contains("no payment request is open")), "{found:?}");
        assert!(found.iter().any(|p| p.contains("no timer is set")), "{found:?}");
        assert!(found.iter().any(|p| p.contains("payment decided already")), "{found:?}");
    }

    #[test]
    fn a_read_model_that_disagrees_with_the_log_is_found() {
        let mut db = Db::new();
        let order = db.create(2);
        db.conn()
            .execute("UPDATE orders SET total = 999 WHERE id = ?1", [order.to_string()])
            .expect("damage");
        db.conn()
            .execute(
                "INSERT INTO orders VALUES ('nope', 'x', 1, 'pending', 0, 0, NULL, NULL, NULL, NULL)",
                [],
            )
            .expect("damage");
        let found = problems(&db);
        assert!(found.iter().any(|p| p.contains("the read model shows")), "{found:?}");
        assert!(found.iter().any(|p| p.contains("read model row for nope")), "{found:?}");
    }

    /// Overwrites one page of the database file with garbage, behind SQLite's back.
    fn overwrite_page(db: &Db, page: i64) {
        use std::io::{Seek, SeekFrom, Write};
        db.conn().execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").expect("checkpoint");
        let size: i64 = db.conn().query_row("PRAGMA page_size", [], |row| row.get(0)).expect("page size");
        let mut file = std::fs::OpenOptions::new().write(true).open(db.path()).expect("open");
        file.seek(SeekFrom::Start(u64::try_from((page - 1) * size).expect("offset"))).expect("seek");
        file.write_all(&vec![0xA5; usize::try_from(size).expect("size")]).expect("damage");
    }

    /// Issue 12: a damaged index page, which the walk of the log never reads, passed for
    /// "no problems"; SQLite's integrity check finds it.
    #[test]
    fn a_damaged_page_is_found_by_sqlites_integrity_check() {
        let mut db = Db::new();
        for total in 1..=20 {
            db.create(total * 2);
        }
        let root: i64 = db
            .conn()
            .query_row("SELECT rootpage FROM sqlite_master WHERE name = 'orders_by_time'", [], |row| {
                row.get(0)
            })
            .expect("root page");
        overwrite_page(&db, root);
        let report = check_afresh(&db);
        assert!(report.problems > 0 && report.damaged, "{report:?}");
        assert!(report.listed[0].message.starts_with("the database is damaged"), "{:?}", report.listed);
    }

    #[test]
    fn a_file_that_is_no_database_is_reported_as_damage() {
        let db = Db::new().with_order(2);
        overwrite_page(&db, 1);
        let report = check_afresh(&db);
        assert!(report.damaged, "{report:?}");
        assert_eq!(report.problems, 1, "{report:?}");
        assert!(report.listed[0].message.contains("the database is damaged: "), "{:?}", report.listed);
    }
}

mod sagas {
    use crate::steps;
    use crate::store::{StepKind, Store};
    use crate::testing::Db;

    /// Every way a stored row can be un-runnable is reported with what is wrong, and none of them
    /// keeps the good rows from loading.
    #[test]
    fn damaged_saga_rows_are_reported_one_by_one() {
        let mut db = Db::new();
        let pending = db.create(2);
        let approved = db.create(4);
        db.decide(approved);
        let unknown = orders_shared::OrderId::from_uuid(uuid::Uuid::now_v7()).to_string();
        for (order, due_at) in [
            ("not-an-id", "0"),
            (unknown.as_str(), "1800000000000"),
            ("019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6b", "-5"),
            ("019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6c", "'soon'"),
            ("019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6d", "9223372036854775807"),
        ] {
            db.conn()
                .execute(&format!("INSERT INTO delivery_timers VALUES (?1, {due_at})"), [order])
                .expect("damage");
        }
        for (order, amount) in
            [(unknown.as_str(), "2"), ("019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6e", "-1"), ("x", "'two'")]
        {
            db.conn()
                .execute(&format!("INSERT INTO payment_requests VALUES (?1, {amount}, 0)"), [order])
                .expect("damage");
        }

        let open = steps::decode(db.store.open_steps().expect("load"));
        assert_eq!(open.deliveries.iter().map(|d| d.order).collect::<Vec<_>>(), [approved]);
        assert_eq!(open.payments.iter().map(|p| p.order).collect::<Vec<_>>(), [pending]);
        let problems = |kind: StepKind| {
            let stuck = open.stuck.iter().filter(|s| s.kind == kind);
            let mut found: Vec<String> =
                stuck.map(|s| format!("{}: {}", s.step.order, s.step.problem)).collect();
            found.sort();
            found
        };
        let found = problems(StepKind::Delivery);
        assert_eq!(found.len(), 5, "{found:?}");
        for expected in [
            "before 1970",
            "not a number of milliseconds",
            "past the last time",
            "\"not-an-id\" is not an order id",
            &format!("{unknown}: its order is not in the event log"),
        ] {
            assert!(found.iter().any(|p| p.contains(expected)), "{expected}: {found:?}");
        }

        let found = problems(StepKind::Payment);
        assert_eq!(found.len(), 3, "{found:?}");
        for expected in ["not in the event log", "amount -1 is not a valid total", "\"x\" is not an order id"]
        {
            assert!(found.iter().any(|p| p.contains(expected)), "{expected}: {found:?}");
        }

        // `check` names each of them.
        let report = db.read(crate::check::check);
        let named = report.listed.iter().filter(|p| p.message.contains("cannot be carried out")).count();
        assert_eq!(named, 8, "{:?}", report.listed);
    }
}

mod startup {
    use orders_shared::protocol::StartStep;
    use tokio_util::sync::CancellationToken;

    use crate::startup::{Startup, catch_up};
    use crate::store::Store;
    use crate::testing::Db;

    /// The read model's checkpoint and rows, reset: the next catch-up applies the whole log.
    fn forget_read_model(db: &Db) {
        db.conn().execute_batch("DELETE FROM orders; UPDATE checkpoints SET position = 0").expect("reset");
    }

    #[test]
    fn a_catch_up_publishes_its_progress_and_applies_everything() {
        let mut db = Db::new();
        for total in 1..=60 {
            db.create(total);
        }
        forget_read_model(&db);
        let head = db.store.head().expect("head").get() as u64;
        let startup = Startup::default();
        let done = catch_up(&mut db.store, &startup, &CancellationToken::new(), std::time::Duration::ZERO);
        assert!(done.expect("catch up"));
        let progress = startup.progress();
        assert_eq!(progress.step, StartStep::CatchingUp);
        assert_eq!((progress.applied, progress.total), (head, head));
        let orders: i64 =
            db.conn().query_row("SELECT count(*) FROM orders", [], |r| r.get(0)).expect("count");
        assert_eq!(orders, 60);
    }

    #[test]
    fn a_stopped_catch_up_applies_nothing_more_and_says_so() {
        let mut db = Db::new();
        db.create(2);
        forget_read_model(&db);
        let stop = CancellationToken::new();
        stop.cancel();
        let startup = Startup::default();
        assert!(!catch_up(&mut db.store, &startup, &stop, std::time::Duration::ZERO).expect("catch up"));
        assert_eq!(startup.progress().applied, 0);
        assert_eq!(db.store.checkpoint().expect("checkpoint").get(), 0);
    }
}

mod errors {
    use std::error::Error as _;

    use rusqlite::ffi;

    use crate::store::sqlite::SqliteStore;
    use crate::store::{Store, StoreError};

    /// The start-up reports a failure with its whole chain (`{:#}`); before the seam the
    /// driver's error was carried whole, and its own source came last. Classified, it must read
    /// the same.
    #[test]
    fn a_file_that_is_no_database_reads_at_start_as_before() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        std::fs::write(&path, b"this is no longer an SQLite database, sorry....").expect("write");
        let error = SqliteStore::open(&path).and_then(|mut store| store.found()).expect_err("refused");
        assert!(error.is_damage(), "{error:?}");
        let chain = format!("{:#}", anyhow::Error::from(error).context("cannot open the database"));
        assert_eq!(
            chain,
            "cannot open the database: file is not a database: Error code 26: file is not a database"
        );
    }

    #[test]
    fn every_classified_error_keeps_the_drivers_source() {
        for code in [
            ffi::SQLITE_FULL,
            ffi::SQLITE_READONLY,
            ffi::SQLITE_BUSY,
            ffi::SQLITE_CORRUPT,
            ffi::SQLITE_MISUSE,
        ] {
            let driver = rusqlite::Error::SqliteFailure(ffi::Error::new(code), Some("said so".into()));
            let expected = driver.source().map(ToString::to_string);
            let classified = StoreError::from(driver);
            assert_eq!(classified.source().map(ToString::to_string), expected, "{classified:?}");
        }
    }
}
