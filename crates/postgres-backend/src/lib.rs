//! PostgreSQL backend for persist: many app instances sharing one database.
//!
//! Every instance opens its own pool on the same database (and schema); the contract holds
//! across all of them:
//!
//! - **Per-thread order under a row lock.** Every write locks its thread's row first (the
//!   thread upsert of `add`/`reserve` assigns `seq = last_seq + 1` in the same statement), so
//!   writers of one thread serialize and get seqs in commit order, while writers of different
//!   threads run in parallel.
//! - **One statement per write** in the happy path (CTEs, `RETURNING`, `ON CONFLICT`), so each
//!   write is atomic without an explicit transaction and costs one round trip (a group of
//!   inserts shares one, below). Deleting a
//!   thread is the exception: a short transaction that locks the thread row first, so it removes
//!   every message and binding committed before it.
//! - **Group commit of inserts** (and, in a lane of their own, of message updates: content
//!   replacements and metadata or role patches, one per message, threads locked in key order).
//!   At most
//!   [`max_insert_groups`](PostgresBackendBuilder::max_insert_groups) statements of adds and
//!   reserves run at once per instance; inserts arriving while they all run queue, and the next
//!   turn writes every queued insert (one per thread, threads locked in `(tenant, thread_id)`
//!   order) in
//!   one statement: one plan, one commit and one round trip for the group. Whatever a group did
//!   not write runs again alone, in queue order, which writes it or says why not, so every
//!   insert is answered as if written alone (a lost connection fails the whole group, as it
//!   would have failed each insert). A lone caller's insert runs at once, alone; a queued
//!   insert whose caller gave up before its group started is not written.
//! - **Idempotency across instances**: unique `(tenant, thread_id, idempotency_key)` and
//!   `(tenant, thread_id, message_id)` (a thread is `(tenant, thread_id)`, `tenant` `''` for the
//!   threads without one); a writer that loses a race to another instance finds the first
//!   copy and answers it `deduplicated`.
//! - **Metadata merges in SQL** (`(metadata || patch) - removed_keys`) under the row lock, so
//!   concurrent merges of different keys from different instances all survive.
//! - **Migrations** are embedded and applied on connect under sqlx's advisory lock, so
//!   instances starting together do not race.
//!
//! Temporary conditions (serialization failures, deadlocks, lock and statement time-outs, lost
//! connections, pool time-outs) are [temporary](persist_core::PersistError::is_temporary).
//!
//! # Connections
//!
//! Each instance keeps its own pool of at most
//! [`max_connections`](PostgresBackendBuilder::max_connections) server connections, **cancelled
//! operations included**. An operation takes the idle connection used last (so a lone writer
//! keeps one warm connection, even after a burst opened many) and gives it back without a
//! round trip; a connection the server dropped is closed, and the retry gets a fresh one.
//! Connections are closed after 10 minutes idle or 30 minutes open.
//!
//! An operation whose caller gave up (a time-out, an aborted request handler) may leave its
//! statement running on the server, waiting for a row lock say. Its connection keeps its slot
//! until the server is done with that statement (it is read up to the server's next
//! `ReadyForQuery`, a transaction left open is rolled back), then goes back to the pool clean;
//! if it is not back within [`statement_timeout`](PostgresBackendBuilder::statement_timeout)
//! plus 5 s, it is closed. So callers that time out never make the pool open more connections
//! than its maximum (closing them at once would: the server keeps each one's process until its
//! statement ends). Server-side waits are bounded by
//! [`lock_timeout`](PostgresBackendBuilder::lock_timeout) (default 5 s) and `statement_timeout`
//! (default 30 s), both temporary errors when they fire. Connections name themselves
//! `persist` in `pg_stat_activity` unless the URL (or `PGAPPNAME`) gives an
//! `application_name`.
//!
//! # Replicas
//!
//! With [`replica`](PostgresBackendBuilder::replica), hot standbys streaming from this
//! database answer the reads of messages, threads, branches, summaries and searches; writes,
//! session bindings, the change feed, the search for stranded reservations and pings stay on
//! the primary (a stale session binding would resume a session another instance invalidated).
//!
//! Reads never go back in time past a write they must see. Each write, once committed, reads
//! the primary's WAL position (one more round trip, only with replicas, shared by the writes
//! committed together) and records it in the handle's [`Consistency`] and the request's
//! ([`Context::consistency`]; a [`Scoped`](persist_core::Scoped) handle carries one for all its
//! calls, as do live replies and the operations composed of several requests). A read must see
//! the newer of the two (only the request's with [`Freshness::Request`]): a standby known to
//! have replayed that far answers it; otherwise it waits for one to get there, up to
//! [`replica_wait`](PostgresBackendBuilder::replica_wait), and then the primary answers. A
//! write whose position was not read (it failed, its caller gave up) makes the next read ask
//! the primary first. Across requests and instances, carry the position yourself:
//!
//! ```no_run
//! use persist::{args::Add, read::ListMessages, CommitPosition, Consistency, Content, Context, Pipeline, Role, ThreadId};
//! use persist::postgres::PostgresBackend;
//!
//! # async fn run() -> Result<(), persist::PersistError> {
//! let backend = PostgresBackend::builder("postgres://app@primary.internal/chat")
//!     .replica("postgres://app@standby-1.internal/chat")
//!     .replica("postgres://app@standby-2.internal/chat")
//!     .connect()
//!     .await?;
//! let pipeline = Pipeline::new(backend);
//! let thread = ThreadId::new("t1")?;
//!
//! // A request that writes: its consistency records where the write committed.
//! let seen = Consistency::new();
//! let ctx = Context::new().with_consistency(seen.clone());
//! pipeline.add(Add::new(thread.clone(), Role::User, Content::text("hi")).with_context(ctx)).await?;
//! let cookie = seen.position().map(|position| position.to_string()); // e.g. "0/3A1F2C8"
//!
//! // A later request, on any instance, with the cookie: its reads see that write.
//! let after: CommitPosition = cookie.as_deref().unwrap_or("0/0").parse()?;
//! let ctx = Context::new().with_consistency(Consistency::after(after));
//! let page = pipeline.list(ListMessages::new(thread).with_context(ctx)).await?;
//! assert_eq!(page.items.len(), 1);
//! # Ok(()) }
//! ```
//!
//! A standby that cannot be reached, loses a connection, does not answer within the statement
//! time-out (plus 5 s) or was promoted is left alone for a second (doubling while it keeps
//! failing, up to thirty), its reads answered by the others or the primary; a read a standby
//! cancels (a recovery conflict) or that finds its pool full is read on the primary. One
//! server per URL. [`PostgresBackend::replica_stats`] counts how reads were answered (also
//! counted as `persist_replica_reads_total{outcome}` through the `metrics` facade).
//!
//! # Poolers
//!
//! Through a pooler in **transaction mode** (PgBouncer's `pool_mode = transaction`,
//! Supabase's and Neon's poolers) a server session is this store's only for one transaction.
//! The store finds that out when connecting ([`Pooler::Detect`], the default: the pooler refuses
//! the settings persist gives each connection as startup options, or drops them) or is told
//! ([`PostgresBackendBuilder::pooler`], or `pooler=transaction` in the URL), says so
//! ([`PostgresBackend::pooler`], and a `tracing` event at connect), and then:
//!
//! - runs **each operation as one transaction** that begins with its settings (`BEGIN` and
//!   `SET LOCAL`, one round trip) and ends with `COMMIT` (a second one): an operation's own
//!   transaction is a savepoint in it, and nothing is left on the server session afterwards;
//! - keeps **no prepared statement**: each statement is parsed when it runs (one more round
//!   trip per statement), so none is looked for on a server session that never saw it;
//! - **migrates** under a transaction-level advisory lock, the whole run one transaction, and
//!   builds indexes without `CONCURRENTLY` (writes wait while one is built: migrate a large
//!   store through a direct URL, `persist migrate up`);
//! - wakes the **change feed** from a direct connection given by
//!   [`listen_url`](PostgresBackendBuilder::listen_url) (`LISTEN` through the pooler would
//!   hear nothing), or else by polling every 250 ms (this instance's own writes wake its
//!   followers at once either way).
//!
//! The only startup parameter PgBouncer must be told to ignore is sqlx's `extra_float_digits`
//! (`ignore_startup_parameters = extra_float_digits`). A pooler in session mode needs none of
//! this: it is detected as [`Pooler::None`]. Name [`Pooler::Transaction`] for a transaction
//! pooler that passes startup options on (detection cannot tell it from a direct server).
//!
//! # pgvector
//!
//! Without it, [`nearest`](persist_core::Backend::nearest) scans the scope's vectors in the
//! server and scores them here: exact, and linear in what the tenant holds. With
//! [`pgvector_hnsw`](PostgresBackendBuilder::pgvector_hnsw)`([384])`, an **approximate** query
//! over 384-dimensional vectors walks pgvector's HNSW index instead: of the
//! [`pgvector_ef_search`](PostgresBackendBuilder::pgvector_ef_search) candidates the walk keeps,
//! the nearest `limit` in scope (tenant, thread, filters) are scored exactly here, so the hits
//! carry exact scores in exact order, but one of the exact answer's may be missing. A scope the
//! walk runs out of (fewer than `limit` found) is scanned. The index is over the vectors
//! the store already holds (an expression index: nothing is stored twice), kept by every write
//! in its transaction, at a cost to each write of a vector; `docs/backends.md` gives the
//! measured recall and costs.
//!
//! # Example
//!
//! ```no_run
//! use persist::{args::Add, Content, Pipeline, Role, ThreadId};
//! use persist::postgres::PostgresBackend;
//!
//! # async fn run() -> Result<(), persist::PersistError> {
//! let backend = PostgresBackend::builder("postgres://app@db.internal/chat")
//!     .schema("persist")
//!     .max_connections(20)
//!     .connect()
//!     .await?;
//! let pipeline = Pipeline::new(backend);
//! pipeline.add(Add::new(ThreadId::new("t1")?, Role::User, Content::text("hi"))).await?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod activity;
mod branches;
mod builder;
mod ddl;
mod error;
mod feed;
mod feed_followers;
mod feed_trim;
mod group;
mod migrations;
mod pgvector;
mod pool;
mod pooler;
mod reads;
mod records;
mod replicas;
mod rows;
mod schema;
mod search;
mod spent;
mod statistics;
mod summaries;
mod vectors;
mod working;
mod write;

