//! The eight routes of the Conversations API.

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use persist_convert::openai_responses;
use persist_core::args::{AppendTurn, Delete, Restore, TurnMessage, Update, UpdateContent};
use persist_core::branch::Branch;
use persist_core::read::{GetMessage, GetThread, ListMessages};
use persist_core::{Message, MessageId, Metadata, Order, PersistError, Thread, ThreadId, Timestamp};
use serde_json::{Map, Value, json};

use super::idempotency::{self, Minter};
use super::items;
use crate::http::error::ApiError;
use crate::http::params::Params;
use crate::state::{Caller, JsonObject};

/// The thread metadata key a conversation's `metadata` is kept under (replaced whole by an
/// update, so the thread's other metadata stays).
pub const METADATA_KEY: &str = "persist.serve.metadata";

/// The thread metadata key under which a create sent with an `Idempotency-Key` keeps a
/// fingerprint of its body, to tell its retry from another request with the same key.
const REQUEST_KEY: &str = "persist.serve.request";

/// The most items a create of a conversation takes, as the API does.
pub const MAX_CREATE_ITEMS: usize = 20;

/// The most metadata pairs, and the longest key and value, in characters.
pub(crate) const MAX_METADATA: (usize, usize, usize) = (16, 64, 512);

/// The conversation as the API answers it.
pub(crate) fn conversation(thread: &Thread) -> Value {
    json!({
        "id": thread.id.as_str(),
        "object": "conversation",
        "created_at": thread.created_at.as_micros().div_euclid(1_000_000),
        "metadata": thread.metadata.get(METADATA_KEY).cloned().unwrap_or_else(|| json!({})),
    })
}

/// The thread metadata key a conversation's `metadata.user_id` is copied to: where recall's
/// `user_id` (this server's recall route, the MCP server's tool, a Rust host's
/// `for_resource("user_id", …)`) finds a user's threads.
pub const USER_KEY: &str = "user_id";

/// The thread metadata key prefix under which each of a conversation's `metadata` pairs is
/// mirrored, so a listing can filter on one ([`ListThreads::with_filter`] matches top-level
/// keys): `persist.serve.m.topic` for `topic`.
///
/// [`ListThreads::with_filter`]: persist_core::read::ListThreads::with_filter
pub const MIRROR_PREFIX: &str = "persist.serve.m.";

/// The thread metadata of a conversation's `metadata`: kept whole under [`METADATA_KEY`], each
/// pair mirrored under [`MIRROR_PREFIX`], its `user_id` copied to [`USER_KEY`]. As a patch of
/// `replaced` (the conversation's metadata before an update), what it held and this does not is
/// removed.
pub(crate) fn thread_metadata(metadata: Value, replaced: Option<&Metadata>) -> Metadata {
    let user = metadata.get(USER_KEY).cloned();
    let mut thread = Metadata::new();
    if let Some(Value::Object(before)) = replaced.and_then(|old| old.get(METADATA_KEY)) {
        for key in before.keys().filter(|key| metadata.get(key.as_str()).is_none()) {
            thread = thread.with(format!("{MIRROR_PREFIX}{key}"), Value::Null);
        }
    }
    if let Value::Object(pairs) = &metadata {
        for (key, value) in pairs {
            thread = thread.with(format!("{MIRROR_PREFIX}{key}"), value.clone());
        }
    }
    thread = thread.with(METADATA_KEY, metadata);
    match (user, replaced.is_some()) {
        (Some(user), _) => thread.with(USER_KEY, user),
        (None, true) => thread.with(USER_KEY, Value::Null),
        (None, false) => thread,
    }
}

/// A conversation as answered, with its version as the `ETag` (what an update's `If-Match`
/// names).
pub(crate) fn answer_conversation(caller: &Caller, thread: &Thread) -> Response {
    let mut response = caller.answer(StatusCode::OK, &conversation(thread));
    if let Ok(tag) = axum::http::HeaderValue::from_str(&format!("\"{}\"", thread.version)) {
        response.headers_mut().insert(axum::http::header::ETAG, tag);
    }
    response
}

/// Refuses a body field the route does not take, as the API does.
pub(crate) fn known_fields(body: &Map<String, Value>, known: &[&str]) -> Result<(), ApiError> {
    match body.keys().find(|key| !known.contains(&key.as_str())) {
        Some(key) => Err(ApiError::invalid(key.clone(), format!("Unknown parameter: '{key}'."))),
        None => Ok(()),
    }
}

