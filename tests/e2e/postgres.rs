//! What only the PostgreSQL store promises (issue 19): the password kept out of sight, daemons
//! sharing a database listed and of one version (issue 20), a newer schema refused, event times from the database's clock, and a database
//! restarted under load survived without a restart of the daemon.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::fixture::{RawClient, TestDaemon, code, stderr};

/// A running daemon on a fresh database of a test's own cluster (one the test may stop), and
/// that database, dropped when the test is done with it.
fn on_own(cluster: &testpg::Cluster, env: &[(&str, &str)]) -> (TestDaemon, testpg::Database) {
    let database = cluster.fresh_database();
    let mut daemon = TestDaemon::stopped_with(env);
    daemon.set_env("ORDERS_STORE", Some(&database.url));
    daemon.spawn();
    (daemon, database)
}

/// The daemon's own database, as the fixture made it.
fn url(daemon: &TestDaemon) -> String {
    daemon.postgres().expect("the suite on PostgreSQL").to_owned()
}

/// Its URL with a password in it (the test cluster trusts local users: any password does).
fn with_password(url: &str, password: &str) -> String {
    url.replacen("postgres://postgres@", &format!("postgres://postgres:{password}@"), 1)
}

#[test]
fn the_password_never_shows_in_status_logs_or_errors() {
    const SECRET: &str = "pw-Xq7-never-shown";
    let mut daemon = TestDaemon::stopped_with(&[]);
    let url = with_password(&url(&daemon), SECRET);
    daemon.set_env("ORDERS_STORE", Some(&url));
    daemon.spawn();
    daemon.create("alice", 2);
    let status = daemon.ok(["daemon", "status"]);
    assert!(status.contains("postgres://postgres@"), "status names the database: {status}");
    let json = daemon.ok(["daemon", "status", "--json"]);
    assert!(daemon.signal("TERM").success());
    // A database that does not exist: the error names it, not the password.
    let missing = url.rsplit_once('/').map(|(base, _)| format!("{base}/no_such_database")).expect("a path");
    daemon.set_env("ORDERS_STORE", Some(&missing));
    let refused = daemon.try_spawn().expect_err("no such database");
    assert!(refused.contains("no_such_database"), "{refused}");
    // A URL clap refuses is not echoed either.
    let bad = daemon.run(["daemon", "run", "--store", &format!("postgres://u:{SECRET}@host:notaport/db")]);
    assert_ne!(code(&bad), 0);
    let log = std::fs::read_to_string(daemon.log_file()).unwrap_or_default();
    for (what, text) in [
        ("status", status.as_str()),
        ("status --json", json.as_str()),
        ("the start-up error", refused.as_str()),
        ("a refused URL", &stderr(&bad)),
        ("the log", log.as_str()),
    ] {
        assert!(!text.contains(SECRET), "the password shows in {what}: {text}");
    }
}

#[test]
fn a_second_daemon_on_the_same_database_joins_it_and_both_are_listed() {
    let first = TestDaemon::start();
    let mut second = TestDaemon::stopped_with(&[]);
    second.set_env("ORDERS_STORE", Some(&url(&first)));
    second.spawn();
    let order = first.create("alice", 2);
    assert_eq!(
        second.json(["show", &order])["id"],
        order.as_str(),
        "the second daemon reads the first's order"
    );
    for daemon in [&first, &second] {
        // Each daemon lists the others as of its last heartbeat (each second).
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            let status = daemon.json(["daemon", "status"]);
            if status["daemons"].as_array().is_some_and(|d| d.len() >= 2) || Instant::now() > deadline {
                break status;
            }
            thread::sleep(Duration::from_millis(100));
        };
        let daemons = status["daemons"].as_array().expect("the daemons sharing the database");
        let pids: Vec<u64> = daemons.iter().map(|d| d["pid"].as_u64().expect("a pid")).collect();
        assert_eq!(pids.len(), 2, "{status}");
        assert!(
            pids.contains(&u64::from(first.pid())) && pids.contains(&u64::from(second.pid())),
            "{status}"
        );
        let this: Vec<&serde_json::Value> = daemons.iter().filter(|d| d["this"] == true).collect();
        assert_eq!(this.len(), 1, "one is the daemon asked: {status}");
        assert_eq!(this[0]["pid"].as_u64(), Some(u64::from(daemon.pid())), "{status}");
    }
    let shown = second.ok(["daemon", "status"]);
    assert!(shown.contains("2 live on this database"), "{shown}");
    let metrics = second.ok(["metrics"]);
    assert!(metrics.lines().any(|line| line == "orders_cluster_daemons 2"), "{metrics}");
    assert!(metrics.contains("orders_writer_lock_wait_seconds_count"), "{metrics}");
}

