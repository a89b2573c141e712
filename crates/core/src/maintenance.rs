//! Maintenance that writes through the pipeline: cleanup of stranded reservations.

use std::time::Duration;

use crate::id::{MessageId, ThreadId};
use crate::read::DEFAULT_PAGE_LIMIT;

/// A context extension marking writes the framework itself issued for maintenance, so layers
/// (audit, policy) can tell them from user writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Maintenance;

/// What [`Pipeline::cleanup_stranded`](crate::Pipeline::cleanup_stranded) deletes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CleanupStranded {
    /// Reservations with no write for longer than this are stranded (a stream still sending
    /// content updates is not, however long it runs).
    pub older_than: Duration,
    /// At most this many per call.
    pub limit: u32,
}

impl CleanupStranded {
    /// Reservations with no write for longer than `older_than`, up to 100 a call.
    pub fn new(older_than: Duration) -> Self {
        Self { older_than, limit: DEFAULT_PAGE_LIMIT }
    }

    /// At most `limit` per call.
    pub fn with_limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }
}

/// What a cleanup did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CleanupReport {
    /// The reservations deleted.
    pub deleted: Vec<(ThreadId, MessageId)>,
    /// Reservations that changed between finding and deleting (filled, or finalized): kept.
    pub skipped: usize,
}
