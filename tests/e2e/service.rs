//! Operated like a service (issue 16): Prometheus metrics over the socket and over HTTP, scraped
//! by a real HTTP client; the socket passed by a service manager (socket activation, with
//! systemd's own `systemd-socket-activate`); readiness told to it (`NOTIFY_SOCKET`).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixture::{ORDERS, RawClient, TestDaemon, code, stderr, wait_timeout};

/// A scrape: each series (name and labels, as written) and its value.
struct Scrape(HashMap<String, f64>);

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let series = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(|line| {
                let (series, value) =
                    line.rsplit_once(' ').unwrap_or_else(|| panic!("a sample line: {line}"));
                (series.to_owned(), value.parse().unwrap_or_else(|_| panic!("a value: {line}")))
            })
            .collect();
        Scrape(series)
    }

    /// The value of a series; 0 for one not exposed yet (a counter that never moved).
    fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    fn has(&self, series: &str) -> bool {
        self.0.contains_key(series)
    }
}

/// An HTTP client that reports every status instead of failing on 4xx and 5xx.
fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// The daemon's metrics endpoint, as `status` names it.
fn metrics_url(daemon: &TestDaemon) -> String {
    let status = daemon.json(["daemon", "status"]);
    status["metrics_url"]
        .as_str()
        .unwrap_or_else(|| panic!("status names the metrics URL: {status}"))
        .to_owned()
}

/// Scrapes over HTTP, checking what a Prometheus server checks.
fn scrape(url: &str) -> Scrape {
    let mut response = http().get(url).call().expect("scrape");
    assert_eq!(response.status(), 200);
    let content_type =
        response.headers().get("content-type").expect("a content type").to_str().expect("ascii");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    Scrape::parse(&response.body_mut().read_to_string().expect("body"))
}

fn with_metrics(env: &[(&str, &str)]) -> (TestDaemon, String) {
    let mut all = vec![("ORDERS_METRICS_LISTEN", "127.0.0.1:0")];
    all.extend_from_slice(env);
    let daemon = TestDaemon::start_with(&all);
    let url = metrics_url(&daemon);
    (daemon, url)
}

