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

mod future;
mod layer;

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tower::Service;

pub use self::future::ResponseFuture;
pub use self::layer::DetachLayer;
use persist_core::raw::take_ready;
use persist_core::{PersistArgs, PersistError, PersistResult};

/// Writes a [`DetachLayer`] runs at once unless told otherwise.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

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
        match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(slot) => ResponseFuture::running(spawn(slot, self.inner.call(args))),
            // Over the bound: nothing below is called until a slot is free. The ready service
            // goes with the write (tower's rule: the instance polled ready is the one called).
            Err(_) => {
                let inner = take_ready(&mut self.inner);
                ResponseFuture::waiting(Box::pin(Arc::clone(&self.slots).acquire_owned()), inner, args)
            }
        }
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
