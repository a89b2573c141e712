use tower::Layer;

use super::Limits;
use crate::intercept::{Intercept, InterceptLayer};

/// Refuses writes over [`Limits`]; a short-circuiting [`Intercept`] underneath.
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidateLayer {
    limits: Limits,
}

impl ValidateLayer {
    /// A layer enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self { limits }
    }
}

impl<S> Layer<S> for ValidateLayer {
    type Service = Intercept<S, Limits>;

    fn layer(&self, inner: S) -> Self::Service {
        InterceptLayer::new(self.limits).layer(inner)
    }
}
