//! A conversation's messages as the AI SDK's `UIMessage[]` (`…/ui-messages`), read to show a
//! chat again and written back from them: what a chat app built on the AI SDK needs beyond the
//! Conversations API, with [`ensure`](super::ensure) (a conversation by the client's id).

use std::collections::HashSet;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use persist_convert::vercel_ui;
use persist_core::args::{AppendTurn, MAX_TURN_MESSAGES};
use persist_core::branch::Branch;
use persist_core::read::{GetMessage, ListMessages};
use persist_core::{Message, MessageId, PersistError, ThreadId};
use serde_json::{Value, json};

use crate::api::conversations::{find, known_fields};
use crate::http::error::ApiError;
use crate::http::params::Params;
use crate::state::{Caller, JsonObject};

/// The most messages a chat's `UIMessage[]` holds when read, and that one write takes.
pub(crate) const MAX_UI_MESSAGES: usize = 10_000;

/// Every message of the conversation's active branch, oldest first (reserved ones too).
async fn active_messages(caller: &Caller, id: &str, thread: &ThreadId) -> Result<Vec<Message>, ApiError> {
    let mut messages = Vec::new();
    let mut after = 0;
    loop {
        let page = ListMessages::new(thread.clone()).on_branch(Branch::Active).include_reserved(true).after(after);
        let page = caller.run(Some(id), caller.store.list(page.with_limit(500))).await?;
        after = page.items.last().map_or(after, |message| message.seq);
        messages.extend(page.items);
        if !page.has_more || messages.len() >= MAX_UI_MESSAGES {
            messages.truncate(MAX_UI_MESSAGES);
            return Ok(messages);
        }
    }
}

/// `GET /v1/persist/conversations/{id}/ui-messages`: the conversation's messages (its active
/// branch) as the AI SDK's `UIMessage[]`, what `useChat({ messages })` shows again after a
/// reload: text, reasoning, tool calls with their results, files; a reply still being written
/// says so (`metadata.persist.status`), and its stream resumes from
/// `GET /v1/persist/conversations/{id}/stream`.
pub(crate) async fn read(caller: Caller, Path(id): Path<String>, params: Params) -> Result<Response, ApiError> {
    params.only(&[])?;
    let thread = find(&caller, &id).await?;
    let messages = active_messages(&caller, &id, &thread.id).await?;
    let data = vercel_ui::export(&messages);
    Ok(caller.answer(StatusCode::OK, &json!({"object": "list", "data": data})))
}

/// `POST /v1/persist/conversations/{id}/ui-messages`: `{"messages": UIMessage[]}` (what the
/// SDK's `onFinish` hands over), the messages the conversation does not hold yet (by id)
/// written after its newest, as one turn; those it holds are left as they are (a reply written
/// live is stored already). Answers the messages written, as `UIMessage`s. An id given twice
/// is a conflict (409), and more new messages than a turn takes (256) are refused (400).
pub(crate) async fn write(
    caller: Caller,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    known_fields(&body, &["messages"])?;
    let raw = match body.get("messages") {
        Some(Value::Array(raw)) if raw.len() <= MAX_UI_MESSAGES => raw,
        _ => {
            let why = format!("Invalid 'messages': an array of at most {MAX_UI_MESSAGES} UIMessages.");
            return Err(ApiError::invalid("messages", why));
        }
    };
    let kinds = regex_lite_kinds();
    for (index, message) in raw.iter().enumerate() {
        let printable = |id: &str| !id.is_empty() && id.bytes().all(|byte| byte.is_ascii_graphic());
        if !message.get("id").and_then(Value::as_str).is_some_and(printable) {
            let why = "Invalid message: its 'id' is 1 to 255 printable ASCII characters.";
            return Err(ApiError::invalid(format!("messages[{index}].id"), why));
        }
        if !matches!(message.get("role").and_then(Value::as_str), Some("system" | "user" | "assistant")) {
            let why = "Invalid message: its 'role' is system, user or assistant.";
            return Err(ApiError::invalid(format!("messages[{index}].role"), why));
        }
        let parts = message.get("parts").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        if let Some(at) = parts.iter().position(|part| !part.get("type").and_then(Value::as_str).is_some_and(&kinds)) {
            let why = "Invalid part: its 'type' is one the AI SDK defines (text, reasoning, file, step-start, \
                       source-url, source-document, dynamic-tool, tool-NAME, data-NAME).";
            return Err(ApiError::invalid(format!("messages[{index}].parts[{at}].type"), why));
        }
    }
    let turn = vercel_ui::import(raw).map_err(|error| match error {
        PersistError::InvalidInput { reason, .. } => {
            ApiError::invalid("messages", format!("Invalid 'messages': {reason}"))
        }
        other => ApiError::from_store(other, Some(&id)),
    })?;
    // An id given twice is refused before anything is read: each id costs a read below, and
    // ten thousand copies of one id (a fuzzer's request) once cost ten thousand of them.
    let mut ids = HashSet::with_capacity(turn.len());
    if let Some(twice) = turn.iter().filter_map(|message| message.message_id.as_ref()).find(|id| !ids.insert(*id)) {
        return Err(ApiError::conflict(format!("The id '{twice}' is given twice."), false));
    }
    let thread = find(&caller, &id).await?;
    let mut new = Vec::new();
    for message in turn {
        let Some(message_id) = message.message_id.clone() else { continue };
        if !stored(&caller, &id, &thread.id, &message_id).await? {
            new.push(message);
        }
        // More than one turn takes: refused now, not after reading every id of the request.
        if new.len() > MAX_TURN_MESSAGES {
            let why =
                format!("Invalid 'messages': a turn writes at most {MAX_TURN_MESSAGES} messages, these are more.");
            return Err(ApiError::invalid("messages", why));
        }
    }
    if new.is_empty() {
        return Ok(caller.answer(StatusCode::OK, &json!({"object": "list", "data": []})));
    }
    let appended = caller.run(Some(&id), caller.store.append_turn(AppendTurn::of(thread.id, new))).await?;
    let data = vercel_ui::export(&appended.messages);
    Ok(caller.answer(StatusCode::OK, &json!({"object": "list", "data": data})))
}

/// Whether the conversation holds a message of this id.
async fn stored(caller: &Caller, id: &str, thread: &ThreadId, message: &MessageId) -> Result<bool, ApiError> {
    let get = GetMessage::new(thread.clone(), message.clone());
    Ok(caller.run(Some(id), caller.store.get(get)).await?.is_some())
}

/// Whether a part's `type` is a kind the AI SDK defines ([`UI_PART_KINDS`](crate::spec::reply_schemas::UI_PART_KINDS)).
fn regex_lite_kinds() -> impl Fn(&str) -> bool {
    |kind: &str| {
        let named =
            |prefix: &str| kind.strip_prefix(prefix).is_some_and(|name| !name.is_empty() && !name.contains('\0'));
        matches!(kind, "text" | "reasoning" | "file" | "step-start" | "source-url" | "source-document" | "dynamic-tool")
            || named("tool-")
            || named("data-")
    }
}
