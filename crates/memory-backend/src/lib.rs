//! In-process backend for persist.
//!
//! [`MemoryBackend`] keeps every thread in memory behind one lock; clones are handles to the
//! same store. It keeps the whole contract of [`Backend`] (the conformance suite runs against
//! it), which makes it the default for tests, examples and ephemeral stores. Nothing survives
//! the process.
//!
//! # Example
//!
//! ```
//! use persist::{args::Add, Content, Pipeline, Role, ThreadId};
//! use persist::memory::MemoryBackend;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = MemoryBackend::new();
//! let pipeline = Pipeline::new(store.clone());
//! pipeline.add(Add::new(ThreadId::new("t1")?, Role::User, Content::text("hi"))).await?;
//! assert_eq!(store.message_count(), 1); // clones share state
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod inserts;
mod messages;
mod state;
mod summaries;
mod vectors;
mod working;

use self::messages::Record;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use hashbrown::Equivalent;

use persist_core::branch::{Branch, Branches, BranchesOf, ListBranches, unknown_message};
use persist_core::feed::{FeedHub, FeedPage, FeedRetention, MemoryFeed, ReadFeed};
use persist_core::lease::{Lease, Leased};
use persist_core::read::{GetMessage, GetThread, ListMessages, ListThreads, ThreadCursor, newest_first};
use persist_core::records::{self, ReadRecords, RecordCursor};
use persist_core::search::{Search, SearchCursor, SearchHit, SearchScope, indexed_text};
use persist_core::session::{
    Bind, BindingState, InvalidateSession, ListBindings, ResetSession, Resolution, Resolve, SessionBinding,
    StoredBinding,
};
use persist_core::summary::{Compacted, ListSummaries, ReadCompacted, Summary};
use persist_core::vector::{EmbeddingCursor, ListEmbeddings, Nearest, Neighbour, StoredEmbedding};
use persist_core::working::{ListMemories, MemoryCursor, ReadMemory, WorkingMemory};
use persist_core::{
    AgentId, ApplyNow, Backend, Capabilities, Message, Order, Page, PersistArgs, PersistError, PersistResult, Result,
    SessionId, Status, Target, TenantId, Thread, ThreadId, Timestamp,
};

use self::state::{State, ThreadKey, key};

/// The in-memory backend; see the [crate docs](crate).
///
/// Every operation runs under one lock, held only for the few microseconds of the write and
/// never across an `.await`, so each operation is atomic and per-thread `seq`s are assigned
/// in commit order.
#[derive(Clone)]
pub struct MemoryBackend {
    state: Arc<Mutex<State>>,
    hub: FeedHub,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        let feed = Some(MemoryFeed::new(FeedRetention::default().with_max_events(Some(DEFAULT_FEED_EVENTS))));
        Self { state: Arc::new(Mutex::new(State { feed, ..State::default() })), hub: FeedHub::new() }
    }
}

/// How many events the feed keeps by default (and for at most seven days).
pub const DEFAULT_FEED_EVENTS: u64 = 100_000;

