//! [`Recall`]: the earlier messages most like a text, with their neighbours, for a model's
//! context: nearest by vector, optionally fused with full-text search.

use std::collections::{BTreeSet, HashMap};

use persist_core::read::{GetMessage, ListMessages, MessageFilter};
use persist_core::search::Search;
use persist_core::vector::{Embedding, Nearest, Neighbour};
use persist_core::{Context, Message, MessageId, Order, PersistError, Pipeline, Result, Scoped, TenantId, ThreadId};

use crate::embedder::Embedder;

/// The most hits a recall answers.
pub const MAX_RECALL: u32 = 100;

/// The most neighbours a hit takes on each side.
pub const MAX_MESSAGE_RANGE: u32 = 50;

/// The constant of reciprocal rank fusion: a hit ranked `r` (from 1) by one list adds
/// `1 / (RRF_K + r)` to its score (60, as its authors and most engines use).
pub const RRF_K: f32 = 60.0;

/// Recalls the messages of a thread, a tenant or a user's threads most like a text; see
/// [`RecallExt::recall`].
///
/// # Example
///
/// ```
/// use persist::recall::Recall;
///
/// let recall = Recall::new("where did we plan to eat?")
///     .for_resource("user_id", "u_42")
///     .with_keywords("restaurant")
///     .with_message_range(1, 1)
///     .with_limit(5);
/// assert_eq!(recall.limit, 5);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Recall {
    /// The text to recall by (the user's new message, say): embedded by the embedder.
    pub text: String,
    /// Words the messages must hold, for hybrid ranking: a full-text search (with
    /// [`Search`]'s rules) whose ranking is fused with the vectors' (reciprocal rank fusion).
    /// `None`: vectors only.
    pub keywords: Option<String>,
    /// Only this thread (every thread of the tenant when `None`).
    pub thread_id: Option<ThreadId>,
    /// Which messages: roles, time range, thread metadata (a user's, a resource's threads).
    pub filter: MessageFilter,
    /// How many hits, 1 to [`MAX_RECALL`] (default 10).
    pub limit: u32,
    /// How many candidates each ranking gives the fusion (default 4 × `limit`, at least 20).
    pub candidates: Option<u32>,
    /// Messages before each hit to bring with it (`message_range` elsewhere).
    pub before: u32,
    /// Messages after each hit to bring with it.
    pub after: u32,
    /// Who is asking: its tenant's messages are recalled.
    pub context: Context,
}

