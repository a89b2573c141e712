//! What the API lacks, under `/v1/persist/`: listing a caller's conversations, and an atomic pop.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use persist_core::args::Delete;
use persist_core::branch::Branch;
use persist_core::read::{ListMessages, ListThreads, ThreadCursor};
use persist_core::{MessageId, Order};
use serde_json::{Value, json};

use crate::conversations::{conversation, list};
use crate::error::ApiError;
use crate::extract::Caller;
use crate::params::Params;
use crate::{cursor, items};

/// How many times a pop tries again after losing its item to another pop before answering 409.
const POP_ATTEMPTS: usize = 64;

/// `GET /v1/persist/conversations?after=CURSOR&limit=N`: the caller's conversations, most
/// recently changed first; `next_cursor` is the `after` of the next page (`null` after the last).
pub(crate) async fn list_conversations(caller: Caller, params: Params) -> Result<Response, ApiError> {
    let limit = params.only(&["after", "limit"])?.limit()?;
    let mut request = ListThreads::new().with_limit(limit);
    if let Some(after) = params.get("after") {
        let cursor: ThreadCursor = cursor::decode(after)?;
        request = request.with_cursor(Some(cursor));
    }
    let page = caller.run(None, caller.store.threads(request)).await?;
    let data: Vec<Value> = page.items.iter().filter(|t| t.deleted_at.is_none()).map(conversation).collect();
    let mut body = list(data, page.has_more);
    body["next_cursor"] = page.next_cursor.filter(|_| page.has_more).map(|c| cursor::encode(&c)).into();
    Ok(caller.answer(StatusCode::OK, &body))
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
