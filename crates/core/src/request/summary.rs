//! Compaction stored as data: a thread's [`Summary`] records, written by [`Summarize`], listed
//! by [`ListSummaries`], and the compacted read ([`ReadCompacted`]) that answers the latest
//! summary of a branch and the messages after it.
//!
//! A summary covers a range of its thread: the messages of the branch ending at its last
//! message ([`through_seq`](Summary::through_seq)) from [`from_seq`](Summary::from_seq) on. It
//! holds content like a message (the text a model is given instead of the messages it
//! covers), and never moves, renumbers or removes them: the raw history stays, and retention
//! removes covered messages only when told to ([`Delete::covered`](crate::args::Delete::covered)).
//!
//! Rules, the same on every backend:
//!
//! - **a range**: `1 <= from_seq <= through_seq`; the message at `through_seq` is a message of
//!   the thread (or history before its oldest message: see below), and no message of the range
//!   (of the branch ending there) is still [`Reserved`](crate::Status::Reserved): a reply being
//!   streamed is not summarized. Each refusal is `InvalidInput` naming the rule; an absent
//!   thread is not created;
//! - **one per last message**: the same range written again answers the stored summary
//!   (`deduplicated`), whatever content the second write carried; another range ending at the
//!   same message is `InvalidInput`;
//! - **which summary a branch reads**: the one with the highest `through_seq` whose last
//!   message is on the branch. **History**: when a thread's oldest messages go
//!   ([`Delete::covered`](crate::args::Delete::covered), retention's `keep_latest`, a delete of
//!   the oldest message), the messages left go on following theirs ([`Message::parent_seq`]
//!   names a seq before the thread's oldest message), and every seq up to that parent counts as
//!   on their branch: a summary of what went is still read. A summary of another branch, or
//!   one whose last message was deleted alone (a message in the middle), is not read;
//! - **removal**: a truncation ([`Delete::after`](crate::args::Delete::after)) removes the
//!   summaries reaching past its cut, a thread delete every summary of the thread,
//!   `Delete::covered` the summaries older than the one it applied (they covered what it
//!   removed); deleting one message leaves the summaries (recompact to drop what it said).
//!
//! A summary write is a write: it passes every layer (`EncryptLayer` seals its content and
//! metadata), and a store with a feed records an event for it (op `summarize`, the last
//! message's seq).

use serde::{Deserialize, Serialize};

use super::branch::Branch;
use crate::context::{Context, context_setter};
use crate::model::error::{PersistError, Result};
use crate::model::id::ThreadId;
use crate::model::page::{DEFAULT_PAGE_LIMIT, lookahead, validate_limit};
use crate::model::{Content, Message, Metadata, Timestamp};
use crate::read::{Page, UnreadableItem};

/// A summary of a range of a thread; see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Summary {
    /// The thread.
    pub thread_id: ThreadId,
    /// The first seq the range covers (on the branch ending at `through_seq`).
    pub from_seq: u64,
    /// The last message covered: the compacted read answers the messages after it.
    pub through_seq: u64,
    /// What stands for the covered messages (text, usually).
    pub content: Content,
    /// Free-form metadata (the compactor's name, a token count…).
    pub metadata: Metadata,
    /// When the summary was written.
    pub created_at: Timestamp,
}

impl Summary {
    /// A summary of `from_seq..=through_seq` of `thread_id`, as a backend builds it from a
    /// write or a row.
    pub fn new(
        thread_id: ThreadId,
        from_seq: u64,
        through_seq: u64,
        content: Content,
        metadata: Metadata,
        created_at: Timestamp,
    ) -> Self {
        Self { thread_id, from_seq, through_seq, content, metadata, created_at }
    }

    /// Whether this summary is `summarize` written again: the same range.
    pub fn same_range(&self, summarize: &Summarize) -> bool {
        self.from_seq == summarize.from_seq && self.through_seq == summarize.through_seq
    }
}

/// Writes a [`Summary`] of a range of a thread; see the [module docs](self) for the rules.
///
/// # Example
///
/// ```
/// use persist::{args::Add, summary::{ReadCompacted, Summarize}, Content, Pipeline, Role, ThreadId};
/// use persist::memory::MemoryBackend;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = Pipeline::new(MemoryBackend::new());
/// let thread = ThreadId::new("t1")?;
/// for text in ["I am planning a trip to Lisbon", "Lovely! When?", "In May"] {
///     store.add(Add::new(thread.clone(), Role::User, Content::text(text))).await?;
/// }
/// let summary = Content::text("The user plans a trip to Lisbon.");
/// store.summarize(Summarize::new(thread.clone(), 2, summary)).await?;
///
/// let compacted = store.compacted(ReadCompacted::new(thread)).await?;
/// assert_eq!(compacted.summary.unwrap().through_seq, 2);
/// assert_eq!(compacted.messages.len(), 1); // "In May"
/// # Ok::<_, persist::PersistError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Summarize {
    /// The thread.
    pub thread_id: ThreadId,
    /// The first seq covered (default 1: from the branch's root).
    pub from_seq: u64,
    /// The last message covered.
    pub through_seq: u64,
    /// The summary's content; not empty.
    pub content: Content,
    /// The summary's metadata.
    #[serde(default)]
    pub metadata: Metadata,
    /// When it was written, for an import that keeps the time it had; `None` (the default):
    /// now, by the store's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// Replace the content and metadata of the stored summary of this range instead of writing
    /// a new one (see [`replacing`](Self::replacing)).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace: bool,
    /// Request context: its tenant names the thread's tenant.
    #[serde(default)]
    pub context: Context,
}

