use std::sync::Arc;

use tokio::sync::Semaphore;
use tower::Layer;

use super::{DEFAULT_MAX_IN_FLIGHT, Detach};

/// Runs the rest of the stack in a spawned task, at most a bounded number at once; see the
/// [module docs](super).
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