#[test]
fn a_daemon_of_another_version_beside_live_ones_is_refused_and_told_who() {
    let first = TestDaemon::start();
    // A live daemon of another version, as its row says (its heartbeat is fresh).
    first.execute(
        "INSERT INTO orders_daemons (id, host, data_dir, pid, version, started_at, heartbeat_at) VALUES \
         ('00000000-0000-0000-0000-000000000001', 'elsewhere', '/srv/orders', 4242, '0.0.1', \
          (extract(epoch from clock_timestamp()) * 1000)::bigint, \
          (extract(epoch from clock_timestamp()) * 1000)::bigint + 600000)",
    );
    let mut second = TestDaemon::stopped_with(&[]);
    second.set_env("ORDERS_STORE", Some(&url(&first)));
    let refused = second.try_spawn().expect_err("one version per database");
    assert!(refused.contains("pid 4242 on host elsewhere runs orders 0.0.1"), "{refused}");
    assert!(refused.contains("stop them all"), "says what to do: {refused}");
    // The first one serves on, untouched.
    first.create("alice", 2);
}

#[test]
fn a_database_of_a_newer_schema_is_refused() {
    let mut daemon = TestDaemon::start();
    assert!(daemon.signal("TERM").success());
    let cluster = testpg::cluster().expect("the suite's cluster");
    let database = url(&daemon).rsplit('/').next().expect("a name").to_owned();
    cluster.sql(&database, "UPDATE orders_schema SET version = 99");
    let refused = daemon.try_spawn().expect_err("a newer schema");
    assert!(refused.contains("newer version of orders"), "{refused}");
}

#[test]
fn event_times_come_from_the_databases_clock() {
    // The daemon's own clock a day ahead: what it records is the database's time all the same.
    let daemon = TestDaemon::start_with(&[("ORDERS_TEST_CLOCK_OFFSET_MS", "86400000")]);
    let before = jiff::Timestamp::now();
    let order = daemon.create("alice", 3);
    let after = jiff::Timestamp::now();
    let shown = daemon.json(["show", &order]);
    let created: jiff::Timestamp = shown["created_at"].as_str().expect("a time").parse().expect("RFC 3339");
    let slack = jiff::SignedDuration::from_secs(5);
    assert!(
        created >= before.checked_sub(slack).expect("time")
            && created <= after.checked_add(slack).expect("time"),
        "recorded at {created}, between {before} and {after} by the database's clock"
    );
}

