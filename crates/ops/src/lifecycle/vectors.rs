//! [`ThreadVectors`]: the one reader of a thread's vectors, page by page in seq order, that
//! every copy of a thread reads them with.

use std::collections::VecDeque;

use persist_core::vector::{Embedding, ListEmbeddings, StoredEmbedding};
use persist_core::{Context, Message, PersistError, Pipeline, Result, ThreadId};

use persist_core::read::MAX_PAGE_LIMIT;

/// The vectors a store holds for one thread's messages (see [`vector`](persist_core::vector)),
/// read a page at a time (`ListEmbeddings`), in seq order then by model: what a copy of a thread
/// carries with each message. A [fork](crate::PipelineExt::fork) reads them along the messages
/// it copies, the command line's `export` and `copy` along the messages they write, and `copy`
/// whole to check what it wrote, a tenant's move between shards (`persist-shard`) whole. One reader, so that every copy pairs a vector with its message
/// alike: by seq and message id, a vector of a message the copy does not carry passed over.
///
/// # Example
///
/// ```
/// use persist::lifecycle::ThreadVectors;
/// use persist::vector::Embedding;
/// use persist::{args::Add, memory::MemoryBackend, Content, Context, Pipeline, Role, ThreadId};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let pipeline = Pipeline::new(MemoryBackend::new());
/// let thread = ThreadId::new("t1")?;
/// let mut messages = Vec::new();
/// for (text, vector) in [("east", [1.0, 0.0]), ("north", [0.0, 1.0])] {
///     let add = Add::new(thread.clone(), Role::User, Content::text(text));
///     messages.push(pipeline.add(add.with_embedding(Embedding::new("m", vector.to_vec()))).await?.message);
/// }
/// let mut vectors = ThreadVectors::new(&pipeline, thread, Context::new());
/// for message in &messages {
///     assert_eq!(vectors.of_message(&pipeline, message).await?.len(), 1);
/// }
/// # Ok::<_, persist::PersistError>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct ThreadVectors {
    /// The next page to read: `None` after the last, or when the store keeps no vectors.
    next: Option<ListEmbeddings>,
    /// What was read and not yet asked for.
    read: VecDeque<StoredEmbedding>,
    /// Whether a refusal to read vectors (`Unsupported`) reads as none.
    refused_as_none: bool,
}

impl ThreadVectors {
    /// The vectors of `thread`, read with `context` (its tenant is the thread's; each page is
    /// asked with it [renewed](Context::renewed)): none when `pipeline`'s store keeps none (it
    /// does not declare [`vectors`](persist_core::Capabilities::vectors)), without a read.
    pub fn new(pipeline: &Pipeline, thread: ThreadId, context: Context) -> Self {
        let next = pipeline
            .capabilities()
            .vectors
            .then(|| ListEmbeddings::new(thread).with_limit(MAX_PAGE_LIMIT).with_context(context));
        Self { next, read: VecDeque::new(), refused_as_none: false }
    }

    /// Reads a stack's refusal to read vectors (`Unsupported`: an encryption layer that keeps
    /// them sealed) as no vectors: for a copy through that stack, which holds none to carry. A
    /// copy that must not lose them unnoticed (a backup) keeps the refusal.
    pub fn refused_as_none(mut self) -> Self {
        self.refused_as_none = true;
        self
    }

    /// The vectors of `message`, by model. Ask it of the thread's messages in seq order: the
    /// vectors of a message passed over (not asked for) are skipped, and so are those of
    /// another message at the same seq (a copy of another thread's message).
    ///
    /// # Errors
    ///
    /// The first error of a page's read (not `Unsupported` after
    /// [`refused_as_none`](Self::refused_as_none)); the reader can be asked again.
    pub async fn of_message(&mut self, pipeline: &Pipeline, message: &Message) -> Result<Vec<Embedding>> {
        let mut found = Vec::new();
        loop {
            while let Some(stored) = self.read.pop_front() {
                if stored.seq > message.seq {
                    self.read.push_front(stored);
                    return Ok(found);
                }
                if stored.seq == message.seq && stored.message_id == message.id {
                    found.push(stored.embedding);
                }
            }
            if !self.read_page(pipeline).await? {
                return Ok(found);
            }
        }
    }

    /// The next vector of the thread, in seq order then by model; `None` after the last.
    ///
    /// # Errors
    ///
    /// As [`of_message`](Self::of_message).
    pub async fn next(&mut self, pipeline: &Pipeline) -> Result<Option<StoredEmbedding>> {
        loop {
            if let Some(stored) = self.read.pop_front() {
                return Ok(Some(stored));
            }
            if !self.read_page(pipeline).await? {
                return Ok(None);
            }
        }
    }

    /// Reads the next page into `read`: `false` when there is none to read.
    async fn read_page(&mut self, pipeline: &Pipeline) -> Result<bool> {
        let Some(query) = self.next.take() else { return Ok(false) };
        match pipeline.embeddings(query.clone().with_context(query.context.renewed())).await {
            Ok(page) => {
                self.next = query.next_page(&page);
                self.read.extend(page.items);
                Ok(true)
            }
            Err(PersistError::Unsupported { .. }) if self.refused_as_none => Ok(false),
            Err(error) => {
                self.next = Some(query);
                Err(error)
            }
        }
    }
}
