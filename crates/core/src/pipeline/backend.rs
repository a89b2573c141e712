//! The [`Backend`] trait: what a store implements, and [`Capabilities`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use super::capabilities::Capabilities;
use crate::args::PersistArgs;
use crate::branch::{Branches, ListBranches};
use crate::feed::{FeedHub, FeedPage, ReadFeed};
use crate::lease::{Lease, Leased};
use crate::model::Status;
use crate::model::error::{PersistError, Result};
use crate::model::id::ThreadId;
use crate::model::{Message, Thread};
use crate::read::{FindStranded, GetMessage, GetThread, ListMessages, ListThreads, Page, Stranded, ThreadCursor};
use crate::records::{ReadRecords, Record, RecordCursor};
use crate::request::result::PersistResult;
use crate::search::{Search, SearchCursor, SearchHit};
use crate::session::{
    Bind, InvalidateSession, ListBindings, ResetSession, Resolution, Resolve, SessionBinding, StoredBinding,
};
use crate::summary::{Compacted, ListSummaries, ReadCompacted, Summary};
use crate::vector::{EmbeddingCursor, ListEmbeddings, Nearest, Neighbour, StoredEmbedding};
use crate::working::{ListMemories, MemoryCursor, ReadMemory, WorkingMemory};

/// What [`Backend::apply_now`] did with a write.
#[derive(Debug)]
#[must_use = "a write applied at once answers here; a write handed back is not applied yet"]
pub enum ApplyNow {
    /// Applied (or refused) without waiting: the answer [`Backend::apply`] would have given.
    Done(Result<PersistResult>),
    /// Not applied: this write needs to wait, so it goes to [`Backend::apply`] as it came.
    Wait(PersistArgs),
}

