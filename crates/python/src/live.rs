//! Live replies in Python: a reply written as a model streams it (start, append at the writer's
//! offset, renew, finish), followed from any offset by any process, and stopped from anywhere;
//! the calls of `Store` in `lib.rs` hand their work to these.

use std::sync::Arc;
use std::time::Duration;

use persist::args::TurnMessage;
use persist::live::{
    AppendReply, FinishReply, FollowParts, PartChunk, PartOffset, PartStream, RenewReply, ReplyEnd, ReplyWritten,
    StartReply, StopReply, StopState,
};
use persist::read::ListMessages;
use persist::{Content, IdempotencyKey, MessageId, Order, PersistError, Role, Scoped, Status, ThreadId};
use persist::{Part, PipelineExt};
use serde_json::{Value, json};

use pyo3::exceptions::PyTypeError;
use pyo3::{Bound, PyAny, PyResult, Python};

use crate::bridge::{Reply, to_json};
use crate::checked;

/// How the API says a reply stands, and how it ended.
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
        "lease": written.lease.map(|lease| lease.as_secs_f64()),
        "expires_at": written.expires_at.map(|at| at.as_micros() as f64 / 1e6),
    })
}

/// `offset` as a place in parts.
pub(crate) fn offset_of(offset: &str) -> persist::Result<PartOffset> {
    offset.parse()
}

/// `parts` (content blocks) as content.
pub(crate) fn parts_of(parts: Value) -> persist::Result<Content> {
    match parts {
        Value::Array(_) => Ok(Content::new(parts)),
        _ => Err(PersistError::invalid("parts", "a list of content blocks (dicts with a 'type')")),
    }
}

/// The id of the message at `seq` in the thread (any branch, reserved ones included).
async fn message_at(store: &Scoped, thread: &ThreadId, seq: u64) -> persist::Result<Option<MessageId>> {
    let at = ListMessages::new(thread.clone())
        .before(seq.saturating_add(1))
        .with_order(Order::Desc)
        .with_limit(1)
        .include_reserved(true);
    let page = store.list(at).await?;
    Ok(page.items.into_iter().next().filter(|message| message.seq == seq).map(|message| message.id))
}

/// A start's turn, the reply's id, its key and the writer's lease.
type StartArgs = (Vec<TurnMessage>, Option<MessageId>, Option<IdempotencyKey>, Duration);

/// `Store.start_reply`'s arguments, checked: the turn, the reply's id, the key, the lease.
pub(crate) fn start_args(
    py: Python<'_>,
    items: Option<&Bound<'_, PyAny>>,
    reply_id: Option<&str>,
    idempotency_key: Option<&str>,
    lease: f64,
) -> PyResult<StartArgs> {
    let turn = match items.map(|items| to_json(items, "items")).transpose()? {
        Some(Value::Array(items)) => crate::session::turn_of(items),
        None => Vec::new(),
        Some(_) => return Err(PyTypeError::new_err("items must be a list of items (dicts)")),
    };
    let reply = checked(py, reply_id.map(MessageId::new).transpose())?;
    let key = checked(py, idempotency_key.map(IdempotencyKey::new).transpose())?;
    let lease = Duration::try_from_secs_f64(lease).map_err(|_| PersistError::invalid("lease", "1 to 3600 seconds"));
    Ok((turn, reply, key, checked(py, lease)?))
}

/// The last parts of a finish: at an offset, or none.
type Last = Option<(PartOffset, Content)>;

/// `Store.finish_reply`'s arguments, checked: the reply's id, whether it ends interrupted, its
/// last parts.
pub(crate) fn finish_args(
    py: Python<'_>,
    reply_id: &str,
    status: &str,
    offset: Option<&str>,
    parts: Option<&Bound<'_, PyAny>>,
) -> PyResult<(MessageId, bool, Last)> {
    let interrupted = match status {
        "completed" => false,
        "incomplete" => true,
        _ => return Err(crate::errors::to_py(py, &PersistError::invalid("status", "'completed' or 'incomplete'"))),
    };
    let last = match (offset, parts) {
        (Some(offset), Some(parts)) => {
            Some((checked(py, offset_of(offset))?, checked(py, parts_of(to_json(parts, "parts")?))?))
        }
        (None, None) => None,
        _ => return Err(crate::errors::to_py(py, &PersistError::invalid("parts", "offset and parts go together"))),
    };
    Ok((checked(py, MessageId::new(reply_id))?, interrupted, last))
}

