//! [`PersistResult`]: the typed answer to each write operation.

use serde::{Deserialize, Serialize};

use crate::branch::Branches;
use crate::feed::FeedPage;
use crate::lease::Leased;
use crate::model::id::{MessageId, ThreadId};
use crate::model::op::PersistOp;
use crate::model::{Message, Thread};
use crate::read::{Page, Stranded, ThreadCursor};
use crate::records::{Record, RecordCursor, RecordsWritten};
pub use crate::restore::Restored;
use crate::search::{SearchCursor, SearchHit};
use crate::session::{Resolution, SessionBinding, StoredBinding};
use crate::summary::{Compacted, Summarized, Summary};
use crate::vector::{Embedded, EmbeddingCursor, Neighbour, StoredEmbedding};
use crate::working::{MemoryCursor, WorkingMemory};

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

/// Answer to an [`AppendTurn`](crate::args::AppendTurn): every message of the turn, in `seq`
/// order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TurnAppended {
    /// The thread.
    pub thread_id: ThreadId,
    /// The stored messages, one per message of the turn, in its order (and `seq` order).
    pub messages: Vec<Message>,
    /// `true` when the turn repeated an earlier one (the same keys, or the same explicit ids and
    /// identical payloads) and the messages it wrote were returned as they are now; no new
    /// `seq` was taken.
    pub deduplicated: bool,
}

impl TurnAppended {
    /// An answer for `messages` of `thread_id`.
    pub fn new(thread_id: ThreadId, messages: Vec<Message>, deduplicated: bool) -> Self {
        Self { thread_id, messages, deduplicated }
    }
}

/// Answer to an `update_content`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ContentUpdated {
    /// The message after the update.
    pub message: Message,
    /// The update was held back by a
    /// `CoalesceLayer` (persist-layer), to be written with later ones: `message`
    /// is the message as last written, with this update's content for a replacement (its
    /// version is the one written last, which the layer's later write moves).
    #[serde(default)]
    pub coalesced: bool,
}

impl ContentUpdated {
    /// An answer for `message`, as written.
    pub fn new(message: Message) -> Self {
        Self { message, coalesced: false }
    }

    /// An answer for an update held back to be written later (see [`coalesced`](Self::coalesced)).
    pub fn held_back(message: Message) -> Self {
        Self { message, coalesced: true }
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
/// [`thread_id`](Self::thread_id), [`rows`](Self::rows)) instead of matching every variant.
/// Reads' answers are not serialized (a read is answered, never replayed).
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
    /// See [`Restored`].
    Restored(Restored),
    /// See [`TurnAppended`].
    TurnAppended(TurnAppended),
    /// The message a `get` read, if it exists.
    #[serde(skip)]
    Message(Option<Message>),
    /// The thread a `get_thread` read.
    #[serde(skip)]
    Thread(Option<Thread>),
    /// A page of a `list`.
    #[serde(skip)]
    Messages(Page<Message>),
    /// A page of `threads`.
    #[serde(skip)]
    Threads(Page<Thread, ThreadCursor>),
    /// The siblings or leaves a `branches` read listed.
    #[serde(skip)]
    Branches(Branches),
    /// The reservations `find_stranded` found, each with its thread's tenant.
    #[serde(skip)]
    Stranded(Vec<Stranded>),
    /// What `resolve` decided.
    #[serde(skip)]
    Resolved(Resolution),
    /// The binding `bind` stored.
    #[serde(skip)]
    Bound(SessionBinding),
    /// Whether `reset_session` found a binding to reset.
    #[serde(skip)]
    SessionReset(bool),
    /// Whether `invalidate_session` invalidated the binding (it still pointed at the session).
    #[serde(skip)]
    SessionInvalidated(bool),
    /// A thread's session bindings, by agent id.
    #[serde(skip)]
    Bindings(Vec<StoredBinding>),
    /// The store answered a `ping`.
    #[serde(skip)]
    Pong,
    /// The change-feed events a `read_feed` read.
    #[serde(skip)]
    Feed(FeedPage),
    /// The value a `set_once` found or stored.
    Value(String),
    /// The summary a `summarize` stored (or found).
    Summarized(Summarized),
    /// A page of a thread's summaries.
    #[serde(skip)]
    Summaries(Page<Summary>),
    /// A thread compacted: its latest summary and what follows.
    #[serde(skip)]
    Compacted(Compacted),
    /// Who holds a lease after a `lease` request (`None`: nobody).
    Lease(Option<Leased>),
    /// A page of a `search`.
    #[serde(skip)]
    Search(Page<SearchHit, SearchCursor>),
    /// The embedding an `embed` wrote.
    Embedded(Embedded),
    /// The messages a `nearest` found, most similar first.
    #[serde(skip)]
    Nearest(Vec<Neighbour>),
    /// The working memory document a `read_memory` read (`None`: never written).
    #[serde(skip)]
    Memory(Option<WorkingMemory>),
    /// The working memory document a `write_memory` left.
    MemoryWritten(WorkingMemory),
    /// A page of `list_memories`.
    #[serde(skip)]
    Memories(Page<WorkingMemory, MemoryCursor>),
    /// A page of `list_embeddings`.
    #[serde(skip)]
    Embeddings(Page<StoredEmbedding, EmbeddingCursor>),
    /// What a `write_records` changed.
    RecordsWritten(RecordsWritten),
    /// A page of `read_records`.
    #[serde(skip)]
    Records(Page<Record, RecordCursor>),
}

impl PersistResult {
    /// The message **written**, for every write result that carries exactly one; `None` for
    /// reads (an indexer that looks here never re-indexes what was only read) and for a turn,
    /// which carries several: an indexer reads [`messages`](Self::messages), which covers both.
    pub fn message(&self) -> Option<&Message> {
        match self {
            Self::Added(r) => Some(&r.message),
            Self::Reserved(r) => Some(&r.message),
            Self::ContentUpdated(r) => Some(&r.message),
            Self::Updated(Updated::Message(m)) => Some(m),
            _ => None,
        }
    }

