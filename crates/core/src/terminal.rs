//! [`Terminal`]: adapts a [`Backend`] into the `tower::Service` at the bottom of every stack.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::Service;

use crate::args::PersistArgs;
use crate::backend::{Backend, BoxFuture};
use crate::error::{PersistError, Result};
use crate::result::PersistResult;

/// The service that applies each request to a backend.
///
/// It is always ready (the backend handles its own concurrency) and always last: the
/// [`PipelineBuilder`](crate::PipelineBuilder) puts it under every layer, so it is never a
/// layer itself and never skips one.
///
/// # Example
///
/// ```
/// use persist_core::{args::Add, Content, PersistArgs, Role, Terminal, ThreadId};
/// use persist_memory::MemoryBackend;
/// use tower::ServiceExt;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let terminal = Terminal::new(MemoryBackend::new());
/// let args = PersistArgs::from(Add::new(ThreadId::new("t1")?, Role::User, Content::text("hi")));
/// let result = terminal.oneshot(args).await?;
/// assert_eq!(result.message().unwrap().seq, 1);
/// # Ok::<_, persist_core::PersistError>(())
/// # }).unwrap();
/// ```
pub struct Terminal<B> {
    backend: Arc<B>,
}

impl<B: Backend> Terminal<B> {
    /// A terminal over `backend`.
    pub fn new(backend: B) -> Self {
        Self::from_arc(Arc::new(backend))
    }

    /// A terminal over a backend that is shared with other owners (e.g. the pipeline's reads).
    pub fn from_arc(backend: Arc<B>) -> Self {
        Self { backend }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }
}

impl<B> Clone for Terminal<B> {
    fn clone(&self) -> Self {
        Self { backend: Arc::clone(&self.backend) }
    }
}

impl<B> fmt::Debug for Terminal<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Terminal").field("backend", &std::any::type_name::<B>()).finish()
    }
}

impl<B: Backend> Service<PersistArgs> for Terminal<B> {
    type Response = PersistResult;
    type Error = PersistError;
    type Future = BoxFuture<'static, Result<PersistResult>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, args: PersistArgs) -> Self::Future {
        let backend = Arc::clone(&self.backend);
        Box::pin(async move { backend.apply(args).await })
    }
}