#[test]
fn metrics_scraped_over_http_move_with_the_work_done() {
    let (daemon, url) = with_metrics(&[]);
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/metrics"), "{url}");
    let before = scrape(&url);
    assert_eq!(before.get("orders_ready"), 1.0);
    assert!(before.get("process_resident_memory_bytes") > 1e6, "a daemon has some memory");
    assert!(before.get("process_open_fds") >= 3.0);
    assert!(before.get("process_start_time_seconds") > 1.7e9);

    let approved: Vec<String> = (0..3).map(|_| daemon.create("alice", 2)).collect();
    let declined = daemon.create("bob", 3);
    for id in &approved {
        daemon.wait_for_status(id, "delivered");
    }
    daemon.wait_for_status(&declined, "cancelled");
    let refused = daemon.run(["cancel", &approved[0]]);
    assert_ne!(code(&refused), 0, "a delivered order cannot be cancelled");
    daemon.wait_until_quiet();

    let after = scrape(&url);
    let moved = |series: &str| after.get(series) - before.get(series);
    assert_eq!(moved(r#"orders_commands_total{command="create",outcome="ok"}"#), 4.0);
    assert_eq!(moved(r#"orders_commands_total{command="decide_payment",outcome="ok"}"#), 4.0);
    assert_eq!(moved(r#"orders_commands_total{command="deliver",outcome="ok"}"#), 3.0);
    assert_eq!(moved(r#"orders_commands_total{command="cancel",outcome="rejected"}"#), 1.0);
    assert_eq!(moved(r#"orders_command_duration_seconds_count{command="create"}"#), 4.0);
    assert_eq!(moved("orders_delivery_lateness_seconds_count"), 3.0);
    // Placed, requested, decided, and approved-scheduled-delivered or cancelled: the log's growth.
    let events = daemon.json(["daemon", "status"])["events"].as_f64().expect("events");
    assert_eq!(moved("orders_events_appended_total"), events - before.get("orders_events"));
    // The store's states come from a sample that scrapes share for a second.
    let deadline = Instant::now() + Duration::from_secs(5);
    while scrape(&url).get("orders_events") != events {
        assert!(Instant::now() < deadline, "orders_events reaches {events}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let batches = moved("orders_writer_batch_commands_count");
    assert!(
        batches >= 1.0 && moved("orders_writer_batch_commands_sum") == 12.0,
        "4 + 4 + 3 + 1 commands in batches"
    );
    assert!(moved("orders_store_commit_duration_seconds_count") >= batches);
    assert_eq!(after.get(r#"orders_saga_open_steps{saga="payment"}"#), 0.0);
    assert_eq!(after.get(r#"orders_saga_open_steps{saga="delivery"}"#), 0.0);
    assert_eq!(after.get("orders_read_model_lag_events"), 0.0);

    // The same exposition through the socket.
    let text = daemon.ok(["metrics"]);
    let through_socket = Scrape::parse(&text);
    assert_eq!(
        through_socket.get(r#"orders_commands_total{command="create",outcome="ok"}"#),
        after.get(r#"orders_commands_total{command="create",outcome="ok"}"#)
    );
    assert!(text.contains("# TYPE orders_command_duration_seconds histogram"), "{text}");
}

#[test]
fn the_metrics_endpoint_serves_metrics_only() {
    // On every interface: the URL status gives is the loopback one, which works.
    let mut daemon = TestDaemon::start_with(&[("ORDERS_METRICS_LISTEN", "0.0.0.0:0")]);
    let url = metrics_url(&daemon);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert_eq!(scrape(&url).get("orders_ready"), 1.0);
    let base = url.trim_end_matches("/metrics");
    let agent = http();
    let post = agent.post(&url).send("x").expect("answered");
    assert_eq!(post.status(), 405, "POST /metrics");
    let other = agent.get(&format!("{base}/order/")).call().expect("answered");
    assert_eq!(other.status(), 404, "no other route yet");
    let head = agent.head(&url).call().expect("answered");
    assert_eq!(head.status(), 200, "HEAD /metrics");
    // The port is closed with the daemon.
    assert!(daemon.signal("TERM").success());
    assert!(agent.get(&url).call().is_err(), "nothing listens once the daemon stopped");
}

#[test]
fn open_saga_steps_their_age_and_refused_connections_are_sampled() {
    let (daemon, url) = with_metrics(&[("ORDERS_DELIVERY_DELAY", "1h"), ("ORDERS_MAX_CONNECTIONS", "2")]);
    let first = daemon.create("carol", 2);
    daemon.create("carol", 4);
    daemon.wait_for_status(&first, "approved");
    std::thread::sleep(Duration::from_millis(1100));
    let scraped = scrape(&url);
    assert_eq!(scraped.get(r#"orders_saga_open_steps{saga="delivery"}"#), 2.0);
    let age = scraped.get(r#"orders_saga_oldest_open_step_age_seconds{saga="delivery"}"#);
    assert!((1.0..600.0).contains(&age), "the oldest delivery step is about a second old: {age}");
    assert_eq!(scraped.get("orders_delivery_overdue_seconds"), 0.0, "due in an hour");

    // Two connections held open fill the daemon; the third is turned away and counted.
    let held: Vec<RawClient> = (0..2).map(|_| RawClient::connect(&daemon.socket())).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while scrape(&url).get("orders_connections_open") < 2.0 {
        assert!(Instant::now() < deadline, "the held connections are counted open");
        std::thread::sleep(Duration::from_millis(20));
    }
    let refused = daemon.run(["show", &first]);
    assert_ne!(code(&refused), 0, "no room: {}", stderr(&refused));
    assert_eq!(scrape(&url).get(r#"orders_connections_refused_total{reason="limit"}"#), 1.0);
    drop(held);

    daemon.ok(["cancel", &first]);
    // Scrapes share a sample of the store for a second.
    let deadline = Instant::now() + Duration::from_secs(5);
    while scrape(&url).get(r#"orders_saga_open_steps{saga="delivery"}"#) != 1.0 {
        assert!(Instant::now() < deadline, "the cancelled order's delivery step is closed");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_metrics_address_in_use_or_malformed_is_refused_at_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = taken.local_addr().expect("address").to_string();
    let mut daemon = TestDaemon::stopped_with(&[("ORDERS_METRICS_LISTEN", &address)]);
    let refused = daemon.try_spawn().expect_err("the port is taken");
    assert!(
        refused.contains(&format!("cannot serve the metrics (--metrics-listen) on {address}")),
        "{refused}"
    );
    assert!(!daemon.socket().exists(), "nothing is left listening");

    for bad in ["localhost", "9464", "127.0.0.1:99999", "example.com:80"] {
        let output = daemon.run(["daemon", "run", "--metrics-listen", bad]);
        assert_eq!(code(&output), 2, "{bad}: {}", stderr(&output));
        assert!(stderr(&output).contains("give an IP address and a port"), "{bad}: {}", stderr(&output));
    }
}

#[test]
fn metrics_never_start_a_daemon() {
    let daemon = TestDaemon::stopped_with(&[]);
    let output = daemon.command_with_autostart().arg("metrics").output().expect("run orders");
    assert_eq!(code(&output), 5, "{}", stderr(&output));
    assert!(stderr(&output).contains("no daemon"), "{}", stderr(&output));
    assert!(!daemon.socket().exists(), "no daemon was started");
}

#[test]
fn a_starting_daemon_exposes_its_catch_up_as_read_model_lag() {
    let mut daemon = TestDaemon::start_with(&[("ORDERS_PAYMENT_DELAY", "1h")]);
    daemon.bulk_create(300, 3);
    assert!(daemon.signal("TERM").success());
    daemon
        .database()
        .execute_batch("DELETE FROM orders; UPDATE checkpoints SET position = 0")
        .expect("forget the read model");
    daemon.set_env("ORDERS_TEST_CATCH_UP_PAUSE_MS", Some("300"));
    daemon.set_env("ORDERS_METRICS_LISTEN", Some("127.0.0.1:0"));
    daemon.spawn_starting().expect("starts");
    let text = daemon.ok(["metrics"]);
    let scraped = Scrape::parse(&text);
    assert_eq!(scraped.get("orders_ready"), 0.0, "{text}");
    assert!(
        scraped.get("orders_read_model_lag_events") > 0.0,
        "a catch-up of 1,200 events, 100 per 300 ms: {text}"
    );
    for unknown in
        [r#"orders_saga_open_steps{saga="payment"}"#, "orders_events", "orders_delivery_overdue_seconds"]
    {
        assert!(!scraped.has(unknown), "{unknown} is not known while starting, so not shown: {text}");
    }
    // Over HTTP too, at the address the starting daemon's status names.
    let over_http = scrape(&metrics_url(&daemon));
    assert_eq!(over_http.get("orders_ready"), 0.0);
    assert_eq!(daemon.status_state(), "starting");
}

#[test]
fn the_metrics_endpoint_turns_away_a_crowd_and_a_client_that_trickles() {
    use std::io::{Read, Write};
    let (_daemon, url) = with_metrics(&[]);
    let address = url.trim_start_matches("http://").trim_end_matches("/metrics").to_owned();
    let crowd: Vec<std::net::TcpStream> =
        (0..64).map(|_| std::net::TcpStream::connect(&address).expect("connect")).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut one_more = std::net::TcpStream::connect(&address).expect("the kernel accepts it");
    one_more.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let _ = one_more.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut answer = Vec::new();
    let read = one_more.read_to_end(&mut answer);
    assert!(matches!(read, Ok(0)) || read.is_err(), "the 65th connection is closed unanswered: {answer:?}");
    drop(crowd);
    let refused = r#"orders_connections_refused_total{reason="http_limit"}"#;
    let deadline = Instant::now() + Duration::from_secs(10);
    while http().get(&url).call().map(|r| r.status().as_u16()).ok() != Some(200) {
        assert!(Instant::now() < deadline, "served again once the crowd left");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The 65th, and any of the polls above that came before the crowd's slots were free.
    let counted = scrape(&url).get(refused);
    assert!(counted >= 1.0, "the refusal is counted (not logged: anyone could fill the log): {counted}");

    // A request's head sent a byte at a time, never finished: dropped after 10 s.
    let mut trickle = std::net::TcpStream::connect(&address).expect("connect");
    trickle.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ").expect("part of a head");
    trickle.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = trickle.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(8) && waited < Duration::from_secs(15), "closed after {waited:?}");
    assert!(!String::from_utf8_lossy(&rest).contains("200 OK"), "{rest:?}");
}

#[test]
fn the_systemd_units_are_valid_and_name_the_default_socket() {
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/systemd");
    let socket = std::fs::read_to_string(units.join("orders.socket")).expect("orders.socket");
    let service = std::fs::read_to_string(units.join("orders.service")).expect("orders.service");
    for line in ["ListenStream=%t/orders/orders.sock", "SocketMode=0600", "DirectoryMode=0700"] {
        assert!(socket.lines().any(|l| l == line), "orders.socket: {line}");
    }
    for line in ["Type=notify", "ExecStart=%h/.cargo/bin/orders daemon run"] {
        assert!(service.lines().any(|l| l == line), "orders.service: {line}");
    }
    const VERIFY: &str = "/usr/bin/systemd-analyze";
    if !Path::new(VERIFY).exists() {
        assert!(std::env::var_os("CI").is_none(), "CI must have {VERIFY} (the systemd package)");
        eprintln!("skipped the verification: {VERIFY} is not installed");
        return;
    }
    // systemd's own check, with the binary where this build put it.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("orders.socket"), &socket).expect("copy");
    let service = service.replace("%h/.cargo/bin/orders", ORDERS);
    std::fs::write(dir.path().join("orders.service"), service).expect("copy");
    let output = Command::new(VERIFY)
        .args(["verify", "--man=no", "./orders.socket", "./orders.service"])
        .current_dir(dir.path())
        .output()
        .expect("run systemd-analyze");
    let said =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
}

/// `systemd-socket-activate`, from the distribution's systemd package; `None` (the test then
/// says it skipped) where it is missing, except under CI, which installs it.
fn socket_activate() -> Option<&'static str> {
    const TOOL: &str = "/usr/bin/systemd-socket-activate";
    if Path::new(TOOL).exists() {
        return Some(TOOL);
    }
    assert!(std::env::var_os("CI").is_none(), "CI must have {TOOL} (the systemd package)");
    eprintln!("skipped: {TOOL} is not installed (Debian's systemd package)");
    None
}

/// The daemon behind `systemd-socket-activate` listening on `listen`: it binds the socket now
/// and starts the daemon, passing the socket, at the first connection.
fn activated(tool: &str, daemon: &TestDaemon, listen: &Path) -> Child {
    let mut command = Command::new(tool);
    command.arg("--listen").arg(listen);
    for variable in daemon.daemon_environment() {
        command.arg("--setenv").arg(variable);
    }
    let log = std::fs::File::create(daemon.dir().join("activate.stderr")).expect("stderr file");
    let child = command
        .args([ORDERS, "daemon", "run"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("run systemd-socket-activate");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !listen.exists() {
        assert!(Instant::now() < deadline, "systemd-socket-activate never listened");
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

#[test]
fn a_socket_passed_by_the_service_manager_is_served_and_never_removed() {
    let Some(tool) = socket_activate() else { return };
    let daemon = TestDaemon::stopped_with(&[]);
    let socket = daemon.socket();
    let mut manager = activated(tool, &daemon, &socket);
    let inode = std::fs::metadata(&socket).expect("the socket").ino();

    // The first client's connection starts the daemon (autostart off: the socket answers).
    let id = daemon.create("dave", 2);
    daemon.wait_for_status(&id, "delivered");
    let status = daemon.json(["daemon", "status"]);
    assert_eq!(status["socket_activated"], true, "{status}");
    assert!(daemon.ok(["daemon", "status"]).contains("the socket was passed by the service manager"));
    // Settings given to `daemon start` cannot reach a daemon systemd started: said, not swallowed.
    let start = daemon.run(["daemon", "start", "--delivery-delay", "1s"]);
    assert_eq!(code(&start), 0, "{}", stderr(&start));
    assert!(stderr(&start).contains("settings given here do not apply"), "{}", stderr(&start));
    assert!(daemon.log().contains("serving the socket passed by the service manager"), "{}", daemon.log());

    daemon.ok(["daemon", "stop"]);
    let exited = wait_timeout(&mut manager, Duration::from_secs(10)).expect("the daemon stops");
    assert!(exited.success(), "{exited}");
    let after = std::fs::metadata(&socket).expect("the socket is still there: it was given, not made");
    assert_eq!(after.ino(), inode, "the same socket, neither removed nor replaced");
}

#[test]
fn a_passed_socket_at_another_path_is_refused_naming_both() {
    let Some(tool) = socket_activate() else { return };
    let daemon = TestDaemon::stopped_with(&[]);
    let elsewhere = daemon.dir().join("elsewhere.sock");
    let mut manager = activated(tool, &daemon, &elsewhere);
    // Knock: the manager starts the daemon, which refuses the socket and exits. The socket's
    // file appears when it is bound, a moment before it listens.
    let deadline = Instant::now() + Duration::from_secs(5);
    let _knock = loop {
        match std::os::unix::net::UnixStream::connect(&elsewhere) {
            Ok(knock) => break knock,
            Err(error)
                if error.kind() == std::io::ErrorKind::ConnectionRefused && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(error) => panic!("the manager listens: {error}"),
        }
    };
    let exited = wait_timeout(&mut manager, Duration::from_secs(10)).expect("the daemon exits");
    assert!(!exited.success());
    let said = std::fs::read_to_string(daemon.dir().join("activate.stderr")).expect("stderr");
    assert!(
        said.contains("passed the socket") && said.contains("elsewhere.sock") && said.contains("orders.sock"),
        "{said}"
    );
    assert!(elsewhere.exists(), "the manager's socket is left alone");
}

/// What a daemon told the service manager on `socket`, message by message, until `until`
/// arrives or 20 s pass.
fn notifications(socket: &UnixDatagram, until: &str) -> Vec<String> {
    socket.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut told = Vec::new();
    let mut buffer = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(read) = socket.recv(&mut buffer) {
            let message = String::from_utf8_lossy(&buffer[..read]).into_owned();
            let done = message.lines().any(|line| line == until);
            told.push(message);
            if done {
                return told;
            }
        }
    }
    panic!("never told {until}: {told:?}");
}

#[test]
fn the_service_manager_is_told_starting_ready_and_stopping() {
    let mut daemon = TestDaemon::start_with(&[("ORDERS_PAYMENT_DELAY", "1h")]);
    daemon.bulk_create(400, 4);
    assert!(daemon.signal("TERM").success());
    daemon
        .database()
        .execute_batch("DELETE FROM orders; UPDATE checkpoints SET position = 0")
        .expect("forget the read model");
    // A catch-up of a few seconds: 4 chunks of 100 events or so, 1 s apart.
    daemon.set_env("ORDERS_TEST_CATCH_UP_PAUSE_MS", Some("1000"));
    let path = daemon.dir().join("notify.sock");
    let manager = UnixDatagram::bind(&path).expect("the manager's socket");
    daemon.set_env("NOTIFY_SOCKET", Some(path.to_str().expect("utf-8")));
    daemon.spawn();
    let told = notifications(&manager, "READY=1");
    let extended: Vec<&String> = told.iter().filter(|m| m.contains("EXTEND_TIMEOUT_USEC=30000000")).collect();
    assert!(extended.len() >= 2, "more time asked for while catching up, again and again: {told:?}");
    assert!(extended.iter().any(|m| m.contains("STATUS=starting: read model catching up")), "{told:?}");
    assert!(told.last().expect("ready").contains("STATUS=ready"), "{told:?}");
    assert_eq!(daemon.status_state(), "ready");
    assert!(daemon.signal("TERM").success());
    let stopping = notifications(&manager, "STOPPING=1");
    assert!(
        stopping.iter().all(|m| !m.contains("READY=1") && !m.contains("EXTEND")),
        "nothing out of order: {stopping:?}"
    );
}

#[test]
fn a_service_manager_that_never_reads_does_not_stall_the_daemon() {
    let mut daemon = TestDaemon::stopped_with(&[]);
    let path = daemon.dir().join("deaf.sock");
    let deaf = UnixDatagram::bind(&path).expect("the manager's socket");
    // Its queue is full before the daemon starts: every send of the daemon would block.
    let filler = UnixDatagram::unbound().expect("a socket");
    filler.set_nonblocking(true).expect("nonblocking");
    while filler.send_to(b"FILLER=1", &path).is_ok() {}
    daemon.set_env("NOTIFY_SOCKET", Some(path.to_str().expect("utf-8")));
    daemon.spawn();
    let id = daemon.create("erin", 2);
    daemon.wait_for_status(&id, "delivered");
    let started = Instant::now();
    assert!(daemon.signal("TERM").success(), "stops on SIGTERM");
    assert!(started.elapsed() < Duration::from_secs(5), "stopped in {:?}", started.elapsed());
    drop(deaf);
}

#[test]
fn a_daemon_started_on_demand_ignores_a_service_manager_s_variables() {
    let daemon = TestDaemon::stopped_with(&[]);
    let path = daemon.dir().join("notify.sock");
    let manager = UnixDatagram::bind(&path).expect("a manager's socket");
    // A client run from a unit's script, say: its manager's variables are not the daemon's.
    let output = daemon
        .command_with_autostart()
        .args(["create", "--user", "fay", "--total", "2"])
        .env("NOTIFY_SOCKET", &path)
        .env("LISTEN_FDS", "1")
        .env("LISTEN_PID", "1")
        .output()
        .expect("run orders");
    assert_eq!(code(&output), 0, "autostart works: {}", stderr(&output));
    manager.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
    let mut buffer = [0u8; 512];
    assert!(manager.recv(&mut buffer).is_err(), "nothing told to another service's manager");
    assert_eq!(daemon.json(["daemon", "status"])["socket_activated"], serde_json::Value::Null);

    // `LISTEN_FDS` without `LISTEN_PID` is not for this process (sd_listen_fds(3)).
    let mut foreground = TestDaemon::stopped_with(&[("LISTEN_FDS", "1")]);
    foreground.spawn();
    assert!(foreground.socket().exists(), "it bound its own socket");
    let _ = daemon.run(["daemon", "stop"]);
}
