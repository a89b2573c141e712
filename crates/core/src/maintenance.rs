//! Maintenance that writes through the pipeline: cleanup of stranded reservations.

use std::time::Duration;

use crate::id::{MessageId, ThreadId};
use crate::pipeline::Pipeline;
use crate::read::DEFAULT_PAGE_LIMIT;

/// A context extension marking writes the framework itself issued for maintenance, so layers
/// (audit, policy) can tell them from user writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Maintenance;

/// What [`Pipeline::cleanup_stranded`] deletes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CleanupStranded {
    /// Reservations with no write for longer than this are stranded (a stream still sending
    /// content updates is not, however long it runs).
    pub older_than: Duration,
    /// At most this many per store and call.
    pub limit: u32,
    /// Other stores to search (each a pipeline, e.g. a route's target).
    pub sources: Vec<Pipeline>,
}

impl CleanupStranded {
    /// Reservations with no write for longer than `older_than`, up to 100 per store.
    pub fn new(older_than: Duration) -> Self {
        Self { older_than, limit: DEFAULT_PAGE_LIMIT, sources: Vec::new() }
    }

    /// At most `limit` per store and call.
    pub fn with_limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    /// Also searches `store` (the deletes still go through the pipeline cleaning up).
    pub fn also_in(mut self, store: Pipeline) -> Self {
        self.sources.push(store);
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
