//! [`Pipeline`]: a stack of layers over a backend, erased into one nameable, cloneable type.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, TryLockError};
use std::task::{Context, Poll, Waker};

use pin_project_lite::pin_project;

use tower::layer::util::{Identity, Stack};
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

use crate::args::{self, Add, Delete, PersistArgs, Reserve, Restore, Update, UpdateContent};
use crate::backend::{Backend, BoxFuture, Capabilities};
use crate::error::{PersistError, Result};
use crate::feed::{FeedHub, FeedPage, ReadFeed, Subscription};
use crate::maintenance::{CleanupReport, CleanupStranded, Maintenance};
use crate::message::Timestamp;
use crate::message::{Message, Thread};
use crate::read::{FindStranded, GetMessage, GetThread, ListMessages, ListThreads, Page, Ping, Stranded, ThreadCursor};
use crate::result::{Added, ContentUpdated, Deleted, PersistResult, Reserved, Restored, Updated};
use crate::session::{
    Bind, InvalidateSession, ListBindings, ResetSession, Resolution, Resolve, SessionBinding, StoredBinding,
};
use crate::terminal::Terminal;

/// Any stack, type-erased: what layers like `Route` and `Mirror` forward to.
pub type BoxPersistService = BoxCloneSyncService<PersistArgs, PersistResult, PersistError>;

/// Stacks layers over a backend.
///
/// # Order
///
/// Layers run in the order they are added, like `tower::ServiceBuilder`: **the first layer
/// added sees the request first** (and the result last). The backend's
/// [`Terminal`] always sits under the last layer, so every layer added runs.
///
/// ```text
/// builder().layer(A).layer(B).build(backend)
///
///   args ──▶ A ──▶ B ──▶ Terminal ──▶ backend
///   result ◀── A ◀── B ◀──────┘
/// ```
///
/// # Example
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use persist::{args::Add, layer::from_fn, Content, Pipeline, Role, ThreadId};
/// use persist::memory::MemoryBackend;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let (a, b) = (seen.clone(), seen.clone());
/// let pipeline = Pipeline::builder()
///     .layer(from_fn(move |args, next| {
///         a.lock().unwrap().push("A");
///         next.run(args)
///     }))
///     .layer(from_fn(move |args, next| {
///         b.lock().unwrap().push("B");
///         next.run(args)
///     }))
///     .build(MemoryBackend::new());
/// pipeline.add(Add::new(ThreadId::new("t1")?, Role::User, Content::text("hi"))).await?;
/// assert_eq!(*seen.lock().unwrap(), ["A", "B"]);
/// # Ok::<_, persist::PersistError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct PipelineBuilder<L> {
    builder: ServiceBuilder<L>,
}

impl Default for PipelineBuilder<Identity> {
    fn default() -> Self {
        Self { builder: ServiceBuilder::new() }
    }
}

impl PipelineBuilder<Identity> {
    /// An empty stack.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<L> PipelineBuilder<L> {
    /// Adds `layer` under the layers already added (it sees requests after them).
    pub fn layer<T>(self, layer: T) -> PipelineBuilder<Stack<T, L>> {
        PipelineBuilder { builder: self.builder.layer(layer) }
    }

    /// The stack over `backend`, unerased: its exact type, no boxing at the edge. For
    /// benchmarks and hosts that drive the service themselves; most code wants
    /// [`build`](Self::build).
    pub fn service<B: Backend>(self, backend: B) -> L::Service
    where
        L: Layer<Terminal<B>>,
    {
        self.builder.service(Terminal::new(backend))
    }

    /// The stack over `backend`, erased into a [`Pipeline`].
    pub fn build<B>(self, backend: B) -> Pipeline
    where
        B: Backend,
        L: Layer<Terminal<B>>,
        L::Service:
            Service<PersistArgs, Response = PersistResult, Error = PersistError> + Clone + Send + Sync + 'static,
        <L::Service as Service<PersistArgs>>::Future: Send + 'static,
    {
        let capabilities = backend.capabilities();
        let hub = backend.feed_hub();
        let service = self.builder.service(Terminal::new(backend));
        Pipeline { service: Arc::new(Erase::new(service)), capabilities, hub }
    }
}

