//! [`FollowReply`]: one message read as a stream of text, resumable from an offset.

use std::collections::VecDeque;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{ending, follow_thread, read_message};
use persist_core::PersistOp;
use persist_core::Pipeline;
use persist_core::feed::{FeedEvent, Removed, Subscription};
use persist_core::{Context, context_setter};
use persist_core::{Message, Status};
use persist_core::{MessageId, ThreadId};
use persist_core::{PersistError, Result};

/// Follows one message (a reply being generated, or one already done) as a stream of text from
/// a character offset; see [`PipelineExt::follow_reply`](crate::PipelineExt::follow_reply).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FollowReply {
    /// The message's thread.
    pub thread_id: ThreadId,
    /// The message.
    pub message_id: MessageId,
    /// Where to start, in characters (Unicode scalar values) of the message's text
    /// ([`Content::to_text`](persist_core::Content::to_text)): 0 for all of it, or what a client
    /// already has.
    #[serde(default)]
    pub from: u64,
    /// Request context: its tenant's message is followed.
    #[serde(default)]
    pub context: Context,
}

impl FollowReply {
    /// Follows `(thread_id, message_id)` from its start.
    pub fn new(thread_id: ThreadId, message_id: MessageId) -> Self {
        Self { thread_id, message_id, from: 0, context: Context::new() }
    }

    /// Starts at character `offset` (what the client already has).
    pub fn from(mut self, offset: u64) -> Self {
        self.from = offset;
        self
    }

    context_setter!();
}

/// What a [`ReplyStream`] yields. In JSON: `{"type": "text", "data": {"offset": 5, "text":
/// "…"}}`, `{"type": "replaced", "data": {"text": "…"}}`, `{"type": "end", "data": "stopped"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReplyChunk {
    /// The reply's text from character `offset` on: what follows what the client has.
    Text {
        /// Where `text` starts in the reply's text, in characters.
        offset: u64,
        /// The characters added.
        text: String,
    },
    /// The content was replaced by one that does not continue the text sent so far (a final
    /// write that rewrote the reply): `text` is the whole of it now, and offsets go on from its
    /// end. A client shows it instead of what it had.
    Replaced {
        /// The reply's whole text.
        text: String,
    },
    /// The reply ended, and so does the stream.
    End(ReplyEnd),
}

impl ReplyChunk {
    /// A [`Text`](Self::Text) chunk.
    pub fn text(offset: u64, text: impl Into<String>) -> Self {
        Self::Text { offset, text: text.into() }
    }
}

/// How a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReplyEnd {
    /// Finished: [`Status::Complete`].
    Complete,
    /// Cut short, its text so far kept: [`Status::Interrupted`] (its generator failed, or went
    /// silent and [`cleanup_stranded`](crate::PipelineExt::cleanup_stranded) marked it).
    Interrupted,
    /// Cut short because a client asked ([`PipelineExt::stop_reply`](crate::PipelineExt::stop_reply)): interrupted, with a stop
    /// recorded.
    Stopped,
    /// The message or its thread was deleted.
    Deleted,
}

/// A message followed as text; see [`PipelineExt::follow_reply`](crate::PipelineExt::follow_reply). [`next`](Self::next) yields the
/// text from the offset asked, then each addition as it commits, then the
/// [end](ReplyChunk::End), then `None`.
pub struct ReplyStream {
    pipeline: Pipeline,
    request: FollowReply,
    subscription: Subscription,
    /// The message's text as far as known, and its length in characters.
    text: String,
    chars: u64,
    /// Where the chunks yielded so far end, in characters.
    yielded: u64,
    /// The message's version that `text` is of.
    version: u64,
    queued: VecDeque<ReplyChunk>,
    ended: bool,
    /// An event taken from the feed whose reads failed (or were cancelled): taken again first.
    unread: Option<FeedEvent>,
    /// Fell behind the feed's retention and followed again: the message is to be read.
    behind: bool,
}

impl fmt::Debug for ReplyStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyStream")
            .field("request", &self.request)
            .field("offset", &self.yielded)
            .field("version", &self.version)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

/// See [`PipelineExt::follow_reply`](crate::PipelineExt::follow_reply).
pub(crate) async fn follow_reply(pipeline: &Pipeline, mut request: FollowReply) -> Result<ReplyStream> {
    // The message is read after the feed told of it: from a copy of the store that has it.
    request.context = request.context.consistent();
    // Subscribed first, read second: a write committed in between is in both, and its
    // event is skipped by version, never missed.
    let subscription = follow_thread(pipeline, &request.thread_id, &request.context).await?;
    let message = read_message(pipeline, &request.thread_id, &request.message_id, &request.context).await?;
    let text = message.content.to_text();
    let chars = text.chars().count() as u64;
    if request.from > chars {
        return Err(PersistError::invalid(
            "from",
            format!("offset {} is beyond the reply's {chars} characters", request.from),
        ));
    }
    let mut stream = ReplyStream::new(pipeline.clone(), request, subscription, &message);
    let from = usize::try_from(stream.request.from).unwrap_or(usize::MAX);
    let rest: String = text.chars().skip(from).collect();
    if !rest.is_empty() {
        stream.queued.push_back(ReplyChunk::text(stream.request.from, rest));
    }
    if let Some(end) = ending(&message) {
        stream.queued.push_back(ReplyChunk::End(end));
    }
    Ok(stream)
}

