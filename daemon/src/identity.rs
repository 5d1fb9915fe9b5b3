//! A store knows itself (issue 12): the database holds its id, and a small file beside it in the
//! data directory, `store.id`, holds the same id and the last position the daemon acknowledged
//! (its high-water mark). At start the daemon compares the two, and so notices a database that
//! vanished (truncated, deleted), was replaced by another, or went backwards (its `-wal` file
//! deleted, an older copy put back) — instead of serving it as if nothing had happened.
//!
//! What to do about a change is [`judge`]'s decision, kept apart from how either side is read,
//! so that every backend shares it (PostgreSQL, where point-in-time recovery and failover make a
//! store go backwards on purpose, may need a rule of its own there).
//!
//! The writer records each committed batch's last position in the file with one positional
//! write into the page cache ([`Acknowledged::record`]): no fsync per batch, since that survives
//! `kill -9`; the upkeep task and shutdown fsync it now and then. A file that lags behind is
//! harmless (only a database behind the file is a change); it is never ahead, because it is
//! written after the commit.

use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::files::{self, FileError};

/// The file beside the database.
pub const FILE_NAME: &str = "store.id";

/// A store's identity: minted when the store is created, and again when a change is accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreId(Uuid);

impl StoreId {
    pub fn new() -> StoreId {
        StoreId(Uuid::now_v7())
    }
}

impl Default for StoreId {
    fn default() -> Self {
        StoreId::new()
    }
}

impl fmt::Display for StoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for StoreId {
    type Err = uuid::Error;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.parse().map(StoreId)
    }
}

/// What the database says about itself, read before anything is written to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    /// `None`: a new (or emptied) database, or one from a version without identities.
    pub id: Option<StoreId>,
    /// Its last position (0 for an empty log).
    pub head: i64,
}

/// What the data directory remembers about its store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kept {
    pub id: StoreId,
    /// The last position the daemon acknowledged.
    pub acknowledged: i64,
}

/// How the store found differs from the one the data directory remembers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The database is empty and has no identity, but the store had acknowledged events.
    Vanished { kept: Kept },
    /// The database is another store (or, `found: None`, one from a version without identities).
    Replaced { found: Option<StoreId>, head: i64, kept: Kept },
    /// The same store, but it ends before what it acknowledged.
    WentBack { head: i64, kept: Kept },
}

impl Change {
    /// What was found, for a person: `database` is the database's name.
    pub fn describe(&self, database: &str) -> String {
        match *self {
            Change::Vanished { kept } => format!(
                "{database} is empty but store {} had acknowledged {} events: it was truncated, replaced or deleted",
                kept.id, kept.acknowledged
            ),
            Change::Replaced { found: Some(found), head, kept } => format!(
                "{database} is store {found} ({head} events), but this data directory's {FILE_NAME} names store {} \
                 ({} events acknowledged): the database was replaced",
                kept.id, kept.acknowledged
            ),
            Change::Replaced { found: None, head, kept } => format!(
                "{database} ({head} events) has no store identity (a database of an older version), but this data \
                 directory's {FILE_NAME} names store {} ({} events acknowledged): the database was replaced",
                kept.id, kept.acknowledged
            ),
            Change::WentBack { head, kept } => format!(
                "{database} (store {}) ends at event {head}, but it had acknowledged {} events: it went backwards \
                 ({} acknowledged events are missing; was its -wal file deleted, or an older copy put back?)",
                kept.id,
                kept.acknowledged,
                kept.acknowledged - head
            ),
        }
    }
}

/// What the daemon does with the store it found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The store the data directory remembers (or the first one it meets): serve it, under the
    /// database's id, minting one if it has none.
    Serve,
    /// A change that is not served without the operator's word.
    Refuse(Change),
    /// A change the operator accepted: serve it, logged, under a new identity — a store whose
    /// history changed is another store.
    Accept(Change),
}

