//! [`AppendTurn`]: several messages (and the reservation of the reply that follows them)
//! written to one thread in one transaction, and the [`TurnMessage`]s it carries.

use serde::{Deserialize, Serialize};

use super::args::PersistArgs;
use super::branch::Parent;
use super::write::{Add, Reserve};
use crate::context::{Context, context_setter};
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

    /// Each message as the single write it would be (an [`Add`], or a [`Reserve`] for the
    /// reply), with the turn's thread and context and the key of [`key_of`](Self::key_of): what a
    /// backend checks repeats against, message by message ([`Message::is_repeat_of`](crate::Message::is_repeat_of),
    /// [`Message::keyed_repeat`](crate::Message::keyed_repeat)).
    ///
    /// # Errors
    ///
    /// As [`validate`](Self::validate).
    pub fn writes(&self) -> Result<Vec<PersistArgs>> {
        self.validate()?;
        self.messages
            .iter()
            .enumerate()
            .map(|(index, message)| {
                let key = self.key_of(index)?;
                let mut write = message.to_write(self.thread_id.clone(), key, self.context.clone());
                if index == 0 {
                    write.set_parent(self.parent.clone());
                }
                Ok(write)
            })
            .collect()
    }

    /// What a backend needs to apply the turn: each message as its single write
    /// ([`writes`](Self::writes)), and the keys and ids whose stored messages decide whether the
    /// turn is new, a repeat, or refused ([`TurnPlan::decide`]).
    ///
    /// # Errors
    ///
    /// As [`validate`](Self::validate).
    pub fn plan(&self) -> Result<TurnPlan> {
        let writes = self.writes()?;
        let mut keys: Vec<IdempotencyKey> = writes.iter().filter_map(write_key).cloned().collect();
        // One key past the last message's: found, the turn key was first used by a longer turn.
        let beyond = match &self.idempotency_key {
            Some(turn) => IdempotencyKey::new(format!("{turn}#{}", self.messages.len())).ok(),
            None => None,
        };
        keys.extend(beyond.clone());
        let ids = self.messages.iter().filter_map(|m| m.message_id.clone()).collect();
        let keyed = (0..self.messages.len()).map(|index| self.key_of(index)).collect::<Result<_>>()?;
        Ok(TurnPlan {
            thread_id: self.thread_id.clone(),
            messages: self.messages.clone(),
            keyed,
            writes,
            keys,
            ids,
            beyond,
            turn_key: self.idempotency_key.clone(),
        })
    }

    /// Checks the turn: between one and [`MAX_TURN_MESSAGES`] messages, at most
    /// [`MAX_TURN_BYTES`] of content and metadata, each message valid as its single write
    /// would be ([`PersistArgs::validate`]), a reservation only last and with no content, and
    /// ids and keys distinct within the turn. Backends call this before writing anything.
    ///
    /// # Errors
    ///
    /// [`PersistError::InvalidInput`] naming the field, its reason naming the message's index.
    pub fn validate(&self) -> Result<()> {
        let count = self.messages.len();
        if count == 0 {
            return Err(PersistError::invalid("messages", "a turn writes at least one message"));
        }
        if count > MAX_TURN_MESSAGES {
            return Err(PersistError::invalid(
                "messages",
                format!("a turn writes at most {MAX_TURN_MESSAGES} messages, this one has {count}"),
            ));
        }
        let bytes: usize = self.messages.iter().map(|m| m.content.json_len() + m.metadata.json_len()).sum();
        if bytes > MAX_TURN_BYTES {
            return Err(PersistError::invalid(
                "messages",
                format!("a turn writes at most {MAX_TURN_BYTES} bytes of content and metadata, this one {bytes}"),
            ));
        }
        let mut ids = std::collections::HashSet::new();
        let mut keys = std::collections::HashSet::new();
        for (index, message) in self.messages.iter().enumerate() {
            let at = |field: &'static str, why: String| {
                PersistError::invalid(field, format!("message {index} of the turn: {why}"))
            };
            match message.status {
                Status::Complete => {}
                Status::Reserved if index + 1 != count => {
                    return Err(at("status", "only the last message of a turn may be a reservation".into()));
                }
                Status::Reserved if !message.content.is_placeholder() => {
                    return Err(at("content", "a reservation has no content yet (the placeholder `[]`)".into()));
                }
                Status::Reserved => {}
                other => {
                    return Err(at(
                        "status",
                        format!("a turn writes complete messages and reservations, not {other:?}"),
                    ));
                }
            }
            let write = message.to_write(self.thread_id.clone(), None, Context::new());
            if let Err(PersistError::InvalidInput { field, reason }) = write.validate() {
                return Err(at(field, reason.into_owned()));
            }
            if let Some(id) = &message.message_id
                && !ids.insert(id)
            {
                return Err(at("message_id", format!("{id} is given to two messages of the turn")));
            }
            if let Some(key) = self.key_of(index)?
                && !keys.insert(key.clone())
            {
                return Err(at("idempotency_key", format!("{key} is given to two messages of the turn")));
            }
        }
        Ok(())
    }
}

