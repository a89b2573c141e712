//! The writes: [`Add`], [`Reserve`], [`UpdateContent`], [`Update`], [`Delete`] and their
//! [`Target`], each with its builder and the rules a backend applies to it.

use serde::{Deserialize, Serialize};

use super::branch::{Parent, Switch};
use crate::context::{Context, context_setter};
use crate::model::embedding::Embedding;
use crate::model::error::PersistError;
use crate::model::id::{IdempotencyKey, MessageId, ThreadId};
use crate::model::{Content, Metadata, Role};

pub use super::update_content::{MAX_APPEND_JOINS, UpdateContent, appends_kept_racing};

/// The longest thread title accepted, in bytes.
pub const MAX_TITLE_BYTES: usize = 1024;

/// Appends a complete message to a thread, creating the thread on its first write.
///
/// # Example
///
/// ```
/// use persist::{args::Add, Content, IdempotencyKey, Role, ThreadId};
///
/// let add = Add::new(ThreadId::new("t1")?, Role::User, Content::text("hi"))
///     .with_idempotency_key(IdempotencyKey::new("turn-1")?);
/// assert!(add.message_id.is_none()); // the backend generates a UUIDv7
/// # Ok::<_, persist::PersistError>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Add {
    /// The thread to append to.
    pub thread_id: ThreadId,
    /// The message's id; generated (UUIDv7) when `None`.
    pub message_id: Option<MessageId>,
    /// Who wrote it.
    pub role: Role,
    /// The content.
    pub content: Content,
    /// Metadata.
    pub metadata: Metadata,
    /// Makes the write safe to retry: a repeat returns the first message.
    pub idempotency_key: Option<IdempotencyKey>,
    /// Where the message goes in the thread's tree: after the active branch's last message
    /// unless set (see [`branch`](crate::branch)).
    #[serde(default, skip_serializing_if = "Parent::is_active")]
    pub parent: Parent,
    /// The message's embedding, written in the message's own transaction (see
    /// [`with_embedding`](Self::with_embedding)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Embedding>,
    /// Request context.
    pub context: Context,
}

impl Add {
    /// A message of `role` with `content` in `thread_id`.
    pub fn new(thread_id: ThreadId, role: Role, content: impl Into<Content>) -> Self {
        Self {
            thread_id,
            message_id: None,
            role,
            content: content.into(),
            metadata: Metadata::new(),
            idempotency_key: None,
            parent: Parent::Active,
            embedding: None,
            context: Context::new(),
        }
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

    /// Sets the idempotency key.
    pub fn with_idempotency_key(mut self, key: IdempotencyKey) -> Self {
        self.idempotency_key = Some(key);
        self
    }

    /// Writes `embedding` with the message, in the same transaction: the message and its vector
    /// are stored together or not at all (see [`vector`](crate::vector)). It needs a backend
    /// with [`Capabilities::vectors`](crate::Capabilities::vectors). A vector the store refuses
    /// (another length than its model's in this tenant) refuses the whole add, whatever else
    /// the add would have met (a repeat included); a repeat answered `deduplicated` writes
    /// nothing, its embedding included.
    ///
    /// # Example
    ///
    /// ```
    /// use persist::memory::MemoryBackend;
    /// use persist::vector::{Embedding, Nearest};
    /// use persist::{args::Add, Content, Pipeline, Role, ThreadId};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pipeline = Pipeline::new(MemoryBackend::new());
    /// let add = Add::new(ThreadId::new("t1")?, Role::User, Content::text("Lisbon in May?"))
    ///     .with_embedding(Embedding::new("my-model", vec![0.9, 0.1]));
    /// let added = pipeline.add(add).await?;
    /// let found = pipeline.nearest(Nearest::new(Embedding::new("my-model", vec![1.0, 0.0]))).await?;
    /// assert_eq!(found[0].message.id, added.message.id);
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    pub fn with_embedding(mut self, embedding: Embedding) -> Self {
        self.embedding = Some(embedding);
        self
    }

    /// Places the message in the thread's tree: a message id (or [`Parent::Message`]) writes it
    /// after that message, starting a new branch there when it already has a child (an edit, a
    /// regenerated reply); [`Parent::Root`] makes it a root. Either way it ends the active
    /// branch. A message the thread does not have is `NotFound`.
    pub fn with_parent(mut self, parent: impl Into<Parent>) -> Self {
        self.parent = parent.into();
        self
    }

    context_setter!();
}

/// Appends a placeholder message (status `Reserved`, content `[]`) whose id can stamp every
/// streamed event before any content exists; [`UpdateContent`] fills and finalizes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Reserve {
    /// The thread to append to.
    pub thread_id: ThreadId,
    /// The message's id; generated (UUIDv7) when `None`.
    pub message_id: Option<MessageId>,
    /// Who will write it (usually the assistant).
    pub role: Role,
    /// Metadata.
    pub metadata: Metadata,
    /// Makes the reservation safe to retry.
    pub idempotency_key: Option<IdempotencyKey>,
    /// Where the placeholder goes in the thread's tree: after the active branch's last message
    /// unless set (a regenerated reply names the message it answers).
    #[serde(default, skip_serializing_if = "Parent::is_active")]
    pub parent: Parent,
    /// Request context.
    pub context: Context,
}

