//! Reading an export: the [`Reader`] of its lines, each checked (its version, its thread, its
//! vectors) and answered as an [`Item`].

use persist::session::StoredBinding;
use persist::summary::Summary;
use persist::vector::Embedding;
use persist::working::WorkingMemory;
use persist::{Message, Thread, ThreadId};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

use super::{Counts, OLDEST_SCHEMA_VERSION, SCHEMA_VERSION};
use crate::error::{CliError, CliResult, note};

/// One item of an export, as read.
#[derive(Debug)]
pub(crate) enum Item {
    /// A thread; its messages follow.
    Thread(Box<Thread>),
    /// A message of the last thread read, and its vectors.
    Message(Box<Message>, Vec<Embedding>),
    /// A session binding of the last thread read.
    Binding(Box<StoredBinding>),
    /// A summary of the last thread read.
    Summary(Box<Summary>),
    /// A working memory document.
    Memory(Box<WorkingMemory>),
}

/// Only the `kind` of a line (the rest is checked to be JSON, and ignored).
#[derive(Deserialize)]
struct Kind {
    kind: Option<String>,
}

/// Reads an export line by line.
#[derive(Debug)]
pub(crate) struct Reader<R> {
    input: R,
    buffer: Vec<u8>,
    /// The longest line read, in bytes: what bounds the memory an import takes.
    max_line_bytes: u64,
    /// The number of the last line read (1-based).
    line: u64,
    /// Lines skipped: unknown kinds and a torn last line.
    pub(crate) skipped: u64,
    /// The thread of the last thread line, for checking that messages follow their thread.
    current: Option<ThreadId>,
    /// The schema version of the last header read.
    version: u64,
    /// The seq of the last message line of the current thread: a version 1 message's parent.
    previous_seq: Option<u64>,
    /// Lines of each kind read since the last header, and what its end line said (`None`
    /// until one is read).
    counts: Counts,
    end: Option<Counts>,
}

impl<R: AsyncBufRead + Unpin> Reader<R> {
    /// A reader of `input` whose lines are at most `max_line_bytes` long; call `header` first.
    pub(crate) fn new(input: R, max_line_bytes: u64) -> Self {
        let counts = Counts::default();
        Self {
            input,
            buffer: Vec::new(),
            max_line_bytes,
            line: 0,
            skipped: 0,
            current: None,
            version: SCHEMA_VERSION,
            previous_seq: None,
            counts,
            end: None,
        }
    }

    /// Reads the next line that is not blank: its text (or why it is not text), and whether
    /// it ended without a newline (the input's last line). `None` at the end of the input.
    async fn next_line(&mut self) -> CliResult<Option<(Result<String, String>, bool)>> {
        loop {
            self.buffer.clear();
            // One byte past the limit at most: a longer line is refused, never held whole.
            let read = (&mut self.input)
                .take(self.max_line_bytes.saturating_add(1))
                .read_until(b'\n', &mut self.buffer)
                .await
                .map_err(|e| CliError::context("reading the input", &e))?;
            if read == 0 {
                return Ok(None);
            }
            self.line += 1;
            let content = self.buffer.strip_suffix(b"\n").unwrap_or(&self.buffer);
            if content.len() as u64 > self.max_line_bytes {
                return Err(CliError::failed(format!(
                    "line {} is longer than the limit of {} bytes (raise it with --max-line-bytes)",
                    self.line, self.max_line_bytes
                )));
            }
            let unterminated = self.buffer.last() != Some(&b'\n');
            let text = match std::str::from_utf8(&self.buffer) {
                Ok(text) if text.trim().is_empty() => continue,
                Ok(text) => Ok(text.to_owned()),
                Err(e) => Err(format!("not UTF-8: {e}")),
            };
            return Ok(Some((text, unterminated)));
        }
    }

    /// Reads and checks the header: the first line must be one, of schema version 1 to 3.
    pub(crate) async fn header(&mut self) -> CliResult {
        let Some((text, _)) = self.next_line().await? else {
            return Err(CliError::failed("the input is empty: not a persist export"));
        };
        let value: Value =
            text.ok().and_then(|text| serde_json::from_str(&text).ok()).ok_or_else(|| not_an_export(self.line))?;
        if value.get("kind").and_then(Value::as_str) != Some("header") {
            return Err(not_an_export(self.line));
        }
        self.version = check_version(&value)?;
        Ok(())
    }

