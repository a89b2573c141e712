//! The change feed: every committed write, in order, from a position a subscriber resumes at.
//!
//! A backend that keeps a feed ([`Capabilities::feed`](crate::Capabilities::feed)) records a
//! [`FeedEvent`] for each message inserted, changed or removed and for each change of a
//! thread's version or tombstone, **in the same transaction as the write**: a write that rolled
//! back has no event, a committed write always has one. Events are numbered by a store-wide
//! `position` (1, 2, 3…, in commit order, never reused) that a subscriber keeps and resumes
//! from, as SSE's `Last-Event-ID`.
//!
//! - [`ReadFeed`] reads the events after a position: of one thread, of the context's tenant,
//!   or of the whole store ([`across_tenants`](ReadFeed::across_tenants)). It goes through the
//!   pipeline like any read, so layers see it and the context's tenant scopes it.
//! - [`Pipeline::subscribe`](crate::Pipeline::subscribe) follows a scope: it reads through the
//!   pipeline whenever the backend's [`FeedHub`] says that scope has new events, so a
//!   subscriber to one thread is woken by that thread's writes only, and a slow subscriber
//!   holds up nothing but itself (it reads at its own pace from the stored feed).
//! - The feed keeps events for a bounded time and number ([`FeedRetention`]). Resuming from a
//!   position the feed no longer holds answers [`PersistError::FeedGap`]: the client reloads
//!   instead of silently missing writes.
//!
//! Events say what changed, not the content: a UI that sees `update_content` of a message
//! reads it (through the pipeline, so a decrypting layer opens it).
//!
//! # Example
//!
//! ```
//! use persist::{args::Add, feed::ReadFeed, Content, Pipeline, PersistOp, Role, ThreadId};
//! use persist::memory::MemoryBackend;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pipeline = Pipeline::new(MemoryBackend::new());
//! let thread = ThreadId::new("t1")?;
//! let mut updates = pipeline.subscribe(ReadFeed::thread(thread.clone())).await?;
//! pipeline.add(Add::new(thread.clone(), Role::User, Content::text("hi"))).await?;
//! let event = updates.next().await?;
//! assert_eq!((event.op, event.seq), (PersistOp::Add, Some(1)));
//!
//! // A client that saw nothing after position 0 reads it again, exactly once.
//! let missed = pipeline.read_feed(ReadFeed::thread(thread).after(0)).await?;
//! assert_eq!(missed.events, [event]);
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::args::{Context, context_setter};
use crate::error::{PersistError, Result};
use crate::id::{MessageId, TenantId, ThreadId};
use crate::message::Timestamp;
use crate::op::PersistOp;
use crate::pipeline::Pipeline;
use crate::read::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT};

/// What a delete event removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Removed {
    /// One message (a message delete, or each message a truncation removed).
    Message,
    /// The whole thread: it is a tombstone now, its messages are gone.
    Thread,
}

/// One committed change, as the feed records it.
///
/// `op` is the write that made it: [`Add`](PersistOp::Add) and
/// [`Reserve`](PersistOp::Reserve) for a message inserted (a restored message too, by its
/// status), [`UpdateContent`](PersistOp::UpdateContent) for a message whose content or status
/// changed, [`Update`](PersistOp::Update) for a message's metadata or role, or a thread's
/// version (title, metadata, a truncation), and [`Delete`](PersistOp::Delete) with
/// [`removed`](Self::removed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FeedEvent {
    /// Where the event is in the store's feed: 1, 2, 3… in commit order, never reused.
    pub position: u64,
    /// The tenant of the thread written.
    pub tenant: Option<TenantId>,
    /// The thread written.
    pub thread_id: ThreadId,
    /// The kind of change; see the type's docs.
    pub op: PersistOp,
    /// The message changed; `None` when the change is the thread's own.
    pub message_id: Option<MessageId>,
    /// The message's `seq`; `None` for the thread's own changes.
    pub seq: Option<u64>,
    /// The message's version after the change (for a removed message, its last), or the
    /// thread's for the thread's own changes.
    pub version: u64,
    /// For a delete: whether it removed a message or the whole thread.
    pub removed: Option<Removed>,
    /// When the feed recorded the change.
    pub at: Timestamp,
}

