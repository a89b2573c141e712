//! Finish every write that reached the backend, even if its caller goes away.
//!
//! Dropping a future cancels it: a caller that times out, or whose request handler is
//! aborted, would stop a write wherever it was. [`DetachLayer`] runs the rest of the stack in
//! a spawned task, so once a write is handed on it completes (entirely or not at all) whatever
//! the caller does; the caller only stops waiting. Put it **last**, right above the backend,
//! and under any [`TimeoutLayer`](crate::layer::TimeoutLayer). Needs a Tokio runtime.
//!
//! The SQLite backend already finishes every write it dequeued; this layer gives any backend
//! the same guarantee.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use persist_core::{args::Add, layer::{DetachLayer, TimeoutLayer}, Content, Pipeline, Role, ThreadId};
//! use persist_memory::MemoryBackend;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pipeline = Pipeline::builder()
//!     .layer(TimeoutLayer::new(Duration::from_secs(1)))
//!     .layer(DetachLayer::new())
//!     .build(MemoryBackend::new());
//! pipeline.add(Add::new(ThreadId::new("t1")?, Role::User, Content::text("hi"))).await?;
//! # Ok::<_, persist_core::PersistError>(())
//! # }).unwrap();
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::task::JoinHandle;
use tower::{Layer, Service};

use crate::{PersistArgs, PersistError, PersistResult};

/// Runs the rest of the stack in a spawned task; see the [module docs](self).
#[derive(Debug, Clone, Copy, Default)]
pub struct DetachLayer {
    _priv: (),
}

impl DetachLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for DetachLayer {
    type Service = Detach<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Detach { inner }
    }
}

/// The service of [`DetachLayer`].
#[derive(Debug, Clone)]
pub struct Detach<S> {
    inner: S,
}

impl<S> Service<PersistArgs> for Detach<S>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
    S::Future: Send + 'static,
{
    type Response = PersistResult;
    type Error = PersistError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PersistError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, args: PersistArgs) -> Self::Future {
        ResponseFuture { task: tokio::spawn(self.inner.call(args)) }
    }
}

/// Response future of [`Detach`]: waits for the spawned write; dropping it does not cancel it.
#[derive(Debug)]
pub struct ResponseFuture {
    task: JoinHandle<Result<PersistResult, PersistError>>,
}

impl Future for ResponseFuture {
    type Output = Result<PersistResult, PersistError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(match ready!(Pin::new(&mut self.task).poll(cx)) {
            Ok(output) => output,
            Err(join) => Err(PersistError::Backend {
                message: "the detached write panicked".into(),
                source: Some(Box::new(join)),
            }),
        })
    }
}
