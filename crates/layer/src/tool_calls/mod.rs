//! Tool-call integrity: a thread never holds a history a model provider refuses.
//!
//! Providers refuse, on every later turn, a history where a tool result answers no call, or a
//! call is left without its result when the next user message comes (a crash between a call and
//! its result is enough). [`ToolCallsLayer`] keeps the thread's tool parts (see
//! [`Part`]) consistent as they are written:
//!
//! - an `add` holding a [tool result](persist_core::Part::ToolResult) must answer a call an earlier
//!   message of the thread (or the same message) made, and one that has no result yet, else it
//!   is refused with `InvalidInput` (`content`) naming the call id, and nothing is written;
//! - an `add` of a **user** message, while calls made since the previous user message have no
//!   result (in the thread, or in the user message itself, as Anthropic's messages carry them),
//!   is either refused (`InvalidInput`, `tool_calls`, naming them:
//!   [`Unanswered::Refuse`]) or preceded by one message of role `tool` answering each with an
//!   error result `{"interrupted": true}` ([`Unanswered::Interrupt`], the default), marked
//!   `"persist.synthetic": "interrupted"` in its metadata and written with the user message as
//!   one turn (a refusal of the message leaves no answer behind; a keyed message's answer is
//!   keyed `{key}.interrupted`, so a retry writes neither again);
//! - an [`AppendTurn`] is checked message by message, as if each were
//!   added in order (a result may answer a call of an earlier message of the turn), and the
//!   synthetic answer, when one is needed, is written inside the turn, in its transaction;
//! - a `list` or a [compacted read](persist_core::summary::ReadCompacted) whose context carries
//!   [`ProviderHistory`] answers its messages without orphans: a call without its result among
//!   them, or a result without its call (one folded into the summary before compactions kept
//!   pairs together), is left out of its message, and a message left with no content, or that
//!   said nothing ([`Content::is_blank`]: a reply interrupted before its first token), is left
//!   out, so the messages can be given to a provider as they are. Read a window that starts at a
//!   user message, so a turn is not cut in two.
//!
//! The checks read the thread through the layers below, newest first: a result's call is looked
//! for until it is found (usually in the same turn, one page), the calls of the current turn back
//! to the previous user message. Another writer's add between that read and the write is not
//! seen; put the layer where all of a thread's writes pass, above any route.
//!
//! # Example
//!
//! ```
//! use persist::{args::Add, layer::ToolCallsLayer, memory::MemoryBackend};
//! use persist::{Content, Part, PersistError, Pipeline, Role, ThreadId};
//! use serde_json::json;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pipeline = Pipeline::builder().layer(ToolCallsLayer::new()).build(MemoryBackend::new());
//! let thread = ThreadId::new("t1")?;
//! let say = |role, parts: Vec<Part>| Add::new(thread.clone(), role, Content::from_parts(parts));
//! let stray = say(Role::Tool, vec![Part::tool_result("call_9", json!("sunny"))]);
//! assert!(matches!(pipeline.add(stray).await, Err(PersistError::InvalidInput { field: "content", .. })));
//!
//! pipeline.add(say(Role::Assistant, vec![Part::tool_call("call_1", "weather", json!({}))])).await?;
//! // The process died before the tool answered; the user writes again:
//! pipeline.add(say(Role::User, vec![Part::text("hello?")])).await?;
//! let page = pipeline.list(persist::read::ListMessages::new(thread)).await?;
//! let healed = page.items[1].content.tool_results();
//! assert_eq!(healed[0].as_tool_result().map(|r| (r.call_id, r.is_error)), Some(("call_1", true)));
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

mod layer;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use serde_json::json;
use tower::{Service, ServiceExt};

pub use self::layer::ToolCallsLayer;
use persist_core::args::{Add, AppendTurn, PersistArgs, TurnMessage};
use persist_core::branch::{Branch, Parent};
use persist_core::raw::take_ready;
use persist_core::read::{ListMessages, Order};
use persist_core::{Added, Content, Context, IdempotencyKey, Message, Metadata, Part, PersistResult, Role};
use persist_core::{MessageId, ThreadId};
use persist_core::{PersistError, Result};

