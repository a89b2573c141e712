//! Tenants placed on several stores: [`Shards`], a backend over named stores ("shards") that
//! sends each request to the store of its context's tenant.
//!
//! A thread is `(tenant, thread_id)`, so a tenant is the natural unit to place: every request
//! about one thread (its writes, its reads, its session bindings, its feed) names one tenant
//! and goes to that tenant's shard. Where each tenant is lives in a **directory**, a store
//! every instance reads: the first write of a tenant records its shard there (the shard its
//! id hashes to, by rendezvous hashing over the shards' names), and every instance reads the
//! record, so instances agree on where a tenant is even when their lists of shards differ (a
//! shard added later takes new tenants, never the ones placed before). Each instance caches
//! placements and reads the directory's epoch at most once per
//! [`placement_ttl`](ShardsBuilder::placement_ttl) while it serves requests, forgetting them
//! when a move changed it.
//!
//! Requests across tenants go to every shard and their answers are merged: thread listings
//! and searches newest first with one cursor, stranded reservations least recently active
//! first; a ping succeeds when every shard (and the directory) answers. So the operations
//! composed of such requests (`PipelineExt::prune`, `PipelineExt::cleanup_stranded`) work across
//! shards unchanged. A change-feed read of one thread or one tenant goes to the tenant's shard.
//! The store-wide feed is every shard's, each numbering its own events: a position of one means
//! nothing in another, so it is not read through a pipeline (`Unsupported` with more than one
//! shard) but with [`Shards::read_store_feed`] and [`Shards::subscribe_store`], whose cursor
//! ([`ShardsCursor`]) holds each shard's position.
//!
//! The directory's records are threads of a tenant of their own ([`DIRECTORY_TENANT`]), in the
//! store given as the directory: best a store of its own (a small one: a record per tenant). One
//! of the shards will do: a request naming that tenant is refused, and listings and searches
//! across tenants leave its records out, so their pages may come out short (even empty) while
//! more follow; go on from each page's cursor, as always.
//!
//! [`Shards::move_tenant`] moves a tenant to another shard while the app runs: it copies the
//! tenant's threads, refuses the tenant's writes for a bounded time while it switches the
//! placement, then checks and erases what the old shard held; stopped anywhere, called again
//! it finishes. Until it ends, both shards hold the tenant's threads: answers across tenants
//! list each thread (search hit, stranded reservation) once, as last written. The tenant's
//! change-feed positions are the new shard's: its subscribers start again from that feed's
//! head. (`persist move-tenant` runs it from the command line.)
//!
//! # Example
//!
//! ```
//! use persist::shard::Shards;
//! use persist::{args::Add, read::ListThreads, Content, Context, Pipeline, Role, TenantId, ThreadId};
//! use persist::memory::MemoryBackend;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let directory = Pipeline::new(MemoryBackend::new());
//! let (a, b) = (Pipeline::new(MemoryBackend::new()), Pipeline::new(MemoryBackend::new()));
//! let shards = Shards::builder(directory).shard("a", a).shard("b", b).build()?;
//! let pipeline = Pipeline::new(shards.clone());
//!
//! for name in ["acme", "globex", "initech", "umbrella"] {
//!     let ctx = Context::new().with_tenant(TenantId::new(name)?);
//!     pipeline.add(Add::new(ThreadId::new("general")?, Role::User, Content::text("hi")).with_context(ctx)).await?;
//! }
//! // Each tenant on one shard, recorded in the directory; listed across shards as one store.
//! let acme = TenantId::new("acme")?;
//! let placed = shards.placement(Some(&acme)).await?;
//! assert!(placed.recorded && ["a", "b"].contains(&placed.shard.as_str()));
//! let all = pipeline.threads(ListThreads::new().across_tenants(true)).await?;
//! assert_eq!(all.items.len(), 4);
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod claim;
mod copying;
mod directory;
mod feed;
mod moving;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

