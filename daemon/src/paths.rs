//! Where the daemon keeps its files and listens, resolved the same way by the daemon and the CLI.
//!
//! - data directory: `--data-dir`, else `$ORDERS_DATA_DIR`, else the user's data directory
//!   (`$XDG_DATA_HOME/orders` or `~/.local/share/orders`): the database and the holder file;
//! - socket: `--socket`, else `$ORDERS_SOCKET`, else `$XDG_RUNTIME_DIR/orders/orders.sock`, else
//!   (cron, sudo, CI: no runtime directory) `/tmp/orders-<uid>/orders.sock`.
//!
//! Wherever the socket's directory comes from, it must be a real directory that belongs to the
//! user and is closed to group and others (0700): another user who can write there could swap
//! the socket or plant links. It is checked before anything is put in it (issue 11).
//!
//! Flags and environment variables are merged by clap; this module supplies the defaults.
//!
//! The socket is a fixed path that does not depend on the data directory (a service manager's
//! unit names one): two data directories of one user share the default socket unless one is given
//! its own. Every request names its store (the data directory), so a daemon serving another one
//! answers `wrong_store` instead of answering for the wrong data (issue 12).

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use directories::ProjectDirs;
use orders_shared::protocol::ErrorBody;

/// The file names inside the data directory.
pub const DATABASE_FILE: &str = "orders.db";
/// Names the daemon holding the data directory (pid, socket), for messages only: the lock is an
/// `flock` on the directory itself (see [`crate::lock`]).
pub const HOLDER_FILE: &str = "daemon.pid";
pub const LOG_FILE: &str = "daemon.log";

/// The daemon's binary, installed beside the `orders` client (issue 14).
pub const DAEMON_BINARY: &str = "orders-daemon";
const SOCKET_FILE: &str = "orders.sock";

/// The longest socket path the OS accepts (`sun_path` holds 108 bytes, NUL included).
pub const MAX_SOCKET_PATH: usize = 107;

/// The resolved locations of one daemon instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    pub data_dir: PathBuf,
    pub socket: PathBuf,
}

impl Paths {
    /// Fills in the defaults for whatever the user did not set.
    pub fn resolve(data_dir: Option<PathBuf>, socket: Option<PathBuf>) -> Result<Paths, PathError> {
        let data_dir = match data_dir {
            Some(dir) => absolute(dir)?,
            None => project_dirs()?.data_dir().to_path_buf(),
        };
        let socket = match socket {
            Some(path) => absolute(path)?,
            None => default_socket()?,
        };
        let length = socket.as_os_str().len();
        if length > MAX_SOCKET_PATH {
            return Err(PathError::SocketTooLong { path: socket, length });
        }
        Ok(Paths { data_dir, socket })
    }

    /// The store as requests name it: the data directory, canonical when it exists (links and
    /// `..` resolved), else as given (absolute). Non-UTF-8 bytes are replaced, on both sides alike.
    pub fn store(&self) -> String {
        std::fs::canonicalize(&self.data_dir)
            .unwrap_or_else(|_| self.data_dir.clone())
            .to_string_lossy()
            .into_owned()
    }

    /// The `orders` command line that runs `args` on these paths: with `--data-dir` and `--socket`
    /// where they are not the defaults, so that a hint is true for the paths in use (issue 12).
    pub fn command_line(&self, args: &str) -> String {
        let defaults = Paths::resolve(None, None).ok();
        let mut line = "orders".to_owned();
        if defaults.as_ref().is_none_or(|d| d.data_dir != self.data_dir) {
            line.push_str(&format!(" --data-dir {}", quoted(&self.data_dir.to_string_lossy())));
        }
        if defaults.as_ref().is_none_or(|d| d.socket != self.socket) {
            line.push_str(&format!(" --socket {}", quoted(&self.socket.to_string_lossy())));
        }
        line.push(' ');
        line.push_str(args);
        line
    }

    pub fn database(&self) -> PathBuf {
        self.data_dir.join(DATABASE_FILE)
    }

    pub fn holder_file(&self) -> PathBuf {
        self.data_dir.join(HOLDER_FILE)
    }

    /// The daemon's default log: in its data directory, so that two daemons of one user (two
    /// data directories) never write into one file (issue 16).
    pub fn log_file(&self) -> PathBuf {
        self.data_dir.join(LOG_FILE)
    }

    /// Serialises daemon start-ups between clients racing to autostart one.
    pub fn start_lock_file(&self) -> PathBuf {
        crate::files::with_suffix(&self.socket, ".lock")
    }

    /// Creates the data directory (mode 0700 when new).
    pub fn ensure_data_dir(&self) -> Result<(), PathError> {
        create_private_dir(&self.data_dir)
    }

    /// Creates the socket's directory (mode 0700 when new) and proves it is ours and closed to
    /// others before anything is put in it, wherever it comes from.
    pub fn ensure_socket_dir(&self) -> Result<(), PathError> {
        let dir = self.socket.parent().unwrap_or(Path::new("/"));
        create_private_dir(dir)?;
        check_private(dir)
    }
}

