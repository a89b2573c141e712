//! Embeddings as data: a message's [`Embedding`] written by [`Embed`], and [`Nearest`], the read
//! that finds the messages whose embeddings are closest to a query's.
//!
//! # What is stored
//!
//! An embedding is a model id, its dimensions and a vector of `f32`, stored beside its message:
//! one per message and model (an `Embed` of the same model again replaces it, which is how a
//! background job re-embeds). It is written through the pipeline like any write, confined to its
//! tenant (a message of another tenant is `NotFound`), and it goes with its message: a delete of
//! the message or its thread, a clear, a purge, retention and truncation remove it in their own
//! transaction, and a write that changes the content of a finished message removes it (its
//! meaning changed; embed the new content). A reservation's content is not final: embedding it is
//! refused.
//!
//! An embed is an event of the [feed](crate::feed): a store that keeps one records, in the
//! embed's transaction, an event of op [`Embed`](crate::PersistOp::Embed) naming the message (its
//! id, seq and version; no status, no delta), so an index derived from the vectors (built from
//! [`ListEmbeddings`], then kept up to date from the feed) learns of a vector another process
//! wrote. A vector an `add`, a turn or a restore carries is covered by its message's insert
//! event; whatever removes a vector has the event of the message's removal or content change.
//!
//! Within a tenant a model has one dimension: the first vector of a model fixes it (for good:
//! the store keeps each model's dimensions after its vectors are gone), and a vector or a query
//! of that model with another length is `InvalidInput`, as is a query of a model the tenant never
//! stored a vector of while it stored others'. Nothing is ever compared across models or
//! lengths (a store written with one and read with another answers an error, never a silent
//! nonsense ranking).
//!
//! # Nearest
//!
//! [`Nearest`] answers up to `limit` messages, most similar first, by cosine similarity (vectors
//! are stored normalized, so it is their dot product), ties by thread id and seq; complete or
//! interrupted messages only, of live threads, of the context's tenant: one thread, every thread
//! of the tenant, or the threads whose metadata holds a filter (a user's or a resource's, as the
//! host names it: [`Nearest::for_resource`]). Every backend ranks exactly (an exact scan of the
//! scope's vectors), so the same store answers the same hits everywhere.
//!
//! # Reading them back
//!
//! [`ListEmbeddings`] pages the vectors stored for a thread's messages (by seq, then model), as
//! stored: what a copy of a store (an export, `persist copy`, a fork, a tenant's move) reads to
//! write them again with `Embed`.
//!
//! A store whose content an encryption layer seals refuses these requests unless the host opts in
//! to clear vectors: a vector leaks what its text means.
//!
//! # Example
//!
//! ```
//! use persist::memory::MemoryBackend;
//! use persist::vector::{Embed, Embedding, Nearest};
//! use persist::{args::Add, Content, Pipeline, Role, ThreadId};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pipeline = Pipeline::builder().build(MemoryBackend::new());
//! let thread = ThreadId::new("trip")?;
//! let added = pipeline.add(Add::new(thread.clone(), Role::User, Content::text("Lisbon in May?"))).await?;
//! let vector = Embedding::new("my-model", vec![0.9, 0.1, 0.0]);
//! pipeline.embed(Embed::new(thread.clone(), added.message.id.clone(), vector)).await?;
//!
//! let found = pipeline.nearest(Nearest::new(Embedding::new("my-model", vec![1.0, 0.0, 0.0]))).await?;
//! assert_eq!(found[0].message.id, added.message.id);
//! assert!(found[0].score > 0.99);
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

use serde::{Deserialize, Serialize};

use crate::context::{Context, context_setter};
pub use crate::model::embedding::{Embedding, MAX_DIMENSIONS, MAX_MODEL_BYTES};
use crate::model::error::{PersistError, Result};
use crate::model::id::{MessageId, TenantId, ThreadId};
use crate::model::{Message, Role, Status, Timestamp};
use crate::request::filter::MessageFilter;
pub use crate::request::stored_vectors::{EmbeddingCursor, ListEmbeddings, StoredEmbedding};

/// The most hits a [`Nearest`] answers.
pub const MAX_NEAREST: u32 = 1000;

/// The default number of hits of a [`Nearest`].
pub const DEFAULT_NEAREST: u32 = 10;

/// The dot product of two vectors of one length (of unit vectors: their cosine similarity),
/// summed in `f64` and in order, so every backend that scans computes the same number.
pub fn similarity(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum::<f64>() as f32
}

