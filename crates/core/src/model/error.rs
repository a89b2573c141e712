//! The one error type of persist.

use std::borrow::Cow;
use std::time::Duration;

use crate::model::id::{IdempotencyKey, MessageId, ResourceId, ThreadId};
use crate::model::op::PersistOp;
use crate::model::place::PartOffset;

/// A boxed error usable as a [`PersistError`] source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result<T, PersistError>`.
pub type Result<T, E = PersistError> = std::result::Result<T, E>;

/// Everything that can go wrong with a write or a read.
///
/// Each variant carries the context needed to act on it (the thread, the message, the field,
/// the versions). [`is_temporary`](Self::is_temporary) says whether retrying the same request
/// may succeed; the `Retry` layer relies on it and on nothing else.
///
/// # Example
///
/// ```
/// use persist::{PersistError, ThreadId};
///
/// let err = ThreadId::new("").unwrap_err();
/// assert!(matches!(err, PersistError::InvalidInput { field: "thread_id", .. }));
/// assert!(!err.is_temporary());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    /// A field of the request is malformed or out of bounds; nothing was written.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The offending field (`"thread_id"`, `"metadata"`, `"limit"`, …).
        field: &'static str,
        /// Why it was refused, in words.
        reason: Cow<'static, str>,
    },

    /// The thread or message does not exist (in the request's tenant: a thread is `(tenant, thread_id)`).
    #[error("not found: thread {thread_id}{}", fmt_message(message_id))]
    NotFound {
        /// The thread addressed.
        thread_id: ThreadId,
        /// The message addressed, when the request named one.
        message_id: Option<MessageId>,
    },

    /// The message id is already taken in this thread by a message with a different payload.
    #[error("already exists: message {message_id} in thread {thread_id}")]
    AlreadyExists {
        /// The thread.
        thread_id: ThreadId,
        /// The message id that is taken.
        message_id: MessageId,
    },

    /// The idempotency key was already used in this thread by a different request (another
    /// operation, role, content or metadata); nothing was written. A retry of the
    /// same request is answered with the earlier message instead (`deduplicated: true`). HTTP
    /// APIs answer 422 here.
    #[error(
        "idempotency key {idempotency_key} in thread {thread_id} was already used by message {message_id} for a different request"
    )]
    IdempotencyKeyReused {
        /// The thread.
        thread_id: ThreadId,
        /// The key reused.
        idempotency_key: IdempotencyKey,
        /// The message the key's first request wrote.
        message_id: MessageId,
    },

    /// The request's expected version does not match the stored one; nothing was written.
    #[error("version conflict on thread {thread_id}{}: expected {expected}, found {actual}", fmt_message(message_id))]
    VersionConflict {
        /// The thread.
        thread_id: ThreadId,
        /// The message, or `None` when the precondition was on the thread.
        message_id: Option<MessageId>,
        /// The version the request expected.
        expected: u64,
        /// The version stored.
        actual: u64,
    },

    /// The message is no longer streaming: it is complete (finalized, or written by `add`), or
    /// [interrupted](crate::Status::Interrupted). A partial content write (an append, content
    /// not finalized) would reopen a finished reply, so it is refused and nothing is written; so
    /// is marking a complete message interrupted. A final replacement (`finalize: true`, not
    /// appending) still corrects either. Often a stream's token retried or sent after its final
    /// update, or after a cleanup gave the reply up as interrupted.
    #[error("message {message_id} in thread {thread_id} is {status}: only a final replacement may change its content")]
    MessageComplete {
        /// The thread.
        thread_id: ThreadId,
        /// The message.
        message_id: MessageId,
        /// Its stored status: `Complete` or `Interrupted`.
        status: crate::Status,
    },

    /// A [working memory](crate::working) write expected another version of its document (`0`:
    /// never written); nothing was written.
    #[error("version conflict on the working memory of {resource}: expected {expected}, found {actual}")]
    DocumentConflict {
        /// What the document is about.
        resource: ResourceId,
        /// The version the request expected.
        expected: u64,
        /// The version stored.
        actual: u64,
    },

    /// The thread was deleted; writes to it are refused so it cannot be resurrected.
    #[error("thread {thread_id} was deleted")]
    ThreadDeleted {
        /// The deleted thread.
        thread_id: ThreadId,
    },

    /// A layer refused the request (policy, read-only mode, …).
    #[error("rejected: {reason}")]
    Rejected {
        /// Why, in words meant for the caller.
        reason: Cow<'static, str>,
    },

    /// The backend or layer does not support this operation.
    #[error("unsupported: {what}")]
    Unsupported {
        /// What is unsupported.
        what: Cow<'static, str>,
    },

    /// The request did not complete in time.
    #[error("{op} timed out after {after:?}")]
    Timeout {
        /// The operation that timed out.
        op: PersistOp,
        /// The limit that was exceeded.
        after: Duration,
    },

    /// A transient condition (busy database, lock contention, pool exhausted); retrying the
    /// same request may succeed.
    #[error("temporarily unavailable: {message}{}", fmt_cause(message, source))]
    Temporary {
        /// What happened.
        message: Cow<'static, str>,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },

    /// A layer answered with a result of another operation than the one requested.
    #[error("a layer answered {op} with a {got} result")]
    MismatchedResult {
        /// The operation requested.
        op: PersistOp,
        /// The operation of the result received.
        got: PersistOp,
    },

    /// A stored value could not be opened: a sealed value (see `persist::encrypt`) that does
    /// not belong where it is stored (copied from another message, thread or tenant), was
    /// tampered with, or whose key is gone; or a clear value where a sealed one must be. The
    /// value is never answered in part.
    #[error("unreadable: thread {thread_id}{}: {reason}", fmt_message(message_id))]
    Unreadable {
        /// The thread the value was read from.
        thread_id: ThreadId,
        /// The message, or `None` for a thread's own field (title, metadata).
        message_id: Option<MessageId>,
        /// Why, in words (never the value).
        reason: Cow<'static, str>,
    },

    /// A change-feed read resumed from a position the feed no longer holds: retention removed
    /// events after `after`, so the reader may have missed writes. Reload what it shows, then
    /// follow from the feed's head.
    #[error("the change feed no longer holds every event after position {after} (it starts after {trimmed}): reload")]
    FeedGap {
        /// The position the read resumed from.
        after: u64,
        /// The newest position retention removed.
        trimmed: u64,
    },

    /// A live reply's writer and the store disagree (see [`ReplyConflict`]); nothing was
    /// written. HTTP APIs answer 409 here.
    #[error("reply {message_id} in thread {thread_id}: {conflict}")]
    ReplyConflict {
        /// The thread.
        thread_id: ThreadId,
        /// The reply: with [`ReplyConflict::Running`], the one being generated.
        message_id: MessageId,
        /// What the disagreement is.
        conflict: ReplyConflict,
    },

    /// The backend failed in a way a retry will not fix.
    #[error("backend error: {message}{}", fmt_cause(message, source))]
    Backend {
        /// What happened.
        message: Cow<'static, str>,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
}

/// How a live reply's writer and the store disagree: the
/// [`PersistError::ReplyConflict`] of a writer's call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplyConflict {
    /// Another reply of the thread is being generated (one at a time per thread, across
    /// instances): the error's message is that one. Stop it, or wait for its end.
    Running,
    /// The append starts at `at`, after the reply's end `end`: appends before it are
    /// missing. The writer sends them again, from `end`.
    Gap {
        /// Where the append starts.
        at: PartOffset,
        /// Where the reply ends.
        end: PartOffset,
    },
    /// The reply holds other parts from `at` on than the append: another writer wrote them.
    Diverged {
        /// Where the append starts.
        at: PartOffset,
        /// Where the reply ends.
        end: PartOffset,
    },
    /// A client stopped the reply: it ended stopped, keeping what was written before. The
    /// writer stops generating.
    Stopped,
}

