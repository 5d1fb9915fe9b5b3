//! Opening SQLite connections: the writer's first (with the file checks), the others', and
//! read-only ones; the pragmas every connection needs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::store::StoreError;

/// How long a connection waits for a lock held by another connection before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The WAL size (in pages) past which a committing connection checkpoints by itself.
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 8192;

/// Opens the daemon's first read-write connection: WAL, and `synchronous=FULL` so that a commit
/// is on disk before it is acknowledged.
///
/// The database is created 0600 whatever the umask (SQLite would make it 0644), never through a
/// symlink; SQLite gives its `-wal` and `-shm` the database's mode. Files left open to others
/// by an older version are tightened to 0600, and the log says so (issue 11). Those raw opens
/// happen here only, before this process holds any SQLite connection to the file: closing any
/// descriptor of a file drops every POSIX lock the process holds on it, SQLite's included, and
/// an outside reader could then delete the WAL under the daemon's feet. Any further connection
/// of the same process goes through [`open_another_writer`].
pub fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let opened = crate::files::open_private(path, crate::files::Access::ReadWrite)?;
    drop(opened.file);
    let mut tightened = vec![(path.to_path_buf(), opened.tightened_from)];
    for suffix in ["-wal", "-shm"] {
        let mut companion = path.as_os_str().to_owned();
        companion.push(suffix);
        let companion = PathBuf::from(companion);
        let from = crate::files::tighten_if_present(&companion)?;
        tightened.push((companion, from));
    }
    for (file, from) in tightened {
        if let Some(mode) = from {
            tracing::warn!(file = %file.display(), "the file was open to others (mode {mode:04o}); made it 0600");
        }
    }
    open_another_writer(path)
}

/// Opens a read-write connection to a database this process already has open (the upkeep's),
/// through SQLite alone: no raw open or close of its files (see [`open_writer`]).
pub fn open_another_writer(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // The upkeep task copies the WAL back; the writer only steps in past 32 MiB.
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Opens a read-only connection; under WAL it never waits for the writer.
pub fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}