impl ReplyStream {
    /// A stream at `message` as read, its subscription made before the read.
    fn new(pipeline: Pipeline, request: FollowReply, subscription: Subscription, message: &Message) -> Self {
        let text = message.content.to_text();
        let yielded = request.from;
        Self {
            pipeline,
            request,
            subscription,
            chars: text.chars().count() as u64,
            yielded,
            text,
            version: message.version,
            queued: VecDeque::new(),
            ended: false,
            unread: None,
            behind: false,
        }
    }

    /// The next chunk, waiting for the reply to grow; `None` after its end.
    ///
    /// # Errors
    ///
    /// The store's errors, or a layer's refusal; the stream can be asked again, and goes on
    /// from where it was.
    pub async fn next(&mut self) -> Result<Option<ReplyChunk>> {
        loop {
            if let Some(chunk) = self.queued.pop_front() {
                match &chunk {
                    ReplyChunk::Text { offset, text } => self.yielded = offset + text.chars().count() as u64,
                    ReplyChunk::Replaced { text } => self.yielded = text.chars().count() as u64,
                    ReplyChunk::End(_) => self.ended = true,
                }
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
                None => match self.subscription.next().await {
                    Ok(event) => event,
                    // Fell behind the feed's retention: follow again from the head, and read
                    // the message once to catch up.
                    Err(PersistError::FeedGap { .. }) => {
                        self.behind = true;
                        let (thread, context) = (&self.request.thread_id, &self.request.context);
                        self.subscription = follow_thread(&self.pipeline, thread, context).await?;
                        continue;
                    }
                    Err(other) => return Err(other),
                },
            };
            self.unread = Some(event.clone());
            self.take(&event).await?;
            self.unread = None;
        }
    }

    /// Where the text yielded so far ends, in characters from the reply's start (the offset
    /// asked, then each chunk's end): where a client that received every chunk resumes.
    pub fn offset(&self) -> u64 {
        self.yielded
    }

    /// The request followed.
    pub fn request(&self) -> &FollowReply {
        &self.request
    }

    /// Queues what `event` tells of the message; changes nothing unless it succeeds.
    async fn take(&mut self, event: &FeedEvent) -> Result<()> {
        let change = &event.change;
        if change.removed == Some(Removed::Thread) {
            self.queued.push_back(ReplyChunk::End(ReplyEnd::Deleted));
            return Ok(());
        }
        if change.message_id.as_ref() != Some(&self.request.message_id) {
            return Ok(());
        }
        // A removal carries the message's last version: told before the version is compared.
        if change.removed == Some(Removed::Message) {
            self.queued.push_back(ReplyChunk::End(ReplyEnd::Deleted));
            return Ok(());
        }
        if change.version <= self.version {
            return Ok(());
        }
        let next = change.version == self.version + 1;
        match (change.op, &change.delta, change.status) {
            // Metadata or role: the text is as it was.
            (PersistOp::Update, _, _) if next => self.version = change.version,
            // A token, or a stream's end that says it was complete: nothing to read.
            (PersistOp::UpdateContent, Some(delta), Some(status @ (Status::Reserved | Status::Complete))) if next => {
                self.version = change.version;
                self.grow(&delta.to_text());
                if status == Status::Complete {
                    self.queued.push_back(ReplyChunk::End(ReplyEnd::Complete));
                }
            }
            // Interrupted: whether by a stop is told by the message's metadata. The message is
            // read first (it may have changed since), then the delta taken, then what the read
            // shows beyond it.
            (PersistOp::UpdateContent, Some(delta), Some(_)) if next => {
                let read = self.read().await;
                self.version = change.version;
                self.grow(&delta.to_text());
                self.settle(read)?;
            }
            // A replacement, a delta dropped by retention, or events this stream did not see.
            _ => self.catch_up().await?,
        }
        Ok(())
    }

    /// Reads the message and queues what changed since the text known.
    async fn catch_up(&mut self) -> Result<()> {
        let read = self.read().await;
        self.settle(read)
    }

    /// Queues what `read` of the message shows beyond the text known, and its end if it ended;
    /// a message gone ends the stream `Deleted`.
    fn settle(&mut self, read: Result<Message>) -> Result<()> {
        let message = match read {
            Ok(message) => message,
            Err(PersistError::NotFound { .. } | PersistError::ThreadDeleted { .. }) => {
                self.queued.push_back(ReplyChunk::End(ReplyEnd::Deleted));
                return Ok(());
            }
            Err(other) => return Err(other),
        };
        if message.version > self.version {
            let text = message.content.to_text();
            match text.strip_prefix(self.text.as_str()) {
                Some(added) => {
                    let added = added.to_owned();
                    self.grow(&added);
                }
                None => {
                    self.chars = text.chars().count() as u64;
                    self.text.clone_from(&text);
                    self.queued.push_back(ReplyChunk::Replaced { text });
                }
            }
            self.version = message.version;
        }
        if let Some(end) = ending(&message) {
            self.queued.push_back(ReplyChunk::End(end));
        }
        Ok(())
    }

    /// The message as stored.
    async fn read(&self) -> Result<Message> {
        let request = &self.request;
        read_message(&self.pipeline, &request.thread_id, &request.message_id, &request.context).await
    }

    /// Adds `added` to the text and queues it.
    fn grow(&mut self, added: &str) {
        if added.is_empty() {
            return;
        }
        self.queued.push_back(ReplyChunk::text(self.chars, added));
        self.chars += added.chars().count() as u64;
        self.text.push_str(added);
    }
}