impl fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryBackend").field("threads", &state.threads.len()).finish()
    }
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// This store with its change feed keeping what `retention` says (by default 100,000
    /// events, for at most seven days), or with no feed at all (`None`): writes then record
    /// nothing, and [`read_feed`](Backend::read_feed) answers `Unsupported`. Events already
    /// recorded are dropped. For a new store, before its clones are handed out.
    pub fn with_feed(self, retention: Option<FeedRetention>) -> Self {
        self.lock().feed = retention.map(MemoryFeed::new);
        self
    }

    /// This store remembering a removed message's idempotency key for `retention` after it
    /// went ([`DEFAULT_KEY_RETENTION`](persist_core::spent::DEFAULT_KEY_RETENTION), 24 hours, by
    /// default): a retry of the request that wrote it answers it, and writes nothing, until
    /// then (see [`spent`](persist_core::spent)).
    pub fn with_key_retention(self, retention: std::time::Duration) -> Self {
        self.lock().key_retention = Some(retention);
        self
    }

    /// Number of messages stored, over every thread.
    pub fn message_count(&self) -> usize {
        self.lock().threads.values().map(|t| t.messages.len()).sum()
    }

    /// Moves a binding to `to`; with `only_session`, only an active binding of that session.
    fn mark(
        &self,
        tenant: Option<&TenantId>,
        agent_id: AgentId,
        thread_id: ThreadId,
        only_session: Option<&SessionId>,
        to: BindingState,
    ) -> bool {
        let mut state = self.lock();
        let binding_key = (ThreadKey { tenant: tenant.cloned(), id: thread_id }, agent_id);
        let Some((binding, current)) = state.bindings.get_mut(&binding_key) else {
            return false;
        };
        if only_session.is_some_and(|id| *current != BindingState::Active || &binding.session_id != id) {
            return false;
        }
        *current = to;
        binding.updated_at = Timestamp::now();
        true
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code path panics while holding the lock; if one ever did, the state it left is
        // still consistent per operation (each op validates before mutating).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, args: PersistArgs) -> Result<PersistResult> {
        args.validate()?;
        let now = Timestamp::now();
        let mut state = self.lock();
        let result = state.apply(&args, now);
        let changes = std::mem::take(&mut state.changes);
        let (Ok(_), Some(feed)) = (&result, state.feed.as_mut()) else {
            return result;
        };
        let watched = self.hub.is_watched();
        let mut recorded = Vec::new();
        for change in changes {
            let position = feed.record(change, now);
            if watched {
                // The newest event is always kept: it is there to publish.
                recorded.extend(feed.event(position));
            }
        }
        if let PersistArgs::Delete(delete) = &args
            && delete.free_id
            && delete.target == Target::Thread
        {
            // A freed id leaves the feed too, but for its delete.
            feed.erase_thread(delete.context.tenant(), &delete.thread_id);
        }
        // Published once the write is visible (the lock released), as a wake-up only.
        drop(state);
        self.hub.publish(&recorded);
        result
    }
}

impl Backend for MemoryBackend {
    async fn apply(&self, args: PersistArgs) -> Result<PersistResult> {
        self.write(args)
    }

    /// Every write is applied at once (the store never waits), so a pipeline's terminal
    /// calls this and allocates nothing of its own.
    fn apply_now(&self, args: PersistArgs) -> ApplyNow {
        ApplyNow::Done(self.write(args))
    }

    async fn get(&self, query: GetMessage) -> Result<Option<Message>> {
        let state = self.lock();
        let Some(ts) = state.visible(&query.thread_id, query.tenant()) else {
            return Ok(None);
        };
        ts.messages.by_id(&query.message_id).map(|record| record.to_message(&ts.thread.id)).transpose()
    }

    async fn get_thread(&self, query: GetThread) -> Result<Option<Thread>> {
        let state = self.lock();
        Ok(state.visible(&query.thread_id, query.tenant()).map(|ts| ts.thread.clone()))
    }

    async fn list(&self, query: ListMessages) -> Result<Page<Message>> {
        query.validate()?;
        let state = self.lock();
        let Some(ts) = state.visible(&query.thread_id, query.tenant()) else {
            return match &query.branch {
                Some(Branch::EndingAt(id)) => Err(unknown_message(&query.thread_id, id)),
                _ => Ok(Page::new(Vec::new(), None, false)),
            };
        };
        let path: Option<BTreeSet<u64>> = match &query.branch {
            None => None,
            Some(branch) => {
                let leaf = match branch {
                    Branch::EndingAt(id) => {
                        Some(ts.messages.by_id(id).ok_or_else(|| unknown_message(&query.thread_id, id))?.seq)
                    }
                    _ => ts.thread.active_leaf,
                };
                Some(leaf.map(|leaf| ts.messages.tree().path(leaf).into_iter().collect()).unwrap_or_default())
            }
        };
        let lower = query.after.map_or(0, |after| after.saturating_add(1));
        let upper = query.before.unwrap_or(u64::MAX);
        if lower >= upper {
            return Ok(Page::new(Vec::new(), None, false));
        }
        let range = ts.messages.range(lower, upper).iter();
        let on_path = |r: &Record| path.as_ref().is_none_or(|path| path.contains(&r.seq));
        // A role is built only for a custom one (an `Arc` cloned), and only with a filter.
        let wanted = |r: &&Record| {
            (query.include_reserved || r.status != Status::Reserved)
                && on_path(r)
                && (query.roles.is_empty() || query.admits_role(&r.role()))
        };
        let take = query.fetch_limit() as usize;
        let message = |r: &Record| r.to_message(&ts.thread.id);
        let fetched: Vec<Message> = match query.order {
            Order::Asc => range.filter(wanted).take(take).map(message).collect::<Result<_>>()?,
            Order::Desc => range.rev().filter(wanted).take(take).map(message).collect::<Result<_>>()?,
        };
        Ok(query.page(fetched))
    }

