//! One daemon per data directory: an exclusive `flock` on the data directory itself, held for the
//! life of the process. The kernel releases it when the process dies, `kill -9` included, so a
//! crashed daemon never leaves a stale lock behind. The lock lives on the directory's own
//! descriptor, not on a file in it: a file could be deleted, letting a second daemon lock a new
//! one and serve the same data (issue 11), and `orders.db` will be replaced by a restore.
//!
//! `daemon.pid` (pid, socket) only names the holder in messages; nothing depends on it. It is
//! written to a fresh file and renamed into place, so a symlink planted there is replaced, never
//! followed.

use std::fs::{File, TryLockError};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::files::{self, Access};
use crate::paths::{HOLDER_FILE, Paths};

/// The held lock; dropping it (or dying) releases it.
#[derive(Debug)]
pub struct DataDirLock {
    _dir: File,
}

/// The daemon that holds a data directory, as its holder file names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub pid: Option<u32>,
    pub socket: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{}", held(data_dir, holder))]
    Held { data_dir: PathBuf, holder: Holder },
    #[error(
        "the data directory {path} {why}: others could replace the database. {fix}, or choose another \
         data directory with --data-dir or ORDERS_DATA_DIR"
    )]
    Unsafe { path: PathBuf, why: String, fix: String },
    #[error("cannot lock {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    File(#[from] files::FileError),
}

/// Who holds the data directory, and the commands that stop or replace it where it listens (its
/// socket may not be this one: issue 12).
fn held(data_dir: &Path, holder: &Holder) -> String {
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
    /// Takes the lock or says who holds it. Never waits.
    pub fn acquire(paths: &Paths) -> Result<DataDirLock, LockError> {
        let path = &paths.data_dir;
        let io = |source| LockError::Io { path: path.clone(), source };
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
                    return Err(LockError::Held { data_dir: path.clone(), holder: read_holder(path) });
                }
                Err(TryLockError::Error(source)) => return Err(io(source)),
            }
        }
        write_holder(paths)?;
        Ok(DataDirLock { _dir: dir })
    }
}

/// Refuses a data directory that belongs to someone else or that others may write to; one that
/// others may only read is used with a warning (every file in it is 0600).
fn check_data_dir(dir: &File, path: &Path) -> Result<(), LockError> {
    let meta = dir.metadata().map_err(|source| LockError::Io { path: path.to_path_buf(), source })?;
    let unsafe_dir = |why: String, fix: String| LockError::Unsafe { path: path.to_path_buf(), why, fix };
    let uid = rustix::process::geteuid().as_raw();
    let mode = meta.mode() & 0o7777;
    if meta.uid() != uid {
        return Err(unsafe_dir(
            format!("belongs to uid {}, not to you (uid {uid})", meta.uid()),
            format!("Run `chown {uid} {}` if it is yours", path.display()),
        ));
    }
    if mode & 0o022 != 0 {
        return Err(unsafe_dir(
            format!("has mode {mode:04o}: group or others may write to it"),
            format!("Run `chmod 700 {}`", path.display()),
        ));
    }
    if mode & 0o077 != 0 {
        tracing::warn!(
            data_dir = %path.display(),
            mode = format!("{mode:04o}"),
            "the data directory is open to group or others; its files are 0600, but `chmod 700` it to hide their names too"
        );
    }
    Ok(())
}

/// Writes the holder file: a fresh file, renamed over whatever was there (a symlink included).
fn write_holder(paths: &Paths) -> Result<(), LockError> {
    let holder = paths.holder_file();
    let mut fresh = holder.clone().into_os_string();
    fresh.push(".new");
    let fresh = PathBuf::from(fresh);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LockError::Io { path, source }
    };
    // Left by a daemon that died while writing it (we hold the lock: nobody else writes it).
    match std::fs::remove_file(&fresh) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(io(&fresh)(error)),
        _ => {}
    }
    let mut file = files::open_private(&fresh, Access::ReadWrite)?.file;
    writeln!(file, "{}\n{}", std::process::id(), paths.socket.display()).map_err(io(&fresh))?;
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

fn read_holder(data_dir: &Path) -> Holder {
    let text = files::read_small(&data_dir.join(HOLDER_FILE)).unwrap_or_default();
    let mut lines = text.lines();
    Holder {
        pid: lines.next().and_then(|pid| pid.trim().parse().ok()),
        socket: lines.next().filter(|s| !s.is_empty()).map(PathBuf::from),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_second_lock_names_the_first_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
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
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = Paths::resolve(Some(dir.path().into()), Some(dir.path().join("s.sock"))).expect("paths");
        let _first = DataDirLock::acquire(&paths).expect("first lock");
        std::fs::remove_file(paths.holder_file()).expect("delete the holder file");
        let Err(LockError::Held { holder, .. }) = DataDirLock::acquire(&paths) else {
            panic!("the second lock must fail without the holder file");
        };
        assert_eq!(holder, Holder { pid: None, socket: None });
    }

    #[test]
    fn a_data_dir_others_may_write_to_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o770)).expect("chmod");
        let paths = Paths::resolve(Some(dir.path().into()), Some(dir.path().join("s.sock"))).expect("paths");
        let message = DataDirLock::acquire(&paths).expect_err("group-writable").to_string();
        assert!(message.contains("mode 0770") && message.contains("chmod 700"), "{message}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        DataDirLock::acquire(&paths).expect("readable by others is only a warning");
    }
}