impl std::fmt::Display for ReplyConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Running => f.write_str("is being generated: one reply at a time per thread"),
            Self::Gap { at, end } => {
                write!(f, "an append at {at} is beyond the reply's end, {end}: appends are missing")
            }
            Self::Diverged { at, end } => {
                write!(f, "the reply holds other parts at {at} than this append (its end is {end})")
            }
            Self::Stopped => f.write_str("was stopped by a client: nothing more is written"),
        }
    }
}

/// `": <cause>"`: the source's own words (the OS's, the server's), unless the message says
/// them already; an error that only said "opening the database" cost newcomers the most time.
fn fmt_cause(message: &str, source: &Option<BoxError>) -> String {
    match source {
        Some(source) => {
            let cause = source.to_string();
            if cause.is_empty() || message.contains(&cause) { String::new() } else { format!(": {cause}") }
        }
        None => String::new(),
    }
}

fn fmt_message(message_id: &Option<MessageId>) -> String {
    match message_id {
        Some(id) => format!(", message {id}"),
        None => String::new(),
    }
}

impl PersistError {
    /// Every value [`code`](Self::code) can return.
    pub const CODES: [&'static str; 17] = [
        "invalid_input",
        "not_found",
        "already_exists",
        "version_conflict",
        "thread_deleted",
        "rejected",
        "unsupported",
        "timeout",
        "temporary",
        "mismatched_result",
        "backend",
        "idempotency_key_reused",
        "unreadable",
        "feed_gap",
        "message_complete",
        "document_conflict",
        "reply_conflict",
    ];