/// What to do with calls left without a result when the next user message comes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unanswered {
    /// Answer each with an error result `{"interrupted": true}` in one `tool` message written
    /// before the user message.
    #[default]
    Interrupt,
    /// Refuse the user message (`InvalidInput`, field `tool_calls`) until they are answered.
    Refuse,
}

/// A context extension asking [`ToolCallsLayer`] to answer a `list` without orphan tool parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProviderHistory;

/// The service of [`ToolCallsLayer`].
#[derive(Debug, Clone)]
pub struct ToolCalls<S> {
    inner: S,
    unanswered: Unanswered,
}

/// The response future of [`ToolCalls`].
pub type ToolCallsFuture = Pin<Box<dyn Future<Output = Result<PersistResult>> + Send + 'static>>;

impl<S> Service<PersistArgs> for ToolCalls<S>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = PersistResult;
    type Error = PersistError;
    type Future = ToolCallsFuture;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, args: PersistArgs) -> Self::Future {
        let inner = take_ready(&mut self.inner);
        let unanswered = self.unanswered;
        match args {
            PersistArgs::Add(add) => Box::pin(checked_add(inner, add, unanswered)),
            PersistArgs::AppendTurn(turn) => Box::pin(checked_turn(inner, turn, unanswered)),
            PersistArgs::List(query) if query.context.extensions().get::<ProviderHistory>().is_some() => {
                Box::pin(async move {
                    match inner.oneshot(query.into()).await? {
                        PersistResult::Messages(mut page) => {
                            page.items = provider_ready(page.items);
                            Ok(PersistResult::Messages(page))
                        }
                        other => Ok(other),
                    }
                })
            }
            PersistArgs::Compacted(read) if read.context.extensions().get::<ProviderHistory>().is_some() => {
                Box::pin(async move {
                    match inner.oneshot(read.into()).await? {
                        PersistResult::Compacted(mut compacted) => {
                            compacted.messages = provider_ready(compacted.messages);
                            Ok(PersistResult::Compacted(compacted))
                        }
                        other => Ok(other),
                    }
                })
            }
            args => Box::pin(inner.oneshot(args)),
        }
    }
}

/// An add, once its tool results answer calls of the thread and, for a user message, once the
/// current turn's calls are answered.
async fn checked_add<S>(mut inner: S, add: Add, unanswered: Unanswered) -> Result<PersistResult>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let repeats = Own::of_add(&add);
    let parts = add.content.parts();
    let own_calls: HashSet<&str> = parts.iter().filter_map(|part| part.as_tool_call().map(|call| call.id)).collect();
    let results: Vec<&str> = parts.iter().filter_map(|part| part.as_tool_result().map(|r| r.call_id)).collect();
    // A result may answer a call of the same message (a tool the provider ran itself).
    let mut missing: HashSet<&str> = results.iter().copied().filter(|id| !own_calls.contains(id)).collect();
    if !missing.is_empty() {
        // Results met before a call's message are newer than it: that call is answered already.
        let mut answered = HashSet::new();
        scan(&mut inner, &add.thread_id, &add.context, &repeats, &add.parent, |message| {
            for part in message.content.parts() {
                match part {
                    Part::ToolCall { id, .. } => {
                        missing.remove(id.as_str());
                    }
                    Part::ToolResult { call_id, .. } => {
                        answered.insert(call_id);
                    }
                    _ => {}
                }
            }
            !missing.is_empty()
        })
        .await?;
        if let Some(id) = results.iter().find(|id| missing.contains(*id)) {
            return Err(PersistError::invalid(
                "content",
                format!("the tool result for call {id} answers no call of thread {}", add.thread_id),
            ));
        }
        if let Some(id) = results.iter().find(|id| !own_calls.contains(*id) && answered.contains(**id)) {
            return Err(PersistError::invalid(
                "content",
                format!("call {id} of thread {} has a result already", add.thread_id),
            ));
        }
    }
    if add.role == Role::User {
        // Refused here, a user message must not leave a synthetic answer behind.
        PersistArgs::Add(add.clone()).validate()?;
        // A user message may carry the results itself (as Anthropic's messages do).
        let mut open = unanswered_calls(&mut inner, &add.thread_id, &add.context, &repeats, &add.parent).await?;
        open.retain(|id| !results.contains(&id.as_str()));
        if !open.is_empty() {
            match unanswered {
                Unanswered::Refuse => {
                    return Err(PersistError::invalid(
                        "tool_calls",
                        format!(
                            "calls {} of thread {} have no result: answer them before the next user message",
                            open.join(", "),
                            add.thread_id
                        ),
                    ));
                }
                Unanswered::Interrupt => return interrupted_add(inner, add, &open).await,
            }
        }
    }
    inner.ready().await?.call(add.into()).await
}

