//! `orders import` (issue 15): an export ([`ExportedEvent`] lines, then its [`ExportEnd`])
//! becomes the store of a data directory whose store holds no event.
//!
//! [`load`] is the part every backend shares: it reads the export a line at a time and proves
//! each event through the domain before it goes into the store's import transaction
//! ([`Store::import`]) — positions 1, 2, 3 ... without gaps, each event id once, each stream's
//! versions without gaps or repeats, each event what its aggregate's rules record on the state
//! before it (the checker's proof, [`Aggregate::prove`]), an idempotency key once and only on the
//! event that places an order, no field in `data` its event does not have, a decline's reason a
//! terminal can show. The export's end line must come, and say that it ends this log: an export
//! cut short ends on a whole line too. Then it proves what no line alone can, as the checker
//! does: that the three contexts of each order agree (an export cut in the middle of a commit
//! fails here, at the last line of the first order it cut). The first line that fails names
//! itself and nothing is kept. Each event is projected into the read model as it goes in, and at
//! the end the saga steps the log leaves open are opened (a payment awaiting its decision, a
//! delivery awaiting its time), all in the same transaction. It holds a few words per order and
//! per event id, not the events.
//!
//! [`import`] is SQLite's: with no daemon serving the data directory (its lock is held), the
//! export is loaded into a new database staged beside the store, with its read model, and given
//! a new identity. Only then does it take the place of the empty store, as a restore does
//! ([`crate::restore`]). The daemon carries the open steps out when it starts: a delivery already
//! due goes at once. (The whole check is not run again: it would prove the same rules a second
//! time, and took a third of the import's time. `orders check` does it.)

use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, bail};
use jiff::Timestamp;
use orders_shared::protocol::{Cursor, ExportedEvent, IdempotencyKey, ImportReport};
use orders_shared::{
    Aggregate, Delivery, DomainEvent, Order, OrderEvent, OrderId, Payment, PaymentEvent, StreamId, StreamKind,
};
use uuid::Uuid;

use crate::check::{Contexts, contexts_agree};
use crate::lock::DataDirLock;
use crate::paths::Paths;
use crate::restore;
use crate::store::postgres::{PgStore, Target};
use crate::store::sqlite::SqliteStore;
use crate::store::{
    ImportTx, Metadata, Position, RecordedEvent, Store, StoreError, StoredEvent, Version, cursor,
};

/// The longest line read: an event is a few hundred bytes.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The longest `data` of an event: a user is at most 128 characters, a decline's reason at most
/// [`MAX_REASON_BYTES`] (so that an export of an import never outgrows [`MAX_LINE_BYTES`]).
const MAX_DATA_BYTES: usize = 4096;

/// The longest reason of a declined payment.
const MAX_REASON_BYTES: usize = 1024;

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A line that is not a legal next event of the log.
    #[error("line {line}: {message}")]
    Line { line: u64, message: String },
    #[error("the store holds {0} events already; an import goes into an empty store")]
    NotEmpty(Position),
    /// The input ended before the export's end line.
    #[error("{0}")]
    CutShort(String),
    #[error("cannot read the input at line {line}")]
    Read {
        line: u64,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a load put into a store.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    pub events: u64,
    pub orders: u64,
    pub open_payments: u64,
    pub open_deliveries: u64,
}

/// Loads the export `input` into `store`, which must hold no event, in one transaction: all of
/// it, or (on the first line that is not a legal next event, or any failure) nothing.
pub fn load(store: &mut dyn Store, input: &mut dyn BufRead) -> Result<Loaded, ImportError> {
    let mut importer = Importer::default();
    let mut refused = None;
    let kept = store.import(&mut |tx| match importer.run(tx, input) {
        Ok(()) => Ok(true),
        Err(ImportError::Store(error)) => Err(error),
        Err(error) => {
            refused = Some(error);
            Ok(false)
        }
    })?;
    match refused {
        Some(error) => Err(error),
        None if kept => Ok(importer.loaded),
        None => unreachable!("a load that keeps nothing says why"),
    }
}

/// What the import knows of the log so far.
#[derive(Default)]
struct Importer {
    /// The number of the line being read (1 for the first).
    line: u64,
    event_ids: HashSet<Uuid>,
    keys: HashSet<String>,
    orders: HashMap<OrderId, Folds>,
    loaded: Loaded,
    /// Whether the last line read was an end line: an export is one or more pieces (`--to`,
    /// then `--from` its `next`), each closed by its end line.
    ended: bool,
    /// The events of the piece being read (since the last end line).
    piece_events: u64,
    /// Whether the line being read ended with a line break (one cut short does not).
    complete: bool,
}

