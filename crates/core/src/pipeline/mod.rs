//! The pipeline: [`Pipeline`], the handle a host app calls, over a stack its
//! [`PipelineBuilder`] built of layers and a backend's [`Terminal`]. A request goes down
//! through every layer to the terminal, which hands it to the [`Backend`]; the answer comes
//! back up the same way. [`Scoped`] confines a pipeline to one tenant; a
//! [`Subscription`](crate::feed::Subscription) follows the feed through it.

mod backend;
mod builder;
mod capabilities;
pub(crate) mod scoped;
mod terminal;

pub use self::backend::BoxFuture;
pub use self::backend::{ApplyNow, Backend, Capabilities};
use self::builder::ErasedStack;
pub use self::builder::PipelineBuilder;
pub use self::scoped::Scoped;
pub use self::terminal::{Terminal, TerminalFuture};

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::Service;
use tower::layer::util::Identity;
use tower::util::BoxCloneSyncService;

use crate::args::{Add, AppendTurn, Delete, PersistArgs, Reserve, Restore, Update, UpdateContent};
use crate::branch::{Branches, ListBranches};
use crate::feed::{FeedHub, FeedPage, ReadFeed, Subscription};
use crate::model::error::{PersistError, Result};
use crate::model::{Message, Thread};
use crate::read::{FindStranded, GetMessage, GetThread, ListMessages, ListThreads, Page, Ping, Stranded, ThreadCursor};
use crate::request::result::{
    Added, ContentUpdated, Deleted, PersistResult, Reserved, Restored, TurnAppended, Updated,
};
use crate::session::{
    Bind, InvalidateSession, ListBindings, ResetSession, Resolution, Resolve, SessionBinding, StoredBinding,
};

/// Any stack, type-erased: what layers like `Route` and `Mirror` forward to.
pub type BoxPersistService = BoxCloneSyncService<PersistArgs, PersistResult, PersistError>;

/// A built stack over a backend: the handle host apps use.
///
/// Cloning is cheap and clones share the backend. **Every call goes through every layer**:
/// writes ([`add`](Self::add), [`reserve`](Self::reserve),
/// [`update_content`](Self::update_content), [`update`](Self::update),
/// [`delete`](Self::delete)), reads ([`get`](Self::get), [`get_thread`](Self::get_thread),
/// [`list`](Self::list), [`threads`](Self::threads), [`find_stranded`](Self::find_stranded)),
/// session requests ([`bind`](Self::bind), [`resolve`](Self::resolve),
/// [`reset_session`](Self::reset_session), [`invalidate_session`](Self::invalidate_session)),
/// [`ping`](Self::ping), or [`execute`](Self::execute) for any [`PersistArgs`]. A `Pipeline`
/// is itself a `tower::Service` and a [`Backend`], so it can be the target of a route or the
/// backend of another pipeline.
///
/// Every write does nothing until its future is polled. It then runs on the one instance of
/// the stack the pipeline keeps, or on a clone of it when that instance is busy (another task
/// is calling it) or was not ready: state a layer keeps in its service may or may not carry
/// over to the next write, so state meant to span writes belongs behind an `Arc` every clone
/// shares.
///
/// # Example
///
/// ```
/// use persist::{args::{Add, Reserve, UpdateContent}, read::ListMessages};
/// use persist::{Content, Pipeline, Role, Status, ThreadId};
/// use persist::memory::MemoryBackend;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = Pipeline::new(MemoryBackend::new());
/// let thread = ThreadId::new("support-42")?;
/// store.add(Add::new(thread.clone(), Role::User, Content::text("Where is my order?"))).await?;
/// let slot = store.reserve(Reserve::new(thread.clone(), Role::Assistant)).await?.message;
/// let done = store
///     .update_content(UpdateContent::new(thread.clone(), slot.id, Content::text("On its way.")))
///     .await?;
/// assert_eq!((done.message.seq, done.message.status), (2, Status::Complete));
/// assert_eq!(store.list(ListMessages::new(thread)).await?.items.len(), 2);
/// # Ok::<_, persist::PersistError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Pipeline {
    service: Arc<dyn ErasedStack>,
    capabilities: Capabilities,
    hub: Option<FeedHub>,
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline").finish_non_exhaustive()
    }
}

