//! Read requests and [`Page`].
//!
//! Every read carries a [`Context`], as a write does: a thread is `(tenant, thread_id)`, so a
//! read reaches the threads of its context's tenant (the threads without a tenant when it names
//! none), and another tenant's thread of the same id reads as absent, exactly as an unused id.
//! Listing threads and finding stranded reservations across every tenant is for operators and
//! says so explicitly ([`ListThreads::across_tenants`], [`FindStranded::across_tenants`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::branch::Branch;
use crate::context::{Context, context_setter};
use crate::model::error::{PersistError, Result};
use crate::model::id::{MessageId, TenantId, ThreadId};
pub use crate::model::page::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, Page, UnreadableItem};
use crate::model::page::{lookahead, validate_limit};
use crate::model::{Message, Metadata, Role, Thread, Timestamp};
pub use crate::request::filter::MessageFilter;

/// Reads one message.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GetMessage {
    /// The thread.
    pub thread_id: ThreadId,
    /// The message.
    pub message_id: MessageId,
    /// Who is asking: its tenant names the thread's tenant.
    pub context: Context,
}

impl GetMessage {
    /// Reads `(thread_id, message_id)`.
    pub fn new(thread_id: ThreadId, message_id: MessageId) -> Self {
        Self { thread_id, message_id, context: Context::new() }
    }

    context_setter!(tenant);
}

/// Reads one thread, tombstones included.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GetThread {
    /// The thread.
    pub thread_id: ThreadId,
    /// Who is asking: its tenant names the thread's tenant.
    pub context: Context,
}

impl GetThread {
    /// Reads `thread_id`.
    pub fn new(thread_id: ThreadId) -> Self {
        Self { thread_id, context: Context::new() }
    }

    context_setter!(tenant);
}

/// Direction of a listing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Oldest (lowest `seq`) first.
    #[default]
    Asc,
    /// Newest first.
    Desc,
}

/// Lists a thread's messages by `seq`, one page at a time.
///
/// Paging is by `seq`, which is assigned once and never reused, so pages stay stable while
/// messages are being added: ascending, pass the page's `next_cursor` to
/// [`after`](Self::after); descending, to [`before`](Self::before)
/// ([`next_page`](Self::next_page) does this for you). Reserved placeholders are skipped
/// unless [`include_reserved`](Self::include_reserved) is set; complete and
/// [interrupted](crate::Status::Interrupted) messages are always listed (an interrupted reply's
/// text so far is history, its status tells the reader it was cut short).
/// [`with_roles`](Self::with_roles) lists only the messages of some roles, filtered by the
/// store inside its query, so a page holds up to `limit` of them whatever lies between.
///
/// # Example
///
/// ```
/// use persist::{read::ListMessages, Order, Role, ThreadId};
///
/// let first = ListMessages::new(ThreadId::new("t1")?).with_limit(20).with_order(Order::Desc);
/// assert_eq!(first.limit, 20);
/// // The system prompts, oldest first, a page at a time.
/// let prompts = ListMessages::new(ThreadId::new("t1")?).with_roles([Role::System]);
/// assert_eq!(prompts.roles, [Role::System]);
/// # Ok::<_, persist::PersistError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListMessages {
    /// The thread.
    pub thread_id: ThreadId,
    /// Only messages with `seq` greater than this.
    pub after: Option<u64>,
    /// Only messages with `seq` less than this.
    pub before: Option<u64>,
    /// Page size, 1 to [`MAX_PAGE_LIMIT`] (default [`DEFAULT_PAGE_LIMIT`]).
    pub limit: u32,
    /// Ascending (default) or descending `seq`.
    pub order: Order,
    /// Whether placeholders still `Reserved` are listed.
    pub include_reserved: bool,
    /// Only messages of these roles (any role when empty), compared by name; see
    /// [`with_roles`](Self::with_roles).
    pub roles: Vec<Role>,
    /// Only the messages of this branch, from its root to its last message (see
    /// [`on_branch`](Self::on_branch)); every message of the thread when `None`.
    pub branch: Option<Branch>,
    /// Who is asking: its tenant names the thread's tenant.
    pub context: Context,
}