/// The built stack behind a [`Pipeline`], erased.
///
/// Callers need no `&mut`: the stack keeps one instance that a write borrows when no other
/// write holds it, asks whether it is ready at once and, if so, calls it there and then. A
/// clone of the stack is made only for a write that finds that instance busy (another thread
/// is calling it, or a layer re-entered the pipeline from its own `call`), and to replace an
/// instance that was not ready at once, whose readiness failed, or that a layer panicked in. A
/// write keeps an instance that was not ready and drives it as tower's `ServiceExt::oneshot`
/// does, so a layer's readiness (a concurrency limit's permit, say) belongs to the write that
/// waited for it. Cloning the stack for every write instead, as `oneshot` alone would, costs
/// each layer that shares state between clones (a route table, registered metric handles) a
/// reference count taken and dropped per write.
trait ErasedStack: Send + Sync {
    /// Starts the write now: the layers' `call` runs if the stack is ready; the backend
    /// applies the write when the future is polled. For callers that are already lazy (the
    /// pipeline's async methods).
    fn call(&self, args: PersistArgs) -> BoxFuture<'static, Result<PersistResult>>;

    /// Starts the write when the future is first polled, holding the stack meanwhile.
    fn call_owned(self: Arc<Self>, args: PersistArgs) -> BoxFuture<'static, Result<PersistResult>>;
}

struct Erase<S> {
    /// The stack as built: cloned for a write that cannot borrow `shared`, and to replace
    /// `shared`.
    stack: S,
    /// The instance writes borrow in turn. Its lock is only ever tried, never waited for.
    shared: Mutex<S>,
}

impl<S> ErasedStack for Erase<S>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    fn call(&self, args: PersistArgs) -> BoxFuture<'static, Result<PersistResult>> {
        Box::pin(self.start(args))
    }

    fn call_owned(self: Arc<Self>, args: PersistArgs) -> BoxFuture<'static, Result<PersistResult>> {
        Box::pin(async move { self.start(args).await })
    }
}

impl<S> Erase<S>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    fn new(stack: S) -> Self {
        Self { shared: Mutex::new(stack.clone()), stack }
    }

    fn start(&self, args: PersistArgs) -> Started<S> {
        match self.shared.try_lock() {
            Ok(mut shared) => self.call_now(&mut shared, args),
            // A layer panicked in this instance (and `Replace` swapped it): the lock only
            // remembers the panic.
            Err(TryLockError::Poisoned(poisoned)) => {
                self.shared.clear_poison();
                self.call_now(&mut poisoned.into_inner(), args)
            }
            // Another write holds it: this one gets a clone of its own (which, should it not be
            // ready either, is replaced by one more clone, dropped unused: a rare path).
            Err(TryLockError::WouldBlock) => self.call_now(&mut self.stack.clone(), args),
        }
    }

    /// Calls `instance` if it is ready at once, or hands it to the write and puts a clone in
    /// its place.
    fn call_now(&self, instance: &mut S, args: PersistArgs) -> Started<S> {
        let guard = Replace { instance, stack: &self.stack };
        let started = match ready_at_once(guard.instance) {
            Poll::Ready(Ok(())) => Started::Called { future: guard.instance.call(args) },
            // tower considers a service whose `poll_ready` failed unusable.
            Poll::Ready(Err(error)) => {
                *guard.instance = self.stack.clone();
                Started::Failed { answer: std::future::ready(Err(error)) }
            }
            Poll::Pending => {
                let waiting = std::mem::replace(guard.instance, self.stack.clone());
                Started::Waiting { oneshot: Box::pin(waiting.oneshot(args)) }
            }
        };
        // No layer panicked: the instance stays.
        std::mem::forget(guard);
        started
    }
}

/// Asks `instance` whether it is ready, with a waker that does nothing: an instance that is
/// not is handed to the write, whose `oneshot` asks again with its task's waker before calling
/// it.
fn ready_at_once<S: Service<PersistArgs>>(instance: &mut S) -> Poll<std::result::Result<(), S::Error>> {
    instance.poll_ready(&mut Context::from_waker(Waker::noop()))
}

/// Replaces the shared instance if a layer panics in it, so that whatever its readiness
/// reserved (a permit) is released now, not when the next write finds the lock poisoned.
struct Replace<'a, S: Clone> {
    instance: &'a mut S,
    stack: &'a S,
}

/// Dropped only while unwinding: the normal path forgets it.
impl<S: Clone> Drop for Replace<'_, S> {
    fn drop(&mut self) {
        *self.instance = self.stack.clone();
    }
}

