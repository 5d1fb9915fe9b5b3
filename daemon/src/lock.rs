//! One daemon per data directory: an exclusive `flock` on the data directory itself, held for the
//! life of the process. The kernel releases it when the process dies, `kill -9` included, so a
//! crashed daemon never leaves a stale lock behind. The lock lives on the directory's own
//! descriptor, not on a file in it: a file could be deleted, letting a second daemon lock a new
//! one and serve the same data (issue 11), and `orders.db` will be replaced by a restore.
//!
//! The directory must be this user's and closed to everybody else (mode 0700): anyone who can
//! open it can `flock` it and lock the daemon out. Every directory above it must be writable by
//! its owner only (or sticky, like `/tmp`), its owner root or this user: else another user could
//! rename the data directory away between the check and the database's open (issue 11).
//!
//! `daemon.pid` (pid, socket) names the holder in messages, and is removed when the daemon
//! exits. It is written to a fresh file and renamed into place, so a symlink planted there is
//! replaced, never followed. Before `orders daemon restart` signals the pid it names,
//! [`verify_daemon`] proves that pid is an orders daemon of this user's holding this directory.
//!
//! An older version locked `daemon.lock` in the directory instead: while one still runs (an
//! upgrade), that lock is honoured too.

use std::fs::{File, Metadata, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::files::{self, Access};
use crate::paths::{DAEMON_BINARY, HOLDER_FILE, Paths, fix_hint};

/// The lock file of versions before issue 11, honoured while such a daemon still runs.
pub const LEGACY_LOCK_FILE: &str = "daemon.lock";

/// The held lock; dropping it removes the holder file, and dropping it (or dying) releases it.
#[derive(Debug)]
pub struct DataDirLock {
    dir: File,
    path: PathBuf,
}

impl Drop for DataDirLock {
    fn drop(&mut self) {
        // Nobody else writes it while we hold the lock: it is ours to remove.
        let _ = rustix::fs::unlinkat(&self.dir, HOLDER_FILE, rustix::fs::AtFlags::empty());
    }
}

/// The daemon that holds a data directory, as its holder file names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub pid: Option<u32>,
    pub socket: Option<PathBuf>,
    /// What holds it when it is no daemon: `import` or `restore` (the holder names itself).
    pub task: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{}", held(data_dir, holder))]
    Held { data_dir: PathBuf, holder: Holder },
    #[error(
        "an older orders daemon{} still holds {lock_file} and serves {data_dir}; stop it first \
         (orders daemon stop)",
        pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    LegacyHeld { data_dir: PathBuf, lock_file: PathBuf, pid: Option<u32> },
    #[error(
        "the data directory {path} {why}. {fix}, or choose another data directory with --data-dir or \
         ORDERS_DATA_DIR"
    )]
    Unsafe { path: PathBuf, why: String, fix: String },
    #[error(
        "the data directory {path} lies in {parent}, which {why}: its owner or others could swap the data \
         directory for another while the daemon opens it. Choose a data directory whose parents only you \
         or root may write to (sticky ones like /tmp are fine), with --data-dir or ORDERS_DATA_DIR"
    )]
    UnsafeParent { path: PathBuf, parent: PathBuf, why: String },
    #[error("the data directory {path} was replaced while the daemon opened it; refusing to serve it")]
    Replaced { path: PathBuf },
    #[error("cannot lock {path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error(transparent)]
    File(#[from] files::FileError),
}

/// Who holds the data directory, and the commands that stop or replace it where it listens (its
/// socket may not be this one: issue 12).
fn held(data_dir: &Path, holder: &Holder) -> String {
    if let Some(task) = &holder.task {
        return format!(
            "an `orders {task}` is at work on {}: no daemon can serve it until it has finished",
            data_dir.display()
        );
    }
    let pid = holder.pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default();
    let Some(socket) = &holder.socket else {
        return format!("another daemon{pid} already serves {}; stop it first", data_dir.display());
    };
    let theirs = Paths { data_dir: data_dir.to_path_buf(), socket: socket.clone() };
    format!(
        "another daemon{pid} already serves {} on {}; stop it first (`{}`), or replace it with `{}` if it \
         does not answer",
        data_dir.display(),
        socket.display(),
        theirs.command_line("daemon stop"),
        theirs.command_line("daemon restart")
    )
}

