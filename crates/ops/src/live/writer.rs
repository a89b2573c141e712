//! A live reply's writer, in any language: [`StartReply`], [`AppendReply`], [`RenewReply`] and
//! [`FinishReply`], each one call a process makes (in process, or as an HTTP request to
//! `persist serve`), so no writer needs a connection of its own held open.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{ReplyEnd, STOP_KEY, ending, read_message};
use persist_core::args::{AppendTurn, TurnMessage, Update, UpdateContent};
use persist_core::lease::Lease;
use persist_core::raw::parts_continue;
use persist_core::{Content, Context, IdempotencyKey, Message, MessageId, Metadata, PartOffset, Pipeline, Role};
use persist_core::{PersistError, ReplyConflict, Result, Status, ThreadId, Timestamp, context_setter};

/// The reply metadata key holding its writer's lease: `{"ms": <milliseconds>}`. A reply whose
/// writer wrote nothing (no append, no renewal) for that long is settled as interrupted, by its
/// followers or by the next start in its thread.
pub const LEASE_KEY: &str = "persist.lease";

/// The reply metadata key holding why a writer ended its reply interrupted: `{"reason": …}`.
pub const REASON_KEY: &str = "persist.reason";

/// The name of the thread [lease](persist_core::lease::Lease) a reply's generation holds (its
/// holder the reply's id): one generation per thread, across instances.
pub const GENERATION_LEASE: &str = "persist.reply";

/// The shortest and longest writer's lease.
pub const LEASE_BOUNDS: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(3600));

/// The writer's lease unless a start says otherwise.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// How long the thread's generation lease is held: a reply's liveness is told by its writes,
/// not by this (a writer that appends and never renews keeps the thread).
const HOLD: Duration = Duration::from_secs(86_400);

/// How long a generation lease without its reply is taken for a start still under way.
const STARTING: Duration = Duration::from_secs(10);

/// Starts a live reply in a thread: the messages before it (the user's turn) and the reply's
/// reservation written in one turn, and the thread's generation taken; see
/// [`PipelineExt::start_reply`](crate::PipelineExt::start_reply).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StartReply {
    /// The thread.
    pub thread_id: ThreadId,
    /// The messages written before the reply, in the same write (the user's turn); may be empty.
    #[serde(default)]
    pub messages: Vec<TurnMessage>,
    /// The reply's id: else derived from the idempotency key, else generated.
    #[serde(default)]
    pub reply_id: Option<MessageId>,
    /// Makes the start idempotent: sent again, it answers the reply the first one started.
    #[serde(default)]
    pub idempotency_key: Option<IdempotencyKey>,
    /// How long the writer may go without writing before its reply is taken for dead:
    /// [`LEASE_BOUNDS`], [`DEFAULT_LEASE`] by default.
    pub lease: Duration,
    /// The reply's metadata.
    #[serde(default)]
    pub metadata: Metadata,
    /// Request context.
    #[serde(default)]
    pub context: Context,
}

impl StartReply {
    /// A reply in `thread_id`, after nothing new.
    pub fn new(thread_id: ThreadId) -> Self {
        Self {
            thread_id,
            messages: Vec::new(),
            reply_id: None,
            idempotency_key: None,
            lease: DEFAULT_LEASE,
            metadata: Metadata::new(),
            context: Context::new(),
        }
    }

    /// Writes `message` before the reply (the user's turn).
    pub fn with_message(mut self, message: TurnMessage) -> Self {
        self.messages.push(message);
        self
    }

    /// Names the reply.
    pub fn with_reply_id(mut self, id: MessageId) -> Self {
        self.reply_id = Some(id);
        self
    }

    /// Makes the start idempotent.
    pub fn with_idempotency_key(mut self, key: IdempotencyKey) -> Self {
        self.idempotency_key = Some(key);
        self
    }

    /// The writer's lease.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The reply's metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    context_setter!();
}

