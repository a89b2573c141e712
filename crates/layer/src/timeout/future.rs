use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;

use persist_core::{PersistError, PersistOp, PersistResult};

pin_project! {
    /// Response future of [`Timeout`](super::Timeout).
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: tower::timeout::future::ResponseFuture<F>,
        op: PersistOp,
        after: Duration,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: tower::timeout::future::ResponseFuture<F>, op: PersistOp, after: Duration) -> Self {
        Self { inner, op, after }
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<PersistResult, PersistError>>,
{
    type Output = Result<PersistResult, PersistError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = ready!(this.inner.poll(cx));
        Poll::Ready(output.map_err(|e| super::from_box(e, Some((*this.op, *this.after)))))
    }
}