impl DataDirLock {
    /// Takes the lock for a daemon, or says who holds it. Never waits.
    pub fn acquire(paths: &Paths) -> Result<DataDirLock, LockError> {
        DataDirLock::acquire_for(paths, None)
    }

    /// Takes the lock for `task` (`import`, `restore`): no daemon, and never to be signalled as
    /// one. The holder file says so, for whoever finds the directory taken meanwhile.
    pub fn acquire_for(paths: &Paths, task: Option<&str>) -> Result<DataDirLock, LockError> {
        let path = &paths.data_dir;
        let io = |error| LockError::Io { path: path.clone(), error };
        check_parents(path)?;
        let dir = File::open(path).map_err(io)?;
        check_data_dir(&dir, path)?;
        // A client checking who holds the lock takes it shared for an instant (see [`holder`]):
        // try a few times before calling the directory taken.
        let mut attempts = 0;
        loop {
            match dir.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if attempts < 5 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(TryLockError::WouldBlock) => {
                    let mut holder = read_holder(path);
                    // A pid left by a daemon that crashed names some other process by now.
                    holder.pid = holder.pid.filter(|pid| verify_daemon(*pid, path).is_ok());
                    return Err(LockError::Held { data_dir: path.clone(), holder });
                }
                Err(TryLockError::Error(source)) => return Err(io(source)),
            }
        }
        check_legacy_lock(paths)?;
        write_holder(paths, task)?;
        Ok(DataDirLock { dir, path: path.clone() })
    }

    /// Proves that the data directory's path still leads to the locked directory, and (with
    /// `database_file`: the SQLite store) its database to the one in it: called once the
    /// database is open.
    pub fn check_unchanged(&self, database_file: bool) -> Result<(), LockError> {
        let replaced = || LockError::Replaced { path: self.path.clone() };
        let same = |a: &Metadata, b: &rustix::fs::Stat| a.dev() == b.st_dev && a.ino() == b.st_ino;
        let locked = rustix::fs::fstat(&self.dir).map_err(|e| self.io(e.into()))?;
        let at_path = std::fs::metadata(&self.path).map_err(|e| self.io(e))?;
        if !same(&at_path, &locked) {
            return Err(replaced());
        }
        if !database_file {
            return Ok(());
        }
        let database = crate::paths::DATABASE_FILE;
        let inside = rustix::fs::statat(&self.dir, database, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.io(e.into()))?;
        let by_path = std::fs::symlink_metadata(self.path.join(database)).map_err(|e| self.io(e))?;
        if !same(&by_path, &inside) {
            return Err(replaced());
        }
        Ok(())
    }

    fn io(&self, error: std::io::Error) -> LockError {
        LockError::Io { path: self.path.clone(), error }
    }
}

/// Every directory above the data directory, as given and with links resolved, must be writable
/// by its owner only (or sticky), and belong to root or to this user.
fn check_parents(path: &Path) -> Result<(), LockError> {
    let uid = rustix::process::geteuid().as_raw();
    let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    for parent in path.ancestors().skip(1).chain(resolved.ancestors().skip(1)) {
        let Ok(meta) = std::fs::metadata(parent) else { continue };
        let mode = meta.mode() & 0o7777;
        let why = if meta.uid() != 0 && meta.uid() != uid {
            format!("belongs to uid {}", meta.uid())
        } else if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            format!("has mode {mode:04o}: group or others may write to it, and it is not sticky")
        } else {
            continue;
        };
        return Err(LockError::UnsafeParent { path: path.to_path_buf(), parent: parent.to_path_buf(), why });
    }
    Ok(())
}

/// A daemon of a version before issue 11 holds `daemon.lock`, not the directory. The file is
/// opened without following a link and never created; one nobody holds is removed.
fn check_legacy_lock(paths: &Paths) -> Result<(), LockError> {
    let lock_file = paths.data_dir.join(LEGACY_LOCK_FILE);
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC;
    // The flag bits fit in an i32 (they are C `int` flags).
    let file = match OpenOptions::new().read(true).custom_flags(flags.bits() as i32).open(&lock_file) {
        Ok(file) if file.metadata().is_ok_and(|meta| meta.is_file()) => file,
        // Absent, a symlink, or anything else: no older daemon locks that.
        _ => return Ok(()),
    };
    match file.try_lock() {
        Ok(()) => {
            tracing::info!(file = %lock_file.display(), "removed the lock file of an older version");
            let _ = std::fs::remove_file(&lock_file);
            Ok(())
        }
        Err(TryLockError::WouldBlock) => {
            let pid = files::read_small(&lock_file).and_then(|text| text.lines().next()?.trim().parse().ok());
            Err(LockError::LegacyHeld { data_dir: paths.data_dir.clone(), lock_file, pid })
        }
        Err(TryLockError::Error(error)) => Err(LockError::Io { path: lock_file, error }),
    }
}

