use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use persist_core::raw::BoxFuture;
use persist_core::{PersistError, PersistResult};

pin_project! {
    /// Response future of [`Route`](super::Route).
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        // Boxed: the routed call is the rare one, and an inline `Oneshot` (the request and
        // the target service) would make every unrouted call's future that much bigger.
        Routed { future: BoxFuture<'static, Result<PersistResult, PersistError>> },
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let routed = matches!(self.kind, Kind::Routed { .. });
        f.debug_struct("ResponseFuture").field("routed", &routed).finish_non_exhaustive()
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn inner(future: F) -> Self {
        Self { kind: Kind::Inner { future } }
    }

    pub(super) fn routed(future: BoxFuture<'static, Result<PersistResult, PersistError>>) -> Self {
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
            KindProj::Routed { future } => future.as_mut().poll(cx),
        }
    }
}
