//! SQLite backend for persist: the embedded default.
//!
//! One file, opened with sqlx; the schema is embedded (`sqlx::migrate!`) and applied on open.
//!
//! # Design
//!
//! - **One writer at a time, many readers.** Every write is made by a single task (the writer)
//!   or, for a lone caller, by the caller itself on the lane (below), never both at once, in
//!   transactions that take the write lock before they read anything (`BEGIN IMMEDIATE`, or a single statement in autocommit); reads use separate
//!   read-only connections (WAL lets them run alongside the writer): `get`, `get_thread` and
//!   `list` on the caller's thread, on rusqlite connections kept idle between reads (a read
//!   that meets a lock waits there up to the busy timeout), the others on a sqlx pool. Several
//!   writer connections with deferred transactions fail read-then-write transactions with
//!   `SQLITE_BUSY`; one writer never contends with itself.
//! - **A lone caller writes on its own thread.** sqlx runs each SQLite connection on a thread of
//!   its own, and handing a write to the writer task, to that thread and back cost a lone
//!   caller's add two thirds of its time. So an `add` or `reserve` made while nothing else of
//!   the handle is writing (no write queued for the writer, no transaction of the writer's
//!   open) runs where the caller polls, on a second write connection (rusqlite, "the lane"),
//!   like a `Mutex` taken briefly: one insert of a few tens of microseconds, 0.99–1.2× a
//!   hand-written rusqlite transaction (3× the writer's rate alone); content over 64 KiB goes
//!   to the writer. The two connections never
//!   hold a transaction at once (an in-process gate), so neither waits on SQLite's lock for the
//!   other. The lane answers only the message written: a repeat, a refusal to diagnose, a file
//!   locked by another process (the lane never waits for a lock: its busy timeout is zero) or
//!   a failure before `COMMIT` goes to the writer, which answers it as any write (a failed
//!   `COMMIT` is answered as the writer would: the write is not made again). Under load writes
//!   queue and the writer commits them in groups, groups of up to 8 on the lane's connection
//!   too (the same statements, without the hand-off; larger ones on sqlx's thread, where the
//!   writer task is not held). With [`Durability::Full`], where every commit waits for the
//!   disk, a lone caller's insert runs on its thread after telling the runtime
//!   (`tokio::task::block_in_place`: the thread's other tasks move to another thread), on a
//!   multi-thread runtime only (on a current-thread runtime the writer takes it): a lone
//!   caller's add at `synchronous=FULL` was 0.70× the same transaction by hand through the
//!   writer, four thread wake-ups around each sync of the log, and is 0.95–0.97× this way.
//! - **Group commit.** The writer takes every write queued since its last commit (up to
//!   [`SqliteBackendBuilder::max_batch`]) and commits them in one transaction, answering each
//!   caller after `COMMIT`. Each write is decided before it writes, so one write's
//!   `VersionConflict` or `AlreadyExists` never fails its neighbours. A lone caller does not
//!   wait for a batch to fill. A group of `add`s and `reserve`s, the common case, is one
//!   prepared insert whatever its size: the rows travel as one JSON array into a `TEMP` view of
//!   the writer connection whose trigger applies them one at a time, in order, and the report
//!   of which write got which `seq` is read in the same round trip. That insert is the group's
//!   whole transaction (autocommit), so SQLite keeps no statement journal for it. A group of
//!   one insert (a lone caller) sends the trigger's statements directly, bound as parameters.
//!   A group holding turns (`append_turn`) is one `BEGIN IMMEDIATE` transaction: its turns are
//!   decided together in one query (the threads' tombstones, their keys and ids), then their rows
//!   go into the same inbox insert as the group's adds; a turn whose thread an earlier write of
//!   the group addresses is decided at its place instead, once the writes before it are applied.
//!   Once a group is committed, the writes queued meanwhile go to the connection before the
//!   group's callers are answered, so SQLite's thread does not wait while answers go out.
//! - **Checkpoints off the write path.** Every 256 writes the write-ahead log is copied into
//!   the database file (`PRAGMA wal_checkpoint(PASSIVE)`): by a second connection, alongside
//!   the writer, when writes are queued, so a busy writer never waits for one; by the writer
//!   itself when nothing is queued (every answer already sent), where it does not compete with
//!   the next write. SQLite's own automatic checkpoint stays as a backstop at 16384 pages. 256
//!   writes are about 1 000 log pages, SQLite's default: the log stays small enough to stay in
//!   the CPU's cache (every 1024 writes, a lone caller's adds ran ≈ 30% slower). The writer
//!   keeps a 64 MiB page cache. A lone caller's writes on the lane ask for the same copy every
//!   256 writes, on the second connection, alongside them; a copy covers what the log held when
//!   it began, so the second connection then copies the few frames written meanwhile with the
//!   writes held off (a write arriving then goes to the writer): the log is copied back whole
//!   and starts over at its beginning (otherwise, under a steady caller, it never would, and
//!   would grow until cut back, at 0.6× the adds a second). The lane never copies the log back
//!   itself (no automatic checkpoint on it): a caller's thread never waits for the disk. When the log's file is over its limit
//!   ([`SqliteBackendBuilder::wal_size_limit`]), writes go to the writer, which cuts it back
//!   under load; closing leaves the log copied back and empty.
//! - **The search index kept later.** FTS5 writes a segment of its own for every transaction
//!   that adds to it (about ten pages for a 300-byte message, where the message is one or
//!   two), which halved a lone caller's adds. In a store of format 4 (schema version 24) a
//!   message written waits for the index by its row alone, above the highest row indexed
//!   (`persist_search_state.indexed`): its insert writes nothing for the index. A change of the
//!   text of a message already indexed takes its old words out in its own transaction and
//!   lists its row in `persist_search_pending`; a removal takes them out, or, for a message
//!   that waits, has nothing to take out. What waits is indexed in one statement, one segment:
//!   by the insert that takes rows 128 past the highest indexed, by the writer once idle for a
//!   second and as it closes, and before any search reads the index (a search that finds
//!   messages waiting has its handle's writer index them first, whoever wrote them; a handle
//!   for reads only searches them apart, in a temporary index of its connection): a search
//!   right after a write finds it.
//! - **Writes survive a dropped caller.** Once a write is queued, the writer finishes it even if
//!   the caller's future is dropped: the write happens entirely or not at all.
//! - **Durability**: WAL with `synchronous=NORMAL` by default (an acknowledged write survives a
//!   crash of the process; a power loss may drop the last commits), or
//!   [`Durability::Full`] (`synchronous=FULL`: also survives power loss, slower).
//! - Several handles (in one process or several) may open one file: the database's write lock
//!   and `busy_timeout` serialize their writers.
//! - **Messages in arrival order, in packed rows.** Messages are rows of `persist_messages`
//!   (schema version 17; the table `messages` before), a rowid table: the rows a group commit
//!   writes share the table's last pages, and only small index entries go to each thread's part
//!   of its two unique indexes, `(thread, message_id)` and `(thread, seq)`, and the idempotency
//!   key's for a message that has one. A row names its thread by the thread's key
//!   (`threads.key`, a number given to each thread once, never to another) instead of its tenant
//!   and id, stores a message id that is a UUID in its canonical text as its 16 bytes, and NULL
//!   for what most messages hold (`metadata` `{}`, `status` complete, `updated_at` equal to
//!   `created_at`). Keyed by `(thread_id, message_id)` before version 5, a group of 64 messages
//!   on 64 threads wrote 3.0 to 3.9 pages per message; 2.2 to 2.7 after. Reads pay for it: a
//!   thread's messages are spread over the table, so listing a page of them reads more pages
//!   (about a quarter fewer lists a second in the benchmark, on 128 threads written at once).
//!
//! The file is readable with the `sqlite3` shell: tables `threads` and `persist_messages` (joined
//! on `threads.key = persist_messages.thread`), JSON in text columns, times in microseconds since
//! the Unix epoch.
//!
//! # Example
//!
//! ```
//! use persist::{args::Add, Content, Pipeline, Role, ThreadId};
//! use persist::sqlite::SqliteBackend;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let backend = SqliteBackend::open(dir.path().join("chat.db")).await?;
//! let pipeline = Pipeline::new(backend);
//! let added = pipeline.add(Add::new(ThreadId::new("t1")?, Role::User, Content::text("hi"))).await?;
//! assert_eq!(added.message.seq, 1);
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod branches;
mod builder;
mod check;
mod direct;
mod error;
mod feed;
mod gate;
mod in_process;
mod lane;
mod limits;
mod migrations;
mod reads;
mod records;
mod rows;
mod search;
mod shared;
mod summaries;
mod vectors;
mod wal;
mod working;
mod write;
mod writer;

