//! Give each write a time limit, on tower's timeout; an overrun is `PersistError::Timeout`.
//!
//! A timed-out write may still complete in the backend (the SQLite backend's writer finishes
//! every write it dequeued; add a [`DetachLayer`](crate::DetachLayer) to get the same
//! from any backend), so a timeout is ambiguous: retry it only with an idempotency key.
//! `Timeout` errors are [temporary](persist_core::PersistError::is_temporary), so
//! [`Retry`](crate::retry) retries them.
//!
//! # Order
//!
//! `.layer(RetryLayer::new(..)).layer(TimeoutLayer::new(..))`: the limit applies per attempt.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use persist::{args::Add, layer::TimeoutLayer, Content, Pipeline, Role, ThreadId};
//! use persist::memory::MemoryBackend;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pipeline = Pipeline::builder()
//!     .layer(TimeoutLayer::new(Duration::from_secs(2)))
//!     .build(MemoryBackend::new());
//! pipeline.add(Add::new(ThreadId::new("t1")?, Role::User, Content::text("hi"))).await?;
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

mod future;
mod layer;

use std::task::{Context, Poll};
use std::time::Duration;

use tower::Service;

pub use self::future::ResponseFuture;
pub use self::layer::TimeoutLayer;
use persist_core::{BoxError, PersistArgs, PersistError, PersistResult};

/// The service of [`TimeoutLayer`].
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: tower::timeout::Timeout<S>,
    after: Duration,
}

impl<S> Service<PersistArgs> for Timeout<S>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
{
    type Response = PersistResult;
    type Error = PersistError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PersistError>> {
        self.inner.poll_ready(cx).map_err(|e| from_box(e, None))
    }

    fn call(&mut self, args: PersistArgs) -> Self::Future {
        let op = args.op();
        ResponseFuture::new(self.inner.call(args), op, self.after)
    }
}

/// Unboxes what tower's timeout boxed: our own errors come back as they were.
fn from_box(error: BoxError, timeout: Option<(persist_core::PersistOp, Duration)>) -> PersistError {
    if let (Some((op, after)), true) = (timeout, error.is::<tower::timeout::error::Elapsed>()) {
        return PersistError::Timeout { op, after };
    }
    match error.downcast::<PersistError>() {
        Ok(error) => *error,
        Err(other) => PersistError::Backend { message: "timeout layer".into(), source: Some(other) },
    }
}
