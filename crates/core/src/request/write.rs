//! The writes: [`Add`], [`Reserve`], [`UpdateContent`], [`Update`], [`Delete`] and their
//! [`Target`], each with its builder and the rules a backend applies to it.

use serde::{Deserialize, Serialize};

use crate::context::{Context, context_setter};
use crate::model::error::{PersistError, Result};
use crate::model::id::{IdempotencyKey, MessageId, ThreadId};
use crate::model::{Content, Metadata, Role};

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

    context_setter!();
}

/// Writes a message's content: the final content ([`new`](Self::new)), or a streamed reply's
/// progress ([`appending`](Self::appending) a token, [`partial`](Self::partial) text so far)
/// then its end ([`finishing`](Self::finishing), or a final `new`).
///
/// Only [`new`](Self::new) and [`finishing`](Self::finishing) finalize (`Reserved` →
/// `Complete`): a token never marks a reply done by accident. A stream that failed ends with
/// [`interrupted`](Self::interrupted) instead (`Reserved` → `Interrupted`, the text so far
/// kept). A message that is no longer streaming takes final replacements only: an append or a
/// partial write to it (and marking a complete one interrupted) is refused with
/// [`PersistError::MessageComplete`] and changes nothing (a token retried or sent after the
/// final update would reopen or extend a finished reply), on every backend. What each update
/// may write over:
///
/// | update | `Reserved` | `Interrupted` | `Complete` |
/// |---|---|---|---|
/// | final replacement ([`new`](Self::new)) | → `Complete` | → `Complete` | → `Complete` |
/// | [`finishing`](Self::finishing), a finalizing append | → `Complete` | refused | refused |
/// | [`appending`](Self::appending), [`partial`](Self::partial) | stays `Reserved` | refused | refused |
/// | [`interrupted`](Self::interrupted), an interrupting replacement | → `Interrupted` | stays `Interrupted` | refused |
/// | an interrupting append of content | → `Interrupted` | refused | refused |
///
/// # Example
///
/// ```
/// use persist::{args::{Reserve, UpdateContent}, memory::MemoryBackend, Content, Pipeline, PersistError, Role, ThreadId};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let pipeline = Pipeline::new(MemoryBackend::new());
/// let thread = ThreadId::new("t1")?;
/// let reply = pipeline.reserve(Reserve::new(thread.clone(), Role::Assistant)).await?.message;
/// for token in ["Hel", "lo"] {
///     // Each token alone: the store joins it to the text so far; the reply stays reserved.
///     let token = UpdateContent::appending(thread.clone(), reply.id.clone(), Content::text(token));
///     pipeline.update_content(token).await?;
/// }
/// let done = pipeline.update_content(UpdateContent::finishing(thread.clone(), reply.id.clone())).await?;
/// assert_eq!(done.message.content, Content::text("Hello"));
///
/// // A token after the end is refused; the reply stays as it was.
/// let late = UpdateContent::appending(thread, reply.id, Content::text("!"));
/// assert!(matches!(pipeline.update_content(late).await, Err(PersistError::MessageComplete { .. })));
/// # Ok::<_, persist::PersistError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UpdateContent {
    /// The message's thread.
    pub thread_id: ThreadId,
    /// The message.
    pub message_id: MessageId,
    /// The new content, or with [`append`](Self::append) what to add to the stored one.
    pub content: Content,
    /// Add `content` to the stored content instead of replacing it (see
    /// [`Content::appended`]): a stream sends each token alone.
    #[serde(default)]
    pub append: bool,
    /// Whether to mark the message `Complete`: `true` for [`new`](Self::new) and
    /// [`finishing`](Self::finishing), `false` for [`appending`](Self::appending) and
    /// [`partial`](Self::partial). [`interrupt`](Self::interrupt) overrides it.
    pub finalize: bool,
    /// Mark the message [`Interrupted`](crate::Status::Interrupted) (its stream stopped
    /// before its end) instead of `Complete`, keeping the content written: `true` for
    /// [`interrupted`](Self::interrupted). Only a message not complete may be interrupted.
    #[serde(default)]
    pub interrupt: bool,
    /// Fail with `VersionConflict` unless the stored version equals this.
    pub expected_version: Option<u64>,
    /// Request context.
    pub context: Context,
}