/// What [`StartReply`] wrote.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ReplyStarted {
    /// The reply, as stored (reserved, unless a repeated start finds it ended).
    pub reply: Message,
    /// The messages written before it.
    pub messages: Vec<Message>,
    /// Where the reply stands: its end (the writer's first offset), how it ended if it has,
    /// when its writer's lease runs out; `written: false` when the start repeated an earlier
    /// one (its idempotency key) and wrote nothing.
    pub state: ReplyWritten,
}

/// Appends parts to a live reply at the writer's offset; see
/// [`PipelineExt::append_reply`](crate::PipelineExt::append_reply).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AppendReply {
    /// The reply's thread.
    pub thread_id: ThreadId,
    /// The reply.
    pub message_id: MessageId,
    /// Where the parts go: the offset the writer's previous call answered
    /// ([`PartOffset::START`] for the first).
    pub at: PartOffset,
    /// The parts (a JSON array of content blocks): a text or reasoning part joins the one
    /// before it when both are of its kind.
    pub content: Content,
    /// Request context.
    #[serde(default)]
    pub context: Context,
}

impl AppendReply {
    /// `content` appended to `(thread_id, message_id)` at `at`.
    pub fn new(thread_id: ThreadId, message_id: MessageId, at: PartOffset, content: impl Into<Content>) -> Self {
        Self { thread_id, message_id, at, content: content.into(), context: Context::new() }
    }

    context_setter!();
}

/// Where a live reply stands after a writer's call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplyWritten {
    /// The reply's end: the offset of the writer's next append.
    pub offset: PartOffset,
    /// `false` when the call repeated one already done (an append or end sent again): nothing
    /// was written.
    pub written: bool,
    /// How the reply ended, once it has.
    pub end: Option<ReplyEnd>,
    /// When the writer's lease runs out unless it writes (`None` once the reply ended).
    pub expires_at: Option<Timestamp>,
    /// The writer's lease, as its start set it.
    pub lease: Option<Duration>,
}

/// Renews a live reply's lease without writing parts; see
/// [`PipelineExt::renew_reply`](crate::PipelineExt::renew_reply).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RenewReply {
    /// The reply's thread.
    pub thread_id: ThreadId,
    /// The reply.
    pub message_id: MessageId,
    /// Request context.
    #[serde(default)]
    pub context: Context,
}

impl RenewReply {
    /// Renews `(thread_id, message_id)`.
    pub fn new(thread_id: ThreadId, message_id: MessageId) -> Self {
        Self { thread_id, message_id, context: Context::new() }
    }

    context_setter!();
}

/// Ends a live reply, complete or interrupted, with its last parts if any; see
/// [`PipelineExt::finish_reply`](crate::PipelineExt::finish_reply).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FinishReply {
    /// The reply's thread.
    pub thread_id: ThreadId,
    /// The reply.
    pub message_id: MessageId,
    /// `true` to end it interrupted (cut short: the model failed, the writer gives up).
    pub interrupted: bool,
    /// Why it was interrupted, kept in its metadata ([`REASON_KEY`]).
    #[serde(default)]
    pub reason: Option<String>,
    /// Last parts to append first, at an offset, as [`AppendReply`] does.
    #[serde(default)]
    pub last: Option<(PartOffset, Content)>,
    /// Request context.
    #[serde(default)]
    pub context: Context,
}

impl FinishReply {
    /// Ends `(thread_id, message_id)` complete.
    pub fn complete(thread_id: ThreadId, message_id: MessageId) -> Self {
        Self { thread_id, message_id, interrupted: false, reason: None, last: None, context: Context::new() }
    }

    /// Ends `(thread_id, message_id)` interrupted, for `reason`.
    pub fn interrupted(thread_id: ThreadId, message_id: MessageId, reason: Option<String>) -> Self {
        Self { interrupted: true, reason, ..Self::complete(thread_id, message_id) }
    }

    /// Appends `content` at `at` in the same write.
    pub fn with_last(mut self, at: PartOffset, content: impl Into<Content>) -> Self {
        self.last = Some((at, content.into()));
        self
    }

    context_setter!();
}

