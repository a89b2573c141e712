//! Listing threads: [`ListThreads`], newest first, continued from a [`ThreadCursor`], in the
//! order [`newest_first`] states.

use std::fmt;
use std::str::FromStr;

use super::{DEFAULT_PAGE_LIMIT, Page};
use crate::context::{Context, context_setter};
use crate::model::error::{PersistError, Result};
use crate::model::id::{TenantId, ThreadId};
use crate::model::page::{lookahead, validate_limit};
use crate::model::{Metadata, Thread, Timestamp};

/// The order of a thread listing: most recently updated first, ties by id, then by tenant,
/// both descending and bytewise (a thread without a tenant after one with a tenant). For a
/// layer that merges listings.
pub fn newest_first(a: &Thread, b: &Thread) -> std::cmp::Ordering {
    (b.updated_at, &b.id, &b.tenant).cmp(&(a.updated_at, &a.id, &a.tenant))
}

/// Where a thread listing stopped: the last thread's `(updated_at, id, tenant)`.
///
/// Threads are listed newest first, ties broken by id, then tenant (a listing across tenants
/// can hold two threads of one id), both descending, bytewise. Serialized as an opaque string,
/// safe to hand to clients.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ThreadCursor {
    updated_at: Timestamp,
    thread_id: ThreadId,
    tenant: Option<TenantId>,
}

impl ThreadCursor {
    /// The cursor just past the thread `(tenant, thread_id)` last updated at `updated_at`, in
    /// newest-first order.
    pub fn new(updated_at: Timestamp, tenant: Option<TenantId>, thread_id: ThreadId) -> Self {
        Self { updated_at, thread_id, tenant }
    }

    /// The cursor just past `thread`.
    pub fn after(thread: &Thread) -> Self {
        Self::new(thread.updated_at, thread.tenant.clone(), thread.id.clone())
    }

    /// The last listed thread's `updated_at`.
    pub fn updated_at(&self) -> Timestamp {
        self.updated_at
    }

    /// The last listed thread's id.
    pub fn thread_id(&self) -> &ThreadId {
        &self.thread_id
    }

    /// The last listed thread's tenant.
    pub fn tenant(&self) -> Option<&TenantId> {
        self.tenant.as_ref()
    }

    /// Whether `thread` comes after this cursor in newest-first order.
    pub fn precedes(&self, thread: &Thread) -> bool {
        (thread.updated_at, &thread.id, &thread.tenant) < (self.updated_at, &self.thread_id, &self.tenant)
    }
}

/// `micros:thread` for a thread without a tenant, `micros+n:tenantthread` (`n` the tenant's
/// length in bytes) for one with a tenant: ids may hold any printable character.
impl fmt::Display for ThreadCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.updated_at.as_micros();
        match &self.tenant {
            None => write!(f, "{micros}:{}", self.thread_id),
            Some(tenant) => write!(f, "{micros}+{}:{tenant}{}", tenant.as_str().len(), self.thread_id),
        }
    }
}

impl FromStr for ThreadCursor {
    type Err = PersistError;

    fn from_str(s: &str) -> Result<Self> {
        let malformed = || PersistError::invalid("cursor", "is not a cursor this library issued");
        let (head, rest) = s.split_once(':').ok_or_else(malformed)?;
        let (micros, tenant, id) = match head.split_once('+') {
            None => (head, None, rest),
            Some((micros, len)) => {
                let len = len.parse::<usize>().map_err(|_| malformed())?;
                let (tenant, id) = rest.split_at_checked(len).ok_or_else(malformed)?;
                (micros, Some(TenantId::new(tenant).map_err(|_| malformed())?), id)
            }
        };
        let micros = micros.parse::<i64>().map_err(|_| malformed())?;
        Ok(Self::new(Timestamp::from_micros(micros), tenant, ThreadId::new(id).map_err(|_| malformed())?))
    }
}

serde_as_text!(ThreadCursor);

/// Lists threads, most recently updated first; tombstones are not listed.
///
/// A listing reaches the threads of its context's tenant (those without a tenant when the
/// context names none). An operator's listing of every tenant's threads says so with
/// [`across_tenants`](Self::across_tenants); each [`Thread`] then names its tenant.
///
/// # Example
///
/// ```
/// use persist::{read::ListThreads, Metadata};
/// use serde_json::json;
///
/// let mine = ListThreads::new().with_filter(Metadata::new().with("user", json!("u1")));
/// assert_eq!(mine.limit, 100);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListThreads {
    /// Only threads whose metadata contains every key of this object with an equal value.
    pub filter: Metadata,
    /// Continue after this cursor (from the previous page).
    pub cursor: Option<ThreadCursor>,
    /// Page size, 1 to [`MAX_PAGE_LIMIT`](super::MAX_PAGE_LIMIT).
    pub limit: u32,
    /// Lists every tenant's threads instead of the context's tenant's: for operators, never
    /// through a [`Scoped`](crate::Scoped) handle.
    pub across_tenants: bool,
    /// Who is asking: its tenant's threads are listed.
    pub context: Context,
}

impl ListThreads {
    /// The first page of the context's tenant's threads.
    pub fn new() -> Self {
        Self {
            filter: Metadata::new(),
            cursor: None,
            limit: DEFAULT_PAGE_LIMIT,
            across_tenants: false,
            context: Context::new(),
        }
    }

    /// Lists every tenant's threads (`true`), or only the context's tenant's (`false`, the
    /// default).
    pub fn across_tenants(mut self, across: bool) -> Self {
        self.across_tenants = across;
        self
    }

    /// Keeps only threads whose metadata contains `filter`.
    pub fn with_filter(mut self, filter: Metadata) -> Self {
        self.filter = filter;
        self
    }

    page_setters!(cursor: ThreadCursor, limit);

    context_setter!(tenant);

    /// Checks the limit, the cursor and the filter; backends call this first.
    ///
    /// # Errors
    ///
    /// [`PersistError::InvalidInput`] for a limit of 0 or over [`MAX_PAGE_LIMIT`](super::MAX_PAGE_LIMIT), a cursor of
    /// another tenant's listing (one tenant's listing continues only from its own threads),
    /// naming `cursor`, or a filter no metadata can hold (nested too deep, U+0000), naming
    /// `filter`.
    pub fn validate(&self) -> Result<()> {
        validate_limit(self.limit)?;
        if let Some(cursor) = &self.cursor
            && !self.across_tenants
            && cursor.tenant() != self.tenant()
        {
            return Err(PersistError::invalid("cursor", "continues another tenant's listing"));
        }
        // What no thread's metadata can hold matches nothing: refused as it would be written.
        self.filter.check_depth().map_err(|_| PersistError::invalid("filter", "is nested too deep"))?;
        if self.filter.has_nul() {
            return Err(crate::request::write::nul("filter"));
        }
        Ok(())
    }

    page_setters!(fetch);

    /// The page answered from up to [`fetch_limit`](Self::fetch_limit) threads fetched newest
    /// first.
    pub fn page(&self, fetched: Vec<Thread>) -> Page<Thread, ThreadCursor> {
        lookahead(fetched, self.limit, ThreadCursor::after)
    }
}

impl Default for ListThreads {
    fn default() -> Self {
        Self::new()
    }
}