/// The SQL of a group commit, for `persist-bench` to run the same statement with nothing
/// around it. Not part of the API: it changes with the schema, without notice.
#[doc(hidden)]
pub mod group_sql {
    pub use crate::write::{INBOX, INBOX_INSERT, INSERT_MESSAGE, INSERT_THREAD, READ_REPORT};
}

use std::fmt;
use std::path::Path;
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
    AgentId, Backend, Capabilities, Message, Page, PersistArgs, PersistError, PersistResult, Result, SessionId,
    TenantId, Thread, ThreadId,
};
use tokio::sync::oneshot;

pub use crate::check::CheckReport;
use crate::error::map_sqlx;
use crate::shared::Shared;
use crate::write::{Answer, Write};
use crate::writer::Job;

pub use crate::builder::{Durability, SqliteBackendBuilder};
pub use crate::in_process::is_open_in_process;

/// The SQLite backend; see the [crate docs](crate). Clones share the writer and the read pool.
#[derive(Clone)]
pub struct SqliteBackend {
    shared: Arc<Shared>,
}

impl fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteBackend").field("path", &self.shared.path).finish_non_exhaustive()
    }
}

impl SqliteBackend {
    /// A builder for the database at `path` with default settings.
    pub fn builder(path: impl AsRef<Path>) -> SqliteBackendBuilder {
        SqliteBackendBuilder::new(path.as_ref())
    }