/// A reply's writer's lease, from its metadata.
pub(crate) fn lease_of(message: &Message) -> Option<Duration> {
    let ms = message.metadata.get(LEASE_KEY)?.get("ms")?.as_u64()?;
    Some(Duration::from_millis(ms))
}

/// When a reserved reply's writer's lease runs out; `None` for a reply without one, or ended.
pub(crate) fn expiry_of(message: &Message) -> Option<Timestamp> {
    (message.status == Status::Reserved)
        .then(|| lease_of(message).map(|lease| message.updated_at.saturating_add(lease)))?
}

/// Whether `message` is a reply whose writer's lease ran out at `now`.
pub(crate) fn lapsed(message: &Message, now: Timestamp) -> bool {
    expiry_of(message).is_some_and(|expiry| expiry < now)
}

/// Marks `message` (reserved) interrupted, expecting its version: `false` when it changed
/// meanwhile (written, or settled elsewhere).
pub(crate) async fn settle(pipeline: &Pipeline, message: &Message, context: &Context) -> Result<bool> {
    let settle = UpdateContent::interrupted(message.thread_id.clone(), message.id.clone())
        .with_expected_version(message.version)
        .with_context(context.renewed());
    match pipeline.update_content(settle).await {
        Ok(_) => Ok(true),
        Err(error) if error.is_changed_or_gone() => Ok(false),
        Err(other) => Err(other),
    }
}

fn conflict(message: &Message, conflict: ReplyConflict) -> PersistError {
    PersistError::ReplyConflict { thread_id: message.thread_id.clone(), message_id: message.id.clone(), conflict }
}

/// See [`PipelineExt::start_reply`](crate::PipelineExt::start_reply).
pub(crate) async fn start_reply(pipeline: &Pipeline, request: StartReply) -> Result<ReplyStarted> {
    let StartReply { thread_id, messages, reply_id, idempotency_key, lease, metadata, context } = request;
    if !(LEASE_BOUNDS.0..=LEASE_BOUNDS.1).contains(&lease) {
        return Err(PersistError::invalid("lease", "a writer's lease is 1 s to an hour"));
    }
    let context = context.consistent();
    let explicit = reply_id.is_some();
    let reply_id = match (reply_id, &idempotency_key) {
        (Some(id), _) => id,
        (None, Some(key)) => MessageId::derive(&thread_id, key.as_str(), "persist.reply"),
        (None, None) => MessageId::generate(),
    };
    // A start sent again finds its reply (the turn answers it), whatever runs in the thread now.
    let repeated = (idempotency_key.is_some() || explicit)
        && read_message(pipeline, &thread_id, &reply_id, &context).await.is_ok();
    if !repeated {
        claim(pipeline, &thread_id, &reply_id, &context).await?;
    }
    let mut reservation = TurnMessage::reservation(Role::Assistant);
    reservation.message_id = Some(reply_id.clone());
    reservation.metadata = metadata.with(LEASE_KEY, json!({"ms": lease.as_millis() as u64}));
    let mut turn =
        AppendTurn::of(thread_id.clone(), messages).with_message(reservation).with_context(context.renewed());
    if let Some(key) = idempotency_key {
        turn = turn.with_idempotency_key(key);
    }
    let appended = match pipeline.append_turn(turn).await {
        Ok(appended) => appended,
        Err(error) => {
            // The generation is given up unless the reply is there (a key or an id used
            // before: that reply's generation it is).
            if let Err(PersistError::NotFound { .. }) = read_message(pipeline, &thread_id, &reply_id, &context).await {
                release(pipeline, &thread_id, &reply_id, &context).await;
            }
            return Err(error);
        }
    };
    let mut messages = appended.messages;
    let reply = messages.pop().ok_or_else(|| PersistError::Backend {
        message: "a turn with a reservation answered no messages".into(),
        source: None,
    })?;
    if reply.status != Status::Reserved {
        release(pipeline, &thread_id, &reply_id, &context).await;
    }
    let state = ReplyWritten {
        offset: PartOffset::end_of(&reply.content.parts()),
        written: !appended.deduplicated,
        end: ending(&reply),
        expires_at: expiry_of(&reply),
        lease: lease_of(&reply),
    };
    Ok(ReplyStarted { reply, messages, state })
}

