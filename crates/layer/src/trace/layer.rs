use tower::Layer;

use super::Trace;

/// Traces every call (reads and writes) with `tracing`; see the [module docs](super).
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceLayer {
    record_content: bool,
}

impl TraceLayer {
    /// Spans without content.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also records the content of `add` and `update_content` in the span (off by default:
    /// conversation content is private).
    pub fn with_content(mut self, record: bool) -> Self {
        self.record_content = record;
        self
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Trace { inner, record_content: self.record_content }
    }
}