    /// Opens (creating if needed) the database at `path` with default settings.
    ///
    /// # Errors
    ///
    /// As [`SqliteBackendBuilder::open`].
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::builder(path).open().await
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Checks the whole database: its file structure (SQLite's `integrity_check`, which reads
    /// every page) and persist's own bookkeeping (each thread's `message_count` and `last_seq`
    /// against its messages). Reads only, alongside writes; slow on a large file.
    ///
    /// # Errors
    ///
    /// A `Backend` error when the check itself cannot run; what it finds is in the report.
    pub async fn check(&self) -> Result<CheckReport> {
        let mut conn = self.shared.readers.acquire().await.map_err(|e| map_sqlx("checking the database", e))?;
        check::full(&mut conn).await
    }

    /// Closes the database for every clone of this handle: writes already queued are finished
    /// (each answered as usual), later ones fail with a `Backend` error, reads too; returns once
    /// every connection is closed, so another process or handle can take the file over at once
    /// (dropping the last handle closes it too, but in the background). Calling it again, from
    /// any clone, waits for the same close.
    ///
    /// # Example
    ///
    /// ```
    /// use persist::Backend;
    /// use persist::sqlite::SqliteBackend;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let backend = SqliteBackend::open(dir.path().join("chat.db")).await?;
    /// backend.ping().await?;
    /// backend.close().await;
    /// assert!(backend.ping().await.is_err());
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    pub async fn close(&self) {
        // Reads and writes on the caller's thread stop first: none starts once a close began.
        self.shared.direct.close();
        if let Some(lane) = &self.shared.lane {
            lane.close();
        }
        // Full: a close was already asked for. Closed: the writer is gone already.
        let _ = self.shared.stop.try_send(());
        let mut closed = self.shared.closed.clone();
        // An error means the writer is gone (its task ended without saying so): closed too.
        let _ = closed.wait_for(|closed| *closed).await;
        self.shared.readers.close().await;
    }

    /// Applies the feed's retention now (it also runs every few seconds on its own): removes
    /// the events older than its age limit or past its count, and answers the newest position
    /// removed (resuming from before it is a `FeedGap`).
    ///
    /// # Errors
    ///
    /// `Unsupported` with the feed off; a `Backend` error when the file cannot be written.
    pub async fn trim_feed(&self) -> Result<u64> {
        if self.shared.read_only {
            return Err(self.read_only());
        }
        if self.shared.hub.is_none() {
            return Err(feed_off());
        }
        let (path, timeout, retention) = (self.shared.path.clone(), self.shared.busy_timeout, self.shared.retention);
        tokio::task::spawn_blocking(move || feed::trim(&mut None, &path, timeout, &retention))
            .await
            .map_err(|e| PersistError::backend("trimming the change feed", e))?
    }

    fn read_only(&self) -> PersistError {
        PersistError::rejected(format!("{} is open for reads only (`read_only(true)`)", self.shared.path.display()))
    }

    fn closed() -> PersistError {
        PersistError::Backend { message: "the SQLite writer has stopped".into(), source: None }
    }

    fn mismatched() -> PersistError {
        PersistError::Backend { message: "the SQLite writer answered another kind of write".into(), source: None }
    }

    /// Writes `write` on the caller's lane when nobody else is writing, or else hands it to the
    /// writer and waits for its answer. Once queued, the write is finished even if this future
    /// is dropped.
    async fn write(&self, write: Write) -> Result<Answer> {
        if self.shared.read_only {
            return Err(self.read_only());
        }
        if let Some(lane) = &self.shared.lane {
            // Runs where the caller polls, as the direct reads: takes from its budget.
            tokio::task::consume_budget().await;
            if let Some(answer) = lane.try_write(&write) {
                return answer;
            }
        }
        let (reply, answer) = oneshot::channel();
        let ticket = lane::Ticket::new(&self.shared.queued);
        self.shared.jobs.send(Job { write, reply, ticket }).await.map_err(|_| Self::closed())?;
        answer.await.map_err(|_| Self::closed())?
    }

    async fn mark(
        &self,
        tenant: Option<TenantId>,
        agent_id: AgentId,
        thread_id: ThreadId,
        only_session: Option<SessionId>,
        to: BindingState,
    ) -> Result<bool> {
        match self.write(Write::Mark { tenant, agent_id, thread_id, only_session, to }).await? {
            Answer::Marked(done) => Ok(done),
            _ => Err(Self::mismatched()),
        }
    }
}

fn feed_off() -> PersistError {
    PersistError::Unsupported { what: "a change feed on this handle (turned off)".into() }
}

impl Backend for SqliteBackend {
    async fn apply(&self, args: PersistArgs) -> Result<PersistResult> {
        let answer = self.write(Write::Persist(args)).await;
        // Committed or not, the pump looks when anyone waits (a wake-up with nothing new costs
        // one read); unwatched, its interval keeps it up to date.
        if self.shared.hub.as_ref().is_some_and(FeedHub::is_watched) {
            self.shared.feed_wake.notify_one();
        }
        match answer? {
            Answer::Persist(result) => Ok(result),
            _ => Err(Self::mismatched()),
        }
    }