/// A conversation's `metadata`: up to 16 pairs of strings; `null` is none.
pub(crate) fn metadata_of(value: Option<&Value>) -> Result<Value, ApiError> {
    let (pairs, key_chars, value_chars) = MAX_METADATA;
    let bad = |why: String| ApiError::invalid("metadata", format!("Invalid 'metadata': {why}"));
    let map = match value {
        None | Some(Value::Null) => return Ok(json!({})),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(bad("expected an object of string values".into())),
    };
    if map.len() > pairs {
        return Err(bad(format!("at most {pairs} pairs, this has {}", map.len())));
    }
    for (key, value) in map {
        let Value::String(text) = value else { return Err(bad(format!("the value of '{key}' is not a string"))) };
        if key.chars().count() > key_chars || key.is_empty() {
            return Err(bad(format!("a key is 1 to {key_chars} characters")));
        }
        if text.chars().count() > value_chars {
            return Err(bad(format!("the value of '{key}' is over {value_chars} characters")));
        }
        if key.contains('\0') || text.contains('\0') {
            return Err(bad("a key or value holds a NUL character".into()));
        }
    }
    Ok(Value::Object(map.clone()))
}

/// The conversation `id` names, when the caller's tenant has it (a malformed id has none).
pub(crate) async fn find(caller: &Caller, id: &str) -> Result<Thread, ApiError> {
    let Ok(thread_id) = ThreadId::new(id) else { return Err(ApiError::no_conversation(id)) };
    match caller.run(Some(id), caller.store.get_thread(GetThread::new(thread_id))).await? {
        Some(thread) if thread.deleted_at.is_none() => Ok(thread),
        _ => Err(ApiError::no_conversation(id)),
    }
}

/// The items of a request, made whole, checked and as the messages of a turn.
pub(crate) fn turn_of(raw: &[Value], minter: &mut Minter) -> Result<(Vec<TurnMessage>, Vec<MessageId>), ApiError> {
    let mut mint = |prefix: &str| minter.mint(prefix);
    let mut whole = Vec::with_capacity(raw.len());
    let mut ids = Vec::with_capacity(raw.len());
    for (index, item) in raw.iter().enumerate() {
        let item = items::canonical(item, index, &mut mint)?;
        let id = item["id"].as_str().unwrap_or_default().to_owned();
        if ids.iter().any(|seen: &MessageId| seen.as_str() == id) {
            // As an id the conversation holds already: a conflict (409), not a malformed request.
            return Err(ApiError::conflict(format!("The id '{id}' is given twice (items[{index}].id)."), false));
        }
        ids.push(MessageId::new(&id).map_err(|_| ApiError::invalid(format!("items[{index}].id"), "Invalid id."))?);
        whole.push(item);
    }
    let turn = openai_responses::import(&whole).map_err(|error| match error {
        PersistError::InvalidInput { reason, .. } => ApiError::invalid("items", format!("Invalid 'items': {reason}")),
        other => ApiError::from_store(other, None),
    })?;
    Ok((turn, ids))
}

/// Whether `message` came from an item the client said is `incomplete` (a reply cut short):
/// the status is taken out of what the converter kept, so the message's own status says it,
/// and only it.
pub(crate) fn take_incomplete(message: &mut TurnMessage) -> bool {
    let Some(Value::Object(kept)) = message.metadata.get(openai_responses::METADATA_KEY).cloned() else {
        return false;
    };
    let mut kept = kept;
    let Some(Value::Object(fields)) = kept.get_mut("fields") else { return false };
    if fields.get("status").and_then(Value::as_str) != Some("incomplete") {
        return false;
    }
    fields.remove("status");
    if fields.is_empty() {
        kept.remove("fields");
    }
    let kept = if kept.is_empty() { Value::Null } else { Value::Object(kept) };
    message.metadata = std::mem::take(&mut message.metadata).with(openai_responses::METADATA_KEY, kept);
    true
}

/// The items array of a body, `min..=max` of them.
fn items_field(body: &Map<String, Value>, min: usize, max: usize) -> Result<&[Value], ApiError> {
    match body.get("items") {
        None | Some(Value::Null) if min == 0 => Ok(&[]),
        None | Some(Value::Null) => Err(ApiError::invalid("items", "Missing required parameter: 'items'.")),
        Some(Value::Array(items)) if items.len() > max => Err(ApiError::invalid(
            "items",
            format!(
                "Invalid 'items': array too long. Expected an array with maximum length {max}, but got an array with length {} instead.",
                items.len()
            ),
        )),
        Some(Value::Array(items)) if items.len() < min => Err(ApiError::invalid(
            "items",
            format!("Invalid 'items': empty array. Expected an array with minimum length {min}."),
        )),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(ApiError::invalid("items", "Invalid 'items': expected an array of items.")),
    }
}