macro_rules! typed_call {
    ($(#[$doc:meta])* $name:ident, $args:ty, $op:ident => $variant:ident, $out:ty, |$r:ident| $map:expr) => {
        $(#[$doc])*
        ///
        /// # Errors
        ///
        /// Whatever the layers or the backend answer; see [`Backend`]'s `# Behavior`.
        pub async fn $name(&self, args: $args) -> Result<$out> {
            let op = crate::PersistOp::$op;
            match self.service.call(args.into()).await? {
                PersistResult::$variant($r) => Ok($map),
                other => Err(PersistError::MismatchedResult { op, got: other.op() }),
            }
        }
    };
}

impl Pipeline {
    /// A builder with no layers yet.
    pub fn builder() -> PipelineBuilder<Identity> {
        PipelineBuilder::new()
    }

    /// A pipeline with no layers over `backend`.
    pub fn new<B: Backend>(backend: B) -> Self {
        Self::builder().build(backend)
    }

    /// Sends any request (a write, a read, a session request, a ping) through the stack.
    ///
    /// Like every call here, it does nothing until polled; unlike the typed methods' future,
    /// its future does not borrow the pipeline (it holds a reference count), so it can be
    /// spawned.
    ///
    /// # Errors
    ///
    /// Whatever the layers or the backend answer.
    pub fn execute(
        &self,
        args: impl Into<PersistArgs>,
    ) -> impl Future<Output = Result<PersistResult>> + Send + 'static {
        Arc::clone(&self.service).call_owned(args.into())
    }

    typed_call!(
        /// Appends a complete message.
        add, Add, Add => Added, Added, |r| r
    );
    typed_call!(
        /// Appends a placeholder to be filled by [`update_content`](Self::update_content).
        reserve, Reserve, Reserve => Reserved, Reserved, |r| r
    );
    typed_call!(
        /// Writes a message's content (see [`UpdateContent`]); answers the message as stored,
        /// or, for an update a `CoalesceLayer` (persist-layer) held back, as
        /// last written ([`ContentUpdated::coalesced`]).
        update_content, UpdateContent, UpdateContent => ContentUpdated, ContentUpdated, |r| r
    );
    typed_call!(
        /// Patches a message or a thread.
        update, Update, Update => Updated, Updated, |r| r
    );
    typed_call!(
        /// Deletes a message or a thread; answers every id removed.
        delete, Delete, Delete => Deleted, Deleted, |r| r
    );
    typed_call!(
        /// Appends a whole turn (several messages, and maybe the reservation of the reply that
        /// follows) in one transaction: all of it or none, consecutive `seq`s, idempotent as
        /// a whole. See [`AppendTurn`].
        append_turn, AppendTurn, AppendTurn => TurnAppended, TurnAppended, |r| r
    );
    typed_call!(
        /// Writes a thread and its messages exactly as another store held them (import, copy);
        /// idempotent. See [`Restore`].
        restore, Restore, Restore => Restored, Restored, |r| r
    );

    typed_call!(
        /// Reads one message of the request's tenant; `Ok(None)` when it does not exist.
        get, GetMessage, Get => Message, Option<Message>, |m| m
    );
    typed_call!(
        /// Reads one thread of the request's tenant (a tombstone too); `Ok(None)` when it does
        /// not exist.
        get_thread, GetThread, GetThread => Thread, Option<Thread>, |t| t
    );
    typed_call!(
        /// Lists a page of a thread's messages.
        list, ListMessages, List => Messages, Page<Message>, |page| page
    );
    typed_call!(
        /// Lists a message's siblings (the alternatives at its point of the thread's tree) or
        /// the thread's leaves, saying which is on the active branch; see
        /// [`branch`](crate::branch).
        branches, ListBranches, Branches => Branches, Branches, |found| found
    );
    typed_call!(
        /// Writes a summary of a range of a thread (see [`summary`](crate::summary)): the same
        /// range again answers the stored one, `deduplicated`.
        summarize, crate::summary::Summarize, Summarize => Summarized, crate::summary::Summarized, |r| r
    );
    typed_call!(
        /// Lists a page of a thread's summaries, by the seq of their last message.
        summaries, crate::summary::ListSummaries, Summaries => Summaries, Page<crate::summary::Summary>, |page| page
    );
    typed_call!(
        /// Reads a thread compacted: the latest summary of a branch (the active one by default)
        /// and the messages after it, as a model would be given them; see
        /// [`ReadCompacted`](crate::summary::ReadCompacted).
        compacted, crate::summary::ReadCompacted, Compacted => Compacted, crate::summary::Compacted, |found| found
    );
    typed_call!(
        /// Takes, renews or gives up a lease on a thread; answers who holds it now (see
        /// [`Lease`](crate::lease::Lease)).
        lease, crate::lease::Lease, Lease => Lease, Option<crate::lease::Leased>, |held| held
    );
    typed_call!(
        /// Lists a page of the request's tenant's threads (or every tenant's, when it asks
        /// [`across_tenants`](ListThreads::across_tenants)), most recently updated first.
        threads, ListThreads, Threads => Threads, Page<Thread, ThreadCursor>, |page| page
    );
    typed_call!(
        /// Searches the text of the request's tenant's messages (one thread's, or every
        /// tenant's for operators), newest first; see [`search`](crate::search).
        search, crate::search::Search, Search => Search, Page<crate::search::SearchHit, crate::search::SearchCursor>, |page| page
    );
    typed_call!(
        /// Writes a message's embedding (its vector and model); see [`vector`](crate::vector).
        embed, crate::vector::Embed, Embed => Embedded, crate::vector::Embedded, |r| r
    );
    typed_call!(
        /// Finds the request's tenant's messages whose embeddings are nearest its vector, most
        /// similar first; see [`vector`](crate::vector).
        nearest, crate::vector::Nearest, Nearest => Nearest, Vec<crate::vector::Neighbour>, |found| found
    );
    typed_call!(
        /// Lists a page of the vectors stored for a thread's messages, as stored (what a copy
        /// carries); see [`ListEmbeddings`](crate::vector::ListEmbeddings).
        embeddings, crate::vector::ListEmbeddings, ListEmbeddings => Embeddings, Page<crate::vector::StoredEmbedding, crate::vector::EmbeddingCursor>, |page| page
    );
    typed_call!(
        /// Reads the request's tenant's working memory document of a resource (`None`: never
        /// written); see [`working`](crate::working).
        read_memory, crate::working::ReadMemory, ReadMemory => Memory, Option<crate::working::WorkingMemory>, |found| found
    );
    typed_call!(
        /// Patches or replaces the request's tenant's working memory document of a resource,
        /// inside the store's write; see [`working`](crate::working).
        write_memory, crate::working::WriteMemory, WriteMemory => MemoryWritten, crate::working::WorkingMemory, |written| written
    );
    typed_call!(
        /// Lists a page of working memory documents (the request's tenant's, or every tenant's
        /// for operators); see [`ListMemories`](crate::working::ListMemories).
        memories, crate::working::ListMemories, ListMemories => Memories, Page<crate::working::WorkingMemory, crate::working::MemoryCursor>, |page| page
    );
    typed_call!(
        /// Finds reservations nobody wrote to since a cutoff, in the request's tenant or
        /// [`across_tenants`](FindStranded::across_tenants) (maintenance;
        /// `cleanup_stranded`, in `persist-ops`, marks them interrupted).
        find_stranded, FindStranded, FindStranded => Stranded, Vec<Stranded>, |found| found
    );
    typed_call!(
        /// Records a session the provider **confirmed** for (agent, thread); see
        /// [`session`](crate::session).
        bind, Bind, Bind => Bound, SessionBinding, |b| b
    );
    typed_call!(
        /// Whether (agent, thread) can resume its session, and if not, why.
        resolve, Resolve, Resolve => Resolved, Resolution, |r| r
    );
    typed_call!(
        /// Resets (agent, thread): the next `resolve` starts fresh until a new `bind`. Answers
        /// whether there was a binding.
        reset_session, ResetSession, ResetSession => SessionReset, bool, |done| done
    );
    typed_call!(
        /// Invalidates a session for (agent, thread) if the binding still points at it
        /// (compare-and-set). Answers whether it did.
        invalidate_session, InvalidateSession, InvalidateSession => SessionInvalidated, bool, |done| done
    );
    typed_call!(
        /// Lists a thread's session bindings (every agent's, in any state), by agent id.
        bindings, ListBindings, Bindings => Bindings, Vec<StoredBinding>, |found| found
    );
    typed_call!(
        /// Reads the change-feed events after a position, through the layers; see
        /// [`feed`](crate::feed). `FeedGap` when the feed no longer holds them all.
        read_feed, ReadFeed, ReadFeed => Feed, FeedPage, |page| page
    );
    typed_call!(
        /// Stores a value under a name once, answering the value stored; see
        /// [`SetOnce`](crate::once::SetOnce).
        set_once, crate::once::SetOnce, SetOnce => Value, String, |value| value
    );

    /// Follows a scope of the change feed (one thread, one working memory document, the
    /// context's tenant, or every tenant) from `query.after`: [`Subscription::next`] answers each event in scope once, in order,
    /// waiting for the next.
    ///
    /// Every read goes through the layers as a [`ReadFeed`] with the query's context (a layer
    /// that scopes tenants scopes subscriptions too). Between reads the subscription waits for
    /// the wake-up of its scope ([`Backend::feed_hub`]) from the store that answered its first
    /// read (the one a route sends its reads to): writes of other threads (or documents) do
    /// not wake a thread's (or a document's) subscriber, and a slow subscriber reads at its own pace from the
    /// stored feed, never holding up writers or other subscribers. To follow from now on,
    /// subscribe after the [`head`](FeedPage::head) of a read.
    ///
    /// # Errors
    ///
    /// What the first read answers (`FeedGap` for a position the feed no longer holds, a
    /// layer's refusal), and `Unsupported` when the backend keeps no feed.
    pub async fn subscribe(&self, query: ReadFeed) -> Result<Subscription> {
        let first = self.read_feed(query.clone()).await?;
        // The store that answered (a route may have sent the read elsewhere) wakes it.
        let Some(hub) = first.wake_hub().cloned().or_else(|| self.hub.clone()) else {
            return Err(PersistError::Unsupported { what: "a change feed on this backend".into() });
        };
        let pipeline = self.clone();
        let read: crate::feed::subscription::ReadPages = Box::new(move |query| {
            let pipeline = pipeline.clone();
            Box::pin(async move { pipeline.read_feed(query).await })
        });
        Ok(Subscription::new(read, query, &hub, first))
    }

    /// Every message `listing` reaches, page after page (from its position on, in its order),
    /// with the items of every page that did not open.
    pub(crate) async fn list_every(&self, mut listing: ListMessages) -> Result<Page<Message>> {
        let mut every = Page::new(Vec::new(), None, false);
        loop {
            let page = self.list(listing.clone()).await?;
            let next = listing.next_page(&page);
            every.items.extend(page.items);
            every.unreadable.extend(page.unreadable);
            match next {
                Some(next) => listing = next,
                None => return Ok(every),
            }
        }
    }

    /// The feed's newest position, read through the pipeline in `query`'s scope and context
    /// (its `after` and `limit` aside): where a client that has just read what it shows
    /// subscribes from, to miss nothing written after. A read from the feed's start that
    /// meets retention's gap is read again after the position retention kept.
    ///
    /// # Example
    ///
    /// ```
    /// use persist::{args::Add, feed::{FeedRetention, ReadFeed}, memory::MemoryBackend, Content, Pipeline, Role, ThreadId};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// // A feed that keeps only its newest event: a read from its start meets a gap.
    /// let store = MemoryBackend::new().with_feed(Some(FeedRetention::forever().with_max_events(Some(1))));
    /// let pipeline = Pipeline::new(store);
    /// let thread = ThreadId::new("t1")?;
    /// for text in ["a", "b", "c"] {
    ///     pipeline.add(Add::new(thread.clone(), Role::User, Content::text(text))).await?;
    /// }
    /// assert_eq!(pipeline.feed_head(ReadFeed::thread(thread)).await?, 3);
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`read_feed`](Self::read_feed), but never `FeedGap`.
    pub async fn feed_head(&self, query: ReadFeed) -> Result<u64> {
        let mut after = 0;
        loop {
            match self.read_feed(query.clone().after(after).with_limit(1)).await {
                Ok(page) => return Ok(page.head),
                // `trimmed` only grows, so this ends.
                Err(PersistError::FeedGap { trimmed, .. }) if trimmed > after => after = trimmed,
                Err(other) => return Err(other),
            }
        }
    }

    /// A health check of the store, through the layers: `Ok` when the backend answers its
    /// [`ping`](Backend::ping) (a round trip that writes nothing), for readiness probes.
    ///
    /// # Errors
    ///
    /// What keeps the store from serving (unreachable, closed), or a layer's refusal.
    pub async fn ping(&self) -> Result<()> {
        match self.service.call(Ping::new().into()).await? {
            PersistResult::Pong => Ok(()),
            other => Err(PersistError::MismatchedResult { op: crate::PersistOp::Ping, got: other.op() }),
        }
    }

    /// The backend's capabilities (or those [`with_capabilities`](Self::with_capabilities)
    /// declared).
    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    /// The same stack, declaring `capabilities` instead of its backend's: for a stack whose
    /// layers answer some requests the backend would (a stack with `EncryptLayer` searches
    /// nothing, so it declares `search` off), so that code reading them (the conformance
    /// suite, a host choosing what to offer) sees what the stack does.
    ///
    /// # Example
    ///
    /// ```
    /// use persist::{memory::MemoryBackend, Pipeline};
    ///
    /// let pipeline = Pipeline::new(MemoryBackend::new());
    /// let without_search = pipeline.clone().with_capabilities(pipeline.capabilities().with_search(false));
    /// assert!(pipeline.capabilities().search && !without_search.capabilities().search);
    /// ```
    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// The erased stack, for layers that forward to it.
    pub fn into_service(self) -> BoxPersistService {
        BoxCloneSyncService::new(self)
    }
}

