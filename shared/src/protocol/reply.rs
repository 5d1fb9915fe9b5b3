//! The reply lines: data, an error, or the event and progress lines of a stream; and the errors
//! a request can meet.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::view::{EventView, ReplayProgress};

/// One reply line: the final one of a request carries data or an error; a streaming request
/// (`events --follow`, `watch`, `replay`, `export`) sends event, progress or record lines before
/// it.
///
/// On the wire it is `{"ok":true,"data":...}`, `{"ok":false,"error":{...}}`,
/// `{"ok":true,"event":{...}}`, `{"ok":true,"progress":{...}}` or `{"ok":true,"record":{...}}`. A line with none of them, two of
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
    /// A line of an export ([`ExportedEvent`](super::ExportedEvent)), kept as the text the
    /// daemon wrote: the client prints it as it is.
    Record(Box<RawValue>),
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
            Reply::Record(_) => "record",
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
            Reply::Record(record) => line.serialize_field(field, record)?,
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
    #[serde(default)]
    record: Option<Box<RawValue>>,
}

/// Reads a field that is present, whatever its value (`null` included).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(deserializer).map(Some)
}

impl TryFrom<WireReply> for Reply {
    type Error = String;

    fn try_from(wire: WireReply) -> Result<Self, String> {
        match wire {
            WireReply {
                ok: true,
                data: Some(data),
                error: None,
                event: None,
                progress: None,
                record: None,
            } => Ok(Reply::Data(data)),
            WireReply {
                ok: false,
                data: None,
                error: Some(error),
                event: None,
                progress: None,
                record: None,
            } => Ok(Reply::Error(error)),
            WireReply {
                ok: true,
                data: None,
                error: None,
                event: Some(event),
                progress: None,
                record: None,
            } => Ok(Reply::Event(event)),
            WireReply {
                ok: true,
                data: None,
                error: None,
                event: None,
                progress: Some(progress),
                record: None,
            } => Ok(Reply::Progress(progress)),
            WireReply {
                ok: true,
                data: None,
                error: None,
                event: None,
                progress: None,
                record: Some(record),
            } => Ok(Reply::Record(record)),
            wire => Err(wire.refusal()),
        }
    }
}

impl WireReply {
    /// Why this line is none of the reply shapes.
    fn refusal(&self) -> String {
        const ONE_OF: &str =
            "a reply carries one of \"data\", \"error\", \"event\", \"progress\" or \"record\"";
        let carried: Vec<String> = [
            ("data", self.data.is_some()),
            ("error", self.error.is_some()),
            ("event", self.event.is_some()),
            ("progress", self.progress.is_some()),
            ("record", self.record.is_some()),
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

impl ErrorCode {
    /// The code as the wire spells it (a metric's label, issue 16).
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Rejected => "rejected",
            ErrorCode::ProtocolMismatch => "protocol_mismatch",
            ErrorCode::WrongStore => "wrong_store",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::Busy => "busy",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Internal => "internal",
            ErrorCode::Starting => "starting",
            ErrorCode::Unknown => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::OrderPage;

    #[test]
    fn an_error_code_is_named_as_the_wire_spells_it() {
        use ErrorCode::*;
        for code in [
            InvalidRequest,
            NotFound,
            Rejected,
            ProtocolMismatch,
            WrongStore,
            TooLarge,
            PermissionDenied,
            Busy,
            Unavailable,
            Timeout,
            Internal,
            Starting,
            Unknown,
        ] {
            assert_eq!(serde_json::to_value(code).expect("serializes"), serde_json::json!(code.name()));
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
}
