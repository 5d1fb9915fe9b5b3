//! `orders backup FILE` (issue 15): a consistent copy while the daemon keeps serving.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;

use crate::fixture::{RawClient, TestDaemon, code, stderr};

/// The files in a directory, by name.
fn names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read the directory")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A backup of the daemon's store: `copy.db` in a new directory, which lives as long as the
/// `TempDir`.
fn backup_of(daemon: &TestDaemon) -> (tempfile::TempDir, std::path::PathBuf) {
    let backups = tempfile::tempdir().expect("tempdir");
    let file = backups.path().join("copy.db");
    daemon.ok(["backup", file.to_str().expect("utf-8")]);
    (backups, file)
}

#[test]
fn a_backup_under_write_load_holds_every_order_acknowledged_before_it_began() {
    let daemon = TestDaemon::start();
    let before = daemon.bulk_create(300, 7);
    // Writes go on during the backup, from another connection.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = std::thread::spawn({
        let (writing, socket, request) = (
            Arc::clone(&writing),
            daemon.socket(),
            daemon.request(json!({"cmd": "create", "user": "during", "total": 2})),
        );
        move || {
            let mut client = RawClient::connect(&socket);
            let mut created = 0;
            while writing.load(Ordering::Relaxed) {
                assert_eq!(client.call(request.clone())["ok"], true);
                created += 1;
            }
            created
        }
    });
    let backups = tempfile::tempdir().expect("tempdir");
    let file = backups.path().join("orders-backup.db");
    let report = daemon.json(["backup", file.to_str().expect("utf-8")]);
    writing.store(false, Ordering::Relaxed);
    let during = writer.join().expect("the writer");
    assert!(during > 0, "writes went on");

    assert_eq!(names(backups.path()), ["orders-backup.db"], "no temporary file left behind");
    let meta = std::fs::metadata(&file).expect("the backup");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "owner-only");
    assert_eq!(report["bytes"].as_u64(), Some(meta.len()));

    let copy = rusqlite::Connection::open_with_flags(&file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the backup");
    let ok: String = copy.query_row("PRAGMA integrity_check", [], |row| row.get(0)).expect("integrity");
    assert_eq!(ok, "ok");
    let orders: i64 = copy.query_row("SELECT count(*) FROM orders", [], |row| row.get(0)).expect("count");
    assert_eq!(report["orders"].as_i64(), Some(orders), "the report counts the copy");
    let mut find = copy.prepare("SELECT count(*) FROM orders WHERE id = ?1").expect("prepare");
    for id in &before {
        let found: i64 = find.query_row([id], |row| row.get(0)).expect("look up");
        assert_eq!(found, 1, "order {id}, acknowledged before the backup, is in it");
    }
}

#[test]
fn a_backup_replaces_an_older_one_and_takes_a_path_relative_to_the_client() {
    let daemon = TestDaemon::start();
    daemon.create("first", 2);
    let backups = tempfile::tempdir().expect("tempdir");
    let run_in =
        |args: &[&str]| daemon.command().current_dir(backups.path()).args(args).output().expect("run");
    let first = run_in(&["backup", "nightly.db", "--json"]);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    daemon.create("second", 4);
    let second = run_in(&["backup", "nightly.db", "--json"]);
    assert_eq!(code(&second), 0, "{}", stderr(&second));
    let report: serde_json::Value = serde_json::from_slice(&second.stdout).expect("json");
    assert_eq!(report["orders"], 2, "the newer copy replaced the older one");
    let path = backups.path().canonicalize().expect("canonical").join("nightly.db");
    assert_eq!(report["path"], path.display().to_string());
    assert_eq!(names(backups.path()), ["nightly.db"]);
}

#[test]
fn a_backup_is_refused_where_it_would_do_harm_and_leaves_nothing() {
    let daemon = TestDaemon::start();
    daemon.create("harm", 2);
    let data_dir = daemon.data_dir();
    let inside = data_dir.join("orders.db");
    let before = names(&data_dir);
    for (target, says) in [
        (inside.display().to_string(), "data directory"),
        ("/nonexistent-orders-dir/b.db".to_owned(), "No such file or directory"),
        (std::env::temp_dir().display().to_string(), "is a directory"),
    ] {
        let output = daemon.run(["backup", &target]);
        assert_eq!(code(&output), 1, "{target}: {}", stderr(&output));
        assert!(stderr(&output).contains("no backup was made"), "{}", stderr(&output));
        assert!(stderr(&output).contains(says), "{target}: {}", stderr(&output));
    }
    assert_eq!(names(&data_dir), before, "nothing was written in the data directory");
    assert_eq!(daemon.json(["list", "--user", "harm"]).as_array().map(Vec::len), Some(1));
}

