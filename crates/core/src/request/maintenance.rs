//! Maintenance that writes through the pipeline: cleanup of stranded reservations.

use std::time::Duration;

use crate::context::{Context, context_setter};
use crate::model::id::TenantId;
use crate::read::{DEFAULT_PAGE_LIMIT, Stranded};

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
    /// Whether every tenant's threads are cleaned (the default), or only the context's
    /// tenant's, as [`ListThreads::across_tenants`](crate::read::ListThreads::across_tenants).
    pub across_tenants: bool,
    /// The context the cleanup's requests carry (with a [`Maintenance`] extension added): its
    /// tenant is the one cleaned when not [`across_tenants`](Self::across_tenants).
    pub context: Context,
}

impl CleanupStranded {
    /// Reservations of every tenant with no write for longer than `older_than`, up to 100 a
    /// call.
    pub fn new(older_than: Duration) -> Self {
        Self { older_than, limit: DEFAULT_PAGE_LIMIT, across_tenants: true, context: Context::new() }
    }

    /// Cleans only `tenant`'s threads (`None`: the threads without a tenant).
    pub fn only_tenant(mut self, tenant: Option<TenantId>) -> Self {
        self.across_tenants = false;
        self.context = self.context.for_tenant(tenant);
        self
    }

    /// At most `limit` per call.
    pub fn with_limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    context_setter!();
}

/// What a cleanup did.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct CleanupReport {
    /// The reservations deleted, as they were found (each with its thread's tenant).
    pub deleted: Vec<Stranded>,
    /// Reservations that changed between finding and deleting (filled, or finalized): kept.
    pub skipped: usize,
}
