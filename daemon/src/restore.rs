//! `orders restore FILE` (issue 15): a copy of a store (what `orders backup` wrote) becomes the
//! data directory's store. With no daemon serving it (the data directory's lock is taken for the
//! whole restore), the copy is staged in the data directory, opened, migrated, given a new
//! identity and checked; only then is the old store moved aside (kept, never deleted) and the
//! copy renamed into its place, and the data directory's record of its store (`store.id`)
//! rewritten, so that the daemon neither mistakes the restored store for one that went
//! backwards nor needs `--accept-store-change`. A copy that is not an orders store, is from a
//! newer version, or does not pass the check changes nothing.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail};
use orders_shared::protocol::{CheckReport, RestoreReport};

use crate::files::{self, with_suffix};
use crate::identity::{self, Acknowledged};
use crate::lock::DataDirLock;
use crate::paths::Paths;
use crate::store::sqlite::SqliteStore;
use crate::store::{Position, Store};

/// Restores `from` into the data directory of `paths`.
pub fn restore(paths: &Paths, from: &Path) -> anyhow::Result<RestoreReport> {
    let started = Instant::now();
    paths.ensure_data_dir()?;
    let _lock = DataDirLock::acquire_for(paths, Some("restore"))?;
    remove_leftovers(paths, Some(from));
    let (from, _) =
        SqliteStore::inspect(from).with_context(|| format!("cannot restore {}", from.display()))?;
    let from = from.as_path();
    let database = paths.database();
    let staged = sibling(&database, &format!("restoring-{}", uuid::Uuid::now_v7().simple()));
    let prepared = stage(from, &staged).and_then(|()| prepare(&staged));
    let (store_id, head, orders) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => {
            remove_database(&staged);
            return Err(error);
        }
    };
    let aside = database.exists().then(|| {
        sibling(&database, &format!("before-restore-{}", jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ")))
    });
    if let Some(aside) = &aside {
        move_database(&database, aside)?;
    }
    put_in_place(paths, &staged, store_id, head)?;
    Ok(RestoreReport {
        from: from.display().to_string(),
        database: database.display().to_string(),
        events: head.since(Position::START),
        orders,
        store_id: store_id.to_string(),
        kept_aside: aside.map(|aside| aside.display().to_string()),
        duration_ms: started.elapsed().as_millis().try_into().unwrap_or(u64::MAX),
    })
}

/// Copies `from` to `staged`: a new owner-only file, never through a symlink, synced.
fn stage(from: &Path, staged: &Path) -> anyhow::Result<()> {
    let mut source = File::open(from).with_context(|| format!("cannot read {}", from.display()))?;
    let mut copy =
        files::create_new_private(staged).with_context(|| format!("cannot create {}", staged.display()))?;
    std::io::copy(&mut source, &mut copy).with_context(|| format!("cannot copy {}", from.display()))?;
    copy.sync_all()?;
    Ok(())
}

/// Opens the staged copy as the daemon will, migrates it, gives it a new identity and checks it.
fn prepare(staged: &Path) -> anyhow::Result<(identity::StoreId, Position, u64)> {
    let mut store = SqliteStore::open(staged)?;
    store.migrate()?;
    store.drop_leftovers()?;
    let (store_id, head, report) = verify(&mut store)?;
    if let Some(problems) = problems(&report) {
        bail!(
            "the copy does not pass the check ({problems}); nothing was restored (`orders check --file` \
             lists them)"
        );
    }
    Ok((store_id, head, report.orders))
}

/// Gives a staged store a new identity and checks it whole: its id, its head and the report.
fn verify(store: &mut SqliteStore) -> anyhow::Result<(identity::StoreId, Position, CheckReport)> {
    let store_id = store.ensure_identity(true)?;
    let head = store.head()?;
    let reads = store.reads()?;
    let checked = crate::check::check_source(reads.as_ref());
    reads.close();
    Ok((store_id, head, checked?))
}

/// What a check found, in a few words (the count and the first problem); `None` if nothing.
fn problems(report: &CheckReport) -> Option<String> {
    let first = report.listed.first().map(|problem| problem.message.as_str()).unwrap_or_default();
    (report.problems > 0).then(|| format!("{} problems; the first: {first}", report.problems))
}

/// Puts a staged store (checked, its connections closed) in the place of the data directory's
/// store, which is gone or moved aside, and rewrites the data directory's record of its store.
pub(crate) fn put_in_place(
    paths: &Paths,
    staged: &Path,
    store_id: identity::StoreId,
    head: Position,
) -> anyhow::Result<()> {
    // Three steps, each durable: the new record beside the old one, the database, the record. A
    // kill between the last two leaves the new database with the old record, and the pending
    // one that says which is which (`identity::remembered` settles it at the next start).
    let pending = pending_record(paths, store_id, head)?;
    let database = paths.database();
    move_database(staged, &database)
        .with_context(|| format!("cannot put the new store in place at {}", database.display()))?;
    File::open(&paths.data_dir)?.sync_all()?;
    settle_record(paths, &pending)
}

/// The data directory remembers a store put in place elsewhere (an import into PostgreSQL): the
/// new record beside the old one, then in its place.
pub(crate) fn remember(paths: &Paths, store_id: identity::StoreId, head: Position) -> anyhow::Result<()> {
    let pending = pending_record(paths, store_id, head)?;
    settle_record(paths, &pending)
}

fn pending_record(paths: &Paths, store_id: identity::StoreId, head: Position) -> anyhow::Result<PathBuf> {
    let pending = identity::pending_file(&paths.data_dir.join(identity::FILE_NAME));
    drop(Acknowledged::create(&pending, store_id, head.get())?);
    Ok(pending)
}

fn settle_record(paths: &Paths, pending: &Path) -> anyhow::Result<()> {
    let id_file = paths.data_dir.join(identity::FILE_NAME);
    std::fs::rename(pending, &id_file).with_context(|| format!("cannot write {}", id_file.display()))?;
    File::open(&paths.data_dir)?.sync_all()?;
    Ok(())
}

/// Renames a database and what SQLite may keep beside it (its WAL, its shared memory).
fn move_database(from: &Path, to: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let (old, new) = (with_suffix(from, suffix), with_suffix(to, suffix));
        if old.exists() {
            std::fs::rename(&old, &new)
                .with_context(|| format!("cannot move {} to {}", old.display(), new.display()))?;
        }
    }
    Ok(())
}

