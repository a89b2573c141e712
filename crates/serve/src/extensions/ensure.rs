//! `PUT /v1/persist/conversations/{id}`: a conversation by the id the client minted (the AI
//! SDK's chat id), created when the caller has none.

use axum::extract::Path;
use axum::response::Response;
use persist_core::args::Restore;
use persist_core::{PersistError, Thread, ThreadId, Timestamp};

use crate::api::conversations::{answer_conversation, find, known_fields, metadata_of, thread_metadata};
use crate::http::error::ApiError;
use crate::state::{Caller, JsonObject};

/// A caller's conversation id: 1 to 255 printable ASCII characters, as item ids are.
fn chat_id(id: &str) -> Result<ThreadId, ApiError> {
    let valid = !id.is_empty() && id.bytes().all(|byte| byte.is_ascii_graphic());
    valid
        .then(|| ThreadId::new(id).ok())
        .flatten()
        .ok_or_else(|| ApiError::invalid("id", "Invalid 'id': 1 to 255 printable ASCII characters."))
}

/// `PUT /v1/persist/conversations/{id}`: the conversation of this id, created (with
/// `metadata`) when the caller has none: what an app whose client mints the chat's id calls
/// before its first write, as often as it likes. A deleted conversation's id is 409: it is not
/// used again.
pub(crate) async fn ensure(
    caller: Caller,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    known_fields(&body, &["metadata"])?;
    let metadata = metadata_of(body.get("metadata"))?;
    let thread_id = chat_id(&id)?;
    if let Ok(existing) = find(&caller, &id).await {
        return Ok(answer_conversation(&caller, &existing));
    }
    let mut thread = Thread::stored(thread_id.clone(), 0, Timestamp::now());
    thread.tenant = caller.tenant.clone();
    thread.metadata = thread_metadata(metadata, None);
    match caller.within(caller.store.restore(Restore::new(thread, Vec::new()))).await? {
        Ok(_) => {}
        // Made meanwhile by another request, or deleted before.
        Err(error) => {
            if let Ok(existing) = find(&caller, &id).await {
                return Ok(answer_conversation(&caller, &existing));
            }
            return Err(match error {
                error @ (PersistError::ThreadDeleted { .. } | PersistError::AlreadyExists { .. }) => {
                    tracing::debug!(%error, "a conversation id taken before");
                    ApiError::conflict("A conversation of this id was deleted; its id is not used again.", false)
                }
                other => ApiError::from_store(other, Some(&id)),
            });
        }
    }
    let made = find(&caller, &id).await?;
    Ok(answer_conversation(&caller, &made))
}
