//! [`ListEmbeddings`]: the vectors stored for a thread's messages, read back (what a copy of a
//! store carries: an export, `persist copy`, a fork, a tenant's move). Re-exported by
//! [`vector`](crate::vector).

use serde::{Deserialize, Serialize};

use crate::context::{Context, context_setter};
use crate::model::embedding::Embedding;
use crate::model::error::Result;
use crate::model::id::{MessageId, ThreadId};
use crate::model::page::{DEFAULT_PAGE_LIMIT, Page, lookahead, validate_limit};
use crate::model::{Role, Status, Timestamp};

/// Lists the vectors stored for a thread's messages, a page at a time, by the message's seq,
/// then the model's id (bytewise); see the [module docs](crate::vector).
///
/// Each vector is the one stored, scaled to length 1: written again with an
/// [`Embed`](crate::vector::Embed), it is stored with the same numbers, so a copy holds what its
/// source held. The first vector of a model a copy writes fixes the model's dimensions there,
/// as the source's first one did. A thread that does not exist in the context's tenant, or is
/// deleted, has none: an empty page.
///
/// # Example
///
/// ```
/// use persist::memory::MemoryBackend;
/// use persist::vector::{Embed, Embedding, ListEmbeddings};
/// use persist::{args::Add, Content, Pipeline, Role, ThreadId};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let pipeline = Pipeline::builder().build(MemoryBackend::new());
/// let thread = ThreadId::new("trip")?;
/// let added = pipeline.add(Add::new(thread.clone(), Role::User, Content::text("Lisbon in May?"))).await?;
/// let vector = Embedding::new("my-model", vec![0.6, 0.8]);
/// pipeline.embed(Embed::new(thread.clone(), added.message.id.clone(), vector.clone())).await?;
///
/// let page = pipeline.embeddings(ListEmbeddings::new(thread)).await?;
/// assert_eq!(page.items[0].message_id, added.message.id);
/// assert_eq!(page.items[0].embedding, vector); // already of length 1: stored as it is
/// assert!(!page.has_more);
/// # Ok::<_, persist::PersistError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListEmbeddings {
    /// The thread.
    pub thread_id: ThreadId,
    /// Only vectors after this one (the previous page's `next_cursor`).
    pub after: Option<EmbeddingCursor>,
    /// Page size, 1 to [`MAX_PAGE_LIMIT`](crate::read::MAX_PAGE_LIMIT) (default 100).
    pub limit: u32,
    /// Who is asking: its tenant names the thread's tenant.
    pub context: Context,
}

impl ListEmbeddings {
    /// The first page of `thread_id`'s vectors.
    pub fn new(thread_id: ThreadId) -> Self {
        Self { thread_id, after: None, limit: DEFAULT_PAGE_LIMIT, context: Context::new() }
    }

    /// Only vectors after `cursor`.
    pub fn after(mut self, cursor: Option<EmbeddingCursor>) -> Self {
        self.after = cursor;
        self
    }

    page_setters!(limit);

    context_setter!(tenant);

    /// Checks the page size; backends call this first.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a limit of 0 or over the maximum (`limit`).
    pub fn validate(&self) -> Result<()> {
        validate_limit(self.limit)
    }

    /// Whether the vector of model `model` of the message at `seq` comes after the cursor: what
    /// a backend that scans applies.
    pub fn admits(&self, seq: u64, model: &str) -> bool {
        self.after.as_ref().is_none_or(|after| (seq, model) > (after.seq, after.model.as_str()))
    }

    /// The page of `fetched` (up to `limit + 1` vectors after the cursor, in any order: one more
    /// than the limit says more follow).
    pub fn page(&self, mut fetched: Vec<StoredEmbedding>) -> Page<StoredEmbedding, EmbeddingCursor> {
        fetched.sort_by(|a, b| (a.seq, a.embedding.model()).cmp(&(b.seq, b.embedding.model())));
        lookahead(fetched, self.limit, EmbeddingCursor::of)
    }

    /// The request for the page after `page`, if more follow.
    pub fn next_page(&self, page: &Page<StoredEmbedding, EmbeddingCursor>) -> Option<Self> {
        let cursor = page.next_cursor.clone().filter(|_| page.has_more)?;
        Some(self.clone().after(Some(cursor)))
    }
}

/// A vector a [`ListEmbeddings`] read: its message, the fields of the message a
/// [`Nearest`](crate::vector::Nearest) filters on (role, status, creation time), and the
/// embedding stored for it. An index derived from the rows (persist-recall's `VectorIndex`)
/// builds from these alone, without reading the messages' content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoredEmbedding {
    /// The message.
    pub message_id: MessageId,
    /// The message's seq in its thread.
    pub seq: u64,
    /// The model and the vector, scaled to length 1.
    pub embedding: Embedding,
    /// The message's role.
    pub role: Role,
    /// The message's status (never `Reserved`: a reservation has no vector).
    pub status: Status,
    /// When the message was created.
    pub created_at: Timestamp,
}

impl StoredEmbedding {
    /// The vector `embedding` of message `message_id` at `seq`, of `role` and `status`, created
    /// at `created_at`.
    pub fn new(
        message_id: MessageId,
        seq: u64,
        embedding: Embedding,
        role: Role,
        status: Status,
        created_at: Timestamp,
    ) -> Self {
        Self { message_id, seq, embedding, role, status, created_at }
    }
}

/// Where a [`ListEmbeddings`] page stopped: its last vector's message seq and model.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EmbeddingCursor {
    /// The last vector's message seq.
    pub seq: u64,
    /// The last vector's model.
    pub model: String,
}

impl EmbeddingCursor {
    /// The cursor just past the vector of `model` of the message at `seq`.
    pub fn new(seq: u64, model: impl Into<String>) -> Self {
        Self { seq, model: model.into() }
    }

    /// The cursor just past `stored`.
    pub fn of(stored: &StoredEmbedding) -> Self {
        Self::new(stored.seq, stored.embedding.model())
    }
}
