//! One daemon per data directory: an exclusive `flock` on `daemon.lock` held for the life of the
//! process. The kernel releases it when the process dies, `kill -9` included, so a crashed
//! daemon never leaves a stale lock behind; the file's content (pid, socket) only names the
//! holder in messages.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::paths::Paths;

/// The held lock; dropping it (or dying) releases it.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// The daemon that holds a data directory, as its lock file names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub pid: Option<u32>,
    pub socket: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
                "another daemon{} already serves {data_dir}{}; stop it first (orders daemon stop), or replace it with \
         `orders daemon restart` if it does not answer",
        holder.pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default(),
        holder.socket.as_ref().map(|s| format!(" on {}", s.display())).unwrap_or_default()
    )]
    Held { data_dir: PathBuf, holder: Holder },
    #[error("cannot lock {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl DataDirLock {
    /// Takes the lock or says who holds it. Never waits.
    pub fn acquire(paths: &Paths) -> Result<DataDirLock, LockError> {
        let path = paths.lock_file();
        let io = |source| LockError::Io { path: path.clone(), source };
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        // A client checking who holds the lock takes it shared for an instant (see [`holder`]):
        // try a few times before calling the directory taken.
        let mut attempts = 0;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if attempts < 5 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(TryLockError::WouldBlock) => {
                    let holder = read_holder(&mut file);
                    return Err(LockError::Held { data_dir: paths.data_dir.clone(), holder });
                }
                Err(TryLockError::Error(source)) => return Err(io(source)),
            }
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}\n{}", std::process::id(), paths.socket.display()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(DataDirLock { _file: file })
    }
}

/// Who holds the lock on a data directory right now, if anybody.
pub fn holder(lock_file: &Path) -> Option<Holder> {
    let mut file = File::open(lock_file).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(_) => Some(read_holder(&mut file)),
    }
}

fn read_holder(file: &mut File) -> Holder {
    let mut text = String::new();
    let _ = file.rewind().and_then(|_| file.read_to_string(&mut text));
    let mut lines = text.lines();
    Holder {
        pid: lines.next().and_then(|pid| pid.trim().parse().ok()),
        socket: lines.next().filter(|s| !s.is_empty()).map(PathBuf::from),
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(super::holder(&paths.lock_file()).map(|h| h.pid), Some(Some(std::process::id())));
        drop(first);
        assert_eq!(super::holder(&paths.lock_file()), None);
        DataDirLock::acquire(&paths).expect("free again");
    }
}