    /// The HTTP status an API answers this error with, as HTTP APIs commonly map them:
    ///
    /// | error | status |
    /// |---|---|
    /// | `InvalidInput` | 400 Bad Request |
    /// | `Rejected` | 403 Forbidden |
    /// | `NotFound` | 404 Not Found |
    /// | `AlreadyExists`, `VersionConflict`, `DocumentConflict`, `MessageComplete`, `ReplyConflict` | 409 Conflict |
    /// | `ThreadDeleted`, `FeedGap` | 410 Gone (reload, then follow from the head) |
    /// | `IdempotencyKeyReused` | 422 Unprocessable Content |
    /// | `Unsupported` | 501 Not Implemented |
    /// | `Temporary` | 503 Service Unavailable (retry) |
    /// | `Timeout` | 504 Gateway Timeout |
    /// | `MismatchedResult`, `Unreadable`, `Backend` | 500 Internal Server Error |
    ///
    /// # Example
    ///
    /// ```
    /// use persist::{PersistError, ThreadId};
    ///
    /// let gone = PersistError::ThreadDeleted { thread_id: ThreadId::new("t1")? };
    /// assert_eq!(gone.status_code(), 410);
    /// assert_eq!(PersistError::temporary("busy").status_code(), 503);
    /// # Ok::<_, PersistError>(())
    /// ```
    pub fn status_code(&self) -> u16 {
        match self {
            Self::InvalidInput { .. } => 400,
            Self::Rejected { .. } => 403,
            Self::NotFound { .. } => 404,
            Self::AlreadyExists { .. }
            | Self::VersionConflict { .. }
            | Self::DocumentConflict { .. }
            | Self::MessageComplete { .. }
            | Self::ReplyConflict { .. } => 409,
            Self::ThreadDeleted { .. } | Self::FeedGap { .. } => 410,
            Self::IdempotencyKeyReused { .. } => 422,
            Self::Unsupported { .. } => 501,
            Self::Temporary { .. } => 503,
            Self::Timeout { .. } => 504,
            Self::MismatchedResult { .. } | Self::Unreadable { .. } | Self::Backend { .. } => 500,
        }
    }

