//! Events as they are stored: a stream id, a stable type name, a schema version and a JSON
//! payload. Decoding goes through the upcasters, so every stored version stays readable.
//!
//! | type | version | payload |
//! |---|---|---|
//! | `OrderPlaced` | 1 | `{"user", "total"}` |
//! | `OrderApproved`, `OrderDelivered` | 1 | `{}` |
//! | `OrderCancelled` | 2 | `{"reason"}` — v1 was `{}`: only customers could cancel then |
//! | `PaymentRequested`, `PaymentApproved`, `PaymentRefunded` | 1 | `{"amount"}` |
//! | `PaymentDeclined` | 1 | `{"reason"}` (the provider's words) |
//! | `DeliveryScheduled` | 1 | `{"due_at"}` (RFC 3339) |
//! | `DeliveryCompleted`, `DeliveryCancelled` | 1 | `{}` |

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::delivery::DeliveryEvent;
use crate::order::{CancelReason, OrderEvent, OrderId, Total, UserId};
use crate::payment::PaymentEvent;

/// Which aggregate a stream belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamKind {
    Order,
    Payment,
    Delivery,
}

impl StreamKind {
    pub const ALL: [StreamKind; 3] = [StreamKind::Order, StreamKind::Payment, StreamKind::Delivery];

    pub fn prefix(self) -> &'static str {
        match self {
            StreamKind::Order => "order",
            StreamKind::Payment => "payment",
            StreamKind::Delivery => "delivery",
        }
    }
}

/// The identity of one stream: `order-<uuid>`, `payment-<uuid>` or `delivery-<uuid>`, all keyed
/// by the order's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    pub kind: StreamKind,
    pub order: OrderId,
}

impl StreamId {
    pub fn new(kind: StreamKind, order: OrderId) -> Self {
        Self { kind, order }
    }

    pub fn order(order: OrderId) -> Self {
        Self::new(StreamKind::Order, order)
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
        let kind = StreamKind::ALL.into_iter().find(|kind| kind.prefix() == prefix).ok_or_else(bad)?;
        let order = id.parse().map_err(|_| bad())?;
        Ok(Self { kind, order })
    }
}

/// As its text, `order-<uuid>` (the export format writes streams so).
impl Serialize for StreamId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Every event of the domain, whatever its context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomainEvent {
    Order(OrderEvent),
    Payment(PaymentEvent),
    Delivery(DeliveryEvent),
}

impl From<OrderEvent> for DomainEvent {
    fn from(event: OrderEvent) -> Self {
        DomainEvent::Order(event)
    }
}

impl From<PaymentEvent> for DomainEvent {
    fn from(event: PaymentEvent) -> Self {
        DomainEvent::Payment(event)
    }
}

impl From<DeliveryEvent> for DomainEvent {
    fn from(event: DeliveryEvent) -> Self {
        DomainEvent::Delivery(event)
    }
}

// The payloads, one struct per shape. Unknown fields are ignored (a tolerant reader).
#[derive(Serialize, Deserialize)]
struct Placed {
    user: UserId,
    total: Total,
}

#[derive(Serialize, Deserialize)]
struct Cancelled {
    reason: CancelReason,
}

#[derive(Serialize, Deserialize)]
struct Amount {
    amount: Total,
}

#[derive(Serialize, Deserialize)]
struct Declined {
    reason: String,
}

#[derive(Serialize, Deserialize)]
struct Scheduled {
    due_at: Timestamp,
}

#[derive(Serialize, Deserialize)]
struct Empty {}

/// Declares [`EventType`] from its table, so that each type's name and version are written once.
macro_rules! event_types {
    ($($kind:ident: $name:literal, version $version:literal;)*) => {
        /// The type of a stored event.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        enum EventType {
            $($kind,)*
        }

        impl EventType {
            const ALL: &[EventType] = &[$(EventType::$kind,)*];

            /// The stable name stored in the `type` column.
            fn name(self) -> &'static str {
                match self {
                    $(EventType::$kind => $name,)*
                }
            }

            /// The schema version this build writes.
            fn current_version(self) -> u32 {
                match self {
                    $(EventType::$kind => $version,)*
                }
            }
        }
    };
}