pub use self::directory::{DIRECTORY_TENANT, Move, MoveState, Placement};
use self::directory::{Directory, fnv1a};
pub use self::feed::{ShardEvent, ShardsCursor, ShardsFeedPage, ShardsSubscription};
pub use self::moving::{MoveOptions, Moved};
use persist_core::PersistResult;
use persist_core::TenantId;
use persist_core::args::PersistArgs;
use persist_core::branch::{Branches, ListBranches};
use persist_core::feed::{FeedHub, FeedPage, FeedScope, ReadFeed};
use persist_core::lease::{Lease, Leased};
use persist_core::raw::merge;
use persist_core::read::{
    FindStranded, GetMessage, GetThread, ListMessages, ListThreads, Page, Stranded, ThreadCursor,
};
use persist_core::records::{ReadRecords, Record, RecordCursor};
use persist_core::search::{Search, SearchCursor, SearchHit, SearchScope};
use persist_core::session::{
    Bind, InvalidateSession, ListBindings, ResetSession, Resolution, Resolve, SessionBinding, StoredBinding,
};
use persist_core::summary::{Compacted, ListSummaries, ReadCompacted, Summary};
use persist_core::vector::{EmbeddingCursor, ListEmbeddings, Nearest, Neighbour, StoredEmbedding};
use persist_core::working::{ListMemories, MemoryCursor, ReadMemory, WorkingMemory};
use persist_core::{Backend, Capabilities, Pipeline};
use persist_core::{Message, Thread, Timestamp};
use persist_core::{PersistError, Result};

/// A backend over named stores, each tenant on one of them; see the [module docs](self).
/// Cloning shares the shards and the cache.
#[derive(Clone)]
pub struct Shards {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Vec<(String, Pipeline)>,
    directory: Directory,
    hidden: TenantId,
    capabilities: Capabilities,
}

impl fmt::Debug for Shards {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.inner.shards.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Shards").field("shards", &names).finish_non_exhaustive()
    }
}

/// Builds [`Shards`]: the directory, then each shard by name.
#[derive(Debug)]
#[must_use = "a builder does nothing until `build`"]
pub struct ShardsBuilder {
    directory: Pipeline,
    shards: Vec<(String, Pipeline)>,
    ttl: Duration,
}

impl ShardsBuilder {
    /// Adds the shard `name` (names are what the directory records: every instance must give
    /// each store the same name).
    pub fn shard(mut self, name: impl Into<String>, store: Pipeline) -> Self {
        self.shards.push((name.into(), store));
        self
    }

    /// How long an instance trusts the placements it cached before it reads the directory's
    /// epoch again (default 1 s): a move waits this long for every instance to see it.
    pub fn placement_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The shards.
    ///
    /// # Errors
    ///
    /// `InvalidInput` (`shards`) without a shard, for a name given twice, or an empty one.
    pub fn build(self) -> Result<Shards> {
        if self.shards.is_empty() {
            return Err(PersistError::invalid("shards", "names no shard"));
        }
        for (i, (name, _)) in self.shards.iter().enumerate() {
            if name.is_empty() || name.chars().any(char::is_control) {
                return Err(PersistError::invalid("shards", format!("{name:?} is not a shard name")));
            }
            if self.shards[..i].iter().any(|(other, _)| other == name) {
                return Err(PersistError::invalid("shards", format!("shard {name:?} is named twice")));
            }
        }
        let every = self.shards.iter().map(|(_, store)| store.capabilities()).reduce(Capabilities::and);
        let capabilities = every.unwrap_or_default();
        // The store-wide feed does not merge across shards (each numbers its own events): a
        // feed is declared with one shard only, though each tenant's feed is read on its shard.
        let directory = self.directory.capabilities();
        let capabilities = capabilities
            .with_durable(capabilities.durable && directory.durable)
            .with_shared_storage(capabilities.shared_storage && directory.shared_storage)
            .with_feed(capabilities.feed && self.shards.len() == 1);
        Ok(Shards {
            inner: Arc::new(Inner {
                shards: self.shards,
                directory: Directory::new(self.directory, self.ttl),
                hidden: TenantId::new(DIRECTORY_TENANT)?,
                capabilities,
            }),
        })
    }
}