impl Recall {
    /// The 10 messages of the context's tenant most like `text`.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            keywords: None,
            thread_id: None,
            filter: MessageFilter::new(),
            limit: 10,
            candidates: None,
            before: 0,
            after: 0,
            context: Context::new(),
        }
    }

    /// Fuses the ranking of a full-text search for `keywords` with the vectors'.
    pub fn with_keywords(mut self, keywords: impl Into<String>) -> Self {
        self.keywords = Some(keywords.into());
        self
    }

    /// Only messages of `thread_id`.
    pub fn in_thread(mut self, thread_id: ThreadId) -> Self {
        self.thread_id = Some(thread_id);
        self
    }

    persist_core::message_filter_setters!(filter);

    persist_core::page_setters!(limit);

    /// How many candidates each ranking gives the fusion.
    pub fn with_candidates(mut self, candidates: u32) -> Self {
        self.candidates = Some(candidates);
        self
    }

    /// Brings `before` messages before each hit and `after` after it (of its thread, by seq).
    pub fn with_message_range(mut self, before: u32, after: u32) -> Self {
        (self.before, self.after) = (before, after);
        self
    }

    persist_core::raw::context_setter!();

    fn candidates(&self) -> u32 {
        self.candidates.unwrap_or((self.limit * 4).max(20)).max(self.limit)
    }

    /// Checks the request.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an empty text (`text`), a limit of 0 or over [`MAX_RECALL`] (`limit`),
    /// candidates over [`MAX_NEAREST`](persist_core::vector::MAX_NEAREST) (`candidates`), a range
    /// over [`MAX_MESSAGE_RANGE`] (`before`, `after`), and what [`Nearest`] and [`Search`] refuse.
    pub fn validate(&self) -> Result<()> {
        if self.text.trim().is_empty() {
            return Err(PersistError::invalid("text", "is empty: there is nothing to recall by"));
        }
        if self.limit == 0 || self.limit > MAX_RECALL {
            return Err(PersistError::invalid(
                "limit",
                format!("must be between 1 and {MAX_RECALL}, got {}", self.limit),
            ));
        }
        if self.candidates() > persist_core::vector::MAX_NEAREST {
            let most = persist_core::vector::MAX_NEAREST;
            return Err(PersistError::invalid("candidates", format!("must be at most {most}")));
        }
        for (field, range) in [("before", self.before), ("after", self.after)] {
            if range > MAX_MESSAGE_RANGE {
                return Err(PersistError::invalid(field, format!("must be at most {MAX_MESSAGE_RANGE}, got {range}")));
            }
        }
        if let Some(search) = self.search() {
            search.validate()?;
        }
        self.filter.validate()
    }

    fn nearest(&self, query: Embedding) -> Nearest {
        let mut nearest = Nearest::new(query)
            .with_filter(self.filter.clone())
            .with_limit(if self.keywords.is_some() { self.candidates() } else { self.limit })
            .with_context(self.context.renewed());
        nearest.thread_id = self.thread_id.clone();
        nearest
    }

    fn search(&self) -> Option<Search> {
        let keywords = self.keywords.as_ref()?;
        let mut search = Search::new(keywords.clone())
            .with_filter(self.filter.clone())
            .with_limit(self.candidates().min(persist_core::read::MAX_PAGE_LIMIT))
            .with_context(self.context.renewed());
        if let Some(thread) = &self.thread_id {
            search = search.in_thread(thread.clone());
        }
        Some(search)
    }
}

/// What a [`Recall`] found: its hits, best first.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Recalled {
    /// The hits, best first.
    pub hits: Vec<RecallHit>,
}

impl Recalled {
    /// Every hit with its neighbours, each message once, thread by thread (in the order of each
    /// thread's best hit), in seq order within a thread: what a model is given.
    pub fn messages(&self) -> Vec<Message> {
        let mut threads: Vec<&ThreadId> = Vec::new();
        let mut by_thread: HashMap<&ThreadId, BTreeSet<(u64, usize, usize)>> = HashMap::new();
        for (h, hit) in self.hits.iter().enumerate() {
            let thread = &hit.message.thread_id;
            if !by_thread.contains_key(thread) {
                threads.push(thread);
            }
            let seqs = by_thread.entry(thread).or_default();
            for (m, message) in hit.context().enumerate() {
                seqs.insert((message.seq, h, m));
            }
        }
        let mut out = Vec::new();
        for thread in threads {
            let mut last = None;
            for &(seq, h, m) in &by_thread[thread] {
                if last != Some(seq) {
                    out.extend(self.hits[h].context().nth(m).cloned());
                    last = Some(seq);
                }
            }
        }
        out
    }
}

/// A message a [`Recall`] found, with its neighbours.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RecallHit {
    /// The tenant of its thread, if any.
    pub tenant: Option<TenantId>,
    /// The message.
    pub message: Message,
    /// Its score: the similarity without keywords; with them, the reciprocal rank fusion of its
    /// places in both rankings (higher is better).
    pub score: f32,
    /// Its cosine similarity to the text, when the vectors ranked it.
    pub similarity: Option<f32>,
    /// Its place in the full-text ranking (from 1), when keywords found it.
    pub text_place: Option<u32>,
    /// The messages before it, in seq order.
    pub before: Vec<Message>,
    /// The messages after it, in seq order.
    pub after: Vec<Message>,
}

