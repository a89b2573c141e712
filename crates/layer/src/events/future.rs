use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::sync::broadcast;

use super::{Committed, Event};
use persist_core::{PersistError, PersistResult, TenantId};

pin_project! {
    /// Response future of [`Publish`](super::Publish).
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        sender: broadcast::Sender<Event>,
        // `Some` when the event is to be published: the tenant written.
        tenant: Option<Option<TenantId>>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, sender: broadcast::Sender<Event>, tenant: Option<Option<TenantId>>) -> Self {
        Self { inner, sender, tenant }
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
        // Never waits: a full channel drops the oldest event for lagging subscribers.
        if let Ok(result) = &output
            && result.op().is_message_write()
            && let Some(tenant) = this.tenant.take()
            && this.sender.receiver_count() > 0
        {
            let _ = this.sender.send(Arc::new(Committed::new(tenant, result.clone())));
        }
        Poll::Ready(output)
    }
}