/// See `Store.start_reply`.
pub(crate) async fn start(
    store: Scoped,
    thread: ThreadId,
    turn: Vec<TurnMessage>,
    reply_id: Option<MessageId>,
    key: Option<IdempotencyKey>,
    lease: Duration,
) -> persist::Result<Reply> {
    let mut start = StartReply::new(thread.clone()).with_lease(lease);
    start.messages = turn;
    if let Some(id) = reply_id {
        start = start.with_reply_id(id);
    }
    if let Some(key) = key {
        start = start.with_idempotency_key(key);
    }
    let started = store.start_reply(start).await?;
    let mut answer = state(&started.reply.id, &started.state);
    // What the reply follows, as stored (the turn's last message, else the branch's leaf when
    // it started): read from the reply, so a start sent again, or another writer's message
    // written meanwhile, does not make it another one.
    let parent = match started.reply.parent_seq {
        None => None,
        Some(seq) => match started.messages.iter().find(|message| message.seq == seq) {
            Some(message) => Some(message.id.clone()),
            None => message_at(&store, &thread, seq).await?,
        },
    };
    answer["parent_id"] = parent.map(|id| Value::String(id.to_string())).unwrap_or(Value::Null);
    Ok(Reply::json(answer))
}

/// See `Store.append_reply`.
pub(crate) async fn append(
    store: Scoped,
    thread: ThreadId,
    reply: MessageId,
    at: PartOffset,
    content: Content,
) -> persist::Result<Reply> {
    let written = store.append_reply(AppendReply::new(thread, reply.clone(), at, content)).await?;
    Ok(Reply::json(state(&reply, &written)))
}

/// See `Store.renew_reply`.
pub(crate) async fn renew(store: Scoped, thread: ThreadId, reply: MessageId) -> persist::Result<Reply> {
    let written = store.renew_reply(RenewReply::new(thread, reply.clone())).await?;
    Ok(Reply::json(state(&reply, &written)))
}

/// See `Store.finish_reply`.
pub(crate) async fn finish(
    store: Scoped,
    thread: ThreadId,
    reply: MessageId,
    interrupted: bool,
    reason: Option<String>,
    last: Option<(PartOffset, Content)>,
) -> persist::Result<Reply> {
    let mut finish = if interrupted {
        FinishReply::interrupted(thread, reply.clone(), reason)
    } else {
        FinishReply::complete(thread, reply.clone())
    };
    if let Some((at, content)) = last {
        finish = finish.with_last(at, content);
    }
    let written = store.finish_reply(finish).await?;
    Ok(Reply::json(state(&reply, &written)))
}

/// The session's reply being generated: its newest reserved assistant message.
async fn running(store: &Scoped, thread: &ThreadId) -> persist::Result<Option<MessageId>> {
    let newest = ListMessages::new(thread.clone()).with_order(Order::Desc).include_reserved(true).with_limit(20);
    let page = match store.list(newest).await {
        Ok(page) => page,
        Err(PersistError::NotFound { .. }) => return Ok(None),
        Err(other) => return Err(other),
    };
    Ok(page.items.into_iter().find(|m| m.status == Status::Reserved && m.role == Role::Assistant).map(|m| m.id))
}

/// See `Store.stop_reply`.
pub(crate) async fn stop(store: Scoped, thread: ThreadId, reply: Option<MessageId>) -> persist::Result<Reply> {
    let reply = match reply {
        Some(reply) => reply,
        None => match running(&store, &thread).await? {
            Some(reply) => reply,
            None => return Ok(Reply::json(json!({"stopped": false, "reply_id": null}))),
        },
    };
    let answer = match store.stop_reply(StopReply::new(thread, reply.clone())).await? {
        StopState::Requested => json!({"stopped": true, "reply_id": reply}),
        StopState::Ended(end) => json!({"stopped": false, "reply_id": reply, "status": end}),
        _ => json!({"stopped": false, "reply_id": reply}),
    };
    Ok(Reply::json(answer))
}

