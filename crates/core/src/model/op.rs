//! [`PersistOp`]: a `Copy` label for each operation.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which operation a request or result is, as a cheap label for logs and metrics: the five
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
    /// Append a complete message.
    Add,
    /// Append a placeholder to be filled by `update_content`.
    Reserve,
    /// Replace a message's content, finalizing a placeholder.
    UpdateContent,
    /// Patch a message's or a thread's metadata, role or title.
    Update,
    /// Delete a message or a whole thread.
    Delete,
    /// Write a thread's messages exactly as another store held them (import, copy).
    Restore,
    /// Append a whole turn (several messages, maybe a reservation) in one transaction.
    AppendTurn,
    /// Read one message.
    Get,
    /// Read one thread.
    GetThread,
    /// List a thread's messages.
    List,
    /// List threads.
    Threads,
    /// List a message's siblings or a thread's leaves (its branches).
    Branches,
    /// Find reservations stranded by streams that never finished.
    FindStranded,
    /// Ask whether an (agent, thread) can resume its provider session.
    Resolve,
    /// Record a confirmed provider session.
    Bind,
    /// Reset a session binding.
    ResetSession,
    /// Invalidate a session binding (compare-and-set).
    InvalidateSession,
    /// List a thread's session bindings.
    Bindings,
    /// A health check.
    Ping,
    /// Read the change feed.
    ReadFeed,
    /// Store a value under a name once.
    SetOnce,
    /// Write a summary of a range of a thread (see [`summary`](crate::summary)).
    Summarize,
    /// List a thread's summaries.
    Summaries,
    /// Read a thread compacted: its latest summary and what follows it.
    Compacted,
    /// Take, renew or give up a lease on a thread (see [`lease`](crate::lease)).
    Lease,
    /// Search messages' text (see [`search`](crate::search)).
    Search,
    /// Write a message's embedding (see [`vector`](crate::vector)).
    Embed,
    /// Find the messages nearest a vector (see [`vector`](crate::vector)).
    Nearest,
    /// Read a working memory document (see [`working`](crate::working)).
    ReadMemory,
    /// Change a working memory document (see [`working`](crate::working)).
    WriteMemory,
    /// List working memory documents (see [`working`](crate::working)).
    ListMemories,
    /// List the vectors stored for a thread's messages (see [`vector`](crate::vector)).
    ListEmbeddings,
}

impl PersistOp {
    /// Every operation, in declaration order.
    pub const ALL: [PersistOp; 32] = [
        Self::Add,
        Self::Reserve,
        Self::UpdateContent,
        Self::Update,
        Self::Delete,
        Self::Restore,
        Self::AppendTurn,
        Self::Get,
        Self::GetThread,
        Self::List,
        Self::Threads,
        Self::Branches,
        Self::FindStranded,
        Self::Resolve,
        Self::Bind,
        Self::ResetSession,
        Self::InvalidateSession,
        Self::Bindings,
        Self::Ping,
        Self::ReadFeed,
        Self::SetOnce,
        Self::Summarize,
        Self::Summaries,
        Self::Compacted,
        Self::Lease,
        Self::Search,
        Self::Embed,
        Self::Nearest,
        Self::ReadMemory,
        Self::WriteMemory,
        Self::ListMemories,
        Self::ListEmbeddings,
    ];

    /// Position in [`ALL`](Self::ALL), for tables indexed by operation.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The label, in snake case: `add`, …, `get_thread`, `find_stranded`, `ping`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Reserve => "reserve",
            Self::UpdateContent => "update_content",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Restore => "restore",
            Self::AppendTurn => "append_turn",
            Self::Get => "get",
            Self::GetThread => "get_thread",
            Self::List => "list",
            Self::Threads => "threads",
            Self::Branches => "branches",
            Self::FindStranded => "find_stranded",
            Self::Resolve => "resolve",
            Self::Bind => "bind",
            Self::ResetSession => "reset_session",
            Self::InvalidateSession => "invalidate_session",
            Self::Bindings => "bindings",
            Self::Ping => "ping",
            Self::ReadFeed => "read_feed",
            Self::SetOnce => "set_once",
            Self::Summarize => "summarize",
            Self::Summaries => "summaries",
            Self::Compacted => "compacted",
            Self::Lease => "lease",
            Self::Search => "search",
            Self::Embed => "embed",
            Self::Nearest => "nearest",
            Self::ReadMemory => "read_memory",
            Self::WriteMemory => "write_memory",
            Self::ListMemories => "list_memories",
            Self::ListEmbeddings => "list_embeddings",
        }
    }

    /// Whether the operation only reads (`get`, `get_thread`, `list`, `threads`, `branches`,
    /// `find_stranded`, `resolve`, `bindings`, `ping`, `read_feed`, `summaries`, `compacted`,
    /// `search`).
    pub const fn is_read(self) -> bool {
        matches!(
            self,
            Self::Get
                | Self::GetThread
                | Self::List
                | Self::Threads
                | Self::Branches
                | Self::FindStranded
                | Self::Resolve
                | Self::Bindings
                | Self::Ping
                | Self::ReadFeed
                | Self::Summaries
                | Self::Compacted
                | Self::Search
                | Self::Nearest
                | Self::ReadMemory
                | Self::ListMemories
                | Self::ListEmbeddings
        )
    }

    /// Whether the operation writes messages or threads (`add`, `reserve`, `update_content`,
    /// `update`, `delete`, `restore`, `append_turn`, and `summarize`, which writes a thread's
    /// summary): what indexers, event feeds and mirrors care about.
    pub const fn is_message_write(self) -> bool {
        matches!(
            self,
            Self::Add
                | Self::Reserve
                | Self::UpdateContent
                | Self::Update
                | Self::Delete
                | Self::Restore
                | Self::AppendTurn
                | Self::Summarize
        )
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
