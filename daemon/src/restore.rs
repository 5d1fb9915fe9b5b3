//! `orders restore FILE` (issue 15): a copy of a store (what `orders backup` wrote) becomes the
//! data directory's store. With no daemon serving it (the data directory's lock is taken for the
//! whole restore), the copy is staged in the data directory, opened, migrated, given a new
//! identity and checked; only then is the old store moved aside (kept, never deleted) and the
//! copy renamed into its place, and the data directory's record of its store (`store.id`)
//! rewritten, so that the daemon neither mistakes the restored store for one that went
//! backwards nor needs `--accept-store-change`. A copy that is not an orders store, is from a
//! newer version, or does not pass the check changes nothing.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail};
use orders_shared::protocol::RestoreReport;

use crate::files::OWNER_ONLY;
use crate::identity::{self, Acknowledged};
use crate::lock::DataDirLock;
use crate::paths::Paths;
use crate::store::sqlite::SqliteStore;
use crate::store::{Position, Store};

/// Restores `from` into the data directory of `paths`.
pub fn restore(paths: &Paths, from: &Path) -> anyhow::Result<RestoreReport> {
    let started = Instant::now();
    paths.ensure_data_dir()?;
    let _lock = DataDirLock::acquire(paths).context("a daemon serves this data directory")?;
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
        for suffix in ["", "-wal", "-shm"] {
            let (old, kept) = (with_suffix(&database, suffix), with_suffix(aside, suffix));
            if old.exists() {
                std::fs::rename(&old, &kept)
                    .with_context(|| format!("cannot move {} aside to {}", old.display(), kept.display()))?;
            }
        }
    }
    std::fs::rename(&staged, &database)
        .with_context(|| format!("cannot put the restored store in place at {}", database.display()))?;
    File::open(&paths.data_dir)?.sync_all()?;
    Acknowledged::create(&paths.data_dir.join(identity::FILE_NAME), store_id, head.get())?;
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
    let mut copy = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(OWNER_ONLY)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(staged)
        .with_context(|| format!("cannot create {}", staged.display()))?;
    std::io::copy(&mut source, &mut copy).with_context(|| format!("cannot copy {}", from.display()))?;
    copy.sync_all()?;
    Ok(())
}

/// Opens the staged copy as the daemon will, migrates it, gives it a new identity and checks it.
fn prepare(staged: &Path) -> anyhow::Result<(identity::StoreId, Position, u64)> {
    let mut store = SqliteStore::open(staged)?;
    store.migrate()?;
    store.drop_leftovers()?;
    let store_id = store.ensure_identity(true)?;
    let head = store.head()?;
    let reads = store.reads()?;
    let checked = crate::check::check_source(reads.as_ref());
    reads.close();
    let report = checked?;
    if report.problems > 0 {
        let first = report.listed.first().map(|problem| problem.message.as_str()).unwrap_or_default();
        bail!(
            "the copy does not pass the check ({} problems; the first: {first}); nothing was restored \
             (`orders check --file` lists them)",
            report.problems
        );
    }
    Ok((store_id, head, report.orders))
}

/// `orders.db` + `.name`, beside it.
fn sibling(database: &Path, name: &str) -> PathBuf {
    with_suffix(database, &format!(".{name}"))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Removes a staged database and what SQLite may have left beside it.
fn remove_database(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(with_suffix(path, suffix));
    }
}
