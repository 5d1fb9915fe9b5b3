//! `orders backup FILE` (issue 15): a consistent copy of the whole store, written while the
//! daemon keeps serving. The backend makes the copy (`Reads::backup`, SQLite's `VACUUM INTO`);
//! this module owns the file around it: an owner-only temporary file beside the target, made
//! with `O_EXCL` and never through a symlink, synced, renamed over the target and the directory
//! synced, so that the target is either the old file or the whole new copy, never a torn one.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use orders_shared::protocol::{BackupReport, ErrorBody, ErrorCode};

use crate::paths::Paths;
use crate::store::{Reads, StoreError};

/// Why a backup was not made; nothing was left behind.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The target cannot be used: the message says why and what to do.
    #[error("{0}")]
    Target(String),
    #[error("cannot write the backup: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot copy the store: {0}")]
    Store(#[from] StoreError),
}

impl BackupError {
    pub fn into_body(self) -> ErrorBody {
        let code = match &self {
            BackupError::Target(_) | BackupError::Store(StoreError::Unsupported(_)) => {
                ErrorCode::InvalidRequest
            }
            // A full disk passes; a name too long, a read-only or forbidden place does not.
            BackupError::Io(error) if error.kind() == std::io::ErrorKind::StorageFull => {
                ErrorCode::Unavailable
            }
            BackupError::Io(_) => ErrorCode::InvalidRequest,
            BackupError::Store(error) => crate::command::storage_error_body(error).code,
        };
        ErrorBody::new(code, format!("no backup was made: {self}"))
    }
}

/// The files a backup must never replace: the data directory (by the directory itself, however
/// it is reached), and the daemon's own files outside it.
pub struct Protected<'a> {
    pub paths: &'a Paths,
    pub log_file: &'a Path,
}

/// Copies the store into `target` (an absolute path) on a read snapshot.
pub fn backup(
    reads: &mut dyn Reads,
    protected: &Protected,
    target: &Path,
) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    let directory = place(protected, target)?;
    // A short name of its own: a long target name plus a suffix could exceed NAME_MAX.
    let name = format!(".orders-backup-{}.tmp", uuid::Uuid::now_v7().simple());
    let temporary = directory.join(&name);
    let file = crate::files::create_new_private(&temporary)?;
    let copied = with_writeback(&file, || reads.backup(&temporary)).map_err(BackupError::from).and_then(
        |(events, orders)| {
            file.sync_all()?;
            let bytes = file.metadata()?.len();
            std::fs::rename(&temporary, target)?;
            File::open(&directory)?.sync_all()?;
            Ok((events, orders, bytes))
        },
    );
    let (events, orders, bytes) = copied.inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
        let _ = std::fs::remove_file(directory.join(format!("{name}-journal")));
    })?;
    Ok(BackupReport {
        path: target.display().to_string(),
        events,
        orders,
        bytes,
        duration_ms: started.elapsed().as_millis().try_into().unwrap_or(u64::MAX),
    })
}

/// Runs `copy` while another thread flushes the file's pages to disk every [`WRITEBACK_EVERY`],
/// so that the copy reaches the disk as it is written: one flush of gigabytes at the end would
/// hold every commit's fsync behind it for a long moment (measured: 0.7 s at 1M orders).
fn with_writeback<T>(file: &File, copy: impl FnOnce() -> T) -> T {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(WRITEBACK_EVERY);
                let _ = file.sync_data();
            }
        });
        let copied = copy();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        copied
    })
}

/// How often the copy's pages are flushed while it is written.
const WRITEBACK_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// The target's directory, once it is clear the target may be written: an absolute path naming a
/// file in an existing directory that is not the data directory (compared as directories, by
/// device and inode: a bind mount or a symlink leads there too), and, if something is there
/// already, a regular file (never a symlink, a FIFO, a device, a directory) that is none of the
/// daemon's own files.
fn place(protected: &Protected, target: &Path) -> Result<PathBuf, BackupError> {
    let refuse = |why: String| Err(BackupError::Target(why));
    if !target.is_absolute() {
        return refuse(format!("{} is not an absolute path", target.display()));
    }
    let names_a_file = !target.as_os_str().as_encoded_bytes().ends_with(b"/");
    let (Some(parent), Some(_), true) = (target.parent(), target.file_name(), names_a_file) else {
        return refuse(format!("{} names no file", target.display()));
    };
    let directory = match std::fs::canonicalize(parent) {
        Ok(directory) if directory.is_dir() => directory,
        Ok(_) => return refuse(format!("{} is not a directory", parent.display())),
        Err(error) => return refuse(format!("{}: {error}", parent.display())),
    };
    let same = |a: &std::fs::Metadata, b: &Path| {
        std::fs::metadata(b).is_ok_and(|b| a.dev() == b.dev() && a.ino() == b.ino())
    };
    if same(&std::fs::metadata(&directory)?, &protected.paths.data_dir) {
        return refuse(format!(
            "{} is in the data directory, which is the daemon's own; write the backup elsewhere",
            target.display()
        ));
    }
    match std::fs::symlink_metadata(target) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return refuse(format!("{}: {error}", target.display())),
        Ok(meta) if meta.is_dir() => {
            return refuse(format!("{} is a directory; name the file to write", target.display()));
        }
        Ok(meta) if !meta.file_type().is_file() => {
            return refuse(format!(
                "{} is {}, not a regular file; a backup replaces only a regular file",
                target.display(),
                crate::files::kind(&meta)
            ));
        }
        Ok(meta) => {
            let own = [
                protected.paths.start_lock_file(),
                protected.log_file.to_path_buf(),
                protected.paths.database(),
            ];
            if own.iter().any(|file| same(&meta, file)) {
                return refuse(format!(
                    "{} is one of the daemon's own files; write the backup elsewhere",
                    target.display()
                ));
            }
        }
    }
    Ok(directory)
}
