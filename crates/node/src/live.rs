//! Live replies in Node: a reply written as a model streams it (start, append at the writer's
//! offset, renew, finish), followed from any offset by any process, and stopped from anywhere;
//! persist's [`live`](persist::live) operations, the same every surface runs.

use std::time::Duration;

use persist::live::{
    AppendReply, FinishReply, PartOffset, RenewReply, ReplyEnd, ReplyWritten, StartReply, StopReply, StopState,
};
use persist::read::ListMessages;
use persist::{Content, MessageId, Order, PersistError, PipelineExt, Result, Role, Scoped, Status, ThreadId};
use serde_json::{Value, json};

use crate::args::{absent_as_none, key_of, message_of, metadata_of, millis, optional, required, thread_of};
use crate::chat::turn_of;

/// How a reply stands: `status` as the Conversations API says it, `end` in persist's words.
fn state(id: &MessageId, written: &ReplyWritten) -> Value {
    let status = match written.end {
        None => "in_progress",
        Some(ReplyEnd::Complete) => "completed",
        Some(_) => "incomplete",
    };
    json!({
        "id": id,
        "status": status,
        "end": written.end,
        "offset": written.offset.to_string(),
        "written": written.written,
        "leaseMs": written.lease.map(|lease| lease.as_millis() as u64),
        "expiresAt": written.expires_at.map(millis),
    })
}

/// The argument `offset` (`"PART"` or `"PART.CHARS"`; `"0"` when absent).
pub(crate) fn offset_of(args: &Value) -> Result<PartOffset> {
    optional(args, "offset")?.unwrap_or("0").parse()
}

/// The argument `parts`: content blocks (`{type: "text", text}`, `tool_call`, ...).
fn parts_of(args: &Value) -> Result<Content> {
    match args.get("parts") {
        Some(parts @ Value::Array(_)) => Ok(Content::new(parts.clone())),
        _ => Err(PersistError::invalid("parts", "parts must be an array of content blocks (objects with a type)")),
    }
}

/// The argument `replyId`.
pub(crate) fn reply_of(args: &Value) -> Result<MessageId> {
    MessageId::new(required(args, "replyId")?)
}

/// `startReply`: reserves the reply, after `messages` (the user's turn, as `UIMessage`s) in the
/// same transaction; one reply is generated at a time per thread, across processes.
pub(crate) async fn start(store: Scoped, args: &Value) -> Result<Value> {
    let thread = thread_of(args)?;
    let mut start = StartReply::new(thread);
    start.messages = turn_of(args)?;
    if let Some(id) = message_of(args, "replyId")? {
        start = start.with_reply_id(id);
    }
    if let Some(key) = key_of(args)? {
        start = start.with_idempotency_key(key);
    }
    if let Some(metadata) = metadata_of(args, "metadata")? {
        start = start.with_metadata(metadata);
    }
    match args.get("leaseMs") {
        None | Some(Value::Null) => {}
        Some(value) => {
            let ms = value
                .as_u64()
                .ok_or_else(|| PersistError::invalid("leaseMs", "leaseMs must be a whole number of ms"))?;
            start = start.with_lease(Duration::from_millis(ms));
        }
    }
    let started = store.start_reply(start).await?;
    let mut answer = state(&started.reply.id, &started.state);
    answer["messageIds"] = started.messages.iter().map(|message| json!(message.id.as_str())).collect();
    Ok(answer)
}

/// `appendReply`: parts at the writer's offset (a retried append is written once, a gap refused).
pub(crate) async fn append(store: Scoped, args: &Value) -> Result<Value> {
    let reply = reply_of(args)?;
    let append = AppendReply::new(thread_of(args)?, reply.clone(), offset_of(args)?, parts_of(args)?);
    Ok(state(&reply, &store.append_reply(append).await?))
}