    /// The next thread or message; `None` at the end of the input.
    pub(crate) async fn next_item(&mut self) -> CliResult<Option<Item>> {
        loop {
            let Some((text, unterminated)) = self.next_line().await? else {
                return Ok(None);
            };
            let parsed = text.and_then(|text| match serde_json::from_str::<Kind>(&text) {
                Ok(kind) => Ok((text, kind.kind)),
                Err(e) => Err(format!("not JSON: {e}")),
            });
            let (text, kind) = match parsed {
                Ok(parsed) => parsed,
                Err(_) if unterminated => {
                    note(format!("warning: line {} is cut short (an interrupted export?): skipped", self.line));
                    self.skipped += 1;
                    return Ok(None);
                }
                Err(why) => return Err(CliError::failed(format!("line {}: {why}", self.line))),
            };
            match kind.as_deref() {
                Some("thread") => {
                    let thread: Thread = serde_json::from_str(&text)
                        .map_err(|e| CliError::failed(format!("line {}: not a thread: {e}", self.line)))?;
                    self.current = Some(thread.id.clone());
                    self.previous_seq = None;
                    self.counts.threads += 1;
                    return Ok(Some(Item::Thread(Box::new(thread))));
                }
                Some("message") => {
                    let (message, embeddings) = self.message(&text)?;
                    self.follows_its_thread("message", &message.thread_id)?;
                    self.previous_seq = Some(message.seq);
                    self.counts.messages += 1;
                    self.counts.embeddings += embeddings.len() as u64;
                    return Ok(Some(Item::Message(Box::new(message), embeddings)));
                }
                Some("binding") => {
                    let binding: StoredBinding = serde_json::from_str(&text)
                        .map_err(|e| CliError::failed(format!("line {}: not a session binding: {e}", self.line)))?;
                    self.follows_its_thread("binding", &binding.binding.thread_id)?;
                    self.counts.bindings += 1;
                    return Ok(Some(Item::Binding(Box::new(binding))));
                }
                Some("summary") => {
                    let summary: Summary = serde_json::from_str(&text)
                        .map_err(|e| CliError::failed(format!("line {}: not a summary: {e}", self.line)))?;
                    self.follows_its_thread("summary", &summary.thread_id)?;
                    self.counts.summaries += 1;
                    return Ok(Some(Item::Summary(Box::new(summary))));
                }
                Some("working_memory") => {
                    let memory: WorkingMemory = serde_json::from_str(&text).map_err(|e| {
                        CliError::failed(format!("line {}: not a working memory document: {e}", self.line))
                    })?;
                    // Not a thread's: what follows it belongs to no thread.
                    self.current = None;
                    self.counts.memories += 1;
                    return Ok(Some(Item::Memory(Box::new(memory))));
                }
                Some("end") => {
                    let end: Counts = serde_json::from_str(&text)
                        .map_err(|e| CliError::failed(format!("line {}: not an end line: {e}", self.line)))?;
                    self.end = Some(end);
                    self.current = None;
                }
                Some("header") => {
                    // Exports concatenated: each part must be of this version too.
                    let value: Value = serde_json::from_str(&text)
                        .map_err(|e| CliError::failed(format!("line {}: not JSON: {e}", self.line)))?;
                    self.version = check_version(&value)?;
                    self.current = None;
                    self.counts = Counts::default();
                    self.end = None;
                }
                Some(_) => self.skipped += 1,
                None => return Err(CliError::failed(format!("line {}: no \"kind\" field", self.line))),
            }
        }
    }
}