impl Shards {
    /// A builder whose placement records are kept in `directory` (a store every instance
    /// reaches; one of the shards will do).
    pub fn builder(directory: Pipeline) -> ShardsBuilder {
        ShardsBuilder { directory, shards: Vec::new(), ttl: Duration::from_secs(1) }
    }

    /// The shards' names, in the builder's order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.inner.shards.iter().map(|(name, _)| name.as_str())
    }

    /// The shard named `name`.
    pub fn shard(&self, name: &str) -> Option<&Pipeline> {
        self.inner.shards.iter().find(|(shard, _)| shard == name).map(|(_, store)| store)
    }

    /// The shard a tenant without a record would be placed on: the highest of FNV-1a hashes of
    /// each shard's name with the tenant's (rendezvous hashing, so a shard added moves no
    /// tenant between the others).
    pub fn hashed(&self, tenant: Option<&TenantId>) -> &str {
        let key = persist_core::raw::tenant_key(tenant);
        let score = |name: &str| fnv1a(format!("{name}\u{1f}{key}").as_bytes());
        let best = self.inner.shards.iter().max_by_key(|(name, _)| (score(name), std::cmp::Reverse(name.as_str())));
        best.map_or("", |(name, _)| name.as_str())
    }

    /// Where `tenant` is (`None`: the threads without a tenant), as this instance knows it.
    ///
    /// # Errors
    ///
    /// The directory's.
    pub async fn placement(&self, tenant: Option<&TenantId>) -> Result<Placement> {
        self.inner.directory.placement(tenant, self.hashed(tenant)).await
    }

    /// The store of `tenant`'s shard, for a read.
    async fn reading(&self, tenant: Option<&TenantId>) -> Result<&Pipeline> {
        self.refuse_hidden(tenant)?;
        let placement = self.placement(tenant).await?;
        self.store(&placement.shard)
    }

    /// The store of `tenant`'s shard, for a write: the tenant placed first if it has no record
    /// and `place` (a write that needs something there, such as a delete, does not place it),
    /// refused while a switch of the tenant runs.
    async fn writing(&self, tenant: Option<&TenantId>, place: bool) -> Result<&Pipeline> {
        self.refuse_hidden(tenant)?;
        let mut placement = self.placement(tenant).await?;
        if placement.switching_until().is_some() {
            // The cache may be a TTL old: the switch may have ended since.
            placement = self.inner.directory.fresh(tenant, self.hashed(tenant)).await?;
            if let (Some(until), Some(moving)) = (placement.switching_until(), &placement.moving)
                && Timestamp::now() < until
            {
                let who = tenant.map_or_else(|| "the threads without a tenant".to_owned(), |t| format!("tenant {t}"));
                let left =
                    Duration::from_micros(until.as_micros().saturating_sub(Timestamp::now().as_micros()).max(0) as u64);
                return Err(PersistError::temporary(format!(
                    "{who} is moving from shard {:?} to {:?}: writes resume within {left:?}",
                    moving.from, moving.to
                )));
            }
        }
        if place && !placement.recorded {
            placement = self.inner.directory.place(tenant, &placement.shard).await?;
        }
        self.store(&placement.shard)
    }

    fn store(&self, name: &str) -> Result<&Pipeline> {
        self.shard(name).ok_or_else(|| PersistError::Backend {
            message: format!("the directory places the tenant on shard {name:?}, which this instance does not have")
                .into(),
            source: None,
        })
    }

    fn refuse_hidden(&self, tenant: Option<&TenantId>) -> Result<()> {
        if tenant == Some(&self.inner.hidden) {
            return Err(PersistError::invalid("tenant", format!("{DIRECTORY_TENANT} is the shards' directory's own")));
        }
        Ok(())
    }

    fn stores(&self) -> impl Iterator<Item = &Pipeline> {
        self.inner.shards.iter().map(|(_, store)| store)
    }
}