impl Summarize {
    /// A summary of `thread_id` from its branch's root through the message at `through_seq`.
    pub fn new(thread_id: ThreadId, through_seq: u64, content: Content) -> Self {
        Self {
            thread_id,
            from_seq: 1,
            through_seq,
            content,
            metadata: Metadata::new(),
            created_at: None,
            replace: false,
            context: Context::new(),
        }
    }

    /// Covers from `from_seq` on (a window, not the whole history before `through_seq`).
    pub fn from_seq(mut self, from_seq: u64) -> Self {
        self.from_seq = from_seq;
        self
    }

    /// Sets the summary's metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Keeps `created_at` as the summary's time (an import of an export).
    pub fn created_at(mut self, created_at: Timestamp) -> Self {
        self.created_at = Some(created_at);
        self
    }

    /// Replaces the content and metadata of the summary stored for this range (the same
    /// `from_seq` and `through_seq`), keeping its time: what a key rotation writes to seal a
    /// summary again with the current key. A summary is otherwise written once (a second write
    /// of its range answers the first); this is the one way to change it, and it says the same
    /// thing in another form. No feed event: readers see no change.
    ///
    /// # Errors
    ///
    /// At the store: `NotFound` when no summary of the range is stored (retention or a
    /// truncation took it); `InvalidInput` when the summary ending at `through_seq` covers
    /// another range.
    ///
    /// # Example
    ///
    /// ```
    /// use persist::{args::Add, summary::Summarize, memory::MemoryBackend, Content, Pipeline, Role, ThreadId};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = Pipeline::new(MemoryBackend::new());
    /// let thread = ThreadId::new("t1")?;
    /// store.add(Add::new(thread.clone(), Role::User, Content::text("hi"))).await?;
    /// store.summarize(Summarize::new(thread.clone(), 1, Content::text("a greeting"))).await?;
    /// let again = Summarize::new(thread.clone(), 1, Content::text("A greeting.")).replacing();
    /// let written = store.summarize(again).await?;
    /// assert_eq!((written.deduplicated, written.summary.content), (false, Content::text("A greeting.")));
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    pub fn replacing(mut self) -> Self {
        self.replace = true;
        self
    }

    context_setter!(tenant);

    /// Checks what needs no store: the range's bounds, the content (not empty, nested at most
    /// [`MAX_JSON_DEPTH`](crate::MAX_JSON_DEPTH), no U+0000) and the metadata. Backends call
    /// this first (through [`PersistArgs::validate`](crate::PersistArgs::validate)).
    ///
    /// # Errors
    ///
    /// [`PersistError::InvalidInput`] naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.from_seq == 0 || self.through_seq == 0 {
            return Err(PersistError::invalid("from_seq", "seqs start at 1"));
        }
        if self.from_seq > self.through_seq {
            return Err(PersistError::invalid(
                "from_seq",
                format!("{} is after the last message covered ({})", self.from_seq, self.through_seq),
            ));
        }
        if self.content.is_placeholder() {
            return Err(PersistError::invalid("content", "a summary says something: its content is empty"));
        }
        self.content.check_depth()?;
        if self.content.has_nul() {
            return Err(super::write::nul("content"));
        }
        self.metadata.check_depth()?;
        if self.metadata.has_nul() {
            return Err(super::write::nul("metadata"));
        }
        Ok(())
    }

    /// The summary this write stores, written `now` (unless it names its own time).
    pub fn to_summary(&self, now: Timestamp) -> Summary {
        Summary::new(
            self.thread_id.clone(),
            self.from_seq,
            self.through_seq,
            self.content.clone(),
            self.metadata.clone(),
            self.created_at.unwrap_or(now),
        )
    }

    /// The answer when a summary ends at the same message already: `stored` itself
    /// (deduplicated) for the same range, or (a [replacement](Self::replacing)) the summary to
    /// store in its place, not deduplicated; `InvalidInput` for another range.
    ///
    /// # Errors
    ///
    /// [`PersistError::InvalidInput`] naming the range stored.
    pub fn against_stored(&self, stored: Summary) -> Result<Summarized> {
        if stored.same_range(self) && self.replace {
            let created_at = stored.created_at;
            return Ok(Summarized::new(
                Summary { content: self.content.clone(), metadata: self.metadata.clone(), created_at, ..stored },
                false,
            ));
        }
        if stored.same_range(self) {
            return Ok(Summarized::new(stored, true));
        }
        Err(PersistError::invalid(
            "from_seq",
            format!(
                "a summary of seqs {}..={} ends at that message already (one summary ends at a message)",
                stored.from_seq, stored.through_seq
            ),
        ))
    }

    /// The refusal of a [replacement](Self::replacing) of a range no summary covers.
    pub fn no_summary_to_replace(&self) -> PersistError {
        PersistError::not_found(&self.thread_id, None)
    }

    /// The refusal of a range whose last message the thread does not have.
    pub fn no_such_message(&self) -> PersistError {
        PersistError::invalid(
            "through_seq",
            format!("the thread has no message at seq {} to end a summary at", self.through_seq),
        )
    }

    /// The refusal of a range that holds a placeholder still being written.
    pub fn reserved_in_range(&self, seq: u64) -> PersistError {
        PersistError::invalid(
            "through_seq",
            format!("the message at seq {seq} is still reserved (being written): a summary covers settled messages"),
        )
    }
}