/// Refuses a data directory that belongs to someone else or that others may use at all: one they
/// can open, they can lock.
fn check_data_dir(dir: &File, path: &Path) -> Result<(), LockError> {
    let meta = dir.metadata().map_err(|error| LockError::Io { path: path.to_path_buf(), error })?;
    let unsafe_dir = |why: String, fix: String| LockError::Unsafe { path: path.to_path_buf(), why, fix };
    let uid = rustix::process::geteuid().as_raw();
    let mode = meta.mode() & 0o7777;
    if meta.uid() != uid {
        return Err(unsafe_dir(
            format!("belongs to uid {}, not to you (uid {uid})", meta.uid()),
            format!("Run `chown {uid} {}` if it is yours", path.display()),
        ));
    }
    if mode & 0o077 != 0 {
        return Err(unsafe_dir(
            format!(
                "has mode {mode:04o}: group or others may use it, and anyone who can open it can lock the \
                 daemon out; it must be 0700"
            ),
            fix_hint(path, &meta),
        ));
    }
    Ok(())
}

/// Writes the holder file: a fresh file, renamed over whatever was there (a symlink included).
fn write_holder(paths: &Paths, task: Option<&str>) -> Result<(), LockError> {
    let holder = paths.holder_file();
    let fresh = files::with_suffix(&holder, ".new");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| LockError::Io { path, error }
    };
    // Left by a daemon that died while writing it (we hold the lock: nobody else writes it).
    match std::fs::remove_file(&fresh) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(io(&fresh)(error)),
        _ => {}
    }
    let mut file = files::open_private(&fresh, Access::ReadWrite)?.file;
    writeln!(file, "{}\n{}", std::process::id(), paths.socket.display()).map_err(io(&fresh))?;
    if let Some(task) = task {
        writeln!(file, "{task}").map_err(io(&fresh))?;
    }
    file.sync_all().map_err(io(&fresh))?;
    std::fs::rename(&fresh, &holder).map_err(io(&holder))
}

/// Who holds the lock on a data directory right now, if anybody.
pub fn holder(data_dir: &Path) -> Option<Holder> {
    let dir = File::open(data_dir).ok()?;
    match dir.try_lock_shared() {
        Ok(()) => None,
        Err(_) => Some(read_holder(data_dir)),
    }
}