/// [`similarity`] of `unit` and a vector stored as [`to_bytes`] wrote it, read from its bytes
/// without copying them; `None` when they are not a vector of `unit`'s length.
pub fn similarity_to_bytes(unit: &[f32], bytes: &[u8]) -> Option<f32> {
    if bytes.len() != unit.len() * 4 {
        return None;
    }
    let sum: f64 = bytes
        .chunks_exact(4)
        .zip(unit)
        .map(|(b, &q)| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])) * f64::from(q))
        .sum();
    Some(sum as f32)
}

/// A vector as stored in a column of bytes: each number's 4 bytes, little-endian.
pub fn to_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A vector read back from [`to_bytes`]; `None` when the length is not a multiple of 4.
pub fn from_bytes(bytes: &[u8]) -> Option<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

/// The error of a vector or query whose length is not its model's in this store.
pub fn dimensions_mismatch(model: &str, stored: usize, given: usize) -> PersistError {
    PersistError::invalid(
        "embedding",
        format!("model `{model}` has {stored} dimensions in this store; this vector has {given}"),
    )
}

/// The error of a query of a model no stored vector uses, while `others` are stored:
/// `InvalidInput` on the field `model` (another length than the model's is on `embedding`), so a
/// read across several stores can tell a store without the model from a bad query.
pub fn unknown_model(model: &str, others: &[String]) -> PersistError {
    PersistError::invalid(
        "model",
        format!(
            "no vector of model `{model}` is stored here (the stored ones are of {}): \
             a query is compared with vectors of its own model only",
            others.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
        ),
    )
}

/// Writes a message's embedding; see the [module docs](self).
///
/// Answers [`Embedded`]. Errors: `NotFound` when the message does not exist in the context's
/// tenant; `VersionConflict` when [`expected_version`](Self::expected_version) is set and the
/// message has moved on (its embedding would describe content it no longer holds);
/// `InvalidInput` for a bad vector, one of another length than the model's in this tenant, or a
/// message still `Reserved`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Embed {
    /// The thread.
    pub thread_id: ThreadId,
    /// The message.
    pub message_id: MessageId,
    /// The vector and its model.
    pub embedding: Embedding,
    /// Write only if the message is at this version (the one whose content was embedded).
    pub expected_version: Option<u64>,
    /// Who is asking.
    #[serde(skip)]
    pub context: Context,
}

impl Embed {
    /// The embedding of message `message_id` of `thread_id`.
    pub fn new(thread_id: ThreadId, message_id: MessageId, embedding: Embedding) -> Self {
        Self { thread_id, message_id, embedding, expected_version: None, context: Context::new() }
    }

    /// Writes only if the message is at `version`.
    pub fn with_expected_version(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }

    context_setter!();

    /// Checks the request; backends call this first.
    ///
    /// # Errors
    ///
    /// As [`Embedding::validate`].
    pub fn validate(&self) -> Result<()> {
        self.embedding.validate()
    }

    /// The error of embedding a reservation.
    pub fn reserved(&self) -> PersistError {
        PersistError::invalid(
            "message_id",
            format!("{} is still reserved: embed its content once it is finished", self.message_id),
        )
    }

    /// The error of a message at another version than [`expected_version`](Self::expected_version).
    pub fn conflict(&self, actual: u64) -> PersistError {
        PersistError::VersionConflict {
            thread_id: self.thread_id.clone(),
            message_id: Some(self.message_id.clone()),
            expected: self.expected_version.unwrap_or_default(),
            actual,
        }
    }
}

/// Answer to an [`Embed`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Embedded {
    /// The thread.
    pub thread_id: ThreadId,
    /// The message.
    pub message_id: MessageId,
    /// The message's version the embedding describes.
    pub version: u64,
}

impl Embedded {
    /// The answer for message `message_id` of `thread_id` at `version`.
    pub fn new(thread_id: ThreadId, message_id: MessageId, version: u64) -> Self {
        Self { thread_id, message_id, version }
    }
}

/// Finds the messages whose embeddings are nearest a query's; see the [module docs](self).
///
/// # Example
///
/// ```
/// use persist::vector::{Embedding, Nearest};
/// use persist::{Role, ThreadId};
///
/// let query = Nearest::new(Embedding::new("m", vec![0.1, 0.2]))
///     .for_resource("user_id", "u_42")
///     .with_roles([Role::User])
///     .with_limit(5);
/// assert_eq!(query.filter.thread_filter.get("user_id"), Some(&"u_42".into()));
/// assert!(query.validate().is_ok());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Nearest {
    /// The query's vector and model.
    pub query: Embedding,
    /// Only this thread's messages (every thread of the tenant when `None`).
    pub thread_id: Option<ThreadId>,
    /// Which messages: roles, time range, thread metadata (a user's or a resource's threads).
    pub filter: MessageFilter,
    /// Only interrupted messages (`Some(true)`), only complete ones (`Some(false)`), or both.
    pub interrupted: Option<bool>,
    /// How many hits, 1 to [`MAX_NEAREST`] (default [`DEFAULT_NEAREST`]).
    pub limit: u32,
    /// Whether an approximate answer will do (see [`approximate`](Self::approximate)).
    pub approximate: bool,
    /// Who is asking: its tenant's messages are searched.
    pub context: Context,
}

