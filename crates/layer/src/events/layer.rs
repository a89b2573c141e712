use tokio::sync::broadcast;
use tower::Layer;

use super::{Event, Publish};

/// Publishes committed writes to an [`Events`](super::Events) channel.
#[derive(Debug, Clone)]
pub struct EventsLayer {
    pub(super) sender: broadcast::Sender<Event>,
}

impl<S> Layer<S> for EventsLayer {
    type Service = Publish<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Publish { inner, sender: self.sender.clone() }
    }
}
