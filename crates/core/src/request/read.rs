//! Read requests and [`Page`].
//!
//! Every read carries a [`Context`], as a write does: a thread is `(tenant, thread_id)`, so a
//! read reaches the threads of its context's tenant (the threads without a tenant when it names
//! none), and another tenant's thread of the same id reads as absent, exactly as an unused id.
//! Listing threads and finding stranded reservations across every tenant is for operators and
//! says so explicitly ([`ListThreads::across_tenants`], [`FindStranded::across_tenants`]).

use serde::{Deserialize, Serialize};

use super::branch::Branch;
use crate::context::{Context, context_setter};
use crate::model::error::{PersistError, Result};
use crate::model::id::{MessageId, TenantId, ThreadId};
pub use crate::model::page::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, Page, UnreadableItem};
use crate::model::page::{lookahead, validate_limit};
use crate::model::{Message, Role, Timestamp};
pub use crate::request::filter::MessageFilter;

mod threads;

pub use self::threads::{ListThreads, ThreadCursor, newest_first};

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