    async fn threads(&self, query: ListThreads) -> Result<Page<Thread, ThreadCursor>> {
        query.validate()?;
        let state = self.lock();
        let mut threads: Vec<&Thread> = state
            .threads
            .values()
            .map(|ts| &ts.thread)
            .filter(|t| !t.is_deleted())
            .filter(|t| query.across_tenants || t.tenant.as_ref() == query.tenant())
            .filter(|t| t.metadata.contains(&query.filter))
            .filter(|t| query.cursor.as_ref().is_none_or(|c| c.precedes(t)))
            .collect();
        threads.sort_unstable_by(|a, b| newest_first(a, b));
        Ok(query.page(threads.into_iter().take(query.fetch_limit() as usize).cloned().collect()))
    }

    async fn search(&self, query: Search) -> Result<Page<SearchHit, SearchCursor>> {
        let parsed = query.query()?;
        let state = self.lock();
        let threads: Vec<&state::ThreadState> = match &query.scope {
            SearchScope::Thread(thread) => state.visible(thread, query.tenant()).into_iter().collect(),
            SearchScope::AcrossTenants => state.threads.values().collect(),
            _ => state.threads.values().filter(|ts| ts.thread.tenant.as_ref() == query.tenant()).collect(),
        };
        let mut found = Vec::new();
        for ts in threads {
            let thread = &ts.thread;
            if thread.is_deleted() || !query.filter.admits_thread(&thread.metadata) {
                continue;
            }
            for record in ts.messages.iter() {
                if record.status == Status::Reserved {
                    continue;
                }
                let message = record.to_message(&thread.id)?;
                if query.admits(thread.tenant.as_ref(), &message)
                    && indexed_text(&message.content).is_some_and(|text| parsed.matches(&text))
                {
                    found.push((thread.tenant.clone(), message));
                }
            }
        }
        found.sort_unstable_by(persist_core::search::newest_first);
        found.truncate(query.fetch_limit() as usize);
        query.page(found)
    }

    async fn nearest(&self, query: Nearest) -> Result<Vec<Neighbour>> {
        self.lock().nearest(&query)
    }

    async fn embeddings(&self, query: ListEmbeddings) -> Result<Page<StoredEmbedding, EmbeddingCursor>> {
        self.lock().embeddings(&query)
    }

    async fn read_memory(&self, query: ReadMemory) -> Result<Option<WorkingMemory>> {
        Ok(self.lock().read_memory(&query))
    }

    async fn memories(&self, query: ListMemories) -> Result<Page<WorkingMemory, MemoryCursor>> {
        self.lock().memories(&query)
    }

    async fn records(&self, query: ReadRecords) -> Result<Page<records::Record, RecordCursor>> {
        query.validate()?;
        let now = Timestamp::now();
        let tenant = persist_core::raw::tenant_key(query.tenant()).to_owned();
        let state = self.lock();
        let found = state
            .records
            .iter()
            .filter(|((t, space, key), record)| *t == tenant && query.admits(space, key, record.expires_at, now));
        Ok(query.page(found.map(|(_, record)| record.clone()).collect()))
    }

    async fn branches(&self, query: ListBranches) -> Result<Branches> {
        let state = self.lock();
        let Some(ts) = state.visible(&query.thread_id, query.tenant()) else {
            return match query.message_id() {
                Some(id) => Err(unknown_message(&query.thread_id, id)),
                None => Ok(Branches::default()),
            };
        };
        let tree = ts.messages.tree();
        let seqs = match &query.of {
            BranchesOf::Siblings(id) => {
                let record = ts.messages.by_id(id).ok_or_else(|| unknown_message(&query.thread_id, id))?;
                tree.children(record.parent())
            }
            _ => tree.leaves(),
        };
        let path: BTreeSet<u64> =
            ts.thread.active_leaf.map(|leaf| tree.path(leaf)).unwrap_or_default().into_iter().collect();
        let items = seqs
            .into_iter()
            .filter_map(|seq| ts.messages.get(seq))
            .map(|r| r.to_message(&ts.thread.id))
            .collect::<Result<Vec<_>>>()?;
        Ok(Branches::on_path(items, &path))
    }

