//! The export format (issue 15): the event log as newline-delimited JSON, one event per line,
//! with every field the store keeps — what `orders export` prints and `orders import` reads.
//!
//! ```json
//! {"position":1,"event_id":"…","stream":"order-…","version":1,"type":"OrderPlaced","schema_version":1,
//!  "data":{"user":"alice","total":2},"metadata":{"correlation_id":"…","causation_id":"…"},
//!  "recorded_at":"2026-12-03T10:08:08.123Z"}
//! ```
//!
//! `data` is the payload as it was stored, at its `schema_version`: never upcast, so that an
//! export of an import is the export it came from, byte for byte. `recorded_at` is UTC with
//! exactly three decimals (the stores keep milliseconds), so that times sort as text.
//! `metadata.idempotency_key` is there only on the events that carry one. A field of a line this
//! build does not know is refused on import: it would be lost.
//!
//! The last line is [`ExportEnd`], `{"end":{"events":N,"first":"1","last":"N","next":"N+1"}}`: an
//! export cut short (interrupted, or cut with `head`) ends on a whole line all the same, and
//! without it would pass for a shorter log.

use super::milliseconds;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::view::ExportSummary;
use crate::event::StreamId;

/// One line of an export.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedEvent {
    /// The event's place in the global log: 1, 2, 3 ... without gaps.
    pub position: i64,
    pub event_id: Uuid,
    pub stream: StreamId,
    /// 1, 2, 3 ... within the stream.
    pub version: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: u32,
    /// The payload as stored: a JSON object.
    pub data: Box<RawValue>,
    pub metadata: ExportedMetadata,
    #[serde(with = "milliseconds")]
    pub recorded_at: Timestamp,
}

/// Who and what caused an event.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedMetadata {
    pub correlation_id: Uuid,
    pub causation_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// The last line of an export: how many events it holds and where it ends.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportEnd {
    pub end: ExportSummary,
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"position":1,"event_id":"019a6b2e-0000-7000-8000-000000000001","stream":"order-019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6b","version":1,"type":"OrderPlaced","schema_version":1,"data":{"user":"alice","total":2},"metadata":{"correlation_id":"019a6b2e-0000-7000-8000-000000000000","causation_id":"019a6b2e-0000-7000-8000-000000000000","idempotency_key":"k1"},"recorded_at":"2026-12-03T10:08:08.120Z"}"#;

    #[test]
    fn a_line_reads_and_writes_back_byte_for_byte() {
        let event: ExportedEvent = serde_json::from_str(LINE).expect("a valid line");
        assert_eq!(event.data.get(), r#"{"user":"alice","total":2}"#);
        assert_eq!(serde_json::to_string(&event).expect("serialise"), LINE);
    }

    #[test]
    fn times_have_a_fixed_width_and_no_finer_precision() {
        let at = |text: &str| milliseconds::text(text.parse().expect("a time"));
        assert_eq!(at("2026-12-03T10:08:08Z"), "2026-12-03T10:08:08.000Z");
        assert_eq!(at("2026-12-03T11:08:08.5+01:00"), "2026-12-03T10:08:08.500Z");
        let finer = LINE.replace("08.120Z", "08.1201Z");
        let error = serde_json::from_str::<ExportedEvent>(&finer).expect_err("finer than a millisecond");
        assert!(error.to_string().contains("finer than a millisecond"), "{error}");
    }

    #[test]
    fn a_year_outside_0000_to_9999_is_refused() {
        for (time, fine) in [
            ("0000-01-01T00:00:00.000Z", true),
            ("9999-12-30T00:00:00.000Z", true),
            ("-000001-01-01T00:00:00.000Z", false),
            ("0000-01-01T00:00:00.000+01:00", false),
        ] {
            let line = LINE.replace("2026-12-03T10:08:08.120Z", time);
            let read = serde_json::from_str::<ExportedEvent>(&line);
            assert_eq!(read.is_ok(), fine, "{time}: {read:?}");
        }
    }

    #[test]
    fn an_unknown_field_is_refused() {
        let extra = LINE.replace(r#""position":1,"#, r#""position":1,"shard":3,"#);
        let error = serde_json::from_str::<ExportedEvent>(&extra).expect_err("unknown field");
        assert!(error.to_string().contains("unknown field `shard`"), "{error}");
    }
}