/// `POST /v1/conversations`: a conversation, its items and metadata written in one step.
pub(crate) async fn create(
    caller: Caller,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    known_fields(&body, &["items", "metadata"])?;
    let metadata = metadata_of(body.get("metadata"))?;
    let raw = items_field(&body, 0, MAX_CREATE_ITEMS)?;
    let key = idempotency::key(&headers)?;
    let tenant = caller.tenant.as_ref().map(|t| t.as_str().to_owned()).unwrap_or_default();
    let mut minter = Minter::new(key.as_deref(), &[&tenant, "conversations.create"]);
    let id = minter.mint("conv");
    let (turn, ids) = turn_of(raw, &mut minter)?;
    let thread_id = ThreadId::new(&id).map_err(|e| ApiError::internal(e.to_string()))?;
    let fingerprint = idempotency::fingerprint(&Value::Object(body.clone()));

    if key.is_some()
        && let Some(existing) = replayed(&caller, &thread_id, &fingerprint).await?
    {
        return Ok(answer_conversation(&caller, &existing));
    }
    let now = Timestamp::now();
    let mut thread = Thread::stored(thread_id.clone(), turn.len() as u64, now);
    thread.tenant = caller.tenant.clone();
    thread.metadata = thread_metadata(metadata, None);
    if key.is_some() {
        thread.metadata = thread.metadata.with(REQUEST_KEY, fingerprint.clone().into());
    }
    let messages: Vec<Message> = turn
        .into_iter()
        .zip(ids)
        .enumerate()
        .map(|(index, (mut message, id))| {
            let incomplete = take_incomplete(&mut message);
            let mut stored =
                Message::stored(thread_id.clone(), id, index as u64 + 1, message.role, message.content, now);
            stored.metadata = message.metadata;
            if incomplete {
                stored.status = persist_core::Status::Interrupted;
            }
            stored
        })
        .collect();
    let restore = Restore::new(thread.clone(), messages);
    match caller.run(Some(&id), caller.store.restore(restore)).await {
        Ok(_) => {}
        // A retry that raced the first request: answer what the first one made.
        Err(error) if key.is_some() && error.status() == StatusCode::CONFLICT => {
            if let Some(existing) = replayed(&caller, &thread_id, &fingerprint).await? {
                return Ok(answer_conversation(&caller, &existing));
            }
            return Err(error);
        }
        Err(error) => return Err(error),
    }
    let stored = find(&caller, &id).await?;
    Ok(answer_conversation(&caller, &stored))
}

/// The conversation a keyed create made already, when there is one: the same body answers it,
/// another body is 422, and a conversation deleted since is 409 (its id is never used again).
async fn replayed(caller: &Caller, thread_id: &ThreadId, fingerprint: &str) -> Result<Option<Thread>, ApiError> {
    let found =
        caller.run(Some(thread_id.as_str()), caller.store.get_thread(GetThread::new(thread_id.clone()))).await?;
    let Some(thread) = found else { return Ok(None) };
    if thread.deleted_at.is_some() {
        return Err(ApiError::conflict(
            "The conversation this Idempotency-Key created was deleted; use another key.",
            false,
        ));
    }
    if thread.metadata.get(REQUEST_KEY).and_then(Value::as_str) != Some(fingerprint) {
        return Err(ApiError::key_reused());
    }
    Ok(Some(thread))
}

/// `GET /v1/conversations/{id}`.
pub(crate) async fn retrieve(caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    let thread = find(&caller, &id).await?;
    Ok(answer_conversation(&caller, &thread))
}

/// `POST /v1/conversations/{id}`: the metadata replaced whole. With `If-Match` (the `ETag` a
/// read answered: the conversation's version), only if the conversation is at that version,
/// else 412 and nothing written: two instances setting a title do not lose one.
pub(crate) async fn update(
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    known_fields(&body, &["metadata"])?;
    if !body.contains_key("metadata") {
        return Err(ApiError::invalid("metadata", "Missing required parameter: 'metadata'."));
    }
    let metadata = metadata_of(body.get("metadata"))?;
    let expected = match headers.get(axum::http::header::IF_MATCH) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|tag| tag.trim().trim_start_matches("W/").trim_matches('"').parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::invalid("If-Match", "Invalid 'If-Match': the ETag a read answered (\"N\").")
                })?,
        ),
    };
    let thread = find(&caller, &id).await?;
    let mut patch = Update::thread(thread.id.clone()).with_metadata(thread_metadata(metadata, Some(&thread.metadata)));
    if let Some(version) = expected {
        patch = patch.with_expected_version(version);
    }
    let updated = match caller.within(caller.store.update(patch)).await? {
        Ok(updated) => updated,
        Err(PersistError::VersionConflict { actual, .. }) => return Err(ApiError::stale(actual)),
        Err(other) => return Err(ApiError::from_store(other, Some(&id))),
    };
    let thread = match updated {
        persist_core::Updated::Thread(thread) => thread,
        _ => find(&caller, &id).await?,
    };
    Ok(answer_conversation(&caller, &thread))
}

