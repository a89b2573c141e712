//! A conversation's branches (the ones a host wrote: an edit, a regenerated reply): an item's
//! alternatives or the end of every branch (`GET …/branches`), and the branch shown
//! (`POST …/branches/switch`).

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use persist_core::MessageId;
use persist_core::args::Update;
use persist_core::branch::{ListBranches, Switch};
use serde_json::Value;

use crate::api::conversations::{answer_conversation, find, items_of, known_fields, list};
use crate::http::error::ApiError;
use crate::http::params::Params;
use crate::state::{Caller, JsonObject};

/// `GET /v1/persist/conversations/{id}/branches?item_id=ID`: the alternatives at an item (the
/// items sharing its parent, itself included), or without `item_id` the last item of every
/// branch; `active` is the index of the one on the branch the conversation shows.
pub(crate) async fn branches(caller: Caller, Path(id): Path<String>, params: Params) -> Result<Response, ApiError> {
    params.only(&["item_id"])?;
    let thread = find(&caller, &id).await?;
    let request = match params.get("item_id") {
        Some(item) => {
            let message = MessageId::new(item).map_err(|_| ApiError::no_item(&id, item))?;
            ListBranches::siblings(thread.id, message)
        }
        None => ListBranches::leaves(thread.id),
    };
    let found = caller.run(Some(&id), caller.store.branches(request)).await?;
    let mut body = list(items_of(&found.items, false), false);
    body["active"] = found.active.into();
    Ok(caller.answer(StatusCode::OK, &body))
}

/// `POST /v1/persist/conversations/{id}/branches/switch` with `{"item_id": ID}`: the
/// conversation shows the branch through that item (ending at its latest descendant); with
/// `"mode": "to"`, the branch ending at that item (the next item written follows it).
pub(crate) async fn switch(
    caller: Caller,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    known_fields(&body, &["item_id", "mode"])?;
    let item = body
        .get("item_id")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("item_id", "Missing required string: 'item_id'."))?;
    let message = MessageId::new(item).map_err(|_| ApiError::no_item(&id, item))?;
    let switch = match body.get("mode") {
        None => Switch::Through(message),
        Some(Value::String(mode)) if mode == "through" => Switch::Through(message),
        Some(Value::String(mode)) if mode == "to" => Switch::To(message),
        Some(other) => {
            return Err(ApiError::invalid("mode", format!("Invalid 'mode': {other}. Expected 'through' or 'to'.")));
        }
    };
    let thread = find(&caller, &id).await?;
    caller.run(Some(&id), caller.store.update(Update::thread(thread.id).with_switch(switch))).await?;
    let thread = find(&caller, &id).await?;
    Ok(answer_conversation(&caller, &thread))
}