impl Backend for Shards {
    async fn apply(&self, args: PersistArgs) -> Result<PersistResult> {
        // A delete finds what is there: a tenant without a record has nothing to delete.
        let place = !matches!(args, PersistArgs::Delete(_) | PersistArgs::Embed(_));
        let store = self.writing(args.context().tenant(), place).await?;
        store.apply(args).await
    }

    async fn get(&self, query: GetMessage) -> Result<Option<Message>> {
        self.reading(query.context.tenant()).await?.get(query).await
    }

    async fn get_thread(&self, query: GetThread) -> Result<Option<Thread>> {
        self.reading(query.context.tenant()).await?.get_thread(query).await
    }

    async fn list(&self, query: ListMessages) -> Result<Page<Message>> {
        self.reading(query.context.tenant()).await?.list(query).await
    }

    async fn threads(&self, query: ListThreads) -> Result<Page<Thread, ThreadCursor>> {
        if !query.across_tenants {
            return self.reading(query.context.tenant()).await?.threads(query).await;
        }
        let pages = every(self.stores().map(|store| boxed(store.threads(query.clone())))).await?;
        Ok(merge::threads(&query, pages, Some(&self.inner.hidden)))
    }

    async fn search(&self, query: Search) -> Result<Page<SearchHit, SearchCursor>> {
        if query.scope != SearchScope::AcrossTenants {
            return self.reading(query.context.tenant()).await?.search(query).await;
        }
        let pages = every(self.stores().map(|store| boxed(store.search(query.clone())))).await?;
        Ok(merge::search(&query, pages, Some(&self.inner.hidden)))
    }

    async fn nearest(&self, query: Nearest) -> Result<Vec<Neighbour>> {
        self.reading(query.context.tenant()).await?.nearest(query).await
    }

    async fn embeddings(&self, query: ListEmbeddings) -> Result<Page<StoredEmbedding, EmbeddingCursor>> {
        self.reading(query.context.tenant()).await?.embeddings(query).await
    }

    async fn read_memory(&self, query: ReadMemory) -> Result<Option<WorkingMemory>> {
        self.reading(query.context.tenant()).await?.read_memory(query).await
    }

    async fn records(&self, query: ReadRecords) -> Result<Page<Record, RecordCursor>> {
        self.reading(query.context.tenant()).await?.records(query).await
    }

    async fn memories(&self, query: ListMemories) -> Result<Page<WorkingMemory, MemoryCursor>> {
        if !query.across_tenants {
            return self.reading(query.context.tenant()).await?.memories(query).await;
        }
        let pages = every(self.stores().map(|store| boxed(store.memories(query.clone())))).await?;
        let names: Vec<&str> = self.inner.shards.iter().map(|(name, _)| name.as_str()).collect();
        // A shard a tenant was moved from keeps its copy: each tenant's documents are its shard's.
        let key = |m: &WorkingMemory| (persist_core::raw::tenant_key(m.tenant.as_ref()).to_owned(), m.resource.clone());
        // A store whose page stopped short holds more after its last document: the merged page
        // ends there (a cursor past it would skip them).
        let bound = pages.iter().filter(|page| page.has_more).filter_map(|page| page.items.last().map(key)).min();
        let mut found = Vec::new();
        let mut cut = false;
        for (name, page) in names.into_iter().zip(pages) {
            for memory in page.items {
                if bound.as_ref().is_some_and(|bound| key(&memory) > *bound) {
                    cut = true;
                    continue;
                }
                let tenant = memory.tenant.as_ref();
                if tenant != Some(&self.inner.hidden) && self.placement(tenant).await?.shard == name {
                    found.push(memory);
                }
            }
        }
        let mut page = query.page(found);
        page.has_more |= cut || bound.is_some();
        if page.has_more && page.next_cursor.is_none() {
            // Every document up to the bound was another shard's copy: continue after the bound.
            page.next_cursor = bound.map(|(tenant, resource)| {
                MemoryCursor::new(persist_core::raw::tenant_from_key(&tenant).ok().flatten(), resource)
            });
        }
        Ok(page)
    }