/// One order's three streams, folded so far: what their agreement depends on, each stream's
/// last version, when its payment was requested (the open step's time) and its last line.
#[derive(Default)]
struct Folds {
    contexts: Contexts,
    versions: [Version; 3],
    requested_at: Option<Timestamp>,
    last_line: u64,
}

impl Importer {
    fn run(&mut self, tx: &mut dyn ImportTx, input: &mut dyn BufRead) -> Result<(), ImportError> {
        let head = tx.head()?;
        if head != Position::START {
            return Err(ImportError::NotEmpty(head));
        }
        let mut text = Vec::new();
        while self.next_line(input, &mut text)? {
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let line = self.line;
            let refused = |message| ImportError::Line { line, message };
            let Some((stored, event)) = self.event(&text).map_err(refused)? else {
                (self.ended, self.piece_events) = (true, 0);
                continue;
            };
            self.ended = false;
            self.piece_events += 1;
            tx.insert(&stored)?;
            tx.project(&RecordedEvent {
                position: stored.position,
                event_id: stored.event_id,
                stream: stored.stream,
                version: stored.version,
                recorded_at: stored.recorded_at,
                metadata: stored.metadata,
                event,
            })?;
            self.loaded.events += 1;
        }
        if !self.ended {
            let lines = self.line - 1;
            return Err(ImportError::CutShort(if lines == 0 {
                "the input is empty: there is no export to import".to_owned()
            } else {
                format!(
                    "the input ends at line {lines} without the export's end line ({{\"end\":...}}): the \
                     export was cut short (interrupted, or cut with `head`)"
                )
            }));
        }
        self.finish(tx)?;
        Ok(())
    }

    /// Reads the next line into `text` (without its newline); `false` at the end.
    fn next_line(&mut self, input: &mut dyn BufRead, text: &mut Vec<u8>) -> Result<bool, ImportError> {
        text.clear();
        self.line += 1;
        let line = self.line;
        let limit = u64::try_from(MAX_LINE_BYTES).unwrap_or(u64::MAX) + 1;
        let read = io::Read::take(&mut *input, limit)
            .read_until(b'\n', text)
            .map_err(|source| ImportError::Read { line, source })?;
        if read == 0 {
            return Ok(false);
        }
        self.complete = text.last() == Some(&b'\n');
        if self.complete {
            text.pop();
        } else if text.len() > MAX_LINE_BYTES {
            return Err(ImportError::Line {
                line,
                message: format!(
                    "the line is longer than {} MiB: no event is that long",
                    MAX_LINE_BYTES >> 20
                ),
            });
        }
        if line == 1 {
            if text.starts_with(&[0x1f, 0x8b]) {
                return Err(ImportError::Line {
                    line,
                    message: "the input is gzip-compressed: `gunzip -c FILE | orders import -`".to_owned(),
                });
            }
            // A byte order mark, as some editors write one.
            if text.starts_with("\u{feff}".as_bytes()) {
                text.drain(..3);
            }
        }
        Ok(true)
    }

    /// The event of one line, as stored and as read, proven the legal next one of the log;
    /// `None` for the export's end line, once it is proven to end this log.
    fn event(&mut self, text: &[u8]) -> Result<Option<(StoredEvent, DomainEvent)>, String> {
        let text = text.trim_ascii();
        if text.first() != Some(&b'{') {
            return Err(
                "not an exported event: each line is a JSON object, as `orders export` writes".to_owned()
            );
        }
        let exported: ExportedEvent = match serde_json::from_slice(text) {
            Ok(exported) => exported,
            Err(_) if is_end_line(text) => {
                let EndLine { end } = serde_json::from_slice(text)
                    .map_err(|e| format!("the export's end line is malformed: {}", serde_words(&e)))?;
                self.end(&end)?;
                return Ok(None);
            }
            Err(error) => return Err(self.not_an_event(text, &error)),
        };
        let position = Position::new(exported.position);
        self.next_position(position)?;
        if !self.event_ids.insert(exported.event_id) {
            return Err(format!("event id {} is there twice", exported.event_id));
        }
        let data = exported.data.get();
        let event = read_data(&exported.event_type, exported.schema_version, data)?;
        let stream = exported.stream;
        let version = Version::new(exported.version);
        let folds = self.orders.entry(stream.order).or_default();
        let contexts = &mut folds.contexts;
        let [order, payment, delivery] = &mut folds.versions;
        match stream.kind {
            StreamKind::Order => advance(&mut contexts.order, order, stream, version, &event)?,
            StreamKind::Payment => advance(&mut contexts.payment, payment, stream, version, &event)?,
            StreamKind::Delivery => advance(&mut contexts.delivery, delivery, stream, version, &event)?,
        }
        contexts.note(&event);
        if let DomainEvent::Payment(PaymentEvent::Requested { .. }) = event {
            folds.requested_at = Some(exported.recorded_at);
        }
        folds.last_line = self.line;
        let metadata = exported.metadata;
        if let Some(key) = &metadata.idempotency_key {
            self.idempotency_key(key, &event)?;
        }
        let stored = StoredEvent {
            position,
            event_id: exported.event_id,
            stream,
            version,
            event_type: exported.event_type,
            schema_version: exported.schema_version,
            payload: data.to_owned(),
            metadata: Metadata {
                correlation_id: metadata.correlation_id,
                causation_id: metadata.causation_id,
                idempotency_key: metadata.idempotency_key,
            },
            recorded_at: exported.recorded_at,
        };
        Ok(Some((stored, event)))
    }