impl<R> Reader<R> {
    /// A message line and its vectors: from version 2 its `parent_seq` must be there (`null`
    /// for a root: a line without it is refused, never read as a root); in version 1 the message
    /// follows the one before it in its thread. Vectors (version 3) are checked as a store
    /// checks them, so a bad one names its line.
    fn message(&self, text: &str) -> CliResult<(Message, Vec<Embedding>)> {
        let not_a_message = |e: serde_json::Error| CliError::failed(format!("line {}: not a message: {e}", self.line));
        let mut value: Value = serde_json::from_str(text).map_err(not_a_message)?;
        let embeddings = match value.as_object_mut().and_then(|line| line.remove("embeddings")) {
            None | Some(Value::Null) => Vec::new(),
            Some(found) => {
                let embeddings: Vec<Embedding> = serde_json::from_value(found).map_err(|e| {
                    CliError::failed(format!("line {}: the message's embeddings are not vectors: {e}", self.line))
                })?;
                for embedding in &embeddings {
                    embedding.validate().map_err(|e| {
                        CliError::failed(format!("line {}: a vector of model `{}`: {e}", self.line, embedding.model()))
                    })?;
                }
                embeddings
            }
        };
        if self.version == OLDEST_SCHEMA_VERSION {
            let mut message: Message = serde_json::from_value(value).map_err(not_a_message)?;
            message.parent_seq = self.previous_seq;
            return Ok((message, embeddings));
        }
        if value.get("parent_seq").is_none() {
            return Err(CliError::failed(format!(
                "line {}: a message without parent_seq (schema_version {} writes it, null for a root)",
                self.line, self.version
            )));
        }
        Ok((serde_json::from_value(value).map_err(not_a_message)?, embeddings))
    }

    /// Whether the input read whole: its (last) export ended with an end line stating what
    /// was read. `Err` says what is missing.
    pub(crate) fn complete(&self) -> Result<(), String> {
        match self.end {
            None => Err("the input has no end line: the export may have been cut short".to_owned()),
            Some(end) if end != self.counts => Err(format!(
                "the end line counts {} threads, {} messages, {} bindings and {} vectors, {} / {} / {} / {} were read",
                end.threads,
                end.messages,
                end.bindings,
                end.embeddings,
                self.counts.threads,
                self.counts.messages,
                self.counts.bindings,
                self.counts.embeddings
            )),
            Some(_) => Ok(()),
        }
    }

    /// Refuses a line of `thread_id` that does not follow that thread's line.
    fn follows_its_thread(&self, what: &str, thread_id: &ThreadId) -> CliResult {
        match &self.current {
            None => Err(CliError::failed(format!("line {}: a {what} before any thread line", self.line))),
            Some(thread) if thread != thread_id => Err(CliError::failed(format!(
                "line {}: a {what} of thread {thread_id} after the line of thread {thread}",
                self.line
            ))),
            Some(_) => Ok(()),
        }
    }
}

fn not_an_export(line: u64) -> CliError {
    CliError::failed(format!(
        "not a persist export: line {line} is not a header (this persist reads schema_version {SCHEMA_VERSION})"
    ))
}

