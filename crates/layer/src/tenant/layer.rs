use tower::Layer;

use super::RequireTenant;
use crate::intercept::{Intercept, InterceptLayer};

/// Refuses requests without a tenant; see the [module docs](super).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequireTenantLayer;

impl RequireTenantLayer {
    /// The layer.
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for RequireTenantLayer {
    type Service = Intercept<S, RequireTenant>;

    fn layer(&self, inner: S) -> Self::Service {
        InterceptLayer::new(RequireTenant).layer(inner)
    }
}
