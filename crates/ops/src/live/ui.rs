//! A reply as the Vercel AI SDK's UI message stream: its parts, followed, as the chunks the
//! SDK's client parses. Every surface that serves a chat UI (`persist-serve`'s routes, the
//! Node package's resume handler) answers with these chunks, so a client resumes on any of them.

use std::collections::VecDeque;

use super::{PartChunk, PartOffset, PartStream, ReplyEnd};
use persist_core::{MessageId, Part, PersistError};
use serde_json::{Value, json};

/// A reply followed as the AI SDK's UI message stream (`start`, `start-step`,
/// `text-start`/`-delta`/`-end`,
/// `reasoning-…`, `tool-input-available`, `tool-output-available` or `tool-output-error`,
/// `file`, then `finish`, `abort` or `error`), from any instance sharing the store.
///
/// Part ids are the part's place (`text-0`, `reasoning-2`): the same on every instance and
/// every replay, so a client that kept its state resumes a part it had started.
#[derive(Debug)]
pub struct UiMessageStream {
    parts: PartStream,
    message_id: MessageId,
    /// The text or reasoning part a `…-start` was sent for and no `…-end` yet: its index, and
    /// whether it is reasoning.
    open: Option<(u64, bool)>,
    queued: VecDeque<(Value, Option<PartOffset>)>,
    started: bool,
    ended: bool,
    /// A tool's result was told since the step started: what follows starts the next step.
    answered: bool,
}

impl UiMessageStream {
    /// The chunks of the reply `parts` follows (its id `message_id`, the `start` chunk's).
    /// When `parts` starts inside a text or reasoning part (a client resuming with its state),
    /// that part is taken as started.
    pub fn new(parts: PartStream, message_id: MessageId) -> Self {
        let from = parts.request().from;
        let open = from.chars.and_then(|_| {
            let part = usize::try_from(from.part).ok().and_then(|index| parts.parts().get(index))?;
            Some((from.part, matches!(part, Part::Reasoning { .. })))
        });
        Self { parts, message_id, open, queued: VecDeque::new(), started: false, ended: false, answered: false }
    }

    /// The next chunk (a JSON object), and where a client that has it and every chunk before
    /// resumes when it is the last chunk of what one change of the reply told (`None` between
    /// them); `None` after the last chunk.
    ///
    /// # Errors
    ///
    /// The store's errors; asked again, the stream goes on from where it was.
    pub async fn next(&mut self) -> Result<Option<(Value, Option<PartOffset>)>, PersistError> {
        loop {
            if let Some(chunk) = self.queued.pop_front() {
                return Ok(Some(chunk));
            }
            if self.ended {
                return Ok(None);
            }
            if !self.started {
                self.started = true;
                let start = json!({"type": "start", "messageId": self.message_id});
                let offset = self.parts.offset();
                self.queued.push_back((start, None));
                self.queued.push_back((json!({"type": "start-step"}), Some(offset)));
                continue;
            }
            match self.parts.next().await? {
                Some(chunk) => self.tell(chunk),
                None => self.ended = true,
            }
        }
    }

    /// Queues the chunks that tell `chunk`, the last of them with the place after it.
    fn tell(&mut self, chunk: PartChunk) {
        let mut chunks = Vec::new();
        let result = matches!(chunk, PartChunk::Part { part: Part::ToolResult { .. }, .. });
        if self.answered && !result && matches!(chunk, PartChunk::Part { .. } | PartChunk::Delta { .. }) {
            self.close(&mut chunks);
            chunks.push(json!({"type": "finish-step"}));
            chunks.push(json!({"type": "start-step"}));
            self.answered = false;
        }
        self.answered |= result;
        match chunk {
            PartChunk::Part { index, part } => {
                self.close(&mut chunks);
                match part {
                    Part::Text { text } => self.open(index, false, text, &mut chunks),
                    Part::Reasoning { text } => self.open(index, true, text, &mut chunks),
                    Part::ToolCall { id, name, arguments } => chunks.push(
                        json!({"type": "tool-input-available", "toolCallId": id, "toolName": name, "input": arguments}),
                    ),
                    Part::ToolResult { call_id, output, is_error: false } => {
                        chunks.push(json!({"type": "tool-output-available", "toolCallId": call_id, "output": output}));
                    }
                    Part::ToolResult { call_id, output, is_error: true } => {
                        let error_text = match output {
                            Value::String(text) => text,
                            other => other.to_string(),
                        };
                        chunks
                            .push(json!({"type": "tool-output-error", "toolCallId": call_id, "errorText": error_text}));
                    }
                    Part::File { media_type, uri, .. } => {
                        chunks.push(json!({"type": "file", "url": uri, "mediaType": media_type}));
                    }
                    // A kind the protocol has no chunk for: in the stored message, which a
                    // client reloads to see it.
                    _ => {}
                }
            }
            PartChunk::Delta { index, added, .. } => {
                let reasoning = matches!(added, Part::Reasoning { .. });
                if self.open.is_none_or(|(open, _)| open != index) {
                    self.close(&mut chunks);
                    self.open = Some((index, reasoning));
                }
                if let Part::Text { text: delta } | Part::Reasoning { text: delta } = added {
                    chunks
                        .push(json!({"type": delta_kind(reasoning), "id": part_id(index, reasoning), "delta": delta}));
                }
            }
            // The protocol cannot take back what a client was sent.
            PartChunk::Replaced { .. } => {
                self.close(&mut chunks);
                chunks.push(json!({"type": "error", "errorText": "The reply was rewritten: reload the chat."}));
                self.ended = true;
            }
            PartChunk::End(end) => {
                self.close(&mut chunks);
                if end == ReplyEnd::Complete {
                    chunks.push(json!({"type": "finish-step"}));
                }
                chunks.push(match end {
                    ReplyEnd::Complete => json!({"type": "finish", "finishReason": "stop"}),
                    ReplyEnd::Stopped => json!({"type": "abort", "reason": "stopped"}),
                    ReplyEnd::Interrupted => {
                        json!({"type": "error", "errorText": "The reply was interrupted before its end."})
                    }
                    _ => json!({"type": "error", "errorText": "The reply was deleted."}),
                });
                self.ended = true;
            }
        }
        let last = chunks.len().saturating_sub(1);
        let offset = self.parts.offset();
        for (i, chunk) in chunks.into_iter().enumerate() {
            self.queued.push_back((chunk, (i == last).then_some(offset)));
        }
    }

    /// Starts the text or reasoning part `index` with `text`.
    fn open(&mut self, index: u64, reasoning: bool, text: String, chunks: &mut Vec<Value>) {
        let id = part_id(index, reasoning);
        let kind = if reasoning { "reasoning-start" } else { "text-start" };
        chunks.push(json!({"type": kind, "id": id}));
        if !text.is_empty() {
            chunks.push(json!({"type": delta_kind(reasoning), "id": id, "delta": text}));
        }
        self.open = Some((index, reasoning));
    }

    /// Ends the part started and not ended, if any.
    fn close(&mut self, chunks: &mut Vec<Value>) {
        if let Some((index, reasoning)) = self.open.take() {
            let kind = if reasoning { "reasoning-end" } else { "text-end" };
            chunks.push(json!({"type": kind, "id": part_id(index, reasoning)}));
        }
    }
}

fn part_id(index: u64, reasoning: bool) -> String {
    if reasoning { format!("reasoning-{index}") } else { format!("text-{index}") }
}

fn delta_kind(reasoning: bool) -> &'static str {
    if reasoning { "reasoning-delta" } else { "text-delta" }
}