/// A store of threads and messages.
///
/// A backend author implements plain async methods; the [`Terminal`](crate::Terminal) adapts
/// the backend into a tower `Service`, so readiness (`poll_ready`) is never the backend's
/// concern. Writes come in as [`PersistArgs`] and must keep the contract below; the
/// `persist-conformance` crate checks every rule.
///
/// # Behavior
///
/// A thread's identity is `(tenant, thread_id)`, the tenant being the request context's
/// ([`Context::tenant`](crate::Context::tenant), `None` a tenant of its own: the threads
/// without one). Every row a backend keeps (threads, messages, idempotency keys, session
/// bindings) is keyed by it, so two tenants each have their own thread `general`, and nothing
/// of one tenant's thread reaches, refuses or answers a request of another: an id another
/// tenant uses answers exactly as an unused id does.
///
/// [`apply`](Self::apply) performs one write **atomically**: entirely or not at all. Per
/// operation:
///
/// - **add / reserve**: call [`PersistArgs::validate`] first. Create the thread
///   `(tenant, thread_id)` if absent. Refuse a tombstoned thread with `ThreadDeleted`. If the idempotency key is already used in the thread,
///   return that message with `deduplicated: true`; if the explicit id is taken, return it
///   deduplicated when the payload is identical (role, metadata, idempotency key, and for `add`
///   content and status `Complete`), else fail with `AlreadyExists`. Otherwise assign
///   `seq = last_seq + 1` inside the write, `version = 1`, status `Complete` (add) or
///   `Reserved` with content `[]` (reserve), and update the thread's `last_seq`,
///   `message_count` and `updated_at` in the same transaction.
/// - **update_content**: the message is looked up by `(thread, id)`: a missing one, or one of
///   another thread, is `NotFound`, never a write. Check `expected_version`
///   (`VersionConflict { expected, actual }`), then refuse an update the stored status does not
///   take (a partial update of a message no longer `Reserved`) with `MessageComplete`
///   ([`UpdateContent::status_conflict`](crate::args::UpdateContent::status_conflict)), replace
///   the content (an append: joined to the stored one, [`UpdateContent::resolved`](crate::args::UpdateContent::resolved)),
///   set the status to [`UpdateContent::status_after`](crate::args::UpdateContent::status_after)
///   when it has one, bump `version`, touch `updated_at` of message and thread.
/// - **update**: merge the metadata patch atomically (null removes a key), set role (message)
///   or title (thread), bump the target's `version`, touch `updated_at`. Unknown target:
///   `NotFound`. `expected_version` compares the target's version.
/// - **delete**: remove the message (or every message of the thread and mark the thread
///   deleted), adjust `message_count`, and answer every id removed in `seq` order. What is
///   already gone answers an empty list. `expected_version` compares the target's version
///   when the target exists.
/// - **branches** (with [`Capabilities::branches`]; see [`branch`](crate::branch)): an `add`,
///   `reserve` or turn is written after its [`Parent`](crate::branch::Parent) (by default the
///   thread's `active_leaf`; a named message the thread lacks is `NotFound`, nothing written) and
///   becomes the active leaf; a thread `update` with a switch moves the active leaf (and the
///   version); deleting a message gives its children its parent (unless it was the thread's
///   oldest: they keep it, as history) and an active leaf at it its parent (the last message
///   when that is not a message of the thread); a thread delete leaves no active leaf; a restore keeps each parent, refuses one that
///   is not an earlier message of the thread, and sets the thread's active leaf as
///   [`merged_thread`](crate::restore::merged_thread) says.
/// - **summarize** (with [`Capabilities::summaries`]; see [`summary`](crate::summary)):
///   [`Summarize::validate`](crate::summary::Summarize::validate); the message at
///   `through_seq` must be the thread's or a seq before its oldest message (else
///   `InvalidInput`, nothing written: an absent thread is not created), and no message of the
///   branch ending there from `from_seq` on `Reserved`; a summary ending at that seq already
///   answers [`Summarize::against_stored`](crate::summary::Summarize::against_stored). A
///   truncation removes the summaries ending after its cut, a thread delete all of the
///   thread's; a [`Delete::covered`](crate::args::Delete::covered) removes every message up to
///   the latest summary of the active branch (its active leaf kept) and the older summaries,
///   and leaves each remaining message's parent as it was, so the branch still reads the
///   summary.
/// - Every write to a tombstoned thread except `delete` fails with `ThreadDeleted`.
///
/// Reads never fail for a missing thread: they answer `None` or an empty page. Listing
/// threads and finding stranded reservations reach the context's tenant's threads, or every
/// tenant's when the request says [`across_tenants`](ListThreads::across_tenants).
///
/// Session bindings ([`bind`](Self::bind), [`resolve`](Self::resolve),
/// [`reset_session`](Self::reset_session), [`invalidate_session`](Self::invalidate_session))
/// are optional: the defaults answer `Unsupported`; a backend that implements them declares
/// [`Capabilities::sessions`]. Deleting a thread removes its bindings in the same write.
///
/// # Example
///
/// ```
/// use persist::{args::Add, Backend, Content, PersistArgs, Role, ThreadId};
/// use persist::memory::MemoryBackend;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let backend = MemoryBackend::new();
/// let add = Add::new(ThreadId::new("t1")?, Role::User, Content::text("hi"));
/// let result = backend.apply(PersistArgs::from(add)).await?;
/// assert_eq!(result.message().unwrap().seq, 1);
/// # Ok::<_, persist::PersistError>(())
/// # }).unwrap();
/// ```
pub trait Backend: Send + Sync + 'static {
    /// Applies one write atomically. See the trait's `# Behavior`.
    fn apply(&self, args: PersistArgs) -> impl Future<Output = Result<PersistResult>> + Send;

    /// Applies one write **without waiting**, if this backend can: a store whose writes never
    /// wait for I/O or an async lock (an in-memory map behind a `std` mutex) answers
    /// [`ApplyNow::Done`] with exactly what [`apply`](Self::apply) would have answered;
    /// anything else hands the write back untouched with [`ApplyNow::Wait`].
    ///
    /// The [`Terminal`](crate::Terminal) asks this first, when its future is first polled
    /// (never earlier: a write happens when its future is polled, on every backend), and calls
    /// `apply` only for a write handed back. That is what lets a pipeline over a store that
    /// answers at once run with no allocation of its own under the layers: `apply`'s future
    /// cannot be named, so the terminal boxes it. The default hands every write back, which
    /// is right for any backend that awaits something.
    ///
    /// # Example
    ///
    /// ```
    /// use persist::{args::Add, ApplyNow, Backend, Content, PersistArgs, Role, ThreadId};
    /// use persist::memory::MemoryBackend;
    ///
    /// let add = Add::new(ThreadId::new("t1")?, Role::User, Content::text("hi"));
    /// match MemoryBackend::new().apply_now(PersistArgs::from(add)) {
    ///     ApplyNow::Done(result) => assert_eq!(result?.message().unwrap().seq, 1),
    ///     ApplyNow::Wait(_) => unreachable!("the memory backend never waits"),
    /// }
    /// # Ok::<_, persist::PersistError>(())
    /// ```
    fn apply_now(&self, args: PersistArgs) -> ApplyNow {
        ApplyNow::Wait(args)
    }

    /// One message by `(tenant, thread, id)`; `None` when absent.
    fn get(&self, query: GetMessage) -> impl Future<Output = Result<Option<Message>>> + Send;

    /// One thread by `(tenant, id)`, tombstones included; `None` when absent.
    fn get_thread(&self, query: GetThread) -> impl Future<Output = Result<Option<Thread>>> + Send;

    /// A page of a thread's messages by `seq`; see [`ListMessages`]. An absent thread gives
    /// an empty page.
    fn list(&self, query: ListMessages) -> impl Future<Output = Result<Page<Message>>> + Send;

    /// A page of live threads, most recently updated first (ties by id, then tenant,
    /// descending, bytewise); see [`ListThreads`].
    fn threads(&self, query: ListThreads) -> impl Future<Output = Result<Page<Thread, ThreadCursor>>> + Send;

    /// What this backend supports beyond the required contract.
    fn capabilities(&self) -> Capabilities;

    /// The working memory document of the request's tenant and resource; `None` when it was
    /// never written. A backend that keeps them declares [`Capabilities::working_memory`] and
    /// answers [`WriteMemory`](crate::working::WriteMemory) in [`apply`](Self::apply),
    /// applying [`WriteMemory::apply`](crate::working::WriteMemory::apply) to the document as it
    /// holds it inside the write (so concurrent patches are never lost); the default answers
    /// `Unsupported`.
    fn read_memory(&self, query: ReadMemory) -> impl Future<Output = Result<Option<WorkingMemory>>> + Send {
        let _ = query;
        async { Err(PersistError::Unsupported { what: "working memory on this backend".into() }) }
    }

    /// A page of working memory documents, by tenant then resource (see [`ListMemories`]). The
    /// default answers `Unsupported`.
    fn memories(&self, query: ListMemories) -> impl Future<Output = Result<Page<WorkingMemory, MemoryCursor>>> + Send {
        let _ = query;
        async { Err(PersistError::Unsupported { what: "working memory on this backend".into() }) }
    }

    /// A page of the request's tenant's records, by key then space, expired ones never (see
    /// [`ReadRecords`]). A backend that keeps them declares [`Capabilities::records`] and
    /// answers [`WriteRecords`](crate::records::WriteRecords) in [`apply`](Self::apply), every
    /// change in one transaction; the default answers `Unsupported`.
    fn records(&self, query: ReadRecords) -> impl Future<Output = Result<Page<Record, RecordCursor>>> + Send {
        let _ = query;
        async { Err(PersistError::Unsupported { what: "records on this backend".into() }) }
    }

    /// The messages whose embeddings are nearest a [`Nearest`]'s query, most similar first (see
    /// [`vector`](crate::vector) for the rules every backend keeps). A backend that stores
    /// embeddings declares [`Capabilities::vectors`] and answers
    /// [`Embed`](crate::vector::Embed) in [`apply`](Self::apply); the default answers
    /// `Unsupported`.
    ///
    /// # Behavior
    ///
    /// `InvalidInput` per [`Nearest::validate`], for a query of another length than its model's
    /// vectors in the tenant ([`vector::dimensions_mismatch`](crate::vector::dimensions_mismatch)),
    /// and (on the field `model`) for a model no vector of the tenant uses while others do
    /// ([`vector::unknown_model`](crate::vector::unknown_model)). Compares the query's unit
    /// vector with every stored vector of its model in scope (the context's tenant; one thread
    /// with [`Nearest::thread_id`]; threads whose metadata contains the thread filter), of
    /// messages passing [`Nearest::admits`] in live threads, by
    /// [`vector::similarity`](crate::vector::similarity), and answers through
    /// [`Nearest::answer`].
    fn nearest(&self, query: Nearest) -> impl Future<Output = Result<Vec<Neighbour>>> + Send {
        let _ = query;
        async { Err(PersistError::Unsupported { what: "embeddings and nearest reads on this backend".into() }) }
    }

    /// A page of the vectors stored for a thread's messages, by the message's seq then the model
    /// (see [`ListEmbeddings`]). A backend that declares [`Capabilities::vectors`] answers it;
    /// the default answers `Unsupported`.
    ///
    /// # Behavior
    ///
    /// `InvalidInput` per [`ListEmbeddings::validate`]. Answers, through
    /// [`ListEmbeddings::page`], the vectors (as stored: unit vectors) of the messages of the
    /// thread of the context's tenant that [`ListEmbeddings::admits`]; none for a thread that
    /// does not exist there or is deleted.
    fn embeddings(
        &self,
        query: ListEmbeddings,
    ) -> impl Future<Output = Result<Page<StoredEmbedding, EmbeddingCursor>>> + Send {
        let _ = query;
        async { Err(PersistError::Unsupported { what: "embeddings on this backend".into() }) }
    }

    /// A page of the messages whose text matches a [`Search`], newest first (see
    /// [`search`](crate::search) for the rules every backend keeps). A backend that searches
    /// declares [`Capabilities::search`]; the default answers `Unsupported`.
    ///
    /// # Behavior
    ///
    /// `InvalidInput` per [`Search::query`]. Matches the context's tenant's messages (one
    /// thread's, with [`SearchScope::Thread`](crate::search::SearchScope::Thread); every
    /// tenant's [across tenants](crate::search::SearchScope::AcrossTenants)), complete or
    /// interrupted, of live threads, passing [`Search::admits`] and the thread filter; answers
    /// them through [`Search::page`] in the order of [`search::newest_first`](crate::search::newest_first).
    fn search(&self, query: Search) -> impl Future<Output = Result<Page<SearchHit, SearchCursor>>> + Send {
        let _ = query;
        async { Err(PersistError::Unsupported { what: "search on this backend".into() }) }
    }

    /// Reservations still `Reserved` with no write since the cutoff (`updated_at` before
    /// [`FindStranded::inactive_since`]), least recently active first (ties in any order), of
    /// the context's tenant's threads or, [`across_tenants`](FindStranded::across_tenants),
    /// of every thread, each with its thread's tenant. A reservation whose content is being
    /// streamed is active.
    ///
    /// The default scans the threads through [`threads`](Self::threads) and
    /// [`list`](Self::list); backends with an index answer it directly.
    fn stranded(&self, query: FindStranded) -> impl Future<Output = Result<Vec<Stranded>>> + Send {
        async move {
            query.validate()?;
            let mut found = Vec::new();
            let mut threads = ListThreads::new()
                .with_limit(crate::read::MAX_PAGE_LIMIT)
                .across_tenants(query.across_tenants)
                .with_context(query.context.clone());
            loop {
                let page = self.threads(threads.clone()).await?;
                for thread in &page.items {
                    let context = query.context.renewed().for_tenant(thread.tenant.clone());
                    let mut messages = ListMessages::new(thread.id.clone()).include_reserved(true);
                    messages = messages.with_limit(crate::read::MAX_PAGE_LIMIT).with_context(context);
                    loop {
                        let listed = self.list(messages.clone()).await?;
                        found.extend(
                            listed
                                .items
                                .iter()
                                .filter(|m| m.status == Status::Reserved && m.updated_at < query.inactive_since)
                                .map(|m| Stranded::new(thread.tenant.clone(), m.clone())),
                        );
                        match messages.next_page(&listed) {
                            Some(next) => messages = next,
                            None => break,
                        }
                    }
                }
                if !page.has_more {
                    break;
                }
                threads = threads.with_cursor(page.next_cursor);
            }
            found.sort_by_key(|s| s.message.updated_at);
            found.truncate(query.limit as usize);
            Ok(found)
        }
    }

    /// Upserts the binding of (agent, thread): the first bind sets `created_at`, later ones keep
    /// it and replace every other field at once (never a mix of two binds), and make it
    /// resumable again after a reset or an invalidation.
    ///
    /// # Behavior
    ///
    /// `InvalidInput` per [`Bind::validate`]; `ThreadDeleted` for a deleted thread (nothing
    /// written). The thread need not exist yet. Bindings are keyed by
    /// `(tenant, agent, thread)`, the tenant being the request context's, as every session
    /// request's is.
    fn bind(&self, bind: Bind) -> impl Future<Output = Result<SessionBinding>> + Send {
        let _ = bind;
        async { Err(sessions_unsupported()) }
    }

    /// Whether (agent, thread) can resume its session; see [`Resolution::decide`].
    fn resolve(&self, query: Resolve) -> impl Future<Output = Result<Resolution>> + Send {
        let _ = query;
        async { Err(sessions_unsupported()) }
    }

    /// Marks the binding reset: the next `resolve` is `Fresh { Reset }` until a new `bind`.
    /// Answers whether there was a binding.
    fn reset_session(&self, request: ResetSession) -> impl Future<Output = Result<bool>> + Send {
        let _ = request;
        async { Err(sessions_unsupported()) }
    }

    /// Compare-and-set: marks the binding invalidated **only if** it still points at
    /// `session_id` and is active. Answers whether it did.
    fn invalidate_session(&self, request: InvalidateSession) -> impl Future<Output = Result<bool>> + Send {
        let _ = request;
        async { Err(sessions_unsupported()) }
    }

    /// The bindings of one thread of the query's tenant, every agent's in any state, ordered
    /// by agent id (bytewise); empty for a thread without any (or that does not exist).
    fn bindings(&self, query: ListBindings) -> impl Future<Output = Result<Vec<StoredBinding>>> + Send {
        let _ = query;
        async { Err(sessions_unsupported()) }
    }

    /// A message's siblings or a thread's leaves, for a backend with
    /// [`Capabilities::branches`]; see [`ListBranches`]. The default answers `Unsupported`.
    ///
    /// # Behavior
    ///
    /// Siblings are the messages with the named message's parent (the roots, for a root), it
    /// included; leaves the messages no message names as its parent. Both in `seq` order,
    /// placeholders included, with the index of the one on the thread's active branch (the
    /// path from its root to [`Thread::active_leaf`]). A sibling read of a message the thread
    /// (of the context's tenant) does not have is `NotFound`; leaves of an absent thread are
    /// empty.
    fn branches(&self, query: ListBranches) -> impl Future<Output = Result<Branches>> + Send {
        let _ = query;
        async { Err(PersistError::Unsupported { what: "branches on this backend".into() }) }
    }

    /// A page of a thread's summaries by the seq of their last message, for a backend with
    /// [`Capabilities::summaries`]; see [`ListSummaries`]. An absent thread gives an empty
    /// page. The default answers `Unsupported`.
    fn summaries(&self, query: ListSummaries) -> impl Future<Output = Result<Page<Summary>>> + Send {
        let _ = query;
        async { Err(summaries_unsupported()) }
    }

    /// A thread compacted, for a backend with [`Capabilities::summaries`]; see
    /// [`ReadCompacted`] and the [`summary`](crate::summary) module's rules. The default
    /// answers `Unsupported`.
    ///
    /// # Behavior
    ///
    /// The branch read ends at the thread's active leaf (or the message named; one the thread
    /// lacks is `NotFound`). Its summary is the one with the highest `through_seq` whose last
    /// message is on the branch ([`on_runs`](crate::summary::on_runs)); the messages are the
    /// branch's after that seq (all of the branch's without one), in seq order, placeholders only
    /// when asked. An absent thread answers nothing. Read in one snapshot: a write between its
    /// statements never shows half.
    fn compacted(&self, query: ReadCompacted) -> impl Future<Output = Result<Compacted>> + Send {
        let _ = query;
        async { Err(summaries_unsupported()) }
    }

    /// Takes, renews or gives up a lease, for a backend with [`Capabilities::summaries`]; see
    /// [`Lease`] (the rule is [`Lease::decide`], applied atomically against the stored lease,
    /// the time the backend's clock). Answers who holds it afterwards. The default answers
    /// `Unsupported`.
    fn lease(&self, lease: Lease) -> impl Future<Output = Result<Option<Leased>>> + Send {
        let _ = lease;
        async { Err(summaries_unsupported()) }
    }

    /// The change-feed events after a position, oldest first; see [`ReadFeed`].
    ///
    /// # Behavior
    ///
    /// A backend with a feed ([`Capabilities::feed`]) records, in the transaction of each
    /// write, one event per message inserted (`add` or `reserve` by its status, a restored
    /// message too), changed (`update_content` when its content or status changed, `update`
    /// otherwise) or removed (`delete`, [`Removed::Message`](crate::feed::Removed)), and one per
    /// change of a thread's version (`update`) or its deletion (`delete`,
    /// [`Removed::Thread`](crate::feed::Removed); the messages a thread delete removes have no
    /// events of their own). A write that changed nothing (a deduplicated add) has no event.
    /// Positions are store-wide, `1, 2, 3…` in commit order, never reused, and the events of a
    /// write are numbered in the order above. Reads answer `FeedGap` for a position before
    /// what retention kept, `InvalidInput` past the head; see
    /// [`ReadFeed::check_position`]. The default answers `Unsupported`.
    fn read_feed(&self, query: ReadFeed) -> impl Future<Output = Result<FeedPage>> + Send {
        let _ = query;
        async { Err(PersistError::Unsupported { what: "a change feed on this backend".into() }) }
    }

    /// The wake-ups of this handle's feed subscribers, for a backend with a feed: the backend
    /// publishes every event it knows is committed (its own, and those of other handles on the
    /// same storage that it learns of). `None` (the default) without a feed.
    fn feed_hub(&self) -> Option<FeedHub> {
        None
    }

    /// A health check: answers `Ok` when the store can serve a read now (a round trip to it),
    /// the error that keeps it from serving otherwise. For readiness probes.
    ///
    /// # Behavior
    ///
    /// Writes nothing. The default reads the thread `persist:ping` (whether it exists does not
    /// matter); backends override it with their cheapest round trip. A backend that was closed
    /// answers an error.
    fn ping(&self) -> impl Future<Output = Result<()>> + Send {
        async {
            let probe = ThreadId::new("persist:ping")?;
            self.get_thread(GetThread::new(probe)).await.map(drop)
        }
    }
}

