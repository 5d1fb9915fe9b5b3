//! A real daemon on a temporary directory, and the real `orders` binary pointed at it.
//!
//! Every test gets its own data directory, socket and log, so tests run in parallel without
//! seeing each other. The daemon is stopped (SIGKILL) when the fixture is dropped.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use orders_shared::PROTOCOL_VERSION;
use serde_json::Value;
use tempfile::TempDir;

pub const ORDERS: &str = env!("CARGO_BIN_EXE_orders");

/// The delivery delay of test daemons: short, so tests are fast.
pub const TEST_DELIVERY_DELAY: &str = "200ms";

/// A fresh database of the test process's private PostgreSQL cluster. Where PostgreSQL is not
/// installed (outside CI, which fails instead), the whole suite on PostgreSQL is skipped: the
/// process ends, successfully, once the cluster has said why.
fn postgres_database() -> testpg::Database {
    match testpg::cluster() {
        Some(cluster) => cluster.fresh_database(),
        None => {
            eprintln!("the end-to-end suite on PostgreSQL was skipped");
            std::process::exit(0)
        }
    }
}

/// Whether this suite runs on SQLite: a test about SQLite's own file returns early on
/// PostgreSQL, saying so.
pub fn sqlite_only(what: &str) -> bool {
    if crate::ON_POSTGRES {
        eprintln!("not on PostgreSQL: {what}");
    }
    !crate::ON_POSTGRES
}

/// The database a daemon of the suite on PostgreSQL keeps its store in.
enum Postgres {
    /// A fresh database of its own, dropped with the fixture.
    Own(testpg::Database),
    /// Another fixture's database, which several daemons serve at once (issue 20): left to the
    /// fixture that made it. (Made in the suite on PostgreSQL alone.)
    #[allow(dead_code)]
    Joined { name: String, url: String },
}

impl Postgres {
    fn url(&self) -> &str {
        match self {
            Postgres::Own(database) => &database.url,
            Postgres::Joined { url, .. } => url,
        }
    }

    fn name(&self) -> &str {
        match self {
            Postgres::Own(database) => &database.name,
            Postgres::Joined { name, .. } => name,
        }
    }
}

pub struct TestDaemon {
    dir: TempDir,
    child: Option<Child>,
    /// This daemon's PostgreSQL database, in the suite that runs on PostgreSQL (`e2e_postgres`);
    /// `None`: the data directory's SQLite file.
    postgres: Option<Postgres>,
    /// Environment for the daemon process beyond the test defaults; `None` removes a variable.
    daemon_env: Vec<(String, Option<String>)>,
}

impl TestDaemon {
    /// A running daemon with test settings.
    pub fn start() -> TestDaemon {
        Self::start_with(&[])
    }

    /// A running daemon with extra environment, e.g. `("ORDERS_DELIVERY_DELAY", "1s")`.
    pub fn start_with(env: &[(&str, &str)]) -> TestDaemon {
        let mut daemon = Self::stopped_with(env);
        daemon.spawn();
        daemon
    }

    /// The directories of a daemon, none running yet.
    pub fn stopped_with(env: &[(&str, &str)]) -> TestDaemon {
        Self::stopped_on(crate::ON_POSTGRES.then(|| Postgres::Own(postgres_database())), env)
    }

