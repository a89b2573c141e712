//! What a request carries beyond its route: its id (both ways), the tenant an answer was for,
//! the store context made of them, and a JSON object body read within a limit.

use axum::body::Body;
use axum::http::{HeaderMap, header};
use persist_core::{Context, TenantId};
use serde_json::{Map, Value};

use super::error::ApiError;
use super::json::is_json;

/// The header a request's id travels in, both ways (the `openai` SDKs read it as
/// `_request_id`).
pub(crate) const REQUEST_ID: &str = "x-request-id";

/// The id of the HTTP request a store call was made for (its `x-request-id`), in the call's
/// context extensions: each store call has a request id of its own
/// ([`Context::request_id`]), and a layer that logs or audits calls finds the HTTP request
/// they served here.
///
/// # Example
///
/// ```
/// use persist::PersistArgs;
/// use persist_serve::HttpRequestId;
///
/// fn http_request_of(args: &PersistArgs) -> Option<&str> {
///     args.context().extensions().get::<HttpRequestId>().map(|id| id.0.as_str())
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequestId(pub String);

/// The request's id: the client's `x-request-id` when it is one (1 to 200 printable ASCII
/// characters), else a new `req_…`.
pub(crate) fn request_id(headers: &HeaderMap) -> HttpRequestId {
    let given = headers
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|text| (1..=200).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic()));
    HttpRequestId(given.map_or_else(|| format!("req_{}", uuid::Uuid::now_v7().simple()), str::to_owned))
}

/// The tenant a response was for, for the log.
#[derive(Debug, Clone)]
pub(crate) struct Tenant(pub(crate) Option<TenantId>);

/// The context of a request of `tenant` with these extensions: the tenant, the principal
/// `persist-serve`, and the request's [`HttpRequestId`] (set by admission) as an extension.
pub(crate) fn context_of(tenant: Option<TenantId>, extensions: &axum::http::Extensions) -> Context {
    let context = Context::new().for_tenant(tenant).with_principal("persist-serve");
    match extensions.get::<HttpRequestId>() {
        Some(id) => context.with_extension(id.clone()),
        None => context,
    }
}

/// A request's body as a JSON object: an empty body is `{}`. Over `limit` bytes it is 413,
/// refused by its `Content-Length` before any of it is read, else as soon as the bytes read
/// pass the limit. A body not sent as `application/json` is 415: a web page can send a
/// `text/plain` one to any server without asking, a JSON one only to its own.
pub(crate) async fn read_object(headers: &HeaderMap, body: Body, limit: usize) -> Result<Map<String, Value>, ApiError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    let json = is_json(headers);
    if !json && declared.is_some_and(|length| length > 0) {
        return Err(ApiError::not_json());
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|error| unreadable(&error, limit))?;
    if bytes.is_empty() {
        return Ok(Map::new());
    }
    if !json {
        return Err(ApiError::not_json());
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(object)) => {
            // Read as a double, such an integer would be stored changed: refused instead.
            let changed = object
                .values()
                .any(holds_a_whole_double_past_64_bits)
                .then(|| std::str::from_utf8(&bytes).ok().and_then(persist_core::raw::integer_beyond_64_bits))
                .flatten();
            match changed {
                Some(integer) => Err(ApiError::invalid(
                    "body",
                    format!(
                        "The integer {integer} is beyond the 64 bits persist keeps exactly (from -2^63 to 2^64-1): \
                         send it as a string."
                    ),
                )),
                None => Ok(object),
            }
        }
        Ok(_) => Err(ApiError::invalid("body", "The request body is a JSON object.")),
        Err(error) => {
            Err(ApiError::invalid("body", format!("We could not parse the JSON body of your request ({error}).")))
        }
    }
}

/// Whether `value` holds a whole double of 64 bits' magnitude or more: what an integer beyond 64
/// bits is read as (the text, scanned only then, tells it from a double written so).
fn holds_a_whole_double_past_64_bits(value: &Value) -> bool {
    match value {
        Value::Number(number) => {
            number.is_f64() && number.as_f64().is_some_and(|double| double.fract() == 0.0 && double.abs() >= 9.2e18)
        }
        Value::Array(items) => items.iter().any(holds_a_whole_double_past_64_bits),
        Value::Object(map) => map.values().any(holds_a_whole_double_past_64_bits),
        _ => false,
    }
}

/// What a body that could not be read whole is answered: 413 when it passed `limit`, else 400.
pub(crate) fn unreadable(error: &axum::Error, limit: usize) -> ApiError {
    let too_large = std::error::Error::source(error).is_some_and(|source| source.to_string().contains("length limit"))
        || error.to_string().contains("length limit");
    if too_large {
        ApiError::too_large(limit)
    } else {
        ApiError::invalid("body", "The request body could not be read.")
    }
}
