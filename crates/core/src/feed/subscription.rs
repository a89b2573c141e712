//! [`Subscription`]: follows a scope of the feed, reading whenever the hub says it moved.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

use tokio::sync::watch;

use super::event::FeedEvent;
use super::hub::FeedHub;
use super::read::{FeedPage, ReadFeed};
use crate::model::error::{PersistError, Result};

/// Follows a scope of the feed; see [`Pipeline::subscribe`](crate::Pipeline::subscribe).
///
/// Every read goes through the pipeline ([`ReadFeed`] with the subscription's context), so the
/// layers see it; between reads the subscription waits for the backend's wake-up of its scope.
pub struct Subscription {
    read: ReadPages,
    query: ReadFeed,
    buffered: VecDeque<FeedEvent>,
    caught_up: bool,
    wake: watch::Receiver<u64>,
    head: u64,
}

/// How a subscription reads its next page: through the pipeline that made it.
pub(crate) type ReadPages =
    Box<dyn Fn(ReadFeed) -> Pin<Box<dyn Future<Output = Result<FeedPage>> + Send>> + Send + Sync>;

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("query", &self.query)
            .field("buffered", &self.buffered.len())
            .field("caught_up", &self.caught_up)
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// A subscription that reads with `read`, woken by `hub`, from `first` on.
    pub(crate) fn new(read: ReadPages, query: ReadFeed, hub: &FeedHub, first: FeedPage) -> Self {
        // The tenant the backend read (a layer may have set it), which events are published as.
        let wake = hub.watch(&query.scope, first.tenant.clone());
        // Read once more after the first page even when it was the last: an event committed
        // between that read and this registration woke nobody.
        Self { read, query, buffered: first.events.into(), caught_up: false, wake, head: first.head }
    }

    /// The next event in scope, waiting for one.
    ///
    /// # Errors
    ///
    /// What the pipeline's [`ReadFeed`] answers: [`PersistError::FeedGap`] when this
    /// subscriber fell so far behind that retention removed events it had not read yet, or the
    /// store's error. The subscription can be asked again after an error: it reads from where
    /// it stopped.
    pub async fn next(&mut self) -> Result<FeedEvent> {
        loop {
            if let Some(event) = self.buffered.pop_front() {
                self.query.after = event.position;
                return Ok(event);
            }
            if self.caught_up {
                let after = self.query.after;
                if self.wake.wait_for(|&position| position > after).await.is_err() {
                    return Err(PersistError::Backend {
                        message: "the feed's backend was dropped".into(),
                        source: None,
                    });
                }
            }
            let page = (self.read)(self.query.clone()).await?;
            self.caught_up = !page.has_more;
            self.head = page.head;
            self.buffered = page.events.into();
        }
    }

    /// The position of the last event returned (or the one subscribed after): where a
    /// reconnecting client resumes.
    pub fn position(&self) -> u64 {
        self.query.after
    }

    /// The feed's head as of the last read.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// The scope followed, with its context.
    pub fn query(&self) -> &ReadFeed {
        &self.query
    }
}
