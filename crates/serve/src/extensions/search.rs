//! `GET /v1/persist/search`: the caller's items whose text holds every word, newest first.

use axum::http::StatusCode;
use axum::response::Response;
use persist_core::search::{MAX_QUERY_BYTES, Search, SearchCursor, SearchScope, words};
use serde_json::{Value, json};

use super::cursor;
use crate::api::conversations::find;
use crate::http::error::ApiError;
use crate::http::params::Params;
use crate::state::Caller;

/// `GET /v1/persist/search?q=WORDS&conversation=ID&limit=N&after=CURSOR`: the caller's items
/// whose text holds every word (newest first), in one conversation or all of them. A store
/// sealed by an encryption layer holds no text to search: 400 `unsupported`. A query with no
/// word (`q=🦀`, `q=`, punctuation only) finds nothing: an empty page, not an error (persist's
/// [`SearchQuery::parse`](persist_core::search::SearchQuery::parse) refuses it, for a Rust
/// caller to tell apart).
pub(crate) async fn search(caller: Caller, params: Params) -> Result<Response, ApiError> {
    let text = params
        .only(&["q", "conversation", "after", "limit"])?
        .get("q")
        .ok_or_else(|| ApiError::invalid("q", "Missing required parameter: 'q'."))?;
    let mut request = Search::new(text).with_limit(params.limit()?);
    if let Some(id) = params.get("conversation") {
        let thread = find(&caller, id).await?;
        request = request.with_scope(SearchScope::Thread(thread.id));
    }
    if let Some(after) = params.get("after") {
        let cursor: SearchCursor = cursor::decode(after)?;
        request = request.with_cursor(Some(cursor));
    }
    // Words are runs of letters and digits, as the store indexes them: without one, no item
    // can match (a query too long is still refused, by the store).
    if text.len() <= MAX_QUERY_BYTES && words(text).next().is_none() {
        let body = json!({"object": "list", "data": [], "has_more": false, "next_cursor": null});
        return Ok(caller.answer(StatusCode::OK, &body));
    }
    let page = caller.run(None, caller.store.search(request)).await?;
    let data: Vec<Value> = page
        .items
        .iter()
        .map(|hit| {
            json!({
                "object": "search.hit",
                "conversation_id": hit.thread_id.as_str(),
                "item_id": hit.message_id.as_str(),
                "role": hit.role.as_str(),
                "created_at": hit.created_at.as_micros().div_euclid(1_000_000),
                "snippet": serde_json::to_value(&hit.snippet).unwrap_or(Value::Null),
                "rank": hit.rank,
            })
        })
        .collect();
    let next = page.next_cursor.filter(|_| page.has_more).map(|next| cursor::encode(&next));
    let body = json!({"object": "list", "data": data, "has_more": page.has_more, "next_cursor": next});
    Ok(caller.answer(StatusCode::OK, &body))
}
