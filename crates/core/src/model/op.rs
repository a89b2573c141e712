//! [`PersistOp`]: a `Copy` label for each operation.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Every request, listed once: `requests!(callback)` calls `callback! { … }` with each one's
/// [`PersistOp`] (its description, its label), its kind (`write`: a message write, `read`, or
/// `other`), its `PersistArgs` variant (its attributes) and request type, and the
/// `PersistResult` variant that answers it. [`PersistOp`] is made of it here, `PersistArgs`
/// (its variants, `op`, `context`, `From`) in `args`, `PersistResult::op` in `result`: a request
/// is added here, and its typed call in the pipeline's `calls!`.
macro_rules! requests {
    ($callback:ident) => {
        $callback! {
            /// Append a complete message.
            Add = "add", write: Add(Add) -> Added;
            /// Append a placeholder to be filled by `update_content`.
            Reserve = "reserve", write: Reserve(Reserve) -> Reserved;
            /// Replace a message's content, finalizing a placeholder.
            UpdateContent = "update_content", write: UpdateContent(UpdateContent) -> ContentUpdated;
            /// Patch a message's or a thread's metadata, role or title.
            Update = "update", write: Update(Update) -> Updated;
            /// Delete a message or a whole thread.
            Delete = "delete", write: Delete(Delete) -> Deleted;
            /// Write a thread's messages exactly as another store held them (import, copy).
            Restore = "restore", write: Restore(Restore) -> Restored;
            /// Append a whole turn (several messages, maybe a reservation) in one transaction.
            AppendTurn = "append_turn", write: AppendTurn(AppendTurn) -> TurnAppended;
            /// Read one message.
            Get = "get", read: #[serde(skip)] Get(GetMessage) -> Message;
            /// Read one thread.
            GetThread = "get_thread", read: #[serde(skip)] GetThread(GetThread) -> Thread;
            /// List a thread's messages.
            List = "list", read: #[serde(skip)] List(ListMessages) -> Messages;
            /// List threads.
            Threads = "threads", read: #[serde(skip)] Threads(ListThreads) -> Threads;
            /// List a message's siblings or a thread's leaves (its branches).
            Branches = "branches", read: #[serde(skip)] Branches(ListBranches) -> Branches;
            /// Find reservations stranded by streams that never finished.
            FindStranded = "find_stranded", read: #[serde(skip)] FindStranded(FindStranded) -> Stranded;
            /// Ask whether an (agent, thread) can resume its provider session.
            Resolve = "resolve", read: Resolve(Resolve) -> Resolved;
            /// Record a confirmed provider session.
            Bind = "bind", other: Bind(Bind) -> Bound;
            /// Reset a session binding.
            ResetSession = "reset_session", other: ResetSession(ResetSession) -> SessionReset;
            /// Invalidate a session binding (compare-and-set).
            InvalidateSession = "invalidate_session", other: InvalidateSession(InvalidateSession) -> SessionInvalidated;
            /// List a thread's session bindings.
            Bindings = "bindings", read: #[serde(skip)] Bindings(ListBindings) -> Bindings;
            /// A health check.
            Ping = "ping", read: #[serde(skip)] Ping(Ping) -> Pong;
            /// Read the change feed.
            ReadFeed = "read_feed", read: #[serde(skip)] ReadFeed(ReadFeed) -> Feed;
            /// Store a value under a name once.
            SetOnce = "set_once", other: SetOnce(SetOnce) -> Value;
            /// Write a summary of a range of a thread (see [`summary`](crate::summary)).
            Summarize = "summarize", write: Summarize(Summarize) -> Summarized;
            /// List a thread's summaries.
            Summaries = "summaries", read: #[serde(skip)] Summaries(ListSummaries) -> Summaries;
            /// Read a thread compacted: its latest summary and what follows it.
            Compacted = "compacted", read: #[serde(skip)] Compacted(ReadCompacted) -> Compacted;
            /// Take, renew or give up a lease on a thread (see [`lease`](crate::lease)).
            Lease = "lease", other: Lease(Lease) -> Lease;
            /// Search messages' text (see [`search`](crate::search)).
            Search = "search", read: #[serde(skip)] Search(Search) -> Search;
            /// Write a message's embedding (see [`vector`](crate::vector)).
            Embed = "embed", other: Embed(Embed) -> Embedded;
            /// Find the messages nearest a vector (see [`vector`](crate::vector)).
            Nearest = "nearest", read: #[serde(skip)] Nearest(Nearest) -> Nearest;
            /// Read a working memory document (see [`working`](crate::working)).
            ReadMemory = "read_memory", read: #[serde(skip)] ReadMemory(ReadMemory) -> Memory;
            /// Change a working memory document (see [`working`](crate::working)).
            WriteMemory = "write_memory", other: WriteMemory(WriteMemory) -> MemoryWritten;
            /// List working memory documents (see [`working`](crate::working)).
            ListMemories = "list_memories", read: #[serde(skip)] Memories(ListMemories) -> Memories;
            /// List the vectors stored for a thread's messages (see [`vector`](crate::vector)).
            ListEmbeddings = "list_embeddings", read: #[serde(skip)] Embeddings(ListEmbeddings) -> Embeddings;
        }
    };
}