impl Service<PersistArgs> for Pipeline {
    type Response = PersistResult;
    type Error = PersistError;
    type Future = BoxFuture<'static, Result<PersistResult>>;

    /// Always ready: a call whose stack is not ready at once waits for it inside its own
    /// future.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Does nothing until the future is polled, as [`execute`](Self::execute).
    fn call(&mut self, args: PersistArgs) -> Self::Future {
        Arc::clone(&self.service).call_owned(args)
    }
}

/// A pipeline is a backend whose every call (writes, reads, session requests, pings) runs
/// through its layers: stacks nest, and the conformance suite can prove a stack transparent.
impl Backend for Pipeline {
    async fn apply(&self, args: PersistArgs) -> Result<PersistResult> {
        self.service.call(args).await
    }

    fn get(&self, query: GetMessage) -> impl Future<Output = Result<Option<Message>>> + Send {
        Pipeline::get(self, query)
    }

    fn get_thread(&self, query: GetThread) -> impl Future<Output = Result<Option<Thread>>> + Send {
        Pipeline::get_thread(self, query)
    }

    fn list(&self, query: ListMessages) -> impl Future<Output = Result<Page<Message>>> + Send {
        Pipeline::list(self, query)
    }

    fn threads(&self, query: ListThreads) -> impl Future<Output = Result<Page<Thread, ThreadCursor>>> + Send {
        Pipeline::threads(self, query)
    }