/// Takes the thread's generation for `reply_id`: refused while another reply's writer is
/// alive; a dead one's reply is settled interrupted first, an ended one's lease taken over.
async fn claim(pipeline: &Pipeline, thread_id: &ThreadId, reply_id: &MessageId, context: &Context) -> Result<()> {
    for _ in 0..4 {
        let take = Lease::take(thread_id.clone(), GENERATION_LEASE, reply_id.as_str(), HOLD)?;
        let held = match pipeline.lease(take.with_context(context.renewed())).await? {
            Some(held) if held.holder == reply_id.as_str() => return Ok(()),
            Some(held) => held,
            None => continue,
        };
        let running = MessageId::new(&held.holder)?;
        match read_message(pipeline, thread_id, &running, context).await {
            Ok(message) if message.status == Status::Reserved => {
                if !lapsed(&message, Timestamp::now()) {
                    return Err(conflict(&message, ReplyConflict::Running));
                }
                settle(pipeline, &message, context).await?;
            }
            Ok(_) => {}
            // Its start may be under way on another instance (the lease is taken first).
            Err(PersistError::NotFound { .. }) => {
                let taken = held.expires_at.saturating_sub(HOLD);
                if Timestamp::now() < taken.saturating_add(STARTING) {
                    let conflict = ReplyConflict::Running;
                    return Err(PersistError::ReplyConflict {
                        thread_id: thread_id.clone(),
                        message_id: running,
                        conflict,
                    });
                }
            }
            Err(other) => return Err(other),
        }
        release(pipeline, thread_id, &running, context).await;
    }
    Err(PersistError::temporary("other starts took the thread's generation each time; try again"))
}

/// Gives the thread's generation up for `reply_id` (an error is left to the next start, which
/// finds the reply ended).
async fn release(pipeline: &Pipeline, thread_id: &ThreadId, reply_id: &MessageId, context: &Context) {
    let give_up = match Lease::give_up(thread_id.clone(), GENERATION_LEASE, reply_id.as_str()) {
        Ok(give_up) => give_up,
        Err(_) => return,
    };
    if let Err(error) = pipeline.lease(give_up.with_context(context.renewed())).await {
        tracing::warn!(%error, "giving up a reply's generation; the next start takes it over");
    }
}

/// The reply, reserved and not stopped: a stopped one is settled (interrupted) and refused
/// [`Stopped`](ReplyConflict::Stopped), an ended one `MessageComplete`.
async fn open_reply(
    pipeline: &Pipeline,
    thread_id: &ThreadId,
    message_id: &MessageId,
    context: &Context,
) -> Result<Message> {
    let message = read_message(pipeline, thread_id, message_id, context).await?;
    if message.metadata.get(STOP_KEY).is_some() {
        if message.status == Status::Reserved {
            settle(pipeline, &message, context).await?;
        }
        return Err(conflict(&message, ReplyConflict::Stopped));
    }
    // A writer back after its lease ran out finds its reply ended, whether or not a follower
    // or a start settled it meanwhile.
    let status = if lapsed(&message, Timestamp::now()) {
        settle(pipeline, &message, context).await?;
        Status::Interrupted
    } else {
        message.status
    };
    if status != Status::Reserved {
        return Err(PersistError::MessageComplete {
            thread_id: thread_id.clone(),
            message_id: message_id.clone(),
            status,
        });
    }
    Ok(message)
}

