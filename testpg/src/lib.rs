//! A private PostgreSQL cluster for the tests of this workspace (issue 19).
//!
//! A test process that asks for one starts its own cluster in a temporary directory, from the
//! PostgreSQL installed on the machine (Debian's `postgresql` package, whose programs live under
//! `/usr/lib/postgresql/<version>/bin`, off the `PATH`), and every test of that process shares
//! it. Nothing outlives the process: a watchdog stops the server and removes the directory once
//! the process is gone, however it ended. Where PostgreSQL is not installed, or the cluster
//! cannot start, a test skips and says why, except under CI, where that is a failure. The
//! benchmark (`orders-bench`) starts a durable one ([`Options::durable`]) the same way.
//!
//! ```no_run
//! let Some(pg) = testpg::cluster() else { return };
//! let db = pg.fresh_database();
//! pg.sql(&db.name, "CREATE TABLE t (x int)");
//! ```

mod install;
mod server;
mod tls;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once, OnceLock};

use install::{Install, Unavailable};
use server::Server;

/// The cluster of this test process, started on first use and shared by every test of the
/// process. `None` when PostgreSQL is not installed or the cluster cannot start, outside CI:
/// the caller skips, and this function has already said so on stderr (once per process) with
/// the reason and how to install PostgreSQL. Under CI (`CI` set to anything but `""`, `0` or
/// `false`) that panics with the reason instead.
///
/// Tests that stop or restart the server want [`own_cluster`]: this one serves the tests
/// running beside them.
pub fn cluster() -> Option<&'static Cluster> {
    static CLUSTER: OnceLock<Result<Cluster, Unavailable>> = OnceLock::new();
    // The outcome is kept either way, so that a failure is found once rather than by every test.
    let started = CLUSTER.get_or_init(|| Cluster::start_new(false, Options::default()));
    unavailable(started.as_ref())
}

/// A cluster of the caller's own, for a test that stops, restarts or crashes the server:
/// doing that to the shared [`cluster`] would break the tests running beside it. Dropping it
/// stops the server and removes its directory. `None` (or a panic under CI) as for [`cluster`].
/// It takes as long to start as the shared one: 1.5 to 3 seconds here, most of them `initdb`.
pub fn own_cluster() -> Option<Cluster> {
    own_cluster_with(Options::default())
}

/// A cluster of the caller's own, set up as `options` say: [`own_cluster`] with a choice the
/// tests' clusters do not need (a durable one, for a benchmark).
pub fn own_cluster_with(options: Options) -> Option<Cluster> {
    let started = Cluster::start_new(true, options);
    unavailable(started.as_ref())?;
    started.ok()
}

/// How a cluster of one's own is set up; the default is the tests' (what [`cluster`] and
/// [`own_cluster`] give).
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Commits on disk when they return, as on a production server: `fsync`, `full_page_writes`
    /// and `synchronous_commit` on, `wal_sync_method = fdatasync`, and PostgreSQL's default
    /// `shared_buffers` (128MB). Benchmarks want it, to compare with SQLite's
    /// `synchronous=FULL`. Off (the default), the cluster does not fsync (the tests are about
    /// daemon crashes, not machine crashes) and has 32MB of buffers.
    pub durable: bool,
}

/// `let pg = testpg::require!();` returns from the test (which skips, see [`cluster`]) when
/// there is no cluster, and is the shared cluster otherwise.
#[macro_export]
macro_rules! require {
    () => {
        match $crate::cluster() {
            Some(cluster) => cluster,
            None => return,
        }
    };
}

/// A PostgreSQL server of this test process, listening on a Unix socket in its own directory
/// and on 127.0.0.1 with TLS, trusting every local connection (user `postgres`, no password).
pub struct Cluster {
    server: Server,
    /// The watchdog that stops the server when the test process is gone. A cluster of a test's
    /// own ([`own_cluster`]) stops it when dropped.
    watchdog: Child,
    own: bool,
    ca_cert: PathBuf,
    /// Numbers the databases of [`Cluster::fresh_database`]: the cluster belongs to this process
    /// alone, so a counter makes the names unique.
    databases: AtomicU64,
    /// Serialises stop and start: two tests restarting the server at once would otherwise
    /// run `pg_ctl` over each other.
    control: Mutex<()>,
}

/// A database made for one test. Dropping it drops the database (each takes several
/// megabytes of the temporary directory's disk).
pub struct Database {
    pub name: String,
    /// Its URL over the Unix socket, as [`Cluster::url`] gives it.
    pub url: String,
    server: Server,
}

impl Cluster {
    fn start_new(own: bool, options: Options) -> Result<Cluster, Unavailable> {
        let (server, watchdog) = Server::start_new(Install::find()?, options.durable)?;
        let ca_cert = server.tls_dir().join("ca.crt");
        Ok(Cluster { server, watchdog, own, ca_cert, databases: AtomicU64::new(0), control: Mutex::new(()) })
    }