    async fn read_feed(&self, query: ReadFeed) -> Result<FeedPage> {
        if self.shared.hub.is_none() && !self.shared.read_only {
            return Err(feed_off());
        }
        if !self.shared.feed_readable {
            return Err(PersistError::Unsupported {
                what: format!(
                    "the change feed of {} for reads only: its schema is older than version 21 (the feed's \
                     events of working memory); open it writable once to upgrade it (`persist migrate up` does)",
                    self.shared.path.display()
                )
                .into(),
            });
        }
        tokio::task::consume_budget().await;
        self.shared.direct.feed(&query)
    }

    fn feed_hub(&self) -> Option<FeedHub> {
        self.shared.hub.clone()
    }

    // These three run on the caller's thread and never wait on anything else: each takes from
    // the task's cooperative budget, so a loop of reads still lets the runtime's other tasks
    // (the writer among them) run.
    async fn get(&self, query: GetMessage) -> Result<Option<Message>> {
        tokio::task::consume_budget().await;
        self.shared.direct.get(&query)
    }

    async fn get_thread(&self, query: GetThread) -> Result<Option<Thread>> {
        tokio::task::consume_budget().await;
        self.shared.direct.get_thread(&query)
    }

    async fn list(&self, query: ListMessages) -> Result<Page<Message>> {
        tokio::task::consume_budget().await;
        self.shared.direct.list(&query)
    }

    async fn threads(&self, query: ListThreads) -> Result<Page<Thread, ThreadCursor>> {
        reads::threads(&self.shared.readers, &query).await
    }

    /// What is acknowledged is searchable: the messages waiting for the index (a lone caller's
    /// adds, see `migrations/0024`), this process's or another's, are indexed by this handle's
    /// writer before the search reads it (a handle without a writer searches them apart).
    async fn search(&self, query: Search) -> Result<Page<SearchHit, SearchCursor>> {
        use search::Waiting;
        let waiting = match (self.shared.read_only, self.shared.search_waiting) {
            (_, false) => Waiting::Absent,
            (true, true) => Waiting::Include,
            (false, true) => Waiting::Flush,
        };
        if let Some(page) = search::search(&self.shared.readers, &query, waiting).await? {
            return Ok(page);
        }
        match self.write(Write::IndexWaiting).await? {
            Answer::Indexed => {}
            _ => return Err(Self::mismatched()),
        }
        search::search(&self.shared.readers, &query, Waiting::Ignore).await?.ok_or_else(Self::mismatched)
    }

