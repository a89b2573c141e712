//! Live replies under `/v1/persist/`: an item still being generated (a reply a host reserved
//! and streams into), followed as Server-Sent Events from any instance, resumed from where a
//! client stopped, and stopped.

use std::convert::Infallible;

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, stream};
use persist_core::read::ListMessages;
use persist_core::{MessageId, ThreadId};
use persist_core::{Order, PartOffset, Role, Status};
use persist_ops::PipelineExt;
use persist_ops::live::{FollowParts, FollowReply, ReplyChunk, ReplyStream, StopReply, StopState};
use serde_json::json;

use crate::api::conversations::find;
use crate::http::error::ApiError;
use crate::http::extract::Tenant;
use crate::http::params::Params;
use crate::state::Caller;
use crate::ui::{UiMessageStream, sse};

/// The conversation and item a path names, as ids (a malformed one is no such item).
pub(crate) fn ids(id: &str, item: &str) -> Result<(ThreadId, MessageId), ApiError> {
    let thread = ThreadId::new(id).map_err(|_| ApiError::no_conversation(id))?;
    let message = MessageId::new(item).map_err(|_| ApiError::no_item(id, item))?;
    Ok((thread, message))
}

/// `GET /v1/persist/conversations/{id}/items/{item_id}/stream`: the item's text as it is
/// written, from character `Last-Event-ID` (what a reconnecting `EventSource` sends), else
/// `?from=N`, else its start. Events: `text` (`{"offset", "text"}`, its `id` the offset after
/// it), `replaced` (`{"text"}`: the whole text, when a final write rewrote it) and `end`
/// (`{"status"}`: `complete`, `interrupted`, `stopped` or `deleted`), which ends the stream. A
/// reply generated on one instance is followed on any other. The stream ends when the server
/// shuts down.
pub(crate) async fn stream_item(
    caller: Caller,
    Path((id, item_id)): Path<(String, String)>,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let offset = |text: &str, param: &'static str| {
        text.trim().parse::<u64>().map_err(|_| {
            ApiError::invalid(param, format!("Invalid '{param}': an offset is a whole number of characters."))
        })
    };
    params.only(&["from"])?;
    // The query is checked whether or not the header wins over it.
    let queried = params.get("from").map(|text| offset(text, "from")).transpose()?;
    let from = match headers.get("last-event-id").map(|value| value.to_str().unwrap_or("-")) {
        Some(text) => offset(text, "Last-Event-ID")?,
        None => queried.unwrap_or(0),
    };
    let (thread, message) = ids(&id, &item_id)?;
    find(&caller, &id).await?;
    let follow = FollowReply::new(thread, message).from(from);
    let follower = caller.run(Some(&id), caller.store.follow_reply(follow)).await?;
    // On shutdown the stream ends: the client resumes from its `Last-Event-ID`.
    let events = stream::unfold(Some(Box::new(follower)), next_chunk).take_until(caller.closed());
    let mut response = Sse::new(events).keep_alive(KeepAlive::default()).into_response();
    response.extensions_mut().insert(Tenant(caller.tenant.clone()));
    Ok(response)
}

async fn next_chunk(state: Option<Box<ReplyStream>>) -> Option<(Result<Event, Infallible>, Option<Box<ReplyStream>>)> {
    let mut follower = state?;
    // The store failed: the stream ends, and the client resumes from the last id it got.
    let chunk = follower.next().await.ok()??;
    let event = match chunk {
        ReplyChunk::Text { offset, text } => {
            let end = offset + text.chars().count() as u64;
            Event::default().event("text").id(end.to_string()).data(json!({"offset": offset, "text": text}).to_string())
        }
        ReplyChunk::Replaced { text } => {
            let end = text.chars().count() as u64;
            Event::default().event("replaced").id(end.to_string()).data(json!({"text": text}).to_string())
        }
        ReplyChunk::End(end) => {
            let status = serde_json::to_value(end).unwrap_or_default();
            return Some((Ok(Event::default().event("end").data(json!({"status": status}).to_string())), None));
        }
        // A kind of chunk added later: what it says is in the item, which a client reads.
        _ => Event::default().comment("chunk"),
    };
    Some((Ok(event), Some(follower)))
}

