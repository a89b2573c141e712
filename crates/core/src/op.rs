//! [`PersistOp`]: a `Copy` label for each write operation.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which write operation a request or result is, as a cheap label for logs and metrics.
///
/// # Example
///
/// ```
/// use persist::PersistOp;
///
/// assert_eq!(PersistOp::UpdateContent.to_string(), "update_content");
/// assert_eq!(PersistOp::ALL.len(), 5);
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
}

impl PersistOp {
    /// Every operation, in declaration order.
    pub const ALL: [PersistOp; 5] = [Self::Add, Self::Reserve, Self::UpdateContent, Self::Update, Self::Delete];

    /// Position in [`ALL`](Self::ALL), for tables indexed by operation.
    pub(crate) const fn index(self) -> usize {
        match self {
            Self::Add => 0,
            Self::Reserve => 1,
            Self::UpdateContent => 2,
            Self::Update => 3,
            Self::Delete => 4,
        }
    }

    /// The label: `add`, `reserve`, `update_content`, `update` or `delete`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Reserve => "reserve",
            Self::UpdateContent => "update_content",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }
}

impl fmt::Display for PersistOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}
