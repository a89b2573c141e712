//! Deletes: [`Delete`] of a message, of what follows a seq, of what a summary covers, or of a
//! whole thread (purged or not), with the [`Attached`] a thread delete may expect.

use serde::{Deserialize, Serialize};

use super::Target;
use crate::context::{Context, context_setter};
use crate::model::error::PersistError;
use crate::model::id::{MessageId, ThreadId};

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