impl ListMessages {
    /// The first page of `thread_id`, ascending, without placeholders.
    pub fn new(thread_id: ThreadId) -> Self {
        Self {
            thread_id,
            after: None,
            before: None,
            limit: DEFAULT_PAGE_LIMIT,
            order: Order::Asc,
            include_reserved: false,
            roles: Vec::new(),
            branch: None,
            context: Context::new(),
        }
    }

    /// Only messages after `seq`.
    pub fn after(mut self, seq: u64) -> Self {
        self.after = Some(seq);
        self
    }

    /// Only messages before `seq`.
    pub fn before(mut self, seq: u64) -> Self {
        self.before = Some(seq);
        self
    }

    page_setters!(limit);

    /// Direction.
    pub fn with_order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// Lists placeholders too.
    pub fn include_reserved(mut self, include: bool) -> Self {
        self.include_reserved = include;
        self
    }

    /// Lists only messages of `roles` (every role when empty, as
    /// [`Search::with_roles`](crate::search::Search::with_roles)): the store filters inside its
    /// query, so paging (`after`, `before`, `limit`, `order`, `has_more`), branches and
    /// placeholders work as for any listing, and a role no message has lists nothing. A reader
    /// that needs a few messages of a long history (its system prompts) reads those, not the
    /// whole history.
    ///
    /// ```
    /// use persist::{branch::Branch, read::ListMessages, Role, ThreadId};
    ///
    /// let query = ListMessages::new(ThreadId::new("t1")?).on_branch(Branch::Active).with_roles([Role::System]);
    /// assert!(query.admits_role(&Role::System) && !query.admits_role(&Role::User));
    /// # Ok::<_, persist::PersistError>(())
    /// ```
    pub fn with_roles(mut self, roles: impl IntoIterator<Item = Role>) -> Self {
        self.roles = roles.into_iter().collect();
        self
    }

    /// Whether the listing's role filter lets a message of `role` through: any role without a
    /// filter, else a role of the same name as one listed. What a backend that scans applies.
    pub fn admits_role(&self, role: &Role) -> bool {
        self.roles.is_empty() || self.roles.iter().any(|listed| listed.as_str() == role.as_str())
    }

    /// The names of the roles listed, for a backend's query; `None` without a filter.
    pub fn role_names(&self) -> Option<Vec<&str>> {
        (!self.roles.is_empty()).then(|| self.roles.iter().map(Role::as_str).collect())
    }

    /// Lists only the messages of `branch`: the path from its root to its last message, in
    /// `seq` order (a parent is always earlier than its children), paged by `seq` like any
    /// listing. [`Branch::Active`] is the conversation as the user sees it now;
    /// [`Branch::EndingAt`] a message that is not in the thread is `NotFound`. See
    /// [`branch`](crate::branch).
    ///
    /// # Example
    ///
    /// ```
    /// use persist::{branch::Branch, read::ListMessages, Order, ThreadId};
    ///
    /// let latest = ListMessages::new(ThreadId::new("t1")?).on_branch(Branch::Active).with_order(Order::Desc);
    /// assert_eq!(latest.branch, Some(Branch::Active));
    /// # Ok::<_, persist::PersistError>(())
    /// ```
    pub fn on_branch(mut self, branch: Branch) -> Self {
        self.branch = Some(branch);
        self
    }

    context_setter!(tenant);

    /// The query for the page after `page`, or `None` when `page` was the last.
    pub fn next_page<T>(&self, page: &Page<T>) -> Option<Self> {
        let cursor = page.next_cursor.filter(|_| page.has_more)?;
        let next = self.clone();
        Some(match self.order {
            Order::Asc => next.after(cursor),
            Order::Desc => next.before(cursor),
        })
    }

