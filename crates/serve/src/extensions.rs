//! What the API lacks, under `/v1/persist/`: listing a caller's conversations, and an atomic pop.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use persist_core::args::Delete;
use persist_core::branch::Branch;
use persist_core::read::{ListMessages, ListThreads, ThreadCursor};
use persist_core::{MessageId, Metadata, Order, Thread};
use serde_json::{Value, json};

use crate::conversations::{MIRROR_PREFIX, conversation, list};
use crate::error::ApiError;
use crate::extract::Caller;
use crate::params::Params;
use crate::{cursor, items};

/// How many times a pop tries again after losing its item to another pop before answering 409.
const POP_ATTEMPTS: usize = 64;

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
/// answers it; concurrent pops each get another item. An empty conversation is 404 with the
/// code `conversation_empty`.
pub(crate) async fn pop(caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    let Ok(thread_id) = persist_core::ThreadId::new(&id) else { return Err(ApiError::no_conversation(&id)) };
    let exists =
        caller.run(Some(&id), caller.store.get_thread(persist_core::read::GetThread::new(thread_id.clone()))).await?;
    if exists.is_none_or(|thread| thread.deleted_at.is_some()) {
        return Err(ApiError::no_conversation(&id));
    }
    for _ in 0..POP_ATTEMPTS {
        let newest = ListMessages::new(thread_id.clone())
            .on_branch(Branch::Active)
            .with_order(Order::Desc)
            .with_limit(1)
            .include_reserved(true);
        let page = caller.run(Some(&id), caller.store.list(newest)).await?;
        let Some(message) = page.items.into_iter().next() else {
            return Err(ApiError::empty(&id));
        };
        let delete = Delete::message(thread_id.clone(), MessageId::clone(&message.id));
        // Only the pop whose delete removed the message answers it; the others take the next.
        let removed = caller.run(Some(&id), caller.store.delete(delete)).await?;
        if !removed.message_ids.is_empty() {
            let mut popped = items::of_message(&message);
            let item = if popped.len() == 1 { popped.remove(0) } else { json!({"object": "list", "data": popped}) };
            return Ok(caller.answer(StatusCode::OK, &item));
        }
    }
    Err(ApiError::conflict("Other pops took every item this one tried; retry.", true))
}