impl Reserve {
    /// A placeholder for `role` in `thread_id`.
    pub fn new(thread_id: ThreadId, role: Role) -> Self {
        Self {
            thread_id,
            message_id: None,
            role,
            metadata: Metadata::new(),
            idempotency_key: None,
            parent: Parent::Active,
            context: Context::new(),
        }
    }

    /// Uses an id chosen by the caller.
    pub fn with_id(mut self, id: MessageId) -> Self {
        self.message_id = Some(id);
        self
    }

    /// Sets the metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sets the idempotency key.
    pub fn with_idempotency_key(mut self, key: IdempotencyKey) -> Self {
        self.idempotency_key = Some(key);
        self
    }

    /// Places the message in the thread's tree: a message id (or [`Parent::Message`]) writes it
    /// after that message, starting a new branch there when it already has a child (an edit, a
    /// regenerated reply); [`Parent::Root`] makes it a root. Either way it ends the active
    /// branch. A message the thread does not have is `NotFound`.
    pub fn with_parent(mut self, parent: impl Into<Parent>) -> Self {
        self.parent = parent.into();
        self
    }

    context_setter!();
}

impl Delete {
    /// The refusal of a thread delete whose [`expected_updated_at`](Self::expected_updated_at)
    /// is not the thread's `updated_at`; `None` when it holds (or names nothing). For backends.
    pub fn updated_at_conflict(&self, updated_at: crate::Timestamp) -> Option<PersistError> {
        let expected = self.expected_updated_at.filter(|&expected| expected != updated_at)?;
        let micros = |t: crate::Timestamp| u64::try_from(t.as_micros()).unwrap_or_default();
        Some(PersistError::VersionConflict {
            thread_id: self.thread_id.clone(),
            message_id: None,
            expected: micros(expected),
            actual: micros(updated_at),
        })
    }
}

impl Delete {
    /// The refusal of a thread delete whose [`expected_attached`](Self::expected_attached) is
    /// not what the thread holds (`stored`); `None` when it is (or names nothing). For backends.
    pub fn attached_conflict(&self, stored: &Attached) -> Option<PersistError> {
        let expected = self.expected_attached.as_ref().filter(|&expected| expected != stored)?;
        Some(PersistError::VersionConflict {
            thread_id: self.thread_id.clone(),
            message_id: None,
            expected: expected.len() as u64,
            actual: stored.len() as u64,
        })
    }
}

/// What a thread holds beside its messages and its own fields: its summaries, by the seq each
/// ends at, and its session bindings, by agent with the time each was last written; see
/// [`Delete::with_expected_attached`].
///
/// # Example
///
/// ```
/// use persist::args::Attached;
/// use persist::{AgentId, Timestamp};
///
/// let read = Attached::new([7, 3], [(AgentId::new("bot")?, Timestamp::from_micros(5))]);
/// assert_eq!(read.summaries, [3, 7], "in order, whatever order they were given in");
/// # Ok::<_, persist::PersistError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Attached {
    /// The seq each summary ends at, ascending.
    pub summaries: Vec<u64>,
    /// Each binding's agent and the time it was last written, by agent.
    pub bindings: Vec<(crate::AgentId, crate::Timestamp)>,
}

impl Attached {
    /// Summaries ending at `summaries` and bindings of `bindings`, in any order.
    pub fn new(
        summaries: impl IntoIterator<Item = u64>,
        bindings: impl IntoIterator<Item = (crate::AgentId, crate::Timestamp)>,
    ) -> Self {
        let mut summaries: Vec<u64> = summaries.into_iter().collect();
        summaries.sort_unstable();
        let mut bindings: Vec<_> = bindings.into_iter().collect();
        bindings.sort();
        Self { summaries, bindings }
    }

