//! Finish every write that reached the backend, even if its caller goes away.
//!
//! Dropping a future cancels it: a caller that times out, or whose request handler is
//! aborted, would stop a write wherever it was. [`DetachLayer`] runs the rest of the stack in
//! a spawned task, so once a write is handed on it completes (entirely or not at all) whatever
//! the caller does; the caller only stops waiting. Put it **last**, right above the backend,
//! and under any [`TimeoutLayer`](crate::TimeoutLayer). Needs a Tokio runtime.
//!
//! The SQLite backend already finishes every write it dequeued; this layer gives any backend
//! the same guarantee.
//!
//! # Bounded
//!
//! At most [`max_in_flight`](DetachLayer::max_in_flight) requests (default 1024) run detached
//! at once, per layer (its clones share the bound); reads pass through it too and take a slot
//! like writes. A request over the bound waits for a slot **before** anything below this layer
//! sees it: if its caller leaves while it waits, nothing was started and nothing is written. So a storm of callers that time out cannot pile up
//! work behind new writes: at most the bound keeps running after its callers left, and a fresh
//! write waits behind at most that many.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use persist::{args::Add, layer::{DetachLayer, TimeoutLayer}, Content, Pipeline, Role, ThreadId};
//! use persist::memory::MemoryBackend;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pipeline = Pipeline::builder()
//!     .layer(TimeoutLayer::new(Duration::from_secs(1)))
//!     .layer(DetachLayer::new())
//!     .build(MemoryBackend::new());
//! pipeline.add(Add::new(ThreadId::new("t1")?, Role::User, Content::text("hi"))).await?;
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tower::{Layer, Service};

use persist_core::{PersistArgs, PersistError, PersistResult};

/// Writes a [`DetachLayer`] runs at once unless told otherwise.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// Runs the rest of the stack in a spawned task, at most a bounded number at once; see the
/// [module docs](self).
#[derive(Debug, Clone)]
pub struct DetachLayer {
    slots: Arc<Semaphore>,
}

impl Default for DetachLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl DetachLayer {
    /// The layer, with at most [`DEFAULT_MAX_IN_FLIGHT`] writes running at once.
    pub fn new() -> Self {
        Self { slots: Arc::new(Semaphore::new(DEFAULT_MAX_IN_FLIGHT)) }
    }

    /// Most writes running at once (at least 1); more wait for a slot before they start.
    pub fn max_in_flight(mut self, writes: usize) -> Self {
        self.slots = Arc::new(Semaphore::new(writes.clamp(1, Semaphore::MAX_PERMITS)));
        self
    }
}

impl<S> Layer<S> for DetachLayer {
    type Service = Detach<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Detach { inner, slots: Arc::clone(&self.slots) }
    }
}

/// The service of [`DetachLayer`].
#[derive(Debug, Clone)]
pub struct Detach<S> {
    inner: S,
    slots: Arc<Semaphore>,
}

impl<S> Service<PersistArgs> for Detach<S>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = PersistResult;
    type Error = PersistError;
    type Future = ResponseFuture<S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PersistError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, args: PersistArgs) -> Self::Future {
        let state = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(slot) => State::Running { task: spawn(slot, self.inner.call(args)) },
            // Over the bound: nothing below is called until a slot is free. The ready service
            // goes with the write (tower's rule: the instance polled ready is the one called).
            Err(_) => {
                let ready = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, ready);
                State::Waiting { slot: Box::pin(Arc::clone(&self.slots).acquire_owned()), inner, args: Some(args) }
            }
        };
        ResponseFuture { state }
    }
}

fn spawn<F>(slot: OwnedSemaphorePermit, write: F) -> JoinHandle<Result<PersistResult, PersistError>>
where
    F: Future<Output = Result<PersistResult, PersistError>> + Send + 'static,
{
    tokio::spawn(async move {
        let result = write.await;
        drop(slot);
        result
    })
}

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// Response future of [`Detach`]: waits for a slot, then for the spawned write. Dropping it
/// while it waits for a slot writes nothing; dropping it later does not cancel the write.
pub struct ResponseFuture<S> {
    state: State<S>,
}

// Every future starts `Waiting`, holding the request as every layer's future does: boxing it to
// shrink `Running` would allocate once more per call to save nothing.
#[allow(clippy::large_enum_variant)]
enum State<S> {
    Waiting { slot: Acquire, inner: S, args: Option<PersistArgs> },
    Running { task: JoinHandle<Result<PersistResult, PersistError>> },
}

impl<S> fmt::Debug for ResponseFuture<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Waiting { .. } => "waiting for a slot",
            State::Running { .. } => "running",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}

// Nothing is pinned in place: the slot's future is boxed, the task handle is `Unpin`.
impl<S> Unpin for ResponseFuture<S> {}

impl<S> Future for ResponseFuture<S>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
    S::Future: Send + 'static,
{
    type Output = Result<PersistResult, PersistError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match &mut self.state {
                State::Waiting { slot, inner, args } => {
                    let slot = match ready!(slot.as_mut().poll(cx)) {
                        Ok(slot) => slot,
                        Err(_) => {
                            return Poll::Ready(Err(PersistError::Backend {
                                message: "the detach layer was closed".into(),
                                source: None,
                            }));
                        }
                    };
                    let Some(args) = args.take() else {
                        return Poll::Ready(Err(PersistError::Backend {
                            message: "a detached write was polled after it ended".into(),
                            source: None,
                        }));
                    };
                    let task = spawn(slot, inner.call(args));
                    self.state = State::Running { task };
                }
                State::Running { task } => {
                    return Poll::Ready(match ready!(Pin::new(task).poll(cx)) {
                        Ok(output) => output,
                        Err(join) => Err(PersistError::Backend {
                            message: "the detached write panicked".into(),
                            source: Some(Box::new(join)),
                        }),
                    });
                }
            }
        }
    }
}
