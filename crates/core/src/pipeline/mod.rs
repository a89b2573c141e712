//! The pipeline: [`Pipeline`], the handle a host app calls, over a stack its
//! [`PipelineBuilder`] built of layers and a backend's [`Terminal`]. A request goes down
//! through every layer to the terminal, which hands it to the [`Backend`]; the answer comes
//! back up the same way. [`Scoped`] confines a pipeline to one tenant; a
//! [`Subscription`](crate::feed::Subscription) follows the feed through it.

#[macro_use]
mod calls;
mod backend;
mod boxed;
mod builder;
mod capabilities;
pub(crate) mod scoped;
mod terminal;

pub use self::backend::BoxFuture;
pub use self::backend::{ApplyNow, Backend, Capabilities};
pub use self::boxed::BoxBackend;
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

use crate::args::PersistArgs;
use crate::feed::{FeedHub, FeedPage, ReadFeed, Subscription};
use crate::model::Message;
use crate::model::error::{PersistError, Result};
use crate::read::{ListMessages, Page, Ping};
use crate::request::result::PersistResult;

/// Any stack, type-erased: what layers like `Route` and `Mirror` forward to.
pub type BoxPersistService = BoxCloneSyncService<PersistArgs, PersistResult, PersistError>;

/// Takes the service a caller polled ready out of a layer, leaving a clone in its place for the
/// next call: how a layer's `call` hands its inner service to a future that outlives the call.
/// Tower's rule is that the instance polled ready is the one called; a fresh clone may not be
/// ready (a buffer's slot, a limit's permit), so the clone waits for the next `poll_ready`.
///
/// ```
/// use std::task::{Context, Poll};
///
/// use persist_core::raw::{BoxFuture, take_ready};
/// use persist_core::{PersistArgs, PersistError, PersistResult};
/// use tower::Service;
///
/// #[derive(Clone)]
/// struct Counted<S> {
///     inner: S,
/// }
///
/// impl<S> Service<PersistArgs> for Counted<S>
/// where
///     S: Service<PersistArgs, Response = PersistResult, Error = PersistError> + Clone + Send + 'static,
///     S::Future: Send,
/// {
///     type Response = PersistResult;
///     type Error = PersistError;
///     type Future = BoxFuture<'static, Result<PersistResult, PersistError>>;
///
///     fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PersistError>> {
///         self.inner.poll_ready(cx)
///     }
///
///     fn call(&mut self, args: PersistArgs) -> Self::Future {
///         let mut inner = take_ready(&mut self.inner);
///         Box::pin(async move { inner.call(args).await })
///     }
/// }
/// ```
pub fn take_ready<S: Clone>(service: &mut S) -> S {
    let spare = service.clone();
    std::mem::replace(service, spare)
}

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

macro_rules! pipeline_calls {
    (
        $($(#[$doc:meta])* $name:ident($args:ty) -> $out:ty = $result:ident, $scope:tt $(, $b:ident($av:ident))?;)*
    ) => {
        impl Pipeline {
            $(
                $(#[$doc])*
                ///
                /// # Errors
                ///
                /// Whatever the layers or the backend answer; see [`Backend`]'s `# Behavior`.
                pub async fn $name(&self, args: $args) -> Result<$out> {
                    let args = PersistArgs::from(args);
                    let op = args.op();
                    match self.service.call(args).await? {
                        PersistResult::$result(answer) => Ok(answer),
                        other => Err(PersistError::MismatchedResult { op, got: other.op() }),
                    }
                }
            )*
        }

        impl Scoped {
            $(scoped_call!($scope $(#[$doc])* $name($args) -> $out);)*
        }

        /// Whether `args` reaches across tenants, which a [`Scoped`] handle refuses: the calls
        /// `calls!` marks `unless`, by the same test as their typed methods.
        pub(crate) fn reaches_across(args: &PersistArgs) -> bool {
            $(if let Some(across) = across!($scope, args) {
                return across;
            })*
            false
        }
    };
}
// Here `Pipeline`'s and `Scoped`'s typed methods are generated, one for each line of `calls!` (in
// `requests.rs`): `add`, `reserve`, `update_content`, `update`, `delete`, `append_turn`,
// `restore`, `get`, `get_thread`, `list`, `branches`, `summarize`, `summaries`, `compacted`,
// `lease`, `threads`, `search`, `embed`, `nearest`, `embeddings`, `read_memory`, `write_memory`,
// `memories`, `write_records`, `read_records`, `find_stranded`, `bind`, `resolve`,
// `reset_session`, `invalidate_session`, `bindings`, `read_feed`, `set_once`.
calls!(pipeline_calls);

/// The pipeline's [`Backend`] methods of the reads: its typed calls.
macro_rules! pipeline_reads {
    (
        $($(#[$doc:meta])* $name:ident($args:ty) -> $out:ty = $result:ident, $scope:tt $(, $b:ident($av:ident))?;)*
    ) => {
        $($(
            fn $b(&self, query: $args) -> impl Future<Output = Result<$out>> + Send {
                Pipeline::$name(self, query)
            }
        )?)*
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

    calls!(pipeline_reads);

    fn capabilities(&self) -> Capabilities {
        self.capabilities
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
