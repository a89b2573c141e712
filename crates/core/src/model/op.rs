//! [`PersistOp`]: a `Copy` label for each operation, made of the one list of requests
//! (`requests!`, in `requests.rs` at the contract's top).

use std::fmt;

use serde::{Deserialize, Serialize};

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
        /// assert_eq!(PersistOp::ALL.len(), 34);
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
