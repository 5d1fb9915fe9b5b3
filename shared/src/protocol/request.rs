//! The requests: the envelope every line carries, each command's fields, and the strict parser
//! the daemon reads them with.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::reply::{ErrorBody, ErrorCode};
use super::view::Cursor;
use crate::order::{NewUserId, OrderId, OrderStatus, Total, UserId};

/// Bumped on any change a peer of the previous version would misread. Version 2 (issue 12): every
/// request names its `store`, unknown fields and repeated keys are refused (issue 11), and the
/// `events` cursor is an opaque string. Version 3 (issue 18): `resolve`, `short_ids` (which
/// every table and every command taking an order needs) and `count`: a client of 3 cannot work with a
/// daemon of 2, and says so rather than fail on an unknown command.
pub const PROTOCOL_VERSION: u32 = 3;

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
    Export(ExportRequest),
    Replay(ReplayRequest),
    Check(CheckRequest),
    Backup(BackupRequest),
    Status(StatusRequest),
    Metrics(MetricsRequest),
    Shutdown(ShutdownRequest),
    Resolve(ResolveRequest),
    ShortIds(ShortIdsRequest),
    Count(CountRequest),
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
            Request::Export(_) => "export",
            Request::Replay(_) => "replay",
            Request::Check(_) => "check",
            Request::Backup(_) => "backup",
            Request::Status(_) => "status",
            Request::Metrics(_) => "metrics",
            Request::Shutdown(_) => "shutdown",
            Request::Resolve(_) => "resolve",
            Request::ShortIds(_) => "short_ids",
            Request::Count(_) => "count",
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
        unique_keys(text, "the request")?;
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

/// Refuses a JSON document (`what`: "the request", "the body") that is not JSON, or names a key
/// twice in an object, at any depth.
pub(super) fn unique_keys(text: &str, what: &str) -> Result<(), ErrorBody> {
    serde_json::from_str::<UniqueKeys>(text).map(|_| ()).map_err(|e| invalid_json(&e, what))
}

/// A JSON error in words: the document is no JSON, or JSON that does not fit (serde_json's line
/// and column included).
pub(super) fn invalid_json(error: &serde_json::Error, what: &str) -> ErrorBody {
    let message = match error.classify() {
        serde_json::error::Category::Data => format!("invalid request: {error}"),
        _ => format!("{what} is not valid JSON: {error}"),
    };
    ErrorBody::new(ErrorCode::InvalidRequest, message)
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

/// The daemon's metrics in Prometheus' text format (issue 16). See [`CheckRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsRequest {}

/// A consistent copy of the whole store, written by the daemon to `path` (issue 15).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// Where the copy goes: an absolute path (the daemon's working directory is not the
    /// client's). A file there is replaced, atomically.
    pub path: String,
}

/// See [`CheckRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownRequest {}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// A new order's customer: the rules of [`NewUserId`], stricter than the log's (issue 18).
    pub user: NewUserId,
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

/// The orders that an id, or the end of one, names (short ids, issue 18).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// A whole order id, or at least 8 hex digits of its end.
    pub id: String,
}

impl ResolveRequest {
    /// The most candidates a reply lists.
    pub const MAX_CANDIDATES: usize = 10;
}

/// The short id of each order, as tables show it: the shortest end of its id, at least 8 hex
/// digits, that no other order's id ends with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShortIdsRequest {
    pub ids: Vec<OrderId>,
}

impl ShortIdsRequest {
    /// The most ids one request asks about (a page of `list` or `events`).
    pub const MAX_IDS: usize = 10_000;
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

/// The event log as the store keeps it, from a cursor to a cursor (both included; the start of
/// the log and its head when the request began, when absent): one `record` line per event, then
/// an [`ExportSummary`](super::ExportSummary) as the data (issue 15).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Cursor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Cursor>,
}

/// Rebuilds the read model from the log (`check`: into a scratch table, compared, not swapped).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub check: bool,
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

/// How many orders the filters of `list` match (`list --count`): the daemon reads every
/// matching row.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<OrderStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
}

impl From<CountRequest> for ListRequest {
    fn from(count: CountRequest) -> ListRequest {
        ListRequest { user: count.user, status: count.status, since: count.since, ..ListRequest::default() }
    }
}

