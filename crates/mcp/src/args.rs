//! The tools' arguments: what a model fills, with the JSON schema it is shown.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};

/// `list_threads`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListThreadsArgs {
    /// The `next_cursor` of the previous page, as it was answered; absent for the first page.
    pub(crate) cursor: Option<String>,
    /// How many threads, 1 to 100 (default 20).
    #[schemars(range(min = 1, max = 100))]
    pub(crate) limit: Option<u32>,
}

/// Which messages of a thread `read_thread` answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum View {
    /// The thread's latest summary and the messages after it: what a model is given of a long
    /// thread.
    #[default]
    Compacted,
    /// Every message of the thread's active branch, oldest first.
    Full,
}

/// `read_thread`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadThreadArgs {
    /// The thread's id, as `list_threads` answers it.
    pub(crate) thread_id: String,
    /// `compacted` (default): the latest summary and the messages after it; `full`: every
    /// message of the active branch.
    pub(crate) view: Option<View>,
    /// The `next_cursor` of the previous page; absent for the first page (oldest messages).
    pub(crate) cursor: Option<String>,
    /// How many messages, 1 to 100 (default 50).
    #[schemars(range(min = 1, max = 100))]
    pub(crate) limit: Option<u32>,
}

/// `search_messages`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchArgs {
    /// Words every message found holds (any order, any case); "a phrase" in quotes matches in
    /// order; pref* matches a prefix.
    pub(crate) query: String,
    /// Only this thread (default: every thread).
    pub(crate) thread_id: Option<String>,
    /// The `next_cursor` of the previous page.
    pub(crate) cursor: Option<String>,
    /// How many hits, 1 to 50 (default 10).
    #[schemars(range(min = 1, max = 50))]
    pub(crate) limit: Option<u32>,
}

/// `recall`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecallArgs {
    /// The text to find earlier messages like (a question, the user's new message).
    pub(crate) text: String,
    /// Only this thread (default: every thread).
    pub(crate) thread_id: Option<String>,
    /// Only the threads of this user: those whose metadata holds this `user_id` (see
    /// `append_message`'s `thread_metadata`).
    pub(crate) user_id: Option<String>,
    /// How many messages, 1 to 20 (default 5).
    #[schemars(range(min = 1, max = 20))]
    pub(crate) limit: Option<u32>,
}

/// `read_memory`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadMemoryArgs {
    /// Whose working memory: a name such as `user:42` or `project:atlas`.
    pub(crate) resource: String,
}

/// `update_memory`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateMemoryArgs {
    /// Whose working memory: a name such as `user:42`.
    pub(crate) resource: String,
    /// A JSON merge patch: its keys set, objects merged key by key, a key set to null removed.
    /// Applied to the document as stored at that moment, so concurrent patches all survive.
    /// Give this or `document`.
    pub(crate) patch: Option<Map<String, Value>>,
    /// The whole new document, replacing the stored one. Give this or `patch`.
    pub(crate) document: Option<Map<String, Value>>,
    /// The version read (`read_memory`): the write happens only if the memory is still at it
    /// (0: only if it was never written); otherwise a conflict names the current version.
    pub(crate) version: Option<u64>,
}

/// Who wrote a message `append_message` adds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AppendRole {
    /// The user.
    User,
    /// The assistant (the agent itself: the default).
    #[default]
    Assistant,
    /// A system note.
    System,
}

/// `append_message`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppendArgs {
    /// The thread (created when it does not exist).
    pub(crate) thread_id: String,
    /// The message's text.
    pub(crate) text: String,
    /// `user`, `assistant` (default) or `system`.
    pub(crate) role: Option<AppendRole>,
    /// The message's metadata (a JSON object).
    pub(crate) metadata: Option<Map<String, Value>>,
    /// Merged into the thread's metadata (e.g. {"user_id": "u1"}, which `recall`'s `user_id`
    /// finds); a key set to null is removed.
    pub(crate) thread_metadata: Option<Map<String, Value>>,
    /// A key of this write: sent again with the same key and text, the message is written once
    /// and the same answer is given.
    pub(crate) idempotency_key: Option<String>,
}
