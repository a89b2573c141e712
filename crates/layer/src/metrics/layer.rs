use std::sync::Arc;

use tower::Layer;

use super::{Handles, Metrics};

/// Records `metrics` for every write; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    handles: Arc<Handles>,
}

impl Default for MetricsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricsLayer {
    /// Registers the handles with the recorder installed now.
    pub fn new() -> Self {
        Self { handles: Arc::new(Handles::register()) }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Metrics { inner, handles: Arc::clone(&self.handles) }
    }
}
