//! `POST /v1/persist/conversations/{id}/items/pop`: the newest item removed and answered,
//! atomically.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use persist_ops::PipelineExt;
use persist_ops::lifecycle::Pop;
use serde_json::json;

use crate::api::items;
use crate::http::error::ApiError;
use crate::state::Caller;

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