/// `DELETE /v1/conversations/{id}`: the conversation and its items.
pub(crate) async fn delete(caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    let thread = find(&caller, &id).await?;
    caller.run(Some(&id), caller.store.delete(Delete::thread(thread.id))).await?;
    Ok(caller.answer(StatusCode::OK, &json!({"id": id, "object": "conversation.deleted", "deleted": true})))
}

/// A list object of `items` (moved in: `json!` would copy them whole, a third of a listing's
/// conversion).
pub(crate) fn list(items: Vec<Value>, has_more: bool) -> Value {
    let first = items.first().and_then(|item| item.get("id")).cloned().unwrap_or(Value::Null);
    let last = items.last().and_then(|item| item.get("id")).cloned().unwrap_or(Value::Null);
    let mut list = serde_json::Map::new();
    list.insert("object".into(), "list".into());
    list.insert("data".into(), Value::Array(items));
    list.insert("first_id".into(), first);
    list.insert("last_id".into(), last);
    list.insert("has_more".into(), has_more.into());
    Value::Object(list)
}

/// `POST /v1/conversations/{id}/items`: the items written as one turn, all or none.
pub(crate) async fn create_items(
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    items::check_include(&params)?;
    known_fields(&body, &["items"])?;
    let raw = items_field(&body, 1, caller.limits().max_items)?;
    let key = idempotency::key(&headers)?;
    let thread = find(&caller, &id).await?;
    let mut minter = Minter::new(key.as_deref(), &[&id, "items.create"]);
    let (mut turn, _) = turn_of(raw, &mut minter)?;
    // An item cut short (`incomplete`) is stored interrupted: written as the turn's reservation,
    // then its content with the interruption (a retry finds it reserved, or ended as it was).
    let incomplete: Vec<bool> = turn.iter_mut().map(take_incomplete).collect();
    let cut_short = match incomplete.iter().position(|&cut| cut) {
        Some(index) if index + 1 == turn.len() => turn.pop(),
        Some(index) => {
            return Err(ApiError::invalid(
                format!("items[{index}].status"),
                "Only the last item of a write may be 'incomplete' (a reply cut short).",
            ));
        }
        None => None,
    };
    if let Some(cut) = &cut_short {
        let mut reservation = TurnMessage::reservation(cut.role.clone());
        (reservation.message_id, reservation.metadata) = (cut.message_id.clone(), cut.metadata.clone());
        turn.push(reservation);
    }
    let mut append = AppendTurn::of(thread.id.clone(), turn);
    if let Some(key) = &key {
        append = append.with_idempotency_key(idempotency::stored(key)?);
    }
    let mut appended = caller.run(Some(&id), caller.store.append_turn(append)).await?;
    if let (Some(cut), Some(last)) = (cut_short, appended.messages.last_mut()) {
        let write = UpdateContent::new(thread.id.clone(), last.id.clone(), cut.content).with_interrupt(true);
        match caller.within(caller.store.update_content(write)).await? {
            Ok(ended) => *last = ended.message,
            // A retry of a write that ended it already.
            Err(PersistError::MessageComplete { .. }) if appended.deduplicated => {}
            Err(other) => return Err(ApiError::from_store(other, Some(&id))),
        }
    }
    let written: Vec<Value> = appended.messages.iter().flat_map(items::of_message).collect();
    Ok(caller.answer(StatusCode::OK, &list(written, false)))
}