    /// How many summaries and bindings.
    pub fn len(&self) -> usize {
        self.summaries.len() + self.bindings.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What an [`Update`] or a [`Delete`] applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// One message of the thread.
    Message(MessageId),
    /// The thread itself.
    Thread,
    /// Every message of the thread with a `seq` greater than this one (a [`Delete`] only:
    /// truncation, see [`Delete::after`]).
    MessagesAfter(u64),
    /// The messages the latest summary of the thread's active branch covers (a [`Delete`]
    /// only: see [`Delete::covered`]).
    Covered,
}

/// Patches a message (metadata, role) or a thread (metadata, title).
///
/// The metadata patch is merged atomically: keys set to `null` are removed, others replaced,
/// keys not named are kept, so concurrent patches of different keys all survive.
///
/// # Example
///
/// ```
/// use persist::{args::Update, Metadata, MessageId, ThreadId};
/// use serde_json::json;
///
/// let thread = ThreadId::new("t1")?;
/// let patch = Update::message(thread.clone(), MessageId::new("m1")?)
///     .with_metadata(Metadata::new().with("rating", json!(5)));
/// let rename = Update::thread(thread).with_title(Some("Trip plans".into()));
/// # let _ = (patch, rename);
/// # Ok::<_, persist::PersistError>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Update {
    /// The thread.
    pub thread_id: ThreadId,
    /// A message of the thread, or the thread itself.
    pub target: Target,
    /// Metadata to merge.
    pub metadata: Option<Metadata>,
    /// New role (messages only).
    pub role: Option<Role>,
    /// New title, or `Some(None)` to clear it (threads only).
    pub title: Option<Option<String>>,
    /// Fail with `VersionConflict` unless the target's stored version equals this.
    pub expected_version: Option<u64>,
    /// Makes another branch active (threads only; see [`branch`](crate::branch)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch: Option<Switch>,
    /// Request context.
    pub context: Context,
}

impl Update {
    /// Patches message `message_id` of `thread_id`.
    pub fn message(thread_id: ThreadId, message_id: MessageId) -> Self {
        Self::new(thread_id, Target::Message(message_id))
    }

    /// Patches the thread itself.
    pub fn thread(thread_id: ThreadId) -> Self {
        Self::new(thread_id, Target::Thread)
    }

    fn new(thread_id: ThreadId, target: Target) -> Self {
        Self {
            thread_id,
            target,
            metadata: None,
            role: None,
            title: None,
            expected_version: None,
            switch: None,
            context: Context::new(),
        }
    }

    /// Merges `patch` into the target's metadata.
    pub fn with_metadata(mut self, patch: Metadata) -> Self {
        self.metadata = Some(patch);
        self
    }

    /// Changes a message's role.
    pub fn with_role(mut self, role: Role) -> Self {
        self.role = Some(role);
        self
    }

    /// Sets (or with `None`, clears) a thread's title.
    pub fn with_title(mut self, title: Option<String>) -> Self {
        self.title = Some(title);
        self
    }

    /// Adds an optimistic-concurrency precondition.
    pub fn with_expected_version(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }

    /// Makes another branch of the thread active (threads only): the thread's
    /// [`active_leaf`](crate::Thread::active_leaf) moves, and its version with it, so two
    /// clients switching at once can each name the version they saw. A message the thread does
    /// not have is `NotFound`.
    pub fn with_switch(mut self, switch: Switch) -> Self {
        self.switch = Some(switch);
        self
    }

    context_setter!();
}

/// Deletes one message, or a whole thread (leaving a tombstone that refuses later writes).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Delete {
    /// The thread.
    pub thread_id: ThreadId,
    /// A message of the thread, or the thread itself.
    pub target: Target,
    /// Fail with `VersionConflict` unless the target's stored version equals this.
    pub expected_version: Option<u64>,
    /// A thread delete only: fail with `VersionConflict` unless the thread's `updated_at`
    /// equals this, i.e. nothing was written to the thread or its messages since it was read
    /// (a thread's version moves only with its own fields; adds and content updates move
    /// `updated_at`). The conflict's `expected` and `actual` are then times in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_updated_at: Option<crate::Timestamp>,
    /// A thread delete only: fail with `VersionConflict` unless the thread's summaries and
    /// session bindings are these (see [`with_expected_attached`](Self::with_expected_attached)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_attached: Option<Attached>,
    /// Erase the thread for good; see [`Delete::purge`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub purge: bool,
    /// With [`purge`](Self::purge): leave no tombstone, so the id can be used again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub free_id: bool,
    /// Request context.
    pub context: Context,
}

