//! More extensions under `/v1/persist/`: search, a conversation compacted, its branches, and
//! its change feed as Server-Sent Events.

use std::convert::Infallible;

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, stream};
use persist_core::args::Update;
use persist_core::branch::{ListBranches, Switch};
use persist_core::feed::{ReadFeed, Subscription};
use persist_core::search::{MAX_QUERY_BYTES, Search, SearchCursor, SearchScope, words};
use persist_core::summary::ReadCompacted;
use persist_core::{MessageId, PersistError, ThreadId};
use serde_json::{Value, json};

use crate::conversations::{answer_conversation, find, items_of, list};
use crate::cursor;
use crate::error::ApiError;
use crate::extract::{Caller, JsonObject, Tenant};
use crate::params::Params;

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
    crate::conversations::known_fields(&body, &["item_id", "mode"])?;
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

/// `GET /v1/persist/conversations/{id}/events`: the conversation's change feed as Server-Sent
/// Events, each with its feed position as `id`, the write as `event` and the change as JSON
/// `data`; it resumes after `Last-Event-ID` (what a reconnecting `EventSource` sends), else
/// after `?after=N`, else from the start. When the feed no longer holds every event after that
/// position, one `gap` event (`{"after", "trimmed"}`) ends the stream: reload, then follow again.
/// The stream ends when the server shuts down.
pub(crate) async fn events(
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let position = |text: &str, param: &'static str| {
        text.trim()
            .parse::<u64>()
            .map_err(|_| ApiError::invalid(param, format!("Invalid '{param}': a feed position is a whole number.")))
    };
    params.only(&["after"])?;
    // The query is checked whether or not the header wins over it.
    let queried = params.get("after").map(|text| position(text, "after")).transpose()?;
    let after = match headers.get("last-event-id").map(|value| value.to_str().unwrap_or("-")) {
        Some(text) => position(text, "Last-Event-ID")?,
        None => queried.unwrap_or(0),
    };
    let thread = find(&caller, &id).await?;
    let start = match caller.within(subscribe(&caller, thread.id, after)).await? {
        Ok(subscription) => Follow::Live(Box::new(subscription)),
        Err(PersistError::FeedGap { after, trimmed }) => Follow::Gap { after, trimmed },
        Err(other) => return Err(ApiError::from_store(other, Some(&id))),
    };
    // On shutdown the stream ends: the client resumes after its `Last-Event-ID`.
    let events = stream::unfold(start, next_event).take_until(caller.closed());
    let mut response = Sse::new(events).keep_alive(KeepAlive::default()).into_response();
    response.extensions_mut().insert(Tenant(caller.tenant.clone()));
    Ok(response)
}

async fn subscribe(caller: &Caller, thread: ThreadId, after: u64) -> Result<Subscription, PersistError> {
    caller.store.subscribe(ReadFeed::thread(thread).after(after)).await
}

/// Where an event stream is.
enum Follow {
    Live(Box<Subscription>),
    Gap { after: u64, trimmed: u64 },
    Done,
}

async fn next_event(state: Follow) -> Option<(Result<Event, Infallible>, Follow)> {
    match state {
        Follow::Live(mut subscription) => match subscription.next().await {
            Ok(event) => {
                let data = serde_json::to_string(&event).unwrap_or_default();
                let sse = Event::default().id(event.position.to_string()).event(event.change.op.to_string()).data(data);
                Some((Ok(sse), Follow::Live(subscription)))
            }
            Err(PersistError::FeedGap { after, trimmed }) => Some((Ok(gap(after, trimmed)), Follow::Done)),
            // The store failed: the stream ends, and the client reconnects with the id of the
            // last event it received, missing nothing.
            Err(_) => None,
        },
        Follow::Gap { after, trimmed } => Some((Ok(gap(after, trimmed)), Follow::Done)),
        Follow::Done => None,
    }
}

/// The `gap` event, without an id (the client's last event id stays the last position it got).
fn gap(after: u64, trimmed: u64) -> Event {
    Event::default().event("gap").data(json!({"after": after, "trimmed": trimmed}).to_string())
}