/// `GET /v1/conversations/{id}/items`: a page, `after` an item id in the page's order.
pub(crate) async fn list_items(caller: Caller, Path(id): Path<String>, params: Params) -> Result<Response, ApiError> {
    items::check_include(&params)?;
    let limit = params.limit()?;
    let order = match params.get("order") {
        None | Some("desc") => Order::Desc,
        Some("asc") => Order::Asc,
        Some(other) => {
            return Err(ApiError::invalid("order", format!("Invalid 'order': '{other}'. Expected 'asc' or 'desc'.")));
        }
    };
    // The conversation is read only when the page alone cannot say it is the caller's: a page
    // with items is (the listing is the tenant's), an empty one may be of no conversation.
    let Ok(thread_id) = ThreadId::new(&id) else { return Err(ApiError::no_conversation(&id)) };
    let mut query = ListMessages::new(thread_id.clone())
        .on_branch(Branch::Active)
        .with_limit(limit)
        .with_order(order)
        .include_reserved(true);
    if let Some(after) = params.get("after") {
        let Some(seq) = seq_of(&caller, &thread_id, after).await? else {
            find(&caller, &id).await?;
            return Err(ApiError::invalid(
                "after",
                format!("Invalid 'after': no item '{after}' in this conversation."),
            ));
        };
        query = match order {
            Order::Asc => query.after(seq),
            Order::Desc => query.before(seq),
        };
    }
    let page = caller.run(Some(&id), caller.store.list(query)).await?;
    if page.items.is_empty() {
        find(&caller, &id).await?;
    }
    let data = items_of(&page.items, order == Order::Desc);
    Ok(caller.answer(StatusCode::OK, &list(data, page.has_more)))
}

/// The items of `messages`, in their order; `newest_first` turns each message's items around
/// too (a message may read as several items).
pub(crate) fn items_of(messages: &[Message], newest_first: bool) -> Vec<Value> {
    let mut data = Vec::new();
    for message in messages {
        let mut items = items::of_message(message);
        if newest_first {
            items.reverse();
        }
        data.extend(items);
    }
    data
}

/// The `seq` of the message an item id names, in `thread`.
async fn seq_of(caller: &Caller, thread: &ThreadId, item: &str) -> Result<Option<u64>, ApiError> {
    Ok(message_of(caller, thread, item).await?.map(|(message, _)| message.seq))
}

/// The message an item id names and which of its items, in `thread`.
async fn message_of(caller: &Caller, thread: &ThreadId, item: &str) -> Result<Option<(Message, usize)>, ApiError> {
    let conversation = thread.as_str();
    let get = |id: &str| {
        let id = MessageId::new(id).ok();
        let thread_id = thread.clone();
        async move {
            match id {
                Some(id) => caller.run(Some(conversation), caller.store.get(GetMessage::new(thread_id, id))).await,
                None => Ok(None),
            }
        }
    };
    if let Some(message) = get(item).await? {
        return Ok(Some((message, 0)));
    }
    if let Some((base, n)) = items::split_id(item)
        && let Some(message) = get(base).await?
    {
        return Ok(Some((message, n)));
    }
    Ok(None)
}

/// `GET /v1/conversations/{id}/items/{item_id}`.
pub(crate) async fn retrieve_item(
    caller: Caller,
    Path((id, item_id)): Path<(String, String)>,
    params: Params,
) -> Result<Response, ApiError> {
    items::check_include(&params)?;
    let Ok(thread_id) = ThreadId::new(&id) else { return Err(ApiError::no_conversation(&id)) };
    // A message found is the caller's (the read is the tenant's); only a miss asks whether the
    // conversation is there at all.
    let found = message_of(&caller, &thread_id, &item_id).await?;
    match found.and_then(|(message, n)| items::of_message(&message).into_iter().nth(n)) {
        Some(item) => Ok(caller.answer(StatusCode::OK, &item)),
        None => {
            find(&caller, &id).await?;
            Err(ApiError::no_item(&id, &item_id))
        }
    }
}

/// `DELETE /v1/conversations/{id}/items/{item_id}`: answers the conversation. Of two deletes
/// of one item, one removes it and the other is 404.
pub(crate) async fn delete_item(
    caller: Caller,
    Path((id, item_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let Ok(thread_id) = ThreadId::new(&id) else { return Err(ApiError::no_conversation(&id)) };
    let Ok(message_id) = MessageId::new(&item_id) else {
        find(&caller, &id).await?;
        return Err(ApiError::no_item(&id, &item_id));
    };
    let removed = caller.run(Some(&id), caller.store.delete(Delete::message(thread_id.clone(), message_id))).await?;
    if removed.message_ids.is_empty() {
        find(&caller, &id).await?;
        if let Some((message, n)) = message_of(&caller, &thread_id, &item_id).await?
            && n > 0
        {
            return Err(ApiError::invalid(
                "item_id",
                format!("The item '{item_id}' is part of the message '{}', which is deleted whole.", message.id),
            ));
        }
        return Err(ApiError::no_item(&id, &item_id));
    }
    let thread = find(&caller, &id).await?;
    Ok(answer_conversation(&caller, &thread))
}
