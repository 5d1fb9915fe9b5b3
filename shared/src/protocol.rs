//! The wire protocol between the `orders` client and the daemon: newline-delimited JSON.
//!
//! A request is one line, `{"v": 2, "store": "/home/alice/.local/share/orders", "cmd": "create", ...}`;
//! the daemon answers with one line,
//! `{"ok": true, "data": ...}` or `{"ok": false, "error": {"code": ..., "message": ...}}`.
//! `docs/PROTOCOL.md` is the prose version of this module.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::order::{CancelReason, OrderId, OrderStatus, Total, UserId};

/// Bumped on any change a peer of the previous version would misread. Version 2 (issue 12): every
/// request names its `store`, unknown fields and repeated keys are refused (issue 11), and the
/// `events` cursor is an opaque string.
pub const PROTOCOL_VERSION: u32 = 2;

/// The longest request line the daemon reads, in bytes.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// A request as sent on the wire: the protocol version and the store it is meant for, beside the
/// command.
#[derive(Clone, Debug, Serialize)]
pub struct Envelope<'a> {
    pub v: u32,
    /// The store the client resolved: for SQLite, its data directory as an absolute path
    /// (canonical when it exists). A daemon serving another store answers `wrong_store` (issue 12).
    pub store: &'a str,
    #[serde(flatten)]
    pub request: &'a Request,
}

/// A request read from the wire, with the store it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addressed {
    pub store: String,
    pub request: Request,
}

/// Every command the daemon understands, tagged by `cmd`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Create(CreateRequest),
    Show(ShowRequest),
    List(ListRequest),
    Cancel(CancelRequest),
    Wait(WaitRequest),
    History(HistoryRequest),
    Watch(WatchRequest),
    Events(EventsRequest),
    Replay(ReplayRequest),
    Check(CheckRequest),
    Status(StatusRequest),
    Shutdown(ShutdownRequest),
}

impl Request {
    /// The `cmd` tag, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Create(_) => "create",
            Request::Show(_) => "show",
            Request::List(_) => "list",
            Request::Cancel(_) => "cancel",
            Request::Wait(_) => "wait",
            Request::History(_) => "history",
            Request::Watch(_) => "watch",
            Request::Events(_) => "events",
            Request::Replay(_) => "replay",
            Request::Check(_) => "check",
            Request::Status(_) => "status",
            Request::Shutdown(_) => "shutdown",
        }
    }

    /// Reads one request line. The version is checked before the command, so that a peer of
    /// another version gets `protocol_mismatch` rather than a confusing decoding error. The store
    /// it names is returned beside it, for the daemon to compare with its own.
    ///
    /// Strict, so that a typo or a confused client is told rather than half-obeyed (issue 11):
    /// a key named twice, at any depth, is refused (serde_json alone keeps the last one, and
    /// `"total":3,"total":4` placed an order of 4), and so is any field a command does not
    /// know, the field-less commands included.
    pub fn parse(line: &[u8]) -> Result<Addressed, ErrorBody> {
        let invalid = |message: String| ErrorBody::new(ErrorCode::InvalidRequest, message);
        let text =
            std::str::from_utf8(line).map_err(|_| invalid("the request is not valid UTF-8".to_owned()))?;
        // First the keys, because a `Value` keeps only the last of two.
        serde_json::from_str::<UniqueKeys>(text).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => invalid(format!("invalid request: {e}")),
            _ => invalid(format!("the request is not valid JSON: {e}")),
        })?;
        let value: Value =
            serde_json::from_str(text).map_err(|e| invalid(format!("the request is not valid JSON: {e}")))?;
        let Value::Object(mut fields) = value else {
            return Err(invalid(format!(
                "the request must be a JSON object such as \
                 {{\"v\":{PROTOCOL_VERSION},\"store\":\"/path/to/data\",\"cmd\":\"status\"}}"
            )));
        };
        match fields.remove("v") {
            Some(Value::Number(v)) if v.as_u64() == Some(u64::from(PROTOCOL_VERSION)) => {}
            Some(Value::Number(v)) => {
                return Err(ErrorBody::new(
                    ErrorCode::ProtocolMismatch,
                    format!(
                        "the client speaks protocol version {v}, this daemon speaks version {PROTOCOL_VERSION}"
                    ),
                ));
            }
            Some(_) => return Err(invalid("the field \"v\" must be a number".to_owned())),
            None => return Err(invalid("the request has no protocol version (the field \"v\")".to_owned())),
        }
        let store = match fields.remove("store") {
            Some(Value::String(store)) if !store.is_empty() => store,
            Some(_) => {
                return Err(invalid("the field \"store\" must be a non-empty string".to_owned()));
            }
            None => {
                return Err(invalid(
                    "the request names no store (the field \"store\": the data directory it is meant for)"
                        .to_owned(),
                ));
            }
        };
        match fields.get("cmd") {
            Some(Value::String(_)) => {}
            Some(_) => return Err(invalid("the field \"cmd\" must be a string".to_owned())),
            None => return Err(invalid("the request has no \"cmd\" field".to_owned())),
        }
        let request = serde_json::from_value(Value::Object(fields))
            .map_err(|e| invalid(format!("invalid request: {e}")))?;
        Ok(Addressed { store, request })
    }
}