    /// A new, empty database for one test (`CREATE DATABASE` with a name unique in the cluster).
    pub fn fresh_database(&self) -> Database {
        let name = format!("test_{}", self.databases.fetch_add(1, Ordering::Relaxed) + 1);
        // From template0: about four times faster here than from template1 (40–60 ms, not 150–250).
        self.sql("postgres", &format!("CREATE DATABASE {name} TEMPLATE template0"));
        Database { url: self.url(&name), name, server: self.server.clone() }
    }

    /// `postgres://postgres@<socket directory, percent-encoded>:<port>/<database>`: a libpq URI
    /// that `psql` and tokio-postgres both take. The port names the socket file
    /// (`.s.PGSQL.<port>`) in the directory.
    pub fn url(&self, database: &str) -> String {
        self.server.url(database)
    }

    /// The same database over TCP with TLS: `postgres://postgres@localhost:<port>/<database>`.
    /// The server's certificate, signed by [`Cluster::ca_cert`], names `localhost` only (no IP
    /// address), so that `verify-full` succeeds for this URL and fails for the same URL with
    /// `127.0.0.1` as the host. The server also accepts connections without TLS.
    pub fn tcp_url(&self, database: &str) -> String {
        format!("postgres://postgres@localhost:{}/{}", self.server.port, server::percent_encoded(database))
    }

    /// The CA certificate (PEM) that signed the server's certificate.
    pub fn ca_cert(&self) -> &Path {
        &self.ca_cert
    }

    /// The TCP port, the same over TCP and in the socket file's name.
    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// The cluster's directory: `data/`, `s/` (the socket), `tls/` and `log`.
    pub fn dir(&self) -> &Path {
        &self.server.dir
    }

    /// The server's log so far, for the message of a failing test.
    pub fn log(&self) -> String {
        self.server.log()
    }

    /// Runs `sql` in `database` with the installation's `psql`, statement by statement,
    /// stopping at the first error, and returns the rows it printed: unaligned (`a|b`), one a
    /// line, no header, without the last newline. Panics with psql's message on an error.
    pub fn sql(&self, database: &str, sql: &str) -> String {
        self.server.sql(&self.url(database), sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The installation's `psql`, with no connection given yet, its startup file ignored (`-X`)
    /// and the `PG*` variables of the environment removed: for connections [`Cluster::sql`]
    /// does not make (TLS settings in a connection string).
    pub fn psql(&self) -> Command {
        let mut psql = self.server.install.program("psql");
        psql.arg("-X");
        psql
    }

    /// Stops the server (`pg_ctl stop -m fast`: clients are disconnected, it shuts down cleanly).
    pub fn stop(&self) {
        let _control = self.control.lock().unwrap_or_else(|e| e.into_inner());
        self.server.stop("fast").unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts the stopped server again, on the same socket and port; returns when it accepts
    /// connections.
    pub fn start(&self) {
        let _control = self.control.lock().unwrap_or_else(|e| e.into_inner());
        self.server.start().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Stops the server and starts it again (a database restarted under load).
    pub fn restart(&self) {
        let _control = self.control.lock().unwrap_or_else(|e| e.into_inner());
        self.server.stop("fast").unwrap_or_else(|e| panic!("{e}"));
        self.server.start().unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.own {
            // Best effort: what is left, the watchdog would remove too, but only at exit.
            let _ = self.server.stop("immediate");
            let _ = std::fs::remove_dir_all(&self.server.dir);
            let _ = self.watchdog.kill();
            let _ = self.watchdog.wait();
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // Best effort: the server may be stopped, and the cluster goes at exit anyway. FORCE
        // ends the connections of a daemon still running on it.
        let _ = self.server.sql(
            &self.server.url("postgres"),
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// What a caller gets when there is no cluster: `None` after saying it skipped, or a panic
/// under CI.
fn unavailable<'a, T>(started: Result<&'a T, &Unavailable>) -> Option<&'a T> {
    let why = match started {
        Ok(cluster) => return Some(cluster),
        Err(why) => why,
    };
    let (reason, hint) = match why {
        Unavailable::Missing(reason) => {
            (reason, "; install Debian's postgresql package (apt-get install postgresql) to run them")
        }
        Unavailable::Failed(reason) => (reason, ""),
    };
    if under_ci() {
        panic!("PostgreSQL is needed under CI: {reason}");
    }
    static SAID: Once = Once::new();
    SAID.call_once(|| {
        // Straight to the process's stderr, not through eprintln!, which the test harness
        // captures and shows only for failed tests.
        let _ = writeln!(std::io::stderr(), "testpg: PostgreSQL tests skipped: {reason}{hint}");
    });
    None
}

/// Whether CI is set the way CI services set it (`true`, or any value but `0` and `false`).
fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|ci| !matches!(ci.as_str(), "" | "0" | "false"))
}
