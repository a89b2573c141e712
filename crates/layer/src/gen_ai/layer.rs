use std::sync::Arc;

use tower::Layer;

use super::GenAiTrace;

/// Spans following OpenTelemetry's GenAI conventions; see the [module docs](super).
#[derive(Debug, Clone, Default)]
pub struct GenAiTraceLayer {
    pub(super) record_content: bool,
    pub(super) store_id: Option<Arc<str>>,
}

impl GenAiTraceLayer {
    /// Spans without content, without a store id.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also records a search's query and the written messages' content (off by default:
    /// conversation content is private).
    pub fn with_content(mut self, record: bool) -> Self {
        self.record_content = record;
        self
    }

    /// Names the store (`gen_ai.memory.store.id`, and the second word of memory spans' names):
    /// one name per store an app keeps, such as `chat-history`.
    pub fn with_store_id(mut self, id: impl Into<String>) -> Self {
        self.store_id = Some(Arc::from(id.into()));
        self
    }
}

impl<S> Layer<S> for GenAiTraceLayer {
    type Service = GenAiTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GenAiTrace { inner, layer: self.clone() }
    }
}