/// A JSON document in which no object names a key twice, at any depth; its content is not kept.
/// Hand-written because serde_json has no such setting, and the crates that add one build a
/// whole `Value` tree or pull in a policy engine: this is one visitor over the parser's events.
struct UniqueKeys;

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::DeserializeSeed::deserialize(Unique { path: "" }, deserializer)
    }
}

/// Checks one value found at `path` (`""` for the document, then `total`, `a.b`, `a[2]`).
#[derive(Clone, Copy)]
struct Unique<'p> {
    path: &'p str,
}

impl<'de> serde::de::DeserializeSeed<'de> for Unique<'_> {
    type Value = UniqueKeys;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<UniqueKeys, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Unique<'_> {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_i64<E>(self, _: i64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_u64<E>(self, _: u64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_f64<E>(self, _: f64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_str<E>(self, _: &str) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut items: A) -> Result<UniqueKeys, A::Error> {
        let mut index = 0_usize;
        loop {
            let path = format!("{}[{index}]", self.path);
            if items.next_element_seed(Unique { path: &path })?.is_none() {
                return Ok(UniqueKeys);
            }
            index += 1;
        }
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut entries: A) -> Result<UniqueKeys, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = entries.next_key::<String>()? {
            let path = if self.path.is_empty() { key.clone() } else { format!("{}.{key}", self.path) };
            if !seen.insert(key) {
                return Err(serde::de::Error::custom(format_args!("the field \"{path}\" is given twice")));
            }
            entries.next_value_seed(Unique { path: &path })?;
        }
        Ok(UniqueKeys)
    }
}

/// `check`, `status` and `shutdown` take no fields; a struct each, so that an unknown field is
/// refused (serde ignores the fields of a unit variant of an internally tagged enum).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {}

/// See [`CheckRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {}

/// See [`CheckRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownRequest {}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub user: UserId,
    pub total: Total,
    /// A retry key: the same key with the same user and total returns the order it created the
    /// first time instead of creating another; with anything else it is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<IdempotencyKey>,
}

/// A client's retry key for `create`: 1 to 128 printable characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = String;

    fn try_from(key: String) -> Result<Self, Self::Error> {
        let chars = key.chars().count();
        if chars == 0 || chars > 128 || key.chars().any(char::is_control) {
            return Err(format!("invalid idempotency key '{key}': it must be 1 to 128 printable characters"));
        }
        Ok(Self(key))
    }
}

impl std::str::FromStr for IdempotencyKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::try_from(s.to_owned())
    }
}

impl From<IdempotencyKey> for String {
    fn from(key: IdempotencyKey) -> Self {
        key.0
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowRequest {
    pub id: OrderId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    pub id: OrderId,
}

/// Waits until an order has settled (delivered or cancelled), at most `timeout_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitRequest {
    pub id: OrderId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

impl WaitRequest {
    pub const DEFAULT_TIMEOUT_MS: u64 = 60_000;
}

/// Every event of one order, from all its contexts, in log order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryRequest {
    pub id: OrderId,
}

/// Streams an order's events as they are recorded (earlier ones first), until it settles.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchRequest {
    pub id: OrderId,
}

/// The global event log from a cursor: a page, or (`follow`) a stream that never ends.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsRequest {
    /// Where to start: the event with this cursor, or the first one after it; the start of the
    /// log when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Cursor>,
    /// At most this many events in the page; the daemon caps it at [`EventsRequest::MAX_LIMIT`].
    /// With `follow`, the stream ends after this many events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Keep streaming new events as they are appended, one `event` line each.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub follow: bool,
}

impl EventsRequest {
    pub const MAX_LIMIT: u64 = 10_000;
}

/// A place in the event log, opaque to clients (issue 12): every event carries its own, and a
/// page says where to read on. On SQLite it is the decimal position, but clients must not rely
/// on that: on PostgreSQL it carries the transaction id too. Compared by the store, never here.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cursor(String);

impl Cursor {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Cursor {
    type Error = String;

    fn try_from(cursor: String) -> Result<Self, Self::Error> {
        if cursor.is_empty() || cursor.len() > 256 || cursor.chars().any(char::is_control) {
            return Err(format!(
                "invalid cursor '{cursor}': use one that `orders events` printed (its `cursor` field)"
            ));
        }
        Ok(Self(cursor))
    }
}

impl std::str::FromStr for Cursor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::try_from(s.to_owned())
    }
}

impl From<Cursor> for String {
    fn from(cursor: Cursor) -> Self {
        cursor.0
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A page of the event log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPage {
    pub events: Vec<EventView>,
    /// Where to read on: pass it as `from` for the events after this page.
    pub next: Cursor,
    /// The position of the newest event in the log when the page was read.
    pub head: i64,
}

/// Rebuilds the read model from the log (`check`: into a scratch table, compared, not swapped).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub check: bool,
}

/// How far a replay has come; sent as `progress` lines while it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayProgress {
    pub applied: u64,
    /// The log's length when the replay started (it may grow meanwhile).
    pub total: u64,
    pub elapsed_ms: u64,
}

