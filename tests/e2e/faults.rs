//! Database faults and misbehaving clients: a clear error, nothing acknowledged that was not
//! stored, and recovery once the fault is gone, where it can be.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::fixture::{Mount, RawClient, TestDaemon, code, stderr};

fn skipped(what: &str) {
    eprintln!("skipped: {what} needs the right to mount a tmpfs (root)");
}

#[test]
fn a_full_disk_refuses_commands_stores_nothing_and_recovers_when_space_returns() {
    let mut daemon = TestDaemon::stopped_with(&[]);
    let Some(_disk) = Mount::tmpfs(&daemon.data_dir(), "6m") else { return skipped("a full disk") };
    daemon.spawn();
    let mut acknowledged: Vec<String> = (0..20).map(|_| daemon.create("full", 2)).collect();

    // Fill the disk to the last byte.
    let filler = daemon.data_dir().join("filler");
    let mut file = std::fs::File::create(&filler).expect("filler");
    while file.write_all(&[0; 64 * 1024]).is_ok() {}
    drop(file);

    let mut refused = None;
    for _ in 0..5_000 {
        let output = daemon.run(["create", "--user", "full", "--total", "2"]);
        if code(&output) == 0 {
            // The WAL may still have room of its own for a while.
            acknowledged.push(String::from_utf8_lossy(&output.stdout).trim().to_owned());
        } else {
            refused = Some(output);
            break;
        }
    }
    let refused = refused.expect("a full disk refuses a command at last");
    assert_eq!(code(&refused), 5, "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("disk is full") && stderr(&refused).contains("nothing was stored"),
        "{}",
        stderr(&refused)
    );
    assert!(daemon.ok(["daemon", "status"]).contains("is running"), "the daemon stays up");

    std::fs::remove_file(&filler).expect("free the space");
    acknowledged.push(daemon.create("full", 2));
    daemon.wait_until_quiet();
    let listed = daemon.json(["list", "--user", "full", "--all"]);
    let listed: Vec<&str> =
        listed.as_array().expect("array").iter().map(|o| o["id"].as_str().expect("id")).collect();
    assert_eq!(listed.len(), acknowledged.len(), "every acknowledged order and nothing else");
    for id in &acknowledged {
        assert!(listed.contains(&id.as_str()), "acknowledged order {id} was lost");
    }
    let check = daemon.run(["check"]);
    assert_eq!(code(&check), 0, "{}", String::from_utf8_lossy(&check.stdout));
}

#[test]
fn a_read_only_data_directory_is_a_clear_error_at_start_and_fine_once_writable() {
    let mut daemon = TestDaemon::stopped_with(&[]);
    let Some(disk) = Mount::tmpfs(&daemon.data_dir(), "16m") else { return skipped("a read-only disk") };
    daemon.spawn();
    let id = daemon.create("ro", 2);
    daemon.signal("TERM");

    disk.remount("ro");
    let output = daemon.command().args(["daemon", "run"]).output().expect("run");
    assert_ne!(code(&output), 0);
    let message = stderr(&output);
    assert!(
        message.contains("Read-only file system")
            && message.contains(&daemon.data_dir().display().to_string()),
        "{message}"
    );

    disk.remount("rw");
    daemon.spawn();
    assert_eq!(daemon.json(["show", &id])["user"], "ro");
}

#[test]
fn a_corrupted_database_file_is_refused_at_start_with_its_name() {
    let mut daemon = TestDaemon::start();
    daemon.create("corrupt", 2);
    daemon.signal("TERM");
    let database = daemon.data_dir().join("orders.db");
    let mut file = std::fs::OpenOptions::new().write(true).open(&database).expect("open");
    file.write_all(b"this is no longer an SQLite database, sorry....").expect("damage");
    drop(file);
    let output = daemon.command().args(["daemon", "run"]).output().expect("run");
    assert_eq!(code(&output), 1);
    let message = stderr(&output);
    assert!(
        message.contains(&database.display().to_string()) && message.contains("not a database"),
        "{message}"
    );
}

#[test]
fn a_database_from_a_newer_version_is_refused_at_start() {
    let mut daemon = TestDaemon::start();
    daemon.create("future", 2);
    daemon.signal("TERM");
    daemon.database().pragma_update(None, "user_version", 99).expect("bump the schema");
    let output = daemon.command().args(["daemon", "run"]).output().expect("run");
    assert_eq!(code(&output), 1);
    assert!(stderr(&output).contains("newer version of orders (schema 99"), "{}", stderr(&output));
}