/// The header's schema version, if this build reads it.
fn check_version(header: &Value) -> CliResult<u64> {
    let reads = format!("this persist reads {OLDEST_SCHEMA_VERSION} to {SCHEMA_VERSION}");
    match header.get("schema_version") {
        Some(version) => match version.as_u64() {
            Some(known @ OLDEST_SCHEMA_VERSION..=SCHEMA_VERSION) => Ok(known),
            _ => Err(CliError::failed(format!("unsupported schema_version {version} ({reads})"))),
        },
        None => Err(CliError::failed(format!("unsupported export: its header has no schema_version ({reads})"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonl::{DEFAULT_MAX_LINE_BYTES, message_line, message_line_with, write_line};

    async fn read_all(input: &str) -> CliResult<(Vec<Item>, u64)> {
        let mut reader = Reader::new(input.as_bytes(), DEFAULT_MAX_LINE_BYTES);
        reader.header().await?;
        let mut items = Vec::new();
        while let Some(item) = reader.next_item().await? {
            items.push(item);
        }
        Ok((items, reader.skipped))
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().expect("a runtime").block_on(future)
    }

    const HEADER: &str =
        r#"{"kind":"header","schema_version":1,"source":"memory:","tenant":null,"thread":null,"exported_at":0}"#;
    const THREAD: &str = r#"{"kind":"thread","id":"t","tenant":null,"title":null,"metadata":{},"version":1,"created_at":1,"updated_at":2,"last_seq":1,"message_count":1,"deleted_at":null}"#;
    const MESSAGE: &str = r#"{"kind":"message","thread_id":"t","id":"m","role":"user","content":"hi","metadata":{},"status":"complete","seq":1,"version":1,"idempotency_key":null,"created_at":1,"updated_at":1}"#;

    const BINDING: &str = r#"{"kind":"binding","agent_id":"a","thread_id":"t","session_id":"s","provider":"p","runtime_id":null,"work_dir":null,"created_at":1,"updated_at":1,"state":"reset"}"#;

    #[test]
    fn reads_threads_messages_and_bindings_and_skips_unknown_kinds() {
        let input = format!("{HEADER}\n{THREAD}\n{{\"kind\":\"later\"}}\n\n{MESSAGE}\n{BINDING}\n");
        let (items, skipped) = block_on(read_all(&input)).unwrap();
        assert!(matches!(items.as_slice(), [Item::Thread(_), Item::Message(..), Item::Binding(_)]));
        assert_eq!(skipped, 1);
        let error = block_on(read_all(&format!("{HEADER}\n{BINDING}\n"))).unwrap_err();
        assert!(error.to_string().contains("a binding before any thread"), "{error}");
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_a_torn_middle_line_is_an_error() {
        let torn = &MESSAGE[..40];
        let (items, skipped) = block_on(read_all(&format!("{HEADER}\n{THREAD}\n{torn}"))).unwrap();
        assert_eq!((items.len(), skipped), (1, 1));
        let error = block_on(read_all(&format!("{HEADER}\n{THREAD}\n{torn}\n{MESSAGE}\n"))).unwrap_err();
        assert!(error.to_string().starts_with("line 3:"), "{error}");
    }

    #[test]
    fn a_line_over_the_limit_is_refused_without_reading_it_whole() {
        // An endless line (`/dev/zero`): refused once the limit is passed, its number named.
        let endless = tokio::io::BufReader::new(tokio::io::repeat(0));
        let mut reader = Reader::new(endless, 1000);
        let error = block_on(reader.header()).unwrap_err();
        assert_eq!(error.to_string(), "line 1 is longer than the limit of 1000 bytes (raise it with --max-line-bytes)");
        assert!(reader.buffer.len() <= 1001, "held {} bytes", reader.buffer.len());
        // A line of exactly the limit is read; the next, one byte longer, is refused.
        let limit = HEADER.len() as u64;
        let input = format!("{HEADER}\n{THREAD}\n");
        let mut reader = Reader::new(input.as_bytes(), limit);
        block_on(reader.header()).unwrap();
        let error = block_on(reader.next_item()).unwrap_err();
        assert!(error.to_string().starts_with("line 2 is longer than the limit"), "{error}");
    }

    fn message(item: &Item) -> &Message {
        match item {
            Item::Message(message, _) => message,
            other => panic!("not a message: {other:?}"),
        }
    }

    /// Version 1 had no parents: each message follows the one before it in its thread.
    #[test]
    fn a_version_1_thread_is_read_as_a_line() {
        let second = MESSAGE.replace("\"id\":\"m\"", "\"id\":\"m2\"").replace("\"seq\":1", "\"seq\":3");
        let other = THREAD.replace("\"id\":\"t\"", "\"id\":\"u\"");
        let first_of_other =
            MESSAGE.replace("\"thread_id\":\"t\"", "\"thread_id\":\"u\"").replace("\"seq\":1", "\"seq\":2");
        let input = format!("{HEADER}\n{THREAD}\n{MESSAGE}\n{second}\n{other}\n{first_of_other}\n");
        let (items, _) = block_on(read_all(&input)).unwrap();
        let parents: Vec<_> = [&items[1], &items[2], &items[4]].iter().map(|i| message(i).parent_seq).collect();
        assert_eq!(parents, [None, Some(1), None]);
    }

    /// Version 2 states every parent: a message line without one is refused, not read as a root.
    #[test]
    fn a_version_2_message_states_its_parent() {
        let v2 = HEADER.replace("\"schema_version\":1", "\"schema_version\":2");
        let with_parent = MESSAGE.replace("\"seq\":1", "\"seq\":3,\"parent_seq\":1");
        let (items, _) = block_on(read_all(&format!("{v2}\n{THREAD}\n{with_parent}\n"))).unwrap();
        assert_eq!(message(&items[1]).parent_seq, Some(1));
        let error = block_on(read_all(&format!("{v2}\n{THREAD}\n{MESSAGE}\n"))).unwrap_err();
        assert!(error.to_string().starts_with("line 3: a message without parent_seq"), "{error}");
    }

    #[test]
    fn refuses_other_versions_and_orphan_messages() {
        let v4 = HEADER.replace("\"schema_version\":1", "\"schema_version\":4");
        let error = block_on(read_all(&format!("{v4}\n"))).unwrap_err();
        assert_eq!(error.to_string(), "unsupported schema_version 4 (this persist reads 1 to 3)");
        assert!(block_on(read_all(&format!("{THREAD}\n"))).is_err());
        let error = block_on(read_all(&format!("{HEADER}\n{MESSAGE}\n"))).unwrap_err();
        assert!(error.to_string().contains("before any thread"), "{error}");
    }

    /// Version 3: a message line carries its vectors, each number written so that it reads back
    /// as the same `f32`, and the end line counts them.
    #[test]
    fn a_version_3_message_carries_its_vectors_exactly() {
        let numbers = vec![0.1, -0.70710677, 0.33333334, f32::MIN_POSITIVE, 1e-45, 16_777_217.0, -3.4028235e38];
        let vectors = [Embedding::new("b", numbers.clone()), Embedding::new("a", vec![0.6, 0.8])];
        let v2 = HEADER.replace("\"schema_version\":1", "\"schema_version\":2");
        let with_parent = MESSAGE.replace("\"seq\":1", "\"seq\":1,\"parent_seq\":null");
        let (items, _) = block_on(read_all(&format!("{v2}\n{THREAD}\n{with_parent}\n"))).unwrap();
        let Item::Message(message, none) = &items[1] else { panic!("a message: {items:?}") };
        assert!(none.is_empty(), "a version 2 message has no vectors");

        let mut line = Vec::new();
        write_line(&mut line, &message_line_with(message, &vectors)).unwrap();
        let line = String::from_utf8(line).unwrap();
        assert!(line.contains(r#""embeddings":[{"model":"b","vector":[0.1,-0.70710677,"#), "{line}");
        let plain = serde_json::to_string(&message_line(message)).unwrap();
        assert!(!plain.contains("embeddings"), "no vectors, no field: {plain}");
        let v3 = HEADER.replace("\"schema_version\":1", "\"schema_version\":3");
        let end = r#"{"kind":"end","threads":1,"messages":1,"bindings":0,"embeddings":2}"#;
        let input = format!("{v3}\n{THREAD}\n{line}{end}\n");
        let mut reader = Reader::new(input.as_bytes(), DEFAULT_MAX_LINE_BYTES);
        let read = block_on(async {
            reader.header().await.unwrap();
            let mut items = Vec::new();
            while let Some(item) = reader.next_item().await.unwrap() {
                items.push(item);
            }
            items
        });
        let Some(Item::Message(again, embeddings)) = read.into_iter().nth(1) else { panic!("a message") };
        assert_eq!(again, *message);
        let bits = |e: &Embedding| (e.model().to_owned(), e.vector().iter().map(|x| x.to_bits()).collect::<Vec<_>>());
        assert_eq!(embeddings.iter().map(bits).collect::<Vec<_>>(), vectors.iter().map(bits).collect::<Vec<_>>());
        assert_eq!(reader.complete(), Ok(()), "the end line counts the vectors read");

        let bad = line.replace("[0.6,0.8]", "[0.0,0.0]");
        let error = block_on(read_all(&format!("{v3}\n{THREAD}\n{bad}"))).unwrap_err();
        assert!(error.to_string().starts_with("line 3: a vector of model `a`"), "{error}");
    }
}
