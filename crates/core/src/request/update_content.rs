//! Content writes: [`UpdateContent`], a message's final content or a streamed reply's progress
//! and end, and the rules of which update a message takes in each status.

use serde::{Deserialize, Serialize};

use crate::context::{Context, context_setter};
use crate::model::Content;
use crate::model::error::{PersistError, Result};
use crate::model::id::{MessageId, ThreadId};

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
    /// What a replacement adds to the end of the stored content, when it is an append made
    /// plain (by [`resolved`](Self::resolved), or by a layer that joins appends itself, as
    /// `EncryptLayer` does, which puts here the tail as the store holds it, sealed): the
    /// change feed records it as the event's [`delta`](crate::feed::Change::delta), so a
    /// follower adds it to the text it has instead of reading the message. It must be exactly
    /// what the replacement adds (the stored content [`appended`](Content::appended) with it is
    /// the new content), so it needs the [`expected_version`](Self::expected_version) it adds
    /// to (`InvalidInput` otherwise). `None` on an append (its delta is its own content) and on
    /// a plain replacement (followers read the message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<Content>,
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
            delta: None,
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
    /// host that resends the whole text writes; `CoalesceLayer` (persist-layer)
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

    /// A generator's sign of life: an append of nothing that leaves `(thread_id, message_id)`
    /// as it is but for its version and last write time, so
    /// `cleanup_stranded` (persist-ops), which finds reservations by
    /// silence, leaves it alone while its generator waits on something slow (a tool, a model's
    /// first token). The tokens a generator appends renew it the same way; the feed records
    /// a heartbeat as an `update_content` whose delta is empty.
    pub fn heartbeat(thread_id: ThreadId, message_id: MessageId) -> Self {
        Self { finalize: false, ..Self::finishing(thread_id, message_id) }
    }

    /// What this update adds to the end of the stored content, as the change feed records it:
    /// an append's content, a replacement's [`delta`](Self::delta), `None` for a plain
    /// replacement. For backends.
    pub fn feed_delta(&self) -> Option<&Content> {
        if self.append { Some(&self.content) } else { self.delta.as_ref() }
    }

    /// Sets [`delta`](Self::delta): this replacement adds `tail` to the stored content.
    pub fn with_delta(mut self, tail: Option<Content>) -> Self {
        self.delta = tail;
        self
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
    /// expecting the stored version, the appended content as its [`delta`](Self::delta) (what
    /// a backend applies in the write's transaction). For an update that does not append,
    /// itself.
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
        let delta = Some(self.content.clone());
        Ok(Self { content, append: false, expected_version: Some(stored.version), delta, ..self.clone() })
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