use std::fmt;
use std::sync::Arc;

use persist_core::branch::{Branches, ListBranches};
use persist_core::feed::{FeedHub, FeedPage, ReadFeed};
use persist_core::lease::{Lease, Leased};
use persist_core::read::{FindStranded, GetMessage, GetThread, ListMessages, ListThreads, Stranded, ThreadCursor};
use persist_core::records::{ReadRecords, Record, RecordCursor};
use persist_core::search::{Search, SearchCursor, SearchHit};
use persist_core::session::{
    Bind, BindingState, InvalidateSession, ListBindings, ResetSession, Resolution, Resolve, SessionBinding,
    StoredBinding,
};
use persist_core::summary::{Compacted, ListSummaries, ReadCompacted, Summary};
use persist_core::vector::{EmbeddingCursor, ListEmbeddings, Nearest, Neighbour, StoredEmbedding};
use persist_core::working::{ListMemories, MemoryCursor, ReadMemory, WorkingMemory};
use persist_core::{
    Backend, Capabilities, Consistency, Context, Message, Page, PersistArgs, PersistError, PersistResult, Result,
    Thread,
};
use sqlx::{Connection, PgConnection};

use crate::error::map_sqlx;
use crate::group::Inserts;
use crate::pool::{Begin, Pool};

pub use crate::builder::PostgresBackendBuilder;
pub use crate::pooler::Pooler;
pub use crate::replicas::{Freshness, ReplicaStats};

