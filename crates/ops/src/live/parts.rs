//! [`FollowParts`]: one message read as a stream of its parts (text, reasoning, tool calls and
//! results, files), resumable from a place in them.

use std::collections::VecDeque;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::ReplyEnd;
use super::follower::{self, Follower, View};
use persist_core::Pipeline;
use persist_core::raw::{streamed_text, with_text};
use persist_core::{Content, Context, Part, PartOffset, context_setter};
use persist_core::{MessageId, ThreadId};
use persist_core::{PersistError, Result};

/// Follows one message (a reply being generated, or one already done) as a stream of its
/// [parts](Part) from a place in them; see
/// [`PipelineExt::follow_parts`](crate::PipelineExt::follow_parts).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FollowParts {
    /// The message's thread.
    pub thread_id: ThreadId,
    /// The message.
    pub message_id: MessageId,
    /// Where to start: [`PartOffset::START`] for all of it, or what a client already has.
    #[serde(default)]
    pub from: PartOffset,
    /// Request context: its tenant's message is followed.
    #[serde(default)]
    pub context: Context,
}

impl FollowParts {
    /// Follows `(thread_id, message_id)` from its start.
    pub fn new(thread_id: ThreadId, message_id: MessageId) -> Self {
        Self { thread_id, message_id, from: PartOffset::START, context: Context::new() }
    }

    /// Starts at `offset` (what the client already has).
    pub fn from(mut self, offset: PartOffset) -> Self {
        self.from = offset;
        self
    }

    context_setter!();
}

/// What a [`PartStream`] yields.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PartChunk {
    /// A part begins at `index`: a tool call, a tool result, a file or a kind of its own whole;
    /// a text or reasoning part with its text so far, which [`Delta`](Self::Delta)s may extend.
    Part {
        /// Its place among the message's parts, from 0.
        index: u64,
        /// The part.
        part: Part,
    },
    /// More text for the text or reasoning part at `index`.
    Delta {
        /// The part it extends.
        index: u64,
        /// Where `added` starts in that part's text, in characters.
        offset: u64,
        /// What was added: a [`Part::Text`] or [`Part::Reasoning`] of it.
        added: Part,
    },
    /// The content was replaced by one that does not continue the parts sent so far (a final
    /// write that rewrote the reply): `parts` is the whole of it now. A client shows it
    /// instead of what it had.
    Replaced {
        /// The message's parts.
        parts: Vec<Part>,
    },
    /// The reply ended, and so does the stream.
    End(ReplyEnd),
}

/// A message followed as parts; see
/// [`PipelineExt::follow_parts`](crate::PipelineExt::follow_parts). [`next`](Self::next)
/// yields the parts from the place asked, then each addition as it commits, then the
/// [end](PartChunk::End), then `None`.
pub struct PartStream {
    request: FollowParts,
    follower: Follower<PartsView>,
}

impl fmt::Debug for PartStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.follower.debug_as(f, "PartStream", &self.request, &self.follower.view.yielded)
    }
}

/// See [`PipelineExt::follow_parts`](crate::PipelineExt::follow_parts).
pub(crate) async fn follow_parts(pipeline: &Pipeline, mut request: FollowParts) -> Result<PartStream> {
    let (subscription, message, target) =
        follower::start(pipeline, &request.thread_id, &request.message_id, &mut request.context).await?;
    let parts = message.content.parts();
    let from = request.from;
    let beyond =
        || PersistError::invalid("from", format!("{from} is not a place in the reply's {} parts", parts.len()));
    let first = usize::try_from(from.part).map_err(|_| beyond())?;
    let mut queued = VecDeque::new();
    let rest = match from.chars {
        None if first <= parts.len() => first,
        Some(chars) => {
            let text = parts.get(first).and_then(streamed_text).ok_or_else(beyond)?;
            let skip = usize::try_from(chars).map_err(|_| beyond())?;
            if text.chars().count() < skip {
                return Err(beyond());
            }
            let added: String = text.chars().skip(skip).collect();
            if !added.is_empty() {
                let added = with_text(&parts[first], added);
                queued.push_back(PartChunk::Delta { index: from.part, offset: chars, added });
            }
            first + 1
        }
        None => return Err(beyond()),
    };
    for (index, part) in parts.iter().enumerate().skip(rest) {
        queued.push_back(PartChunk::Part { index: index as u64, part: part.clone() });
    }
    let last_chars = parts.last().and_then(streamed_text).map_or(0, |text| text.chars().count() as u64);
    let view = PartsView { parts, last_chars, yielded: from };
    let follower = Follower::new(pipeline.clone(), target, subscription, &message, view, queued);
    Ok(PartStream { request, follower })
}

impl PartStream {
    /// The next chunk, waiting for the reply to grow; `None` after its end.
    ///
    /// # Errors
    ///
    /// The store's errors, or a layer's refusal; the stream can be asked again, and goes on
    /// from where it was.
    pub async fn next(&mut self) -> Result<Option<PartChunk>> {
        self.follower.next().await
    }

