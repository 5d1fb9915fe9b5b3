//! The wire protocol between the `orders` client and the daemon: newline-delimited JSON.
//!
//! A request is one line, `{"v": 1, "cmd": "create", ...}`; the daemon answers with one line,
//! `{"ok": true, "data": ...}` or `{"ok": false, "error": {"code": ..., "message": ...}}`.
//! `docs/PROTOCOL.md` is the prose version of this module.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::order::{CancelReason, OrderId, OrderStatus, Total, UserId};

/// Bumped on any change a peer of the previous version would misread.
pub const PROTOCOL_VERSION: u32 = 1;

/// The longest request line the daemon reads, in bytes.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// A request as sent on the wire: the protocol version beside the command.
#[derive(Clone, Debug, Serialize)]
pub struct Envelope<'a> {
    pub v: u32,
    #[serde(flatten)]
    pub request: &'a Request,
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
    /// another version gets `protocol_mismatch` rather than a confusing decoding error.
    ///
    /// Strict, so that a typo or a confused client is told rather than half-obeyed (issue 11):
    /// a key named twice, at any depth, is refused (serde_json alone keeps the last one, and
    /// `"total":3,"total":4` placed an order of 4), and so is any field a command does not
    /// know, the field-less commands included.
    pub fn parse(line: &[u8]) -> Result<Request, ErrorBody> {
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
            return Err(invalid(
                "the request must be a JSON object such as {\"v\":1,\"cmd\":\"status\"}".to_owned(),
            ));
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
        match fields.get("cmd") {
            Some(Value::String(_)) => {}
            Some(_) => return Err(invalid("the field \"cmd\" must be a string".to_owned())),
            None => return Err(invalid("the request has no \"cmd\" field".to_owned())),
        }
        serde_json::from_value(Value::Object(fields)).map_err(|e| invalid(format!("invalid request: {e}")))
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

/// The global event log from a position: a page, or (`follow`) a stream that never ends.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsRequest {
    /// The first position to return (positions start at 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<i64>,
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

/// A page of the event log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPage {
    pub events: Vec<EventView>,
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

/// One reply line: the final one of a request carries `data` or `error`; a streaming request
/// (`events --follow`, `watch`, `replay`) sends `event` or `progress` lines before it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    /// Kept as the JSON text it is on the wire: written without an intermediate tree, and read
    /// by the client straight into the type it expects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<EventView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<ReplayProgress>,
}

impl Reply {
    pub fn data(data: impl Serialize) -> Reply {
        Reply { ok: true, data: Some(raw(&data)), ..Reply::default() }
    }

    pub fn error(error: ErrorBody) -> Reply {
        Reply { ok: false, error: Some(error), ..Reply::default() }
    }

    pub fn event(event: EventView) -> Reply {
        Reply { ok: true, event: Some(event), ..Reply::default() }
    }

    pub fn progress(progress: ReplayProgress) -> Reply {
        Reply { ok: true, progress: Some(progress), ..Reply::default() }
    }

    /// The last line of a request's reply.
    pub fn is_final(&self) -> bool {
        self.data.is_some() || self.error.is_some() || (self.event.is_none() && self.progress.is_none())
    }

    /// The reply as one line, newline included.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("replies are plain serde structs");
        line.push('\n');
        line
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
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
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
    /// A code from a newer daemon.
    #[serde(other)]
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Request, ErrorBody> {
        Request::parse(line.as_bytes())
    }

    fn code(line: &str) -> ErrorCode {
        parse(line).expect_err("refused").code
    }

    #[test]
    fn a_request_is_its_envelope_read_back() {
        let request = Request::Create(CreateRequest {
            user: "alice".parse().expect("valid user"),
            total: Total::try_from(2).expect("valid total"),
            idempotency_key: None,
        });
        let line =
            serde_json::to_string(&Envelope { v: PROTOCOL_VERSION, request: &request }).expect("serializes");
        assert_eq!(line, r#"{"v":1,"cmd":"create","user":"alice","total":2}"#);
        assert_eq!(parse(&line), Ok(request));
        assert_eq!(parse(r#"{"v":1,"cmd":"status"}"#), Ok(Request::Status(StatusRequest {})));
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
            r#"{"v":1}"#,
            r#"{"v":1,"cmd":7}"#,
            r#"{"v":1,"cmd":"teleport"}"#,
            r#"{"v":1,"cmd":"create","user":"alice"}"#,
            r#"{"v":1,"cmd":"create","user":"alice","total":"2"}"#,
            r#"{"v":1,"cmd":"create","user":"alice","total":2,"extra":true}"#,
            r#"{"v":1,"cmd":"show","id":"not-a-uuid"}"#,
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
        serde_json::to_string(&Envelope { v: PROTOCOL_VERSION, request }).expect("serializes")
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
        assert!(parse(r#"{"v":1,"cmd":"shutdown","dry_run":true}"#).is_err());
        assert!(parse(r#"{"v":1,"cmd":"status","extra":null}"#).is_err());
    }

    #[test]
    fn a_key_given_twice_is_refused_at_any_depth_and_named() {
        for (line, field) in [
            // Issue 11: this one placed an order of 4.
            (r#"{"v":1,"cmd":"create","user":"alice","total":3,"total":4}"#, "total"),
            (r#"{"v":1,"cmd":"create","user":"alice","total":4,"total":4}"#, "total"),
            (r#"{"v":1,"cmd":"create","user":"alice","total":2,"tot\u0061l":2}"#, "total"),
            (r#"{"v":1,"v":1,"cmd":"status"}"#, "v"),
            (r#"{"v":1,"cmd":"status","cmd":"shutdown"}"#, "cmd"),
            (r#"{"v":1,"cmd":"list","user":"a","user":"b"}"#, "user"),
            (r#"{"v":1,"cmd":"list","since":{"at":1,"at":2}}"#, "since.at"),
            (r#"{"v":1,"cmd":"list","x":[0,{"a":{"b":1,"b":1}}]}"#, "x[1].a.b"),
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
        let refused = parse(r#"{"v":2,"cmd":"status"}"#).expect_err("refused");
        assert_eq!(refused.code, ErrorCode::ProtocolMismatch);
        assert!(refused.message.contains("version 2"), "{}", refused.message);
    }

    #[test]
    fn domain_values_are_validated_while_decoding() {
        for line in [
            r#"{"v":1,"cmd":"create","user":"","total":2}"#,
            r#"{"v":1,"cmd":"create","user":"alice","total":0}"#,
            r#"{"v":1,"cmd":"create","user":"alice","total":-1}"#,
            r#"{"v":1,"cmd":"create","user":"alice","total":2.5}"#,
            r#"{"v":1,"cmd":"create","user":"alice","total":9223372036854775808}"#,
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
                twice in prop_oneof![field_name(), Just("v".to_owned()), Just("cmd".to_owned())],
                values in (json_value(), json_value()),
                at in (any::<prop::sample::Index>(), any::<prop::sample::Index>()),
            ) {
                let mut entries: Vec<(String, Value)> =
                    vec![("v".into(), json!(PROTOCOL_VERSION)), ("cmd".into(), Value::from(cmd))];
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
                object.insert("cmd".into(), Value::from(cmd));
                match Request::parse(Value::Object(object).to_string().as_bytes()) {
                    Ok(request) => {
                        let line = serde_json::to_string(&Envelope { v: PROTOCOL_VERSION, request: &request })
                            .expect("serializes");
                        prop_assert_eq!(Request::parse(line.as_bytes()), Ok(request));
                    }
                    Err(error) => prop_assert!(!error.message.is_empty()),
                }
            }
        }
    }
}