/// One message of an [`AppendTurn`]: what an [`Add`] (or, for the reply, a [`Reserve`]) would
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
        }
    }

    /// A reservation for a reply by `role`, to be filled by `update_content` (only the last
    /// message of a turn).
    pub fn reservation(role: Role) -> Self {
        Self { status: Status::Reserved, ..Self::new(role, Content::placeholder()) }
    }

    /// Uses an id chosen by the caller (a provider item id, a legacy id).
    pub fn with_id(mut self, id: MessageId) -> Self {
        self.message_id = Some(id);
        self
    }

    /// Sets the metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sets the message's own idempotency key.
    pub fn with_idempotency_key(mut self, key: IdempotencyKey) -> Self {
        self.idempotency_key = Some(key);
        self
    }

    /// The single write this message would be in `thread_id`: an [`Add`], or a [`Reserve`] for
    /// a reservation, keyed `key` (see [`AppendTurn::key_of`]).
    pub fn to_write(&self, thread_id: ThreadId, key: Option<IdempotencyKey>, context: Context) -> PersistArgs {
        if self.status == Status::Reserved {
            let mut reserve = Reserve::new(thread_id, self.role.clone()).with_metadata(self.metadata.clone());
            reserve.message_id = self.message_id.clone();
            reserve.idempotency_key = key;
            reserve.context = context;
            return reserve.into();
        }
        let mut add = Add::new(thread_id, self.role.clone(), self.content.clone()).with_metadata(self.metadata.clone());
        add.message_id = self.message_id.clone();
        add.idempotency_key = key;
        add.context = context;
        add.into()
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
        }
    }
}

fn write_key(write: &PersistArgs) -> Option<&IdempotencyKey> {
    match write {
        PersistArgs::Add(add) => add.idempotency_key.as_ref(),
        PersistArgs::Reserve(reserve) => reserve.idempotency_key.as_ref(),
        _ => None,
    }
}

fn write_id(write: &PersistArgs) -> Option<&MessageId> {
    write.message_id()
}

/// A turn as a backend applies it (from [`AppendTurn::plan`]): look up the stored messages of
/// the thread holding one of [`keys`](Self::keys) or [`ids`](Self::ids), in the write's
/// transaction, then [`decide`](Self::decide).
///
/// # Example
///
/// ```
/// use persist::args::{AppendTurn, TurnMessage};
/// use persist::{Content, IdempotencyKey, Role, ThreadId};
///
/// let turn = AppendTurn::of(ThreadId::new("t1")?, [TurnMessage::new(Role::User, Content::text("hi"))])
///     .with_idempotency_key(IdempotencyKey::new("turn-1")?);
/// let plan = turn.plan()?;
/// let keys: Vec<&str> = plan.keys().iter().map(|k| k.as_str()).collect();
/// assert_eq!(keys, ["turn-1#0", "turn-1#1"]); // the message's key, and the one past the turn
/// assert!(plan.decide(Vec::new())?.is_none()); // nothing stored: write the turn
/// # Ok::<_, persist::PersistError>(())
/// ```
#[derive(Debug, Clone)]
pub struct TurnPlan {
    thread_id: ThreadId,
    messages: Vec<TurnMessage>,
    keyed: Vec<Option<IdempotencyKey>>,
    writes: Vec<PersistArgs>,
    keys: Vec<IdempotencyKey>,
    ids: Vec<MessageId>,
    beyond: Option<IdempotencyKey>,
    turn_key: Option<IdempotencyKey>,
}

impl TurnPlan {
    /// Each message as its single write ([`Add`] or [`Reserve`]), keyed, in the turn's order.
    pub fn writes(&self) -> &[PersistArgs] {
        &self.writes
    }

