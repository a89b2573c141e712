//! Seeded fault injection, for testing what sits above it.
//!
//! [`ChaosLayer`] makes writes fail with temporary errors before they reach the store, adds
//! latency, or lets a write commit and **then** reports a temporary error (the ambiguous
//! failure that duplicates turns when retries lack idempotency keys), each at a given rate.
//! Decisions come from one seeded generator, so a run is reproducible from its seed (given the
//! same order of requests).
//!
//! # Example
//!
//! ```
//! use persist::layer::{ChaosLayer, RetryLayer, RetryPolicy};
//! use persist::{args::Add, Content, IdempotencyKey, Pipeline, Role, ThreadId};
//! use persist::memory::MemoryBackend;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = MemoryBackend::new();
//! let pipeline = Pipeline::builder()
//!     .layer(RetryLayer::new(RetryPolicy::new().max_attempts(30)))
//!     .layer(ChaosLayer::new(7).temporary_errors(0.3).fail_after_commit(0.2))
//!     .build(store.clone());
//! for i in 0..20 {
//!     let key = IdempotencyKey::new(format!("k{i}"))?;
//!     pipeline.add(Add::new(ThreadId::new("t1")?, Role::User, Content::text("x")).with_idempotency_key(key)).await?;
//! }
//! assert_eq!(store.message_count(), 20); // no loss, no duplicate
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

mod layer;

use std::task::{Context, Poll};

use tower::Service;

pub use self::layer::ChaosLayer;
use persist_core::raw::BoxFuture;
use persist_core::{PersistArgs, PersistError, PersistResult};

/// The service of [`ChaosLayer`].
#[derive(Debug, Clone)]
pub struct Chaos<S> {
    inner: S,
    config: ChaosLayer,
}

#[derive(Debug, Clone, Copy)]
struct Draw {
    fail_before: bool,
    delay: bool,
    fail_after: bool,
}

impl<S> Service<PersistArgs> for Chaos<S>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
    S::Future: Send + 'static,
{
    type Response = PersistResult;
    type Error = PersistError;
    type Future = BoxFuture<'static, Result<PersistResult, PersistError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PersistError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, args: PersistArgs) -> Self::Future {
        let draw = self.config.draw();
        if draw.fail_before {
            return Box::pin(async { Err(PersistError::temporary("chaos: injected failure before the write")) });
        }
        let delay = draw.delay.then_some(self.config.delay);
        let write = self.inner.call(args);
        Box::pin(async move {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            let result = write.await?;
            if draw.fail_after {
                return Err(PersistError::temporary("chaos: injected failure after the write committed"));
            }
            Ok(result)
        })
    }
}