    /// The last position loaded (positions are dense from 1: the events loaded count them).
    fn head(&self) -> Position {
        Position::new(i64::try_from(self.loaded.events).unwrap_or(i64::MAX))
    }

    /// Proves `position` the next one of the log.
    fn next_position(&self, position: Position) -> Result<(), String> {
        let due = self.head().next();
        if position == due {
            return Ok(());
        }
        Err(if position < Position::START.next() {
            format!("position {position} is no position: the log's positions are 1, 2, 3 ...")
        } else if position <= self.head() {
            format!("position {position} is there twice (or out of order): {due} was due")
        } else if self.head() == Position::START {
            format!(
                "the log starts at position {position}: an import is a whole log from position 1 \
                 (an export with --from is only part of one)"
            )
        } else {
            format!(
                "position {position} where {due} was due: positions {due} to {} are missing",
                position.get() - 1
            )
        })
    }

    /// Proves an idempotency key sound, on the event that places an order, and new.
    fn idempotency_key(&mut self, key: &str, event: &DomainEvent) -> Result<(), String> {
        if !matches!(event, DomainEvent::Order(OrderEvent::Placed { .. })) {
            return Err(format!(
                "an idempotency key on a {} event: only the event that places an order carries one",
                event.event_type()
            ));
        }
        IdempotencyKey::try_from(key.to_owned()).map_err(|e| format!("idempotency key: {e}"))?;
        if !self.keys.insert(key.to_owned()) {
            return Err(format!("the idempotency key '{key}' is there twice"));
        }
        Ok(())
    }

    /// Proves that an end line closes the piece read since the last one (the whole export, but
    /// for pieces joined one after the other).
    fn end(&self, end: &EndOfExport) -> Result<(), String> {
        let events = self.piece_events;
        let read = EndOfExport {
            events,
            first: (events > 0).then(|| cursor(Position::new(self.head().get() - events as i64 + 1))),
            last: (events > 0).then(|| cursor(self.head())),
            next: cursor(self.head().next()),
        };
        if *end != read {
            let range = |end: &EndOfExport| match (&end.first, &end.last) {
                (Some(first), Some(last)) => {
                    format!("{} events, {first} to {last}, then {}", end.events, end.next)
                }
                _ => format!("{} events, then {}", end.events, end.next),
            };
            return Err(format!(
                "the export's end line says {}, but what came before it is {}: lines are missing or it \
                 was edited",
                range(end),
                range(&read)
            ));
        }
        Ok(())
    }

    /// Why a line is not an exported event.
    fn not_an_event(&self, text: &[u8], error: &serde_json::Error) -> String {
        // The input's last line, with no line break after it, and its JSON unfinished: cut.
        let unfinished = || serde_json::from_slice::<serde::de::IgnoredAny>(text).is_err_and(|e| e.is_eof());
        if !self.complete && unfinished() {
            return "the line is cut short: the export was cut in the middle of it".to_owned();
        }
        let hint = if error.is_eof() {
            " — an export has one event per line (`jq -c .` puts a pretty-printed one back on lines)"
        } else {
            ""
        };
        format!("not an exported event: {}{hint}", serde_words(error))
    }

