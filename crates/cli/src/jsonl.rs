//! The export format, JSONL version 3: what `persist export` writes and `persist import` reads
//! (version 1 and 2 files too).
//!
//! One JSON object per line, each with a `"kind"`:
//!
//! ```text
//! {"kind":"header","schema_version":3,"source":"sqlite:chat.db","tenant":null,"all_tenants":false,"thread":null,"exported_at":1767225600000000}
//! {"kind":"thread","id":"support:1042","tenant":null,"title":"Order 1042","metadata":{},"version":2,"created_at":…,"updated_at":…,"last_seq":4,"message_count":3,"active_leaf":4,"deleted_at":null}
//! {"kind":"message","thread_id":"support:1042","id":"0190…","role":"user","content":[{"text":"Where is my order?","type":"text"}],"metadata":{},"status":"complete","seq":1,"parent_seq":null,"version":1,"idempotency_key":"turn-1","created_at":…,"updated_at":…,"embeddings":[{"model":"text-embedding-3-small","vector":[0.6,0.8]}]}
//! {"kind":"summary","thread_id":"support:1042","from_seq":1,"through_seq":3,"content":[{"text":"The user asked where order 1042 is.","type":"text"}],"metadata":{},"created_at":…}
//! {"kind":"binding","agent_id":"support-bot","thread_id":"support:1042","session_id":"sess-9","provider":"claude-cli","runtime_id":null,"work_dir":"/srv/w/1042","created_at":…,"updated_at":…,"state":"active"}
//! {"kind":"working_memory","tenant":null,"resource":"user:42","document":{"name":"Ada"},"version":3,"created_at":…,"updated_at":…}
//! {"kind":"end","threads":1,"messages":1,"bindings":1,"summaries":1,"memories":1,"embeddings":1}
//! ```
//!
//! - **header**, the first line: `schema_version` (3), `source` (the store's URL without its
//!   password), `tenant` (the `--tenant` of the export, or null), `all_tenants` (whether the
//!   export spans every tenant: `--across-tenants`), `thread` (the one thread exported, or null), `exported_at`
//!   (microseconds since the Unix epoch). A header may appear again later (exports
//!   concatenated); each must have schema version 1, 2 or 3.
//! - **thread**: every field of a stored thread (`persist::Thread`), then its messages; its
//!   `active_leaf` is the seq of the last message of its active branch.
//! - **message**: every field of a stored message (`persist::Message`), in seq order, after
//!   its thread's line; reservations included, with their status; `parent_seq` is the seq of
//!   the message it follows in its thread's tree (`null` for a root), always present;
//!   `embeddings` (version 3), when the message has vectors: each stored vector with its model
//!   (`persist::vector::Embedding`: `model`, and `vector`, its numbers as stored, scaled to
//!   length 1, each written as the shortest decimal that reads back as the same `f32`), by
//!   model. The first vector of a model fixes its dimensions in the store imported into, as it
//!   did in the store exported.
//!
//! Version 3 added the vectors. It is a version, not a kind added within one, so that an older
//! `persist import`, which would skip a field or a kind it does not know, refuses the file
//! instead of restoring it without its vectors.
//! Version 1 (before branches) had no `active_leaf` and no `parent_seq`: its threads are lines,
//! each message following the one before it in the file, and so they are imported.
//! - **summary**: a summary of the thread (`persist::summary::Summary`: the range it covers, by
//!   seq, and its content), after the thread's messages, in the order of their last message.
//!   Added within version 2: a reader that does not know the kind skips it, as the format
//!   says.
//! - **binding**: a session binding of the thread (`persist::session::StoredBinding`: which
//!   provider session an agent resumes, and its state), after the thread's messages.
//! - **working_memory**: a working memory document (`persist::working::WorkingMemory`), after
//!   every thread, in an export of a tenant (`--all`) or of the store (`--across-tenants`).
//!   Added within version 2, as summaries were. Imported at its version when the store's is
//!   lower, else as the next of the store's own.
//! - **end**, the last line: how many threads, messages, bindings, summaries, working memory
//!   documents and vectors the export holds (`summaries`, `memories` or `embeddings` absent:
//!   none). An
//!   export cut short anywhere, even between two lines, has no end line: import warns and says
//!   so in its report.
//!
//! Times are microseconds since the Unix epoch. Tombstones (deleted threads) are not exported.
//!
//! Reading: a first line that is not a header, or a header of another `schema_version`, is
//! refused; a line of an unknown `kind` is skipped and counted (a later version may add
//! kinds); a last line cut short (not JSON, and no newline after it: an export that was
//! interrupted) is skipped and counted with a warning; any other line that does not parse is
//! an error naming its line number, as is a message or binding before any thread line or one
//! of another thread than the line before it.