#[test]
fn a_client_killed_mid_request_harms_nobody() {
    let daemon = TestDaemon::start();
    for _ in 0..50 {
        let mut stream = UnixStream::connect(daemon.socket()).expect("connect");
        stream
            .write_all(daemon.raw_line(r#""cmd":"create","user":"half"#).as_bytes())
            .expect("half a request");
        drop(stream);
    }
    let mut stream = UnixStream::connect(daemon.socket()).expect("connect");
    stream
        .write_all(daemon.raw_line("\"cmd\":\"create\",\"user\":\"gone\",\"total\":2}\n").as_bytes())
        .expect("a whole request");
    drop(stream); // gone before the reply
    daemon.create("after", 2);
    assert!(
        daemon.json(["list", "--user", "half"]).as_array().is_some_and(Vec::is_empty),
        "half a request is no request"
    );
}

#[test]
fn a_client_that_stops_reading_stalls_only_itself() {
    let daemon = TestDaemon::start();
    let stream = UnixStream::connect(daemon.socket()).expect("connect");
    let mut writer = stream.try_clone().expect("clone");
    let line = daemon.raw_line("\"cmd\":\"list\",\"limit\":100}\n");
    let flooder = std::thread::spawn(move || {
        // Requests, and never a read: the replies pile up until the daemon cannot send more.
        for _ in 0..200_000 {
            if writer.write_all(line.as_bytes()).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    for n in 0..20 {
        daemon.create("patient", 2 * n + 2);
    }
    assert_eq!(daemon.json(["list", "--user", "patient"]).as_array().map(Vec::len), Some(20));
    assert!(started.elapsed() < Duration::from_secs(10), "others are served meanwhile");
    // Hang up (the flooder's own handle is blocked in a write): the daemon drops the connection.
    stream.shutdown(std::net::Shutdown::Both).expect("hang up");
    flooder.join().expect("flooder");
    daemon.create("after", 2);
}

#[test]
fn a_slow_client_is_cut_off_and_idle_crowds_do_not_block_the_others() {
    let daemon = TestDaemon::start_with(&[("ORDERS_IDLE_TIMEOUT", "500ms")]);
    // A slowloris: a byte every 100 ms never makes a line in time.
    let mut slow = UnixStream::connect(daemon.socket()).expect("connect");
    let started = Instant::now();
    let drip = daemon.raw_line("\"cmd\":\"status\"}").repeat(4);
    let dripped = std::thread::spawn(move || {
        for byte in drip.into_bytes() {
            if slow.write_all(&[byte]).is_err() {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    });
    // A crowd of connections that say nothing.
    let idle: Vec<UnixStream> =
        (0..200).map(|_| UnixStream::connect(daemon.socket()).expect("connect")).collect();
    let mut client = RawClient::connect(&daemon.socket());
    let reply = client.call(daemon.request(json!({"cmd": "create", "user": "busy", "total": 2})));
    assert_eq!(reply["ok"], true, "served despite the crowd: {reply}");
    let cut = dripped.join().expect("slowloris").expect("the slow client was cut off");
    assert!(cut < Duration::from_secs(3), "cut off after {cut:?}");
    drop(idle);
    daemon.create("after", 2);
}

#[test]
fn stopping_does_not_wait_for_a_client_that_stopped_reading() {
    let mut daemon = TestDaemon::start();
    let stream = UnixStream::connect(daemon.socket()).expect("connect");
    let mut writer = stream.try_clone().expect("clone");
    let line = daemon.raw_line("\"cmd\":\"list\",\"limit\":100}\n");
    let flooder = std::thread::spawn(move || while writer.write_all(line.as_bytes()).is_ok() {});
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let stopped = daemon.run(["daemon", "stop"]);
    assert_eq!(code(&stopped), 0, "{}", stderr(&stopped));
    assert!(started.elapsed() < Duration::from_secs(10), "stopped after {:?}", started.elapsed());
    assert!(daemon.reap().success(), "a clean exit");
    stream.shutdown(std::net::Shutdown::Both).expect("hang up");
    flooder.join().expect("flooder");
}
