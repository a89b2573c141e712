use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use super::Coalesce;

/// Holds back partial content updates; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct CoalesceLayer {
    interval: Duration,
}

impl CoalesceLayer {
    /// At most one write per message per `interval` for partial updates.
    pub fn new(interval: Duration) -> Self {
        Self { interval }
    }
}

impl<S> Layer<S> for CoalesceLayer {
    type Service = Coalesce<S>;

    /// Each stack gets its own slots (clones of the service share them): two stores never
    /// share a held-back update.
    fn layer(&self, inner: S) -> Self::Service {
        Coalesce { inner, interval: self.interval, slots: Arc::default() }
    }
}
