//! What following a message takes, whatever a client is told of it: a subscription to its
//! thread's feed, the version known, catching up after a gap. A [`View`] turns what changed
//! into chunks: text ([`ReplyStream`](super::ReplyStream)) or parts
//! ([`PartStream`](super::PartStream)).

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use super::writer::{expiry_of, lapsed, lease_of, settle};
use super::{ReplyEnd, ending, follow_thread, read_message};
use persist_core::Timestamp;
use persist_core::feed::{FeedEvent, Removed, Subscription};
use persist_core::{Content, Context, Message, MessageId, PersistError, PersistOp, Pipeline, Result, Status, ThreadId};

/// How long past a writer's lease a follower waits (clocks of two machines differ) before it
/// settles the reply as interrupted.
const LAPSE_GRACE: Duration = Duration::from_millis(250);

/// What a follower keeps of the message, and the chunks it tells a client.
pub(crate) trait View {
    /// What a client is told.
    type Chunk;

    /// `delta` was appended to the content: queue what it adds.
    fn grow(&mut self, delta: &Content, queued: &mut VecDeque<Self::Chunk>);

    /// The content is now `content` (read after changes this view did not see): queue what it
    /// adds, or that it was replaced.
    fn settle(&mut self, content: &Content, queued: &mut VecDeque<Self::Chunk>);

    /// The chunk that tells of the message's end.
    fn end(end: ReplyEnd) -> Self::Chunk;

    /// `chunk` is handed to the client: where the client is now. Whether it was the end.
    fn yielded(&mut self, chunk: &Self::Chunk) -> bool;
}

/// The message followed.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) thread_id: ThreadId,
    pub(crate) message_id: MessageId,
    pub(crate) context: Context,
}

/// One message followed through the feed, told through `V`.
pub(crate) struct Follower<V: View> {
    pipeline: Pipeline,
    pub(crate) target: Target,
    subscription: Subscription,
    pub(crate) view: V,
    /// The message's version that `view` is of.
    version: u64,
    queued: VecDeque<V::Chunk>,
    ended: bool,
    /// An event taken from the feed whose reads failed (or were cancelled): taken again first.
    unread: Option<FeedEvent>,
    /// Fell behind the feed's retention and followed again: the message is to be read.
    behind: bool,
    /// When the reply's writer's lease runs out unless it writes (a reply with a lease,
    /// reserved): then the follower reads it, and settles it interrupted if its writer is
    /// silent still.
    expires_at: Option<Timestamp>,
    /// The reply's writer's lease, when it has one.
    lease: Option<Duration>,
}

/// Subscribes to the thread, then reads the message: a write committed in between is in both,
/// and its event is skipped by version, never missed. The message is read after the feed told
/// of it, from a copy of the store that has it: `context` is made consistent for that (the
/// request's own, which the stream keeps).
pub(crate) async fn start(
    pipeline: &Pipeline,
    thread_id: &ThreadId,
    message_id: &MessageId,
    context: &mut Context,
) -> Result<(Subscription, Message, Target)> {
    *context = std::mem::take(context).consistent();
    let target = Target { thread_id: thread_id.clone(), message_id: message_id.clone(), context: context.clone() };
    let subscription = follow_thread(pipeline, &target.thread_id, &target.context).await?;
    let message = read_message(pipeline, &target.thread_id, &target.message_id, &target.context).await?;
    Ok((subscription, message, target))
}

impl<V: View> Follower<V> {
    /// A stream's `Debug`: its name, its request, where its client is, and the follower's state.
    pub(crate) fn debug_as(
        &self,
        f: &mut fmt::Formatter<'_>,
        name: &str,
        request: &dyn fmt::Debug,
        offset: &dyn fmt::Debug,
    ) -> fmt::Result {
        f.debug_struct(name)
            .field("request", request)
            .field("offset", offset)
            .field("version", &self.version)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }

    /// A follower at `message` as read (its subscription made before the read), `queued` what
    /// the client is told first; the message's end follows them when it had ended.
    pub(crate) fn new(
        pipeline: Pipeline,
        target: Target,
        subscription: Subscription,
        message: &Message,
        view: V,
        mut queued: VecDeque<V::Chunk>,
    ) -> Self {
        if let Some(end) = ending(message) {
            queued.push_back(V::end(end));
        }
        Self {
            pipeline,
            target,
            subscription,
            view,
            version: message.version,
            queued,
            ended: false,
            unread: None,
            behind: false,
            expires_at: expiry_of(message),
            lease: lease_of(message),
        }
    }

