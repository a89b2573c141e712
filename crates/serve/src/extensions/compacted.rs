//! `GET /v1/persist/conversations/{id}/compacted`: a conversation as a model is given it, its
//! latest summary and the items after it.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use persist_core::summary::ReadCompacted;
use serde_json::json;

use crate::api::conversations::{find, items_of};
use crate::http::error::ApiError;
use crate::http::params::Params;
use crate::state::Caller;

/// `GET /v1/persist/conversations/{id}/compacted`: what a model is given of a long
/// conversation: its latest summary (`null` when it has none), then the items after it.
pub(crate) async fn compacted(caller: Caller, Path(id): Path<String>, params: Params) -> Result<Response, ApiError> {
    params.only(&[])?;
    let thread = find(&caller, &id).await?;
    let read = caller.run(Some(&id), caller.store.compacted(ReadCompacted::new(thread.id))).await?;
    let summary = read.summary.map(|summary| {
        json!({
            "text": summary.content.to_text(),
            "through_seq": summary.through_seq,
            "created_at": summary.created_at.as_micros().div_euclid(1_000_000),
        })
    });
    let data = items_of(&read.messages, false);
    Ok(caller.answer(StatusCode::OK, &json!({"object": "conversation.compacted", "summary": summary, "data": data})))
}