// Every event type, its stored name and its current schema version: the one place they are
// written. A stored name never changes; a new shape of payload is a new version with an upcaster.
event_types! {
    OrderPlaced: "OrderPlaced", version 1;
    OrderApproved: "OrderApproved", version 1;
    OrderDelivered: "OrderDelivered", version 1;
    OrderCancelled: "OrderCancelled", version 2;
    PaymentRequested: "PaymentRequested", version 1;
    PaymentApproved: "PaymentApproved", version 1;
    PaymentDeclined: "PaymentDeclined", version 1;
    PaymentRefunded: "PaymentRefunded", version 1;
    DeliveryScheduled: "DeliveryScheduled", version 1;
    DeliveryCompleted: "DeliveryCompleted", version 1;
    DeliveryCancelled: "DeliveryCancelled", version 1;
}

impl EventType {
    /// The type stored under `name`.
    fn named(name: &str) -> Option<EventType> {
        EventType::ALL.iter().copied().find(|kind| kind.name() == name)
    }

    /// Brings a payload from `version` to `version + 1`, for the types whose shape changed.
    fn upcast(self, version: u32, payload: &str) -> Result<String, DecodeError> {
        let bad = |message: String| DecodeError::Payload {
            event_type: self.name().to_owned(),
            schema_version: version,
            message,
        };
        match (self, version) {
            // v1 was written before payments could decline orders: every cancel was the customer's.
            (EventType::OrderCancelled, 1) => {
                let mut fields: Map<String, Value> =
                    serde_json::from_str(payload).map_err(|e| bad(e.to_string()))?;
                fields.insert("reason".into(), CancelReason::CustomerRequest.as_str().into());
                Ok(Value::Object(fields).to_string())
            }
            _ => Err(DecodeError::UnknownVersion {
                event_type: self.name().to_owned(),
                schema_version: version,
            }),
        }
    }
}

