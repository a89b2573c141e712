//! What every write is checked against, set by the builder and read by the writer, the lane and
//! each kind of write: a room of its own, so none of them imports the room that opens the store.

use std::time::Duration;

/// Size limits applied to what is stored (serialized JSON bytes).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_content_bytes: usize,
    pub(crate) max_metadata_bytes: usize,
    /// Whether rows are written in their packed form: the store's format level is 1 (see
    /// `migrations/0015`), read when the handle opens.
    pub(crate) packed: bool,
    /// How long a removed message's idempotency key is remembered (see `persist::spent`).
    pub(crate) key_retention: Duration,
}
