//! One PostgreSQL server in a temporary directory: making it, starting and stopping it, running
//! `psql` against it, and the watchdog that stops it and removes the directory once the test
//! process is gone.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::install::{Install, Unavailable};

/// The settings appended to `postgresql.conf`, besides the port, the paths and durability.
/// `synchronous_commit` stays on so that a commit is in the server when it returns. Many tests
/// run at once and each daemon opens several connections, hence `max_connections`.
const SETTINGS: &str = "\
listen_addresses = '127.0.0.1'
max_connections = 300
synchronous_commit = on
ssl = on
";

/// Durability for tests, which are about correctness across daemon crashes, not machine
/// crashes: no fsync (much faster on small disks). Every test process has a cluster of its own,
/// hence modest buffers.
const FOR_TESTS: &str = "\
shared_buffers = 32MB
fsync = off
full_page_writes = off
";

/// Durability as a production server has it ([`Options::durable`](crate::Options::durable)):
/// a commit is on disk when it returns. PostgreSQL's own defaults, written out so that the
/// benchmark's figures say what they were measured with.
const DURABLE: &str = "\
shared_buffers = 128MB
fsync = on
full_page_writes = on
wal_sync_method = fdatasync
";

/// How often a port is drawn again when another process took it between our check and the
/// server's bind.
const PORT_ATTEMPTS: usize = 5;

#[derive(Clone, Debug)]
pub(crate) struct Server {
    pub(crate) install: Install,
    /// The cluster's directory: `data/` (the cluster), `s/` (the Unix socket), `tls/` (the
    /// certificates) and `log` (the server's log).
    pub(crate) dir: PathBuf,
    pub(crate) port: u16,
}