impl Nearest {
    /// The [`DEFAULT_NEAREST`] messages of the context's tenant nearest `query`.
    pub fn new(query: Embedding) -> Self {
        Self {
            query,
            thread_id: None,
            filter: MessageFilter::new(),
            interrupted: None,
            limit: DEFAULT_NEAREST,
            approximate: false,
            context: Context::new(),
        }
    }

    /// Only messages of `thread_id`.
    pub fn in_thread(mut self, thread_id: ThreadId) -> Self {
        self.thread_id = Some(thread_id);
        self
    }

    message_filter_setters!(filter);

    /// Only interrupted messages (`true`) or only complete ones (`false`).
    pub fn only_interrupted(mut self, interrupted: bool) -> Self {
        self.interrupted = Some(interrupted);
        self
    }

    /// An approximate answer will do: an index that holds a quantized copy of the vectors (the
    /// vector index of persist-recall) may rank them by it and score exactly only the best few
    /// times `limit`, which reads a quarter of the bytes; the hits it answers carry their exact
    /// scores, in the exact order, but one of the exact answer's may be missing (its measured
    /// recall is in the index's docs). A store answers it exactly (an exact answer is a valid
    /// approximate one). The default is exact.
    pub fn approximate(mut self) -> Self {
        self.approximate = true;
        self
    }

    page_setters!(limit);

    context_setter!(tenant);

    /// Checks the request; backends call this first.
    ///
    /// # Errors
    ///
    /// [`PersistError::InvalidInput`] for a bad query vector (`embedding`), a limit of 0 or over
    /// [`MAX_NEAREST`] (`limit`), a time range that holds no instant (`until`), or a filter no
    /// metadata can hold (`thread_filter`).
    pub fn validate(&self) -> Result<()> {
        self.query.validate()?;
        if self.limit == 0 || self.limit > MAX_NEAREST {
            return Err(PersistError::invalid(
                "limit",
                format!("must be between 1 and {MAX_NEAREST}, got {}", self.limit),
            ));
        }
        self.filter.validate()
    }

    /// Whether a message passes the filters other than its thread's (role, time range,
    /// status): what a backend that scans applies.
    pub fn admits(&self, message: &Message) -> bool {
        self.admits_fields(&message.role, message.status, message.created_at)
    }

    /// [`admits`](Self::admits) of a message of `role` and `status` created at `created_at`:
    /// what an index that holds those fields beside each vector applies.
    pub fn admits_fields(&self, role: &Role, status: Status, created_at: Timestamp) -> bool {
        let status_ok = match self.interrupted {
            None => status != Status::Reserved,
            Some(true) => status == Status::Interrupted,
            Some(false) => status == Status::Complete,
        };
        status_ok && self.filter.admits_fields(role, created_at)
    }

    /// The answer from `scored` candidates (each with its thread's tenant and its similarity):
    /// the [`limit`](Self::limit) best, most similar first, ties by thread id and seq.
    pub fn answer(&self, mut scored: Vec<Neighbour>) -> Vec<Neighbour> {
        scored.sort_by(nearest_first);
        scored.truncate(self.limit as usize);
        scored
    }
}

/// The order of hits: most similar first, ties by thread id, then seq, ascending.
pub fn nearest_first(a: &Neighbour, b: &Neighbour) -> std::cmp::Ordering {
    b.score
        .total_cmp(&a.score)
        .then_with(|| a.message.thread_id.as_str().cmp(b.message.thread_id.as_str()))
        .then(a.message.seq.cmp(&b.message.seq))
}

/// A message a [`Nearest`] found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Neighbour {
    /// The tenant of the message's thread, if any.
    pub tenant: Option<TenantId>,
    /// The message.
    pub message: Message,
    /// Its cosine similarity to the query, from -1 to 1 (higher is nearer).
    pub score: f32,
}

impl Neighbour {
    /// `message`, of `tenant`, at `score`.
    pub fn new(tenant: Option<TenantId>, message: Message, score: f32) -> Self {
        Self { tenant, message, score }
    }
}