impl RecallHit {
    /// The hit and its neighbours, in seq order.
    pub fn context(&self) -> impl Iterator<Item = &Message> {
        self.before.iter().chain(std::iter::once(&self.message)).chain(&self.after)
    }
}

/// Recall on a [`Pipeline`] or a tenant-bound [`Scoped`] handle.
pub trait RecallExt: sealed::Sealed {
    /// The messages most like `recall.text`, with their neighbours, through the pipeline: the
    /// text embedded by `embedder`, a [`Nearest`] read; with keywords, a [`Search`] too, the two
    /// rankings fused by reciprocal rank fusion ([`RRF_K`]); then each hit's neighbours, read
    /// with [`ListMessages`]. Complete or interrupted messages only, of the context's tenant (a
    /// `Scoped` handle's).
    ///
    /// The full-text side ranks the newest [`candidates`](Recall#structfield.candidates) messages holding
    /// every keyword by their density of them ([`SearchHit::rank`](persist_core::search::SearchHit::rank)).
    ///
    /// # Example
    ///
    /// ```
    /// use persist::memory::MemoryBackend;
    /// use persist::recall::{AutoEmbedLayer, HashEmbedder, Recall, RecallExt};
    /// use persist::{args::Add, Content, Pipeline, Role, ThreadId};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let embedder = HashEmbedder::new(256);
    /// let pipeline = Pipeline::builder().layer(AutoEmbedLayer::new(embedder.clone())).build(MemoryBackend::new());
    /// let thread = ThreadId::new("t1")?;
    /// for text in ["My sister lives in Lisbon", "I like green tea", "Book the flight for Friday"] {
    ///     pipeline.add(Add::new(thread.clone(), Role::User, Content::text(text))).await?;
    /// }
    /// let found = pipeline.recall(&embedder, Recall::new("who lives in Lisbon?").with_limit(1).with_message_range(0, 1)).await?;
    /// assert_eq!(found.hits[0].message.content.to_text(), "My sister lives in Lisbon");
    /// assert_eq!(found.messages().len(), 2); // and the one after it
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// What [`Recall::validate`] refuses; the embedder's error; what the reads answer
    /// (`InvalidInput` for a model or a dimension other than the stored vectors', `Unsupported`
    /// through an `EncryptLayer` that does not allow clear vectors).
    fn recall(&self, embedder: &dyn Embedder, recall: Recall) -> impl Future<Output = Result<Recalled>> + Send;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for persist_core::Pipeline {}
    impl Sealed for persist_core::Scoped {}
}

impl RecallExt for Pipeline {
    fn recall(&self, embedder: &dyn Embedder, recall: Recall) -> impl Future<Output = Result<Recalled>> + Send {
        run(self.clone(), embedder, recall)
    }
}

impl RecallExt for Scoped {
    fn recall(&self, embedder: &dyn Embedder, recall: Recall) -> impl Future<Output = Result<Recalled>> + Send {
        let recall = recall.with_context(self.context().renewed());
        run(persist_core::raw::scoped_pipeline(self).clone(), embedder, recall)
    }
}

/// A candidate of the fusion: where each ranking placed it.
struct Candidate {
    tenant: Option<TenantId>,
    thread_id: ThreadId,
    message_id: MessageId,
    /// Read by the vectors' ranking; a hit of the text's only is read once it makes the cut.
    message: Option<Message>,
    similarity: Option<f32>,
    vector_place: Option<u32>,
    text_place: Option<u32>,
}

fn place(at: usize) -> Option<u32> {
    Some(u32::try_from(at + 1).unwrap_or(u32::MAX))
}