/// Removes what a restore or an import killed meanwhile left staged in the data directory (never
/// served: only a finished one is renamed into place), but not `keep`, the file being restored or
/// imported now, whatever its name. Called with the directory's lock held.
pub(crate) fn remove_leftovers(paths: &Paths, keep: Option<&Path>) {
    use std::os::unix::fs::MetadataExt;
    let database = paths.database();
    let Some(name) = database.file_name().and_then(|name| name.to_str()) else { return };
    let staged = [format!("{name}.restoring-"), format!("{name}.importing-")];
    let kept = keep.and_then(|keep| std::fs::metadata(keep).ok()).map(|meta| (meta.dev(), meta.ino()));
    let Ok(entries) = std::fs::read_dir(&paths.data_dir) else { return };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let is_staged =
            file.to_str().is_some_and(|file| staged.iter().any(|prefix| file.starts_with(prefix.as_str())));
        let is_kept = entry.metadata().is_ok_and(|meta| Some((meta.dev(), meta.ino())) == kept);
        if is_staged && !is_kept {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// `orders.db` + `.name`, beside it.
pub(crate) fn sibling(database: &Path, name: &str) -> PathBuf {
    with_suffix(database, &format!(".{name}"))
}

/// Removes a database and what SQLite may have left beside it.
pub(crate) fn remove_database(path: &Path) {
    let _ = std::fs::remove_file(path);
    remove_beside(path);
}

/// Removes what SQLite may have left beside a database (its WAL, its shared memory).
pub(crate) fn remove_beside(database: &Path) {
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(with_suffix(database, suffix));
    }
}
