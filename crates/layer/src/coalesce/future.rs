use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use persist_core::{PersistError, PersistResult};

type Writing = Pin<Box<dyn Future<Output = persist_core::Result<PersistResult>> + Send + 'static>>;

/// The answer of a [`Coalesce`](super::Coalesce) service: ready at once for an update held
/// back, else the write's.
pub struct ResponseFuture(Answer);

enum Answer {
    /// Held back: answered without waiting.
    Ready(Option<PersistResult>),
    /// Written, or passed through.
    Writing(Writing),
}

impl ResponseFuture {
    pub(super) fn ready(answer: PersistResult) -> Self {
        Self(Answer::Ready(Some(answer)))
    }

    pub(super) fn writing(future: Writing) -> Self {
        Self(Answer::Writing(future))
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.0 {
            Answer::Ready(_) => "held back",
            Answer::Writing(_) => "writing",
        };
        f.debug_tuple("ResponseFuture").field(&state).finish()
    }
}

impl Future for ResponseFuture {
    type Output = persist_core::Result<PersistResult>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            Answer::Ready(answer) => match answer.take() {
                Some(answer) => Poll::Ready(Ok(answer)),
                None => Poll::Ready(Err(PersistError::Backend {
                    message: "a coalesced answer was polled after it completed".into(),
                    source: None,
                })),
            },
            Answer::Writing(future) => future.as_mut().poll(cx),
        }
    }
}