/// The parts of an append, checked (an array of blocks, at least one) and joined as the store
/// joins them.
fn parts_of(content: &Content) -> Result<Content> {
    let Value::Array(blocks) = content.to_value() else {
        return Err(PersistError::invalid("content", "an append is a JSON array of content blocks"));
    };
    if blocks.is_empty() {
        return Err(PersistError::invalid("content", "an append holds at least one part"));
    }
    if let Some(index) = blocks.iter().position(|block| !block.is_object()) {
        return Err(PersistError::invalid("content", format!("part {index} is not a JSON object")));
    }
    let singles: Vec<Content> = blocks.into_iter().map(|block| Content::new(Value::Array(vec![block]))).collect();
    Content::joined(&singles)
}

/// What appending `content` at `at` to `message` does: `Ok(None)` when `at` is its end (to
/// write), `Ok(Some(offset))` when the reply already holds it (a repeat; its end then), else
/// the conflict.
fn place(message: &Message, at: PartOffset, content: &Content) -> Result<Option<PartOffset>> {
    let stored = message.content.parts();
    let end = PartOffset::end_of(&stored);
    if at.is_end_of(&stored) {
        return Ok(None);
    }
    let Some(prefix) = at.prefix_of(&stored) else { return Err(conflict(message, ReplyConflict::Gap { at, end })) };
    let joined = Content::from_parts(prefix).appended(content)?.parts();
    if parts_continue(&joined, &stored) {
        return Ok(Some(PartOffset::end_of(&joined)));
    }
    Err(conflict(message, ReplyConflict::Diverged { at, end }))
}

/// See [`PipelineExt::append_reply`](crate::PipelineExt::append_reply).
pub(crate) async fn append_reply(pipeline: &Pipeline, request: AppendReply) -> Result<ReplyWritten> {
    let AppendReply { thread_id, message_id, at, content, context } = request;
    let content = parts_of(&content)?;
    let context = context.consistent();
    write_at(pipeline, &thread_id, &message_id, at, content, false, &context).await
}

/// Appends `content` at `at` (finalizing with `finish`), expecting the version read; a write
/// that got in first is read again.
async fn write_at(
    pipeline: &Pipeline,
    thread_id: &ThreadId,
    message_id: &MessageId,
    at: PartOffset,
    content: Content,
    finish: bool,
    context: &Context,
) -> Result<ReplyWritten> {
    for _ in 0..persist_core::args::MAX_APPEND_JOINS {
        let message = match open_reply(pipeline, thread_id, message_id, context).await {
            // A finish sent again after it ended the reply complete with these parts.
            Err(PersistError::MessageComplete { status: Status::Complete, .. }) if finish => {
                let message = read_message(pipeline, thread_id, message_id, context).await?;
                let offset = place(&message, at, &content)?.unwrap_or(PartOffset::end_of(&message.content.parts()));
                let lease = lease_of(&message);
                return Ok(ReplyWritten {
                    offset,
                    written: false,
                    end: Some(ReplyEnd::Complete),
                    expires_at: None,
                    lease,
                });
            }
            other => other?,
        };
        if let Some(offset) = place(&message, at, &content)? {
            if finish {
                match finish_open(pipeline, &message, false, None, context).await {
                    Err(PersistError::VersionConflict { .. }) => continue,
                    other => return other,
                }
            }
            let (expires_at, lease) = (expiry_of(&message), lease_of(&message));
            return Ok(ReplyWritten { offset, written: false, end: None, expires_at, lease });
        }
        let write = UpdateContent::appending(thread_id.clone(), message_id.clone(), content.clone())
            .with_finalize(finish)
            .with_expected_version(message.version)
            .with_context(context.renewed());
        match pipeline.update_content(write).await {
            Ok(written) => {
                let release_on_end = finish;
                let offset = PartOffset::end_of(&written.message.content.parts());
                if release_on_end {
                    release(pipeline, thread_id, message_id, context).await;
                }
                let (end, lease) = (ending(&written.message), lease_of(&written.message));
                return Ok(ReplyWritten { offset, written: true, end, expires_at: expiry_of(&written.message), lease });
            }
            Err(PersistError::VersionConflict { .. }) => {}
            Err(other) => return Err(other),
        }
    }
    Err(persist_core::args::appends_kept_racing())
}