impl FeedEvent {
    /// The event a SQL backend stored as text and numbers: `tenant` `""` for none, `op` its
    /// label, `removed` `"message"` or `"thread"`. For backend authors.
    ///
    /// # Errors
    ///
    /// A `Backend` error naming the column when a stored value is not one an event can hold.
    #[allow(clippy::too_many_arguments)]
    pub fn from_stored(
        position: u64,
        tenant: &str,
        thread_id: &str,
        op: &str,
        message_id: Option<&str>,
        seq: Option<u64>,
        version: u64,
        removed: Option<&str>,
        at: Timestamp,
    ) -> Result<Self> {
        let corrupt = |what: &str, value: &str| PersistError::Backend {
            message: format!("the change feed holds an unreadable {what} at position {position}: {value:?}").into(),
            source: None,
        };
        let tenant = match tenant {
            "" => None,
            name => Some(TenantId::new(name).map_err(|_| corrupt("tenant", name))?),
        };
        let op: PersistOp = op.parse().map_err(|_| corrupt("op", op))?;
        let removed = match removed {
            None => None,
            Some("message") => Some(Removed::Message),
            Some("thread") => Some(Removed::Thread),
            Some(other) => return Err(corrupt("removal", other)),
        };
        Ok(Self {
            position,
            tenant,
            thread_id: ThreadId::new(thread_id).map_err(|_| corrupt("thread id", thread_id))?,
            op,
            message_id: message_id.map(|id| MessageId::new(id).map_err(|_| corrupt("message id", id))).transpose()?,
            seq,
            version,
            removed,
            at,
        })
    }

    /// Whether this event is of the thread `(tenant, thread_id)`.
    pub fn is_in(&self, tenant: Option<&TenantId>, thread_id: &ThreadId) -> bool {
        self.tenant.as_ref() == tenant && &self.thread_id == thread_id
    }
}

/// A change as a backend records it, before the feed numbers it: the fields of [`FeedEvent`]
/// but its position and time. For backend authors that build events in Rust.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Change {
    /// See [`FeedEvent::tenant`].
    pub tenant: Option<TenantId>,
    /// See [`FeedEvent::thread_id`].
    pub thread_id: ThreadId,
    /// See [`FeedEvent::op`].
    pub op: PersistOp,
    /// See [`FeedEvent::message_id`].
    pub message_id: Option<MessageId>,
    /// See [`FeedEvent::seq`].
    pub seq: Option<u64>,
    /// See [`FeedEvent::version`].
    pub version: u64,
    /// See [`FeedEvent::removed`].
    pub removed: Option<Removed>,
}

impl Change {
    /// A change of message `(message_id, seq)` at `version`.
    pub fn message(
        tenant: Option<TenantId>,
        thread_id: ThreadId,
        op: PersistOp,
        message_id: MessageId,
        seq: u64,
        version: u64,
    ) -> Self {
        let removed = (op == PersistOp::Delete).then_some(Removed::Message);
        Self { tenant, thread_id, op, message_id: Some(message_id), seq: Some(seq), version, removed }
    }

    /// A change of the thread itself at `version` (`Delete`: the thread was removed).
    pub fn thread(tenant: Option<TenantId>, thread_id: ThreadId, op: PersistOp, version: u64) -> Self {
        let removed = (op == PersistOp::Delete).then_some(Removed::Thread);
        Self { tenant, thread_id, op, message_id: None, seq: None, version, removed }
    }

    /// The event at `position`, recorded `at`.
    pub fn at(self, position: u64, at: Timestamp) -> FeedEvent {
        FeedEvent {
            position,
            tenant: self.tenant,
            thread_id: self.thread_id,
            op: self.op,
            message_id: self.message_id,
            seq: self.seq,
            version: self.version,
            removed: self.removed,
            at,
        }
    }
}

/// Which events a [`ReadFeed`] reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FeedScope {
    /// One thread of the context's tenant.
    Thread(ThreadId),
    /// Every thread of the context's tenant.
    Tenant,
    /// Every thread of every tenant (operators, indexers).
    Store,
}

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
    /// Who is asking: its tenant scopes [`FeedScope::Thread`] and [`FeedScope::Tenant`].
    pub context: Context,
}

