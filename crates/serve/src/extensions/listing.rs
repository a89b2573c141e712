//! What the API lacks, under `/v1/persist/`: listing a caller's conversations, and an atomic pop.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use persist_core::read::{ListThreads, ThreadCursor};
use persist_core::{Metadata, Thread};
use persist_ops::PipelineExt;
use persist_ops::lifecycle::Pop;
use serde_json::{Value, json};

use crate::conversations::{MIRROR_PREFIX, conversation, list};
use crate::error::ApiError;
use crate::extract::Caller;
use crate::params::Params;
use crate::{cursor, items};

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

/// `POST /v1/persist/conversations/{id}/items/pop`: removes the conversation's newest item and
/// answers it, with persist's one pop ([`PipelineExt::pop`]): concurrent pops, on any instance,
/// each get another item. An empty conversation is 404 with the code `conversation_empty`.
pub(crate) async fn pop(caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    let Ok(thread_id) = persist_core::ThreadId::new(&id) else { return Err(ApiError::no_conversation(&id)) };
    let popped = caller.run(Some(&id), caller.store.pop(Pop::new(thread_id))).await?;
    let Some(message) = popped.messages.first() else { return Err(ApiError::empty(&id)) };
    let mut items = items::of_message(message);
    let item = if items.len() == 1 { items.remove(0) } else { json!({"object": "list", "data": items}) };
    Ok(caller.answer(StatusCode::OK, &item))
}