fn summaries_unsupported() -> PersistError {
    PersistError::Unsupported { what: "summaries and leases on this backend".into() }
}

fn sessions_unsupported() -> PersistError {
    PersistError::Unsupported { what: "session bindings on this backend".into() }
}

/// `Arc`'s [`Backend`] methods of the reads: its backend's.
macro_rules! arc_reads {
    (
        $($(#[$doc:meta])* $name:ident($args:ty) -> $out:ty = $result:ident, $scope:tt $(, $b:ident($av:ident))?;)*
    ) => {
        $($(
            fn $b(&self, query: $args) -> impl Future<Output = Result<$out>> + Send {
                (**self).$b(query)
            }
        )?)*
    };
}

impl<B: Backend> Backend for Arc<B> {
    fn apply(&self, args: PersistArgs) -> impl Future<Output = Result<PersistResult>> + Send {
        (**self).apply(args)
    }

    fn apply_now(&self, args: PersistArgs) -> ApplyNow {
        (**self).apply_now(args)
    }

    calls!(arc_reads);

    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }

    fn ping(&self) -> impl Future<Output = Result<()>> + Send {
        (**self).ping()
    }

    fn read_feed(&self, query: ReadFeed) -> impl Future<Output = Result<FeedPage>> + Send {
        (**self).read_feed(query)
    }

    fn feed_hub(&self) -> Option<FeedHub> {
        (**self).feed_hub()
    }
}

/// A boxed future that can be sent between threads, as backends and layers answer.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