impl UpdateContent {
    /// Sets `content` on `(thread_id, message_id)` and finalizes it.
    pub fn new(thread_id: ThreadId, message_id: MessageId, content: impl Into<Content>) -> Self {
        Self {
            thread_id,
            message_id,
            content: content.into(),
            append: false,
            finalize: true,
            interrupt: false,
            expected_version: None,
            context: Context::new(),
        }
    }

    /// A streamed token: adds `content` to the stored content of `(thread_id, message_id)`
    /// (see [`Content::appended`]), leaving the message as it is (`Reserved`). The last token
    /// may finalize ([`with_finalize(true)`](Self::with_finalize)), or [`finishing`](Self::finishing)
    /// follows.
    pub fn appending(thread_id: ThreadId, message_id: MessageId, content: impl Into<Content>) -> Self {
        Self { append: true, finalize: false, ..Self::new(thread_id, message_id, content) }
    }

    /// A streamed reply's text so far, replacing the stored content without finalizing (what a
    /// host that resends the whole text writes; [`CoalesceLayer`](crate::layer::CoalesceLayer)
    /// keeps the latest of them).
    pub fn partial(thread_id: ThreadId, message_id: MessageId, content: impl Into<Content>) -> Self {
        Self { finalize: false, ..Self::new(thread_id, message_id, content) }
    }

    /// The end of a streamed reply: finalizes `(thread_id, message_id)` with the content its
    /// appends left (an append of nothing).
    pub fn finishing(thread_id: ThreadId, message_id: MessageId) -> Self {
        Self { append: true, ..Self::new(thread_id, message_id, Content::placeholder()) }
    }

    /// The end of a stream that failed (the model's connection dropped, the client went away):
    /// marks `(thread_id, message_id)` [`Interrupted`](crate::Status::Interrupted), keeping the
    /// content its appends left (an append of nothing). With
    /// [`appending`](Self::appending)`(…).`[`with_interrupt(true)`](Self::with_interrupt), the
    /// last tokens and the mark in one write.
    ///
    /// # Example
    ///
    /// ```
    /// use persist::{args::{Reserve, UpdateContent}, memory::MemoryBackend, Content, Pipeline, Role, Status, ThreadId};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pipeline = Pipeline::new(MemoryBackend::new());
    /// let thread = ThreadId::new("t1")?;
    /// let reply = pipeline.reserve(Reserve::new(thread.clone(), Role::Assistant)).await?.message;
    /// let token = UpdateContent::appending(thread.clone(), reply.id.clone(), Content::text("The answer is"));
    /// pipeline.update_content(token).await?;
    /// // The model's stream fails here: keep what it said, marked as cut short.
    /// let cut = pipeline.update_content(UpdateContent::interrupted(thread, reply.id)).await?.message;
    /// assert_eq!((cut.status, cut.content), (Status::Interrupted, Content::text("The answer is")));
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    pub fn interrupted(thread_id: ThreadId, message_id: MessageId) -> Self {
        Self { interrupt: true, ..Self::finishing(thread_id, message_id) }
    }

    /// Whether this update may change only a message that is not complete yet: an append,
    /// content not finalized, or an interruption.
    pub fn is_partial(&self) -> bool {
        self.append || !self.finalize || self.interrupt
    }

    /// Whether this update ends the stream: it finalizes or [interrupts](Self::interrupt) (a
    /// layer that holds partial updates back writes such an update at once).
    pub fn is_final(&self) -> bool {
        self.finalize || self.interrupt
    }