/// Creates orders on one connection until told to stop: what was acknowledged, and how many
/// replies said the store was unavailable.
fn creating(
    socket: std::path::PathBuf,
    store: String,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<HashMap<String, i64>>>,
    unavailable: Arc<AtomicUsize>,
    seed: u64,
) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut client =
        RawClient::from_stream(std::os::unix::net::UnixStream::connect(&socket).expect("connect"));
    while !stop.load(Ordering::Relaxed) {
        let total = rng.i64(1..=9);
        let request =
            crate::fixture::request(&store, json!({"cmd": "create", "user": "load", "total": total}));
        client.try_send(format!("{request}\n").as_bytes()).expect("send");
        let reply = client.reply().expect("a reply: the daemon stays up");
        if reply["ok"] == true {
            let id = reply["data"]["id"].as_str().expect("id").to_owned();
            acknowledged.lock().expect("lock").insert(id, total);
        } else {
            assert_eq!(reply["error"]["code"], "unavailable", "{reply}");
            unavailable.fetch_add(1, Ordering::Relaxed);
            thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn a_database_restarted_under_load_loses_nothing_and_the_daemon_recovers_by_itself() {
    let Some(cluster) = testpg::own_cluster() else { return };
    let (daemon, database) = on_own(&cluster, &[("ORDERS_DELIVERY_DELAY", "50ms")]);
    let pid = daemon.pid();
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(HashMap::new()));
    let unavailable = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..8)
        .map(|n| {
            let (socket, store) = (daemon.socket(), daemon.store());
            let (stop, acknowledged, unavailable) =
                (Arc::clone(&stop), Arc::clone(&acknowledged), Arc::clone(&unavailable));
            thread::spawn(move || creating(socket, store, stop, acknowledged, unavailable, n))
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    // Down long enough for batches to fail, then back.
    cluster.stop();
    thread::sleep(Duration::from_millis(700));
    cluster.start();
    // The daemon writes again by itself: acknowledged creates resume.
    let resumed_from = acknowledged.lock().expect("lock").len();
    let deadline = Instant::now() + Duration::from_secs(20);
    while acknowledged.lock().expect("lock").len() < resumed_from + 50 {
        assert!(Instant::now() < deadline, "the daemon did not recover:\n{}", daemon.stderr());
        thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().expect("writer");
    }
    assert_eq!(daemon.pid(), pid, "the same daemon, never restarted");
    // Reads too: a read connection the restart closed may fail one read, no more.
    let deadline = Instant::now() + Duration::from_secs(10);
    while code(&daemon.run(["daemon", "status"])) != 0 {
        assert!(Instant::now() < deadline, "reads did not recover");
        thread::sleep(Duration::from_millis(50));
    }
    // A command that failed meanwhile was told `unavailable` (checked by each writer); a commit
    // cut by the stop may also have been settled once the database answered again, the writer
    // holding the batches behind it meanwhile, in which case no command failed at all.
    eprintln!("restart under load: {} replies said unavailable", unavailable.load(Ordering::Relaxed));
    daemon.wait_until_quiet();

    let acknowledged = acknowledged.lock().expect("lock");
    let listed = daemon.json(["list", "--all"]);
    let stored: HashMap<&str, &serde_json::Value> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|order| (order["id"].as_str().expect("id"), order))
        .collect();
    for (id, total) in acknowledged.iter() {
        let order = stored.get(id.as_str()).unwrap_or_else(|| panic!("acknowledged order {id} was lost"));
        let expected = if total % 2 == 0 { "delivered" } else { "cancelled" };
        assert_eq!(order["status"], expected, "order {id} of total {total}");
    }
    let check = daemon.run(["check"]);
    assert_eq!(code(&check), 0, "{}{}", String::from_utf8_lossy(&check.stdout), stderr(&check));
    let replay = daemon.run(["replay", "--check"]);
    assert_eq!(code(&replay), 0, "{}{}", String::from_utf8_lossy(&replay.stdout), stderr(&replay));
    drop(database);
}

#[test]
fn a_server_that_closes_idle_sessions_costs_no_command_and_no_step() {
    // The server ends any session idle for half a second (idle_session_timeout), the writer's
    // and the readers' among them, between every two orders here.
    let mut daemon = TestDaemon::stopped_with(&[]);
    let url = format!("{}?options=-c%20idle_session_timeout%3D500", url(&daemon));
    daemon.set_env("ORDERS_STORE", Some(&url));
    daemon.spawn();
    for total in [2, 4, 6] {
        thread::sleep(Duration::from_millis(1200));
        let order = daemon.json(["create", "--user", "idle", "--total", &total.to_string(), "--wait"]);
        assert_eq!(order["status"], "delivered", "{order}");
    }
    let status = daemon.json(["daemon", "status"]);
    assert_eq!(status["stuck_steps"], 0, "{status}");
}

#[test]
fn a_database_replaced_under_a_running_daemon_is_not_written_to() {
    let daemon = TestDaemon::start();
    daemon.create("alice", 2);
    let cluster = testpg::cluster().expect("the suite's cluster");
    let name = url(&daemon).rsplit('/').next().expect("a name").to_owned();
    // A dump restored under the same name, say: the daemon's sessions end, another database
    // takes the name.
    cluster.sql("postgres", &format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false"));
    cluster.sql(
        "postgres",
        &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"),
    );
    cluster.sql("postgres", &format!("ALTER DATABASE {name} RENAME TO {name}_before"));
    cluster.sql("postgres", &format!("CREATE DATABASE {name} TEMPLATE template0"));
    // The command in flight when the sessions ended may fail for that alone (nothing stored);
    // once the daemon has connected again, every write is refused for what it found.
    let mut said = String::new();
    for _ in 0..5 {
        let refused = daemon.run(["create", "--user", "bob", "--total", "2"]);
        assert_ne!(code(&refused), 0);
        said = stderr(&refused);
        if said.contains("not the store this daemon served") {
            break;
        }
    }
    assert!(said.contains("not the store this daemon served"), "{said}");
    let again = daemon.run(["create", "--user", "bob", "--total", "2"]);
    assert!(stderr(&again).contains("not the store this daemon served"), "{}", stderr(&again));
    let tables = cluster.sql(&name, "SELECT count(*) FROM pg_tables WHERE tablename = 'events'");
    assert_eq!(tables.trim(), "0", "nothing was written into the other database");
    cluster.sql("postgres", &format!("DROP DATABASE {name}_before WITH (FORCE)"));
}

#[test]
fn an_import_without_store_is_refused_while_the_daemon_serves_postgres() {
    let daemon = TestDaemon::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("export.ndjson");
    std::fs::write(&file, daemon.ok(["export"])).expect("an export");
    let output = daemon
        .command()
        .env_remove("ORDERS_STORE")
        .args(["import", file.to_str().expect("utf-8")])
        .output()
        .expect("run orders");
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert!(stderr(&output).contains("give it with --store"), "{}", stderr(&output));
    assert!(!daemon.data_dir().join("orders.db").exists(), "no SQLite store was made");
}

#[test]
fn the_daemon_stops_cleanly_while_its_database_is_down() {
    let Some(cluster) = testpg::own_cluster() else { return };
    let (daemon, database) = on_own(&cluster, &[]);
    daemon.create("alice", 2);
    cluster.stop();
    let stopped = daemon.run(["daemon", "stop"]);
    assert_eq!(code(&stopped), 0, "{}", stderr(&stopped));
    cluster.start();
    drop(database);
}

#[test]
fn an_import_into_a_database_daemons_serve_is_refused() {
    // An empty database, served: an import would go in under the daemon's feet.
    let serving = TestDaemon::start();
    let source = TestDaemon::start();
    source.create("alice", 2);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("export.ndjson");
    std::fs::write(&file, source.ok(["export"])).expect("an export");
    let elsewhere = TestDaemon::stopped_with(&[]);
    let output = elsewhere
        .command()
        .args(["import", "--store", &url(&serving), file.to_str().expect("utf-8")])
        .output()
        .expect("run orders");
    assert_ne!(code(&output), 0, "{}", stderr(&output));
    let said = stderr(&output);
    assert!(
        said.contains("daemons serve this database") && said.contains(&format!("pid {}", serving.pid())),
        "{said}"
    );
    assert_eq!(serving.json(["list", "--all"]).as_array().map(Vec::len), Some(0), "the store is untouched");
}

#[test]
fn an_import_from_a_pipe_that_pauses_longer_than_the_idle_limit_is_loaded() {
    let source = TestDaemon::start();
    for total in [2, 3, 4] {
        source.create("alice", total);
    }
    let export = source.ok(["export"]);
    let lines: Vec<&str> = export.lines().collect();
    let target = TestDaemon::stopped_with(&[]);
    let mut import = target
        .command()
        .args(["import", "--store", &url(&target), "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run orders import");
    let mut input = import.stdin.take().expect("stdin");
    use std::io::Write as _;
    writeln!(input, "{}", lines[..3].join("\n")).expect("the first lines");
    input.flush().expect("flush");
    // Longer than the writer session's idle-in-transaction limit (5 s).
    thread::sleep(Duration::from_secs(6));
    writeln!(input, "{}", lines[3..].join("\n")).expect("the rest");
    drop(input);
    let output = import.wait_with_output().expect("the import ends");
    assert_eq!(code(&output), 0, "{}", stderr(&output));
}

#[test]
fn a_copy_of_a_data_directory_beside_the_original_is_refused() {
    let original = TestDaemon::start();
    original.create("alice", 2);
    let mut copy = original.joined_stopped(&[]);
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(copy.data_dir())
        .expect("the copy's data directory");
    std::fs::copy(original.data_dir().join("daemon.id"), copy.data_dir().join("daemon.id"))
        .expect("copy daemon.id");
    let refused = copy.try_spawn().expect_err("two daemons under one id");
    assert!(refused.contains("was the data directory copied?"), "{refused}");
    assert!(refused.contains(&format!("pid {}", original.pid())), "names the original: {refused}");
    original.create("alice", 4);
}

/// Thaws the frozen processes of a test's own cluster, whatever the test found.
struct Thaw(Vec<String>);

impl Drop for Thaw {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").arg("-CONT").args(&self.0).status();
    }
}

#[test]
fn the_daemon_stops_promptly_while_its_database_is_frozen() {
    let Some(cluster) = testpg::own_cluster() else { return };
    let (daemon, database) = on_own(&cluster, &[]);
    daemon.create("alice", 2);
    // The server and every backend of it stopped: a database that accepts and never answers.
    let pid_file =
        std::fs::read_to_string(cluster.dir().join("data/postmaster.pid")).expect("postmaster.pid");
    let postmaster = pid_file.lines().next().expect("its pid").trim().to_owned();
    let children = std::process::Command::new("pgrep").args(["-P", &postmaster]).output().expect("pgrep");
    let mut frozen: Vec<String> =
        String::from_utf8_lossy(&children.stdout).split_whitespace().map(str::to_owned).collect();
    frozen.push(postmaster);
    let thaw = Thaw(frozen.clone());
    assert!(std::process::Command::new("kill").arg("-STOP").args(&frozen).status().expect("kill").success());
    let started = Instant::now();
    let stopped = daemon.run(["daemon", "stop"]);
    let took = started.elapsed();
    drop(thaw);
    assert_eq!(code(&stopped), 0, "{}\n{}", stderr(&stopped), daemon.log());
    // The daemon exits at the latest 15 s after the stop was asked (what was in flight unanswered).
    assert!(took < Duration::from_secs(20), "the stop took {took:?}");
    drop(database);
}