    /// An exact scan, on a blocking thread: a user's thousands of vectors take milliseconds.
    async fn nearest(&self, query: Nearest) -> Result<Vec<Neighbour>> {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || vectors::nearest(&shared.direct, &query))
            .await
            .map_err(|e| PersistError::backend("finding the nearest messages", e))?
    }

    async fn embeddings(&self, query: ListEmbeddings) -> Result<Page<StoredEmbedding, EmbeddingCursor>> {
        vectors::embeddings(&self.shared.readers, &query).await
    }

    async fn read_memory(&self, query: ReadMemory) -> Result<Option<WorkingMemory>> {
        working::read_memory(&self.shared.readers, &query).await
    }

    async fn memories(&self, query: ListMemories) -> Result<Page<WorkingMemory, MemoryCursor>> {
        working::memories(&self.shared.readers, &query).await
    }

    async fn records(&self, query: ReadRecords) -> Result<Page<Record, RecordCursor>> {
        tokio::task::consume_budget().await;
        records::records(&self.shared.direct, &query)
    }

    async fn branches(&self, query: ListBranches) -> Result<Branches> {
        tokio::task::consume_budget().await;
        self.shared.direct.branches(&query)
    }

    fn capabilities(&self) -> Capabilities {
        let caps = Capabilities::new().with_durable(true).with_shared_storage(true).with_sessions(true);
        let caps = caps.with_restore(true).with_feed(self.shared.hub.is_some()).with_branches(true);
        let caps = caps.with_summaries(true).with_search(self.shared.search).with_vectors(true);
        caps.with_working_memory(true).with_records(true)
    }

    async fn summaries(&self, query: ListSummaries) -> Result<Page<Summary>> {
        tokio::task::consume_budget().await;
        self.shared.direct.summaries(&query)
    }

    async fn compacted(&self, query: ReadCompacted) -> Result<Compacted> {
        tokio::task::consume_budget().await;
        self.shared.direct.compacted(&query)
    }

    async fn lease(&self, lease: Lease) -> Result<Option<Leased>> {
        match self.apply(PersistArgs::Lease(lease)).await? {
            PersistResult::Lease(held) => Ok(held),
            _ => Err(Self::mismatched()),
        }
    }

    async fn stranded(&self, query: FindStranded) -> Result<Vec<Stranded>> {
        reads::stranded(&self.shared.readers, &query).await
    }

    async fn bind(&self, bind: Bind) -> Result<SessionBinding> {
        match self.write(Write::Bind(bind)).await? {
            Answer::Bound(binding) => Ok(binding),
            _ => Err(Self::mismatched()),
        }
    }

    async fn resolve(&self, query: Resolve) -> Result<Resolution> {
        reads::resolve(&self.shared.readers, &query).await
    }

    async fn bindings(&self, query: ListBindings) -> Result<Vec<StoredBinding>> {
        reads::bindings(&self.shared.readers, &query).await
    }

    /// A round trip on a read connection, after checking the writer still runs.
    async fn ping(&self) -> Result<()> {
        if self.shared.jobs.is_closed() && !self.shared.read_only {
            return Err(Self::closed());
        }
        if self.shared.direct.is_closed() {
            return Err(Self::closed());
        }
        sqlx::query("SELECT 1").execute(&self.shared.readers).await.map_err(|e| map_sqlx("pinging the database", e))?;
        Ok(())
    }

    async fn reset_session(&self, request: ResetSession) -> Result<bool> {
        let tenant = request.context.tenant().cloned();
        self.mark(tenant, request.agent_id, request.thread_id, None, BindingState::Reset).await
    }

    async fn invalidate_session(&self, request: InvalidateSession) -> Result<bool> {
        let (tenant, session) = (request.context.tenant().cloned(), Some(request.session_id));
        self.mark(tenant, request.agent_id, request.thread_id, session, BindingState::Invalidated).await
    }
}
