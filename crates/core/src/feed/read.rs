//! Reading the feed: [`ReadFeed`] of a [`FeedScope`] after a position, answered by a
//! [`FeedPage`].

use serde::{Deserialize, Serialize};

use super::event::{FeedEvent, FeedScope, Subject};
use super::hub::FeedHub;
use crate::context::{Context, context_setter};
use crate::model::error::{PersistError, Result};
use crate::model::id::{ResourceId, TenantId, ThreadId};
use crate::model::page::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT};

/// Reads the events after a position, oldest first.
///
/// # Errors (from the backend)
///
/// - [`PersistError::FeedGap`] when the feed no longer holds every event after
///   [`after`](Self::after) (retention removed some): reload, then follow from the answer's
///   [`head`](FeedPage::head).
/// - `InvalidInput` for a limit out of `1..=1000`, or a position beyond the feed's head (a
///   position of another store).
/// - `Unsupported` from a backend without a feed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReadFeed {
    /// The events read.
    pub scope: FeedScope,
    /// Events after this position (0: from the feed's start).
    pub after: u64,
    /// At most this many events (default 100, at most 1000).
    pub limit: u32,
    /// Who is asking: its tenant scopes [`FeedScope::Thread`], [`FeedScope::Memory`] and
    /// [`FeedScope::Tenant`].
    pub context: Context,
}

impl ReadFeed {
    /// The events of thread `thread_id` (of the context's tenant).
    pub fn thread(thread_id: ThreadId) -> Self {
        Self::new(FeedScope::Thread(thread_id))
    }

    /// The events of the working memory document of `resource` (of the context's tenant).
    pub fn memory(resource: ResourceId) -> Self {
        Self::new(FeedScope::Memory(resource))
    }

    /// The events of every thread and working memory document of the context's tenant.
    pub fn tenant() -> Self {
        Self::new(FeedScope::Tenant)
    }

    /// The events of every thread and document of every tenant: for operators, who say so
    /// explicitly.
    pub fn across_tenants() -> Self {
        Self::new(FeedScope::AcrossTenants)
    }

    fn new(scope: FeedScope) -> Self {
        Self { scope, after: 0, limit: DEFAULT_PAGE_LIMIT, context: Context::new() }
    }

    /// Events after `position` (the last one the reader saw).
    pub fn after(mut self, position: u64) -> Self {
        self.after = position;
        self
    }

    page_setters!(limit);

    context_setter!();

    /// The thread read, for [`FeedScope::Thread`].
    pub fn thread_id(&self) -> Option<&ThreadId> {
        match &self.scope {
            FeedScope::Thread(id) => Some(id),
            _ => None,
        }
    }

    /// The document read, for [`FeedScope::Memory`].
    pub fn resource(&self) -> Option<&ResourceId> {
        match &self.scope {
            FeedScope::Memory(resource) => Some(resource),
            _ => None,
        }
    }

    /// What one subject's read is of: a thread, a document (`None` for a tenant's or the
    /// store's).
    pub fn subject(&self) -> Option<Subject> {
        match &self.scope {
            FeedScope::Thread(id) => Some(Subject::Thread(id.clone())),
            FeedScope::Memory(resource) => Some(Subject::Memory(resource.clone())),
            _ => None,
        }
    }

    /// The tenant whose events are read: the context's, `None` across tenants.
    pub fn tenant_read(&self) -> Option<&TenantId> {
        match self.scope {
            FeedScope::AcrossTenants => None,
            _ => self.context.tenant(),
        }
    }

    /// Whether `event` is in this read's scope (its position aside).
    pub fn covers(&self, event: &FeedEvent) -> bool {
        self.covers_change(event.change.tenant.as_ref(), event.change.subject().as_ref())
    }

    /// Whether an event of `subject` of `tenant` is in this read's scope.
    pub(super) fn covers_change(&self, tenant: Option<&TenantId>, subject: Option<&Subject>) -> bool {
        match &self.scope {
            FeedScope::AcrossTenants => true,
            FeedScope::Tenant => tenant == self.context.tenant(),
            FeedScope::Thread(_) | FeedScope::Memory(_) => {
                tenant == self.context.tenant() && subject == self.subject().as_ref()
            }
        }
    }

    /// `InvalidInput` for a limit out of range.
    pub fn validate(&self) -> Result<()> {
        if self.limit == 0 || self.limit > MAX_PAGE_LIMIT {
            let reason = format!("must be between 1 and {MAX_PAGE_LIMIT}, got {}", self.limit);
            return Err(PersistError::invalid("limit", reason));
        }
        Ok(())
    }

    /// Checks `after` against a feed holding the events after `trimmed` up to `head`: a gap
    /// when retention removed events after `after`, `InvalidInput` past the head.
    pub fn check_position(&self, trimmed: u64, head: u64) -> Result<()> {
        if self.after < trimmed {
            return Err(PersistError::FeedGap { after: self.after, trimmed });
        }
        if self.after > head {
            let reason = format!("position {} is beyond the feed's head {head} (another store's?)", self.after);
            return Err(PersistError::invalid("after", reason));
        }
        Ok(())
    }

    /// The answer holding `fetched` (up to `limit + 1` events in scope after `after`, oldest
    /// first) of a feed whose head is `head`.
    pub fn page(&self, mut fetched: Vec<FeedEvent>, head: u64) -> FeedPage {
        let has_more = fetched.len() > self.limit as usize;
        fetched.truncate(self.limit as usize);
        FeedPage { events: fetched, head, has_more, tenant: self.tenant_read().cloned(), wake: Wake::default() }
    }
}

/// The answer to a [`ReadFeed`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FeedPage {
    /// The events in scope after the position asked for, oldest first.
    pub events: Vec<FeedEvent>,
    /// The newest position of the whole feed when it was read: a client that reloads after a
    /// gap follows from here.
    pub head: u64,
    /// More events in scope follow the last one (the page was full).
    pub has_more: bool,
    /// The tenant whose events were read, as the backend saw the request (after any layer
    /// that sets the tenant); `None` across tenants.
    pub tenant: Option<TenantId>,
    /// Where the store that answered announces its new events: set by the [`Terminal`] that
    /// read them, so a subscription waits on the store a route sent its reads to.
    ///
    /// [`Terminal`]: crate::Terminal
    #[serde(skip)]
    wake: Wake,
}

/// The wake-ups of the store that answered a feed read (see [`FeedPage::wake_hub`]): where to
/// wait, not a part of the answer, so pages compare equal whichever hub they carry.
#[derive(Debug, Clone, Default)]
struct Wake(Option<FeedHub>);

impl PartialEq for Wake {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Wake {}

impl FeedPage {
    /// The wake-ups of the store that answered (its [`Backend::feed_hub`]), when the page came
    /// through a [`Terminal`](crate::Terminal).
    ///
    /// [`Backend::feed_hub`]: crate::Backend::feed_hub
    pub fn wake_hub(&self) -> Option<&FeedHub> {
        self.wake.0.as_ref()
    }

    /// This page, announced by `hub` unless a store below already named its own (the
    /// innermost terminal, which read the events, knows where they are announced).
    pub fn with_wake_hub(mut self, hub: Option<FeedHub>) -> Self {
        if self.wake.0.is_none() {
            self.wake.0 = hub;
        }
        self
    }

    /// The position to read after next: the last event's, else the one read after.
    pub fn last_position(&self, after: u64) -> u64 {
        self.events.last().map_or(after, |event| event.position)
    }
}