/// The decision, the same for every backend: `accept` is the operator's explicit word
/// (`--accept-store-change`).
pub fn judge(found: Found, kept: Option<Kept>, accept: bool) -> Verdict {
    let Some(kept) = kept else { return Verdict::Serve };
    let change = match found.id {
        // An empty store replaced by an empty one: nothing acknowledged is missing.
        None if found.head == 0 && kept.acknowledged == 0 => return Verdict::Serve,
        None if found.head == 0 => Change::Vanished { kept },
        None => Change::Replaced { found: None, head: found.head, kept },
        Some(id) if id != kept.id => Change::Replaced { found: Some(id), head: found.head, kept },
        Some(_) if found.head < kept.acknowledged => Change::WentBack { head: found.head, kept },
        Some(_) => return Verdict::Serve,
    };
    if accept { Verdict::Accept(change) } else { Verdict::Refuse(change) }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(
        "{path} is damaged ({what}); it is the daemon's record of which store this data directory holds. \
         Remove it to start anyway: the daemon then writes a new one, but cannot tell whether the database \
         was replaced"
    )]
    Damaged { path: PathBuf, what: String },
}

/// The record a restore or an import writes before it puts its new database in place
/// (`store.id.pending`): the database and this record cannot be renamed in one step, so a kill
/// between the two must be told apart afterwards.
pub fn pending_file(id_file: &Path) -> PathBuf {
    files::with_suffix(id_file, ".pending")
}

/// What the data directory remembers about its store, once a pending record is settled: if the
/// database is the one the pending record names, the swap happened and the record becomes the
/// data directory's; otherwise it did not, and the record is dropped.
pub fn remembered(id_file: &Path, found: &Found) -> Result<Option<Kept>, IdentityError> {
    let pending = pending_file(id_file);
    let io = |error| FileError::Io { path: pending.clone(), error };
    if let Some(swapped) = read_file(&pending)? {
        if found.id == Some(swapped.id) {
            std::fs::rename(&pending, id_file).map_err(io)?;
            tracing::warn!("a restore or an import was stopped after it put its store in place; finished it");
            return Ok(Some(swapped));
        }
        std::fs::remove_file(&pending).map_err(io)?;
    }
    read_file(id_file)
}

/// Reads the data directory's record of its store; `None` when there is none yet.
pub fn read_file(path: &Path) -> Result<Option<Kept>, IdentityError> {
    let Some(text) = files::read_private(path)? else { return Ok(None) };
    let damaged = |what: &str| IdentityError::Damaged { path: path.to_owned(), what: what.to_owned() };
    let mut lines = text.lines();
    let id = lines
        .next()
        .and_then(|line| line.strip_prefix(ID_PREFIX))
        .ok_or_else(|| damaged("no 'orders store <id>' line"))?
        .trim()
        .parse()
        .map_err(|_| damaged("the store id is no UUID"))?;
    let acknowledged = lines
        .next()
        .and_then(|line| line.strip_prefix(POSITION_PREFIX))
        .ok_or_else(|| damaged("no 'acknowledged <position>' line"))?
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|position| *position >= 0)
        .ok_or_else(|| damaged("the position is no number"))?;
    Ok(Some(Kept { id, acknowledged }))
}

const ID_PREFIX: &str = "orders store ";
const POSITION_PREFIX: &str = "acknowledged ";
/// The position is written with this many digits, so that it can be overwritten in place.
const POSITION_DIGITS: usize = 19;
/// How often the upkeep task fsyncs the position, at most.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// The data directory's record of its store, open for the writer's acknowledgements.
#[derive(Debug)]
pub struct Acknowledged {
    file: File,
    path: PathBuf,
    /// Where the position's digits start.
    offset: u64,
    /// When it was last fsynced, and whether it changed since.
    synced: Mutex<(Instant, bool)>,
}

impl Acknowledged {
    /// Writes the record afresh (a new file renamed into place, fsynced) and keeps it open.
    pub fn create(path: &Path, id: StoreId, acknowledged: i64) -> Result<Acknowledged, IdentityError> {
        let first = format!("{ID_PREFIX}{id}\n");
        let text = format!(
            "{first}{POSITION_PREFIX}{acknowledged:0POSITION_DIGITS$}\n\
             # Kept by the orders daemon beside orders.db: which store this is, and the last event it \
             acknowledged. Do not edit; see the README (\"Store identity\").\n"
        );
        let file = files::replace_private(path, &text)?;
        Ok(Acknowledged {
            file,
            path: path.to_owned(),
            offset: (first.len() + POSITION_PREFIX.len()) as u64,
            synced: Mutex::new((Instant::now(), false)),
        })
    }

    /// Records that everything up to `position` is acknowledged: one write into the page cache.
    pub fn record(&self, position: i64) {
        let digits = format!("{position:0POSITION_DIGITS$}");
        if let Err(error) = self.file.write_at(digits.as_bytes(), self.offset) {
            tracing::warn!(file = %self.path.display(), %error, "cannot record the acknowledged position");
        }
        self.synced.lock().unwrap_or_else(std::sync::PoisonError::into_inner).1 = true;
    }

