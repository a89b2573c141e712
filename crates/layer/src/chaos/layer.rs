use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tower::Layer;

use super::{Chaos, Draw};

/// Injects faults at configured rates; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct ChaosLayer {
    rng: Arc<Mutex<StdRng>>,
    temporary: f64,
    after_commit: f64,
    latency: f64,
    pub(super) delay: Duration,
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

impl ChaosLayer {
    pub(super) fn draw(&self) -> Draw {
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        Draw {
            fail_before: rng.random_bool(self.temporary),
            delay: rng.random_bool(self.latency),
            fail_after: rng.random_bool(self.after_commit),
        }
    }
}