use std::io::Write;

use persist::session::StoredBinding;
use persist::summary::Summary;
use persist::vector::Embedding;
use persist::working::WorkingMemory;
use persist::{Message, TenantId, Thread, ThreadId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::CliResult;

mod read;

pub(crate) use self::read::{Item, Reader};

/// The longest line `persist import` reads by default: twice the largest content a SQLite
/// store takes by default (8 MiB), with room for its metadata and JSON escapes.
pub(crate) const DEFAULT_MAX_LINE_BYTES: u64 = 16 << 20;

/// The format version this build writes (and reads, with versions 1 and 2).
pub(crate) const SCHEMA_VERSION: u64 = 3;

/// The oldest format version this build reads: version 1, before branches.
const OLDEST_SCHEMA_VERSION: u64 = 1;

/// The first line of an export.
#[derive(Debug, Serialize)]
pub(crate) struct Header<'a> {
    /// Always `"header"`.
    kind: &'static str,
    /// `SCHEMA_VERSION`.
    schema_version: u64,
    /// The store exported, without its password.
    source: &'a str,
    /// The tenant exported (`--tenant`).
    tenant: Option<&'a TenantId>,
    /// Whether every tenant's threads were exported (`--across-tenants`; the format's name
    /// for it is fixed with its version 2).
    #[serde(rename = "all_tenants")]
    across_tenants: bool,
    /// The one thread exported, if the export names one.
    thread: Option<&'a ThreadId>,
    /// When the export started, in microseconds since the Unix epoch.
    exported_at: i64,
}

impl<'a> Header<'a> {
    /// A header for an export of `source` started now.
    pub(crate) fn new(
        source: &'a str,
        tenant: Option<&'a TenantId>,
        across_tenants: bool,
        thread: Option<&'a ThreadId>,
    ) -> Self {
        Self {
            kind: "header",
            schema_version: SCHEMA_VERSION,
            source,
            tenant,
            across_tenants,
            thread,
            exported_at: Timestamp::now().as_micros(),
        }
    }
}

/// The line of a working memory document.
pub(crate) fn memory_line(memory: &WorkingMemory) -> impl Serialize + '_ {
    Tagged { kind: "working_memory", item: memory }
}

/// A stored value with its line's `kind` in front.
#[derive(Debug, Serialize)]
pub(crate) struct Tagged<'a, T> {
    kind: &'static str,
    #[serde(flatten)]
    item: &'a T,
}

/// A thread's line.
pub(crate) fn thread_line(thread: &Thread) -> Tagged<'_, Thread> {
    Tagged { kind: "thread", item: thread }
}

/// A message's line (without vectors: what a listing prints).
pub(crate) fn message_line(message: &Message) -> MessageLine<'_> {
    message_line_with(message, &[])
}

/// A message's line, with its vectors (an export's).
pub(crate) fn message_line_with<'a>(message: &'a Message, embeddings: &'a [Embedding]) -> MessageLine<'a> {
    MessageLine { kind: "message", message, embeddings }
}

/// A message's line: the message's fields, then its vectors (none: no `embeddings` field).
#[derive(Debug, Serialize)]
pub(crate) struct MessageLine<'a> {
    kind: &'static str,
    #[serde(flatten)]
    message: &'a Message,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    embeddings: &'a [Embedding],
}

/// A summary's line.
pub(crate) fn summary_line(summary: &Summary) -> Tagged<'_, Summary> {
    Tagged { kind: "summary", item: summary }
}

/// A session binding's line.
pub(crate) fn binding_line(binding: &StoredBinding) -> Tagged<'_, StoredBinding> {
    Tagged { kind: "binding", item: binding }
}

/// Writes one value as one line.
pub(crate) fn write_line(out: &mut impl Write, value: &impl Serialize) -> CliResult {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Threads, messages and bindings: counted while reading, and as an end line states them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Counts {
    pub(crate) threads: u64,
    pub(crate) messages: u64,
    pub(crate) bindings: u64,
    #[serde(default)]
    pub(crate) summaries: u64,
    #[serde(default)]
    pub(crate) memories: u64,
    #[serde(default)]
    pub(crate) embeddings: u64,
}

/// The last line of an export.
#[derive(Debug, Serialize)]
pub(crate) struct End {
    kind: &'static str,
    #[serde(flatten)]
    counts: Counts,
}

impl End {
    /// The end line of an export of `counts`.
    pub(crate) fn new(counts: Counts) -> Self {
        Self { kind: "end", counts }
    }
}
