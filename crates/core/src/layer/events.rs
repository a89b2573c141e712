//! Broadcast committed writes, for streaming to UIs.
//!
//! [`Events`] owns a `tokio::sync::broadcast` channel; its [`layer`](Events::layer) sends every
//! **successful** result after the backend acknowledged it (never a refused or failed write).
//! A reservation's event carries the message id and seq before any content exists, so a UI can
//! place the bubble right away and fill it from the `update_content` events.
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
//! let mut updates = events.subscribe_thread(thread.clone());
//! let slot = pipeline.reserve(Reserve::new(thread, Role::Assistant)).await?.message;
//! let event = updates.recv().await.unwrap();
//! assert_eq!(event.message().unwrap().id, slot.id);
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tower::{Layer, Service};

use crate::{PersistArgs, PersistError, PersistResult, ThreadId};

/// One committed write.
pub type Event = Arc<PersistResult>;

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

    /// Committed writes of one thread from now on.
    pub fn subscribe_thread(&self, thread_id: ThreadId) -> ThreadEvents {
        ThreadEvents { receiver: self.sender.subscribe(), thread_id }
    }
}

/// A subscription to one thread's committed writes.
#[derive(Debug)]
pub struct ThreadEvents {
    receiver: broadcast::Receiver<Event>,
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
            if event.thread_id() == Some(&self.thread_id) {
                return Ok(event);
            }
        }
    }
}

/// Publishes committed writes to an [`Events`] channel.
#[derive(Debug, Clone)]
pub struct EventsLayer {
    sender: broadcast::Sender<Event>,
}

impl<S> Layer<S> for EventsLayer {
    type Service = Publish<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Publish { inner, sender: self.sender.clone() }
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
        ResponseFuture { inner: self.inner.call(args), sender: self.sender.clone() }
    }
}

pin_project! {
    /// Response future of [`Publish`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        sender: broadcast::Sender<Event>,
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
        // Never waits: a full channel drops the oldest event for lagging subscribers. Only
        // message writes are events: reads and session requests change no message.
        if let Ok(result) = &output
            && result.op().is_message_write()
            && this.sender.receiver_count() > 0
        {
            let _ = this.sender.send(Arc::new(result.clone()));
        }
        Poll::Ready(output)
    }
}