/// Proves that `pid` is an orders daemon of this user's that holds `data_dir` open: the same
/// binary as this one or the daemon's binary beside it (or a process run as `orders-daemon run`
/// or `orders daemon run`, for a binary replaced by an upgrade), with a descriptor on that
/// directory. Says why not otherwise; nothing may be signalled then (issue 11: a stale
/// `daemon.pid` named an unrelated process).
pub fn verify_daemon(pid: u32, data_dir: &Path) -> Result<(), String> {
    if let Holder { pid: Some(holder), task: Some(task), .. } = read_holder(data_dir)
        && holder == pid
    {
        return Err(format!("process {pid} is `orders {task}`, at work on the data directory"));
    }
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let process = std::fs::metadata(&proc).map_err(|_| format!("no process {pid} is running"))?;
    let uid = rustix::process::geteuid().as_raw();
    if process.uid() != uid {
        return Err(format!("process {pid} belongs to uid {}, not to you (uid {uid})", process.uid()));
    }
    // Ours: this binary, or the daemon's binary beside it (the client execs it, issue 14).
    let same_binary = match (std::fs::metadata(proc.join("exe")), std::env::current_exe()) {
        (Ok(theirs), Ok(ours)) => [ours.with_file_name(DAEMON_BINARY), ours].iter().any(|ours| {
            std::fs::metadata(ours).is_ok_and(|ours| ours.dev() == theirs.dev() && ours.ino() == theirs.ino())
        }),
        _ => false,
    };
    let cmdline = std::fs::read(proc.join("cmdline")).unwrap_or_default();
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    // `orders-daemon run ...`, or `orders ... daemon run ...` (an older build): by file name.
    let name = args.first().map(|arg0| arg0.rsplit(|b| *b == b'/').next().unwrap_or_default());
    let runs_daemon = match name {
        Some(name) if name == DAEMON_BINARY.as_bytes() => args.get(1) == Some(&b"run".as_slice()),
        Some(b"orders") => args.windows(2).any(|pair| pair[0] == b"daemon" && pair[1] == b"run"),
        _ => false,
    };
    if !same_binary && !runs_daemon {
        return Err(format!("process {pid} is not an orders daemon"));
    }
    let dir = std::fs::metadata(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let holds_it = std::fs::read_dir(proc.join("fd")).is_ok_and(|fds| {
        fds.flatten().any(|fd| {
            std::fs::metadata(fd.path()).is_ok_and(|meta| meta.dev() == dir.dev() && meta.ino() == dir.ino())
        })
    });
    if !holds_it {
        return Err(format!("process {pid} does not hold {}", data_dir.display()));
    }
    Ok(())
}

fn read_holder(data_dir: &Path) -> Holder {
    let text = files::read_small(&data_dir.join(HOLDER_FILE)).unwrap_or_default();
    let mut lines = text.lines();
    Holder {
        pid: lines.next().and_then(|pid| pid.trim().parse().ok()),
        socket: lines.next().filter(|s| !s.is_empty()).map(PathBuf::from),
        task: lines.next().map(str::trim).filter(|task| !task.is_empty()).map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A tempdir closed to others, as a data directory must be.
    fn private_tempdir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
        dir
    }

    #[test]
    fn a_second_lock_names_the_first_holder() {
        let dir = private_tempdir();
        let paths = Paths::resolve(Some(dir.path().into()), Some(dir.path().join("s.sock"))).expect("paths");
        let first = DataDirLock::acquire(&paths).expect("first lock");
        let Err(LockError::Held { holder, .. }) = DataDirLock::acquire(&paths) else {
            panic!("the second lock must fail");
        };
        assert_eq!(holder.pid, Some(std::process::id()));
        assert_eq!(holder.socket.as_deref(), Some(dir.path().join("s.sock").as_path()));
        assert_eq!(super::holder(dir.path()).map(|h| h.pid), Some(Some(std::process::id())));
        drop(first);
        assert_eq!(super::holder(dir.path()), None);
        DataDirLock::acquire(&paths).expect("free again");
    }

    #[test]
    fn the_lock_does_not_depend_on_the_holder_file() {
        let dir = private_tempdir();
        let paths = Paths::resolve(Some(dir.path().into()), Some(dir.path().join("s.sock"))).expect("paths");
        let _first = DataDirLock::acquire(&paths).expect("first lock");
        std::fs::remove_file(paths.holder_file()).expect("delete the holder file");
        let Err(LockError::Held { holder, .. }) = DataDirLock::acquire(&paths) else {
            panic!("the second lock must fail without the holder file");
        };
        assert_eq!(holder, Holder { pid: None, socket: None, task: None });
    }

    #[test]
    fn a_data_dir_others_may_write_to_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o770)).expect("chmod");
        let paths = Paths::resolve(Some(dir.path().into()), Some(dir.path().join("s.sock"))).expect("paths");
        let message = DataDirLock::acquire(&paths).expect_err("group-writable").to_string();
        assert!(message.contains("mode 0770") && message.contains("chmod 700"), "{message}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let message = DataDirLock::acquire(&paths).expect_err("readable by others").to_string();
        assert!(message.contains("mode 0755") && message.contains("lock the daemon out"), "{message}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
        DataDirLock::acquire(&paths).expect("private");
    }

    #[test]
    fn a_data_dir_in_a_directory_others_may_write_to_is_refused() {
        let base = tempfile::tempdir().expect("tempdir");
        let data = base.path().join("data");
        std::fs::create_dir(&data).expect("mkdir");
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let paths = Paths::resolve(Some(data.clone()), Some(base.path().join("s.sock"))).expect("paths");
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let message = DataDirLock::acquire(&paths).expect_err("a parent open to others").to_string();
        assert!(
            message.contains(&format!("lies in {}, which has mode 0777", base.path().display())),
            "{message}"
        );
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        drop(DataDirLock::acquire(&paths).expect("a sticky parent is fine"));
        assert!(!paths.holder_file().exists(), "the holder file goes with the lock");
    }
}