    fn stopped_on(postgres: Option<Postgres>, env: &[(&str, &str)]) -> TestDaemon {
        let dir = tempfile::Builder::new().prefix("orders-e2e").tempdir().expect("tempdir");
        // It holds the socket: the daemon and the client refuse a directory open to others.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod the tempdir");
        TestDaemon {
            dir,
            child: None,
            postgres,
            daemon_env: env.iter().map(|(k, v)| (k.to_string(), Some(v.to_string()))).collect(),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The URL of this daemon's PostgreSQL database, when the suite runs on PostgreSQL.
    pub fn postgres(&self) -> Option<&str> {
        self.postgres.as_ref().map(Postgres::url)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir().join("orders.sock")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir().join("data")
    }

    /// The store as requests name it: the canonical data directory.
    pub fn store(&self) -> String {
        let data_dir = self.data_dir();
        std::fs::canonicalize(&data_dir).unwrap_or(data_dir).display().to_string()
    }

    /// A request of the current protocol for this daemon's store: `fields` with `v` and `store`.
    pub fn request(&self, fields: Value) -> Value {
        request(&self.store(), fields)
    }

    /// A raw request line: `{"v":..,"store":..,` followed by `rest` (the rest of the object, as is).
    pub fn raw_line(&self, rest: &str) -> String {
        format!("{{\"v\":{PROTOCOL_VERSION},\"store\":{},{rest}", Value::from(self.store()))
    }

    pub fn log_file(&self) -> PathBuf {
        self.dir().join("daemon.log")
    }

    /// Environment shared by the daemon and the clients: everything points into the tempdir.
    fn apply_env(&self, command: &mut Command) {
        command
            .env_remove("ORDERS_NO_AUTOSTART")
            .env("HOME", self.dir())
            .env("XDG_DATA_HOME", self.dir().join("xdg-data"))
            .env("XDG_STATE_HOME", self.dir().join("xdg-state"))
            .env_remove("XDG_RUNTIME_DIR")
            .env("ORDERS_DATA_DIR", self.data_dir())
            .env("ORDERS_SOCKET", self.socket())
            .env("ORDERS_LOG_FILE", self.log_file())
            .env("ORDERS_DELIVERY_DELAY", TEST_DELIVERY_DELAY)
            .env("NO_COLOR", "1");
        match &self.postgres {
            Some(database) => command.env("ORDERS_STORE", database.url()),
            None => command.env_remove("ORDERS_STORE"),
        };
        for (key, value) in &self.daemon_env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
    }

    /// The environment a daemon of this fixture runs with, as `NAME=VALUE` (what a service
    /// manager is told to pass on).
    pub fn daemon_environment(&self) -> Vec<String> {
        let mut command = Command::new(ORDERS);
        self.apply_env(&mut command);
        command
            .get_envs()
            .filter_map(|(name, value)| Some(format!("{}={}", name.to_str()?, value?.to_str()?)))
            .collect()
    }

    /// Changes the daemon's environment for its next start (`None` removes the variable).
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.daemon_env.retain(|(k, _)| k != key);
        self.daemon_env.push((key.to_owned(), value.map(str::to_owned)));
    }

    /// The `orders` binary aimed at this daemon, with autostart off so that a test never
    /// silently talks to a daemon it did not mean to start.
    pub fn command(&self) -> Command {
        let mut command = Command::new(ORDERS);
        self.apply_env(&mut command);
        command.env("ORDERS_NO_AUTOSTART", "1");
        command
    }

    /// Like [`command`](Self::command) but free to start a daemon on demand.
    pub fn command_with_autostart(&self) -> Command {
        let mut command = Command::new(ORDERS);
        self.apply_env(&mut command);
        command
    }

    /// Starts `orders daemon run` in the foreground of a child process and waits until it is ready.
    pub fn spawn(&mut self) {
        if let Err(stderr) = self.try_spawn() {
            panic!("the daemon exited at start:\n{stderr}");
        }
    }

    /// Like [`spawn`](Self::spawn), but a daemon that exits at start is no panic: its stderr.
    pub fn try_spawn(&mut self) -> Result<(), String> {
        self.spawn_starting()?;
        self.wait_until_ready()
    }

    /// Starts `orders daemon run` and returns as soon as its socket answers: it may still be
    /// starting (catching up its read model); its stderr if it exits first.
    pub fn spawn_starting(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "the daemon runs already");
        let mut command = Command::new(ORDERS);
        self.apply_env(&mut command);
        let stderr = std::fs::File::create(self.dir().join("daemon.stderr")).expect("stderr file");
        let child = command
            .args(["daemon", "run"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn the daemon");
        self.child = Some(child);
        self.wait_until_answering()
    }

    /// Waits until the daemon says it is ready (a daemon answers while it starts); its stderr if
    /// it exits first.
    fn wait_until_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().expect("try_wait")) {
                self.child = None;
                return Err(format!("({status}) {}", self.stderr()));
            }
            if self.status_state() == "ready" {
                return Ok(());
            }
            assert!(Instant::now() < deadline, "the daemon never got ready:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `starting` or `ready`, as the daemon's own status says; `gone` when nothing answers (a
    /// daemon that refuses its store at start hangs up on the way out: no reply is no panic).
    pub fn status_state(&self) -> String {
        let Ok(stream) = UnixStream::connect(self.socket()) else { return "gone".to_owned() };
        let mut client = RawClient::from_stream(stream);
        let line = format!("{}\n", self.request(serde_json::json!({"cmd": "status"})));
        let reply = match client.try_send(line.as_bytes()).ok().and_then(|()| client.reply()) {
            Some(reply) => reply,
            None => return "gone".to_owned(),
        };
        if reply["ok"] != true {
            return "gone".to_owned();
        }
        reply["data"]["state"].as_str().unwrap_or("ready").to_owned()
    }

    fn wait_until_answering(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if UnixStream::connect(self.socket()).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().expect("try_wait")) {
                self.child = None;
                return Err(format!("({status}) {}", self.stderr()));
            }
            assert!(Instant::now() < deadline, "the daemon did not answer:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir().join("daemon.stderr")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("a running daemon").id()
    }

    /// Sends a signal and waits for the daemon to exit.
    pub fn signal(&mut self, signal: &str) -> ExitStatus {
        let mut child = self.child.take().expect("a running daemon");
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} failed");
        wait_timeout(&mut child, Duration::from_secs(30)).expect("the daemon exits")
    }

    /// `kill -9`: no chance to flush or clean up anything.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("a running daemon");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    /// Forgets the child without stopping it (when something else stopped it).
    pub fn reap(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("a daemon child");
        wait_timeout(&mut child, Duration::from_secs(30)).expect("the daemon exits")
    }

    /// Runs `orders <args>` and returns its whole output.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command().args(args).output().expect("run orders")
    }