impl Server {
    /// Makes and starts a server in a new directory, with a watchdog that stops it and removes
    /// the directory when this process is gone (whatever happens after this returns, including
    /// a failed start: the directory is then left for the watchdog).
    pub(crate) fn start_new(install: Install, durable: bool) -> Result<(Server, Child), Unavailable> {
        let failed = |what: &str, e: std::io::Error| Unavailable::Failed(format!("{what}: {e}"));
        // In /tmp rather than $TMPDIR: the socket's path must stay short (a Unix socket path has
        // 107 bytes at most), and the postgres user must be able to reach it.
        let dir = tempfile::Builder::new()
            .prefix("testpg.")
            .tempdir_in("/tmp")
            .map_err(|e| failed("cannot create the cluster's directory in /tmp", e))?
            .keep();
        let watchdog = match spawn_watchdog(&install, &dir) {
            Ok(watchdog) => watchdog,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(failed("cannot start the watchdog that stops the cluster at exit", e));
            }
        };
        let mut server = Server { install, dir, port: free_port().map_err(|e| failed("no free port", e))? };
        server.make(durable).map_err(Unavailable::Failed)?;
        server.first_start().map_err(Unavailable::Failed)?;
        Ok((server, watchdog))
    }

    /// `postgres://postgres@<socket directory, percent-encoded>:<port>/<database>`.
    pub(crate) fn url(&self, database: &str) -> String {
        let host = percent_encoded(&self.socket_dir().to_string_lossy());
        format!("postgres://postgres@{host}:{}/{}", self.port, percent_encoded(database))
    }

    pub(crate) fn socket_dir(&self) -> PathBuf {
        self.dir.join("s")
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub(crate) fn tls_dir(&self) -> PathBuf {
        self.dir.join("tls")
    }

    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// The certificates, the socket directory and an initialised cluster, durable or not.
    fn make(&self, durable: bool) -> Result<(), String> {
        fn io(what: &str) -> impl Fn(std::io::Error) -> String + '_ {
            move |e| format!("{what}: {e}")
        }
        for dir in [self.socket_dir(), self.tls_dir()] {
            std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let tls = self.tls_dir();
        crate::tls::make_certificates(&tls)?;
        if let Some((uid, gid)) = self.install.server_user {
            let server_files = [tls.join("server.crt"), tls.join("server.key")];
            for path in [self.dir.clone(), self.socket_dir(), tls.clone()].iter().chain(&server_files) {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .map_err(io("cannot give the cluster's files to the postgres user"))?;
            }
        }
        let output = self
            .install
            .server_program("initdb", &self.dir)
            .arg("-D")
            .arg(self.data_dir())
            .args(["--auth=trust", "--username=postgres", "--encoding=UTF8", "--locale=C", "--no-sync"])
            .output()
            .map_err(io("cannot run initdb"))?;
        if !output.status.success() {
            return Err(format!("initdb failed: {}", said(&output)));
        }
        let durability = if durable { DURABLE } else { FOR_TESTS };
        let settings = format!(
            "\n# testpg\n{SETTINGS}{durability}unix_socket_directories = {}\nssl_cert_file = {}\nssl_key_file = {}\n",
            quoted(&self.socket_dir()),
            quoted(&tls.join("server.crt")),
            quoted(&tls.join("server.key")),
        );
        self.append_to_conf(&settings)
    }

    /// Starts the server for the first time: on a port taken meanwhile by another process, tries
    /// again on another.
    fn first_start(&mut self) -> Result<(), String> {
        let mut attempts = 1;
        loop {
            let before = self.log().len();
            match self.start() {
                Err(_) if attempts < PORT_ATTEMPTS && self.log().get(before..).is_some_and(port_taken) => {
                    attempts += 1;
                    self.port = free_port().map_err(|e| format!("no free port: {e}"))?;
                }
                result => return result,
            }
        }
    }

    fn append_to_conf(&self, text: &str) -> Result<(), String> {
        let conf = self.data_dir().join("postgresql.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(|e| format!("cannot open {}: {e}", conf.display()))?;
        file.write_all(text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", conf.display()))
    }

    /// `pg_ctl start`, waiting until the server accepts connections.
    pub(crate) fn start(&self) -> Result<(), String> {
        let output = self
            .pg_ctl()
            .arg("-l")
            .arg(self.log_path())
            .args(["-o", &format!("-p {}", self.port), "start"])
            .output()
            .map_err(|e| format!("cannot run pg_ctl: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!("pg_ctl start failed: {}\nthe server's log:\n{}", said(&output), self.log()))
        }
    }

    /// `pg_ctl stop` with the given mode: `fast` (clients are disconnected, the server shuts
    /// down cleanly) or `immediate` (as if it crashed; the next start recovers).
    pub(crate) fn stop(&self, mode: &str) -> Result<(), String> {
        let output = self
            .pg_ctl()
            .args(["-m", mode, "stop"])
            .output()
            .map_err(|e| format!("cannot run pg_ctl: {e}"))?;
        if output.status.success() { Ok(()) } else { Err(format!("pg_ctl stop failed: {}", said(&output))) }
    }

    fn pg_ctl(&self) -> Command {
        let mut command = self.install.server_program("pg_ctl", &self.dir);
        command.arg("-D").arg(self.data_dir()).args(["-w", "-t", "60"]).stdin(Stdio::null());
        command
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read(self.log_path())
            .map(|log| String::from_utf8_lossy(&log).into_owned())
            .unwrap_or_default()
    }

    /// Runs `sql` with `psql` against `url`, statement by statement (so that `CREATE
    /// DATABASE` can be among them), stopping at the first error; returns the rows printed
    /// unaligned (`a|b` lines), without the last newline.
    pub(crate) fn sql(&self, url: &str, sql: &str) -> Result<String, String> {
        let mut child = self
            .install
            .program("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-", "-d", url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        let mut stdin = child.stdin.take().expect("psql's stdin is piped");
        // Written from another thread: psql may fill its output pipe before it has read all.
        let output = std::thread::scope(|scope| {
            scope.spawn(move || stdin.write_all(sql.as_bytes()));
            child.wait_with_output()
        })
        .map_err(|e| format!("psql: {e}"))?;
        if output.status.success() {
            let stdout = String::from_utf8_lossy(&output.stdout);
            Ok(stdout.strip_suffix('\n').unwrap_or(&stdout).to_owned())
        } else {
            Err(format!("psql failed on {sql:?}: {}", said(&output)))
        }
    }
}

/// The watchdog: a shell that polls this process every half second and, once it is gone,
/// stops the server (`immediate`: nobody is left to care about a clean shutdown) and removes
/// its directory. A static is never dropped, and a test process may end by a panic, a signal
/// or SIGKILL: only a process outside it can clean up in every case. It runs in a process group
/// of its own and ignores SIGHUP and SIGINT, so that Ctrl-C on `cargo test` reaches the test
/// process but not the watchdog; its output goes nowhere, so that it holds no pipe of the
/// caller's open (a `cargo test | tee` would otherwise wait for it).
///
/// A process that exited but was not reaped yet (a zombie: orphaned test processes wait for an
/// init that may reap only now and then) counts as gone. A test process killed while `pg_ctl
/// start` ran can leave a server starting after the watchdog stopped nothing and removed the
/// directory: PostgreSQL checks its lock file every minute and shuts down when it is gone.
fn spawn_watchdog(install: &Install, dir: &Path) -> std::io::Result<Child> {
    const SCRIPT: &str = r#"trap '' HUP INT
test=$1 dir=$2
shift 2
gone() { ! kill -0 "$test" 2>/dev/null || [ "$(sed 's/.*) //' "/proc/$test/stat" 2>/dev/null | cut -c1)" = Z ]; }
until gone; do sleep 0.5; done
"$@" -D "$dir/data" -m immediate -w stop
rm -rf "$dir"
"#;
    Command::new("sh")
        .args(["-c", SCRIPT, "testpg-watchdog", &std::process::id().to_string()])
        .arg(dir)
        .args(install.server_words("pg_ctl"))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
}

/// A port nobody listens on now: bound on loopback and released at once. Another process
/// may take it before the server binds it; the first start then draws again.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn port_taken(log: &str) -> bool {
    log.contains("could not bind") && log.contains("Address already in use")
}

/// A path as a `postgresql.conf` string.
fn quoted(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "''"))
}

fn said(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
        .trim()
        .to_owned()
}

/// Every byte outside the URI's unreserved characters as `%XX`.
pub(crate) fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (byte as char).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