/// A word as a shell reads it back, for the commands that hints suggest.
pub fn quoted(text: &str) -> String {
    shlex::try_quote(text).map_or_else(|_| text.to_owned(), |quoted| quoted.into_owned())
}

/// The store a daemon serves, to compare with the one each request names (issue 12).
#[derive(Clone, Debug)]
pub struct ServedStore {
    /// As requests name it ([`Paths::store`]).
    name: String,
    /// The canonical data directory, to compare with the canonical form of a name that differs.
    canonical: PathBuf,
}

impl ServedStore {
    /// The daemon's own store; its data directory exists by now.
    pub fn new(paths: &Paths) -> Result<ServedStore, PathError> {
        let canonical = std::fs::canonicalize(&paths.data_dir)
            .map_err(|error| PathError::Io { path: paths.data_dir.clone(), error })?;
        Ok(ServedStore { name: canonical.to_string_lossy().into_owned(), canonical })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether a request naming `named` is meant for this store: the same name, or an absolute
    /// path that resolves to the same directory (a link to it, a client that named the directory
    /// before it existed).
    pub fn check(&self, named: &str) -> Result<(), ErrorBody> {
        if named == self.name {
            return Ok(());
        }
        let path = Path::new(named);
        if path.is_absolute()
            && std::fs::canonicalize(path).is_ok_and(|canonical| canonical == self.canonical)
        {
            return Ok(());
        }
        Err(ErrorBody::wrong_store(&self.name, named))
    }
}

fn project_dirs() -> Result<ProjectDirs, PathError> {
    ProjectDirs::from("", "", "orders").ok_or(PathError::NoHome)
}

fn default_socket() -> Result<PathBuf, PathError> {
    if let Some(runtime) = project_dirs()?.runtime_dir() {
        return Ok(runtime.join(SOCKET_FILE));
    }
    Ok(fallback_socket_dir().join(SOCKET_FILE))
}

/// Without `XDG_RUNTIME_DIR`: one deterministic per-user directory that client and daemon agree
/// on, whatever else their environments say (so not `$TMPDIR`), in the shared `/tmp`, so it must
/// be checked before use.
pub fn fallback_socket_dir() -> PathBuf {
    let uid = rustix::process::getuid().as_raw();
    PathBuf::from(format!("/tmp/orders-{uid}"))
}

fn absolute(path: PathBuf) -> Result<PathBuf, PathError> {
    if path.as_os_str().is_empty() {
        return Err(PathError::Empty);
    }
    std::path::absolute(&path).map_err(|error| PathError::Io { path, error })
}

fn create_private_dir(dir: &Path) -> Result<(), PathError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|error| PathError::Io { path: dir.to_path_buf(), error })
}

/// The socket's directory must be a directory (not a link to one), owned by this user, mode 0700.
fn check_private(dir: &Path) -> Result<(), PathError> {
    let meta =
        std::fs::symlink_metadata(dir).map_err(|error| PathError::Io { path: dir.to_path_buf(), error })?;
    let not_private = |why: String, fix: String| PathError::NotPrivate { path: dir.to_path_buf(), why, fix };
    let uid = rustix::process::geteuid().as_raw();
    let mode = meta.permissions().mode() & 0o7777;
    if !meta.is_dir() {
        return Err(not_private(
            format!("is {}, not a directory", crate::files::kind(&meta)),
            "Remove it".to_owned(),
        ));
    }
    if meta.uid() != uid {
        return Err(not_private(
            format!("belongs to uid {}, not to you (uid {uid})", meta.uid()),
            format!("Run `chown {uid} {}` if it is yours", dir.display()),
        ));
    }
    if mode & 0o077 != 0 {
        return Err(not_private(
            format!("has mode {mode:04o}: group or others may use it"),
            fix_hint(dir, &meta),
        ));
    }
    Ok(())
}

/// What to do about a directory of this user's that others may use: `chmod 700` it, unless it is
/// sticky (shared on purpose, like `/tmp`), a system directory or the home directory — then
/// use a private directory instead (issue 11: the hint said `chmod 700 /dev`).
pub fn fix_hint(dir: &Path, meta: &std::fs::Metadata) -> String {
    let ours = meta.uid() == rustix::process::geteuid().as_raw();
    let sticky = meta.mode() & 0o1000 != 0;
    let resolved = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    if ours && !sticky && !is_system_dir(&resolved) {
        format!("Run `chmod 700 {}`", dir.display())
    } else {
        "Use a private directory instead (one of yours made with `mkdir -m 700`)".to_owned()
    }
}