impl ReadFeed {
    /// The events of thread `thread_id` (of the context's tenant).
    pub fn thread(thread_id: ThreadId) -> Self {
        Self::new(FeedScope::Thread(thread_id))
    }

    /// The events of every thread of the context's tenant.
    pub fn tenant() -> Self {
        Self::new(FeedScope::Tenant)
    }

    /// The events of every thread of every tenant: for operators, who say so explicitly.
    pub fn across_tenants() -> Self {
        Self::new(FeedScope::Store)
    }

    fn new(scope: FeedScope) -> Self {
        Self { scope, after: 0, limit: DEFAULT_PAGE_LIMIT, context: Context::new() }
    }

    /// Events after `position` (the last one the reader saw).
    pub fn after(mut self, position: u64) -> Self {
        self.after = position;
        self
    }

    /// At most `limit` events.
    pub fn with_limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    context_setter!();

    /// The thread read, for [`FeedScope::Thread`].
    pub fn thread_id(&self) -> Option<&ThreadId> {
        match &self.scope {
            FeedScope::Thread(id) => Some(id),
            FeedScope::Tenant | FeedScope::Store => None,
        }
    }

    /// The tenant whose events are read: the context's, `None` across tenants.
    pub fn tenant_read(&self) -> Option<&TenantId> {
        match self.scope {
            FeedScope::Store => None,
            FeedScope::Thread(_) | FeedScope::Tenant => self.context.tenant(),
        }
    }

    /// Whether `event` is in this read's scope (its position aside).
    pub fn covers(&self, event: &FeedEvent) -> bool {
        self.covers_change(event.tenant.as_ref(), &event.thread_id)
    }

