//! The Agents SDK's session protocol (`get_items`, `add_items`, `pop_item`, `clear_session`)
//! and the `Store`'s other methods, mapped to the calls of a tenant's [`Scoped`] handle: items
//! converted by persist's Responses converter, answers shaped as Python reads them. What
//! composes requests into an operation (a pop, a branch before a turn) is persist's own
//! ([`PipelineExt`]), so every surface runs it alike; this module only maps it.
//!
//! A session is a thread; its items are messages, one each. The Agents SDK gives items ids of
//! its own (`msg_…`, or the same `__fake_id__` for every item of a model other than OpenAI's),
//! so an item's `id` is kept beside the message (under [`ITEM_ID`]) and given back, never taken
//! as the message's id: two items of one id are two items, as in the SDK's `SQLiteSession`.

use persist::args::{AppendTurn, Delete, TurnMessage, Update};
use persist::branch::{Branch, ListBranches, Switch};
use persist::convert::openai_responses;
use persist::feed::{FeedEvent, ReadFeed, Subscription};
use persist::lifecycle::{BranchFromTurn, Pop};
use persist::read::{ListMessages, ListThreads, MAX_PAGE_LIMIT, ThreadCursor};
use persist::search::{Search, SearchScope};
use persist::summary::ReadCompacted;
use persist::working::{ReadMemory, WriteMemory};
use persist::{
    IdempotencyKey, Message, Metadata, Order, PersistError, PipelineExt, ResourceId, Result, Scoped, ThreadId,
    Timestamp,
};
use serde_json::{Map, Value, json};

/// The message metadata key under which an item's own `id` is kept.
pub(crate) const ITEM_ID: &str = "persist.python.item_id";

/// Items as the messages of a turn, each item's `id` kept beside it. An item the Responses
/// converter does not read (the Agents SDK's `EncryptedSession` envelopes, any other JSON) is
/// kept whole, as the SDK's own sessions keep any item.
pub(crate) fn turn_of(items: Vec<Value>) -> Vec<TurnMessage> {
    let mut turn = Vec::with_capacity(items.len());
    for mut item in items {
        let id = item.as_object_mut().and_then(|object| object.remove("id"));
        let mut message = match openai_responses::import(std::slice::from_ref(&item)) {
            Ok(mut read) if read.len() == 1 => read.remove(0),
            _ => openai_responses::import_whole(&item),
        };
        if let Some(id) = id {
            message.metadata = message.metadata.clone().with(ITEM_ID, id);
        }
        turn.push(message);
    }
    turn
}

/// A message's items, as they were added (its `id` given back).
fn items_of(message: &Message) -> Vec<Value> {
    let mut items = openai_responses::export(std::slice::from_ref(message));
    if let (Some(id), [item]) = (message.metadata.get(ITEM_ID), items.as_mut_slice())
        && let Some(object) = item.as_object_mut()
    {
        object.insert("id".into(), id.clone());
    }
    items
}

fn seconds(at: Timestamp) -> Value {
    let micros = serde_json::to_value(at).ok().and_then(|micros| micros.as_i64()).unwrap_or_default();
    json!(micros as f64 / 1e6)
}

