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

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tower::{Layer, Service};

use persist_core::raw::BoxFuture;
use persist_core::{PersistArgs, PersistError, PersistResult};

/// Injects faults at configured rates; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ChaosLayer {
    rng: Arc<Mutex<StdRng>>,
    temporary: f64,
    after_commit: f64,
    latency: f64,
    delay: Duration,
}

/// A rate in `0.0..=1.0` (NaN counts as never).
fn rate(rate: f64) -> f64 {
    if rate.is_nan() { 0.0 } else { rate.clamp(0.0, 1.0) }
}

impl ChaosLayer {
    /// No faults yet, decisions drawn from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))),
            temporary: 0.0,
            after_commit: 0.0,
            latency: 0.0,
            delay: Duration::ZERO,
        }
    }

    /// Fails this fraction of writes with a temporary error before they reach the store.
    pub fn temporary_errors(mut self, value: f64) -> Self {
        self.temporary = rate(value);
        self
    }

    /// Lets this fraction of writes commit, then reports a temporary error anyway.
    pub fn fail_after_commit(mut self, value: f64) -> Self {
        self.after_commit = rate(value);
        self
    }

    /// Delays this fraction of writes by `delay` before they reach the store.
    pub fn latency(mut self, value: f64, delay: Duration) -> Self {
        self.latency = rate(value);
        self.delay = delay;
        self
    }
}

impl<S> Layer<S> for ChaosLayer {
    type Service = Chaos<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Chaos { inner, config: self.clone() }
    }
}

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

impl ChaosLayer {
    fn draw(&self) -> Draw {
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        Draw {
            fail_before: rng.random_bool(self.temporary),
            delay: rng.random_bool(self.latency),
            fail_after: rng.random_bool(self.after_commit),
        }
    }
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
