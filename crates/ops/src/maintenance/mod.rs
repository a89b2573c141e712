//! Maintenance that writes through the pipeline: cleanup of stranded reservations.

pub(crate) mod cleanup;

use std::time::Duration;

use persist_core::TenantId;
use persist_core::read::{DEFAULT_PAGE_LIMIT, Stranded};
use persist_core::{Context, context_setter};

/// The marker of maintenance writes, defined with the context it marks.
pub use persist_core::Maintenance;
/// Where a store's schema stands, defined with the contract backends implement.
pub use persist_core::schema::{SchemaMigration, SchemaStatus};

/// What a cleanup does with each stranded reservation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stranding {
    /// Marks it [`Interrupted`](persist_core::Status::Interrupted), keeping the text its stream wrote
    /// (the default): readers see the reply was cut short, and what it said so far. One its
    /// stream wrote nothing to ([`Content::is_blank`](persist_core::Content::is_blank)) is deleted:
    /// there is nothing to keep, and providers refuse an empty message.
    #[default]
    Interrupt,
    /// Deletes it, with whatever its stream wrote.
    Delete,
}

/// What [`PipelineExt::cleanup_stranded`](crate::PipelineExt::cleanup_stranded) cleans, and how.
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
    /// tenant's, as [`ListThreads::across_tenants`](persist_core::read::ListThreads::across_tenants).
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
    /// The reservations deleted ([`Stranding::Delete`], or blank ones: see
    /// [`Stranding::Interrupt`]), as they were found.
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
