//! A time as `2026-12-03T10:08:08.120Z`: UTC, three decimals always. Read back, any RFC 3339
//! offset is accepted, but not a finer precision than the millisecond (it would be lost), nor a
//! year outside 0000–9999 (it would not be written back as RFC 3339).

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serializer};

/// The fixed-width text of `time`.
pub fn text(time: Timestamp) -> String {
    time.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

pub fn serialize<S: Serializer>(time: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&time.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"))
}

/// The same for a time that may be absent (`null`).
pub fn serialize_option<S: Serializer>(time: &Option<Timestamp>, serializer: S) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => serialize(time, serializer),
        None => serializer.serialize_none(),
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
    let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
    let time: Timestamp =
        text.parse().map_err(|e| serde::de::Error::custom(format!("invalid time '{text}': {e}")))?;
    // From 0000-01-01T00:00:00Z (jiff itself stops at 9999-12-30T22:00Z, with its own words).
    if time.as_millisecond() < -62_167_219_200_000 {
        return Err(serde::de::Error::custom(format!("the time '{text}' is outside the years 0000 to 9999")));
    }
    if time.subsec_nanosecond() % 1_000_000 != 0 {
        return Err(serde::de::Error::custom(format!(
            "the time '{text}' is finer than a millisecond, which the store does not keep"
        )));
    }
    Ok(time)
}
