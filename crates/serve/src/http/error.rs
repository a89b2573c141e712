//! Errors as OpenAI's SDKs read them: `{"error": {"message", "type", "param", "code"}}` with the
//! status each SDK maps to its exception class.

use std::borrow::Cow;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use persist_core::PersistError;
use serde_json::json;

use super::json::json_body;

/// What a 503 for a store that is down or busy says: what the client can do, not why.
pub(crate) const UNAVAILABLE: &str = "The store is unavailable; retry later.";

/// The target of what this module logs (a refused request's cause), as a log filter names it:
/// the module's path before the crate was laid out in rooms.
const TARGET: &str = "persist_serve::error";

/// A refused request, answered as OpenAI's API answers one: its status and the `error` object.
///
/// | status | `type` | when | the SDKs raise |
/// |---|---|---|---|
/// | 400 | `invalid_request_error` | a malformed body, query or item; nothing was stored | `BadRequestError` |
/// | 401 | `authentication_error` | no bearer key, or a key the server does not know | `AuthenticationError` |
/// | 403 | `permission_error` | a layer of the server's pipeline refused the request; a server without keys does not answer for its `Host` or `Origin` | `PermissionDeniedError` |
/// | 404 | `invalid_request_error` | no such conversation or item *for this key* (another tenant's is 404 too) | `NotFoundError` |
/// | 408 | `invalid_request_error` | a body that did not arrive within the server's deadline; its connection is closed | `APIStatusError` (retried) |
/// | 409 | `conflict_error` | an item id the conversation holds already; a write that lost a race; a live reply's writer at odds with the store (`reply_running` with `reply_id`, `offset_gap` and `offset_diverged` with the reply's `offset`, `reply_stopped`, `reply_ended` with its `status`) | `ConflictError` |
/// | 412 | `invalid_request_error` | an update's `If-Match` names another version than the conversation's (`precondition_failed`) | `APIStatusError` |
/// | 413 | `invalid_request_error` | a body over the server's limit, refused before it is read whole | `APIStatusError` |
/// | 415 | `invalid_request_error` | a body not sent as `Content-Type: application/json` | `APIStatusError` |
/// | 422 | `invalid_request_error` | an `Idempotency-Key` used before for a different request | `UnprocessableEntityError` |
/// | 429 | `rate_limit_error` | more requests at once than the server takes | `RateLimitError` |
/// | 500 | `server_error` | a stored value that cannot be read, a failure of the store | `InternalServerError` |
/// | 503 | `server_error` | the store is down or slower than the server's timeout | `InternalServerError` |
///
/// The SDKs retry 408, 409, 429 and 5xx by default; an error that a retry cannot fix says so with
/// `x-should-retry: false`, and 429 and 503 carry `retry-after`. A 5xx's message says what the
/// client can do (`The store is unavailable; retry later.`), never the store's or its driver's
/// words: those are in the server's log.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: Cow<'static, str>,
    param: Option<Cow<'static, str>>,
    code: Option<&'static str>,
    retry_after: Option<u64>,
    should_retry: Option<bool>,
    /// Whether the answer closes the connection (`Connection: close`).
    close: bool,
    /// A field of the error object beside the four (a live reply's `reply_id`, `offset`).
    detail: Option<Box<(&'static str, String)>>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
            should_retry: None,
            close: false,
            detail: None,
        }
    }

    /// 400: the request is malformed; `param` names what is wrong.
    pub fn invalid(param: impl Into<Cow<'static, str>>, message: impl Into<Cow<'static, str>>) -> Self {
        let mut error = Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message);
        error.param = Some(param.into());
        error
    }

    /// 404 for a conversation this caller cannot see.
    pub fn no_conversation(id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", format!("Conversation with id '{id}' not found."))
            .with_code("not_found")
    }

    /// 404 for an item the conversation does not hold.
    pub fn no_item(conversation: &str, item: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("Item with id '{item}' not found in conversation '{conversation}'."),
        )
        .with_code("not_found")
    }

    /// 404 for a path the API does not have.
    pub(crate) fn no_route(method: &str, path: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", format!("Invalid URL ({method} {path})"))
            .with_code("unknown_url")
    }

    /// 400: a query parameter the route does not take.
    pub(crate) fn unknown_parameter(name: &str) -> Self {
        let mut error = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!("Unrecognized request argument supplied: {name}"),
        )
        .with_code("unknown_parameter");
        error.param = Some(name.to_owned().into());
        error
    }

    /// 405: the route takes other methods (its `Allow` header names them).
    pub(crate) fn not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            format!("Method not allowed ({method} {path})"),
        )
        .with_code("method_not_allowed")
    }

    /// 401: no key, or a key the server does not know.
    pub(crate) fn unauthenticated(message: &'static str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "authentication_error", message).with_code("invalid_api_key")
    }

    /// 413: the body is over `limit` bytes.
    pub(crate) fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("The request body is over this server's limit of {limit} bytes."),
        )
        .with_code("request_too_large")
        .no_retry()
    }

    /// 408: the body did not arrive within `timeout` of its headers; the answer closes the
    /// connection (the rest of the body is never read).
    pub(crate) fn slow_body(timeout: std::time::Duration) -> Self {
        let mut error = Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            format!("The request body did not arrive within {} ms.", timeout.as_millis()),
        )
        .with_code("request_timeout");
        error.close = true;
        error
    }

    /// 409: the request lost to another write, or names an id that is taken.
    pub(crate) fn conflict(message: impl Into<Cow<'static, str>>, retry: bool) -> Self {
        let error = Self::new(StatusCode::CONFLICT, "conflict_error", message).with_code("conflict");
        if retry { error } else { error.no_retry() }
    }

    /// 415: a body that is not declared JSON.
    pub(crate) fn not_json() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            "The request body must be JSON, sent with 'Content-Type: application/json'.",
        )
        .with_code("unsupported_media_type")
        .no_retry()
    }

    /// 403: the request's `header` (`Host` or `Origin`) names a host the server does not answer
    /// for (its value is not repeated).
    pub(crate) fn foreign_host(header: &'static str) -> Self {
        let mut error = Self::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            format!("This server does not answer requests whose {header} names this host; its operator can allow it."),
        )
        .with_code("host_not_allowed")
        .no_retry();
        error.param = Some(header.into());
        error
    }

    /// 422: an idempotency key sent before with a different request. The key is not repeated:
    /// it may carry an identifier.
    pub(crate) fn key_reused() -> Self {
        let mut error = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request_error",
            "This Idempotency-Key was used before with a different request; nothing was written.",
        )
        .with_code("idempotency_key_reused");
        error.param = Some("Idempotency-Key".into());
        error
    }

    /// 429: more requests in flight than the server takes.
    pub(crate) fn busy(limit: usize) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            format!("This server is answering {limit} requests already; retry shortly."),
        )
        .with_code("too_many_requests");
        error.retry_after = Some(1);
        error
    }

    /// 503: the store did not answer in time, or is down; retrying later may succeed.
    pub(crate) fn unavailable(message: impl Into<Cow<'static, str>>) -> Self {
        let mut error =
            Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message).with_code("store_unavailable");
        error.retry_after = Some(1);
        error
    }

    /// 500: something a retry will not fix.
    pub(crate) fn internal(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message).with_code("server_error").no_retry()
    }

    fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    fn no_retry(mut self) -> Self {
        self.should_retry = Some(false);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `type` of the error object.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The `message` of the error object.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The `param` of the error object: the field at fault, when one is.
    pub fn param(&self) -> Option<&str> {
        self.param.as_deref()
    }

    /// The `code` of the error object.
    pub fn code(&self) -> Option<&'static str> {
        self.code
    }

    /// The error a store's refusal is answered with, for a request on `conversation`.
    pub(crate) fn from_store(error: PersistError, conversation: Option<&str>) -> Self {
        match error {
            PersistError::InvalidInput { field, reason } => {
                Self::invalid(field, format!("Invalid '{field}': {reason}")).with_code("invalid_value")
            }
            PersistError::NotFound { thread_id, message_id: Some(message) } => {
                Self::no_item(thread_id.as_str(), message.as_str())
            }
            PersistError::NotFound { thread_id, message_id: None } | PersistError::ThreadDeleted { thread_id } => {
                Self::no_conversation(conversation.unwrap_or(thread_id.as_str()))
            }
            PersistError::AlreadyExists { message_id, .. } => Self::conflict(
                format!(
                    "The conversation already holds an item with id '{message_id}'; item ids are unique in a conversation."
                ),
                false,
            ),
            PersistError::IdempotencyKeyReused { .. } => Self::key_reused(),
            error @ (PersistError::VersionConflict { .. } | PersistError::MessageComplete { .. }) => {
                Self::conflict(error.to_string(), true)
            }
            PersistError::ReplyConflict { message_id, conflict, .. } => Self::reply_conflict(&message_id, conflict),
            PersistError::Rejected { reason } => {
                Self::new(StatusCode::FORBIDDEN, "permission_error", reason).with_code("rejected").no_retry()
            }
            PersistError::Unsupported { what } => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!("Not supported by this server: {what}"),
            )
            .with_code("unsupported"),
            // A 5xx says what the client can do; the cause, a driver's words among them, is logged.
            error @ (PersistError::Timeout { .. } | PersistError::Temporary { .. }) => {
                tracing::warn!(target: TARGET, %error, "the store is unavailable");
                Self::unavailable(UNAVAILABLE)
            }
            error @ PersistError::Unreadable { .. } => {
                tracing::error!(target: TARGET, %error, "a stored value cannot be read");
                Self::internal("A stored value cannot be read; the server's log has the cause.")
            }
            error => {
                tracing::error!(target: TARGET, %error, "the store failed");
                Self::internal("The store failed to answer; the server's log has the cause.")
            }
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.kind, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }});
        if let Some(detail) = self.detail {
            let (field, value) = *detail;
            body["error"][field] = value.into();
        }
        let mut response = (self.status, json_body(&body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(retry) = self.should_retry {
            headers.insert("x-should-retry", HeaderValue::from_static(if retry { "true" } else { "false" }));
        }
        if self.close {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl ApiError {
    /// 400: recall asked of a server that was given no embedder; a retry cannot help.
    pub(crate) fn no_embedder() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "Recall needs an embedding model, and this server has none: start it with \
             `persist serve --embeddings-url URL` (an OpenAI-compatible embeddings endpoint), or give \
             `Server::with_embedder` one.",
        )
        .with_code("recall_unavailable")
        .no_retry()
    }

    /// 503 (`temporary`: the model is down, busy or slow) or 500: the embedding model failed;
    /// its words are logged, not answered.
    pub(crate) fn embedder_failed(error: &dyn std::fmt::Display, temporary: bool) -> Self {
        tracing::warn!(target: TARGET, %error, "the embedding model failed");
        if temporary {
            Self::unavailable("The embedding model is unavailable; retry later.").with_code("embedder_unavailable")
        } else {
            Self::internal("The embedding model refused the request; the server's log has the cause.")
                .with_code("embedder_error")
        }
    }

    /// 409 for a live reply's writer at odds with the store; a retry of the same request
    /// cannot help.
    fn reply_conflict(reply: &persist_core::MessageId, conflict: persist_core::ReplyConflict) -> Self {
        use persist_core::ReplyConflict;
        let (code, message, detail) = match conflict {
            ReplyConflict::Running => (
                "reply_running",
                format!("A reply is being generated in this conversation: '{reply}'. Stop it, or wait for its end."),
                ("reply_id", reply.to_string()),
            ),
            ReplyConflict::Gap { at, end } => (
                "offset_gap",
                format!("The reply ends at {end}; an append at {at} is beyond it: send the parts from {end}."),
                ("offset", end.to_string()),
            ),
            ReplyConflict::Diverged { at, end } => (
                "offset_diverged",
                format!("The reply holds other parts at {at} than this append (it ends at {end})."),
                ("offset", end.to_string()),
            ),
            ReplyConflict::Stopped => (
                "reply_stopped",
                format!("The reply '{reply}' was stopped: it ended with what was written; stop generating."),
                ("reply_id", reply.to_string()),
            ),
            other => ("reply_conflict", other.to_string(), ("reply_id", reply.to_string())),
        };
        let mut error = Self::conflict(message, false).with_code(code);
        error.detail = Some(Box::new(detail));
        error
    }

    /// 409 for a writer's call on a reply that ended (`status`: how, as the API says it).
    pub(crate) fn reply_ended(reply: &str, status: &'static str) -> Self {
        let mut error =
            Self::conflict(format!("The reply '{reply}' has ended ({status})."), false).with_code("reply_ended");
        error.detail = Some(Box::new(("status", status.to_owned())));
        error
    }

    /// 412: an update's `If-Match` names another version than the conversation's (`actual`).
    pub(crate) fn stale(actual: u64) -> Self {
        let mut error = Self::new(
            StatusCode::PRECONDITION_FAILED,
            "invalid_request_error",
            format!("The conversation changed since it was read: it is at version \"{actual}\"; read it again."),
        )
        .with_code("precondition_failed")
        .no_retry();
        error.param = Some("If-Match".into());
        error
    }

    /// 404 for a pop of a conversation with no item.
    pub(crate) fn empty(conversation: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("Conversation '{conversation}' has no items."),
        )
        .with_code("conversation_empty")
    }
}

/// A path no route has: 404, as OpenAI answers it.
pub(crate) async fn no_route(request: Request) -> ApiError {
    ApiError::no_route(request.method().as_str(), request.uri().path())
}

/// A route that exists, asked with a method it does not take: 405 (axum adds `Allow`).
pub(crate) async fn not_allowed(request: Request) -> ApiError {
    ApiError::not_allowed(request.method().as_str(), request.uri().path())
}