    fn search(
        &self,
        query: crate::search::Search,
    ) -> impl Future<Output = Result<Page<crate::search::SearchHit, crate::search::SearchCursor>>> + Send {
        Pipeline::search(self, query)
    }

    fn branches(&self, query: ListBranches) -> impl Future<Output = Result<Branches>> + Send {
        Pipeline::branches(self, query)
    }

    fn nearest(
        &self,
        query: crate::vector::Nearest,
    ) -> impl Future<Output = Result<Vec<crate::vector::Neighbour>>> + Send {
        Pipeline::nearest(self, query)
    }

    fn embeddings(
        &self,
        query: crate::vector::ListEmbeddings,
    ) -> impl Future<Output = Result<Page<crate::vector::StoredEmbedding, crate::vector::EmbeddingCursor>>> + Send {
        Pipeline::embeddings(self, query)
    }

    fn read_memory(
        &self,
        query: crate::working::ReadMemory,
    ) -> impl Future<Output = Result<Option<crate::working::WorkingMemory>>> + Send {
        Pipeline::read_memory(self, query)
    }

    fn memories(
        &self,
        query: crate::working::ListMemories,
    ) -> impl Future<Output = Result<Page<crate::working::WorkingMemory, crate::working::MemoryCursor>>> + Send {
        Pipeline::memories(self, query)
    }

