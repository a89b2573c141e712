//! [`FlakyEmbedder`]: an embedder that is down when a test says so.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use persist::PersistError;
use persist::raw::BoxFuture;
use persist::recall::{Embedder, HashEmbedder};

/// A [`HashEmbedder`] that fails as a provider that is down does (a temporary error) while it
/// is [set down](Self::set_down); its clones share the switch.
#[derive(Debug, Clone)]
pub struct FlakyEmbedder {
    inner: HashEmbedder,
    down: Arc<AtomicBool>,
}

impl FlakyEmbedder {
    /// `inner`, up.
    pub fn new(inner: HashEmbedder) -> Self {
        Self { inner, down: Arc::default() }
    }

    /// Down (every call fails) or up again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

impl Embedder for FlakyEmbedder {
    fn model(&self) -> &str {
        self.inner.model()
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, persist::Result<Vec<Vec<f32>>>> {
        if self.down.load(Ordering::SeqCst) {
            return Box::pin(async { Err(PersistError::temporary("the embedding service is down")) });
        }
        self.inner.embed(texts)
    }
}