/// The file system's own directories and the home directory: never to be chmodded on our advice.
fn is_system_dir(dir: &Path) -> bool {
    const SYSTEM: [&str; 12] = [
        "/",
        "/tmp",
        "/var",
        "/home",
        "/root",
        "/run",
        "/srv",
        "/opt",
        "/mnt",
        "/media",
        "/dev",
        "/run/user",
    ];
    const TREES: [&str; 10] =
        ["/dev", "/proc", "/sys", "/usr", "/etc", "/boot", "/bin", "/sbin", "/lib", "/var/tmp"];
    SYSTEM.iter().any(|system| dir == Path::new(system))
        || TREES.iter().any(|tree| dir.starts_with(tree))
        || std::env::var_os("HOME").is_some_and(|home| dir == Path::new(&home))
}

#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("cannot find the home directory; set ORDERS_DATA_DIR and ORDERS_SOCKET")]
    NoHome,
    #[error("an empty path was given")]
    Empty,
    #[error(
        "the socket path {path} is {length} bytes long; the OS allows at most {MAX_SOCKET_PATH}. \
         Choose a shorter one with --socket or ORDERS_SOCKET"
    )]
    SocketTooLong { path: PathBuf, length: usize },
    #[error(
        "the socket directory {path} {why}; it must be a directory of yours with mode 0700. \
         {fix}, or choose another socket with --socket or ORDERS_SOCKET"
    )]
    NotPrivate { path: PathBuf, why: String, fix: String },
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_paths_win_and_are_made_absolute() {
        let paths = Paths::resolve(Some("data".into()), Some("/run/x/orders.sock".into())).expect("resolves");
        assert!(paths.data_dir.is_absolute());
        assert!(paths.data_dir.ends_with("data"));
        assert_eq!(paths.socket, PathBuf::from("/run/x/orders.sock"));
        assert!(paths.database().ends_with("data/orders.db"));
        assert_eq!(paths.start_lock_file(), PathBuf::from("/run/x/orders.sock.lock"));
    }

    #[test]
    fn a_store_is_recognised_by_any_path_that_leads_to_it() {
        let base = tempfile::tempdir().expect("tempdir");
        let data = base.path().join("data");
        std::fs::create_dir(&data).expect("mkdir");
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&data, &link).expect("symlink");
        let paths = Paths::resolve(Some(data.clone()), Some(base.path().join("s.sock"))).expect("paths");
        let served = ServedStore::new(&paths).expect("served");
        assert_eq!(served.name(), paths.store());
        served.check(&paths.store()).expect("the same store");
        served.check(&link.to_string_lossy()).expect("a link to it");
        served.check(&format!("{}/../data", data.display())).expect("a longer way to it");
        let other = base.path().join("other");
        let refused = served.check(&other.to_string_lossy()).expect_err("another store");
        assert_eq!(refused.served.as_deref(), Some(served.name()));
        assert!(refused.message.contains(&other.display().to_string()), "{}", refused.message);
        assert!(served.check("data").is_err(), "a relative name is nobody's store");
    }

    #[test]
    fn a_command_line_names_the_paths_that_are_not_the_defaults() {
        let paths =
            Paths::resolve(Some("/srv/my data".into()), Some("/run/x/orders.sock".into())).expect("paths");
        assert_eq!(
            paths.command_line("daemon restart"),
            "orders --data-dir '/srv/my data' --socket /run/x/orders.sock daemon restart"
        );
        let defaults = Paths::resolve(None, None).expect("defaults");
        assert_eq!(defaults.command_line("list"), "orders list");
    }

    #[test]
    fn a_socket_path_too_long_for_the_os_is_refused_with_the_override_named() {
        let long = format!("/tmp/{}/orders.sock", "x".repeat(120));
        let error = Paths::resolve(Some("/tmp".into()), Some(long.into())).expect_err("too long");
        let message = error.to_string();
        assert!(message.contains("ORDERS_SOCKET"), "{message}");
        assert!(message.contains("at most 107"), "{message}");
    }

    #[test]
    fn a_socket_directory_must_be_private() {
        let base = tempfile::tempdir().expect("tempdir");
        let dir = base.path().join("orders-test");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let error = check_private(&dir).expect_err("open to others");
        let message = error.to_string();
        assert!(message.contains("mode 0777") && message.contains("chmod 700"), "{message}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        check_private(&dir).expect("private now");
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).expect("symlink");
        let message = check_private(&link).expect_err("a link").to_string();
        assert!(message.contains("is a symbolic link"), "{message}");
    }

    #[test]
    fn the_hint_never_says_to_chmod_a_system_or_sticky_directory() {
        for dir in ["/dev", "/tmp", "/", "/usr/lib"] {
            let meta = std::fs::metadata(dir).expect("metadata");
            let hint = fix_hint(Path::new(dir), &meta);
            assert!(!hint.contains("chmod"), "{dir}: {hint}");
            assert!(hint.contains("private directory"), "{dir}: {hint}");
        }
        let base = tempfile::tempdir().expect("tempdir");
        let meta = std::fs::metadata(base.path()).expect("metadata");
        assert_eq!(fix_hint(base.path(), &meta), format!("Run `chmod 700 {}`", base.path().display()));
    }
}