pin_project! {
    /// A started write: the stack called, waiting for readiness (boxed: that future holds the
    /// whole stack, and is rare), or failed before it.
    #[project = StartedProj]
    enum Started<S: Service<PersistArgs>> {
        Called { #[pin] future: S::Future },
        Waiting { oneshot: BoxFuture<'static, Result<PersistResult>> },
        Failed { #[pin] answer: std::future::Ready<Result<PersistResult>> },
    }
}

impl<S> Future for Started<S>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
{
    type Output = Result<PersistResult>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            StartedProj::Called { future } => future.poll(cx),
            StartedProj::Waiting { oneshot } => oneshot.as_mut().poll(cx),
            StartedProj::Failed { answer } => answer.poll(cx),
        }
    }
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
        /// or, for an update a [`CoalesceLayer`](crate::layer::CoalesceLayer) held back, as
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
        /// Lists a page of the request's tenant's threads (or every tenant's, when it asks
        /// [`across_tenants`](ListThreads::across_tenants)), most recently updated first.
        threads, ListThreads, Threads => Threads, Page<Thread, ThreadCursor>, |page| page
    );
    typed_call!(
        /// Finds reservations nobody wrote to since a cutoff, in the request's tenant or
        /// [`across_tenants`](FindStranded::across_tenants) (maintenance;
        /// [`cleanup_stranded`](Self::cleanup_stranded) deletes them).
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

    /// Follows a scope of the change feed (one thread, the context's tenant, or every tenant)
    /// from `query.after`: [`Subscription::next`] answers each event in scope once, in order,
    /// waiting for the next.
    ///
    /// Every read goes through the layers as a [`ReadFeed`] with the query's context (a layer
    /// that scopes tenants scopes subscriptions too). Between reads the subscription waits for
    /// the wake-up of its scope ([`Backend::feed_hub`]) from the store that answered its first
    /// read (the one a route sends its reads to): writes of other threads do
    /// not wake a thread's subscriber, and a slow subscriber reads at its own pace from the
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
        Ok(Subscription::new(self.clone(), query, &hub, first))
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

    /// The backend's capabilities.
    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    /// Deletes reservations stranded by streams that never finished, **through the pipeline**.
    ///
    /// Finds `Reserved` messages nobody wrote to for the given age (a stream still sending
    /// content updates is active) with a `find_stranded` sent through the whole stack (a route
    /// asks every store it reaches), then deletes each with a `delete` sent through the whole
    /// stack too, so the layer that redirected the `reserve` redirects the cleanup to the same
    /// store, and observers see it. Each delete expects the version found, so a reservation
    /// filled in the meantime is kept (counted as skipped). Each delete names the tenant of
    /// the reservation's thread. The find and the deletes carry a [`Maintenance`] extension in
    /// their context.
    ///
    /// A cleanup reaches every tenant's threads unless it is confined to one with
    /// [`CleanupStranded::only_tenant`].
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use persist::{args::Reserve, maintenance::CleanupStranded, Pipeline, Role, ThreadId};
    /// use persist::memory::MemoryBackend;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pipeline = Pipeline::new(MemoryBackend::new());
    /// pipeline.reserve(Reserve::new(ThreadId::new("t1")?, Role::Assistant)).await?;
    /// tokio::time::sleep(Duration::from_millis(5)).await;
    /// let report = pipeline.cleanup_stranded(CleanupStranded::new(Duration::from_millis(1))).await?;
    /// assert_eq!(report.deleted.len(), 1);
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// The first error of a find or a delete other than a version conflict.
    pub async fn cleanup_stranded(&self, cleanup: CleanupStranded) -> Result<CleanupReport> {
        let context = args::Context::new().with_extension(Maintenance);
        let query = FindStranded::new(Timestamp::now().saturating_sub(cleanup.older_than))
            .with_limit(cleanup.limit)
            .across_tenants(cleanup.across_tenants)
            .with_context(context.clone().for_tenant(cleanup.tenant));
        let found = self.find_stranded(query).await?;
        let mut report = CleanupReport::default();
        for stranded in found {
            let message = &stranded.message;
            let delete = Delete::message(message.thread_id.clone(), message.id.clone())
                .with_expected_version(message.version)
                .with_context(context.renewed().for_tenant(stranded.tenant.clone()));
            match self.delete(delete).await {
                Ok(deleted) if deleted.message_ids.contains(&message.id) => report.deleted.push(stranded),
                // Gone meanwhile (another cleanup, a delete): nothing of ours to report.
                Ok(_) => {}
                Err(PersistError::VersionConflict { .. }) => report.skipped += 1,
                Err(error) => return Err(error),
            }
        }
        Ok(report)
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
