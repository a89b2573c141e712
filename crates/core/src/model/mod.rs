//! The data every part names: ids, JSON and its rules, content, metadata, embeddings, messages
//! and threads, pages of them, the one error type and the operation labels. Nothing here knows
//! of requests or of the pipeline. (Ids and the error refer to each other: an id that does not validate is a
//! `PersistError`, and an error names the ids it concerns.)

pub(crate) mod content;
pub(crate) mod embedding;
pub(crate) mod error;
pub(crate) mod id;
pub(crate) mod id_checks;
pub(crate) mod json;
pub(crate) mod message;
pub(crate) mod metadata;
#[macro_use]
pub(crate) mod op;
#[macro_use]
pub(crate) mod page;
pub(crate) mod part;

pub use self::content::Content;
pub use self::json::MAX_JSON_DEPTH;
pub use self::message::{MAX_ROLE_BYTES, Message, Role, Status, Thread, Timestamp};
pub use self::metadata::Metadata;
pub use self::part::{Part, ToolCallRef, ToolNames, ToolResultRef};
