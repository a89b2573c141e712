//! A live reply's writer over HTTP, under `/v1/persist/`: start a reply (with the user's turn),
//! append its parts as a model streams them, renew its lease, finish it or end it interrupted,
//! and hear of a stop. Any language writes a reply that followers on every instance resume
//! and that a stop from anywhere reaches.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, stream};
use persist_core::args::TurnMessage;
use persist_core::{Content, MessageId, PartOffset, PersistError, Status, Timestamp};
use persist_ops::PipelineExt;
use persist_ops::live::{
    AppendReply, FinishReply, LEASE_BOUNDS, RenewReply, ReplyEnd, ReplyWritten, StartReply, StopReply, StopState,
};
use serde_json::{Map, Value, json};

use super::live::ids;
use crate::api::conversations::{find, known_fields, take_incomplete, turn_of};
use crate::api::idempotency::{self, Minter};
use crate::api::items;
use crate::http::error::ApiError;
use crate::http::extract::Tenant;
use crate::http::params::Params;
use crate::state::{Caller, JsonObject};

/// The most parts one append takes.
pub(crate) const MAX_PARTS: usize = 1000;

/// How the API says a reply stands: `in_progress` while it is written, `completed`, or
/// `incomplete` (interrupted: stopped, its writer gave up or died).
pub(crate) fn api_status(end: Option<ReplyEnd>) -> &'static str {
    match end {
        None => "in_progress",
        Some(ReplyEnd::Complete) => "completed",
        Some(_) => "incomplete",
    }
}

/// How a reply ended, as persist says it (`null` while it is written).
fn end_name(end: Option<ReplyEnd>) -> Value {
    end.map(|end| serde_json::to_value(end).unwrap_or_default()).unwrap_or(Value::Null)
}

fn seconds(at: Option<Timestamp>) -> Value {
    at.map(|at| json!(at.as_micros() as f64 / 1e6)).unwrap_or(Value::Null)
}

/// A reply as answered: `{"object": "persist.reply", "id", "conversation_id", "status",
/// "end", "offset", "written", "expires_at"}`.
fn reply(conversation: &str, id: &str, written: &ReplyWritten) -> Value {
    json!({
        "object": "persist.reply",
        "id": id,
        "conversation_id": conversation,
        "status": api_status(written.end),
        "end": end_name(written.end),
        "offset": written.offset.to_string(),
        "written": written.written,
        "lease_seconds": written.lease.map(|lease| lease.as_secs_f64()),
        "expires_at": seconds(written.expires_at),
    })
}

/// A writer's call refused by the store, as the API's error: a reply that ended is
/// `reply_ended` with its status.
fn refused(error: PersistError, conversation: &str) -> ApiError {
    match error {
        PersistError::MessageComplete { message_id, status, .. } => {
            let status = if status == Status::Complete { "completed" } else { "incomplete" };
            ApiError::reply_ended(message_id.as_str(), status)
        }
        other => ApiError::from_store(other, Some(conversation)),
    }
}

/// A writer's call, in the server's timeout, its refusal as [`refused`] says.
async fn call<T>(
    caller: &Caller,
    conversation: &str,
    work: impl Future<Output = Result<T, PersistError>>,
) -> Result<T, ApiError> {
    caller.within(work).await?.map_err(|error| refused(error, conversation))
}

/// `offset` of a body: a place in parts (`PART` or `PART.CHARS`), required.
fn offset_of(body: &Map<String, Value>) -> Result<PartOffset, ApiError> {
    let text = match body.get("offset") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) if number.is_u64() => number.to_string(),
        None | Some(Value::Null) => return Err(ApiError::invalid("offset", "Missing required parameter: 'offset'.")),
        Some(_) => return Err(ApiError::invalid("offset", "Invalid 'offset': a place in parts, PART or PART.CHARS.")),
    };
    text.parse()
        .map_err(|_| ApiError::invalid("offset", format!("Invalid 'offset': '{text}' is not PART or PART.CHARS.")))
}