    /// Whether an event of thread `thread_id` of `tenant` is in this read's scope.
    fn covers_change(&self, tenant: Option<&TenantId>, thread_id: &ThreadId) -> bool {
        match &self.scope {
            FeedScope::Store => true,
            FeedScope::Tenant => tenant == self.context.tenant(),
            FeedScope::Thread(id) => tenant == self.context.tenant() && thread_id == id,
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

/// How long a feed keeps its events: an event goes when it is older than `max_age` or when
/// more than `max_events` newer ones follow it, whichever comes first. The newest event always
/// stays, however old: it holds the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FeedRetention {
    /// Events older than this go (`None`: no age limit).
    pub max_age: Option<Duration>,
    /// At most this many events are kept, at least one (`None`: no count limit).
    pub max_events: Option<u64>,
}

impl Default for FeedRetention {
    /// Seven days, and at most a million events.
    fn default() -> Self {
        Self { max_age: Some(Duration::from_secs(7 * 24 * 3600)), max_events: Some(1_000_000) }
    }
}

impl FeedRetention {
    /// Keeps everything (until the host trims the store itself).
    pub fn forever() -> Self {
        Self { max_age: None, max_events: None }
    }

    /// Sets [`max_age`](Self::max_age).
    pub fn with_max_age(mut self, max_age: Option<Duration>) -> Self {
        self.max_age = max_age;
        self
    }

    /// Sets [`max_events`](Self::max_events).
    pub fn with_max_events(mut self, max_events: Option<u64>) -> Self {
        self.max_events = max_events;
        self
    }

    /// The newest position to remove from a feed whose head is `head`, by count alone (the
    /// newest event is always kept, even with `max_events` 0).
    pub fn count_cutoff(&self, head: u64) -> u64 {
        self.max_events.map_or(0, |keep| head.saturating_sub(keep.max(1)))
    }

    /// The time before which events go, by age alone.
    pub fn age_cutoff(&self, now: Timestamp) -> Option<Timestamp> {
        let age = self.max_age?;
        let micros = i64::try_from(age.as_micros()).unwrap_or(i64::MAX);
        Some(Timestamp::from_micros(now.as_micros().saturating_sub(micros)))
    }
}

/// An in-memory feed: what the memory backend keeps, and a reference for backend authors.
///
/// Positions are assigned by [`record`](Self::record) in call order, so the caller records under
/// the same lock as the write it describes. Each thread's positions are kept apart too, so a
/// thread's read costs its own events, however many other threads' came between.
#[derive(Debug, Default)]
pub struct MemoryFeed {
    /// Every event kept, with its time: positions `trimmed + 1 ..= head`, one after another;
    /// `None` where an event was erased (see [`erase_thread`](Self::erase_thread)).
    events: VecDeque<(Option<Change>, Timestamp)>,
    /// Each thread's positions among `events`, oldest first (some may be trimmed already).
    threads: HashMap<(Option<TenantId>, ThreadId), VecDeque<u64>>,
    head: u64,
    trimmed: u64,
    retention: FeedRetention,
}

impl MemoryFeed {
    /// An empty feed keeping what `retention` says.
    pub fn new(retention: FeedRetention) -> Self {
        Self { retention, ..Self::default() }
    }

    /// Numbers `change` and keeps it; answers its position (see [`event`](Self::event), to
    /// publish it once the write is visible).
    pub fn record(&mut self, change: Change, at: Timestamp) -> u64 {
        self.head += 1;
        let key = (change.tenant.clone(), change.thread_id.clone());
        self.threads.entry(key).or_default().push_back(self.head);
        self.events.push_back((Some(change), at));
        let cutoff = self.retention.count_cutoff(self.head);
        let age = self.retention.age_cutoff(at);
        // The oldest kept is at `trimmed + 1`; the newest event is never removed.
        while self.trimmed + 1 < self.head
            && let Some((_, first_at)) = self.events.front()
            && (self.trimmed < cutoff || age.is_some_and(|age| *first_at < age))
        {
            if let Some((Some(first), _)) = self.events.pop_front() {
                let key = (first.tenant, first.thread_id);
                if let Some(positions) = self.threads.get_mut(&key) {
                    positions.pop_front();
                    if positions.is_empty() {
                        self.threads.remove(&key);
                    }
                }
            }
            self.trimmed += 1;
        }
        self.head
    }

    /// Erases the events of a thread whose id a purge freed (ids may carry personal data), all
    /// but its newest thread delete: a follower still learns that the thread is gone. Positions
    /// stay as they were; readers skip the erased ones.
    pub fn erase_thread(&mut self, tenant: Option<&TenantId>, thread_id: &ThreadId) {
        let key = (tenant.cloned(), thread_id.clone());
        let Some(positions) = self.threads.remove(&key) else {
            return;
        };
        let is_delete = |change: &Change| change.removed == Some(Removed::Thread);
        let kept = positions.iter().rev().copied().find(|&p| self.change(p).is_some_and(is_delete));
        for &position in positions.iter().filter(|&&p| Some(p) != kept) {
            if let Some(index) = self.index(position) {
                self.events[index].0 = None;
            }
        }
        if let Some(kept) = kept {
            self.threads.insert(key, VecDeque::from([kept]));
        }
    }

    /// The index of `position` among the kept events.
    fn index(&self, position: u64) -> Option<usize> {
        usize::try_from(position.checked_sub(self.trimmed + 1)?).ok().filter(|&index| index < self.events.len())
    }

    fn change(&self, position: u64) -> Option<&Change> {
        self.events.get(self.index(position)?)?.0.as_ref()
    }

    /// The event at `position`, while it is kept.
    pub fn event(&self, position: u64) -> Option<FeedEvent> {
        // Kept events are contiguous, and their positions are not stored: a position is its index.
        let (change, at) = self.events.get(self.index(position)?)?;
        Some(change.clone()?.at(position, *at))
    }

    /// The newest position.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Answers `query` from what is kept.
    pub fn read(&self, query: &ReadFeed) -> Result<FeedPage> {
        query.validate()?;
        query.check_position(self.trimmed, self.head)?;
        let take = query.limit as usize + 1;
        let fetched = if let FeedScope::Thread(id) = &query.scope {
            let key = (query.context.tenant().cloned(), id.clone());
            let positions = self.threads.get(&key);
            positions
                .into_iter()
                .flat_map(|positions| positions.range(positions.partition_point(|&p| p <= query.after)..))
                .take(take)
                .filter_map(|&position| self.event(position))
                .collect()
        } else {
            let first = self.trimmed + 1;
            let start = usize::try_from(query.after.saturating_sub(self.trimmed)).unwrap_or(usize::MAX);
            (first..)
                .zip(&self.events)
                .skip(start)
                .filter_map(|(position, (change, at))| change.as_ref().map(|change| (position, change, at)))
                .filter(|(_, change, _)| query.covers_change(change.tenant.as_ref(), &change.thread_id))
                .take(take)
                .map(|(position, change, at)| change.clone().at(position, *at))
                .collect()
        };
        Ok(query.page(fetched, self.head))
    }
}

/// What a subscription waits on: the newest position published for its scope.
type Key = (Option<TenantId>, Option<ThreadId>);

/// Wake-ups for subscribers of one backend's feed: the backend publishes the events it knows
/// are committed (its own writes, and what it learns of other processes' or instances'), and
/// each subscriber waits for its scope only (one thread, one tenant, or the store).
///
/// The feed's table (or memory) is the truth: a wake-up only says "read again", so a lost or
/// repeated one loses or repeats nothing. Cloning shares the hub.
#[derive(Clone, Default)]
pub struct FeedHub {
    inner: Arc<Mutex<Watches>>,
}

#[derive(Default)]
struct Watches {
    store: Option<watch::Sender<u64>>,
    scopes: HashMap<Key, watch::Sender<u64>>,
}

impl fmt::Debug for FeedHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeedHub").field("watched_scopes", &self.lock().scopes.len()).finish()
    }
}