/// The PostgreSQL backend; see the [crate docs](crate). Cloning shares the pool.
#[derive(Clone)]
pub struct PostgresBackend {
    /// The kind of pooler in front, as found or configured when connecting.
    pooler: Pooler,
    pool: Pool,
    schema: String,
    inserts: Arc<Inserts>,
    /// The content updates waiting to be written together (see `group`).
    updates: Arc<Inserts>,
    /// The change feed's notifier, retention and listener; `None` with the feed off.
    feed: Option<Arc<feed::Feed>>,
    /// The inserts counted until the tables' first statistics are checked.
    statistics: Arc<statistics::FirstStatistics>,
    /// Connected with the search index on.
    search: bool,
    /// The search statement, with the schema's text search configuration written out.
    search_sql: Arc<str>,
    /// The hot standbys answering reads; `None` without any.
    replicas: Option<Arc<replicas::Replicas>>,
    /// pgvector's index, walked by approximate `nearest`; `None` unless asked for.
    pgvector: Option<Arc<pgvector::Walk>>,
}

impl fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("schema", &self.schema)
            .field("pooler", &self.pooler)
            .finish_non_exhaustive()
    }
}

impl PostgresBackend {
    /// A builder for the database at `url` (`postgres://user:password@host:port/database`).
    pub fn builder(url: impl Into<String>) -> PostgresBackendBuilder {
        PostgresBackendBuilder::new(url.into())
    }

