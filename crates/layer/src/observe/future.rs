use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::{OnError, OnResult};
use persist_core::{PersistError, PersistOp, PersistResult};

pin_project! {
    /// Response future of [`Observe`](super::Observe).
    #[derive(Debug)]
    pub struct ResponseFuture<F, R, E> {
        #[pin]
        inner: F,
        op: PersistOp,
        on_result: R,
        on_error: E,
    }
}

impl<F, R, E> ResponseFuture<F, R, E> {
    pub(super) fn new(inner: F, op: PersistOp, on_result: R, on_error: E) -> Self {
        Self { inner, op, on_result, on_error }
    }
}

impl<F, R, E> Future for ResponseFuture<F, R, E>
where
    F: Future<Output = Result<PersistResult, PersistError>>,
    R: OnResult,
    E: OnError,
{
    type Output = Result<PersistResult, PersistError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let poll = this.inner.poll(cx);
        match &poll {
            Poll::Ready(Ok(result)) => this.on_result.on_result(result),
            Poll::Ready(Err(error)) => this.on_error.on_error(*this.op, error),
            Poll::Pending => {}
        }
        poll
    }
}