/// A user `add` after calls left open, written as one turn: the synthetic answer to `open`, then
/// the message, so a refusal of the message leaves no answer behind. Answered as the add.
async fn interrupted_add<S>(mut inner: S, add: Add, open: &[String]) -> Result<PersistResult>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let parts = open.iter().map(|id| Part::tool_error(id.as_str(), json!({"interrupted": true})));
    let mut heal = TurnMessage::new(Role::Tool, Content::from_parts(parts))
        .with_metadata(Metadata::new().with("persist.synthetic", json!("interrupted")));
    // Keyed beside the message, so a retry finds both and writes neither again.
    if let Some(key) = &add.idempotency_key {
        heal.idempotency_key = IdempotencyKey::new(format!("{key}.interrupted")).ok();
    }
    let (thread_id, parent, context) = (add.thread_id.clone(), add.parent.clone(), add.context.clone());
    let turn = AppendTurn::of(thread_id, [heal, TurnMessage::from_add(add)]).with_parent(parent).with_context(context);
    match inner.ready().await?.call(turn.into()).await? {
        PersistResult::TurnAppended(mut turn) if turn.messages.len() == 2 => {
            let message = turn.messages.pop().expect("two messages");
            Ok(PersistResult::Added(Added::new(message, turn.deduplicated)))
        }
        other => Err(PersistError::MismatchedResult { op: persist_core::PersistOp::AppendTurn, got: other.op() }),
    }
}