    /// Connects to `url` with default settings (the schema its `schema=` names, else `public`).
    ///
    /// # Errors
    ///
    /// As [`PostgresBackendBuilder::connect`].
    pub async fn connect(url: impl Into<String>) -> Result<Self> {
        Self::builder(url).connect().await
    }

    /// The schema this backend stores in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The kind of pooler this store goes through: as configured, or as found when connecting
    /// ([`Pooler::None`] or [`Pooler::Transaction`], never [`Pooler::Detect`]). See
    /// [Poolers](crate#poolers).
    pub fn pooler(&self) -> Pooler {
        self.pooler
    }

    /// Closes the pool (and the standbys'), waiting for connections in use to be returned,
    /// and stops the change feed's listener (closing its connection).
    pub async fn close(&self) {
        if let Some(feed) = &self.feed {
            feed.stop();
        }
        self.pool.close().await;
        if let Some(replicas) = &self.replicas {
            replicas.close().await;
        }
    }

    /// How this handle's reads were answered since it connected: by a standby at once or after
    /// waiting, or by the primary because none had replayed in time or none could answer
    /// (all zero without [replicas](PostgresBackendBuilder::replica)).
    pub fn replica_stats(&self) -> ReplicaStats {
        self.replicas.as_ref().map(|replicas| replicas.stats()).unwrap_or_default()
    }

    /// Applies the change feed's retention now (it also runs every few seconds while anyone
    /// subscribes): removes the events older than its age limit or past its count, and
    /// answers the newest position removed (resuming from before it is a `FeedGap`).
    ///
    /// # Errors
    ///
    /// `Unsupported` with the feed off; the server's error otherwise.
    pub async fn trim_feed(&self) -> Result<u64> {
        match &self.feed {
            Some(feed) => feed.trim(&self.pool).await,
            None => Err(feed_off()),
        }
    }

    /// Applies a write: inserts and message updates through their group-commit lanes.
    async fn write(&self, args: PersistArgs) -> Result<PersistResult> {
        match args {
            PersistArgs::Add(_) | PersistArgs::Reserve(_) => {
                let answer = self.insert(args).await;
                if answer.is_ok() {
                    self.statistics.inserted(1, &self.pool);
                }
                answer
            }
            PersistArgs::UpdateContent(ref update) if !update.append => self.update_message(args).await,
            PersistArgs::Update(ref update) if matches!(update.target, persist_core::Target::Message(_)) => {
                self.update_message(args).await
            }
            args => self.with(async |conn| write::apply(conn, args).await).await,
        }
    }

    /// Runs `write`, recording its position for the reads that must see it (with standbys):
    /// a write that fails or whose caller gives up before its position is read leaves it
    /// unrecorded, and the next read asks the primary for its position first.
    async fn recorded<T>(&self, request: Option<&Consistency>, write: impl Future<Output = Result<T>>) -> Result<T> {
        let Some(replicas) = &self.replicas else { return write.await };
        let pending = replicas.pending();
        let answer = write.await;
        if answer.is_ok() {
            pending.committed(&self.pool, request).await;
        }
        answer
    }

