use tower::Layer;

use super::{ToolCalls, Unanswered};

/// Keeps a thread's tool calls and results consistent; see the [module docs](super).
#[derive(Debug, Clone, Copy, Default)]
pub struct ToolCallsLayer {
    unanswered: Unanswered,
}

impl ToolCallsLayer {
    /// The layer, interrupting unanswered calls.
    pub fn new() -> Self {
        Self::default()
    }

    /// What to do with calls left without a result when the next user message comes.
    pub fn on_unanswered(mut self, unanswered: Unanswered) -> Self {
        self.unanswered = unanswered;
        self
    }
}

impl<S> Layer<S> for ToolCallsLayer {
    type Service = ToolCalls<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ToolCalls { inner, unanswered: self.unanswered }
    }
}
