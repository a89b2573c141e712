//! A chat's messages as the Vercel AI SDK's `UIMessage`s, through persist's lossless converter
//! ([`vercel_ui`]): read along the active branch, appended as one turn, or saved as the SDK's
//! `onFinish` hands them (the whole array, of which only what the store lacks is written).

use std::collections::HashSet;

use persist::args::{AppendTurn, TurnMessage};
use persist::branch::{Branch, Parent};
use persist::convert::vercel_ui;
use persist::read::{ListMessages, MAX_PAGE_LIMIT};
use persist::{Message, PersistError, Result, Scoped, ThreadId};
use serde_json::{Value, json};

use crate::args::{absent_as_none, key_of, message_of, thread_of};

/// Every message of the thread's active branch, oldest first (none for a thread never written).
pub(crate) async fn branch(store: &Scoped, thread: &ThreadId) -> Result<Vec<Message>> {
    let mut request = ListMessages::new(thread.clone()).with_limit(MAX_PAGE_LIMIT).on_branch(Branch::Active);
    let mut messages = Vec::new();
    loop {
        let Some(page) = absent_as_none(store.list(request.clone()).await)? else { return Ok(messages) };
        let next = request.next_page(&page);
        messages.extend(page.items);
        match next {
            Some(next) => request = next,
            None => return Ok(messages),
        }
    }
}

/// The chat's messages as `UIMessage`s (a reply still written is among them, its text
/// `streaming`; an interrupted one says so in its metadata).
pub(crate) async fn messages(store: Scoped, thread: ThreadId) -> Result<Value> {
    Ok(Value::Array(vercel_ui::export(&branch(&store, &thread).await?)))
}

/// The argument `messages`: `UIMessage`s as the messages of a turn.
pub(crate) fn turn_of(args: &Value) -> Result<Vec<TurnMessage>> {
    match args.get("messages") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(messages)) => vercel_ui::import(messages),
        Some(_) => Err(PersistError::invalid("messages", "messages must be an array of UIMessages")),
    }
}

/// Appends `messages` as one turn (atomic: all or none), after `parentId` on a branch of its
/// own when it is given; answers the ids written.
pub(crate) async fn append(store: Scoped, args: &Value) -> Result<Value> {
    let thread = thread_of(args)?;
    let turn = turn_of(args)?;
    if turn.is_empty() {
        return Err(PersistError::invalid("messages", "give at least one UIMessage"));
    }
    let mut append = AppendTurn::of(thread, turn);
    append.idempotency_key = key_of(args)?;
    if let Some(parent) = message_of(args, "parentId")? {
        append = append.with_parent(Parent::Message(parent));
    }
    let appended = store.append_turn(append).await?;
    let ids: Vec<Value> = appended.messages.iter().map(|message| json!(message.id.as_str())).collect();
    Ok(json!({"ids": ids}))
}

/// Saves a chat as the SDK's `onFinish` gives it: the messages whose ids the chat does not hold
/// yet are appended, in order, as one turn; the others are left as stored (a reply written live
/// is stored already, as it streamed). Answers the ids written.
pub(crate) async fn save(store: Scoped, args: &Value) -> Result<Value> {
    let thread = thread_of(args)?;
    let Some(Value::Array(messages)) = args.get("messages") else {
        return Err(PersistError::invalid("messages", "messages must be an array of UIMessages"));
    };
    let turn = vercel_ui::import(messages)?;
    let stored: HashSet<String> =
        branch(&store, &thread).await?.into_iter().map(|message| message.id.to_string()).collect();
    let fresh: Vec<TurnMessage> = turn
        .into_iter()
        .filter(|message| message.message_id.as_ref().is_none_or(|id| !stored.contains(id.as_str())))
        .collect();
    if fresh.is_empty() {
        return Ok(json!({"ids": []}));
    }
    let mut append = AppendTurn::of(thread, fresh);
    append.idempotency_key = key_of(args)?;
    let appended = store.append_turn(append).await?;
    let ids: Vec<Value> = appended.messages.iter().map(|message| json!(message.id.as_str())).collect();
    Ok(json!({"ids": ids}))
}