    /// Checks the limit and the roles; backends call this first.
    ///
    /// # Errors
    ///
    /// [`PersistError::InvalidInput`] for a limit of 0 or over [`MAX_PAGE_LIMIT`], or a role
    /// no message can have (a [`Role::Other`] whose name [`Role::new`] refuses), naming `roles`.
    pub fn validate(&self) -> Result<()> {
        validate_limit(self.limit)?;
        // What no message can hold matches nothing: refused as it would be written.
        if let Some(bad) = self.roles.iter().find(|role| Role::new(role.as_str()).is_err()) {
            return Err(PersistError::invalid("roles", format!("{:?} is not a role a message can have", bad.as_str())));
        }
        Ok(())
    }

    page_setters!(fetch);

    /// The page answered from up to [`fetch_limit`](Self::fetch_limit) messages fetched in
    /// the listing's order.
    pub fn page(&self, fetched: Vec<Message>) -> Page<Message> {
        lookahead(fetched, self.limit, |m| m.seq)
    }
}

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

impl Serialize for ThreadCursor {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ThreadCursor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

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
    /// Page size, 1 to [`MAX_PAGE_LIMIT`].
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
    /// [`PersistError::InvalidInput`] for a limit of 0 or over [`MAX_PAGE_LIMIT`], a cursor of
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

/// Finds placeholders still `Reserved` with no activity since a cutoff (stranded by a stream
/// that never finished), least recently active first; see
/// `cleanup_stranded` (persist-ops), which cleans what this finds.
///
/// Activity is any write to the message (`updated_at`): a stream that keeps sending partial
/// content updates is never stranded, however long it has been running. (Backends can search
/// their index of reservations by creation time: a message last written before the cutoff was
/// created before it too. An index on `updated_at` would cost every streamed update.)
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use persist::read::FindStranded;
/// use persist::Timestamp;
///
/// // Reservations nobody wrote to in the last ten minutes.
/// let query = FindStranded::new(Timestamp::now().saturating_sub(Duration::from_secs(600)));
/// assert_eq!(query.limit, persist::read::DEFAULT_PAGE_LIMIT);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FindStranded {
    /// Only reservations last written (created or updated) before this instant.
    pub inactive_since: Timestamp,
    /// At most this many (1 to [`MAX_PAGE_LIMIT`]).
    pub limit: u32,
    /// Searches every tenant's threads instead of the context's tenant's: for the host's
    /// maintenance, never through a [`Scoped`](crate::Scoped) handle.
    pub across_tenants: bool,
    /// Request context: its tenant's threads are searched.
    pub context: Context,
}

impl FindStranded {
    /// Up to [`DEFAULT_PAGE_LIMIT`] reservations of the context's tenant with no write since
    /// `inactive_since`.
    pub fn new(inactive_since: Timestamp) -> Self {
        Self { inactive_since, limit: DEFAULT_PAGE_LIMIT, across_tenants: false, context: Context::new() }
    }

    page_setters!(limit);

    /// Searches every tenant's threads (`true`), or only the context's tenant's (`false`, the
    /// default).
    pub fn across_tenants(mut self, across: bool) -> Self {
        self.across_tenants = across;
        self
    }

    context_setter!(tenant);

    /// Checks the limit; backends call this first.
    ///
    /// # Errors
    ///
    /// [`PersistError::InvalidInput`] for a limit of 0 or over [`MAX_PAGE_LIMIT`].
    pub fn validate(&self) -> Result<()> {
        validate_limit(self.limit)
    }
}

/// A reservation [`FindStranded`] found, with the tenant of its thread (a message's identity is
/// `(tenant, thread, id)`: a cleanup deletes it in that tenant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stranded {
    /// The tenant of the message's thread, if any.
    pub tenant: Option<TenantId>,
    /// The reservation as found.
    pub message: Message,
}

impl Stranded {
    /// `message`, of a thread of `tenant`.
    pub fn new(tenant: Option<TenantId>, message: Message) -> Self {
        Self { tenant, message }
    }
}

/// A health check of the store behind a stack: answered by the backend's
/// [`ping`](crate::Backend::ping), a round trip that writes nothing.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Ping {
    /// Request context.
    pub context: Context,
}