    fn capabilities(&self) -> Capabilities {
        // Clones are handles on the same state, so "a second handle" races for real.
        let feed = self.lock().feed.is_some();
        Capabilities::new()
            .with_shared_storage(true)
            .with_sessions(true)
            .with_restore(true)
            .with_feed(feed)
            .with_branches(true)
            .with_summaries(true)
            .with_search(true)
            .with_vectors(true)
            .with_working_memory(true)
            .with_records(true)
    }

    async fn summaries(&self, query: ListSummaries) -> Result<Page<Summary>> {
        query.validate()?;
        let take = query.limit as usize + 1;
        let found = self.lock().summaries(&query.thread_id, query.tenant(), query.after, take);
        Ok(query.page(found))
    }

    async fn compacted(&self, query: ReadCompacted) -> Result<Compacted> {
        self.lock().compacted(&query)
    }

    async fn lease(&self, lease: Lease) -> Result<Option<Leased>> {
        lease.validate()?;
        Ok(self.lock().lease(&lease, Timestamp::now()))
    }

    async fn read_feed(&self, query: ReadFeed) -> Result<FeedPage> {
        match &self.lock().feed {
            Some(feed) => feed.read(&query),
            None => Err(PersistError::Unsupported { what: "a change feed on this store (turned off)".into() }),
        }
    }

    fn feed_hub(&self) -> Option<FeedHub> {
        self.lock().feed.as_ref().map(|_| self.hub.clone())
    }

    async fn bind(&self, bind: Bind) -> Result<SessionBinding> {
        bind.validate()?;
        let now = Timestamp::now();
        let mut state = self.lock();
        let tenant = bind.context.tenant();
        if state.threads.get(&key(tenant, &bind.thread_id)).is_some_and(|ts| ts.thread.is_deleted()) {
            return Err(PersistError::ThreadDeleted { thread_id: bind.thread_id });
        }
        let key = (ThreadKey::new(tenant, &bind.thread_id), bind.agent_id.clone());
        let created_at = state.bindings.get(&key).map_or(now, |(b, _)| b.created_at);
        let binding = SessionBinding {
            agent_id: bind.agent_id,
            thread_id: bind.thread_id,
            session_id: bind.session_id,
            provider: bind.provider,
            runtime_id: bind.runtime_id,
            work_dir: bind.work_dir,
            created_at,
            updated_at: now,
        };
        state.bindings.insert(key, (binding.clone(), BindingState::Active));
        Ok(binding)
    }

    async fn resolve(&self, query: Resolve) -> Result<Resolution> {
        let binding_key = (ThreadKey::new(query.context.tenant(), &query.thread_id), query.agent_id.clone());
        let stored = self.lock().bindings.get(&binding_key).cloned();
        Ok(Resolution::decide(stored, &query))
    }

    async fn reset_session(&self, request: ResetSession) -> Result<bool> {
        let ResetSession { agent_id, thread_id, context, .. } = request;
        Ok(self.mark(context.tenant(), agent_id, thread_id, None, BindingState::Reset))
    }

    async fn invalidate_session(&self, request: InvalidateSession) -> Result<bool> {
        let InvalidateSession { agent_id, thread_id, session_id, context, .. } = request;
        Ok(self.mark(context.tenant(), agent_id, thread_id, Some(&session_id), BindingState::Invalidated))
    }

    async fn bindings(&self, query: ListBindings) -> Result<Vec<StoredBinding>> {
        let thread = key(query.context.tenant(), &query.thread_id);
        let state = self.lock();
        let mut found: Vec<StoredBinding> = state
            .bindings
            .iter()
            .filter(|((bound, _), _)| thread.equivalent(bound))
            .map(|(_, (binding, bound))| StoredBinding::new(binding.clone(), *bound))
            .collect();
        found.sort_unstable_by(|a, b| a.binding.agent_id.as_str().cmp(b.binding.agent_id.as_str()));
        Ok(found)
    }
}