/// A turn, checked message by message as if each were added in order: a result answers a call
/// of the thread or of an earlier message of the turn (or its own); a user message finds the
/// calls before it answered, or (`Interrupt`) a synthetic `tool` message answering them is put
/// into the turn before it, written in the same transaction.
async fn checked_turn<S>(mut inner: S, mut turn: AppendTurn, unanswered: Unanswered) -> Result<PersistResult>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    // Refused here, a turn must not be read for nothing (nor healed and then refused).
    turn.validate()?;
    let repeats = Own::of_turn(&turn);
    let parts: Vec<Vec<Part>> = turn.messages.iter().map(|m| m.content.parts()).collect();
    // Results whose call no earlier message of the turn (or their own) made: looked for in the
    // thread, as a single add's are.
    let mut made: HashSet<&str> = HashSet::new();
    let mut missing: HashSet<String> = HashSet::new();
    for message in &parts {
        let own: Vec<&str> = message.iter().filter_map(|p| p.as_tool_call().map(|c| c.id)).collect();
        for result in message.iter().filter_map(|p| p.as_tool_result().map(|r| r.call_id)) {
            if !made.contains(result) && !own.contains(&result) {
                missing.insert(result.to_owned());
            }
        }
        made.extend(own);
    }
    let mut answered: HashSet<String> = HashSet::new();
    if !missing.is_empty() {
        scan(&mut inner, &turn.thread_id, &turn.context, &repeats, &turn.parent, |message| {
            for part in message.content.parts() {
                match part {
                    Part::ToolCall { id, .. } => {
                        missing.remove(&id);
                    }
                    Part::ToolResult { call_id, .. } => {
                        answered.insert(call_id);
                    }
                    _ => {}
                }
            }
            !missing.is_empty()
        })
        .await?;
    }
    let mut open = if turn.messages.iter().any(|m| m.role == Role::User) {
        unanswered_calls(&mut inner, &turn.thread_id, &turn.context, &repeats, &turn.parent).await?
    } else {
        Vec::new()
    };
    let mut healed = Vec::with_capacity(turn.messages.len() + 1);
    let mut synthetic = 0;
    for (index, (message, parts)) in turn.messages.iter().zip(&parts).enumerate() {
        let own: Vec<&str> = parts.iter().filter_map(|p| p.as_tool_call().map(|c| c.id)).collect();
        let results: Vec<&str> = parts.iter().filter_map(|p| p.as_tool_result().map(|r| r.call_id)).collect();
        for id in &results {
            if missing.contains(*id) {
                return Err(PersistError::invalid(
                    "content",
                    format!("the tool result for call {id} answers no call of thread {}", turn.thread_id),
                ));
            }
            if !own.contains(id) && !answered.insert((*id).to_owned()) {
                return Err(PersistError::invalid(
                    "content",
                    format!("call {id} of thread {} has a result already", turn.thread_id),
                ));
            }
        }
        if message.role == Role::User {
            open.retain(|id| !results.contains(&id.as_str()));
            if !open.is_empty() {
                if unanswered == Unanswered::Refuse {
                    return Err(PersistError::invalid(
                        "tool_calls",
                        format!(
                            "calls {} of thread {} have no result: answer them before the next user message",
                            open.join(", "),
                            turn.thread_id
                        ),
                    ));
                }
                let parts = open.iter().map(|id| Part::tool_error(id.as_str(), json!({"interrupted": true})));
                let mut heal = TurnMessage::new(Role::Tool, Content::from_parts(parts))
                    .with_metadata(Metadata::new().with("persist.synthetic", json!("interrupted")));
                // Keyed apart from the turn's own messages, which keep the keys their places
                // gave them: a retry (healed or not) is still the same turn.
                if let Some(key) = &turn.idempotency_key {
                    heal.idempotency_key = IdempotencyKey::new(format!("{key}#{index}.interrupted")).ok();
                }
                healed.push((None, heal));
                synthetic += 1;
                open.clear();
            }
        }
        for id in own {
            if !results.contains(&id) && !open.iter().any(|o| o == id) {
                open.push(id.to_owned());
            }
        }
        open.retain(|id| !results.contains(&id.as_str()));
        healed.push((Some(index), message.clone()));
    }
    if synthetic > 0 {
        let mut messages = Vec::with_capacity(healed.len());
        for (index, mut message) in healed {
            if let Some(index) = index
                && message.idempotency_key.is_none()
            {
                message.idempotency_key = turn.key_of(index)?;
            }
            messages.push(message);
        }
        turn.messages = messages;
    }
    inner.ready().await?.call(turn.into()).await
}

/// The calls made since the previous user message that no later message answers, oldest first.
async fn unanswered_calls<S>(
    inner: &mut S,
    thread_id: &ThreadId,
    context: &Context,
    own: &Own,
    parent: &Parent,
) -> Result<Vec<String>>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let (mut calls, mut answered) = (Vec::new(), HashSet::new());
    scan(inner, thread_id, context, own, parent, |message| {
        if message.role == Role::User {
            return false;
        }
        // Newest first, message by message: a message's parts walked backwards too.
        for part in message.content.parts().into_iter().rev() {
            match part {
                Part::ToolCall { id, .. } => calls.push(id),
                Part::ToolResult { call_id, .. } => {
                    answered.insert(call_id);
                }
                _ => {}
            }
        }
        true
    })
    .await?;
    calls.reverse();
    let mut seen = HashSet::new();
    calls.retain(|id| !answered.contains(id) && seen.insert(id.clone()));
    Ok(calls)
}