    /// Fsyncs the record if it changed and the last fsync is older than a second (`force`: now).
    pub fn sync(&self, force: bool) {
        let mut synced = self.synced.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !synced.1 || (!force && synced.0.elapsed() < SYNC_EVERY) {
            return;
        }
        if let Err(error) = self.file.sync_data() {
            tracing::warn!(file = %self.path.display(), %error, "cannot fsync the acknowledged position");
        }
        *synced = (Instant::now(), false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(acknowledged: i64) -> Kept {
        Kept { id: StoreId::new(), acknowledged }
    }

    #[test]
    fn the_same_store_or_a_first_one_is_served() {
        let k = kept(10);
        let same = Found { id: Some(k.id), head: 12 };
        assert_eq!(judge(same, Some(k), false), Verdict::Serve);
        assert_eq!(judge(Found { id: None, head: 3_000 }, None, false), Verdict::Serve);
        let empty = Found { id: None, head: 0 };
        assert_eq!(judge(empty, Some(kept(0)), false), Verdict::Serve);
    }

    #[test]
    fn a_vanished_replaced_or_backward_store_is_refused() {
        let k = kept(3_000);
        for (found, change) in [
            (Found { id: None, head: 0 }, Change::Vanished { kept: k }),
            (Found { id: None, head: 5 }, Change::Replaced { found: None, head: 5, kept: k }),
            (
                Found { id: Some(StoreId(Uuid::nil())), head: 9_000 },
                Change::Replaced { found: Some(StoreId(Uuid::nil())), head: 9_000, kept: k },
            ),
            (Found { id: Some(k.id), head: 2_934 }, Change::WentBack { head: 2_934, kept: k }),
        ] {
            assert_eq!(judge(found, Some(k), false), Verdict::Refuse(change));
            assert_eq!(judge(found, Some(k), true), Verdict::Accept(change));
        }
    }

    #[test]
    fn the_messages_name_what_was_found() {
        let k = Kept { id: StoreId(Uuid::nil()), acknowledged: 3_000 };
        let vanished = Change::Vanished { kept: k }.describe("/d/orders.db");
        assert!(vanished.contains("/d/orders.db is empty but store 00000000-0000-0000-0000-000000000000 had acknowledged 3000 events: it was truncated, replaced or deleted"), "{vanished}");
        let back = Change::WentBack { head: 2_934, kept: k }.describe("orders.db");
        assert!(back.contains("went backwards (66 acknowledged events are missing"), "{back}");
    }

    #[test]
    fn the_record_is_written_read_and_advanced_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        assert_eq!(read_file(&path).expect("absent"), None);
        let id = StoreId::new();
        let record = Acknowledged::create(&path, id, 42).expect("create");
        assert_eq!(read_file(&path).expect("read"), Some(Kept { id, acknowledged: 42 }));
        record.record(1_234_567);
        record.sync(true);
        assert_eq!(read_file(&path).expect("read"), Some(Kept { id, acknowledged: 1_234_567 }));
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).expect("meta").permissions());
        assert_eq!(mode & 0o777, 0o600);

        std::fs::write(&path, "orders store nonsense\n").expect("damage");
        let error = read_file(&path).expect_err("damaged");
        assert!(error.to_string().contains("is damaged (the store id is no UUID)"), "{error}");
    }

    /// A restore or an import killed between putting its database in place and its record: the
    /// pending record says which store the database is.
    #[test]
    fn a_pending_record_is_kept_when_its_store_is_in_place_and_dropped_otherwise() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        let (old, new) = (StoreId::new(), StoreId::new());
        for (database, expected) in
            [(old, Kept { id: old, acknowledged: 0 }), (new, Kept { id: new, acknowledged: 9 })]
        {
            drop(Acknowledged::create(&path, old, 0).expect("the old record"));
            drop(Acknowledged::create(&pending_file(&path), new, 9).expect("the pending record"));
            let found = Found { id: Some(database), head: expected.acknowledged };
            assert_eq!(remembered(&path, &found).expect("settled"), Some(expected));
            assert!(!pending_file(&path).exists(), "settled either way");
            assert_eq!(read_file(&path).expect("read"), Some(expected));
            assert_eq!(judge(found, Some(expected), false), Verdict::Serve);
        }
    }
}