    /// Where the chunks yielded so far end (the place asked, then each chunk's end): where a
    /// client that received every chunk resumes.
    pub fn offset(&self) -> PartOffset {
        self.follower.view.yielded
    }

    /// The request followed.
    pub fn request(&self) -> &FollowParts {
        &self.request
    }

    /// The message's parts as far as this stream has read them: what it yielded, and what it
    /// holds to yield next.
    pub fn parts(&self) -> &[Part] {
        &self.follower.view.parts
    }
}

/// Whether `next` continues `known`: equal, or the same kind of streamed part with more text.
fn continues(known: &Part, next: &Part) -> bool {
    if known == next {
        return true;
    }
    match (known, next) {
        (Part::Text { text: a }, Part::Text { text: b })
        | (Part::Reasoning { text: a }, Part::Reasoning { text: b }) => b.starts_with(a.as_str()),
        _ => false,
    }
}

/// A message's parts as far as known.
pub(crate) struct PartsView {
    parts: Vec<Part>,
    /// The last part's length in characters, when it is text or reasoning.
    last_chars: u64,
    /// Where the chunks yielded so far end.
    yielded: PartOffset,
}

impl PartsView {
    /// Appends `part` and queues it.
    fn push(&mut self, part: Part, queued: &mut VecDeque<PartChunk>) {
        self.last_chars = streamed_text(&part).map_or(0, |text| text.chars().count() as u64);
        let index = self.parts.len() as u64;
        self.parts.push(part.clone());
        queued.push_back(PartChunk::Part { index, part });
    }

    /// Adds `added` to the last part (text or reasoning) and queues it.
    fn extend_last(&mut self, added: &str, queued: &mut VecDeque<PartChunk>) {
        let Some(last) = self.parts.last_mut() else { return };
        if added.is_empty() {
            return;
        }
        let kind = last.clone();
        if let Part::Text { text } | Part::Reasoning { text } = last {
            text.push_str(added);
        }
        let index = self.parts.len() as u64 - 1;
        queued.push_back(PartChunk::Delta {
            index,
            offset: self.last_chars,
            added: with_text(&kind, added.to_owned()),
        });
        self.last_chars += added.chars().count() as u64;
    }
}

impl View for PartsView {
    type Chunk = PartChunk;

    // As `Content::appended` joins: the delta's first block onto the last part, when both are
    // text, or both reasoning; the rest after it.
    fn grow(&mut self, delta: &Content, queued: &mut VecDeque<PartChunk>) {
        for (i, part) in delta.parts().into_iter().enumerate() {
            let joins = i == 0
                && self.parts.last().is_some_and(|last| {
                    matches!(
                        (last, &part),
                        (Part::Text { .. }, Part::Text { .. }) | (Part::Reasoning { .. }, Part::Reasoning { .. })
                    )
                });
            if joins {
                self.extend_last(streamed_text(&part).unwrap_or_default(), queued);
            } else {
                self.push(part, queued);
            }
        }
    }

    fn settle(&mut self, content: &Content, queued: &mut VecDeque<PartChunk>) {
        let parts = content.parts();
        let known = self.parts.len();
        let goes_on = parts.len() >= known
            && self
                .parts
                .iter()
                .zip(&parts)
                .enumerate()
                .all(|(i, (was, now))| if i + 1 == known { continues(was, now) } else { was == now });
        if !goes_on {
            self.last_chars = parts.last().and_then(streamed_text).map_or(0, |text| text.chars().count() as u64);
            self.parts.clone_from(&parts);
            queued.push_back(PartChunk::Replaced { parts });
            return;
        }
        let mut parts = parts.into_iter().skip(known.saturating_sub(1));
        if known > 0
            && let Some(now) = parts.next()
            && let (Some(was), Some(text)) = (self.parts.last().and_then(streamed_text), streamed_text(&now))
        {
            let added = text[was.len()..].to_owned();
            self.extend_last(&added, queued);
        }
        for part in parts {
            self.push(part, queued);
        }
    }

    fn end(end: ReplyEnd) -> PartChunk {
        PartChunk::End(end)
    }

    fn yielded(&mut self, chunk: &PartChunk) -> bool {
        let after = |index: u64, part: &Part| match streamed_text(part) {
            Some(text) => PartOffset::within(index, text.chars().count() as u64),
            None => PartOffset::before(index + 1),
        };
        match chunk {
            PartChunk::Part { index, part } => self.yielded = after(*index, part),
            PartChunk::Delta { index, offset, added } => {
                let chars = streamed_text(added).map_or(0, |text| text.chars().count() as u64);
                self.yielded = PartOffset::within(*index, offset + chars);
            }
            PartChunk::Replaced { parts } => {
                self.yielded = match parts.last() {
                    Some(last) => after(parts.len() as u64 - 1, last),
                    None => PartOffset::START,
                }
            }
            PartChunk::End(_) => return true,
        }
        false
    }
}