/// What a replay did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplayReport {
    /// `true` for `replay --check`: nothing was swapped.
    pub check: bool,
    /// Events applied to the new read model.
    pub events: u64,
    /// Orders in the new read model.
    pub orders: u64,
    pub duration_ms: u64,
    pub events_per_second: f64,
    /// With `check`: how many orders differ between the live and the rebuilt read model.
    pub differences: u64,
    /// With `check`: the first differing orders, each as stored live and as rebuilt (`null` when
    /// missing on that side).
    pub examples: Vec<Difference>,
}

/// What `check` found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    pub events: u64,
    pub orders: u64,
    /// How many problems it found; 0 means the log and everything derived from it are sound.
    pub problems: u64,
    /// The first problems (at most 100).
    pub listed: Vec<CheckProblem>,
    pub duration_ms: u64,
    /// The database file is damaged (SQLite's integrity check, or damage met while reading): the
    /// check stopped there, and `events` and `orders` count nothing (issue 12).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub damaged: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckProblem {
    /// The order concerned, when there is one.
    pub order: Option<String>,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    pub id: String,
    pub live: Option<Value>,
    pub rebuilt: Option<Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListRequest {
    /// Only this customer's orders; everyone's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserId>,
    /// At most this many orders, newest first; the daemon caps it at [`ListRequest::MAX_LIMIT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Paging: only orders older than this one (the last of the previous page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<OrderId>,
    /// Only orders in this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<OrderStatus>,
    /// Only orders created at or after this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
}

impl ListRequest {
    pub const DEFAULT_LIMIT: u32 = 100;
    pub const MAX_LIMIT: u32 = 10_000;
}

/// One order as the read model shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    pub id: OrderId,
    pub user: String,
    pub total: i64,
    pub status: OrderStatus,
    /// Why it was cancelled; `null` unless it was.
    pub cancel_reason: Option<CancelReason>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub approved_at: Option<Timestamp>,
    pub delivered_at: Option<Timestamp>,
    pub cancelled_at: Option<Timestamp>,
}

/// One stored event, as `history` and `events` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventView {
    /// The event's place in the global log.
    pub position: i64,
    /// The event's place as `events` reads it: `from` this cursor starts at this event.
    pub cursor: Cursor,
    pub event_id: String,
    /// `order-<id>`, `payment-<id>` or `delivery-<id>`.
    pub stream: String,
    /// The event's place in its stream, from 1.
    pub version: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub recorded_at: Timestamp,
    /// The payload, in the current schema (older ones are upcast).
    pub data: Value,
    pub correlation_id: String,
    pub causation_id: String,
}

/// A page of orders, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPage {
    pub orders: Vec<OrderView>,
    /// More orders follow: ask again with `before` set to the last id of this page.
    pub more: bool,
}

/// What `status` reports about a running daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub pid: u32,
    pub version: String,
    pub protocol: u32,
    pub started_at: Timestamp,
    pub socket: String,
    pub data_dir: String,
    pub database: String,
    pub events: u64,
    pub orders: u64,
    /// Payments waiting for the provider's decision (open steps of the payment saga).
    pub pending_payments: u64,
    /// Deliveries scheduled and not yet due or done (open steps of the delivery saga).
    pub pending_deliveries: u64,
    pub log_file: String,
    /// Stored saga steps the daemon cannot carry out (kept in the database, not run; see
    /// [`StuckStep`]). Absent from older daemons, hence the defaults.
    #[serde(default)]
    pub stuck_steps: u64,
    /// The first few of them.
    #[serde(default)]
    pub stuck: Vec<StuckStep>,
    /// The identity of the store it serves (issue 12; absent from older daemons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_id: Option<String>,
    /// How far the daemon's clock is behind the newest recorded event, when that is more than a
    /// minute: new events are recorded no earlier than it (issue 12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_behind_ms: Option<u64>,
    /// `starting` until the daemon serves requests (issue 12); older daemons answered only once
    /// ready, hence the default. While starting, the counts above are 0: nothing is read yet.
    #[serde(default)]
    pub state: DaemonState,
    /// How far the start-up has come, while starting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartProgress>,
}

/// Whether a daemon serves requests yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DaemonState {
    /// It answers `status` and `shutdown`; everything else gets [`ErrorCode::Starting`].
    Starting,
    #[default]
    Ready,
}

/// How far a starting daemon has come: its step, and within it `applied` of `total` (events,
/// while the read model catches up; 0 of 0 in the other steps).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartProgress {
    pub step: StartStep,
    pub applied: u64,
    pub total: u64,
}

/// The steps of a start-up, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartStep {
    /// Opening the database and migrating its schema.
    OpeningStore,
    /// Applying the events the read model has not seen yet.
    CatchingUp,
    /// Reading the open saga steps and starting the writer.
    ResumingSagas,
    /// A step from a newer daemon.
    #[serde(other)]
    Unknown,
}

impl std::fmt::Display for StartProgress {
    /// `read model catching up, 1,234,000 of 4,900,000 events`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.step {
            StartStep::OpeningStore => f.write_str("opening the database"),
            StartStep::CatchingUp => write!(
                f,
                "read model catching up, {} of {} events",
                thousands(self.applied),
                thousands(self.total)
            ),
            StartStep::ResumingSagas => f.write_str("resuming the sagas"),
            StartStep::Unknown => f.write_str("starting"),
        }
    }
}

