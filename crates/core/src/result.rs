//! [`PersistResult`]: the typed answer to each write operation.

use serde::{Deserialize, Serialize};

use crate::id::{MessageId, ThreadId};
use crate::message::{Message, Thread};
use crate::op::PersistOp;

/// Answer to an `add`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Added {
    /// The stored message.
    pub message: Message,
    /// `true` when the request repeated an earlier one (same idempotency key, or same explicit
    /// id and identical payload) and the earlier message was returned; no new `seq` was taken.
    pub deduplicated: bool,
}

impl Added {
    /// An answer for `message`.
    pub fn new(message: Message, deduplicated: bool) -> Self {
        Self { message, deduplicated }
    }
}

/// Answer to a `reserve`: the placeholder, with its id and `seq` already fixed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Reserved {
    /// The stored placeholder (or, when deduplicated, the message as it is now).
    pub message: Message,
    /// `true` when an earlier reservation was returned.
    pub deduplicated: bool,
}

impl Reserved {
    /// An answer for `message`.
    pub fn new(message: Message, deduplicated: bool) -> Self {
        Self { message, deduplicated }
    }
}

/// Answer to an `update_content`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ContentUpdated {
    /// The message after the update.
    pub message: Message,
}

impl ContentUpdated {
    /// An answer for `message`.
    pub fn new(message: Message) -> Self {
        Self { message }
    }
}

/// Answer to an `update`: the patched message or thread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "target", content = "value", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Updated {
    /// The message after the patch.
    Message(Message),
    /// The thread after the patch.
    Thread(Thread),
}

/// Answer to a `delete`: every message id removed, so index layers can purge them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Deleted {
    /// The thread.
    pub thread_id: ThreadId,
    /// The ids removed, in `seq` order; empty when the target was already gone.
    pub message_ids: Vec<MessageId>,
}

impl Deleted {
    /// An answer listing `message_ids`.
    pub fn new(thread_id: ThreadId, message_ids: Vec<MessageId>) -> Self {
        Self { thread_id, message_ids }
    }
}

/// The answer to one [`PersistArgs`](crate::PersistArgs), one variant per operation.
///
/// Observe-only layers use the accessors ([`op`](Self::op), [`message`](Self::message),
/// [`thread_id`](Self::thread_id)) instead of matching every variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PersistResult {
    /// See [`Added`].
    Added(Added),
    /// See [`Reserved`].
    Reserved(Reserved),
    /// See [`ContentUpdated`].
    ContentUpdated(ContentUpdated),
    /// See [`Updated`].
    Updated(Updated),
    /// See [`Deleted`].
    Deleted(Deleted),
}

impl PersistResult {
    /// The operation this answers.
    pub fn op(&self) -> PersistOp {
        match self {
            Self::Added(_) => PersistOp::Add,
            Self::Reserved(_) => PersistOp::Reserve,
            Self::ContentUpdated(_) => PersistOp::UpdateContent,
            Self::Updated(_) => PersistOp::Update,
            Self::Deleted(_) => PersistOp::Delete,
        }
    }

    /// The message written, for every result that carries one.
    pub fn message(&self) -> Option<&Message> {
        match self {
            Self::Added(r) => Some(&r.message),
            Self::Reserved(r) => Some(&r.message),
            Self::ContentUpdated(r) => Some(&r.message),
            Self::Updated(Updated::Message(m)) => Some(m),
            Self::Updated(Updated::Thread(_)) | Self::Deleted(_) => None,
        }
    }

    /// The thread written to.
    pub fn thread_id(&self) -> &ThreadId {
        match self {
            Self::Added(r) => &r.message.thread_id,
            Self::Reserved(r) => &r.message.thread_id,
            Self::ContentUpdated(r) => &r.message.thread_id,
            Self::Updated(Updated::Message(m)) => &m.thread_id,
            Self::Updated(Updated::Thread(t)) => &t.id,
            Self::Deleted(r) => &r.thread_id,
        }
    }

    /// Whether an `add`/`reserve` returned an earlier message instead of writing.
    pub fn is_deduplicated(&self) -> bool {
        match self {
            Self::Added(r) => r.deduplicated,
            Self::Reserved(r) => r.deduplicated,
            _ => false,
        }
    }
}

macro_rules! into_result {
    ($($variant:ident),*) => {$(
        impl From<$variant> for PersistResult {
            fn from(result: $variant) -> Self {
                Self::$variant(result)
            }
        }
    )*};
}
into_result!(Added, Reserved, ContentUpdated, Updated, Deleted);