impl DomainEvent {
    /// The stable name stored in the `type` column.
    pub fn event_type(&self) -> &'static str {
        self.kind().name()
    }

    /// The event's type, named by the table above.
    fn kind(&self) -> EventType {
        match self {
            DomainEvent::Order(OrderEvent::Placed { .. }) => EventType::OrderPlaced,
            DomainEvent::Order(OrderEvent::Approved) => EventType::OrderApproved,
            DomainEvent::Order(OrderEvent::Delivered) => EventType::OrderDelivered,
            DomainEvent::Order(OrderEvent::Cancelled { .. }) => EventType::OrderCancelled,
            DomainEvent::Payment(PaymentEvent::Requested { .. }) => EventType::PaymentRequested,
            DomainEvent::Payment(PaymentEvent::Approved { .. }) => EventType::PaymentApproved,
            DomainEvent::Payment(PaymentEvent::Declined { .. }) => EventType::PaymentDeclined,
            DomainEvent::Payment(PaymentEvent::Refunded { .. }) => EventType::PaymentRefunded,
            DomainEvent::Delivery(DeliveryEvent::Scheduled { .. }) => EventType::DeliveryScheduled,
            DomainEvent::Delivery(DeliveryEvent::Completed) => EventType::DeliveryCompleted,
            DomainEvent::Delivery(DeliveryEvent::Cancelled) => EventType::DeliveryCancelled,
        }
    }

    /// The schema version this build writes for the event's type.
    pub fn schema_version(&self) -> u32 {
        self.kind().current_version()
    }

    /// The payload as stored: a JSON object without the type, which has its own column.
    pub fn payload(&self) -> String {
        let encoded = match self {
            DomainEvent::Order(OrderEvent::Placed { user, total }) => {
                serde_json::to_string(&Placed { user: user.clone(), total: *total })
            }
            DomainEvent::Order(OrderEvent::Cancelled { reason }) => {
                serde_json::to_string(&Cancelled { reason: *reason })
            }
            DomainEvent::Payment(
                PaymentEvent::Requested { amount }
                | PaymentEvent::Approved { amount }
                | PaymentEvent::Refunded { amount },
            ) => serde_json::to_string(&Amount { amount: *amount }),
            DomainEvent::Payment(PaymentEvent::Declined { reason }) => {
                serde_json::to_string(&Declined { reason: reason.clone() })
            }
            DomainEvent::Delivery(DeliveryEvent::Scheduled { due_at }) => {
                serde_json::to_string(&Scheduled { due_at: *due_at })
            }
            DomainEvent::Order(OrderEvent::Approved | OrderEvent::Delivered)
            | DomainEvent::Delivery(DeliveryEvent::Completed | DeliveryEvent::Cancelled) => {
                return "{}".to_owned();
            }
        };
        encoded.expect("event payloads are plain structs of strings and numbers")
    }

    /// The payload as a JSON value, for showing an event.
    pub fn payload_value(&self) -> Value {
        serde_json::from_str(&self.payload()).expect("payloads are JSON objects")
    }

    /// Reads a stored event of any known schema version, upcasting older ones.
    pub fn decode(event_type: &str, schema_version: u32, payload: &str) -> Result<Self, DecodeError> {
        let kind =
            EventType::named(event_type).ok_or_else(|| DecodeError::UnknownType(event_type.to_owned()))?;
        let current = kind.current_version();
        if schema_version > current || schema_version == 0 {
            return Err(DecodeError::UnknownVersion { event_type: event_type.to_owned(), schema_version });
        }
        if schema_version < current {
            let mut version = schema_version;
            let mut upcasted = payload.to_owned();
            while version < current {
                upcasted = kind.upcast(version, &upcasted)?;
                version += 1;
            }
            return Self::decode_current(kind, &upcasted);
        }
        Self::decode_current(kind, payload)
    }

    fn decode_current(kind: EventType, payload: &str) -> Result<Self, DecodeError> {
        fn read<T: DeserializeOwned>(kind: EventType, payload: &str) -> Result<T, DecodeError> {
            serde_json::from_str(payload).map_err(|e| DecodeError::Payload {
                event_type: kind.name().to_owned(),
                schema_version: kind.current_version(),
                message: e.to_string(),
            })
        }
        let empty = |event: DomainEvent| read::<Empty>(kind, payload).map(|_| event);
        let amount = || read::<Amount>(kind, payload).map(|Amount { amount }| amount);
        Ok(match kind {
            EventType::OrderPlaced => {
                let Placed { user, total } = read(kind, payload)?;
                OrderEvent::Placed { user, total }.into()
            }
            EventType::OrderApproved => empty(OrderEvent::Approved.into())?,
            EventType::OrderDelivered => empty(OrderEvent::Delivered.into())?,
            EventType::OrderCancelled => {
                let Cancelled { reason } = read(kind, payload)?;
                OrderEvent::Cancelled { reason }.into()
            }
            EventType::PaymentRequested => PaymentEvent::Requested { amount: amount()? }.into(),
            EventType::PaymentApproved => PaymentEvent::Approved { amount: amount()? }.into(),
            EventType::PaymentRefunded => PaymentEvent::Refunded { amount: amount()? }.into(),
            EventType::PaymentDeclined => {
                let Declined { reason } = read(kind, payload)?;
                PaymentEvent::Declined { reason }.into()
            }
            EventType::DeliveryScheduled => {
                let Scheduled { due_at } = read(kind, payload)?;
                DeliveryEvent::Scheduled { due_at }.into()
            }
            EventType::DeliveryCompleted => empty(DeliveryEvent::Completed.into())?,
            EventType::DeliveryCancelled => empty(DeliveryEvent::Cancelled.into())?,
        })
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

    fn total(n: i64) -> Total {
        Total::try_from(n).expect("valid total")
    }

    fn placed() -> DomainEvent {
        OrderEvent::Placed { user: "alice".parse().expect("valid user"), total: total(2) }.into()
    }

    fn every_event() -> Vec<DomainEvent> {
        vec![
            placed(),
            OrderEvent::Approved.into(),
            OrderEvent::Delivered.into(),
            OrderEvent::Cancelled { reason: CancelReason::CustomerRequest }.into(),
            OrderEvent::Cancelled { reason: CancelReason::PaymentDeclined }.into(),
            PaymentEvent::Requested { amount: total(2) }.into(),
            PaymentEvent::Approved { amount: total(2) }.into(),
            PaymentEvent::Declined { reason: "odd total 3".into() }.into(),
            PaymentEvent::Refunded { amount: total(2) }.into(),
            DeliveryEvent::Scheduled {
                due_at: Timestamp::from_millisecond(1_800_000_000_250).expect("time"),
            }
            .into(),
            DeliveryEvent::Completed.into(),
            DeliveryEvent::Cancelled.into(),
        ]
    }

    #[test]
    fn every_event_survives_a_round_trip_through_storage() {
        for event in every_event() {
            let decoded = DomainEvent::decode(event.event_type(), event.schema_version(), &event.payload());
            assert_eq!(decoded, Ok(event));
        }
    }

    #[test]
    fn every_event_type_is_known_by_its_stored_name_alone() {
        let kinds: Vec<EventType> = every_event().iter().map(DomainEvent::kind).collect();
        for kind in EventType::ALL {
            assert_eq!(EventType::named(kind.name()), Some(*kind));
            assert!(kinds.contains(kind), "every_event() has no {kind:?}");
        }
        // The names are the stored format: renaming one would orphan every event stored under it.
        let names: Vec<&str> = EventType::ALL.iter().map(|kind| kind.name()).collect();
        assert_eq!(
            names,
            [
                "OrderPlaced",
                "OrderApproved",
                "OrderDelivered",
                "OrderCancelled",
                "PaymentRequested",
                "PaymentApproved",
                "PaymentDeclined",
                "PaymentRefunded",
                "DeliveryScheduled",
                "DeliveryCompleted",
                "DeliveryCancelled",
            ]
        );
    }

    #[test]
    fn the_payload_holds_the_fields_but_not_the_type() {
        assert_eq!(placed().payload(), r#"{"user":"alice","total":2}"#);
        assert_eq!(placed().event_type(), "OrderPlaced");
        let scheduled: DomainEvent = DeliveryEvent::Scheduled {
            due_at: Timestamp::from_millisecond(1_800_000_000_250).expect("time"),
        }
        .into();
        assert_eq!(scheduled.payload(), r#"{"due_at":"2027-01-15T08:00:00.25Z"}"#);
    }

    #[test]
    fn a_version_1_cancel_is_upcast_to_a_customer_request() {
        let old = DomainEvent::decode("OrderCancelled", 1, "{}");
        assert_eq!(old, Ok(OrderEvent::Cancelled { reason: CancelReason::CustomerRequest }.into()));
        let current: DomainEvent = OrderEvent::Cancelled { reason: CancelReason::PaymentDeclined }.into();
        assert_eq!(current.schema_version(), 2);
        assert_eq!(current.payload(), r#"{"reason":"payment_declined"}"#);
    }

    #[test]
    fn unknown_types_and_versions_are_reported_not_guessed() {
        assert_eq!(
            DomainEvent::decode("OrderTeleported", 1, "{}"),
            Err(DecodeError::UnknownType("OrderTeleported".into()))
        );
        for version in [0, 3, 99] {
            assert!(matches!(
                DomainEvent::decode("OrderCancelled", version, "{}"),
                Err(DecodeError::UnknownVersion { .. })
            ));
        }
        assert!(matches!(
            DomainEvent::decode("OrderPlaced", 1, r#"{"user":"","total":2}"#),
            Err(DecodeError::Payload { .. })
        ));
        assert!(matches!(DomainEvent::decode("OrderCancelled", 1, "[]"), Err(DecodeError::Payload { .. })));
    }

    #[test]
    fn stream_ids_print_and_parse() {
        let id: OrderId = "019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6b".parse().expect("valid id");
        for (stream, text) in [
            (StreamId::order(id), "order-019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6b"),
            (StreamId::new(StreamKind::Payment, id), "payment-019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6b"),
            (StreamId::new(StreamKind::Delivery, id), "delivery-019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6b"),
        ] {
            assert_eq!(stream.to_string(), text);
            assert_eq!(text.parse::<StreamId>(), Ok(stream));
        }
        assert!("parcel-019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6b".parse::<StreamId>().is_err());
    }
}