impl Ping {
    /// A ping with an empty context.
    pub fn new() -> Self {
        Self::default()
    }

    context_setter!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked() {
        let t = ThreadId::new("t").unwrap();
        assert!(ListMessages::new(t.clone()).with_limit(0).validate().is_err());
        assert!(ListMessages::new(t.clone()).with_limit(MAX_PAGE_LIMIT + 1).validate().is_err());
        assert!(ListMessages::new(t).with_limit(MAX_PAGE_LIMIT).validate().is_ok());
        assert!(ListThreads::new().with_limit(0).validate().is_err());
    }

    #[test]
    fn thread_cursor_round_trips_and_rejects_garbage() {
        let c = ThreadCursor::new(Timestamp::from_micros(42), None, ThreadId::new("a:b").unwrap());
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(text, "\"42:a:b\"");
        assert_eq!(serde_json::from_str::<ThreadCursor>(&text).unwrap(), c);
        let tenant = Some(TenantId::new("ac+1:me").unwrap());
        let c = ThreadCursor::new(Timestamp::from_micros(-7), tenant, ThreadId::new("a:b").unwrap());
        let text = c.to_string();
        assert_eq!(text, "-7+7:ac+1:mea:b");
        assert_eq!(text.parse::<ThreadCursor>().unwrap(), c);
        for bad in ["", "x:y", "12", "12:", "12+9:ab", "12+x:ab", "12+2:ab", "12+0:ab"] {
            assert!(bad.parse::<ThreadCursor>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_listing_continues_only_from_its_own_tenants_cursor() {
        let acme = TenantId::new("acme").unwrap();
        let cursor = ThreadCursor::new(Timestamp::from_micros(1), Some(acme.clone()), ThreadId::new("t").unwrap());
        let listing = ListThreads::new().with_cursor(Some(cursor));
        let refused = listing.clone().validate().unwrap_err();
        assert!(matches!(refused, PersistError::InvalidInput { field: "cursor", .. }), "{refused:?}");
        assert!(listing.clone().with_context(Context::new().with_tenant(acme)).validate().is_ok());
        assert!(listing.across_tenants(true).validate().is_ok(), "an operator's listing spans tenants");
    }

    #[test]
    fn a_role_filter_admits_by_name_and_refuses_what_no_message_has() {
        let t = ThreadId::new("t").unwrap();
        let any = ListMessages::new(t.clone());
        assert!(any.admits_role(&Role::Tool) && any.role_names().is_none(), "no filter: every role");
        assert!(any.clone().with_roles([]).roles.is_empty(), "an empty filter is no filter");
        let some = any.clone().with_roles([Role::System, Role::new("critic").unwrap()]);
        assert_eq!(some.role_names(), Some(vec!["system", "critic"]));
        assert!(some.admits_role(&Role::System) && some.admits_role(&Role::Other("critic".into())));
        assert!(!some.admits_role(&Role::User) && !some.admits_role(&Role::new("Critic").unwrap()));
        assert!(some.validate().is_ok());
        assert!(any.clone().with_roles([Role::new("nobody").unwrap()]).validate().is_ok(), "matches nothing");
        for bad in ["", "a\u{0}b", &"x".repeat(crate::model::MAX_ROLE_BYTES + 1)] {
            let refused = any.clone().with_roles([Role::Other(bad.into())]).validate().unwrap_err();
            assert!(matches!(refused, PersistError::InvalidInput { field: "roles", .. }), "{bad:?}: {refused:?}");
        }
    }

    #[test]
    fn next_page_follows_the_order() {
        let t = ThreadId::new("t").unwrap();
        let page: Page<()> = Page::new(vec![(), ()], Some(7), true);
        assert_eq!(ListMessages::new(t.clone()).next_page(&page).unwrap().after, Some(7));
        let desc = ListMessages::new(t).with_order(Order::Desc);
        assert_eq!(desc.next_page(&page).unwrap().before, Some(7));
        let last: Page<()> = Page::new(vec![()], Some(9), false);
        assert!(desc.next_page(&last).is_none());
    }
}