    /// The next chunk, waiting for the message to change; `None` after its end. An error
    /// leaves the follower where it was: asked again, it goes on.
    pub(crate) async fn next(&mut self) -> Result<Option<V::Chunk>> {
        loop {
            if let Some(chunk) = self.queued.pop_front() {
                self.ended |= self.view.yielded(&chunk);
                return Ok(Some(chunk));
            }
            if self.ended {
                return Ok(None);
            }
            // What an error or a cancelled call left undone is done first: nothing is changed
            // before the reads it needs succeed, so it can always be done again.
            if self.behind {
                self.catch_up().await?;
                self.behind = false;
                continue;
            }
            let event = match self.unread.take() {
                Some(event) => event,
                None => match self.next_event().await {
                    None => {
                        self.lapse().await?;
                        continue;
                    }
                    Some(Ok(event)) => event,
                    // Fell behind the feed's retention: follow again from the head, and read
                    // the message once to catch up.
                    Some(Err(PersistError::FeedGap { .. })) => {
                        self.behind = true;
                        let (thread, context) = (&self.target.thread_id, &self.target.context);
                        self.subscription = follow_thread(&self.pipeline, thread, context).await?;
                        continue;
                    }
                    Some(Err(other)) => return Err(other),
                },
            };
            self.unread = Some(event.clone());
            self.take(&event).await?;
            self.unread = None;
        }
    }

    /// The next event of the thread; `None` when the writer's lease ran out first.
    async fn next_event(&mut self) -> Option<Result<persist_core::feed::FeedEvent>> {
        let Some(expires_at) = self.expires_at else { return Some(self.subscription.next().await) };
        let wait = expires_at.as_micros().saturating_sub(Timestamp::now().as_micros()).max(0);
        let wait = Duration::from_micros(wait as u64) + LAPSE_GRACE;
        tokio::time::timeout(wait, self.subscription.next()).await.ok()
    }

    /// The writer's lease ran out with no event: reads the reply, and settles it interrupted
    /// when its writer is silent still (its end then comes as an event); else waits for its
    /// new expiry.
    async fn lapse(&mut self) -> Result<()> {
        let message = self.read().await?;
        self.expires_at = expiry_of(&message);
        if lapsed(&message, Timestamp::now()) {
            settle(&self.pipeline, &message, &self.target.context).await?;
            // Its end comes as an event; should it not (settled meanwhile by another, a feed
            // that lags), the message is read again after the grace.
            self.expires_at = Some(Timestamp::now());
        }
        Ok(())
    }

    /// Queues what `event` tells of the message; changes nothing unless it succeeds.
    async fn take(&mut self, event: &FeedEvent) -> Result<()> {
        let change = &event.change;
        if change.removed == Some(Removed::Thread) {
            self.queued.push_back(V::end(ReplyEnd::Deleted));
            return Ok(());
        }
        if change.message_id.as_ref() != Some(&self.target.message_id) {
            return Ok(());
        }
        // A removal carries the message's last version: told before the version is compared.
        if change.removed == Some(Removed::Message) {
            self.queued.push_back(V::end(ReplyEnd::Deleted));
            return Ok(());
        }
        if change.version <= self.version {
            return Ok(());
        }
        // A write of the reply renews its writer's lease.
        if let (Some(lease), Some(status)) = (self.lease, change.status) {
            self.expires_at = (status == Status::Reserved).then(|| event.at.saturating_add(lease));
        }
        let next = change.version == self.version + 1;
        match (change.op, &change.delta, change.status) {
            // Metadata or role: the content is as it was.
            (PersistOp::Update, _, _) if next => self.version = change.version,
            // A token, or a stream's end that says it was complete: nothing to read.
            (PersistOp::UpdateContent, Some(delta), Some(status @ (Status::Reserved | Status::Complete))) if next => {
                self.version = change.version;
                self.view.grow(delta, &mut self.queued);
                if status == Status::Complete {
                    self.queued.push_back(V::end(ReplyEnd::Complete));
                }
            }
            // Interrupted: whether by a stop is told by the message's metadata. The message is
            // read first (it may have changed since), then the delta taken, then what the read
            // shows beyond it.
            (PersistOp::UpdateContent, Some(delta), Some(_)) if next => {
                let read = self.read().await;
                self.version = change.version;
                self.view.grow(delta, &mut self.queued);
                self.settle(read)?;
            }
            // A replacement, a delta dropped by retention, or events this stream did not see.
            _ => self.catch_up().await?,
        }
        Ok(())
    }

    /// Reads the message and queues what changed since the content known.
    async fn catch_up(&mut self) -> Result<()> {
        let read = self.read().await;
        self.settle(read)
    }

    /// Queues what `read` of the message shows beyond the content known, and its end if it
    /// ended; a message gone ends the stream `Deleted`.
    fn settle(&mut self, read: Result<Message>) -> Result<()> {
        let message = match read {
            Ok(message) => message,
            Err(PersistError::NotFound { .. } | PersistError::ThreadDeleted { .. }) => {
                self.queued.push_back(V::end(ReplyEnd::Deleted));
                return Ok(());
            }
            Err(other) => return Err(other),
        };
        if message.version > self.version {
            self.view.settle(&message.content, &mut self.queued);
            self.version = message.version;
            self.expires_at = expiry_of(&message);
        }
        if let Some(end) = ending(&message) {
            self.queued.push_back(V::end(end));
        }
        Ok(())
    }

    /// The message as stored.
    async fn read(&self) -> Result<Message> {
        let target = &self.target;
        read_message(&self.pipeline, &target.thread_id, &target.message_id, &target.context).await
    }
}