/// `4900000` as `4,900,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A stored saga step the daemon cannot carry out: a row that does not decode, a due time it
/// cannot represent, an order the step cannot find. The daemon serves everything else and keeps
/// the row, untouched, for a fixed build or a repair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StuckStep {
    /// `payment decision` or `delivery`.
    pub step: String,
    /// The order's id as stored (it may be the damaged part).
    pub order: String,
    /// What is wrong with it.
    pub problem: String,
}

/// One reply line: the final one of a request carries data or an error; a streaming request
/// (`events --follow`, `watch`, `replay`) sends event or progress lines before it.
///
/// On the wire it is `{"ok":true,"data":...}`, `{"ok":false,"error":{...}}`,
/// `{"ok":true,"event":{...}}` or `{"ok":true,"progress":{...}}`. A line with none of them, two of
/// them, or an `ok` that contradicts its payload does not parse; other fields are ignored, for
/// newer daemons.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Kept as the JSON text it is on the wire: written without an intermediate tree, and read
    /// by the client straight into the type it expects.
    Data(Box<RawValue>),
    Error(ErrorBody),
    Event(EventView),
    Progress(ReplayProgress),
}

impl Reply {
    pub fn data(data: impl Serialize) -> Reply {
        Reply::Data(raw(&data))
    }

    pub fn error(error: ErrorBody) -> Reply {
        Reply::Error(error)
    }

    pub fn event(event: EventView) -> Reply {
        Reply::Event(event)
    }

    pub fn progress(progress: ReplayProgress) -> Reply {
        Reply::Progress(progress)
    }

    /// The reply as one line, newline included.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("replies are plain serde structs");
        line.push('\n');
        line
    }

    /// The field that carries the payload on the wire.
    fn field(&self) -> &'static str {
        match self {
            Reply::Data(_) => "data",
            Reply::Error(_) => "error",
            Reply::Event(_) => "event",
            Reply::Progress(_) => "progress",
        }
    }
}

impl Serialize for Reply {
    /// `ok` first, then the one payload field.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut line = serializer.serialize_struct("Reply", 2)?;
        line.serialize_field("ok", &!matches!(self, Reply::Error(_)))?;
        let field = self.field();
        match self {
            Reply::Data(data) => line.serialize_field(field, data)?,
            Reply::Error(error) => line.serialize_field(field, error)?,
            Reply::Event(event) => line.serialize_field(field, event)?,
            Reply::Progress(progress) => line.serialize_field(field, progress)?,
        }
        line.end()
    }
}

impl<'de> Deserialize<'de> for Reply {
    /// A JSON object of one of the four shapes (a derived struct alone would take an array too).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Object;

        impl<'de> serde::de::Visitor<'de> for Object {
            type Value = WireReply;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a reply object such as {\"ok\":true,\"data\":...}")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, fields: A) -> Result<WireReply, A::Error> {
                WireReply::deserialize(serde::de::value::MapAccessDeserializer::new(fields))
            }
        }

        let wire = deserializer.deserialize_map(Object)?;
        Reply::try_from(wire).map_err(serde::de::Error::custom)
    }
}

/// A reply line as it is read, before it is known to be one of the [`Reply`] shapes.
#[derive(Deserialize)]
struct WireReply {
    ok: bool,
    /// Present is `Some`, even as `null`: `{"ok":true,"data":null}` is data.
    #[serde(default, deserialize_with = "present")]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<ErrorBody>,
    #[serde(default)]
    event: Option<EventView>,
    #[serde(default)]
    progress: Option<ReplayProgress>,
}

/// Reads a field that is present, whatever its value (`null` included).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(deserializer).map(Some)
}

impl TryFrom<WireReply> for Reply {
    type Error = String;

    fn try_from(wire: WireReply) -> Result<Self, String> {
        match wire {
            WireReply { ok: true, data: Some(data), error: None, event: None, progress: None } => {
                Ok(Reply::Data(data))
            }
            WireReply { ok: false, data: None, error: Some(error), event: None, progress: None } => {
                Ok(Reply::Error(error))
            }
            WireReply { ok: true, data: None, error: None, event: Some(event), progress: None } => {
                Ok(Reply::Event(event))
            }
            WireReply { ok: true, data: None, error: None, event: None, progress: Some(progress) } => {
                Ok(Reply::Progress(progress))
            }
            wire => Err(wire.refusal()),
        }
    }
}

impl WireReply {
    /// Why this line is none of the reply shapes.
    fn refusal(&self) -> String {
        const ONE_OF: &str = "a reply carries one of \"data\", \"error\", \"event\" or \"progress\"";
        let carried: Vec<String> = [
            ("data", self.data.is_some()),
            ("error", self.error.is_some()),
            ("event", self.event.is_some()),
            ("progress", self.progress.is_some()),
        ]
        .into_iter()
        .filter(|(_, carried)| *carried)
        .map(|(field, _)| format!("\"{field}\""))
        .collect();
        match carried.as_slice() {
            [] => format!("{ONE_OF}; this one carries none"),
            [field] => format!("a reply with {field} must say \"ok\":{}", !self.ok),
            fields => format!("{ONE_OF}; this one carries {}", fields.join(" and ")),
        }
    }
}