    /// Runs `orders <args>`, requires success and returns stdout.
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let output = self.run(&args);
        assert!(
            output.status.success(),
            "orders {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8 stdout")
    }

    /// Runs `orders <args> --json` and parses stdout.
    pub fn json<I, S>(&self, args: I) -> Value
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        args.push("--json".into());
        let stdout = self.ok(&args);
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("orders {args:?}: not JSON ({e}): {stdout}"))
    }

    /// Places an order and returns its id.
    pub fn create(&self, user: &str, total: i64) -> String {
        let stdout = self.ok(["create", "--user", user, "--total", &total.to_string()]);
        stdout.trim().to_owned()
    }
}

// Several daemons on one database: the suite on PostgreSQL alone; the one on SQLite (`main.rs`)
// never calls these.
#[allow(dead_code)]
impl TestDaemon {
    /// Another running daemon on this one's PostgreSQL database (issue 20: several daemons, one
    /// store), with a data directory, socket and log of its own and the test settings.
    pub fn join(&self) -> TestDaemon {
        self.join_with(&[])
    }

    /// Like [`join`](Self::join), with extra environment for the new daemon (this one's own
    /// extra environment is not passed on: only its database).
    pub fn join_with(&self, env: &[(&str, &str)]) -> TestDaemon {
        let mut daemon = self.joined_stopped(env);
        daemon.spawn();
        daemon
    }

    /// The directories of a daemon that will serve this one's database, none running yet.
    pub fn joined_stopped(&self, env: &[(&str, &str)]) -> TestDaemon {
        // The database this daemon is given: a test may have pointed it at another one
        // (`ORDERS_STORE` set on the fixture, such as a cluster of the test's own).
        let url = match self.daemon_env.iter().find(|(key, _)| key == "ORDERS_STORE") {
            Some((_, Some(url))) => url.clone(),
            _ => self.postgres().expect("a daemon on PostgreSQL to join").to_owned(),
        };
        let name = url.rsplit('/').next().and_then(|tail| tail.split('?').next()).expect("a database");
        let name = name.to_owned();
        Self::stopped_on(Some(Postgres::Joined { name, url }), env)
    }

    /// Sends a signal and returns at once, the daemon still this fixture's: `STOP` freezes it as
    /// a host that vanished with its connections open would, `CONT` lets it go on.
    pub fn send_signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} failed");
    }
}

impl TestDaemon {
    /// Waits until an order has a status, or panics after a while.
    pub fn wait_for_status(&self, id: &str, status: &str) -> Value {
        self.wait_for_status_in(id, &[status])
    }