    /// Proves that each order's three contexts agree where the log ends, as the checker does
    /// (the first order that fails, by its last line, is the refusal); then opens the saga steps
    /// the log leaves open, and counts the orders.
    fn finish(&mut self, tx: &mut dyn ImportTx) -> Result<(), ImportError> {
        let mut refusal: Option<(u64, String)> = None;
        for (id, folds) in &self.orders {
            if refusal.as_ref().is_some_and(|(line, _)| *line < folds.last_line) {
                continue;
            }
            let mut disagreement = None;
            if matches!(folds.contexts.order, Order::Absent) {
                disagreement = Some("has no order stream".to_owned());
            }
            contexts_agree(&folds.contexts, &mut |problem| {
                disagreement.get_or_insert_with(|| problem.to_owned());
            });
            if let Delivery::Scheduled { due_at } = folds.contexts.delivery
                && due_at < Timestamp::UNIX_EPOCH
            {
                disagreement =
                    Some(format!("its delivery is due at {due_at}, before 1970: no daemon writes that"));
            }
            if let Some(problem) = disagreement {
                refusal = Some((folds.last_line, format!("order {id} (this is its last line): {problem}")));
            }
        }
        if let Some((line, message)) = refusal {
            return Err(ImportError::Line { line, message });
        }
        for (id, folds) in &self.orders {
            self.loaded.orders += 1;
            if let (Payment::Requested { amount }, Some(at)) = (&folds.contexts.payment, folds.requested_at) {
                tx.open_payment_request(*id, *amount, at)?;
                self.loaded.open_payments += 1;
            }
            if let Delivery::Scheduled { due_at } = folds.contexts.delivery {
                tx.set_delivery_timer(*id, due_at)?;
                self.loaded.open_deliveries += 1;
            }
        }
        Ok(())
    }
}

/// serde's words for an error, without its "line 1" (the line is ours).
fn serde_words(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let message = message.split(" at line 1 column").next().unwrap_or(&message);
    format!("{message} (at column {})", error.column())
}

/// Whether a line that is no event is meant as an end line: an object with an `end` key.
fn is_end_line(text: &[u8]) -> bool {
    matches!(serde_json::from_slice(text), Ok(serde_json::Value::Object(fields)) if fields.contains_key("end"))
}

/// An end line as import reads it: strictly (the protocol's summary is read leniently, for
/// newer daemons; a file is not).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EndLine {
    end: EndOfExport,
}

#[derive(Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EndOfExport {
    events: u64,
    first: Option<Cursor>,
    last: Option<Cursor>,
    next: Cursor,
}

/// The event an exported line's data holds, once proven something this build writes: not too
/// long, decoding, with no field its event does not have, a decline's reason a terminal can show.
fn read_data(event_type: &str, schema_version: u32, data: &str) -> Result<DomainEvent, String> {
    if data.len() > MAX_DATA_BYTES {
        return Err(format!(
            "its data is {} bytes long: no event's is longer than {MAX_DATA_BYTES}",
            data.len()
        ));
    }
    let event = DomainEvent::decode(event_type, schema_version, data).map_err(|e| e.to_string())?;
    if schema_version == event.schema_version() {
        known_fields_only(event_type, data, &event)?;
    }
    if let DomainEvent::Payment(PaymentEvent::Declined { reason }) = &event {
        sound_reason(reason)?;
    }
    Ok(event)
}

/// Refuses data with a field its event does not have (in the current schema version): decoding
/// alone ignores one, and it would be kept, unseen, for ever.
fn known_fields_only(event_type: &str, data: &str, event: &DomainEvent) -> Result<(), String> {
    let fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(data).map_err(|e| format!("its data is no JSON object: {e}"))?;
    let serde_json::Value::Object(known) = event.payload_value() else { return Ok(()) };
    match fields.keys().find(|field| !known.contains_key(*field)) {
        Some(field) => Err(format!("its data has a field {field:?}, which no {event_type} event has")),
        None => Ok(()),
    }
}

/// A payment provider's reason for a decline, as a terminal may show it: printable, not empty,
/// at most [`MAX_REASON_BYTES`].
fn sound_reason(reason: &str) -> Result<(), String> {
    if reason.is_empty()
        || reason.len() > MAX_REASON_BYTES
        || reason.chars().any(orders_shared::text::is_unsafe)
    {
        return Err(format!(
            "a decline's reason is 1 to {MAX_REASON_BYTES} bytes of printable characters, not {reason:?}"
        ));
    }
    Ok(())
}

/// Folds one event into its stream's aggregate, once it is proven the stream's legal next one.
fn advance<A: Aggregate>(
    state: &mut A,
    last: &mut Version,
    stream: StreamId,
    version: Version,
    event: &DomainEvent,
) -> Result<(), String> {
    if version != last.next() {
        return Err(if version < Version::NONE.next() {
            format!("{stream}: version {version} is no version (a stream's are 1, 2, 3 ...)")
        } else if version <= *last {
            format!("{stream} has a version {version} already")
        } else {
            format!("{stream} jumps to version {version} where {} was due", last.next())
        });
    }
    let Some(event) = A::event_of(event) else {
        return Err(format!("a {} event cannot be in {stream}", event.event_type()));
    };
    state.prove(event).map_err(|illegal| format!("{stream} v{version}: {illegal}"))?;
    *state = std::mem::take(state).evolve(event);
    *last = version;
    Ok(())
}

