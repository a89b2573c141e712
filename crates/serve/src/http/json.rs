//! JSON on the wire, below the errors answered in it: an answer's text, and whether a request
//! says its body is JSON.

use axum::http::{HeaderMap, header};
use serde_json::Value;

/// A value's JSON text (written into one buffer: `Display` writes it through a formatter,
/// a call per token).
pub(crate) fn json_body(value: &Value) -> String {
    // A `Value` always serializes: its keys are strings and its numbers finite.
    serde_json::to_string(value).unwrap_or_else(|_| value.to_string())
}

/// Whether the request says its body is JSON: `application/json`, any case, parameters
/// (`; charset=utf-8`) allowed.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    let value = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or_default();
    let media_type = value.split(';').next().unwrap_or_default().trim();
    media_type.eq_ignore_ascii_case("application/json")
}