/// `POST /v1/persist/conversations/{id}/items/{item_id}/stop`: asks the generation of a reply
/// to stop, on whichever instance it runs: `{"stopped": true}`, or `{"stopped": false,
/// "status": …}` when it had ended (`complete`, `interrupted`, `stopped`, `deleted`).
pub(crate) async fn stop_item(
    caller: Caller,
    Path((id, item_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (thread, message) = ids(&id, &item_id)?;
    find(&caller, &id).await?;
    let state = caller.run(Some(&id), caller.store.stop_reply(StopReply::new(thread, message))).await?;
    let answer = match state {
        StopState::Requested => json!({"stopped": true}),
        StopState::Ended(end) => json!({"stopped": false, "status": end}),
        _ => json!({"stopped": false}),
    };
    Ok(caller.answer(StatusCode::OK, &answer))
}

/// Where a UI message stream resumes: `Last-Event-ID` (what a reconnecting client sends), else
/// `?from=`, else the start (the AI SDK's client rebuilds the reply from a replay); both
/// checked.
fn part_offset(params: &Params, headers: &HeaderMap) -> Result<PartOffset, ApiError> {
    let parse = |text: &str, param: &'static str| {
        text.trim().parse::<PartOffset>().map_err(|_| {
            ApiError::invalid(param, format!("Invalid '{param}': a place in the reply's parts, PART or PART.CHARS."))
        })
    };
    params.only(&["from"])?;
    let queried = params.get("from").map(|text| parse(text, "from")).transpose()?;
    match headers.get("last-event-id").map(|value| value.to_str().unwrap_or("-")) {
        Some(text) => parse(text, "Last-Event-ID"),
        None => Ok(queried.unwrap_or(PartOffset::START)),
    }
}

/// The reply `(thread, message)` as the AI SDK's UI message stream, from `from`.
async fn ui_stream(
    caller: &Caller,
    id: &str,
    thread: ThreadId,
    message: MessageId,
    from: PartOffset,
) -> Result<Response, ApiError> {
    let follow = FollowParts::new(thread, message.clone()).from(from);
    let parts = caller.run(Some(id), caller.store.follow_parts(follow)).await?;
    let mut response = sse(UiMessageStream::new(parts, message));
    response.extensions_mut().insert(Tenant(caller.tenant.clone()));
    Ok(response)
}

/// `GET /v1/persist/conversations/{id}/items/{item_id}/ui-stream`: the item as the AI SDK's UI
/// message stream (`start`, `text-start`/`-delta`/`-end`, `reasoning-…`, tool inputs and
/// outputs, `file`, then `finish`, `abort` when stopped, or `error`; then `[DONE]`), from its
/// start or from `Last-Event-ID` (each event's id: a place in its parts), on any instance.
pub(crate) async fn ui_stream_item(
    caller: Caller,
    Path((id, item_id)): Path<(String, String)>,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let from = part_offset(&params, &headers)?;
    let (thread, message) = ids(&id, &item_id)?;
    find(&caller, &id).await?;
    ui_stream(&caller, &id, thread, message, from).await
}

/// The conversation's reply being generated, if it has one: its newest reserved assistant item.
async fn running(caller: &Caller, id: &str) -> Result<Option<(ThreadId, MessageId)>, ApiError> {
    // A conversation the caller does not have (a chat not written yet) runs nothing.
    let Ok(thread) = find(caller, id).await.map(|thread| thread.id) else { return Ok(None) };
    let newest = ListMessages::new(thread.clone()).with_order(Order::Desc).include_reserved(true).with_limit(20);
    let page = caller.run(Some(id), caller.store.list(newest)).await?;
    let reply = page.items.into_iter().find(|m| m.status == Status::Reserved && m.role == Role::Assistant);
    Ok(reply.map(|reply| (thread, reply.id)))
}

/// `GET /v1/persist/conversations/{id}/stream`: the reply being generated in the conversation
/// as the AI SDK's UI message stream (as `ui-stream`), or `204` when none is (nor the
/// conversation, a chat not written yet): what an app's
/// `GET /api/chat/{id}/stream` for `useChat({ resume: true })` passes through.
pub(crate) async fn stream_running(
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let from = part_offset(&params, &headers)?;
    match running(&caller, &id).await? {
        Some((thread, message)) => ui_stream(&caller, &id, thread, message, from).await,
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// `POST /v1/persist/conversations/{id}/stop`: stops the reply being generated in the
/// conversation, on whichever instance or process writes it: `{"stopped": true, "reply_id"}`,
/// or `{"stopped": false}` when none is.
pub(crate) async fn stop_running(caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    let Some((thread, message)) = running(&caller, &id).await? else {
        return Ok(caller.answer(StatusCode::OK, &json!({"stopped": false})));
    };
    let state = caller.run(Some(&id), caller.store.stop_reply(StopReply::new(thread, message.clone()))).await?;
    let answer = match state {
        StopState::Requested => json!({"stopped": true, "reply_id": message}),
        StopState::Ended(end) => json!({"stopped": false, "reply_id": message, "status": end}),
        _ => json!({"stopped": false, "reply_id": message}),
    };
    Ok(caller.answer(StatusCode::OK, &answer))
}
