//! [`AppendTurn`]: several messages (and the reservation of the reply that follows them)
//! written to one thread in one transaction, and the [`TurnMessage`]s it carries.

use serde::{Deserialize, Serialize};

use super::branch::Parent;
use super::write::{Add, message_setters};
use crate::context::{Context, context_setter};
use crate::model::embedding::Embedding;
use crate::model::error::{PersistError, Result};
use crate::model::id::{IdempotencyKey, MessageId, ThreadId};
use crate::model::{Content, Metadata, Role, Status};

/// The most messages one [`AppendTurn`] may write.
pub const MAX_TURN_MESSAGES: usize = 256;

/// The most bytes of content and metadata (as JSON text) one [`AppendTurn`] may write.
pub const MAX_TURN_BYTES: usize = 16 * 1024 * 1024;

/// Writes a whole turn to one thread at once: a user message, the assistant's tool calls, the
/// tools' results, the answer, and optionally the reservation of a reply still to be streamed.
///
/// # Behavior
///
/// - **All or nothing.** The messages are written in one transaction, in the order given, with
///   consecutive `seq`s; a crash or a refusal leaves none of them.
/// - **Idempotent as a whole.** Each message may carry its own idempotency key (or an explicit
///   id), and the turn may carry one ([`with_idempotency_key`](Self::with_idempotency_key)):
///   message `i` without a key of its own is keyed `{turn key}#{i}`. A repeat of a turn answers
///   the messages first written, `deduplicated: true`, with no new `seq`. A turn is written
///   entirely or is entirely a repeat: a key (or an id) already used by another request, or a
///   turn key reused with other messages (more, fewer, or different), is refused with
///   [`PersistError::IdempotencyKeyReused`] (or `AlreadyExists` for an id) and writes nothing.
/// - **Seen by every layer.** It travels the pipeline as
///   [`PersistArgs::AppendTurn`](crate::PersistArgs::AppendTurn): layers that validate, seal
///   or redact messages see each one; the answer ([`TurnAppended`](crate::TurnAppended)) carries
///   every message written, so indexers see them
///   ([`PersistResult::messages`](crate::PersistResult::messages)); the feed records one event
///   per message, in the write's transaction.
/// - **Bounded.** At most [`MAX_TURN_MESSAGES`] messages and [`MAX_TURN_BYTES`] of content and
///   metadata; only the last message may be a reservation; ids and keys distinct within the
///   turn. Anything else is `InvalidInput`, before anything is written.
///
/// # Example
///
/// ```
/// use persist::args::{AppendTurn, TurnMessage};
/// use persist::memory::MemoryBackend;
/// use persist::{Content, IdempotencyKey, Part, Pipeline, Role, Status, ThreadId};
/// use serde_json::json;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let pipeline = Pipeline::new(MemoryBackend::new());
/// let thread = ThreadId::new("chat-1")?;
/// let turn = AppendTurn::new(thread.clone())
///     .with_message(TurnMessage::new(Role::User, Content::text("Weather in Lisbon?")))
///     .with_message(TurnMessage::new(
///         Role::Assistant,
///         Content::from_parts([Part::tool_call("call_1", "weather", json!({"city": "Lisbon"}))]),
///     ))
///     .with_message(TurnMessage::new(
///         Role::Tool,
///         Content::from_parts([Part::tool_result("call_1", json!({"celsius": 21}))]),
///     ))
///     .with_reply(Role::Assistant) // the answer, streamed next
///     .with_idempotency_key(IdempotencyKey::new("turn-7")?);
///
/// let written = pipeline.append_turn(turn.clone()).await?;
/// let seqs: Vec<u64> = written.messages.iter().map(|m| m.seq).collect();
/// assert_eq!(seqs, [1, 2, 3, 4]);
/// assert_eq!(written.messages[3].status, Status::Reserved);
///
/// // A retry after an ambiguous failure answers the same messages, written once.
/// let again = pipeline.append_turn(turn).await?;
/// assert!(again.deduplicated);
/// assert_eq!(again.messages, written.messages);
/// # Ok::<_, persist::PersistError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AppendTurn {
    /// The thread to append to (created by the turn if absent).
    pub thread_id: ThreadId,
    /// The messages, in the order they are written.
    pub messages: Vec<TurnMessage>,
    /// Keys the turn as a whole: message `i` without a key of its own is keyed
    /// `{key}#{i}`.
    pub idempotency_key: Option<IdempotencyKey>,
    /// Where the turn's first message goes in the thread's tree (each next one follows the
    /// one before it): after the active branch's last message unless set.
    #[serde(default, skip_serializing_if = "Parent::is_active")]
    pub parent: Parent,
    /// Request context.
    pub context: Context,
}

impl AppendTurn {
    /// An empty turn for `thread_id`; add messages with [`with_message`](Self::with_message).
    pub fn new(thread_id: ThreadId) -> Self {
        Self { thread_id, messages: Vec::new(), idempotency_key: None, parent: Parent::Active, context: Context::new() }
    }

