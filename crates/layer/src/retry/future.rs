use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use persist_core::{MessageId, PersistError, PersistResult};

pin_project! {
    /// Response future of [`Retry`](super::Retry): tower's retry future, whose answer says
    /// what the caller's own request did.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        minted: Option<MessageId>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, minted: Option<MessageId>) -> Self {
        Self { inner, minted }
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<PersistResult, PersistError>>,
{
    type Output = Result<PersistResult, PersistError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut output = ready!(this.inner.poll(cx));
        // The id this layer minted for the request is new: only an earlier attempt of this very
        // request can have written it. A repeat of it is the caller's own write, not a
        // duplicate of someone else's (an indexer that skips duplicates must index it).
        if let (Some(minted), Ok(result)) = (this.minted.as_ref(), output.as_mut()) {
            match result {
                PersistResult::Added(added) if added.message.id == *minted => added.deduplicated = false,
                PersistResult::Reserved(reserved) if reserved.message.id == *minted => reserved.deduplicated = false,
                PersistResult::TurnAppended(turn) if turn.messages.iter().any(|m| m.id == *minted) => {
                    turn.deduplicated = false
                }
                _ => {}
            }
        }
        Poll::Ready(output)
    }
}
