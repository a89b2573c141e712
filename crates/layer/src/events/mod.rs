//! Broadcast committed writes inside one process.
//!
//! For UIs that follow a thread, across processes and app instances, and resume after a
//! reconnect, use the store's change feed instead ([`Pipeline::subscribe`](persist_core::Pipeline::subscribe),
//! see [`feed`](persist_core::feed)): it is recorded in each write's transaction and numbered for
//! resuming. This layer stays for observers inside one process that want whole results.
//!
//! [`Events`] owns a `tokio::sync::broadcast` channel; its [`layer`](Events::layer) sends every
//! **successful** result after the backend acknowledged it (never a refused or failed write).
//! A reservation's event carries the message id and seq before any content exists, so a UI can
//! place the bubble right away and fill it from the `update_content` events. Every event names
//! the tenant of the thread written (the request context's as it reaches this layer: a layer
//! that sets the tenant goes above it): a thread is `(tenant, thread_id)`, and
//! [`subscribe_thread`](Events::subscribe_thread) follows one such thread only.
//!
//! Subscribers that fall behind lose the oldest events (they see [`Lagged`]) and never slow
//! writers down: sending never waits. When nobody is subscribed, the layer does nothing.
//!
//! [`Lagged`]: tokio::sync::broadcast::error::RecvError::Lagged
//!
//! # Example
//!
//! ```
//! use persist::{args::Reserve, layer::Events, Pipeline, Role, ThreadId};
//! use persist::memory::MemoryBackend;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let events = Events::new(1024);
//! let pipeline = Pipeline::builder().layer(events.layer()).build(MemoryBackend::new());
//! let thread = ThreadId::new("t1")?;
//! let mut updates = events.subscribe_thread(None, thread.clone()); // the thread without a tenant
//! let slot = pipeline.reserve(Reserve::new(thread, Role::Assistant)).await?.message;
//! let event = updates.recv().await.unwrap();
//! assert_eq!(event.result.message().unwrap().id, slot.id);
//! assert_eq!(event.tenant, None);
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

mod future;
mod layer;

use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tower::Service;

pub use self::future::ResponseFuture;
pub use self::layer::EventsLayer;
use persist_core::{PersistArgs, PersistError, PersistResult, TenantId, ThreadId};

/// One committed write, shared by every subscriber.
pub type Event = Arc<Committed>;

/// A committed write: the tenant of the thread written and the backend's answer.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Committed {
    /// The tenant of the thread written (the request context's), if any.
    pub tenant: Option<TenantId>,
    /// What the backend answered.
    pub result: PersistResult,
}

impl Committed {
    /// `result`, written in a thread of `tenant`.
    pub fn new(tenant: Option<TenantId>, result: PersistResult) -> Self {
        Self { tenant, result }
    }

    /// Whether this write is to the thread `(tenant, thread_id)`.
    pub fn is_in(&self, tenant: Option<&TenantId>, thread_id: &ThreadId) -> bool {
        self.tenant.as_ref() == tenant && self.result.thread_id() == Some(thread_id)
    }
}

/// The broadcast channel of committed writes; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Events {
    sender: broadcast::Sender<Event>,
}

impl Events {
    /// A channel keeping up to `capacity` events for slow subscribers.
    pub fn new(capacity: usize) -> Self {
        Self { sender: broadcast::channel(capacity.max(1)).0 }
    }

    /// The layer that publishes committed writes to this channel.
    pub fn layer(&self) -> EventsLayer {
        EventsLayer { sender: self.sender.clone() }
    }

    /// Every committed write from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }

    /// Committed writes of the thread `(tenant, thread_id)` from now on (`tenant` `None`: the
    /// thread of that id without a tenant).
    pub fn subscribe_thread(&self, tenant: Option<TenantId>, thread_id: ThreadId) -> ThreadEvents {
        ThreadEvents { receiver: self.sender.subscribe(), tenant, thread_id }
    }
}

/// A subscription to one thread's committed writes.
#[derive(Debug)]
pub struct ThreadEvents {
    receiver: broadcast::Receiver<Event>,
    tenant: Option<TenantId>,
    thread_id: ThreadId,
}

impl ThreadEvents {
    /// The next committed write of the thread.
    ///
    /// # Errors
    ///
    /// `Lagged(n)` when this subscriber fell behind and `n` events (of any thread) were
    /// dropped; `Closed` when every publisher is gone.
    pub async fn recv(&mut self) -> Result<Event, RecvError> {
        loop {
            let event = self.receiver.recv().await?;
            if event.is_in(self.tenant.as_ref(), &self.thread_id) {
                return Ok(event);
            }
        }
    }
}

/// The service of [`EventsLayer`].
#[derive(Debug, Clone)]
pub struct Publish<S> {
    inner: S,
    sender: broadcast::Sender<Event>,
}

impl<S> Service<PersistArgs> for Publish<S>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
{
    type Response = PersistResult;
    type Error = PersistError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PersistError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, args: PersistArgs) -> Self::Future {
        // Only message writes are events: reads and session requests change no message.
        let tenant = args.op().is_message_write().then(|| args.context().tenant().cloned());
        ResponseFuture::new(self.inner.call(args), self.sender.clone(), tenant)
    }
}
