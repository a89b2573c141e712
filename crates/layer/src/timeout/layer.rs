use std::time::Duration;

use tower::Layer;

use super::Timeout;

/// Fails writes that take longer than a limit; see the [module docs](super).
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    after: Duration,
}

impl TimeoutLayer {
    /// A layer failing writes that take longer than `after`.
    pub fn new(after: Duration) -> Self {
        Self { after }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout { inner: tower::timeout::Timeout::new(inner, self.after), after: self.after }
    }
}
