use tower::Layer;

use super::{Retry, RetryPolicy};

/// Retries temporary failures with [`RetryPolicy`]; see the [module docs](super).
#[derive(Debug, Clone, Default)]
pub struct RetryLayer {
    policy: RetryPolicy,
}

impl RetryLayer {
    /// A layer retrying with `policy`.
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry { inner: tower::retry::Retry::new(self.policy.clone(), inner) }
    }
}