impl FeedHub {
    /// A hub nobody watches yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Watches> {
        // Nothing panics under the lock; a poisoned map is still a consistent map.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether any subscriber waits: a backend skips learning of others' writes otherwise.
    pub fn is_watched(&self) -> bool {
        let watches = self.lock();
        watches.store.as_ref().is_some_and(|s| s.receiver_count() > 0) || !watches.scopes.is_empty()
    }

    /// Wakes the subscribers of these events' scopes. Never waits.
    pub fn publish<'a>(&self, events: impl IntoIterator<Item = &'a FeedEvent>) {
        let mut watches = self.lock();
        let raise = |sender: &watch::Sender<u64>, position: u64| {
            sender.send_if_modified(|seen| {
                let newer = position > *seen;
                *seen = (*seen).max(position);
                newer
            });
        };
        for event in events {
            if let Some(store) = &watches.store {
                raise(store, event.position);
            }
            if watches.scopes.is_empty() {
                continue;
            }
            for key in [(event.tenant.clone(), None), (event.tenant.clone(), Some(event.thread_id.clone()))] {
                if let Some(sender) = watches.scopes.get(&key) {
                    raise(sender, event.position);
                }
            }
        }
        watches.scopes.retain(|_, sender| sender.receiver_count() > 0);
    }

    /// A wake-up for `scope` of `tenant`.
    fn watch(&self, scope: &FeedScope, tenant: Option<TenantId>) -> watch::Receiver<u64> {
        let mut watches = self.lock();
        match scope {
            FeedScope::Store => watches.store.get_or_insert_with(|| watch::channel(0).0).subscribe(),
            FeedScope::Tenant => {
                watches.scopes.entry((tenant, None)).or_insert_with(|| watch::channel(0).0).subscribe()
            }
            FeedScope::Thread(id) => {
                let key = (tenant, Some(id.clone()));
                watches.scopes.entry(key).or_insert_with(|| watch::channel(0).0).subscribe()
            }
        }
    }
}

/// Follows a scope of the feed; see [`Pipeline::subscribe`].
///
/// Every read goes through the pipeline ([`ReadFeed`] with the subscription's context), so the
/// layers see it; between reads the subscription waits for the backend's wake-up of its scope.
#[derive(Debug)]
pub struct Subscription {
    pipeline: Pipeline,
    query: ReadFeed,
    buffered: VecDeque<FeedEvent>,
    caught_up: bool,
    wake: watch::Receiver<u64>,
    head: u64,
}