    /// A stable snake_case name of the variant, for logs and metric labels.
    pub fn code(&self) -> &'static str {
        Self::CODES[self.code_index()]
    }

    /// The position of [`code`](Self::code) in [`CODES`](Self::CODES), for tables indexed by
    /// error kind.
    pub fn code_index(&self) -> usize {
        match self {
            Self::InvalidInput { .. } => 0,
            Self::NotFound { .. } => 1,
            Self::AlreadyExists { .. } => 2,
            Self::VersionConflict { .. } => 3,
            Self::ThreadDeleted { .. } => 4,
            Self::Rejected { .. } => 5,
            Self::Unsupported { .. } => 6,
            Self::Timeout { .. } => 7,
            Self::Temporary { .. } => 8,
            Self::MismatchedResult { .. } => 9,
            Self::Backend { .. } => 10,
            Self::IdempotencyKeyReused { .. } => 11,
            Self::Unreadable { .. } => 12,
            Self::FeedGap { .. } => 13,
            Self::MessageComplete { .. } => 14,
            Self::DocumentConflict { .. } => 15,
            Self::ReplyConflict { .. } => 16,
        }
    }

    /// Whether a write was refused because what it addressed changed or went since it was read
    /// (`VersionConflict`, `DocumentConflict`, `NotFound`, `ThreadDeleted`, `MessageComplete`): maintenance that
    /// writes back what it read (retention, a key rotation) leaves such a target as it is.
    pub fn is_changed_or_gone(&self) -> bool {
        matches!(
            self,
            Self::VersionConflict { .. }
                | Self::DocumentConflict { .. }
                | Self::NotFound { .. }
                | Self::ThreadDeleted { .. }
                | Self::MessageComplete { .. }
        )
    }

    /// Whether retrying the same request may succeed.
    ///
    /// True for [`Temporary`](Self::Temporary) and [`Timeout`](Self::Timeout); false for
    /// everything that describes the request or the stored state (a retry would fail the
    /// same way, or worse, duplicate a write).
    pub fn is_temporary(&self) -> bool {
        matches!(self, Self::Temporary { .. } | Self::Timeout { .. })
    }

    /// This failure again, for another caller of a batch that failed as a whole (errors are
    /// not `Clone`: their sources are not). The copy is [temporary](Self::is_temporary) when
    /// this one is, a [`Backend`](Self::Backend) error otherwise; its message is this error's
    /// followed by its sources'.
    ///
    /// ```
    /// use persist::PersistError;
    ///
    /// let failed = PersistError::backend("committing", std::io::Error::other("disk full"));
    /// assert_eq!(failed.replicate().to_string(), "backend error: committing: disk full");
    /// assert!(!failed.replicate().is_temporary());
    /// assert!(PersistError::temporary("busy").replicate().is_temporary());
    /// ```
    pub fn replicate(&self) -> Self {
        let mut message = match self {
            Self::Temporary { message, .. } | Self::Backend { message, .. } => message.to_string(),
            other => other.to_string(),
        };
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        if self.is_temporary() {
            Self::Temporary { message: message.into(), source: None }
        } else {
            Self::Backend { message: message.into(), source: None }
        }
    }

    /// An [`InvalidInput`](Self::InvalidInput) error.
    pub fn invalid(field: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::InvalidInput { field, reason: reason.into() }
    }

    /// A [`Rejected`](Self::Rejected) error, for layers that refuse a request.
    pub fn rejected(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Rejected { reason: reason.into() }
    }

    /// A [`Temporary`](Self::Temporary) error without a source.
    pub fn temporary(message: impl Into<Cow<'static, str>>) -> Self {
        Self::Temporary { message: message.into(), source: None }
    }

    /// A [`Backend`](Self::Backend) error wrapping `source`.
    pub fn backend(message: impl Into<Cow<'static, str>>, source: impl Into<BoxError>) -> Self {
        Self::Backend { message: message.into(), source: Some(source.into()) }
    }

    /// A [`NotFound`](Self::NotFound) error for a thread or a message in it.
    pub fn not_found(thread_id: &ThreadId, message_id: Option<&MessageId>) -> Self {
        Self::NotFound { thread_id: thread_id.clone(), message_id: message_id.cloned() }
    }
}
