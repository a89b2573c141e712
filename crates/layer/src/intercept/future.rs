use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use persist_core::{PersistError, PersistResult};

pin_project! {
    /// Response future of [`Intercept`](super::Intercept).
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Answered { answer: Option<Result<PersistResult, PersistError>> },
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn inner(future: F) -> Self {
        Self { kind: Kind::Inner { future } }
    }

    pub(super) fn answered(answer: Result<PersistResult, PersistError>) -> Self {
        Self { kind: Kind::Answered { answer: Some(answer) } }
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<PersistResult, PersistError>>,
{
    type Output = Result<PersistResult, PersistError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Answered { answer } => Poll::Ready(answer.take().unwrap_or_else(|| {
                Err(PersistError::Backend { message: "intercept future polled after completion".into(), source: None })
            })),
        }
    }
}