/// `parts` of a body: 1 to [`MAX_PARTS`] content blocks (objects with a `type`).
fn parts_of(body: &Map<String, Value>) -> Result<Content, ApiError> {
    let bad = |why: String| ApiError::invalid("parts", format!("Invalid 'parts': {why}"));
    let Some(Value::Array(parts)) = body.get("parts") else {
        return Err(bad("expected an array of parts ({\"type\": \"text\", \"text\": …}, …).".into()));
    };
    if parts.is_empty() || parts.len() > MAX_PARTS {
        return Err(bad(format!("1 to {MAX_PARTS} parts, this has {}.", parts.len())));
    }
    for (index, part) in parts.iter().enumerate() {
        if !part.get("type").is_some_and(Value::is_string) {
            return Err(ApiError::invalid(format!("parts[{index}]"), "Invalid part: an object with a string 'type'."));
        }
    }
    Ok(Content::new(Value::Array(parts.clone())))
}

/// `POST /v1/persist/conversations/{id}/replies`: starts a reply (of the item id `id`, else one
/// made), after `items` (the user's turn, in the same write), with a writer's lease of `lease_seconds` (1 to 3600, 30 by
/// default). One reply is generated per conversation at a time, across instances: a second is
/// 409 `reply_running`, naming the running one (`reply_id`). With an `Idempotency-Key`, the
/// same request sent again answers the reply the first one started.
pub(crate) async fn start(
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    known_fields(&body, &["id", "items", "lease_seconds"])?;
    let lease = match body.get("lease_seconds") {
        None | Some(Value::Null) => persist_ops::live::DEFAULT_LEASE,
        Some(value) => match value.as_u64().map(Duration::from_secs) {
            Some(lease) if (LEASE_BOUNDS.0..=LEASE_BOUNDS.1).contains(&lease) => lease,
            _ => return Err(ApiError::invalid("lease_seconds", "Invalid 'lease_seconds': a whole number, 1 to 3600.")),
        },
    };
    let raw = match body.get("items") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(raw)) if raw.len() <= caller.limits().max_items => raw,
        Some(_) => {
            let max = caller.limits().max_items;
            return Err(ApiError::invalid("items", format!("Invalid 'items': an array of at most {max} items.")));
        }
    };
    let key = idempotency::key(&headers)?;
    let thread = find(&caller, &id).await?;
    let mut minter = Minter::new(key.as_deref(), &[&id, "replies.start"]);
    let minted = minter.mint("msg");
    let reply_id = match body.get("id") {
        None | Some(Value::Null) => MessageId::new(minted).map_err(|e| ApiError::internal(e.to_string()))?,
        Some(Value::String(id)) if id.bytes().all(|byte| byte.is_ascii_graphic()) && MessageId::new(id).is_ok() => {
            MessageId::new(id).map_err(|e| ApiError::internal(e.to_string()))?
        }
        Some(_) => return Err(ApiError::invalid("id", "Invalid 'id': 1 to 255 printable ASCII characters.")),
    };
    let (mut turn, _): (Vec<TurnMessage>, _) = turn_of(raw, &mut minter)?;
    if let Some(index) = turn.iter_mut().position(take_incomplete) {
        let why = "The items before a reply are complete; 'incomplete' is a reply's own end (finish it so).";
        return Err(ApiError::invalid(format!("items[{index}].status"), why));
    }
    let mut start = StartReply::new(thread.id).with_reply_id(reply_id).with_lease(lease);
    start.messages = turn;
    if let Some(key) = &key {
        start = start.with_idempotency_key(idempotency::stored(key)?);
    }
    let started = call(&caller, &id, caller.store.start_reply(start)).await?;
    let mut answer = reply(&id, started.reply.id.as_str(), &started.state);
    answer["items"] = started.messages.iter().flat_map(items::of_message).collect::<Vec<Value>>().into();
    Ok(caller.answer(StatusCode::OK, &answer))
}

