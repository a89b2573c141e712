//! [`PipelineBuilder`]: layers stacked over a backend's [`Terminal`], erased into a
//! [`Pipeline`] whose one instance of the stack serves every call.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, TryLockError};
use std::task::{Context, Poll, Waker};

use pin_project_lite::pin_project;

use tower::layer::util::{Identity, Stack};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

use super::{Backend, BoxFuture, Pipeline, Terminal};
use crate::args::PersistArgs;
use crate::model::error::{PersistError, Result};
use crate::request::result::PersistResult;

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
pub(super) trait ErasedStack: Send + Sync {
    /// Starts the write now: the layers' `call` runs if the stack is ready; the backend
    /// applies the write when the future is polled. For callers that are already lazy (the
    /// pipeline's async methods).
    fn call(&self, args: PersistArgs) -> BoxFuture<'static, Result<PersistResult>>;

    /// Starts the write when the future is first polled, holding the stack meanwhile.
    fn call_owned(self: Arc<Self>, args: PersistArgs) -> BoxFuture<'static, Result<PersistResult>>;
}

pub(super) struct Erase<S> {
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
