//! `GET /v1/persist/conversations`: the caller's conversations, which the API cannot list.

use axum::http::StatusCode;
use axum::response::Response;
use persist_core::read::{ListThreads, ThreadCursor};
use persist_core::{Metadata, Thread};
use serde_json::{Value, json};

use super::cursor;
use crate::api::conversations::{MIRROR_PREFIX, conversation, list};
use crate::http::error::ApiError;
use crate::http::params::Params;
use crate::state::Caller;

/// `GET /v1/persist/conversations?after=CURSOR&limit=N&metadata[KEY]=VALUE`: the caller's
/// conversations, most recently changed first, each with when it last changed (`updated_at`)
/// and how many messages it holds (`message_count`): a chat sidebar. `metadata[KEY]=VALUE`
/// (repeatable) keeps those whose metadata has each pair (written since this server version:
/// the pairs are mirrored then). `next_cursor` is the `after` of the next page (`null` after
/// the last).
pub(crate) async fn list_conversations(caller: Caller, params: Params) -> Result<Response, ApiError> {
    let mut filter = Metadata::new();
    for (name, value) in params.pairs() {
        match name.strip_prefix("metadata[").and_then(|rest| rest.strip_suffix(']')) {
            Some(key) if !key.is_empty() => filter = filter.with(format!("{MIRROR_PREFIX}{key}"), json!(value)),
            Some(_) => {
                return Err(ApiError::invalid("metadata", "Invalid 'metadata[KEY]': a key is 1 or more characters."));
            }
            None if name == "metadata" => {
                return Err(ApiError::invalid("metadata", "Invalid 'metadata': filter with metadata[KEY]=VALUE."));
            }
            None if name == "after" || name == "limit" => {}
            None => return Err(ApiError::unknown_parameter(name)),
        }
    }
    let limit = params.limit()?;
    let mut request = ListThreads::new().with_limit(limit).with_filter(filter);
    if let Some(after) = params.get("after") {
        let cursor: ThreadCursor = cursor::decode(after)?;
        request = request.with_cursor(Some(cursor));
    }
    let page = caller.run(None, caller.store.threads(request)).await?;
    let data: Vec<Value> = page.items.iter().filter(|t| t.deleted_at.is_none()).map(summary).collect();
    let mut body = list(data, page.has_more);
    body["next_cursor"] = page.next_cursor.filter(|_| page.has_more).map(|c| cursor::encode(&c)).into();
    Ok(caller.answer(StatusCode::OK, &body))
}

/// A conversation as a listing answers it: with `updated_at` (seconds) and `message_count`.
fn summary(thread: &Thread) -> Value {
    let mut value = conversation(thread);
    value["object"] = "persist.conversation".into();
    value["updated_at"] = thread.updated_at.as_micros().div_euclid(1_000_000).into();
    value["message_count"] = thread.message_count.into();
    value
}
