//! The original order service's HTTP endpoints (issue 17), on the daemon's one HTTP server: a
//! second door into the same house. Each route calls what the socket's router calls — the
//! writer for `create` and `cancel`, the readers for `show` and `list` — so the rules, the
//! validation messages and the error codes are the socket's; only the field names (`user_id`)
//! and the statuses are HTTP's.
//!
//! HTTP has no peer uid, and any local user can reach a loopback port: every request needs the
//! bearer token (`--http-token-file`), unless the user chose `--http-insecure-local` for a
//! loopback address. On a loopback address the `Host` header must name this machine (a web
//! page's DNS rebinding would name its own host), and a body must say it is JSON.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use orders_shared::OrderId;
use orders_shared::order::{OrderStatus, UserId};
use orders_shared::protocol::http::{
    CancelOrder, HttpError, HttpOrder, HttpOrderPage, PlaceOrder, http_status, parse_body,
};
use orders_shared::protocol::{CreateRequest, ErrorBody, ErrorCode, IdempotencyKey, ListRequest};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::context::{Context, Serving};
use super::queries::{find_order, read_error_body};
use crate::command::WriteCommand;

/// The largest body read: the original requests are a few dozen bytes.
pub const MAX_BODY: usize = 64 << 10;
/// How long a request may take to be answered (a create waits for its commit).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request's body may take to arrive once its head has.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Who may use the endpoints, and how they are reached.
pub struct Api {
    pub serving: Arc<Serving>,
    /// The bearer token every request must carry; `None` with `--http-insecure-local`.
    pub token: Option<String>,
    /// Where the endpoints listen: on a loopback address, `Host` must name this machine.
    pub address: SocketAddr,
}

/// The routes: `POST /order/` (and `/order`), `PUT /order/cancel`, `GET /order/{id}`, `GET /orders`.
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/order", post(place))
        .route("/order/", post(place))
        .route("/order/cancel", put(cancel))
        .route("/order/{id}", get(show))
        .route("/orders", get(list))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(api)
}

/// An error as JSON, with the socket's code and its HTTP status.
fn error(body: ErrorBody) -> Response {
    let status = StatusCode::from_u16(http_status(body.code)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, json(&HttpError { error: body })).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

fn invalid(message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::InvalidRequest, message)
}

/// A JSON body with its content type.
fn json(value: &impl serde::Serialize) -> Response {
    let text = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned());
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], text).into_response()
}

async fn no_route() -> Response {
    error(ErrorBody::new(ErrorCode::NotFound, "no such endpoint; see docs/openapi.json"))
}

async fn wrong_method(method: Method) -> Response {
    let mut response = error(invalid(format!("{method} is not allowed here")));
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
}

impl Api {
    /// Who is asking, and through which door: the token, then the `Host` header.
    fn admit(&self, headers: &HeaderMap) -> Result<(), ErrorBody> {
        if let Some(token) = &self.token {
            // `Bearer <token>`; the scheme's case does not matter (RFC 7235).
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().split_once(|c: char| c.is_ascii_whitespace()))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim());
            let matches = given.is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.as_bytes())));
            if !matches {
                return Err(ErrorBody::new(
                    ErrorCode::PermissionDenied,
                    "a bearer token is required: Authorization: Bearer <the token in --http-token-file>",
                ));
            }
        }
        if self.address.ip().is_loopback() {
            let host = headers.get(header::HOST).and_then(|value| value.to_str().ok()).unwrap_or_default();
            if !is_this_machine(host, self.address) {
                return Err(invalid(format!(
                    "the Host header names '{host}', not this machine: on a loopback address the endpoints \
                     answer localhost, 127.0.0.1 or [::1] only (a web page's DNS rebinding names its own host)"
                )));
            }
        }
        Ok(())
    }

    /// The ready daemon's context, or why there is none yet.
    fn context(&self) -> Result<&Context, ErrorBody> {
        self.serving.context().ok_or_else(|| self.serving.starting_error())
    }
}

/// Whether a `Host` header names this machine, whatever its port (a port forward, `ssh -L` or
/// `docker -p`, names its own): a page's DNS rebinding would name the page's host.
fn is_this_machine(host: &str, address: SocketAddr) -> bool {
    let name = match host.rsplit_once(':') {
        // `[::1]:3000`, `localhost:3000`; a bare `::1` has colons but no brackets.
        Some((name, port)) if !name.ends_with(':') && (name.starts_with('[') || !name.contains(':')) => {
            if port.parse::<u16>().is_err() {
                return false;
            }
            name
        }
        _ => host,
    };
    let name = name.to_ascii_lowercase();
    matches!(name.as_str(), "localhost" | "127.0.0.1" | "[::1]") || name == address.ip().to_string()
}

/// Why a request is refused: the socket's error, answered with its code's HTTP status unless
/// another is more precise (415 for a body that is not JSON, which the socket cannot receive).
struct Refused {
    body: ErrorBody,
    status: Option<StatusCode>,
}

impl From<ErrorBody> for Refused {
    fn from(body: ErrorBody) -> Refused {
        Refused { body, status: None }
    }
}

/// A path or query axum could not read (`/order/%FF`, `?limit=x`): the JSON error shape too.
impl From<PathRejection> for Refused {
    fn from(rejection: PathRejection) -> Refused {
        invalid(rejection.body_text()).into()
    }
}

