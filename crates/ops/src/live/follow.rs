//! [`FollowReply`]: one message read as a stream of text, resumable from an offset.

use std::collections::VecDeque;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::ReplyEnd;
use super::follower::{self, Follower, View};
use persist_core::Pipeline;
use persist_core::{Content, Context, context_setter};
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

/// A message followed as text; see [`PipelineExt::follow_reply`](crate::PipelineExt::follow_reply). [`next`](Self::next) yields the
/// text from the offset asked, then each addition as it commits, then the
/// [end](ReplyChunk::End), then `None`.
pub struct ReplyStream {
    request: FollowReply,
    follower: Follower<TextView>,
}

impl fmt::Debug for ReplyStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.follower.debug_as(f, "ReplyStream", &self.request, &self.follower.view.yielded)
    }
}

/// See [`PipelineExt::follow_reply`](crate::PipelineExt::follow_reply).
pub(crate) async fn follow_reply(pipeline: &Pipeline, mut request: FollowReply) -> Result<ReplyStream> {
    let (subscription, message, target) =
        follower::start(pipeline, &request.thread_id, &request.message_id, &mut request.context).await?;
    let text = message.content.to_text();
    let chars = text.chars().count() as u64;
    if request.from > chars {
        return Err(PersistError::invalid(
            "from",
            format!("offset {} is beyond the reply's {chars} characters", request.from),
        ));
    }
    let from = usize::try_from(request.from).unwrap_or(usize::MAX);
    let rest: String = text.chars().skip(from).collect();
    let mut queued = VecDeque::new();
    if !rest.is_empty() {
        queued.push_back(ReplyChunk::text(request.from, rest));
    }
    let view = TextView { text, chars, yielded: request.from };
    let follower = Follower::new(pipeline.clone(), target, subscription, &message, view, queued);
    Ok(ReplyStream { request, follower })
}

impl ReplyStream {
    /// The next chunk, waiting for the reply to grow; `None` after its end.
    ///
    /// # Errors
    ///
    /// The store's errors, or a layer's refusal; the stream can be asked again, and goes on
    /// from where it was.
    pub async fn next(&mut self) -> Result<Option<ReplyChunk>> {
        self.follower.next().await
    }

    /// Where the text yielded so far ends, in characters from the reply's start (the offset
    /// asked, then each chunk's end): where a client that received every chunk resumes.
    pub fn offset(&self) -> u64 {
        self.follower.view.yielded
    }

    /// The request followed.
    pub fn request(&self) -> &FollowReply {
        &self.request
    }
}

/// A message's text as far as known.
pub(crate) struct TextView {
    text: String,
    /// `text`'s length in characters.
    chars: u64,
    /// Where the chunks yielded so far end, in characters.
    yielded: u64,
}

impl TextView {
    /// Adds `added` to the text and queues it.
    fn grow_text(&mut self, added: &str, queued: &mut VecDeque<ReplyChunk>) {
        if added.is_empty() {
            return;
        }
        queued.push_back(ReplyChunk::text(self.chars, added));
        self.chars += added.chars().count() as u64;
        self.text.push_str(added);
    }
}

impl View for TextView {
    type Chunk = ReplyChunk;

    fn grow(&mut self, delta: &Content, queued: &mut VecDeque<ReplyChunk>) {
        self.grow_text(&delta.to_text(), queued);
    }

    fn settle(&mut self, content: &Content, queued: &mut VecDeque<ReplyChunk>) {
        let text = content.to_text();
        match text.strip_prefix(self.text.as_str()) {
            Some(added) => {
                let added = added.to_owned();
                self.grow_text(&added, queued);
            }
            None => {
                self.chars = text.chars().count() as u64;
                self.text.clone_from(&text);
                queued.push_back(ReplyChunk::Replaced { text });
            }
        }
    }

    fn end(end: ReplyEnd) -> ReplyChunk {
        ReplyChunk::End(end)
    }

    fn yielded(&mut self, chunk: &ReplyChunk) -> bool {
        match chunk {
            ReplyChunk::Text { offset, text } => self.yielded = offset + text.chars().count() as u64,
            ReplyChunk::Replaced { text } => self.yielded = text.chars().count() as u64,
            ReplyChunk::End(_) => return true,
        }
        false
    }
}
