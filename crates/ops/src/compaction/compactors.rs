//! Two compactors that need no network: for tests, for examples, and for threads whose bulk is
//! tool output.

use serde_json::Value;

use super::{CompactionInput, Compactor};
use persist_core::Part;
use persist_core::{BoxError, Content};

/// Keeps the conversation itself, cutting what tools returned: the summary is the previous
/// summary's blocks, then each message's (after a text block naming its role), every tool
/// result whose output is over `max_bytes` of JSON replaced by its first `max_bytes` and a note
/// of how much was cut. Reasoning is left out. The summary holds about
/// [`max_summary_bytes`](Self::max_summary_bytes) of JSON (256 KiB unless set): past that, its
/// oldest blocks go, a note in their place (the newest block always stays), so it does not
/// grow with the conversation.
///
/// # Example
///
/// ```
/// use persist::compaction::{Budget, Compaction, TrimToolOutputs};
///
/// // Over 64 KiB after the latest summary: fold it in, tool outputs cut to 2 KiB each.
/// let compaction = Compaction::new(TrimToolOutputs::new(2048), Budget::bytes(64 * 1024));
/// # let _ = compaction;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TrimToolOutputs {
    max_bytes: usize,
    max_summary_bytes: usize,
}

/// The note in place of the blocks a summary over its size lost.
const CUT: &str = "[earlier conversation cut]";

impl TrimToolOutputs {
    /// Cuts each tool output to `max_bytes` of JSON.
    pub fn new(max_bytes: usize) -> Self {
        Self { max_bytes, max_summary_bytes: 256 << 10 }
    }

    /// Keeps each summary to about `bytes` of JSON, its oldest blocks dropped first.
    pub fn max_summary_bytes(mut self, bytes: usize) -> Self {
        self.max_summary_bytes = bytes;
        self
    }

    fn trim(&self, part: Part) -> Option<Part> {
        match part {
            Part::Reasoning { .. } => None,
            Part::ToolResult { call_id, output, is_error } => {
                let text = output.to_string();
                if text.len() <= self.max_bytes {
                    return Some(Part::ToolResult { call_id, output, is_error });
                }
                let mut end = self.max_bytes;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                let cut = format!("{}… [{} bytes of tool output cut]", &text[..end], text.len() - end);
                Some(Part::ToolResult { call_id, output: Value::String(cut), is_error })
            }
            other => Some(other),
        }
    }
}

impl Compactor for TrimToolOutputs {
    fn name(&self) -> &str {
        "trim-tool-outputs"
    }

    async fn compact(&self, input: CompactionInput<'_>) -> Result<Content, BoxError> {
        let mut parts: Vec<Part> = input.previous.map(|summary| summary.content.parts()).unwrap_or_default();
        for message in input.messages {
            parts.push(Part::text(format!("[{}]", message.role)));
            parts.extend(message.content.parts().into_iter().filter_map(|part| self.trim(part)));
        }
        // Oldest first out, until it fits (the note and the newest block always stay).
        let sizes: Vec<usize> = parts.iter().map(|part| part.to_block().to_string().len() + 1).collect();
        let (mut total, mut cut) = (sizes.iter().sum::<usize>() + 2, 0);
        while total > self.max_summary_bytes && cut + 1 < parts.len() {
            total -= sizes[cut];
            cut += 1;
        }
        if cut > 0 {
            let kept = parts.split_off(cut);
            parts =
                std::iter::once(Part::text(CUT)).chain(kept.into_iter().filter(|p| p.as_text() != Some(CUT))).collect();
        }
        Ok(Content::from_parts(parts))
    }
}

/// Keeps only the text of the last `n` messages it is given, one line each (`role: text`):
/// older history is dropped, the previous summary too. A stand-in for a model in tests, and a
/// bounded "what was said last" for a model that needs little context.
#[derive(Debug, Clone, Copy)]
pub struct KeepLastText {
    n: usize,
}

impl KeepLastText {
    /// Keeps the text of the last `n` messages (at least 1).
    pub fn new(n: usize) -> Self {
        Self { n: n.max(1) }
    }
}

impl Compactor for KeepLastText {
    fn name(&self) -> &str {
        "keep-last-text"
    }

    async fn compact(&self, input: CompactionInput<'_>) -> Result<Content, BoxError> {
        let start = input.messages.len().saturating_sub(self.n);
        let lines: Vec<String> =
            input.messages[start..].iter().map(|m| format!("{}: {}", m.role, m.content.to_text())).collect();
        Ok(Content::text(lines.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use persist_core::{Message, MessageId, Role, ThreadId, Timestamp};

    fn message(seq: u64, role: Role, content: Content) -> Message {
        let id = MessageId::new(format!("m{seq}")).unwrap();
        Message::stored(ThreadId::new("t").unwrap(), id, seq, role, content, Timestamp::now())
    }

    fn run(compactor: &impl Compactor, messages: &[Message]) -> Content {
        let thread = ThreadId::new("t").unwrap();
        let input = CompactionInput { thread_id: &thread, previous: None, messages };
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(compactor.compact(input)).unwrap()
    }

    #[test]
    fn long_tool_outputs_are_cut_and_the_rest_kept() {
        let long = Value::String("x".repeat(100));
        let messages = [
            message(1, Role::User, Content::text("run it")),
            message(2, Role::Tool, Content::from_parts([Part::tool_result("c1", long), Part::reasoning("hm")])),
            message(3, Role::Tool, Content::from_parts([Part::tool_result("c2", Value::from("short"))])),
        ];
        let parts = run(&TrimToolOutputs::new(10), &messages).parts();
        assert_eq!(parts.len(), 6, "{parts:?}");
        let Part::ToolResult { output, .. } = &parts[3] else { panic!("{parts:?}") };
        assert!(output.as_str().unwrap().ends_with("[92 bytes of tool output cut]"), "{output}");
        assert_eq!(parts[5], Part::tool_result("c2", Value::from("short")));
    }

    #[test]
    fn a_summary_over_its_size_loses_its_oldest_blocks() {
        let messages: Vec<_> = (1..=20).map(|i| message(i, Role::User, Content::text("y".repeat(100)))).collect();
        let content = run(&TrimToolOutputs::new(10).max_summary_bytes(1000), &messages);
        assert!(content.json_len() <= 1000 + 100, "{}", content.json_len());
        let parts = content.parts();
        assert_eq!(parts[0], Part::text(CUT));
        assert_eq!(parts.last(), Some(&Part::text("y".repeat(100))), "the newest stays");
    }

    #[test]
    fn the_last_messages_text_is_kept() {
        let messages: Vec<_> = (1..=5).map(|i| message(i, Role::User, Content::text(format!("m{i}")))).collect();
        assert_eq!(run(&KeepLastText::new(2), &messages).to_text(), "user: m4\nuser: m5");
    }
}
