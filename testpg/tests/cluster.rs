//! The harness itself: the shared cluster, fresh databases, the URLs it hands out (over the
//! socket with the store's own client, over TCP with TLS with psql), a restart, and the
//! cleanup when the test process is gone.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

#[test]
fn a_fresh_database_is_empty_and_takes_sql() {
    let pg = testpg::require!();
    let db = pg.fresh_database();
    assert_eq!(pg.sql(&db.name, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"), "0");
    let rows = pg.sql(&db.name, "CREATE TABLE t (x int, y text); INSERT INTO t VALUES (1, 'a'), (2, 'b');");
    assert_eq!(rows, "");
    assert_eq!(pg.sql(&db.name, "SELECT x, y FROM t ORDER BY x"), "1|a\n2|b");
    assert_eq!(pg.sql(&db.name, "SELECT current_database()"), db.name);
}

#[test]
fn databases_made_at_once_by_many_threads_are_distinct() {
    let pg = testpg::require!();
    let databases: Vec<testpg::Database> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..8).map(|_| s.spawn(|| pg.fresh_database())).collect();
        threads.into_iter().map(|thread| thread.join().expect("fresh_database")).collect()
    });
    let names: HashSet<&str> = databases.iter().map(|db| db.name.as_str()).collect();
    assert_eq!(names.len(), 8);
}

#[test]
fn a_dropped_database_is_dropped() {
    let pg = testpg::require!();
    let name = pg.fresh_database().name.clone();
    let left = pg.sql("postgres", &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"));
    assert_eq!(left, "0");
}

#[test]
fn an_error_in_sql_panics_with_psql_s_message() {
    let pg = testpg::require!();
    let db = pg.fresh_database();
    let failed = std::panic::catch_unwind(|| pg.sql(&db.name, "SELECT * FROM nowhere"));
    let message = *failed.expect_err("a panic").downcast::<String>().expect("a message");
    assert!(message.contains(r#"relation "nowhere" does not exist"#), "{message}");
}

#[test]
fn the_socket_url_works_with_the_store_s_client() {
    let pg = testpg::require!();
    let db = pg.fresh_database();
    let config = postgres::Config::from_str(&db.url).expect("the URL parses");
    assert_eq!(config.get_hosts(), [postgres::config::Host::Unix(pg.dir().join("s"))]);
    assert_eq!(config.get_ports(), [pg.port()]);
    let mut client = config.connect(postgres::NoTls).expect("connect over the socket");
    let row = client.query_one("SELECT current_database()", &[]).expect("query");
    assert_eq!(row.get::<_, String>(0), db.name);
    // The Unix socket's path stays well within the 107 bytes a path may have.
    assert!(pg.dir().join(format!("s/.s.PGSQL.{}", pg.port())).as_os_str().len() < 60);
}

#[test]
fn the_tcp_url_takes_tls_verified_against_the_ca() {
    let pg = testpg::require!();
    let db = pg.fresh_database();
    let psql = |url: String| {
        let ca = pg.ca_cert().display().to_string();
        let url = format!("{url}?sslmode=verify-full&sslrootcert={ca}");
        let sql = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
        pg.psql().args(["-A", "-t", "-d", &url, "-c", sql]).output().expect("psql")
    };
    let verified = psql(pg.tcp_url(&db.name));
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
    assert_eq!(String::from_utf8_lossy(&verified.stdout).trim(), "t");
    // The certificate names localhost only.
    let by_address = psql(pg.tcp_url(&db.name).replace("@localhost:", "@127.0.0.1:"));
    let said = String::from_utf8_lossy(&by_address.stderr);
    assert!(!by_address.status.success() && said.contains("does not match host name"), "{said}");
}

#[test]
fn an_own_cluster_keeps_its_data_across_a_restart_and_goes_when_dropped() {
    let Some(pg) = testpg::own_cluster() else { return };
    let db = pg.fresh_database();
    pg.sql(&db.name, "CREATE TABLE t (x int); INSERT INTO t VALUES (42)");
    pg.restart();
    assert_eq!(pg.sql(&db.name, "SELECT x FROM t"), "42");
    pg.stop();
    let mut client = postgres::Client::connect(&db.url, postgres::NoTls);
    assert!(client.is_err(), "connected to a stopped server");
    pg.start();
    client = postgres::Client::connect(&db.url, postgres::NoTls);
    client.expect("connect after start").simple_query("SELECT 1").expect("query");
    let dir = pg.dir().to_owned();
    let postmaster = postmaster_pid(&dir);
    drop(db);
    drop(pg);
    assert!(!dir.exists(), "{} is left", dir.display());
    assert!(!alive(postmaster), "the server {postmaster} still runs");
}

#[test]
fn the_tests_cluster_skips_fsync_and_a_durable_one_does_not() {
    let settings = "SELECT current_setting('fsync'), current_setting('full_page_writes'), \
                    current_setting('synchronous_commit'), current_setting('shared_buffers')";
    let pg = testpg::require!();
    assert_eq!(pg.sql("postgres", settings), "off|off|on|32MB");
    let Some(durable) = testpg::own_cluster_with(testpg::Options { durable: true }) else { return };
    assert_eq!(durable.sql("postgres", settings), "on|on|on|128MB");
    assert_eq!(durable.sql("postgres", "SHOW wal_sync_method"), "fdatasync");
}

/// When the test process is gone, its watchdog stops its server and removes the directory: a
/// second process (this test binary again, running this test alone with `TESTPG_CHILD` set)
/// starts a cluster, says where and exits; the cluster must then go within a few seconds.
#[test]
fn the_cluster_goes_when_the_test_process_is_gone() {
    if std::env::var_os("TESTPG_CHILD").is_some() {
        let pg = testpg::require!();
        println!("dir={}", pg.dir().display());
        println!("pid={}", postmaster_pid(pg.dir()));
        return;
    }
    testpg::require!();
    let child = Command::new(std::env::current_exe().expect("this test binary"))
        .args(["--exact", "the_cluster_goes_when_the_test_process_is_gone", "--nocapture"])
        .env("TESTPG_CHILD", "1")
        .output()
        .expect("run the test binary again");
    let stdout = String::from_utf8_lossy(&child.stdout);
    assert!(child.status.success(), "{stdout}{}", String::from_utf8_lossy(&child.stderr));
    let said =
        |key: &str| stdout.lines().find_map(|line| line.strip_prefix(key)).expect("the child's cluster");
    let dir = Path::new(said("dir="));
    let postmaster: i32 = said("pid=").parse().expect("a process id");
    let exited = Instant::now();
    while (dir.exists() || alive(postmaster)) && exited.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(postmaster), "the server {postmaster} still runs");
    assert!(!dir.exists(), "{} is left", dir.display());
    eprintln!("the cluster was gone {:?} after its test process", exited.elapsed());
}

/// The server's process id, from the first line of `postmaster.pid`.
fn postmaster_pid(dir: &Path) -> i32 {
    let pid_file = std::fs::read_to_string(dir.join("data/postmaster.pid")).expect("postmaster.pid");
    pid_file.lines().next().and_then(|pid| pid.parse().ok()).expect("a process id")
}

/// Whether the process runs. An exited server whose parent (init, as the server detaches) has
/// not reaped it yet counts as gone: some containers' init reaps only now and then.
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // "pid (name) state ...", where the name may hold spaces and parentheses.
    let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
    state.is_some_and(|state| state != 'Z')
}