    async fn branches(&self, query: ListBranches) -> Result<Branches> {
        self.reading(query.context.tenant()).await?.branches(query).await
    }

    async fn summaries(&self, query: ListSummaries) -> Result<Page<Summary>> {
        self.reading(query.context.tenant()).await?.summaries(query).await
    }

    async fn compacted(&self, query: ReadCompacted) -> Result<Compacted> {
        self.reading(query.context.tenant()).await?.compacted(query).await
    }

    async fn lease(&self, lease: Lease) -> Result<Option<Leased>> {
        self.writing(lease.context.tenant(), true).await?.lease(lease).await
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities
    }

    async fn stranded(&self, query: FindStranded) -> Result<Vec<Stranded>> {
        if !query.across_tenants {
            return self.reading(query.context.tenant()).await?.stranded(query).await;
        }
        let lists = every(self.stores().map(|store| boxed(store.find_stranded(query.clone())))).await?;
        Ok(merge::stranded(&query, lists, Some(&self.inner.hidden)))
    }

    async fn bind(&self, bind: Bind) -> Result<SessionBinding> {
        self.writing(bind.context.tenant(), true).await?.bind(bind).await
    }

    async fn resolve(&self, query: Resolve) -> Result<Resolution> {
        self.reading(query.context.tenant()).await?.resolve(query).await
    }

    /// Changes a binding that exists, on the tenant's shard (a tenant without a record has none).
    async fn reset_session(&self, request: ResetSession) -> Result<bool> {
        self.writing(request.context.tenant(), false).await?.reset_session(request).await
    }

    async fn invalidate_session(&self, request: InvalidateSession) -> Result<bool> {
        self.writing(request.context.tenant(), false).await?.invalidate_session(request).await
    }

    async fn bindings(&self, query: ListBindings) -> Result<Vec<StoredBinding>> {
        self.reading(query.context.tenant()).await?.bindings(query).await
    }

    async fn ping(&self) -> Result<()> {
        every(self.stores().chain([self.inner.directory.store()]).map(|store| boxed(store.ping()))).await?;
        Ok(())
    }

    async fn read_feed(&self, query: ReadFeed) -> Result<FeedPage> {
        if query.scope == FeedScope::AcrossTenants {
            if let [(_, store)] = &self.inner.shards[..] {
                return store.read_feed(query).await;
            }
            return Err(PersistError::Unsupported {
                what: "the store-wide change feed across shards through a pipeline (each numbers its own events): \
                       read it with Shards::read_store_feed or Shards::subscribe_store"
                    .into(),
            });
        }
        self.reading(query.context.tenant()).await?.read_feed(query).await
    }

    /// None: each page names the hub of the shard that read it.
    fn feed_hub(&self) -> Option<FeedHub> {
        None
    }
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

fn boxed<'a, T>(future: impl Future<Output = Result<T>> + Send + 'a) -> Boxed<'a, T> {
    Box::pin(future)
}

/// Every future's answer, in order, the shards asked at once; the first error ends it.
async fn every<'a, T>(futures: impl Iterator<Item = Boxed<'a, T>>) -> Result<Vec<T>> {
    let mut running: Vec<Option<Boxed<'a, T>>> = futures.map(Some).collect();
    let mut answers: Vec<Option<T>> = running.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (future, answer) in running.iter_mut().zip(answers.iter_mut()) {
            let Some(running) = future else { continue };
            match running.as_mut().poll(cx) {
                Poll::Ready(Ok(value)) => {
                    *answer = Some(value);
                    *future = None;
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => waiting = true,
            }
        }
        if waiting { Poll::Pending } else { Poll::Ready(Ok(())) }
    })
    .await?;
    Ok(answers.into_iter().flatten().collect())
}