/// The README's restore by hand: stop, put the copy back, start once with
/// `--accept-store-change` (refused without it: the store went backwards), check.
#[test]
fn a_backup_put_back_by_hand_is_served_once_the_change_is_accepted() {
    let mut daemon = TestDaemon::start();
    let kept = daemon.create("kept", 2);
    let (_backups, file) = backup_of(&daemon);
    let lost = daemon.create("lost", 4);
    daemon.signal("TERM");

    let data_dir = daemon.data_dir();
    std::fs::copy(&file, data_dir.join("orders.db")).expect("put the copy back");
    for stale in ["orders.db-wal", "orders.db-shm"] {
        let _ = std::fs::remove_file(data_dir.join(stale));
    }
    let refused = daemon.try_spawn().expect_err("an older copy is not served silently");
    assert!(refused.contains("went backwards"), "{refused}");
    daemon.set_env("ORDERS_ACCEPT_STORE_CHANGE", Some("1"));
    daemon.spawn();
    daemon.wait_for_status(&kept, "delivered");
    assert_eq!(code(&daemon.run(["show", &lost])), 3, "the order placed after the backup is not in it");
    assert_eq!(code(&daemon.run(["check"])), 0);
}

/// `orders check --file` checks a backup where it lands, with no daemon running, and refuses
/// what is not an orders store of this version.
#[test]
fn a_backup_is_checked_where_it_lands_without_a_daemon() {
    let mut daemon = TestDaemon::start();
    daemon.create("checked", 2);
    daemon.create("checked", 3);
    let (backups, file) = backup_of(&daemon);
    daemon.signal("TERM");
    let checked = |path: &std::path::Path| daemon.run(["check", "--file", path.to_str().expect("utf-8")]);

    let output = checked(&file);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("of 2 orders"), "{output:?}");

    let garbage = backups.path().join("garbage.db");
    std::fs::write(&garbage, vec![b'x'; 8192]).expect("garbage");
    assert_eq!(code(&checked(&garbage)), 7, "a file that is no database is damaged");

    let foreign = backups.path().join("foreign.db");
    rusqlite::Connection::open(&foreign).expect("create").execute_batch("CREATE TABLE t (x)").expect("table");
    let output = checked(&foreign);
    assert_eq!(code(&output), 1);
    assert!(stderr(&output).contains("is not an orders store"), "{}", stderr(&output));

    let newer = backups.path().join("newer.db");
    std::fs::copy(&file, &newer).expect("copy");
    rusqlite::Connection::open(&newer).expect("open").pragma_update(None, "user_version", 99).expect("bump");
    let output = checked(&newer);
    assert_eq!(code(&output), 1);
    assert!(stderr(&output).contains("newer version"), "{}", stderr(&output));

    let damaged = backups.path().join("damaged.db");
    std::fs::copy(&file, &damaged).expect("copy");
    rusqlite::Connection::open(&damaged)
        .expect("open")
        .execute("DELETE FROM orders WHERE total = 3", [])
        .expect("a read-model row lost in the copy");
    let output = checked(&damaged);
    assert_eq!(code(&output), 7, "{}", stderr(&output));
}

/// The round: a backup under write load, restored into a fresh data directory, served
/// there with every order acknowledged before the backup began, and `check` clean.
#[test]
fn a_backup_restored_into_a_fresh_directory_is_whole_and_checked() {
    let daemon = TestDaemon::start();
    let before = daemon.bulk_create(200, 5);
    let (_backups, file) = backup_of(&daemon);

    let mut fresh = TestDaemon::stopped_with(&[]);
    let restored = fresh.json(["restore", file.to_str().expect("utf-8")]);
    assert_eq!(restored["kept_aside"], serde_json::Value::Null, "there was no store to keep");
    assert_eq!(restored["orders"].as_u64(), Some(before.len() as u64));
    fresh.spawn();
    for id in &before {
        fresh.ok(["show", id]);
    }
    assert_eq!(code(&fresh.run(["check"])), 0);
    let (theirs, ours) = (daemon.json(["daemon", "status"]), fresh.json(["daemon", "status"]));
    assert_ne!(theirs["store_id"], ours["store_id"], "the restored store has an identity of its own");
}