/// Whether a kind of [`requests!`] is another (`true` or `false`, in a `const fn`).
macro_rules! kind_is {
    (read, read) => {
        true
    };
    (write, write) => {
        true
    };
    ($kind:ident, $other:ident) => {
        false
    };
}

macro_rules! define_ops {
    (
        $($(#[$doc:meta])* $op:ident = $label:literal, $kind:ident:
            $(#[$attr:meta])* $variant:ident($ty:ident) -> $result:ident;)*
    ) => {
        /// Which operation a request or result is, as a cheap label for logs and metrics: the
        /// message writes, the reads, the session-binding operations and `ping`.
        ///
        /// # Example
        ///
        /// ```
        /// use persist::PersistOp;
        ///
        /// assert_eq!(PersistOp::UpdateContent.to_string(), "update_content");
        /// assert!(PersistOp::List.is_read() && !PersistOp::List.is_message_write());
        /// assert!(PersistOp::Add.is_message_write());
        /// assert_eq!(PersistOp::ALL.len(), 32);
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[non_exhaustive]
        pub enum PersistOp {
            $($(#[$doc])* $op,)*
        }

        impl PersistOp {
            /// Every operation, in declaration order.
            pub const ALL: [PersistOp; [$($label),*].len()] = [$(Self::$op),*];

            /// The label, in snake case: `add`, …, `get_thread`, `find_stranded`, `ping`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$op => $label,)*
                }
            }

            /// Whether the operation only reads (`get`, `get_thread`, `list`, `threads`,
            /// `branches`, `find_stranded`, `resolve`, `bindings`, `ping`, `read_feed`,
            /// `summaries`, `compacted`, `search`, `nearest`, `read_memory`, `list_memories`,
            /// `list_embeddings`).
            pub const fn is_read(self) -> bool {
                match self {
                    $(Self::$op => kind_is!($kind, read),)*
                }
            }

            /// Whether the operation writes messages or threads (`add`, `reserve`,
            /// `update_content`, `update`, `delete`, `restore`, `append_turn`, and `summarize`,
            /// which writes a thread's summary): what indexers, event feeds and mirrors care
            /// about.
            pub const fn is_message_write(self) -> bool {
                match self {
                    $(Self::$op => kind_is!($kind, write),)*
                }
            }
        }
    };
}
requests!(define_ops);

impl PersistOp {
    /// Position in [`ALL`](Self::ALL), for tables indexed by operation.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Parses a label of [`PersistOp::as_str`] (`"add"`, `"update_content"`, …).
impl std::str::FromStr for PersistOp {
    type Err = crate::PersistError;

    fn from_str(label: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|op| op.as_str() == label)
            .ok_or_else(|| crate::PersistError::invalid("op", format!("no operation is called {label:?}")))
    }
}

impl fmt::Display for PersistOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}
