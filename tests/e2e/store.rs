//! A store knows itself (issue 12): a database that vanished, went backwards or is damaged is
//! never served as if it were the store the data directory held.

use std::io::{Seek, SeekFrom, Write};
use std::process::{Output, Stdio};
use std::time::Duration;

use crate::fixture::{TestDaemon, code, stderr, wait_timeout};

const ACCEPT: &str = "ORDERS_ACCEPT_STORE_CHANGE";

/// `orders daemon run`, which must exit at start; a daemon that serves instead is stopped and
/// the test fails.
fn refused_start(daemon: &TestDaemon) -> Output {
    let mut child = daemon
        .command()
        .args(["daemon", "run"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    if wait_timeout(&mut child, Duration::from_secs(20)).is_none() {
        let _ = child.kill();
        let output = child.wait_with_output().expect("reap");
        panic!("the daemon served the changed store:\n{}", stderr(&output));
    }
    child.wait_with_output().expect("output")
}

/// The number of events a daemon has acknowledged, once its sagas are done.
fn settled_events(daemon: &TestDaemon) -> i64 {
    daemon.wait_until_quiet();
    daemon.json(["daemon", "status"])["events"].as_i64().expect("events")
}

#[test]
fn a_database_truncated_to_nothing_is_refused_naming_it_until_accepted() {
    let mut daemon = TestDaemon::start();
    for _ in 0..3 {
        daemon.create("gone", 2);
    }
    let events = settled_events(&daemon);
    let status = daemon.json(["daemon", "status"]);
    let first_store = status["store_id"].as_str().unwrap_or("(none)").to_owned();
    daemon.signal("TERM");
    let database = daemon.data_dir().join("orders.db");
    std::fs::File::options().write(true).open(&database).expect("open").set_len(0).expect("truncate");

    let expected = format!(
        "{} is empty but store {first_store} had acknowledged {events} events: it was truncated, replaced or deleted",
        database.display()
    );
    let refused = refused_start(&daemon);
    assert_eq!(code(&refused), 1, "{}", stderr(&refused));
    assert!(stderr(&refused).contains(&expected), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("--accept-store-change"), "{}", stderr(&refused));
    // `daemon start` shows why, too; and refusing wrote nothing: the next start says the same.
    let started = daemon.run(["daemon", "start"]);
    assert_eq!(code(&started), 5, "{}", stderr(&started));
    assert!(stderr(&started).contains(&expected), "{}", stderr(&started));

    daemon.set_env(ACCEPT, Some("1"));
    daemon.spawn();
    assert!(daemon.json(["list", "--all"]).as_array().is_some_and(Vec::is_empty));
    let new_store = daemon.json(["daemon", "status"])["store_id"].as_str().expect("store id").to_owned();
    assert_ne!(new_store, first_store, "an accepted change is a new store");
    assert!(daemon.log().contains("accepted (--accept-store-change)"), "{}", daemon.log());
    daemon.signal("TERM");
    // Accepted once: the new store is the one the data directory knows now.
    daemon.set_env(ACCEPT, None);
    daemon.spawn();
    daemon.create("after", 2);
}

#[test]
fn a_wal_deleted_after_a_crash_is_refused_as_going_backwards() {
    let mut daemon = TestDaemon::start();
    let kept = daemon.create("kept", 2);
    daemon.wait_until_quiet();
    // A reader holding a snapshot keeps the checkpoints from copying what follows into orders.db:
    // the next orders are acknowledged but live in orders.db-wal only.
    let reader = daemon.database();
    reader.execute_batch("BEGIN").expect("begin");
    let _: i64 = reader.query_row("SELECT count(*) FROM events", [], |row| row.get(0)).expect("snapshot");
    for _ in 0..3 {
        daemon.create("lost", 2);
    }
    let acknowledged = settled_events(&daemon);
    daemon.kill9();
    let database = daemon.data_dir().join("orders.db");
    let wal = daemon.data_dir().join("orders.db-wal");
    assert!(std::fs::metadata(&wal).expect("a -wal file").len() > 0, "the WAL has frames");
    // The database as it is on disk, without its -wal; then the reader goes (it would checkpoint).
    let saved = daemon.dir().join("orders.db.saved");
    std::fs::copy(&database, &saved).expect("copy");
    drop(reader);
    std::fs::rename(&saved, &database).expect("put it back");
    for companion in [wal, daemon.data_dir().join("orders.db-shm")] {
        let _ = std::fs::remove_file(companion);
    }

    let refused = refused_start(&daemon);
    assert_eq!(code(&refused), 1, "{}", stderr(&refused));
    let message = stderr(&refused);
    assert!(
        message.contains(&database.display().to_string())
            && message.contains(&format!("but it had acknowledged {acknowledged} events: it went backwards"))
            && message.contains("-wal file deleted"),
        "{message}"
    );

    daemon.set_env(ACCEPT, Some("1"));
    daemon.spawn();
    let left = daemon.json(["list", "--all"]);
    let left: Vec<&str> =
        left.as_array().expect("array").iter().map(|o| o["id"].as_str().expect("id")).collect();
    assert_eq!(left, [kept.as_str()], "what orders.db held without its -wal");
    assert_eq!(code(&daemon.run(["check"])), 0);
}

#[test]
fn a_database_with_damaged_pages_fails_check_with_exit_7_or_start_with_a_clear_error() {
    let mut daemon = TestDaemon::start();
    daemon.bulk_create(300, 10);
    daemon.wait_until_quiet();
    daemon.signal("TERM");
    let database = daemon.data_dir().join("orders.db");
    let pages = std::fs::metadata(&database).expect("size").len() / 4096;
    assert!(pages > 20, "a database of {pages} pages");
    let mut file = std::fs::File::options().write(true).open(&database).expect("open");
    file.seek(SeekFrom::Start(pages / 2 * 4096)).expect("seek");
    file.write_all(&[0xA5; 3 * 4096]).expect("damage three pages");
    drop(file);

    match daemon.try_spawn() {
        Ok(()) => {
            let check = daemon.run(["check"]);
            let stdout = String::from_utf8_lossy(&check.stdout).into_owned();
            assert_eq!(code(&check), 7, "{stdout}{}", stderr(&check));
            assert!(stdout.contains("the database file is damaged; the check stopped"), "{stdout}");
            eprintln!("started; the check found the damage:\n{stdout}");
        }
        Err(message) => {
            assert!(
                message.contains(&database.display().to_string()) && message.contains("malformed"),
                "{message}"
            );
            eprintln!("refused at start: {message}");
        }
    }
}