/// The answer to a [`Summarize`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Summarized {
    /// The summary stored (the earlier one, when deduplicated).
    pub summary: Summary,
    /// `true` when a summary of the same range was stored already and is answered instead.
    pub deduplicated: bool,
}

impl Summarized {
    /// An answer for `summary`.
    pub fn new(summary: Summary, deduplicated: bool) -> Self {
        Self { summary, deduplicated }
    }
}

/// Lists a thread's summaries by the seq of their last message, ascending, a page at a time
/// (every branch's).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListSummaries {
    /// The thread.
    pub thread_id: ThreadId,
    /// Only summaries ending after this seq (the previous page's `next_cursor`).
    pub after: Option<u64>,
    /// Page size, 1 to [`MAX_PAGE_LIMIT`](crate::read::MAX_PAGE_LIMIT) (default 100).
    pub limit: u32,
    /// Who is asking: its tenant names the thread's tenant.
    pub context: Context,
}

impl ListSummaries {
    /// The first page of `thread_id`'s summaries.
    pub fn new(thread_id: ThreadId) -> Self {
        Self { thread_id, after: None, limit: DEFAULT_PAGE_LIMIT, context: Context::new() }
    }

    /// Only summaries ending after `seq`.
    pub fn after(mut self, seq: u64) -> Self {
        self.after = Some(seq);
        self
    }

    page_setters!(limit);

    context_setter!(tenant);

    /// Checks the page size.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a limit of 0 or over the maximum.
    pub fn validate(&self) -> Result<()> {
        validate_limit(self.limit)
    }

    /// The page of `fetched` (in order, up to `limit + 1`: one more says more follow).
    pub fn page(&self, fetched: Vec<Summary>) -> Page<Summary> {
        lookahead(fetched, self.limit, |s| s.through_seq)
    }

    /// The request for the page after `page`, if more follow.
    pub fn next_page(&self, page: &Page<Summary>) -> Option<Self> {
        let cursor = page.next_cursor.filter(|_| page.has_more)?;
        Some(self.clone().after(cursor))
    }
}

/// Reads a thread compacted: the latest summary of a branch and the messages after it, in seq
/// order, as a model would be given them. What it costs depends on what follows the summary,
/// not on the thread's length.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReadCompacted {
    /// The thread.
    pub thread_id: ThreadId,
    /// The branch read (default: the active one).
    pub branch: Branch,
    /// Whether placeholders still `Reserved` are answered (default: not, as
    /// [`ListMessages`](crate::read::ListMessages)).
    pub include_reserved: bool,
    /// Who is asking: its tenant names the thread's tenant.
    pub context: Context,
}

impl ReadCompacted {
    /// The active branch of `thread_id`, compacted.
    pub fn new(thread_id: ThreadId) -> Self {
        Self { thread_id, branch: Branch::Active, include_reserved: false, context: Context::new() }
    }

    /// Reads `branch` instead of the active one.
    pub fn on_branch(mut self, branch: Branch) -> Self {
        self.branch = branch;
        self
    }

    /// Whether placeholders still `Reserved` are answered.
    pub fn include_reserved(mut self, include: bool) -> Self {
        self.include_reserved = include;
        self
    }

    context_setter!(tenant);
}

/// The answer to a [`ReadCompacted`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Compacted {
    /// The latest summary of the branch, if it has one.
    pub summary: Option<Summary>,
    /// The messages of the branch after the summary's last one (every message of the branch
    /// without a summary), in seq order.
    pub messages: Vec<Message>,
    /// What a layer could not answer (a sealed value that does not open), named instead of
    /// answered: the summary's has no message id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<UnreadableItem>,
}

impl Compacted {
    /// The answer of `summary` and `messages`.
    pub fn new(summary: Option<Summary>, messages: Vec<Message>) -> Self {
        Self { summary, messages, unreadable: Vec::new() }
    }

    /// How many records it answers (the summary counts as one).
    pub fn len(&self) -> usize {
        self.messages.len() + usize::from(self.summary.is_some())
    }

    /// Whether it answers nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether a summary ending at `through_seq` is read on the branch whose runs (see
/// [`RunWalk`](crate::branch::RunWalk): ranges of seqs on the branch, oldest first) are
/// `runs`: its last message is on the branch. For SQL backends.
pub fn on_runs(through_seq: u64, runs: &[(u64, u64)]) -> bool {
    runs.iter().any(|&(lo, hi)| (lo..=hi).contains(&through_seq))
}