/// Imports the export read from `input` (the file `from`, or standard input) into the data
/// directory of `paths`, whose store must hold no event, or into the PostgreSQL database
/// `postgres`, which must hold none either.
pub fn import(
    paths: &Paths,
    postgres: Option<&Target>,
    from: Option<&Path>,
    input: &mut dyn BufRead,
) -> anyhow::Result<ImportReport> {
    let started = Instant::now();
    paths.ensure_data_dir()?;
    let _lock = DataDirLock::acquire_for(paths, Some("import"))?;
    if let Some(target) = postgres {
        return import_into_postgres(paths, target, from, input, started);
    }
    restore::remove_leftovers(paths, from);
    let database = paths.database();
    refuse_unless_empty(&database)?;
    let staged = restore::sibling(&database, &format!("importing-{}", Uuid::now_v7().simple()));
    let prepared = prepare(&staged, input);
    let (loaded, store_id, head) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => {
            restore::remove_database(&staged);
            return Err(error);
        }
    };
    // The store it replaces holds no event: nothing is kept aside. What SQLite keeps beside it
    // goes first (a WAL beside the new database would be read as its own); then the rename
    // replaces the empty store at once: whatever instant the import dies, the data directory
    // holds the empty store or the imported one.
    restore::remove_beside(&database);
    restore::put_in_place(paths, &staged, store_id, head)?;
    Ok(ImportReport {
        from: from.map_or_else(|| "-".to_owned(), |from| from.display().to_string()),
        database: database.display().to_string(),
        events: loaded.events,
        orders: loaded.orders,
        open_payments: loaded.open_payments,
        open_deliveries: loaded.open_deliveries,
        store_id: store_id.to_string(),
        duration_ms: started.elapsed().as_millis().try_into().unwrap_or(u64::MAX),
    })
}

/// An import into PostgreSQL: in one transaction of the database, so that a failed import leaves
/// it empty; the data directory remembers the new store's identity, as after any import.
fn import_into_postgres(
    paths: &Paths,
    target: &Target,
    from: Option<&Path>,
    input: &mut dyn BufRead,
    started: Instant,
) -> anyhow::Result<ImportReport> {
    let database = target.describe();
    // Takes the one-daemon lock: no daemon serves the database while it is loaded.
    let mut store = PgStore::open(target).with_context(|| format!("cannot open {database}"))?;
    store.migrate()?;
    let head = store.head()?;
    if head != Position::START {
        bail!(
            "the database {database} holds {head} events; an import goes into an empty store (another \
             database, or drop that one's tables first)"
        );
    }
    let loaded = load(&mut store, input)?;
    let store_id = store.ensure_identity(true)?;
    let head = store.head()?;
    drop(store);
    restore::remember(paths, store_id, head)?;
    Ok(ImportReport {
        from: from.map_or_else(|| "-".to_owned(), |from| from.display().to_string()),
        database,
        events: loaded.events,
        orders: loaded.orders,
        open_payments: loaded.open_payments,
        open_deliveries: loaded.open_deliveries,
        store_id: store_id.to_string(),
        duration_ms: started.elapsed().as_millis().try_into().unwrap_or(u64::MAX),
    })
}

/// Refuses a data directory whose store holds events.
fn refuse_unless_empty(database: &Path) -> anyhow::Result<()> {
    if !database.exists() {
        return Ok(());
    }
    let mut store = SqliteStore::open(database)
        .with_context(|| format!("cannot open the store at {}", database.display()))?;
    let head = store.head()?;
    if head != Position::START {
        bail!(
            "the store at {} holds {head} events; an import goes into an empty store (another \
             --data-dir, or move that store away first)",
            database.display()
        );
    }
    Ok(())
}

/// Loads the export into a new database at `staged`, catches its read model up, gives it a new
/// identity and checks it.
fn prepare(
    staged: &Path,
    input: &mut dyn BufRead,
) -> anyhow::Result<(Loaded, crate::identity::StoreId, Position)> {
    let mut store = SqliteStore::open(staged)?;
    store.migrate()?;
    let loaded = load(&mut store, input)?;
    let store_id = store.ensure_identity(true)?;
    let head = store.head()?;
    Ok((loaded, store_id, head))
}

#[cfg(test)]
mod tests;