    /// The messages a new turn stores when the thread's `last_seq` is `last_seq`: seqs
    /// `last_seq + 1…`, version 1, written `now`, each with its given id or a generated one
    /// (UUIDv7), its key, and the placeholder for a reservation; the first with parent
    /// `parent` (the seq the turn's [`Parent`] resolved to), each next one after the one before.
    /// For backends that build the rows themselves (one multi-row insert).
    pub fn messages_after(&self, last_seq: u64, parent: Option<u64>, now: crate::Timestamp) -> Vec<crate::Message> {
        let rows = self.messages.iter().zip(&self.keyed).zip(last_seq + 1..);
        rows.map(|((message, key), seq)| crate::Message {
            parent_seq: if seq == last_seq + 1 { parent } else { Some(seq - 1) },
            thread_id: self.thread_id.clone(),
            id: message.message_id.clone().unwrap_or_else(MessageId::generate),
            role: message.role.clone(),
            content: if message.status == Status::Reserved { Content::placeholder() } else { message.content.clone() },
            metadata: message.metadata.clone(),
            status: message.status,
            seq,
            version: 1,
            idempotency_key: key.clone(),
            created_at: now,
            updated_at: now,
        })
        .collect()
    }

    /// The idempotency keys to look up in the thread.
    pub fn keys(&self) -> &[IdempotencyKey] {
        &self.keys
    }

    /// The explicit message ids to look up in the thread.
    pub fn ids(&self) -> &[MessageId] {
        &self.ids
    }

    /// Given the thread's stored messages that hold one of [`keys`](Self::keys) or
    /// [`ids`](Self::ids) (in any order; others are ignored): `Ok(None)` when none of the
    /// turn's messages is stored (write them all), `Ok(Some(messages))` when every one is, as
    /// the turn's repeat (answer them, `deduplicated: true`).
    ///
    /// Each message is matched as its single write would be: by its key first
    /// ([`Message::keyed_repeat`](crate::Message::keyed_repeat)), else by its explicit id
    /// ([`Message::is_repeat_of`](crate::Message::is_repeat_of)).
    ///
    /// # Errors
    ///
    /// [`PersistError::IdempotencyKeyReused`] when a key was used by another request (or the
    /// turn's key by a turn of other messages, or only some of the turn's messages are
    /// stored), [`PersistError::AlreadyExists`] when an explicit id is taken by another
    /// message. Nothing may be written then.
    pub fn decide(&self, stored: Vec<crate::Message>) -> Result<Option<Vec<crate::Message>>> {
        let by_key = |key: &IdempotencyKey| stored.iter().find(|m| m.idempotency_key.as_ref() == Some(key));
        if let Some(longer) = self.beyond.as_ref().and_then(by_key) {
            return Err(self.turn_key_reused(longer));
        }
        let mut repeats = Vec::with_capacity(self.writes.len());
        for write in &self.writes {
            let found = match write_key(write).and_then(by_key) {
                Some(message) => Some(message.clone().keyed_repeat(write)?),
                None => match write_id(write).and_then(|id| stored.iter().find(|m| &m.id == id)) {
                    Some(message) if message.is_repeat_of(write) => Some(message.clone()),
                    Some(message) => {
                        return Err(PersistError::AlreadyExists {
                            thread_id: message.thread_id.clone(),
                            message_id: message.id.clone(),
                        });
                    }
                    None => None,
                },
            };
            repeats.push(found);
        }
        let stored_count = repeats.iter().flatten().count();
        if stored_count == repeats.len() {
            return Ok(Some(repeats.into_iter().flatten().collect()));
        }
        // Partly stored: no retry of an atomic turn leaves that; another request wrote these.
        let Some(message) = repeats.into_iter().flatten().next() else {
            return Ok(None);
        };
        Err(match (&self.turn_key, &message.idempotency_key) {
            (Some(_), _) => self.turn_key_reused(&message),
            (None, Some(key)) => PersistError::IdempotencyKeyReused {
                thread_id: message.thread_id.clone(),
                idempotency_key: key.clone(),
                message_id: message.id.clone(),
            },
            (None, None) => PersistError::AlreadyExists { thread_id: message.thread_id, message_id: message.id },
        })
    }

    fn turn_key_reused(&self, found: &crate::Message) -> PersistError {
        match &self.turn_key {
            Some(key) => PersistError::IdempotencyKeyReused {
                thread_id: found.thread_id.clone(),
                idempotency_key: key.clone(),
                message_id: found.id.clone(),
            },
            None => PersistError::AlreadyExists { thread_id: found.thread_id.clone(), message_id: found.id.clone() },
        }
    }
}