    /// Runs a read that a standby may answer (see [Replicas](crate#replicas)) on a standby that
    /// has what `context` must see, or on the primary.
    async fn read<T>(
        &self,
        context: &Context,
        read: impl AsyncFnOnce(&mut PgConnection) -> Result<T> + Clone,
    ) -> Result<T> {
        self.read_as(context, Begin::ReadCommitted, read).await
    }

    /// [`read`](Self::read) in one snapshot ([`branches::in_one_snapshot`]).
    async fn read_snapshot<T>(
        &self,
        context: &Context,
        read: impl AsyncFnOnce(&mut PgConnection) -> Result<T> + Clone,
    ) -> Result<T> {
        let read = async |conn: &mut PgConnection| branches::in_one_snapshot(conn, read).await;
        self.read_as(context, Begin::Snapshot, read).await
    }

    async fn read_as<T>(
        &self,
        context: &Context,
        begin: Begin,
        read: impl AsyncFnOnce(&mut PgConnection) -> Result<T> + Clone,
    ) -> Result<T> {
        match &self.replicas {
            Some(replicas) => replicas.read(&self.pool, context, begin, read).await,
            None => {
                let mut conn = self.pool.acquire_as(begin).await?;
                let answer = read(&mut conn).await;
                conn.finish(answer).await
            }
        }
    }

    /// Runs `operation` on a connection of the pool, then gives the connection back (or
    /// closes it, if the operation lost it).
    async fn with<T>(&self, operation: impl AsyncFnOnce(&mut PgConnection) -> Result<T>) -> Result<T> {
        let mut conn = self.pool.acquire().await?;
        let answer = operation(&mut conn).await;
        conn.finish(answer).await
    }
}

fn feed_off() -> PersistError {
    PersistError::Unsupported { what: "a change feed on this handle (turned off)".into() }
}

impl Backend for PostgresBackend {
    async fn apply(&self, args: PersistArgs) -> Result<PersistResult> {
        let request = self.replicas.as_ref().and(args.context().consistency().cloned());
        let write = async {
            let answer = self.write(args).await;
            if let Some(feed) = &self.feed {
                feed.kick();
            }
            answer
        };
        self.recorded(request.as_ref(), write).await
    }

    async fn read_feed(&self, query: ReadFeed) -> Result<FeedPage> {
        let page = match &self.feed {
            Some(feed) => feed.read(&self.pool, &query).await?,
            None => return Err(feed_off()),
        };
        // The feed is read on the primary: a request that goes on to read what its events name
        // (a live reply's message) reads it from a standby that has it. Told of changes (events,
        // or a first read of a feed that holds some), it must see them.
        if let (Some(replicas), Some(request)) = (&self.replicas, query.context.consistency())
            && (!page.events.is_empty() || (query.after == 0 && page.head > 0))
        {
            replicas.seen(&self.pool, request).await?;
        }
        Ok(page)
    }

    fn feed_hub(&self) -> Option<FeedHub> {
        self.feed.as_ref().map(|feed| feed.hub.clone())
    }

    async fn get(&self, query: GetMessage) -> Result<Option<Message>> {
        self.read(&query.context, async |conn| reads::get(conn, &query).await).await
    }

    async fn get_thread(&self, query: GetThread) -> Result<Option<Thread>> {
        self.read(&query.context, async |conn| reads::get_thread(conn, &query).await).await
    }

    async fn list(&self, query: ListMessages) -> Result<Page<Message>> {
        match &query.branch {
            Some(branch) => {
                let read = async |conn: &mut PgConnection| branches::list_branch(conn, &query, branch).await;
                self.read_snapshot(&query.context, read).await
            }
            None => self.read(&query.context, async |conn| reads::list(conn, &query).await).await,
        }
    }

    async fn threads(&self, query: ListThreads) -> Result<Page<Thread, ThreadCursor>> {
        self.read(&query.context, async |conn| reads::threads(conn, &query).await).await
    }

    async fn search(&self, query: Search) -> Result<Page<SearchHit, SearchCursor>> {
        if !self.search {
            query.validate()?;
            return Err(search::search_off());
        }
        self.read(&query.context, async |conn| search::search(conn, &self.search_sql, &query).await).await
    }