/// Ends `message` (reserved): complete, or interrupted for `reason`.
async fn finish_open(
    pipeline: &Pipeline,
    message: &Message,
    interrupted: bool,
    reason: Option<&str>,
    context: &Context,
) -> Result<ReplyWritten> {
    let (thread_id, message_id) = (&message.thread_id, &message.id);
    let mut version = message.version;
    if let Some(reason) = reason {
        let mark = Metadata::new().with(REASON_KEY, json!({"reason": reason}));
        let update = Update::message(thread_id.clone(), message_id.clone())
            .with_metadata(mark)
            .with_expected_version(version)
            .with_context(context.renewed());
        version = match pipeline.update(update).await? {
            persist_core::Updated::Message(marked) => marked.version,
            _ => version + 1,
        };
    }
    let end = if interrupted {
        UpdateContent::interrupted(thread_id.clone(), message_id.clone())
    } else {
        UpdateContent::finishing(thread_id.clone(), message_id.clone())
    };
    let ended = pipeline.update_content(end.with_expected_version(version).with_context(context.renewed())).await?;
    release(pipeline, thread_id, message_id, context).await;
    let offset = PartOffset::end_of(&ended.message.content.parts());
    Ok(ReplyWritten { offset, written: true, end: ending(&ended.message), expires_at: None, lease: lease_of(message) })
}

/// See [`PipelineExt::finish_reply`](crate::PipelineExt::finish_reply).
pub(crate) async fn finish_reply(pipeline: &Pipeline, request: FinishReply) -> Result<ReplyWritten> {
    let FinishReply { thread_id, message_id, interrupted, reason, last, context } = request;
    if reason.as_ref().is_some_and(|reason| reason.len() > 4096) {
        return Err(PersistError::invalid("reason", "at most 4096 bytes"));
    }
    let context = context.consistent();
    if let Some((at, content)) = last {
        let content = parts_of(&content)?;
        match write_at(pipeline, &thread_id, &message_id, at, content, !interrupted, &context).await {
            Ok(written) if !interrupted => return Ok(written),
            Ok(_) => {}
            // Ended interrupted already: a finish sent again, answered below.
            Err(PersistError::MessageComplete { status: Status::Interrupted, .. }) if interrupted => {}
            Err(other) => return Err(other),
        }
    }
    for _ in 0..persist_core::args::MAX_APPEND_JOINS {
        let message = match open_reply(pipeline, &thread_id, &message_id, &context).await {
            Ok(message) => message,
            // Ended already as asked: a finish sent again.
            Err(PersistError::MessageComplete { status, .. }) if (status == Status::Interrupted) == interrupted => {
                let message = read_message(pipeline, &thread_id, &message_id, &context).await?;
                let offset = PartOffset::end_of(&message.content.parts());
                let lease = lease_of(&message);
                return Ok(ReplyWritten { offset, written: false, end: ending(&message), expires_at: None, lease });
            }
            Err(other) => return Err(other),
        };
        match finish_open(pipeline, &message, interrupted, reason.as_deref(), &context).await {
            Err(PersistError::VersionConflict { .. }) => {}
            other => return other,
        }
    }
    Err(persist_core::args::appends_kept_racing())
}

/// See [`PipelineExt::renew_reply`](crate::PipelineExt::renew_reply).
pub(crate) async fn renew_reply(pipeline: &Pipeline, request: RenewReply) -> Result<ReplyWritten> {
    let RenewReply { thread_id, message_id, context } = request;
    let context = context.consistent();
    let message = open_reply(pipeline, &thread_id, &message_id, &context).await?;
    let renew = UpdateContent::heartbeat(thread_id, message_id).with_context(context.renewed());
    let renewed = pipeline.update_content(renew).await?.message;
    let offset = PartOffset::end_of(&renewed.content.parts());
    let expires_at = expiry_of(&renewed).or_else(|| expiry_of(&message));
    Ok(ReplyWritten { offset, written: true, end: ending(&renewed), expires_at, lease: lease_of(&renewed) })
}
