//! The original order service's HTTP endpoints, served by the daemon when asked (issue 17): their
//! bodies, with the original field names (`user_id`), and how errors map onto HTTP statuses.
//! `docs/PROTOCOL.md` ("HTTP endpoints") and `docs/openapi.json` describe them.

use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::milliseconds;
use super::reply::{ErrorBody, ErrorCode};
use super::request::{invalid_json, unique_keys};
use super::view::{OrderPage, OrderView};
use crate::order::{CancelReason, NewUserId, OrderId, OrderStatus, Total};

/// `POST /order/`: `{"user_id": "test_user", "total": 2}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    /// The rules of a new name (issue 18), as the socket's `create`.
    pub user_id: NewUserId,
    pub total: Total,
}

/// `PUT /order/cancel`: `{"id": "56f9222e-f731-47b8-aeb7-66112ca511d0"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelOrder {
    pub id: OrderId,
}

/// An order as the HTTP endpoints show it: the socket's view with the original service's name for
/// the customer (`user_id`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpOrder {
    pub id: OrderId,
    pub user_id: String,
    pub total: i64,
    pub status: OrderStatus,
    pub cancel_reason: Option<CancelReason>,
    #[serde(serialize_with = "milliseconds::serialize")]
    pub created_at: Timestamp,
    #[serde(serialize_with = "milliseconds::serialize")]
    pub updated_at: Timestamp,
    #[serde(serialize_with = "milliseconds::serialize_option")]
    pub approved_at: Option<Timestamp>,
    #[serde(serialize_with = "milliseconds::serialize_option")]
    pub delivered_at: Option<Timestamp>,
    #[serde(serialize_with = "milliseconds::serialize_option")]
    pub cancelled_at: Option<Timestamp>,
}

impl From<OrderView> for HttpOrder {
    fn from(view: OrderView) -> HttpOrder {
        HttpOrder {
            id: view.id,
            user_id: view.user,
            total: view.total,
            status: view.status,
            cancel_reason: view.cancel_reason,
            created_at: view.created_at,
            updated_at: view.updated_at,
            approved_at: view.approved_at,
            delivered_at: view.delivered_at,
            cancelled_at: view.cancelled_at,
        }
    }
}

/// `GET /orders?user_id=u`: a page of orders, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpOrderPage {
    pub orders: Vec<HttpOrder>,
    /// More orders follow: ask again with `before` set to the last id of this page.
    pub more: bool,
}

impl From<OrderPage> for HttpOrderPage {
    fn from(page: OrderPage) -> HttpOrderPage {
        HttpOrderPage { orders: page.orders.into_iter().map(HttpOrder::from).collect(), more: page.more }
    }
}

/// An error answered over HTTP: `{"error": {"code", "message"}}`, the socket's codes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpError {
    pub error: ErrorBody,
}

/// The HTTP status of an error code.
pub fn http_status(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::InvalidRequest | ErrorCode::ProtocolMismatch | ErrorCode::WrongStore => 400,
        ErrorCode::PermissionDenied => 401,
        ErrorCode::NotFound => 404,
        ErrorCode::Rejected => 409,
        ErrorCode::TooLarge => 413,
        ErrorCode::Busy | ErrorCode::Unavailable | ErrorCode::Starting => 503,
        ErrorCode::Timeout => 504,
        ErrorCode::Internal | ErrorCode::Unknown => 500,
    }
}

/// Reads a request body as strictly as the socket reads a request line: no key twice, no field
/// `T` does not know; a message that says what is wrong and where (serde_json's line and column).
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ErrorBody> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ErrorBody::new(ErrorCode::InvalidRequest, "the body is not valid UTF-8"))?;
    unique_keys(text, "the body")?;
    serde_json::from_str(text).map_err(|e| invalid_json(&e, "the body"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_bodies_are_read_and_the_documented_cancel_body_is_refused_with_where() {
        let place: PlaceOrder =
            parse_body(br#"{"user_id": "test_user", "total": 2}"#).expect("the original create");
        assert_eq!(place.user_id.as_str(), "test_user");
        assert_eq!(place.total.get(), 2);
        let cancel: CancelOrder =
            parse_body(br#"{"id": "56f9222e-f731-47b8-aeb7-66112ca511d0"}"#).expect("a cancel body");
        assert_eq!(cancel.id.to_string(), "56f9222e-f731-47b8-aeb7-66112ca511d0");
        // As the original documentation wrote it: a trailing comma.
        let refused = parse_body::<CancelOrder>(br#"{"id": "56f9222e-f731-47b8-aeb7-66112ca511d0",}"#)
            .expect_err("not JSON");
        assert_eq!(refused.code, ErrorCode::InvalidRequest);
        assert!(refused.message.contains("trailing comma at line 1 column 47"), "{}", refused.message);
    }

    #[test]
    fn bad_bodies_get_the_socket_s_messages() {
        for (body, said) in [
            (&br#"{"user_id": "a", "total": 0}"#[..], "total"),
            (br#"{"user_id": "", "total": 2}"#, "user"),
            (br#"{"user_id": "a", "total": 2, "total": 4}"#, "given twice"),
            (br#"{"user_id": "a", "total": 2, "extra": 1}"#, "unknown field `extra`"),
            (br#"{"user_id": "a"}"#, "missing field `total`"),
            (b"\xff", "not valid UTF-8"),
            (b"", "not valid JSON"),
        ] {
            let refused = parse_body::<PlaceOrder>(body).expect_err("refused");
            assert_eq!(refused.code, ErrorCode::InvalidRequest);
            assert!(refused.message.contains(said), "{}: {}", String::from_utf8_lossy(body), refused.message);
        }
    }

    #[test]
    fn every_error_code_has_a_status() {
        assert_eq!(http_status(ErrorCode::InvalidRequest), 400);
        assert_eq!(http_status(ErrorCode::PermissionDenied), 401);
        assert_eq!(http_status(ErrorCode::NotFound), 404);
        assert_eq!(http_status(ErrorCode::Rejected), 409);
        assert_eq!(http_status(ErrorCode::TooLarge), 413);
        assert_eq!(http_status(ErrorCode::Starting), 503);
    }
}
