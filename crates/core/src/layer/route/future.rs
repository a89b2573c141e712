use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower::util::Oneshot;

use crate::pipeline::BoxPersistService;
use crate::{PersistArgs, PersistError, PersistResult};

pin_project! {
    /// Response future of [`Route`](super::Route).
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
        Routed { #[pin] future: Oneshot<BoxPersistService, PersistArgs> },
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn inner(future: F) -> Self {
        Self { kind: Kind::Inner { future } }
    }

    pub(super) fn routed(future: Oneshot<BoxPersistService, PersistArgs>) -> Self {
        Self { kind: Kind::Routed { future } }
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
            KindProj::Routed { future } => future.poll(cx),
        }
    }
}