impl Delete {
    /// Deletes message `message_id` of `thread_id`.
    pub fn message(thread_id: ThreadId, message_id: MessageId) -> Self {
        Self::new(thread_id, Target::Message(message_id))
    }

    /// Deletes the thread and every message in it.
    pub fn thread(thread_id: ThreadId) -> Self {
        Self::new(thread_id, Target::Thread)
    }

    /// Truncates the thread: deletes every message with a `seq` greater than `seq`, in one
    /// atomic step, for "edit a message and regenerate". Answers every id removed, in `seq`
    /// order (index layers purge them). A truncation that removes something bumps the thread's
    /// version and `updated_at`; `last_seq` stays, so removed seqs are never reused.
    /// [`with_expected_version`](Self::with_expected_version) compares the **thread's**
    /// version. An absent or deleted thread, or nothing after `seq`, answers an empty list.
    ///
    /// # Example
    ///
    /// ```
    /// use persist::{args::{Add, Delete}, Content, Pipeline, Role, ThreadId};
    /// use persist::memory::MemoryBackend;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pipeline = Pipeline::new(MemoryBackend::new());
    /// let thread = ThreadId::new("t1")?;
    /// for text in ["question", "first answer", "follow-up"] {
    ///     pipeline.add(Add::new(thread.clone(), Role::User, Content::text(text))).await?;
    /// }
    /// // The user edits the question: everything after it goes, in one step.
    /// let removed = pipeline.delete(Delete::after(thread.clone(), 1)).await?;
    /// assert_eq!(removed.message_ids.len(), 2);
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    pub fn after(thread_id: ThreadId, seq: u64) -> Self {
        Self::new(thread_id, Target::MessagesAfter(seq))
    }

    /// Deletes every message of the thread and keeps the thread: its id stays usable, with its
    /// title, metadata and `last_seq` (later messages are numbered after the removed ones), where
    /// [`thread`](Self::thread) leaves a tombstone. The same write as `after(thread_id, 0)`.
    ///
    /// # Example
    ///
    /// ```
    /// use persist::{args::{Add, Delete}, memory::MemoryBackend, Content, Pipeline, Role, ThreadId};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pipeline = Pipeline::new(MemoryBackend::new());
    /// let thread = ThreadId::new("session")?;
    /// pipeline.add(Add::new(thread.clone(), Role::User, Content::text("hi"))).await?;
    /// pipeline.delete(Delete::clear(thread.clone())).await?;
    /// let next = pipeline.add(Add::new(thread, Role::User, Content::text("again"))).await?;
    /// assert_eq!(next.message.seq, 2);
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    pub fn clear(thread_id: ThreadId) -> Self {
        Self::after(thread_id, 0)
    }

    /// Retention of what a [summary](crate::summary) says: deletes every message up to the
    /// last one the latest summary of the active branch covers (its `through_seq`), on every
    /// branch, in one atomic step, keeping that summary (and any later one) and the active
    /// branch's last message; the older summaries go with what they covered. The messages left
    /// keep the parents they had (a parent removed here is history before the thread's oldest
    /// message), so the active branch still reads that summary: the
    /// [compacted read](crate::summary::ReadCompacted) answers what it did before. Answers
    /// every id removed, in `seq` order; removing something bumps the thread's version (which
    /// [`with_expected_version`](Self::with_expected_version) compares) and `updated_at`. A
    /// thread without a summary on its active branch, or an absent one, answers an empty list.
    ///
    /// # Example
    ///
    /// ```
    /// use persist::{args::{Add, Delete}, summary::{ReadCompacted, Summarize}, Content, Pipeline, Role, ThreadId};
    /// use persist::memory::MemoryBackend;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = Pipeline::new(MemoryBackend::new());
    /// let thread = ThreadId::new("long")?;
    /// for i in 1..=5 {
    ///     store.add(Add::new(thread.clone(), Role::User, Content::text(format!("message {i}")))).await?;
    /// }
    /// store.summarize(Summarize::new(thread.clone(), 3, Content::text("1 to 3, in short"))).await?;
    /// let before = store.compacted(ReadCompacted::new(thread.clone())).await?;
    /// let removed = store.delete(Delete::covered(thread.clone())).await?;
    /// assert_eq!(removed.message_ids.len(), 3);
    /// assert_eq!(store.compacted(ReadCompacted::new(thread)).await?, before);
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    pub fn covered(thread_id: ThreadId) -> Self {
        Self::new(thread_id, Target::Covered)
    }