impl Subscription {
    pub(crate) fn new(pipeline: Pipeline, query: ReadFeed, hub: &FeedHub, first: FeedPage) -> Self {
        // The tenant the backend read (a layer may have set it), which events are published as.
        let wake = hub.watch(&query.scope, first.tenant.clone());
        // Read once more after the first page even when it was the last: an event committed
        // between that read and this registration woke nobody.
        Self { pipeline, query, buffered: first.events.into(), caught_up: false, wake, head: first.head }
    }

    /// The next event in scope, waiting for one.
    ///
    /// # Errors
    ///
    /// What the pipeline's [`ReadFeed`] answers: [`PersistError::FeedGap`] when this
    /// subscriber fell so far behind that retention removed events it had not read yet, or the
    /// store's error. The subscription can be asked again after an error: it reads from where
    /// it stopped.
    pub async fn next(&mut self) -> Result<FeedEvent> {
        loop {
            if let Some(event) = self.buffered.pop_front() {
                self.query.after = event.position;
                return Ok(event);
            }
            if self.caught_up {
                let after = self.query.after;
                if self.wake.wait_for(|&position| position > after).await.is_err() {
                    return Err(PersistError::Backend {
                        message: "the feed's backend was dropped".into(),
                        source: None,
                    });
                }
            }
            let page = self.pipeline.read_feed(self.query.clone()).await?;
            self.caught_up = !page.has_more;
            self.head = page.head;
            self.buffered = page.events.into();
        }
    }

    /// The position of the last event returned (or the one subscribed after): where a
    /// reconnecting client resumes.
    pub fn position(&self) -> u64 {
        self.query.after
    }

    /// The feed's head as of the last read.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// The scope followed, with its context.
    pub fn query(&self) -> &ReadFeed {
        &self.query
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(n: u64) -> Change {
        let thread = ThreadId::new("t").unwrap();
        Change::message(None, thread, PersistOp::Add, MessageId::new(format!("m{n}")).unwrap(), n, 1)
    }

    #[test]
    fn a_thread_reads_its_own_kept_events_among_others() {
        let mut feed = MemoryFeed::new(FeedRetention::forever().with_max_events(Some(5)));
        let (a, b) = (ThreadId::new("a").unwrap(), ThreadId::new("b").unwrap());
        for n in 1..=9 {
            let thread = if n % 3 == 0 { a.clone() } else { b.clone() };
            let id = MessageId::new(format!("m{n}")).unwrap();
            feed.record(Change::message(None, thread, PersistOp::Add, id, n, 1), Timestamp::now());
        }
        // Kept: 5 to 9. Thread a's are 6 and 9; 3 went with retention.
        let read = |query: ReadFeed| feed.read(&query).unwrap().events.iter().map(|e| e.position).collect::<Vec<_>>();
        assert_eq!(read(ReadFeed::thread(a.clone()).after(4)), [6, 9]);
        assert_eq!(read(ReadFeed::thread(a.clone()).after(6)), [9]);
        assert_eq!(read(ReadFeed::thread(b.clone()).after(4).with_limit(2)), [5, 7]);
        let page = feed.read(&ReadFeed::thread(b).after(4).with_limit(2)).unwrap();
        assert!(page.has_more);
        let acme = Context::new().with_tenant(TenantId::new("acme").unwrap());
        assert!(read(ReadFeed::thread(a).after(4).with_context(acme)).is_empty(), "another tenant's thread a");
    }

    #[test]
    fn the_strictest_retention_keeps_the_newest_event_and_answers_a_gap_before_it() {
        for retention in [
            FeedRetention::forever().with_max_events(Some(0)),
            FeedRetention::forever().with_max_age(Some(Duration::ZERO)),
        ] {
            let mut feed = MemoryFeed::new(retention);
            for n in 1..=3 {
                assert_eq!(feed.record(change(n), Timestamp::now()), n);
            }
            let page = feed.read(&ReadFeed::across_tenants().after(2)).unwrap();
            assert_eq!(page.events.iter().map(|e| e.position).collect::<Vec<_>>(), [3]);
            assert!(matches!(
                feed.read(&ReadFeed::across_tenants().after(1)),
                Err(PersistError::FeedGap { after: 1, trimmed: 2 })
            ));
        }
    }
}