/// `renewReply`: the writer's lease, renewed.
pub(crate) async fn renew(store: Scoped, args: &Value) -> Result<Value> {
    let reply = reply_of(args)?;
    Ok(state(&reply, &store.renew_reply(RenewReply::new(thread_of(args)?, reply.clone())).await?))
}

/// `finishReply`: ends the reply, `completed` or `incomplete` (interrupted, with a `reason`),
/// with its last parts at an offset when they are given.
pub(crate) async fn finish(store: Scoped, args: &Value) -> Result<Value> {
    let (thread, reply) = (thread_of(args)?, reply_of(args)?);
    let mut finish = match optional(args, "status")?.unwrap_or("completed") {
        "completed" => FinishReply::complete(thread, reply.clone()),
        "incomplete" => FinishReply::interrupted(thread, reply.clone(), optional(args, "reason")?.map(str::to_owned)),
        _ => return Err(PersistError::invalid("status", "status must be \"completed\" or \"incomplete\"")),
    };
    match (args.get("offset").filter(|offset| !offset.is_null()), args.get("parts").filter(|parts| !parts.is_null())) {
        (Some(_), Some(_)) => finish = finish.with_last(offset_of(args)?, parts_of(args)?),
        (None, None) => {}
        _ => return Err(PersistError::invalid("parts", "offset and parts go together")),
    }
    Ok(state(&reply, &store.finish_reply(finish).await?))
}

/// The thread's reply being written: its newest reserved assistant message.
pub(crate) async fn running(store: &Scoped, thread: &ThreadId) -> Result<Option<MessageId>> {
    let newest = ListMessages::new(thread.clone()).with_order(Order::Desc).include_reserved(true).with_limit(20);
    let Some(page) = absent_as_none(store.list(newest).await)? else { return Ok(None) };
    Ok(page.items.into_iter().find(|m| m.status == Status::Reserved && m.role == Role::Assistant).map(|m| m.id))
}

/// `runningReply`: the id of the thread's reply being written, or null.
pub(crate) async fn running_json(store: Scoped, args: &Value) -> Result<Value> {
    Ok(running(&store, &thread_of(args)?).await?.map_or(Value::Null, |id| json!(id.as_str())))
}

/// The thread's newest assistant message (written or being written): what a client resumes.
pub(crate) async fn newest_reply(store: &Scoped, thread: &ThreadId) -> Result<Option<MessageId>> {
    let newest = ListMessages::new(thread.clone()).with_order(Order::Desc).include_reserved(true).with_limit(1);
    let Some(page) = absent_as_none(store.list(newest).await)? else { return Ok(None) };
    Ok(page.items.into_iter().find(|m| m.role == Role::Assistant).map(|m| m.id))
}

/// `stopReply`: asks the writer of `replyId` (else of the thread's running reply) to stop.
pub(crate) async fn stop(store: Scoped, args: &Value) -> Result<Value> {
    let thread = thread_of(args)?;
    let reply = match message_of(args, "replyId")? {
        Some(reply) => reply,
        None => match running(&store, &thread).await? {
            Some(reply) => reply,
            None => return Ok(json!({"stopped": false, "replyId": null})),
        },
    };
    let answer = match store.stop_reply(StopReply::new(thread, reply.clone())).await? {
        StopState::Requested => json!({"stopped": true, "replyId": reply}),
        StopState::Ended(end) => json!({"stopped": false, "replyId": reply, "end": end}),
        _ => json!({"stopped": false, "replyId": reply}),
    };
    Ok(answer)
}

/// `watchStop`: resolves when a client stopped the reply (`"stopped"`) or it ended otherwise
/// (how, in persist's words).
pub(crate) async fn watch_stop(store: Scoped, args: &Value) -> Result<Value> {
    let signal = store.watch_stop(StopReply::new(thread_of(args)?, reply_of(args)?)).await?;
    Ok(match signal.await? {
        StopState::Requested | StopState::Ended(ReplyEnd::Stopped) => json!("stopped"),
        StopState::Ended(end) => json!(end),
        _ => json!("ended"),
    })
}