    /// Erases the thread, for an erasure request: every message is deleted as
    /// [`thread`](Self::thread) deletes them, and its title and metadata are cleared too, so
    /// nothing it said stays in the store, not only hidden: the SQLite backend overwrites what it
    /// removes (`secure_delete`) and empties its write-ahead log once the purge is committed;
    /// PostgreSQL's old row versions are gone from every query at once, but stay on its disk
    /// (and WAL) until overwritten. A thread deleted earlier can be purged later: its tombstone
    /// is erased.
    ///
    /// What stays is a tombstone (id, tenant, times, `last_seq`, version), so a late writer still
    /// cannot bring the thread back; [`freeing_id`](Self::freeing_id) removes it as well, and
    /// the id can then be used again by a new thread (seqs start at 1 again).
    ///
    /// # Example
    ///
    /// ```
    /// use persist::{args::{Add, Delete}, read::GetThread, Content, Pipeline, Role, ThreadId};
    /// use persist::memory::MemoryBackend;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pipeline = Pipeline::new(MemoryBackend::new());
    /// let thread = ThreadId::new("erase-me")?;
    /// pipeline.add(Add::new(thread.clone(), Role::User, Content::text("my address is …"))).await?;
    /// pipeline.delete(Delete::purge(thread.clone())).await?;
    /// let tombstone = pipeline.get_thread(GetThread::new(thread)).await?.unwrap();
    /// assert!(tombstone.is_deleted() && tombstone.title.is_none() && tombstone.metadata.is_empty());
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    pub fn purge(thread_id: ThreadId) -> Self {
        Self { purge: true, ..Self::new(thread_id, Target::Thread) }
    }

    /// Deletes the thread only if nothing was written to it since it was read at `updated_at`
    /// (see [`expected_updated_at`](Self::expected_updated_at)); retention uses it so that a
    /// thread written meanwhile is kept.
    pub fn with_expected_updated_at(mut self, updated_at: crate::Timestamp) -> Self {
        self.expected_updated_at = Some(updated_at);
        self
    }

    /// Deletes the thread only if its summaries and session bindings are still `attached` (read
    /// with the thread): a summary or a binding written since would go with the thread unread
    /// (neither moves the thread's `updated_at`). With
    /// [`with_expected_updated_at`](Self::with_expected_updated_at), nothing of the thread can
    /// be written between a read and the delete and be lost: what moving a tenant between
    /// shards needs before it erases the old copy. The conflict's `expected` and `actual` are
    /// then how many summaries and bindings the thread holds.
    pub fn with_expected_attached(mut self, attached: Attached) -> Self {
        self.expected_attached = Some(attached);
        self
    }

    /// With [`purge`](Self::purge): whether the tombstone goes too, freeing the id.
    ///
    /// The change feed forgets the id too (ids often carry personal data: an email, a phone
    /// number): every event of the thread is erased in the purge's transaction but its newest
    /// delete, which stays until retention removes it so that followers (a UI, an indexer, a
    /// mirror) learn that the thread is gone and erase their own copies.
    pub fn freeing_id(mut self, free: bool) -> Self {
        self.free_id = free;
        self
    }

    fn new(thread_id: ThreadId, target: Target) -> Self {
        Self {
            thread_id,
            target,
            expected_version: None,
            expected_updated_at: None,
            expected_attached: None,
            purge: false,
            free_id: false,
            context: Context::new(),
        }
    }

    /// Adds an optimistic-concurrency precondition.
    pub fn with_expected_version(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }

    context_setter!();
}
/// The refusal of U+0000 in `field`.
pub(crate) fn nul(field: &'static str) -> PersistError {
    PersistError::invalid(field, "contains U+0000 (NUL), which is not stored")
}

impl Target {
    /// The message id, for a message target.
    pub fn message_id(&self) -> Option<&MessageId> {
        match self {
            Self::Message(id) => Some(id),
            Self::Thread | Self::MessagesAfter(_) | Self::Covered => None,
        }
    }
}