    /// A turn of `messages`.
    pub fn of(thread_id: ThreadId, messages: impl IntoIterator<Item = TurnMessage>) -> Self {
        Self { messages: messages.into_iter().collect(), ..Self::new(thread_id) }
    }

    /// Appends a message to the turn.
    pub fn with_message(mut self, message: TurnMessage) -> Self {
        self.messages.push(message);
        self
    }

    /// Ends the turn with the reservation of a reply by `role` (a placeholder the stream
    /// fills with [`UpdateContent`](crate::args::UpdateContent)); see
    /// [`TurnMessage::reservation`].
    pub fn with_reply(self, role: Role) -> Self {
        self.with_message(TurnMessage::reservation(role))
    }

    /// Sets the turn's idempotency key.
    pub fn with_idempotency_key(mut self, key: IdempotencyKey) -> Self {
        self.idempotency_key = Some(key);
        self
    }

    /// Places the turn's first message in the thread's tree, as
    /// [`Add::with_parent`](crate::args::Add::with_parent) does; the others follow it. The
    /// turn's last message ends the active branch.
    pub fn with_parent(mut self, parent: impl Into<Parent>) -> Self {
        self.parent = parent.into();
        self
    }

    context_setter!();

    /// The idempotency key message `index` is written with: its own, else the turn's
    /// `{key}#{index}`, else none.
    ///
    /// # Errors
    ///
    /// [`PersistError::InvalidInput`] (`idempotency_key`) when the derived key is too long.
    pub fn key_of(&self, index: usize) -> Result<Option<IdempotencyKey>> {
        match (&self.messages.get(index).and_then(|m| m.idempotency_key.clone()), &self.idempotency_key) {
            (Some(own), _) => Ok(Some(own.clone())),
            (None, Some(turn)) => IdempotencyKey::new(format!("{turn}#{index}")).map(Some).map_err(|_| {
                PersistError::invalid(
                    "idempotency_key",
                    format!("the turn's key with `#{index}` (the key of its message {index}) is too long"),
                )
            }),
            (None, None) => Ok(None),
        }
    }
}

/// One message of an [`AppendTurn`]: what an [`Add`] (or, for the reply, a [`Reserve`](crate::args::Reserve)) would
/// write, without the thread and context the turn gives every message.
///
/// # Example
///
/// ```
/// use persist::args::TurnMessage;
/// use persist::{Content, IdempotencyKey, MessageId, Role, Status};
///
/// let user = TurnMessage::new(Role::User, Content::text("hi"))
///     .with_id(MessageId::new("msg_1")?)
///     .with_idempotency_key(IdempotencyKey::new("client-42")?);
/// assert_eq!(user.status, Status::Complete);
/// assert_eq!(TurnMessage::reservation(Role::Assistant).status, Status::Reserved);
/// # Ok::<_, persist::PersistError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TurnMessage {
    /// The message's id; generated (UUIDv7) when `None`.
    pub message_id: Option<MessageId>,
    /// Who wrote it.
    pub role: Role,
    /// The content (the placeholder `[]` for a reservation).
    pub content: Content,
    /// Metadata.
    pub metadata: Metadata,
    /// The message's own idempotency key (else the turn's names it).
    pub idempotency_key: Option<IdempotencyKey>,
    /// `Complete` for a message, `Reserved` for the reply a turn ends with.
    pub status: Status,
    /// The message's embedding, written with it (see [`Add::with_embedding`]); a reservation
    /// has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Embedding>,
}

impl TurnMessage {
    /// A complete message of `role` with `content`.
    pub fn new(role: Role, content: impl Into<Content>) -> Self {
        Self {
            message_id: None,
            role,
            content: content.into(),
            metadata: Metadata::new(),
            idempotency_key: None,
            status: Status::Complete,
            embedding: None,
        }
    }

    /// A reservation for a reply by `role`, to be filled by `update_content` (only the last
    /// message of a turn).
    pub fn reservation(role: Role) -> Self {
        Self { status: Status::Reserved, ..Self::new(role, Content::placeholder()) }
    }

    message_setters!(id, metadata);

    /// Sets the message's own idempotency key.
    pub fn with_idempotency_key(mut self, key: IdempotencyKey) -> Self {
        self.idempotency_key = Some(key);
        self
    }

    /// Writes `embedding` with the message, in the turn's transaction (see
    /// [`Add::with_embedding`]); not for a reservation.
    pub fn with_embedding(mut self, embedding: Embedding) -> Self {
        self.embedding = Some(embedding);
        self
    }

    /// The message an [`Add`] would write, as a turn's message (its thread and context left
    /// behind).
    pub fn from_add(add: Add) -> Self {
        Self {
            message_id: add.message_id,
            role: add.role,
            content: add.content,
            metadata: add.metadata,
            idempotency_key: add.idempotency_key,
            status: Status::Complete,
            embedding: add.embedding,
        }
    }
}