/// Over a running daemon: it is stopped, the store is replaced (the old one kept aside), the
/// daemon is started again, and it serves the copy without `--accept-store-change`.
#[test]
fn a_restore_over_a_running_daemon_keeps_the_old_store_aside_and_serves_the_copy() {
    let mut daemon = TestDaemon::start();
    let kept = daemon.create("kept", 2);
    let (_backups, file) = backup_of(&daemon);
    let lost = daemon.create("lost", 4);
    let output = daemon.run(["restore", file.to_str().expect("utf-8")]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    daemon.reap();
    assert!(String::from_utf8_lossy(&output.stdout).contains("started again"), "{output:?}");
    daemon.ok(["show", &kept]);
    assert_eq!(code(&daemon.run(["show", &lost])), 3, "the order placed after the backup is not in it");
    assert_eq!(code(&daemon.run(["check"])), 0);
    let aside: Vec<String> = names(&daemon.data_dir())
        .into_iter()
        .filter(|name| name.starts_with("orders.db.before-restore-"))
        .collect();
    assert_eq!(aside.len(), 1, "the old store is kept: {aside:?}");
    daemon.ok(["daemon", "stop"]);
}

/// A copy that is no orders store, is from a newer version or fails the check changes nothing.
#[test]
fn a_copy_that_is_not_a_sound_orders_store_restores_nothing() {
    let mut daemon = TestDaemon::start();
    let id = daemon.create("stays", 2);
    let (backups, file) = backup_of(&daemon);
    daemon.signal("TERM");
    let before = names(&daemon.data_dir());

    let garbage = backups.path().join("garbage.db");
    std::fs::write(&garbage, vec![b'x'; 8192]).expect("garbage");
    let newer = backups.path().join("newer.db");
    std::fs::copy(&file, &newer).expect("copy");
    rusqlite::Connection::open(&newer).expect("open").pragma_update(None, "user_version", 99).expect("bump");
    let unsound = backups.path().join("unsound.db");
    std::fs::copy(&file, &unsound).expect("copy");
    rusqlite::Connection::open(&unsound).expect("open").execute("DELETE FROM orders", []).expect("lose rows");

    for (copy, says) in
        [(&garbage, "not a database"), (&newer, "newer version"), (&unsound, "does not pass the check")]
    {
        let output = daemon.run(["restore", copy.to_str().expect("utf-8")]);
        assert_eq!(code(&output), 1, "{}", stderr(&output));
        assert!(stderr(&output).contains("nothing was restored"), "{}", stderr(&output));
        assert!(stderr(&output).contains(says), "{says}: {}", stderr(&output));
        assert_eq!(names(&daemon.data_dir()), before, "the data directory is as it was");
    }
    daemon.spawn();
    daemon.ok(["show", &id]);
}

/// Review of issue 15: what sits at the target decides nothing by its name. A FIFO, a symlink,
/// the daemon's log, or the data directory reached through a bind mount are refused, and the
/// live store is untouched.
#[test]
fn a_backup_never_replaces_anything_but_a_regular_file_of_its_own() {
    let daemon = TestDaemon::start();
    let id = daemon.create("target", 2);
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    let link = dir.path().join("link.db");
    std::os::unix::fs::symlink(dir.path().join("elsewhere.db"), &link).expect("symlink");
    for (target, says) in
        [(&fifo, "not a regular file"), (&link, "not a regular file"), (&daemon.log_file(), "daemon's own")]
    {
        let output = daemon.run(["backup", target.to_str().expect("utf-8")]);
        assert_eq!(code(&output), 1, "{}: {}", target.display(), stderr(&output));
        assert!(stderr(&output).contains(says), "{}: {}", target.display(), stderr(&output));
    }
    let bind = dir.path().join("bind");
    std::fs::create_dir(&bind).expect("mkdir");
    let mounted = Command::new("mount").arg("--bind").arg(daemon.data_dir()).arg(&bind).status();
    if mounted.is_ok_and(|status| status.success()) {
        let output = daemon.run(["backup", bind.join("orders.db").to_str().expect("utf-8")]);
        let _ = Command::new("umount").arg(&bind).status();
        assert_eq!(code(&output), 1, "{}", stderr(&output));
        assert!(stderr(&output).contains("data directory"), "{}", stderr(&output));
    }
    daemon.ok(["show", &id]);
    assert_eq!(code(&daemon.run(["check"])), 0, "the live store is untouched");
}

/// `check --file` never hangs on a FIFO, and takes a name that begins with `-`.
#[test]
fn check_file_refuses_what_is_no_file_and_takes_any_name() {
    let daemon = TestDaemon::start();
    daemon.create("named", 2);
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    let output = daemon.run(["check", "--file", fifo.to_str().expect("utf-8")]);
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    assert!(stderr(&output).contains("not a file"), "{}", stderr(&output));
    let run_in = |args: &[&str]| daemon.command().current_dir(dir.path()).args(args).output().expect("run");
    assert_eq!(code(&run_in(&["backup", "-dash.db"])), 2, "clap reads it as a flag, as it should");
    let output = run_in(&["backup", "--", "-dash.db"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let output = run_in(&["check", "--file=-dash.db"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
}