    /// The status this update leaves: `Interrupted` when it [interrupts](Self::interrupt),
    /// `Complete` when it [finalizes](Self::finalize), `None` (unchanged) otherwise.
    pub fn status_after(&self) -> Option<crate::Status> {
        if self.interrupt {
            Some(crate::Status::Interrupted)
        } else if self.finalize {
            Some(crate::Status::Complete)
        } else {
            None
        }
    }

    /// Whether this update may be written over a message whose status is `status` (see the
    /// table on [`UpdateContent`]): a reservation takes every update, an interrupted message
    /// final replacements and a new interruption's replacement, a complete one final
    /// replacements only.
    pub fn may_write_over(&self, status: crate::Status) -> bool {
        match status {
            crate::Status::Reserved => true,
            // An interruption repeated (nothing appended) changes nothing but its version.
            crate::Status::Interrupted => {
                (!self.append && (self.interrupt || self.finalize)) || (self.interrupt && self.content.is_placeholder())
            }
            crate::Status::Complete => !self.is_partial(),
        }
    }

    /// The refusal of this update by a message whose status is `status`
    /// ([`PersistError::MessageComplete`] unless it [may be written over](Self::may_write_over)
    /// it); `None` when it may be written. For backends, after the version check.
    pub fn status_conflict(&self, status: crate::Status) -> Option<PersistError> {
        (!self.may_write_over(status)).then(|| PersistError::MessageComplete {
            thread_id: self.thread_id.clone(),
            message_id: self.message_id.clone(),
            status,
        })
    }

    /// The plain update an append comes to, given the message as stored: the joined content,
    /// expecting the stored version (what a backend applies in the write's transaction). For
    /// an update that does not append, itself.
    ///
    /// # Errors
    ///
    /// [`PersistError::VersionConflict`] when the update expects another version;
    /// [`PersistError::MessageComplete`] when the message does not take it (complete, or
    /// interrupted; see [`may_write_over`](Self::may_write_over));
    /// [`PersistError::InvalidInput`] (`content`) when either content is not an array of
    /// blocks.
    pub fn resolved(&self, stored: &crate::Message) -> Result<Self> {
        if !self.append {
            return Ok(self.clone());
        }
        if let Some(expected) = self.expected_version.filter(|&v| v != stored.version) {
            return Err(PersistError::VersionConflict {
                thread_id: self.thread_id.clone(),
                message_id: Some(self.message_id.clone()),
                expected,
                actual: stored.version,
            });
        }
        if let Some(refusal) = self.status_conflict(stored.status) {
            return Err(refusal);
        }
        // Nothing to add (`finishing`): the stored content as it is, whatever its shape.
        let content = if self.content.is_placeholder() {
            stored.content.clone()
        } else {
            stored.content.appended(&self.content)?
        };
        Ok(Self { content, append: false, expected_version: Some(stored.version), ..self.clone() })
    }

    /// Whether to finalize (see [`finalize`](Self::finalize)).
    pub fn with_finalize(mut self, finalize: bool) -> Self {
        self.finalize = finalize;
        self
    }

    /// Whether to mark the message interrupted (see [`interrupt`](Self::interrupt)).
    pub fn with_interrupt(mut self, interrupt: bool) -> Self {
        self.interrupt = interrupt;
        self
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
/// How often a layer that joins an append itself (reading the message, writing the joined
/// content back expecting the version read) joins it again when another write got in between:
/// far more than contention needs (each conflict means another write went through), so that
/// only a message rewritten without pause by others makes an append fail
/// ([`appends_kept_racing`]).
pub const MAX_APPEND_JOINS: usize = 1000;

/// The error of an append joined [`MAX_APPEND_JOINS`] times without getting through.
pub fn appends_kept_racing() -> PersistError {
    PersistError::temporary(format!(
        "the append was joined {MAX_APPEND_JOINS} times and other writes of its message got in each time"
    ))
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
            Self::Thread | Self::MessagesAfter(_) => None,
        }
    }
}