    /// Every message **written**: the one of [`message`](Self::message), or each of a turn's
    /// ([`TurnAppended`]); empty for reads and for writes that carry no message.
    ///
    /// # Example
    ///
    /// ```
    /// use persist::args::{AppendTurn, TurnMessage};
    /// use persist::{memory::MemoryBackend, Content, PersistArgs, Pipeline, Role, ThreadId};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pipeline = Pipeline::new(MemoryBackend::new());
    /// let turn = AppendTurn::of(ThreadId::new("t1")?, [
    ///     TurnMessage::new(Role::User, Content::text("hi")),
    ///     TurnMessage::new(Role::Assistant, Content::text("hello")),
    /// ]);
    /// let result = pipeline.execute(PersistArgs::from(turn)).await?;
    /// assert_eq!(result.messages().len(), 2); // an indexer sees both
    /// assert!(result.message().is_none());
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    pub fn messages(&self) -> &[Message] {
        match self {
            Self::TurnAppended(r) => &r.messages,
            _ => self.message().map(std::slice::from_ref).unwrap_or_default(),
        }
    }

    /// The thread written to (a message write, or a binding's thread); `None` for reads.
    pub fn thread_id(&self) -> Option<&ThreadId> {
        Some(match self {
            Self::Added(r) => &r.message.thread_id,
            Self::Reserved(r) => &r.message.thread_id,
            Self::ContentUpdated(r) => &r.message.thread_id,
            Self::Updated(Updated::Message(m)) => &m.thread_id,
            Self::Updated(Updated::Thread(t)) => &t.id,
            Self::Deleted(r) => &r.thread_id,
            Self::Restored(r) => &r.thread.id,
            Self::TurnAppended(r) => &r.thread_id,
            Self::Bound(b) => &b.thread_id,
            Self::Summarized(r) => &r.summary.thread_id,
            Self::Embedded(r) => &r.thread_id,
            _ => return None,
        })
    }

    /// How many messages, threads or events a read answered (`0` or `1` for `get` and `get_thread`);
    /// `None` for everything else.
    pub fn rows(&self) -> Option<usize> {
        match self {
            Self::Message(m) => Some(usize::from(m.is_some())),
            Self::Thread(t) => Some(usize::from(t.is_some())),
            Self::Messages(page) => Some(page.items.len()),
            Self::Threads(page) => Some(page.items.len()),
            Self::Branches(found) => Some(found.items.len()),
            Self::Stranded(found) => Some(found.len()),
            Self::Bindings(found) => Some(found.len()),
            Self::Feed(page) => Some(page.events.len()),
            Self::Summaries(page) => Some(page.items.len()),
            Self::Compacted(found) => Some(found.len()),
            Self::Search(page) => Some(page.items.len()),
            Self::Nearest(found) => Some(found.len()),
            Self::Memory(found) => Some(usize::from(found.is_some())),
            Self::Memories(page) => Some(page.items.len()),
            Self::Embeddings(page) => Some(page.items.len()),
            Self::Records(page) => Some(page.items.len()),
            _ => None,
        }
    }

    /// Whether an `add`, `reserve`, `append_turn` or `summarize` returned what an earlier request wrote
    /// instead of writing.
    pub fn is_deduplicated(&self) -> bool {
        match self {
            Self::Added(r) => r.deduplicated,
            Self::Reserved(r) => r.deduplicated,
            Self::TurnAppended(r) => r.deduplicated,
            Self::Summarized(r) => r.deduplicated,
            _ => false,
        }
    }
}

macro_rules! result_op {
    (
        $($(#[$doc:meta])* $op:ident = $label:literal, $kind:ident:
            $(#[$attr:meta])* $variant:ident($ty:ident) -> $result:ident;)*
    ) => {
        impl PersistResult {
            /// The operation this answers.
            pub fn op(&self) -> PersistOp {
                match self {
                    $(Self::$result { .. } => PersistOp::$op,)*
                }
            }
        }
    };
}
requests!(result_op);

macro_rules! into_result {
    ($($variant:ident),*) => {$(
        impl From<$variant> for PersistResult {
            fn from(result: $variant) -> Self {
                Self::$variant(result)
            }
        }
    )*};
}
into_result!(Added, Reserved, ContentUpdated, Updated, Deleted, Restored, TurnAppended);