/// The stored first copies a write would repeat (found by its explicit ids and its keys): a
/// retried write is checked against the thread as it was before its first copy, so that the
/// store answers it as the repeat it is (its results are not "answered already" by itself).
#[derive(Debug, Default)]
struct Own {
    ids: HashSet<MessageId>,
    keys: HashSet<IdempotencyKey>,
}

impl Own {
    fn of_add(add: &Add) -> Self {
        Self { ids: add.message_id.iter().cloned().collect(), keys: add.idempotency_key.iter().cloned().collect() }
    }

    fn of_turn(turn: &AppendTurn) -> Self {
        let ids = turn.messages.iter().filter_map(|m| m.message_id.clone()).collect();
        // Keys too long are refused by the turn's validation, before any scan.
        let keys = (0..turn.messages.len()).filter_map(|index| turn.key_of(index).ok().flatten()).collect();
        Self { ids, keys }
    }

    fn holds(&self, message: &Message) -> bool {
        self.ids.contains(&message.id) || message.idempotency_key.as_ref().is_some_and(|key| self.keys.contains(key))
    }
}

/// Reads the history a write placed after `parent` follows, newest first, through `inner`,
/// while `visit` answers `true`, passing over the first copies `own` of the write being checked:
/// the branch the write extends (see [`branch`](persist_core::branch)), or the whole thread on a store
/// without branches. A thread that does not exist, or a new root, has none.
async fn scan<S>(
    inner: &mut S,
    thread_id: &ThreadId,
    context: &Context,
    own: &Own,
    parent: &Parent,
    mut visit: impl FnMut(&Message) -> bool,
) -> Result<()>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
{
    // Reservations too: a reply still streaming may have made a call already.
    let whole = ListMessages::new(thread_id.clone())
        .with_order(Order::Desc)
        .include_reserved(true)
        .with_context(context.renewed());
    let branch = match parent {
        Parent::Root => return Ok(()),
        Parent::Message(id) => Branch::EndingAt(id.clone()),
        _ => Branch::Active,
    };
    let mut query = Some(whole.clone().on_branch(branch));
    while let Some(current) = query.take() {
        let page = match inner.ready().await?.call(current.clone().into()).await {
            Ok(PersistResult::Messages(page)) => page,
            Ok(other) => {
                return Err(PersistError::MismatchedResult { op: persist_core::PersistOp::List, got: other.op() });
            }
            // A store without branches: its threads are lines.
            Err(PersistError::Unsupported { .. }) if current.branch.is_some() && current.before.is_none() => {
                query = Some(whole.clone());
                continue;
            }
            Err(PersistError::NotFound { .. }) => return Ok(()),
            Err(error) => return Err(error),
        };
        for message in page.items.iter().filter(|message| !own.holds(message)) {
            if !visit(message) {
                return Ok(());
            }
        }
        query = current.next_page(&page);
    }
    Ok(())
}

/// The messages with every tool call that has no result among them, and every result whose
/// call is not among them, left out, and a message left with nothing (or that said nothing: a
/// reply cut before its first token, see [`Content::is_blank`]) left out.
fn provider_ready(mut messages: Vec<Message>) -> Vec<Message> {
    let (mut calls, mut results) = (HashSet::new(), HashSet::new());
    for message in &messages {
        for part in message.content.parts() {
            match part {
                Part::ToolCall { id, .. } => {
                    calls.insert(id);
                }
                Part::ToolResult { call_id, .. } => {
                    results.insert(call_id);
                }
                _ => {}
            }
        }
    }
    let orphan = |part: &Part| match part {
        Part::ToolCall { id, .. } => !results.contains(id),
        Part::ToolResult { call_id, .. } => !calls.contains(call_id),
        _ => false,
    };
    messages.retain_mut(|message| {
        if message.content.is_blank() {
            return false;
        }
        let parts = message.content.parts();
        if !parts.iter().any(&orphan) {
            return true;
        }
        let kept: Vec<Part> = parts.into_iter().filter(|part| !orphan(part)).collect();
        if kept.is_empty() {
            return false;
        }
        message.content = Content::from_parts(kept);
        true
    });
    messages
}