/// Serializes reply data to its JSON text.
pub fn raw(data: &impl Serialize) -> Box<RawValue> {
    serde_json::value::to_raw_value(data).expect("reply data is plain serde structs")
}

/// A refused request: a machine-readable code and a message for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    /// With `wrong_store`: the store this daemon serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served: Option<String>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), served: None }
    }

    /// The request names another store than the one this daemon serves (issue 12).
    pub fn wrong_store(served: &str, named: &str) -> Self {
        Self {
            code: ErrorCode::WrongStore,
            message: format!("this daemon serves {served}, not {named}"),
            served: Some(served.to_owned()),
        }
    }
}

/// What kind of failure a reply reports. Clients branch on it; the CLI maps it to an exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The line could not be read as a request: bad JSON, unknown command, wrong field types,
    /// or a value the domain refuses (an empty user, a total of 0); the message says which.
    InvalidRequest,
    /// No order with that id.
    NotFound,
    /// The business rules refuse it (cancelling a delivered order).
    Rejected,
    /// Client and daemon speak different protocol versions.
    ProtocolMismatch,
    /// The request names another store than the one this daemon serves; `served` names its own.
    WrongStore,
    /// The request line is longer than the daemon reads.
    TooLarge,
    /// The connecting process belongs to another user.
    PermissionDenied,
    /// The daemon has no room for this connection or request right now.
    Busy,
    /// The daemon cannot do it now (shutting down, storage failing); nothing was changed.
    Unavailable,
    /// A wait ran out of time; nothing was changed.
    Timeout,
    /// A bug or an unexpected storage error; the message says more.
    Internal,
    /// The daemon is starting (catching up its read model): nothing was done; ask again once
    /// `status` says `ready`. The message says how far it has come.
    Starting,
    /// A code from a newer daemon.
    #[serde(other)]
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Request, ErrorBody> {
        Request::parse(line.as_bytes()).map(|addressed| addressed.request)
    }

    fn code(line: &str) -> ErrorCode {
        parse(line).expect_err("refused").code
    }

    #[test]
    fn start_progress_reads_as_a_sentence() {
        let progress = StartProgress { step: StartStep::CatchingUp, applied: 1_234_000, total: 4_900_000 };
        assert_eq!(progress.to_string(), "read model catching up, 1,234,000 of 4,900,000 events");
        let small = StartProgress { step: StartStep::CatchingUp, applied: 0, total: 999 };
        assert_eq!(small.to_string(), "read model catching up, 0 of 999 events");
        let json = r#"{"step":"from_the_future","applied":0,"total":0}"#;
        let unknown: StartProgress = serde_json::from_str(json).expect("a newer step reads");
        assert_eq!(unknown.step, StartStep::Unknown);
    }

    #[test]
    fn a_request_is_its_envelope_read_back() {
        let request = Request::Create(CreateRequest {
            user: "alice".parse().expect("valid user"),
            total: Total::try_from(2).expect("valid total"),
            idempotency_key: None,
        });
        let line = serde_json::to_string(&Envelope { v: PROTOCOL_VERSION, store: "/s", request: &request })
            .expect("serializes");
        assert_eq!(line, r#"{"v":2,"store":"/s","cmd":"create","user":"alice","total":2}"#);
        assert_eq!(
            Request::parse(line.as_bytes()),
            Ok(Addressed { store: "/s".to_owned(), request: request.clone() })
        );
        assert_eq!(parse(&line), Ok(request));
        assert_eq!(parse(r#"{"v":2,"store":"/s","cmd":"status"}"#), Ok(Request::Status(StatusRequest {})));
    }

    #[test]
    fn malformed_requests_are_invalid_requests() {
        for line in [
            "",
            "nope",
            "[1,2]",
            "42",
            r#"{"cmd":"status"}"#,
            r#"{"v":"1","cmd":"status"}"#,
            r#"{"v":2,"store":"/s"}"#,
            r#"{"v":2,"store":"/s","cmd":7}"#,
            r#"{"v":2,"store":"/s","cmd":"teleport"}"#,
            r#"{"v":2,"store":"/s","cmd":"create","user":"alice"}"#,
            r#"{"v":2,"store":"/s","cmd":"create","user":"alice","total":"2"}"#,
            r#"{"v":2,"store":"/s","cmd":"create","user":"alice","total":2,"extra":true}"#,
            r#"{"v":2,"store":"/s","cmd":"show","id":"not-a-uuid"}"#,
        ] {
            assert_eq!(code(line), ErrorCode::InvalidRequest, "{line}");
        }
        assert_eq!(
            Request::parse(b"{\"v\":1,\"cmd\":\"status\xff\"}").expect_err("refused").code,
            ErrorCode::InvalidRequest
        );
    }

    /// One request of every command (a new command belongs here too).
    fn one_of_each() -> Vec<Request> {
        let id: OrderId = "019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6b".parse().expect("valid id");
        let requests = vec![
            Request::Create(CreateRequest {
                user: "alice".parse().expect("valid user"),
                total: Total::try_from(2).expect("valid total"),
                idempotency_key: None,
            }),
            Request::Show(ShowRequest { id }),
            Request::List(ListRequest::default()),
            Request::Cancel(CancelRequest { id }),
            Request::Wait(WaitRequest { id, timeout_ms: None }),
            Request::History(HistoryRequest { id }),
            Request::Watch(WatchRequest { id }),
            Request::Events(EventsRequest::default()),
            Request::Replay(ReplayRequest::default()),
            Request::Check(CheckRequest {}),
            Request::Status(StatusRequest {}),
            Request::Shutdown(ShutdownRequest {}),
        ];
        let names: std::collections::HashSet<_> = requests.iter().map(Request::name).collect();
        assert_eq!(names.len(), requests.len(), "one request per command");
        requests
    }

    fn line_of(request: &Request) -> String {
        serde_json::to_string(&Envelope { v: PROTOCOL_VERSION, store: "/s", request }).expect("serializes")
    }

    #[test]
    fn every_command_refuses_a_field_it_does_not_know() {
        for request in one_of_each() {
            let line = line_of(&request);
            assert_eq!(parse(&line), Ok(request.clone()), "{line}");
            let extra = format!("{},\"dry_run\":true}}", line.trim_end_matches('}'));
            let refused = parse(&extra).expect_err(&extra);
            assert_eq!(refused.code, ErrorCode::InvalidRequest, "{extra}");
            assert!(refused.message.contains("unknown field `dry_run`"), "{extra}: {}", refused.message);
        }
        // Issue 11: this one stopped the daemon.
        assert!(parse(r#"{"v":2,"store":"/s","cmd":"shutdown","dry_run":true}"#).is_err());
        assert!(parse(r#"{"v":2,"store":"/s","cmd":"status","extra":null}"#).is_err());
    }

    #[test]
    fn a_key_given_twice_is_refused_at_any_depth_and_named() {
        for (line, field) in [
            // Issue 11: this one placed an order of 4.
            (r#"{"v":2,"store":"/s","cmd":"create","user":"alice","total":3,"total":4}"#, "total"),
            (r#"{"v":2,"store":"/s","cmd":"create","user":"alice","total":4,"total":4}"#, "total"),
            (r#"{"v":2,"store":"/s","cmd":"create","user":"alice","total":2,"tot\u0061l":2}"#, "total"),
            (r#"{"v":2,"store":"/s","v":1,"cmd":"status"}"#, "v"),
            (r#"{"v":2,"store":"/s","cmd":"status","cmd":"shutdown"}"#, "cmd"),
            (r#"{"v":2,"store":"/s","cmd":"list","user":"a","user":"b"}"#, "user"),
            (r#"{"v":2,"store":"/s","cmd":"list","since":{"at":1,"at":2}}"#, "since.at"),
            (r#"{"v":2,"store":"/s","cmd":"list","x":[0,{"a":{"b":1,"b":1}}]}"#, "x[1].a.b"),
        ] {
            let refused = parse(line).expect_err(line);
            assert_eq!(refused.code, ErrorCode::InvalidRequest, "{line}");
            assert!(
                refused.message.contains(&format!("the field \"{field}\" is given twice")),
                "{line}: {}",
                refused.message
            );
        }
        // The same name in different objects is no duplicate.
        assert!(
            UniqueKeys::deserialize(&mut serde_json::Deserializer::from_str(
                r#"{"a":{"a":1},"b":[{"a":1},{"a":2}]}"#
            ))
            .is_ok()
        );
    }

    #[test]
    fn another_protocol_version_is_named_as_such() {
        // A client of version 1 (no store, a numeric cursor) is told, not misread (issue 12).
        for line in [r#"{"v":1,"cmd":"status"}"#, r#"{"v":1,"cmd":"events","from":5}"#] {
            let refused = parse(line).expect_err("refused");
            assert_eq!(refused.code, ErrorCode::ProtocolMismatch, "{line}");
            assert!(
                refused.message.contains("version 1") && refused.message.contains("version 2"),
                "{}",
                refused.message
            );
        }
    }

    #[test]
    fn every_request_names_its_store() {
        for (line, says) in [
            (r#"{"v":2,"cmd":"status"}"#, "names no store"),
            (r#"{"v":2,"store":"","cmd":"status"}"#, "non-empty string"),
            (r#"{"v":2,"store":7,"cmd":"status"}"#, "non-empty string"),
        ] {
            let refused = parse(line).expect_err(line);
            assert_eq!(refused.code, ErrorCode::InvalidRequest, "{line}");
            assert!(refused.message.contains(says), "{line}: {}", refused.message);
        }
    }

    #[test]
    fn a_cursor_is_a_string_and_pages_say_where_to_read_on() {
        let Request::Events(events) =
            parse(r#"{"v":2,"store":"/s","cmd":"events","from":"17"}"#).expect("parses")
        else {
            panic!("an events request");
        };
        assert_eq!(events.from.as_ref().map(Cursor::as_str), Some("17"));
        for line in [
            r#"{"v":2,"store":"/s","cmd":"events","from":17}"#,
            r#"{"v":2,"store":"/s","cmd":"events","from":""}"#,
        ] {
            assert_eq!(code(line), ErrorCode::InvalidRequest, "{line}");
        }
        let error = ErrorBody::wrong_store("/a", "/b");
        let text = serde_json::to_string(&error).expect("serializes");
        assert_eq!(text, r#"{"code":"wrong_store","message":"this daemon serves /a, not /b","served":"/a"}"#);
    }

    #[test]
    fn domain_values_are_validated_while_decoding() {
        for line in [
            r#"{"v":2,"store":"/s","cmd":"create","user":"","total":2}"#,
            r#"{"v":2,"store":"/s","cmd":"create","user":"alice","total":0}"#,
            r#"{"v":2,"store":"/s","cmd":"create","user":"alice","total":-1}"#,
            r#"{"v":2,"store":"/s","cmd":"create","user":"alice","total":2.5}"#,
            r#"{"v":2,"store":"/s","cmd":"create","user":"alice","total":9223372036854775808}"#,
        ] {
            assert!(parse(line).is_err(), "{line}");
        }
    }

    #[test]
    fn unknown_error_codes_from_a_newer_daemon_still_decode() {
        let body: ErrorBody =
            serde_json::from_str(r#"{"code":"quota_exceeded","message":"m"}"#).expect("decodes");
        assert_eq!(body.code, ErrorCode::Unknown);
    }

    fn event_view() -> EventView {
        EventView {
            position: 7,
            cursor: "7".parse().expect("valid cursor"),
            event_id: "019a6b2e-0000-7000-8000-000000000007".to_owned(),
            stream: "order-019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6b".to_owned(),
            version: 1,
            event_type: "OrderPlaced".to_owned(),
            recorded_at: "2026-11-25T21:51:03.114Z".parse().expect("valid time"),
            data: serde_json::json!({"user": "alice", "total": 2}),
            correlation_id: "c".to_owned(),
            causation_id: "d".to_owned(),
        }
    }

    fn read_reply(line: &str) -> Result<Reply, String> {
        serde_json::from_str(line).map_err(|e| e.to_string())
    }

    #[test]
    fn every_reply_is_written_as_before_and_read_back() {
        let event = concat!(
            r#"{"position":7,"cursor":"7","event_id":"019a6b2e-0000-7000-8000-000000000007","#,
            r#""stream":"order-019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6b","version":1,"type":"OrderPlaced","#,
            r#""recorded_at":"2026-11-25T21:51:03.114Z","data":{"total":2,"user":"alice"},"#,
            r#""correlation_id":"c","causation_id":"d"}"#
        );
        for (reply, line) in [
            (Reply::data(OrderPage { orders: vec![], more: false }), r#"{"ok":true,"data":{"orders":[],"more":false}}"#.to_owned()),
            (Reply::data(()), r#"{"ok":true,"data":null}"#.to_owned()),
            (
                Reply::error(ErrorBody::new(ErrorCode::NotFound, "no order x")),
                r#"{"ok":false,"error":{"code":"not_found","message":"no order x"}}"#.to_owned(),
            ),
            (
                Reply::error(ErrorBody::wrong_store("/a", "/b")),
                r#"{"ok":false,"error":{"code":"wrong_store","message":"this daemon serves /a, not /b","served":"/a"}}"#
                    .to_owned(),
            ),
            (Reply::event(event_view()), format!(r#"{{"ok":true,"event":{event}}}"#)),
            (
                Reply::progress(ReplayProgress { applied: 2_000, total: 4_900, elapsed_ms: 12 }),
                r#"{"ok":true,"progress":{"applied":2000,"total":4900,"elapsed_ms":12}}"#.to_owned(),
            ),
        ] {
            assert_eq!(reply.to_line(), format!("{line}\n"));
            let read = read_reply(&line).expect(&line);
            assert_eq!(read.to_line(), reply.to_line(), "{line}");
            match (&read, &reply) {
                (Reply::Data(read), Reply::Data(written)) => assert_eq!(read.get(), written.get()),
                (Reply::Error(read), Reply::Error(written)) => assert_eq!(read, written),
                (Reply::Event(read), Reply::Event(written)) => assert_eq!(read, written),
                (Reply::Progress(read), Reply::Progress(written)) => assert_eq!(read, written),
                _ => panic!("{line} read back as {read:?}"),
            }
        }
    }

    #[test]
    fn replies_of_other_daemons_are_read() {
        // The refusal a daemon of protocol version 1 sends this client.
        let old =
            r#"{"ok":false,"error":{"code":"protocol_mismatch","message":"this daemon speaks version 1"}}"#;
        let Ok(Reply::Error(error)) = read_reply(old) else { panic!("{old}") };
        assert_eq!((error.code, error.served), (ErrorCode::ProtocolMismatch, None));
        // A newer daemon's error code, and a field this build does not know, in any order.
        let newer = r#"{"error":{"code":"quota_exceeded","message":"m","extra":1},"ok":false,"trace":"t"}"#;
        let Ok(Reply::Error(error)) = read_reply(newer) else { panic!("{newer}") };
        assert_eq!(error.code, ErrorCode::Unknown);
        let Ok(Reply::Data(data)) = read_reply(r#"{"ok":true,"data":{"a":[1, 2]},"took_ms":3}"#) else {
            panic!("data with an unknown field")
        };
        assert_eq!(data.get(), r#"{"a":[1, 2]}"#);
    }

    #[test]
    fn a_reply_line_of_no_shape_or_two_is_refused_and_says_why() {
        let error = r#"{"code":"not_found","message":"m"}"#;
        for (line, says) in [
            (r#"{"ok":true}"#.to_owned(), "this one carries none"),
            (r#"{"ok":false}"#.to_owned(), "this one carries none"),
            (r#"{"ok":true,"error":null}"#.to_owned(), "this one carries none"),
            (format!(r#"{{"ok":true,"error":{error}}}"#), r#"a reply with "error" must say "ok":false"#),
            (r#"{"ok":false,"data":1}"#.to_owned(), r#"a reply with "data" must say "ok":true"#),
            (
                r#"{"ok":false,"progress":{"applied":1,"total":2,"elapsed_ms":3}}"#.to_owned(),
                r#"a reply with "progress" must say "ok":true"#,
            ),
            (format!(r#"{{"ok":false,"data":1,"error":{error}}}"#), r#"carries "data" and "error""#),
            (
                r#"{"ok":true,"data":1,"progress":{"applied":1,"total":2,"elapsed_ms":3}}"#.to_owned(),
                r#"carries "data" and "progress""#,
            ),
            (r#"{"data":1}"#.to_owned(), "missing field `ok`"),
            (r#"{"ok":"yes","data":1}"#.to_owned(), "invalid type"),
            (r#"{"ok":true,"data":1,"data":2}"#.to_owned(), "duplicate field `data`"),
            ("[true,1]".to_owned(), "invalid type"),
        ] {
            let refused = read_reply(&line).expect_err(&line);
            assert!(refused.contains(says), "{line}: {refused}");
        }
    }

    mod properties {
        use proptest::prelude::*;
        use serde_json::{Map, Value, json};

        use super::super::*;

        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(|f| json!(f)),
                ".{0,12}".prop_map(Value::from),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                    prop::collection::hash_map(".{0,6}", inner, 0..4)
                        .prop_map(|fields| Value::Object(fields.into_iter().collect())),
                ]
            })
        }

        fn field_name() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("id".to_owned()),
                Just("user".to_owned()),
                Just("total".to_owned()),
                Just("limit".to_owned()),
                Just("before".to_owned()),
                Just("from".to_owned()),
                Just("follow".to_owned()),
                Just("check".to_owned()),
                Just("timeout_ms".to_owned()),
                "[a-z_]{1,8}",
            ]
        }

        fn command_name() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("create"),
                Just("show"),
                Just("list"),
                Just("cancel"),
                Just("wait"),
                Just("history"),
                Just("watch"),
                Just("events"),
                Just("replay"),
                Just("status"),
                Just("shutdown"),
            ]
            .prop_map(str::to_owned)
            .boxed()
            .prop_union("[a-z]{0,10}".boxed())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2_000))]

            /// Any bytes at all get an answer, never a panic.
            #[test]
            fn any_bytes_are_parsed_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
                let _ = Request::parse(&bytes);
            }

            /// Any request with one of its keys given twice is refused, whatever the values.
            #[test]
            fn a_request_with_a_key_given_twice_is_refused(
                cmd in command_name(),
                fields in prop::collection::vec((field_name(), json_value()), 0..4),
                twice in prop_oneof![field_name(), Just("v".to_owned()), Just("store".to_owned()), Just("cmd".to_owned())],
                values in (json_value(), json_value()),
                at in (any::<prop::sample::Index>(), any::<prop::sample::Index>()),
            ) {
                let mut entries: Vec<(String, Value)> =
                    vec![("v".into(), json!(PROTOCOL_VERSION)), ("store".into(), json!("/s")), ("cmd".into(), Value::from(cmd))];
                for (key, value) in fields {
                    if !entries.iter().any(|(k, _)| *k == key) {
                        entries.push((key, value));
                    }
                }
                entries.retain(|(key, _)| *key != twice);
                entries.insert(at.0.index(entries.len() + 1), (twice.clone(), values.0));
                entries.insert(at.1.index(entries.len() + 1), (twice.clone(), values.1));
                let members: Vec<String> = entries
                    .iter()
                    .map(|(key, value)| format!("{}:{value}", Value::from(key.as_str())))
                    .collect();
                let line = format!("{{{}}}", members.join(","));
                let refused = Request::parse(line.as_bytes()).expect_err("refused");
                prop_assert_eq!(refused.code, ErrorCode::InvalidRequest);
                prop_assert!(refused.message.contains(&format!("\"{twice}\" is given twice")), "{}", refused.message);
            }

            /// Requests of any shape: a known command with any fields, of any types. Whatever
            /// parses is a request that survives a round trip unchanged.
            #[test]
            fn any_request_shaped_object_is_parsed_or_refused(
                cmd in command_name(),
                fields in prop::collection::vec((field_name(), json_value()), 0..5),
            ) {
                let mut object: Map<String, Value> = fields.into_iter().collect();
                object.insert("v".into(), json!(PROTOCOL_VERSION));
                object.insert("store".into(), json!("/s"));
                object.insert("cmd".into(), Value::from(cmd));
                match Request::parse(Value::Object(object).to_string().as_bytes()) {
                    Ok(addressed) => {
                        let envelope = Envelope { v: PROTOCOL_VERSION, store: &addressed.store, request: &addressed.request };
                        let line = serde_json::to_string(&envelope).expect("serializes");
                        prop_assert_eq!(Request::parse(line.as_bytes()), Ok(addressed));
                    }
                    Err(error) => prop_assert!(!error.message.is_empty()),
                }
            }
        }
    }
}