    async fn nearest(&self, query: Nearest) -> Result<Vec<Neighbour>> {
        let walk = self.pgvector.as_deref();
        let read = async |conn: &mut PgConnection| vectors::nearest(conn, &query, walk).await;
        self.read_snapshot(&query.context, read).await
    }

    async fn embeddings(&self, query: ListEmbeddings) -> Result<Page<StoredEmbedding, EmbeddingCursor>> {
        self.read(&query.context, async |conn| vectors::embeddings(conn, &query).await).await
    }

    async fn read_memory(&self, query: ReadMemory) -> Result<Option<WorkingMemory>> {
        self.read(&query.context, async |conn| working::read_memory(conn, &query).await).await
    }

    async fn memories(&self, query: ListMemories) -> Result<Page<WorkingMemory, MemoryCursor>> {
        self.read(&query.context, async |conn| working::memories(conn, &query).await).await
    }

    async fn records(&self, query: ReadRecords) -> Result<Page<Record, RecordCursor>> {
        self.read(&query.context, async |conn| records::records(conn, &query).await).await
    }

    async fn branches(&self, query: ListBranches) -> Result<Branches> {
        let read = async |conn: &mut PgConnection| branches::branches(conn, &query).await;
        self.read_snapshot(&query.context, read).await
    }

    fn capabilities(&self) -> Capabilities {
        let caps = Capabilities::new().with_durable(true).with_shared_storage(true).with_sessions(true);
        let caps = caps.with_restore(true).with_feed(self.feed.is_some()).with_branches(true);
        caps.with_summaries(true)
            .with_search(self.search)
            .with_vectors(true)
            .with_working_memory(true)
            .with_records(true)
    }

    async fn summaries(&self, query: ListSummaries) -> Result<Page<Summary>> {
        self.read(&query.context, async |conn| summaries::summaries(conn, &query).await).await
    }

    async fn compacted(&self, query: ReadCompacted) -> Result<Compacted> {
        let read = async |conn: &mut PgConnection| summaries::compacted(conn, &query).await;
        self.read_snapshot(&query.context, read).await
    }

    async fn lease(&self, lease: Lease) -> Result<Option<Leased>> {
        match self.apply(PersistArgs::Lease(lease)).await? {
            PersistResult::Lease(held) => Ok(held),
            other => Err(PersistError::MismatchedResult { op: persist_core::PersistOp::Lease, got: other.op() }),
        }
    }

    async fn stranded(&self, query: FindStranded) -> Result<Vec<Stranded>> {
        self.with(async |conn| reads::stranded(conn, &query).await).await
    }

    /// A round trip to the server on a pooled connection (`Temporary` when it cannot be
    /// reached; an error once the backend is closed).
    async fn ping(&self) -> Result<()> {
        self.with(async |conn| conn.ping().await.map_err(|e| map_sqlx("reaching PostgreSQL", e))).await
    }

    async fn bind(&self, bind: Bind) -> Result<SessionBinding> {
        let write = self.with(async |conn| write::bind(conn, &bind).await);
        self.recorded(bind.context.consistency(), write).await
    }

    async fn resolve(&self, query: Resolve) -> Result<Resolution> {
        self.with(async |conn| reads::resolve(conn, &query).await).await
    }

    async fn bindings(&self, query: ListBindings) -> Result<Vec<StoredBinding>> {
        self.with(async |conn| reads::bindings(conn, &query).await).await
    }

    async fn reset_session(&self, request: ResetSession) -> Result<bool> {
        let ResetSession { agent_id, thread_id, context, .. } = request;
        let tenant = context.tenant();
        let write =
            self.with(async |conn| write::mark(conn, tenant, &agent_id, &thread_id, None, BindingState::Reset).await);
        self.recorded(context.consistency(), write).await
    }

    async fn invalidate_session(&self, request: InvalidateSession) -> Result<bool> {
        let InvalidateSession { agent_id, thread_id, session_id, context, .. } = request;
        let tenant = context.tenant();
        let write = self.with(async |conn| {
            write::mark(conn, tenant, &agent_id, &thread_id, Some(&session_id), BindingState::Invalidated).await
        });
        self.recorded(context.consistency(), write).await
    }
}