impl From<QueryRejection> for Refused {
    fn from(rejection: QueryRejection) -> Refused {
        invalid(rejection.body_text()).into()
    }
}

/// The body of a request that carries one: said to be JSON, within [`MAX_BODY`].
async fn body(headers: &HeaderMap, body: Body) -> Result<axum::body::Bytes, Refused> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        let body = invalid(format!(
            "the body must be JSON, sent with Content-Type: application/json (not '{content_type}')"
        ));
        return Err(Refused { body, status: Some(StatusCode::UNSUPPORTED_MEDIA_TYPE) });
    }
    let too_large =
        || ErrorBody::new(ErrorCode::TooLarge, format!("the body is larger than {} KiB", MAX_BODY >> 10));
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY as u64) {
        return Err(too_large().into());
    }
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(read) => read.map_err(|_| too_large().into()),
        Err(_) => Err(Refused {
            body: invalid(format!("the body did not arrive within {BODY_TIMEOUT:?}; nothing was done")),
            status: Some(StatusCode::REQUEST_TIMEOUT),
        }),
    }
}

/// Answers `result` with `status`, or the error's own status (and answers within
/// [`ANSWER_TIMEOUT`]).
async fn answer<T: serde::Serialize>(
    status: StatusCode,
    work: impl Future<Output = Result<(T, Option<String>), Refused>>,
) -> Response {
    let result = match tokio::time::timeout(ANSWER_TIMEOUT, work).await {
        Ok(result) => result,
        Err(_) => Err(ErrorBody::new(
            ErrorCode::Timeout,
            format!(
                "no answer within {ANSWER_TIMEOUT:?}; a create or cancel may still be carried out (retry a create \
                 with the same Idempotency-Key)"
            ),
        )
        .into()),
    };
    match result {
        Ok((value, location)) => {
            let mut response = json(&value);
            *response.status_mut() = status;
            if let Some(location) = location.and_then(|location| HeaderValue::from_str(&location).ok()) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Err(Refused { body, status }) => {
            let mut response = error(body);
            if let Some(status) = status {
                *response.status_mut() = status;
            }
            response
        }
    }
}

/// `POST /order/`: `{"user_id", "total"}` → 201 and the order; `Idempotency-Key` as `create
/// --idempotency-key`.
async fn place(State(api): State<Arc<Api>>, headers: HeaderMap, request: Body) -> Response {
    answer(StatusCode::CREATED, async {
        api.admit(&headers)?;
        let PlaceOrder { user_id, total } = parse_body(&body(&headers, request).await?)?;
        if headers.get_all("idempotency-key").iter().count() > 1 {
            return Err(invalid("the Idempotency-Key header is given twice").into());
        }
        let idempotency_key = match headers.get("idempotency-key") {
            None => None,
            Some(value) => {
                let text = value
                    .to_str()
                    .map_err(|_| Refused::from(invalid("the Idempotency-Key header is not text")))?;
                Some(
                    text.parse::<IdempotencyKey>()
                        .map_err(|e| Refused::from(invalid(format!("Idempotency-Key: {e}"))))?,
                )
            }
        };
        let create = CreateRequest { user: user_id, total, idempotency_key };
        let order = api.context()?.writer.execute(WriteCommand::Create(create)).await?;
        let location = format!("/order/{}", order.id);
        Ok((HttpOrder::from(order), Some(location)))
    })
    .await
}

/// `PUT /order/cancel`: `{"id"}` → 200 and the cancelled order.
async fn cancel(State(api): State<Arc<Api>>, headers: HeaderMap, request: Body) -> Response {
    answer(StatusCode::OK, async {
        api.admit(&headers)?;
        let CancelOrder { id } = parse_body(&body(&headers, request).await?)?;
        let order = api.context()?.writer.execute(WriteCommand::Cancel(id)).await?;
        Ok((HttpOrder::from(order), None))
    })
    .await
}

/// `GET /order/{id}`.
async fn show(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    answer(StatusCode::OK, async {
        api.admit(&headers)?;
        let Path(id) = id?;
        let id: OrderId = id.parse().map_err(|e| Refused::from(invalid(format!("{e}"))))?;
        let order = find_order(api.context()?, id).await?;
        Ok((HttpOrder::from(order), None))
    })
    .await
}

/// `GET /orders` parameters: the original `user_id`, and the socket's filters and paging.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParameters {
    user_id: Option<UserId>,
    status: Option<OrderStatus>,
    limit: Option<u32>,
    before: Option<OrderId>,
}

/// `GET /orders?user_id=u`: a page of orders, newest first.
async fn list(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    parameters: Result<Query<ListParameters>, QueryRejection>,
) -> Response {
    answer(StatusCode::OK, async {
        api.admit(&headers)?;
        let Query(parameters) = parameters?;
        let request = ListRequest {
            user: parameters.user_id,
            status: parameters.status,
            limit: parameters.limit,
            before: parameters.before,
            since: None,
        };
        let page = api
            .context()?
            .readers
            .read(move |reads| reads.list(&request))
            .await
            .map_err(|error| Refused::from(read_error_body(&error)))?;
        Ok((HttpOrderPage::from(page), None))
    })
    .await
}
