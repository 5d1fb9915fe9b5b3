//! Events as they are stored: a stream id, a stable type name, a schema version and a JSON
//! payload. Decoding goes through the upcasters, so every stored version stays readable.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::order::{OrderEvent, OrderId, Total, UserId};

/// Which aggregate a stream belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamKind {
    Order,
}

impl StreamKind {
    pub fn prefix(self) -> &'static str {
        match self {
            StreamKind::Order => "order",
        }
    }
}

/// The identity of one stream: `order-<uuid>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StreamId {
    pub kind: StreamKind,
    pub order: OrderId,
}

impl StreamId {
    pub fn order(order: OrderId) -> Self {
        Self { kind: StreamKind::Order, order }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.kind.prefix(), self.order)
    }
}

impl FromStr for StreamId {
    type Err = DecodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || DecodeError::StreamId(s.to_owned());
        let (prefix, id) = s.split_once('-').ok_or_else(bad)?;
        let kind = match prefix {
            "order" => StreamKind::Order,
            _ => return Err(bad()),
        };
        let order = id.parse().map_err(|_| bad())?;
        Ok(Self { kind, order })
    }
}

/// Every event of the domain, whatever its context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomainEvent {
    Order(OrderEvent),
}

impl From<OrderEvent> for DomainEvent {
    fn from(event: OrderEvent) -> Self {
        DomainEvent::Order(event)
    }
}

#[derive(Serialize)]
struct OrderPlacedRef<'a> {
    user: &'a UserId,
    total: Total,
}

#[derive(Deserialize)]
struct OrderPlacedV1 {
    user: UserId,
    total: Total,
}

/// The payload of an event that carries nothing but its type; extra fields are ignored.
#[derive(Deserialize)]
struct Empty {}

const ORDER_PLACED: &str = "OrderPlaced";
const ORDER_APPROVED: &str = "OrderApproved";
const ORDER_DELIVERED: &str = "OrderDelivered";
const ORDER_CANCELLED: &str = "OrderCancelled";

impl DomainEvent {
    /// The stable name stored in the `type` column.
    pub fn event_type(&self) -> &'static str {
        match self {
            DomainEvent::Order(OrderEvent::Placed { .. }) => ORDER_PLACED,
            DomainEvent::Order(OrderEvent::Approved) => ORDER_APPROVED,
            DomainEvent::Order(OrderEvent::Delivered) => ORDER_DELIVERED,
            DomainEvent::Order(OrderEvent::Cancelled) => ORDER_CANCELLED,
        }
    }

    /// The schema version this build writes for the event's type.
    pub fn schema_version(&self) -> u32 {
        1
    }

    pub fn stream_kind(&self) -> StreamKind {
        match self {
            DomainEvent::Order(_) => StreamKind::Order,
        }
    }

    /// The payload as stored: a JSON object without the type, which has its own column.
    pub fn payload(&self) -> String {
        let encoded = match self {
            DomainEvent::Order(OrderEvent::Placed { user, total }) => {
                serde_json::to_string(&OrderPlacedRef { user, total: *total })
            }
            DomainEvent::Order(OrderEvent::Approved | OrderEvent::Delivered | OrderEvent::Cancelled) => {
                return "{}".to_owned();
            }
        };
        encoded.expect("event payloads are plain structs of strings and numbers")
    }

    /// Reads a stored event of any known schema version.
    pub fn decode(event_type: &str, schema_version: u32, payload: &str) -> Result<Self, DecodeError> {
        let bad_payload = |source: serde_json::Error| DecodeError::Payload {
            event_type: event_type.to_owned(),
            schema_version,
            message: source.to_string(),
        };
        let event = match (event_type, schema_version) {
            (ORDER_PLACED, 1) => {
                let placed: OrderPlacedV1 = serde_json::from_str(payload).map_err(bad_payload)?;
                OrderEvent::Placed { user: placed.user, total: placed.total }
            }
            (ORDER_APPROVED | ORDER_DELIVERED | ORDER_CANCELLED, 1) => {
                serde_json::from_str::<Empty>(payload).map_err(bad_payload)?;
                match event_type {
                    ORDER_APPROVED => OrderEvent::Approved,
                    ORDER_DELIVERED => OrderEvent::Delivered,
                    _ => OrderEvent::Cancelled,
                }
            }
            (ORDER_PLACED | ORDER_APPROVED | ORDER_DELIVERED | ORDER_CANCELLED, _) => {
                return Err(DecodeError::UnknownVersion {
                    event_type: event_type.to_owned(),
                    schema_version,
                });
            }
            _ => return Err(DecodeError::UnknownType(event_type.to_owned())),
        };
        Ok(DomainEvent::Order(event))
    }
}

/// A stored event this build cannot read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type '{0}' (written by a newer version of orders?)")]
    UnknownType(String),
    #[error(
        "unknown schema version {schema_version} of event type '{event_type}' (written by a newer version of orders?)"
    )]
    UnknownVersion { event_type: String, schema_version: u32 },
    #[error("malformed payload of event '{event_type}' v{schema_version}: {message}")]
    Payload { event_type: String, schema_version: u32, message: String },
    #[error("malformed stream id '{0}'")]
    StreamId(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed() -> DomainEvent {
        DomainEvent::Order(OrderEvent::Placed {
            user: "alice".parse().expect("valid user"),
            total: Total::try_from(2).expect("valid total"),
        })
    }

    #[test]
    fn every_event_survives_a_round_trip_through_storage() {
        let events = [
            placed(),
            OrderEvent::Approved.into(),
            OrderEvent::Delivered.into(),
            OrderEvent::Cancelled.into(),
        ];
        for event in events {
            let decoded = DomainEvent::decode(event.event_type(), event.schema_version(), &event.payload());
            assert_eq!(decoded, Ok(event));
        }
    }

    #[test]
    fn the_payload_holds_the_fields_but_not_the_type() {
        assert_eq!(placed().payload(), r#"{"user":"alice","total":2}"#);
        assert_eq!(placed().event_type(), "OrderPlaced");
    }

    #[test]
    fn unknown_types_and_versions_are_reported_not_guessed() {
        assert_eq!(
            DomainEvent::decode("OrderTeleported", 1, "{}"),
            Err(DecodeError::UnknownType("OrderTeleported".into()))
        );
        assert!(matches!(
            DomainEvent::decode("OrderPlaced", 99, "{}"),
            Err(DecodeError::UnknownVersion { schema_version: 99, .. })
        ));
        assert!(matches!(
            DomainEvent::decode("OrderPlaced", 1, r#"{"user":"","total":2}"#),
            Err(DecodeError::Payload { .. })
        ));
    }

    #[test]
    fn stream_ids_print_and_parse() {
        let id: OrderId = "019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6b".parse().expect("valid id");
        let stream = StreamId::order(id);
        assert_eq!(stream.to_string(), "order-019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6b");
        assert_eq!(stream.to_string().parse::<StreamId>(), Ok(stream));
        assert!("parcel-019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6b".parse::<StreamId>().is_err());
    }
}