    fn summaries(
        &self,
        query: crate::summary::ListSummaries,
    ) -> impl Future<Output = Result<Page<crate::summary::Summary>>> + Send {
        Pipeline::summaries(self, query)
    }

    fn compacted(
        &self,
        query: crate::summary::ReadCompacted,
    ) -> impl Future<Output = Result<crate::summary::Compacted>> + Send {
        Pipeline::compacted(self, query)
    }

    fn lease(&self, lease: crate::lease::Lease) -> impl Future<Output = Result<Option<crate::lease::Leased>>> + Send {
        Pipeline::lease(self, lease)
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    fn stranded(&self, query: FindStranded) -> impl Future<Output = Result<Vec<Stranded>>> + Send {
        Pipeline::find_stranded(self, query)
    }

    fn bind(&self, bind: Bind) -> impl Future<Output = Result<SessionBinding>> + Send {
        Pipeline::bind(self, bind)
    }

    fn resolve(&self, query: Resolve) -> impl Future<Output = Result<Resolution>> + Send {
        Pipeline::resolve(self, query)
    }

    fn reset_session(&self, request: ResetSession) -> impl Future<Output = Result<bool>> + Send {
        Pipeline::reset_session(self, request)
    }

    fn invalidate_session(&self, request: InvalidateSession) -> impl Future<Output = Result<bool>> + Send {
        Pipeline::invalidate_session(self, request)
    }

    fn bindings(&self, query: ListBindings) -> impl Future<Output = Result<Vec<StoredBinding>>> + Send {
        Pipeline::bindings(self, query)
    }

    fn ping(&self) -> impl Future<Output = Result<()>> + Send {
        Pipeline::ping(self)
    }

    fn read_feed(&self, query: ReadFeed) -> impl Future<Output = Result<FeedPage>> + Send {
        Pipeline::read_feed(self, query)
    }

    fn feed_hub(&self) -> Option<FeedHub> {
        self.hub.clone()
    }
}