/// See `Store.watch_stop`: `"stopped"` when a client stopped the reply, else how it ended.
pub(crate) async fn watch_stop(store: Scoped, thread: ThreadId, reply: MessageId) -> persist::Result<Reply> {
    let signal = store.watch_stop(StopReply::new(thread, reply)).await?;
    let heard = match signal.await? {
        StopState::Requested | StopState::Ended(ReplyEnd::Stopped) => json!("stopped"),
        StopState::Ended(end) => json!(end),
        _ => json!("ended"),
    };
    Ok(Reply::json(heard))
}

/// Opens a follower of `reply` from `from`.
pub(crate) async fn follow(
    store: Scoped,
    thread: ThreadId,
    reply: MessageId,
    from: PartOffset,
) -> persist::Result<PartStream> {
    store.follow_parts(FollowParts::new(thread, reply).from(from)).await
}

/// The next chunk of a followed reply as a dict, and where a client that has it resumes; `None`
/// after the end.
pub(crate) async fn next_chunk(stream: &mut PartStream) -> persist::Result<Option<Value>> {
    let Some(chunk) = stream.next().await? else { return Ok(None) };
    let offset = stream.offset().to_string();
    let block = |part: &Part| Content::from_parts([part.clone()]).to_value()[0].clone();
    let value = match chunk {
        PartChunk::Part { index, part } => {
            json!({"type": "part", "index": index, "part": block(&part), "offset": offset})
        }
        PartChunk::Delta { index, added, .. } => {
            json!({"type": "delta", "index": index, "part": block(&added), "offset": offset})
        }
        PartChunk::Replaced { parts } => {
            json!({"type": "replaced", "parts": Content::from_parts(parts).to_value(), "offset": offset})
        }
        PartChunk::End(end) => json!({"type": "end", "status": end, "offset": offset}),
        _ => json!({"type": "unknown", "offset": offset}),
    };
    Ok(Some(value))
}

/// A follower's state, shared by the iterator's calls.
pub(crate) enum Following {
    Unopened {
        opened: Arc<crate::Opened>,
        context: persist::Context,
        thread: ThreadId,
        reply: MessageId,
        from: PartOffset,
    },
    Open(Box<PartStream>),
    Ended,
}

/// A reply followed as an async iterator of chunk dicts; see `_persist.pyi`.
#[pyo3::pyclass(frozen, module = "persist._persist")]
pub(crate) struct ReplyFollower {
    pub(crate) state: Arc<tokio::sync::Mutex<Following>>,
    /// Where a client that has every chunk given resumes (the place asked, before the first).
    pub(crate) offset: Arc<std::sync::Mutex<String>>,
}

#[pyo3::pymethods]
impl ReplyFollower {
    fn __aiter__(slf: pyo3::Py<Self>) -> pyo3::Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: pyo3::Python<'py>) -> pyo3::PyResult<pyo3::Bound<'py, pyo3::PyAny>> {
        let (state, offset) = (self.state.clone(), self.offset.clone());
        crate::bridge::awaitable(py, async move {
            let mut state = state.lock().await;
            loop {
                match &mut *state {
                    Following::Ended => return Ok(Reply::End),
                    Following::Open(stream) => {
                        let Some(chunk) = next_chunk(stream).await? else {
                            *state = Following::Ended;
                            return Ok(Reply::End);
                        };
                        if let Some(at) = chunk["offset"].as_str() {
                            *offset.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = at.to_owned();
                        }
                        return Ok(Reply::json(chunk));
                    }
                    Following::Unopened { opened, context, thread, reply, from } => {
                        let store = opened.clone().pipeline().await?.scoped(context.clone());
                        let stream = follow(store, thread.clone(), reply.clone(), *from).await?;
                        *state = Following::Open(Box::new(stream));
                    }
                }
            }
        })
    }

    /// Where a client that has every chunk given so far resumes (`offset=` of a new follower).
    #[getter]
    fn offset(&self) -> String {
        self.offset.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}