impl ListRequest {
    pub const DEFAULT_LIMIT: u32 = 100;
    pub const MAX_LIMIT: u32 = 10_000;
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
    fn a_request_is_its_envelope_read_back() {
        let request = Request::Create(CreateRequest {
            user: "alice".parse().expect("valid user"),
            total: Total::try_from(2).expect("valid total"),
            idempotency_key: None,
        });
        let line = serde_json::to_string(&Envelope { v: PROTOCOL_VERSION, store: "/s", request: &request })
            .expect("serializes");
        assert_eq!(line, r#"{"v":3,"store":"/s","cmd":"create","user":"alice","total":2}"#);
        assert_eq!(
            Request::parse(line.as_bytes()),
            Ok(Addressed { store: "/s".to_owned(), request: request.clone() })
        );
        assert_eq!(parse(&line), Ok(request));
        assert_eq!(parse(r#"{"v":3,"store":"/s","cmd":"status"}"#), Ok(Request::Status(StatusRequest {})));
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
            r#"{"v":3,"store":"/s"}"#,
            r#"{"v":3,"store":"/s","cmd":7}"#,
            r#"{"v":3,"store":"/s","cmd":"teleport"}"#,
            r#"{"v":3,"store":"/s","cmd":"create","user":"alice"}"#,
            r#"{"v":3,"store":"/s","cmd":"create","user":"alice","total":"2"}"#,
            r#"{"v":3,"store":"/s","cmd":"create","user":"alice","total":2,"extra":true}"#,
            r#"{"v":3,"store":"/s","cmd":"show","id":"not-a-uuid"}"#,
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
            Request::Export(ExportRequest::default()),
            Request::Replay(ReplayRequest::default()),
            Request::Check(CheckRequest {}),
            Request::Backup(BackupRequest { path: "/backups/orders.db".to_owned() }),
            Request::Status(StatusRequest {}),
            Request::Metrics(MetricsRequest {}),
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
        assert!(parse(r#"{"v":3,"store":"/s","cmd":"shutdown","dry_run":true}"#).is_err());
        assert!(parse(r#"{"v":3,"store":"/s","cmd":"status","extra":null}"#).is_err());
    }

    #[test]
    fn a_key_given_twice_is_refused_at_any_depth_and_named() {
        for (line, field) in [
            // Issue 11: this one placed an order of 4.
            (r#"{"v":3,"store":"/s","cmd":"create","user":"alice","total":3,"total":4}"#, "total"),
            (r#"{"v":3,"store":"/s","cmd":"create","user":"alice","total":4,"total":4}"#, "total"),
            (r#"{"v":3,"store":"/s","cmd":"create","user":"alice","total":2,"tot\u0061l":2}"#, "total"),
            (r#"{"v":3,"store":"/s","v":1,"cmd":"status"}"#, "v"),
            (r#"{"v":3,"store":"/s","cmd":"status","cmd":"shutdown"}"#, "cmd"),
            (r#"{"v":3,"store":"/s","cmd":"list","user":"a","user":"b"}"#, "user"),
            (r#"{"v":3,"store":"/s","cmd":"list","since":{"at":1,"at":2}}"#, "since.at"),
            (r#"{"v":3,"store":"/s","cmd":"list","x":[0,{"a":{"b":1,"b":1}}]}"#, "x[1].a.b"),
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
        // A client of version 1 (no store, a numeric cursor) is told, not misread (issue 12), and
        // one of version 2 (before short ids, issue 18).
        for line in
            [r#"{"v":1,"cmd":"status"}"#, r#"{"v":1,"cmd":"events","from":5}"#, r#"{"v":2,"cmd":"status"}"#]
        {
            let refused = parse(line).expect_err("refused");
            assert_eq!(refused.code, ErrorCode::ProtocolMismatch, "{line}");
            assert!(refused.message.contains("version 3"), "{}", refused.message);
        }
    }

    #[test]
    fn every_request_names_its_store() {
        for (line, says) in [
            (r#"{"v":3,"cmd":"status"}"#, "names no store"),
            (r#"{"v":3,"store":"","cmd":"status"}"#, "non-empty string"),
            (r#"{"v":3,"store":7,"cmd":"status"}"#, "non-empty string"),
        ] {
            let refused = parse(line).expect_err(line);
            assert_eq!(refused.code, ErrorCode::InvalidRequest, "{line}");
            assert!(refused.message.contains(says), "{line}: {}", refused.message);
        }
    }

    #[test]
    fn a_cursor_is_a_string_and_pages_say_where_to_read_on() {
        let Request::Events(events) =
            parse(r#"{"v":3,"store":"/s","cmd":"events","from":"17"}"#).expect("parses")
        else {
            panic!("an events request");
        };
        assert_eq!(events.from.as_ref().map(Cursor::as_str), Some("17"));
        for line in [
            r#"{"v":3,"store":"/s","cmd":"events","from":17}"#,
            r#"{"v":3,"store":"/s","cmd":"events","from":""}"#,
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
            r#"{"v":3,"store":"/s","cmd":"create","user":"","total":2}"#,
            r#"{"v":3,"store":"/s","cmd":"create","user":"alice","total":0}"#,
            r#"{"v":3,"store":"/s","cmd":"create","user":"alice","total":-1}"#,
            r#"{"v":3,"store":"/s","cmd":"create","user":"alice","total":2.5}"#,
            r#"{"v":3,"store":"/s","cmd":"create","user":"alice","total":9223372036854775808}"#,
        ] {
            assert!(parse(line).is_err(), "{line}");
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
                Just("path".to_owned()),
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
                Just("backup"),
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