/// `POST /v1/persist/conversations/{id}/replies/{item_id}/parts`: `{"offset", "parts"}`, the
/// parts appended at the writer's offset (what its previous call answered; `"0"` first). Sent
/// again, it is written once (`"written": false`); an offset beyond the reply's end is 409
/// `offset_gap`, one where other parts are is `offset_diverged` (both with the reply's
/// `offset`). A stop is told here: 409 `reply_stopped`, and the reply has ended.
pub(crate) async fn append(
    caller: Caller,
    Path((id, item_id)): Path<(String, String)>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    known_fields(&body, &["offset", "parts"])?;
    let (at, content) = (offset_of(&body)?, parts_of(&body)?);
    let (thread, message) = ids(&id, &item_id)?;
    let written = call(&caller, &id, caller.store.append_reply(AppendReply::new(thread, message, at, content))).await?;
    Ok(caller.answer(StatusCode::OK, &reply(&id, &item_id, &written)))
}

/// `POST /v1/persist/conversations/{id}/replies/{item_id}/renew`: renews the writer's lease
/// without writing parts (while a tool runs); tells of a stop as an append does.
pub(crate) async fn renew(caller: Caller, Path((id, item_id)): Path<(String, String)>) -> Result<Response, ApiError> {
    let (thread, message) = ids(&id, &item_id)?;
    let written = call(&caller, &id, caller.store.renew_reply(RenewReply::new(thread, message))).await?;
    Ok(caller.answer(StatusCode::OK, &reply(&id, &item_id, &written)))
}

/// `POST /v1/persist/conversations/{id}/replies/{item_id}/finish`: `{"status": "completed"}`
/// (the default) or `{"status": "incomplete", "reason": …}`, after last `parts` at `offset` if
/// given. Sent again, it answers `"written": false`.
pub(crate) async fn finish(
    caller: Caller,
    Path((id, item_id)): Path<(String, String)>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    known_fields(&body, &["status", "reason", "offset", "parts"])?;
    let interrupted = match body.get("status") {
        None | Some(Value::Null) => false,
        Some(Value::String(status)) if status == "completed" => false,
        Some(Value::String(status)) if status == "incomplete" => true,
        Some(_) => return Err(ApiError::invalid("status", "Invalid 'status': 'completed' or 'incomplete'.")),
    };
    let reason = match body.get("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(reason)) if interrupted && reason.len() <= 4096 => Some(reason.clone()),
        Some(Value::String(_)) if interrupted => {
            return Err(ApiError::invalid("reason", "Invalid 'reason': at most 4096 bytes."));
        }
        Some(_) => return Err(ApiError::invalid("reason", "Invalid 'reason': a string, for an incomplete reply.")),
    };
    let (thread, message) = ids(&id, &item_id)?;
    let mut finish = if interrupted {
        FinishReply::interrupted(thread, message, reason)
    } else {
        FinishReply::complete(thread, message)
    };
    if body.contains_key("parts") || body.contains_key("offset") {
        finish = finish.with_last(offset_of(&body)?, parts_of(&body)?);
    }
    let written = call(&caller, &id, caller.store.finish_reply(finish)).await?;
    Ok(caller.answer(StatusCode::OK, &reply(&id, &item_id, &written)))
}

/// `GET /v1/persist/conversations/{id}/replies/{item_id}/signals`: the writer's own event
/// stream: one event, `stop` when a client stopped the reply, or `end` (`{"status"}`) when it
/// ended otherwise; then the stream ends.
pub(crate) async fn signals(
    caller: Caller,
    Path((id, item_id)): Path<(String, String)>,
    params: Params,
) -> Result<Response, ApiError> {
    params.only(&[])?;
    let (thread, message) = ids(&id, &item_id)?;
    find(&caller, &id).await?;
    let signal = caller.run(Some(&id), caller.store.watch_stop(StopReply::new(thread, message))).await?;
    let event = async move {
        let event = match signal.await {
            Ok(StopState::Requested | StopState::Ended(ReplyEnd::Stopped)) => Event::default().event("stop").data("{}"),
            Ok(StopState::Ended(end)) => {
                Event::default().event("end").data(json!({"status": end_name(Some(end))}).to_string())
            }
            // A kind of state added later, or the store failed: the writer's own calls tell.
            _ => Event::default().event("error").data("{}"),
        };
        Ok::<_, Infallible>(event)
    };
    let events = stream::once(event).take_until(caller.closed());
    let mut response = Sse::new(events).keep_alive(KeepAlive::default()).into_response();
    response.extensions_mut().insert(Tenant(caller.tenant.clone()));
    Ok(response)
}