    /// Waits until an order has one of these statuses, or panics after a while.
    pub fn wait_for_status_in(&self, id: &str, statuses: &[&str]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let order = self.json(["show", id]);
            if statuses.iter().any(|status| order["status"] == *status) {
                return order;
            }
            assert!(Instant::now() < deadline, "order {id} never became {statuses:?}: {order}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// When an order's delivery is due, as its `DeliveryScheduled` event says.
    pub fn due_at(&self, id: &str) -> jiff::Timestamp {
        self.json(["history", id])
            .as_array()
            .and_then(|events| events.iter().find(|e| e["type"] == "DeliveryScheduled"))
            .and_then(|e| e["data"]["due_at"].as_str())
            .expect("a due time")
            .parse()
            .expect("RFC 3339")
    }

    /// The types of an order's events, in log order.
    pub fn history_types(&self, id: &str) -> Vec<String> {
        let history = self.json(["history", id]);
        history
            .as_array()
            .expect("an array")
            .iter()
            .map(|e| e["type"].as_str().expect("type").to_owned())
            .collect()
    }
}

impl TestDaemon {
    /// Places many orders fast, over several pipelined connections; returns their ids.
    /// Totals alternate even and odd, so both payment outcomes happen.
    pub fn bulk_create(&self, orders: usize, users: usize) -> Vec<String> {
        const CONNECTIONS: usize = 16;
        let socket = self.socket();
        let store = self.store();
        let workers: Vec<_> = (0..CONNECTIONS)
            .map(|worker| {
                let socket = socket.clone();
                let store = store.clone();
                std::thread::spawn(move || {
                    let mut client = RawClient::connect(&socket);
                    let mine: Vec<usize> = (worker..orders).step_by(CONNECTIONS).collect();
                    let mut lines = String::new();
                    for n in &mine {
                        let request = serde_json::json!({
                            "v": PROTOCOL_VERSION, "store": store, "cmd": "create",
                            "user": format!("user{}", n % users), "total": 1 + n % 7
                        });
                        lines.push_str(&request.to_string());
                        lines.push('\n');
                    }
                    client.send_raw(lines.as_bytes());
                    mine.iter()
                        .map(|_| {
                            let reply = client.reply().expect("a reply");
                            assert_eq!(reply["ok"], true, "{reply}");
                            reply["data"]["id"].as_str().expect("id").to_owned()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|worker| worker.join().expect("create worker")).collect()
    }

    /// Waits until the log stops growing (every saga step done), or panics after a while.
    pub fn wait_until_quiet(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = -1;
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let events = self.json(["daemon", "status"])["events"].as_i64().expect("events");
            let orders = self.json(["list", "--all"]);
            let busy = orders
                .as_array()
                .expect("array")
                .iter()
                .any(|order| order["status"] == "pending" || order["status"] == "approved");
            if events == last && !busy {
                return;
            }
            assert!(Instant::now() < deadline, "the sagas never finished");
            last = events;
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    /// A direct connection to the database, behind the daemon's back (to damage it on purpose).
    /// Runs SQL on the daemon's store behind its back, whichever it is (a SQLite file, or the
    /// suite's PostgreSQL database): for SQL both speak.
    pub fn execute(&self, sql: &str) {
        match &self.postgres {
            Some(database) => {
                testpg::cluster().expect("the suite's cluster").sql(database.name(), sql);
            }
            None => self.database().execute_batch(sql).expect("SQL on the store"),
        }
    }

    pub fn database(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.data_dir().join("orders.db")).expect("open the database");
        conn.busy_timeout(Duration::from_secs(10)).expect("busy timeout");
        conn
    }
}

/// One connection speaking the wire protocol directly.
pub struct RawClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl RawClient {
    pub fn connect(socket: &Path) -> RawClient {
        Self::from_stream(UnixStream::connect(socket).expect("connect to the daemon"))
    }

    pub fn from_stream(stream: UnixStream) -> RawClient {
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        RawClient { reader: BufReader::new(stream.try_clone().expect("clone")), writer: stream }
    }

    /// Sends raw bytes (a line, or anything else).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.try_send(bytes).expect("send");
    }

    /// Sends raw bytes; the daemon may have closed the connection.
    pub fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// Reads one reply line; `None` when the daemon closed the connection.
    pub fn reply(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {line}")),
            ),
        }
    }

    /// Sends one request object and reads its reply.
    pub fn call(&mut self, request: Value) -> Value {
        let mut line = request.to_string();
        line.push('\n');
        self.send_raw(line.as_bytes());
        self.reply().expect("a reply")
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A daemon a client started on demand is nobody's child: find it by its lock.
        if let Some(pid) = orders_daemon::lock::holder(&self.data_dir()).and_then(|h| h.pid)
            && orders_daemon::lock::verify_daemon(pid, &self.data_dir()).is_ok()
        {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    }
}

pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A request of the current protocol for `store`: `fields` with `v` and `store`.
pub fn request(store: &str, fields: Value) -> Value {
    let Value::Object(mut fields) = fields else { panic!("a request is an object") };
    fields.insert("v".into(), PROTOCOL_VERSION.into());
    fields.insert("store".into(), store.into());
    Value::Object(fields)
}

/// The exit code of a finished command.
pub fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A tmpfs mounted for a test (a small disk, or one made read-only), unmounted on drop. Needs
/// the right to mount (root, as in CI); `None` otherwise, and the test says it skipped.
pub struct Mount {
    path: PathBuf,
}

impl Mount {
    pub fn tmpfs(path: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(path).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(path)
            .stderr(Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| Mount { path: path.to_owned() })
    }

    /// `mount -o remount,<options>`, e.g. `ro` or `rw`.
    pub fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.path)
            .status()
            .expect("mount");
        assert!(status.success(), "remount {options} failed");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Resident and peak resident memory of a process, in KiB (`VmRSS`, `VmHWM`).
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
