//! Maintenance that writes through the pipeline: cleanup of stranded reservations.

use std::time::Duration;

use crate::context::{Context, context_setter};
use crate::model::id::TenantId;
use crate::read::{DEFAULT_PAGE_LIMIT, Stranded};

/// A context extension marking writes the framework itself issued for maintenance, so layers
/// (audit, policy) can tell them from user writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Maintenance;

/// What a cleanup does with each stranded reservation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stranding {
    /// Marks it [`Interrupted`](crate::Status::Interrupted), keeping the text its stream wrote
    /// (the default): readers see the reply was cut short, and what it said so far.
    #[default]
    Interrupt,
    /// Deletes it, with whatever its stream wrote.
    Delete,
}

/// What [`Pipeline::cleanup_stranded`](crate::Pipeline::cleanup_stranded) cleans, and how.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CleanupStranded {
    /// Reservations with no write for longer than this are stranded (a stream still sending
    /// content updates is not, however long it runs).
    pub older_than: Duration,
    /// Marked interrupted (the default) or deleted.
    pub stranding: Stranding,
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
        Self {
            older_than,
            stranding: Stranding::Interrupt,
            limit: DEFAULT_PAGE_LIMIT,
            across_tenants: true,
            context: Context::new(),
        }
    }

    /// Deletes the stranded reservations, with what their streams wrote, instead of marking
    /// them interrupted.
    pub fn deleting(mut self) -> Self {
        self.stranding = Stranding::Delete;
        self
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
    /// The reservations marked interrupted, as written (status `Interrupted`, the text their
    /// streams wrote, each with its thread's tenant).
    pub interrupted: Vec<Stranded>,
    /// The reservations deleted ([`Stranding::Delete`]), as they were found.
    pub deleted: Vec<Stranded>,
    /// Reservations that changed between finding and cleaning (written to, finalized): kept as
    /// they are.
    pub skipped: usize,
    /// Reservations a layer refused to clean (`Rejected`: the keys of their tenant destroyed, a
    /// policy; `Unreadable`): kept as they are, with the reason, while the cleanup goes on with
    /// the others. A failure of the store itself still ends the cleanup with its error.
    pub refused: Vec<RefusedCleanup>,
}

/// A stranded reservation a layer refused to clean, and why (see [`CleanupReport::refused`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RefusedCleanup {
    /// The reservation, as found.
    pub stranded: Stranded,
    /// The refusal, in words (the error's message).
    pub reason: String,
}
