use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use pin_project_lite::pin_project;

use super::Handles;
use persist_core::{PersistError, PersistOp, PersistResult};

pin_project! {
    /// Response future of [`Metrics`](super::Metrics).
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        op: PersistOp,
        start: Option<Instant>,
        handles: Arc<Handles>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, op: PersistOp, start: Option<Instant>, handles: Arc<Handles>) -> Self {
        Self { inner, op, start, handles }
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<PersistResult, PersistError>>,
{
    type Output = Result<PersistResult, PersistError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let poll = this.inner.poll(cx);
        if let Poll::Ready(output) = &poll {
            this.handles.record(*this.op, output, *this.start);
        }
        poll
    }
}