async fn run(pipeline: Pipeline, embedder: &dyn Embedder, recall: Recall) -> Result<Recalled> {
    recall.validate()?;
    let vectors = embedder.embed(std::slice::from_ref(&recall.text)).await?;
    let Some(vector) = vectors.into_iter().next() else {
        return Err(PersistError::Backend { message: "the embedder answered no vector".into(), source: None });
    };
    let nearest = pipeline.nearest(recall.nearest(Embedding::new(embedder.model(), vector))).await?;
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut index: HashMap<(ThreadId, MessageId), usize> = HashMap::new();
    for (at, Neighbour { tenant, message, score, .. }) in nearest.into_iter().enumerate() {
        index.insert((message.thread_id.clone(), message.id.clone()), candidates.len());
        candidates.push(Candidate {
            tenant,
            thread_id: message.thread_id.clone(),
            message_id: message.id.clone(),
            message: Some(message),
            similarity: Some(score),
            vector_place: place(at),
            text_place: None,
        });
    }
    if let Some(search) = recall.search() {
        let mut found = pipeline.search(search).await?.items;
        // Best first by density; the page's order (newest first) breaks ties.
        found.sort_by(|a, b| b.rank.total_cmp(&a.rank));
        for (at, hit) in found.into_iter().enumerate() {
            let key = (hit.thread_id.clone(), hit.message_id.clone());
            match index.get(&key) {
                Some(&known) => candidates[known].text_place = place(at),
                None => {
                    index.insert(key, candidates.len());
                    candidates.push(Candidate {
                        tenant: hit.tenant,
                        thread_id: hit.thread_id,
                        message_id: hit.message_id,
                        message: None,
                        similarity: None,
                        vector_place: None,
                        text_place: place(at),
                    });
                }
            }
        }
    }
    let fused = |c: &Candidate| match recall.keywords {
        None => c.similarity.unwrap_or_default(),
        Some(_) => [c.vector_place, c.text_place].into_iter().flatten().map(|place| 1.0 / (RRF_K + place as f32)).sum(),
    };
    let mut ranked: Vec<(f32, Candidate)> = candidates.into_iter().map(|c| (fused(&c), c)).collect();
    // Ties: the nearer by vector, then the better by text, then thread and seq order of arrival.
    ranked.sort_by(|(a, ca), (b, cb)| {
        b.total_cmp(a)
            .then_with(|| cb.similarity.unwrap_or(-2.0).total_cmp(&ca.similarity.unwrap_or(-2.0)))
            .then_with(|| ca.text_place.unwrap_or(u32::MAX).cmp(&cb.text_place.unwrap_or(u32::MAX)))
    });
    let mut hits = Vec::with_capacity(recall.limit as usize);
    for (score, candidate) in ranked {
        if hits.len() == recall.limit as usize {
            break;
        }
        let Candidate { tenant, thread_id, message_id, message, similarity, text_place, .. } = candidate;
        let message = match message {
            Some(message) => message,
            None => {
                let get = GetMessage::new(thread_id, message_id).with_context(recall.context.renewed());
                match pipeline.get(get).await? {
                    Some(message) => message,
                    // Deleted since the search.
                    None => continue,
                }
            }
        };
        let (before, after) = neighbours(&pipeline, &recall, &message).await?;
        hits.push(RecallHit { tenant, message, score, similarity, text_place, before, after });
    }
    Ok(Recalled { hits })
}

/// The `recall.before` messages before `message` and the `recall.after` after it, of its thread,
/// in seq order (reservations still streaming left out).
async fn neighbours(pipeline: &Pipeline, recall: &Recall, message: &Message) -> Result<(Vec<Message>, Vec<Message>)> {
    let listing = || ListMessages::new(message.thread_id.clone()).with_context(recall.context.renewed());
    let mut before = Vec::new();
    if recall.before > 0 {
        let page =
            pipeline.list(listing().before(message.seq).with_order(Order::Desc).with_limit(recall.before)).await?;
        before = page.items;
        before.reverse();
    }
    let mut after = Vec::new();
    if recall.after > 0 {
        after = pipeline.list(listing().after(message.seq).with_limit(recall.after)).await?.items;
    }
    Ok((before, after))
}