/// `Ok(None)` for a thread that is not there (a session never written has nothing).
fn absent_as_none<T>(answer: Result<T>) -> Result<Option<T>> {
    match answer {
        Ok(value) => Ok(Some(value)),
        Err(PersistError::NotFound { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Appends `items` as one turn.
pub(crate) async fn add_items(
    store: Scoped,
    thread: ThreadId,
    turn: Vec<TurnMessage>,
    key: Option<IdempotencyKey>,
    parent: Option<persist::MessageId>,
) -> Result<()> {
    let mut append = AppendTurn::of(thread, turn);
    append.idempotency_key = key;
    if let Some(parent) = parent {
        // After this message, on a branch of its own that becomes the active one.
        append = append.with_parent(persist::branch::Parent::Message(parent));
    }
    store.append_turn(append).await?;
    Ok(())
}

/// The items of the active branch, oldest first: all, or the latest `limit` (a page of
/// messages at a time, newest first, until enough items are read).
async fn branch_items(store: &Scoped, thread: &ThreadId, limit: Option<usize>) -> Result<Vec<Value>> {
    let order = if limit.is_some() { Order::Desc } else { Order::Asc };
    let mut request = ListMessages::new(thread.clone())
        .with_order(order)
        .with_limit(limit.map_or(MAX_PAGE_LIMIT, |limit| (limit.max(1) as u32).min(MAX_PAGE_LIMIT)))
        .on_branch(Branch::Active);
    let mut pages = Vec::new();
    let mut items = 0;
    loop {
        let Some(page) = absent_as_none(store.list(request.clone()).await)? else { break };
        let next = request.next_page(&page);
        let mut exported: Vec<Vec<Value>> = page.items.iter().map(items_of).collect();
        items += exported.iter().map(Vec::len).sum::<usize>();
        if limit.is_some() {
            exported.reverse();
        }
        pages.push(exported);
        match next {
            Some(next) if limit.is_none_or(|limit| items < limit) => request = next,
            _ => break,
        }
    }
    if limit.is_some() {
        pages.reverse();
    }
    let mut all: Vec<Value> = pages.into_iter().flatten().flatten().collect();
    if let Some(limit) = limit {
        all.drain(..all.len().saturating_sub(limit));
    }
    Ok(all)
}

/// The items of the active branch, oldest first: the latest `limit` (all when `None` or
/// negative, none when 0, as SQLite's `LIMIT` answers the SDK's `SQLiteSession`).
pub(crate) async fn get_items(store: Scoped, thread: ThreadId, limit: Option<i64>) -> Result<Value> {
    let limit = match limit {
        Some(0) => return Ok(Value::Array(Vec::new())),
        Some(limit) if limit > 0 => Some(usize::try_from(limit).unwrap_or(usize::MAX)),
        _ => None,
    };
    Ok(Value::Array(branch_items(&store, &thread, limit).await?))
}

/// Removes the session's latest message with persist's one pop ([`PipelineExt::pop`]: atomic
/// across processes, two callers never get the same message) and answers its last item: an
/// item the SDK added is a message of its own, so that is the item. A session never written,
/// or deleted, has none to give.
pub(crate) async fn pop_item(store: Scoped, thread: ThreadId) -> Result<Option<Value>> {
    let popped = match store.pop(Pop::new(thread)).await {
        Ok(popped) => popped,
        Err(PersistError::NotFound { message_id: None, .. } | PersistError::ThreadDeleted { .. }) => return Ok(None),
        Err(error) => return Err(error),
    };
    Ok(popped.messages.last().and_then(|message| items_of(message).pop()))
}

/// Removes every message of the thread, on every branch; the thread stays, to be written
/// again.
pub(crate) async fn clear_session(store: Scoped, thread: ThreadId) -> Result<()> {
    absent_as_none(store.delete(Delete::after(thread, 0)).await)?;
    Ok(())
}

/// The ends of the thread's branches, each with the length of its path.
pub(crate) async fn branches(store: Scoped, thread: ThreadId) -> Result<Value> {
    let Some(leaves) = absent_as_none(store.branches(ListBranches::leaves(thread.clone())).await)? else {
        return Ok(Value::Array(Vec::new()));
    };
    let mut answer = Vec::with_capacity(leaves.items.len());
    for (index, leaf) in leaves.items.iter().enumerate() {
        let path = store_path(&store, &thread, Branch::EndingAt(leaf.id.clone())).await?;
        let items: usize = path.iter().map(|message| items_of(message).len()).sum();
        answer.push(json!({
            "branch_id": leaf.id.as_str(),
            "active": leaves.active == Some(index),
            "items": items,
            "last_item": items_of(leaf).pop(),
        }));
    }
    Ok(Value::Array(answer))
}

/// Every message of `branch`, oldest first.
pub(crate) async fn store_path(store: &Scoped, thread: &ThreadId, branch: Branch) -> Result<Vec<Message>> {
    let mut request = ListMessages::new(thread.clone()).with_limit(MAX_PAGE_LIMIT).on_branch(branch);
    let mut messages = Vec::new();
    loop {
        let page = store.list(request.clone()).await?;
        let next = request.next_page(&page);
        messages.extend(page.items);
        match next {
            Some(next) => request = next,
            None => return Ok(messages),
        }
    }
}

/// Makes the branch through `branch_id` active.
pub(crate) async fn switch_branch(store: Scoped, thread: ThreadId, branch_id: persist::MessageId) -> Result<()> {
    store.update(Update::thread(thread).with_switch(Switch::Through(branch_id))).await?;
    Ok(())
}

/// Ends the active branch before user turn `turn` (1-based), with persist's
/// [`PipelineExt::branch_from_turn`]: kept in the store, so the next write of any process
/// follows it.
pub(crate) async fn branch_from_turn(store: Scoped, thread: ThreadId, turn: u64) -> Result<()> {
    store.branch_from_turn(BranchFromTurn::new(thread, turn)).await?;
    Ok(())
}

/// The latest summary of the active branch and the items after it.
pub(crate) async fn compacted(store: Scoped, thread: ThreadId) -> Result<Value> {
    let Some(view) = absent_as_none(store.compacted(ReadCompacted::new(thread).on_branch(Branch::Active)).await)?
    else {
        return Ok(json!({"summary": null, "items": []}));
    };
    let items: Vec<Value> = view.messages.iter().flat_map(items_of).collect();
    let summary = view.summary.map(|summary| summary.content.to_text());
    Ok(json!({"summary": summary, "items": items}))
}

/// A page of the tenant's threads, most recently written first.
pub(crate) async fn sessions(store: Scoped, limit: u32, cursor: Option<ThreadCursor>) -> Result<Value> {
    let mut request = ListThreads::new().with_limit(limit);
    request.cursor = cursor;
    let page = store.threads(request).await?;
    let sessions: Vec<Value> = page
        .items
        .iter()
        .map(|thread| {
            json!({
                "session_id": thread.id.as_str(),
                "title": thread.title,
                "metadata": Value::Object(thread.metadata.as_map().clone()),
                "created_at": seconds(thread.created_at),
                "updated_at": seconds(thread.updated_at),
            })
        })
        .collect();
    let next = match page.next_cursor.filter(|_| page.has_more) {
        Some(cursor) => {
            serde_json::to_value(cursor).map_err(|error| PersistError::backend("a thread cursor", error))?
        }
        None => Value::Null,
    };
    Ok(json!({"sessions": sessions, "next_cursor": next}))
}

/// Messages matching `text`, in one thread or the tenant's.
pub(crate) async fn search(store: Scoped, text: String, thread: Option<ThreadId>, limit: u32) -> Result<Value> {
    let scope = thread.map_or(SearchScope::Tenant, SearchScope::Thread);
    let page = store.search(Search::new(text).with_scope(scope).with_limit(limit)).await?;
    let hits: Vec<Value> = page
        .items
        .iter()
        .map(|hit| {
            json!({
                "session_id": hit.thread_id.as_str(),
                "seq": hit.seq,
                "role": hit.role.as_str(),
                "snippet": hit.snippet.marked("**", "**"),
                "created_at": seconds(hit.created_at),
            })
        })
        .collect();
    Ok(Value::Array(hits))
}

fn memory(memory: &persist::working::WorkingMemory) -> Value {
    json!({"document": Value::Object(memory.document.as_map().clone()), "version": memory.version})
}

/// A resource's working memory.
pub(crate) async fn read_memory(store: Scoped, resource: ResourceId) -> Result<Value> {
    Ok(store.read_memory(ReadMemory::new(resource)).await?.as_ref().map_or(Value::Null, memory))
}

/// A merge patch or a replacement of a resource's working memory.
pub(crate) async fn write_memory(store: Scoped, write: WriteMemory) -> Result<Value> {
    Ok(memory(&store.write_memory(write).await?))
}

/// A JSON object as metadata (`what` names it in the error).
pub(crate) fn object(value: Value, what: &'static str) -> Result<Metadata> {
    match value {
        Value::Object(map) => Ok(Metadata::from(map)),
        _ => Err(PersistError::invalid(what, format!("{what} must be a JSON object"))),
    }
}

/// The next change of a subscription, as Python reads it.
pub(crate) async fn next_change(subscription: &mut Subscription) -> Result<Value> {
    let event: FeedEvent = subscription.next().await?;
    let change = serde_json::to_value(&event.change).map_err(|error| PersistError::backend("a feed event", error))?;
    let mut answer = Map::new();
    answer.insert("position".into(), json!(event.position));
    answer.insert("at".into(), seconds(event.at));
    if let Value::Object(fields) = change {
        for (key, value) in fields {
            let key = if key == "thread_id" { "session_id".to_owned() } else { key };
            answer.entry(key).or_insert(value);
        }
    }
    Ok(Value::Object(answer))
}

/// A subscription to the feed of one thread or of the tenant.
pub(crate) async fn subscribe(store: Scoped, thread: Option<ThreadId>, after: u64) -> Result<Subscription> {
    let query = thread.map_or_else(ReadFeed::tenant, ReadFeed::thread).after(after);
    store.subscribe(query).await
}
