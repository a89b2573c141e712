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

mod branches;
mod error;
mod feed;
mod group;
mod migrations;
mod ops;
mod pool;
mod reads;
mod rows;
mod schema;
mod search;
mod statistics;
mod summaries;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use persist_core::branch::{Branches, ListBranches};
use persist_core::feed::{FeedHub, FeedPage, FeedRetention, ReadFeed};
use persist_core::lease::{Lease, Leased};
use persist_core::read::{FindStranded, GetMessage, GetThread, ListMessages, ListThreads, Stranded, ThreadCursor};
use persist_core::search::{Search, SearchCursor, SearchHit};
use persist_core::session::{
    Bind, BindingState, InvalidateSession, ListBindings, ResetSession, Resolution, Resolve, SessionBinding,
    StoredBinding,
};
use persist_core::summary::{Compacted, ListSummaries, ReadCompacted, Summary};
use persist_core::{Backend, Capabilities, Message, Page, PersistArgs, PersistError, PersistResult, Result, Thread};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use crate::error::map_sqlx;
use crate::group::Inserts;
use crate::pool::Pool;

use crate::schema::{prepare_schema, split_schema, validate_schema};
use persist_core::maintenance::SchemaStatus;

/// Configures and connects a [`PostgresBackend`].
#[derive(Debug, Clone)]
pub struct PostgresBackendBuilder {
    url: String,
    /// Set by [`schema`](Self::schema); the URL's `schema=` otherwise, then `public`.
    schema: Option<String>,
    max_connections: u32,
    min_connections: u32,
    acquire_timeout: Duration,
    max_insert_groups: usize,
    feed: Option<FeedRetention>,
    lock_timeout: Duration,
    statement_timeout: Duration,
    /// Whether connecting applies the migrations the schema lacks (see [`migrate`](Self::migrate)).
    migrate: bool,
    search_index: Option<bool>,
    search_config: Option<String>,
}

impl PostgresBackendBuilder {
    /// The schema holding persist's tables, created if missing (default: the URL's `schema=`,
    /// else `public`). One database can host several independent stores in different schemas.
    /// A URL naming another schema is refused when connecting.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// Most connections this instance opens (default 10). Several instances share the server's
    /// `max_connections`: keep the sum below it.
    pub fn max_connections(mut self, connections: u32) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// Connections opened on connect and kept open when idle (default 0); idle connections
    /// beyond these are closed after 10 minutes unused.
    pub fn min_connections(mut self, connections: u32) -> Self {
        self.min_connections = connections;
        self
    }

    /// Most groups of inserts (adds and reserves) this instance writes at once (default 4), and
    /// as many groups of message updates (content, metadata, role), which have a lane of their
    /// own.
    ///
    /// While that many are being written, further inserts queue and are written together, one
    /// statement for the whole group (one plan, one commit, one round trip on the server), as
    /// soon as a group finishes. About the server's CPU count is right: with 64 callers on a
    /// 2-vCPU machine, the default wrote ≈ 2.7× as many messages a second as one statement per
    /// insert. A lone caller's insert never waits: it runs at once, alone.
    pub fn max_insert_groups(mut self, groups: usize) -> Self {
        self.max_insert_groups = groups.max(1);
        self
    }

    /// The change feed ([`persist_core::feed`]): `Some` keeps it with this retention (the
    /// default: seven days, at most a million events), `None` turns it off. The feed is the
    /// schema's: its events are written by the schema's triggers, whichever instance writes,
    /// and the instance that connects last decides whether they record. Every instance applies
    /// its own retention every few seconds, so the strictest wins.
    ///
    /// Never silently: while an instance connected with `None` keeps the schema's feed off, a
    /// read of the feed through an instance that keeps one answers `Unsupported` saying so, and
    /// when an instance turns the feed on again, a reader resuming from before gets `FeedGap`:
    /// the writes made meanwhile have no events.
    pub fn feed(mut self, retention: Option<FeedRetention>) -> Self {
        self.feed = retention;
        self
    }

    /// How long a write waits for a free connection before failing with a temporary error
    /// (default 5 s).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// How long a statement waits on the server for a lock another session holds (a thread's
    /// row, say) before it fails with a temporary error (default 5 s; zero waits forever).
    /// PostgreSQL's `lock_timeout`, set on every connection this backend opens.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Longest a statement may run on the server before it is cancelled there, failing with a
    /// temporary error (default 30 s; zero lets it run forever). PostgreSQL's
    /// `statement_timeout`, set on every connection this backend opens; migrations run without
    /// it (and without the lock time-out).
    ///
    /// It also bounds how long a cancelled operation's connection keeps its slot in the pool
    /// (see [Connections](crate#connections)): the server ends the statement within this time,
    /// and a connection not back 5 s later is closed.
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// Whether connecting creates the schema and applies the migrations it lacks (default
    /// `true`). With `false`, nothing of the schema is changed: connecting fails with
    /// `Unsupported` unless the schema is exactly at this build's version, saying whether it is
    /// behind (which migrations are pending: apply them with `persist migrate up`, or one
    /// instance connecting with `true`) or ahead (a newer build migrated it). For deployments
    /// where migrations are a step of their own, run before the new instances start (see
    /// `docs/migrations.md`).
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Turns the full-text search index on or off (see `persist::search`): a GIN index over the
    /// `tsvector` of every message's text, kept by every write in its transaction.
    ///
    /// The setting is the schema's (on for a new schema): an instance that does not call this
    /// keeps it as it is, so a tool connecting for a moment (the `persist` command line) never
    /// turns it back on or off. Connecting with `true` builds the index if it is missing
    /// (`CREATE INDEX CONCURRENTLY`: writes go on meanwhile, and connecting waits as long as
    /// the build takes, about a second per 100,000 messages, without the connection's
    /// time-outs; instances connecting together take turns); with `false` it is dropped, so
    /// writes cost nothing for it, and instances that connect afterwards answer searches
    /// `Unsupported`. An instance connected while it was on still answers correctly after
    /// another dropped it (by reading every message's text: slowly). An instance that does not
    /// migrate ([`migrate(false)`](Self::migrate)) changes nothing: it searches as the schema's
    /// settings say, and refuses (`InvalidInput`) settings of its own that differ.
    pub fn search_index(mut self, keep: bool) -> Self {
        self.search_index = Some(keep);
        self
    }

    /// The text search configuration of the index and of searches (a new schema's is `simple`:
    /// words lowercased, no stemming, no stop words; `english` stems and drops English stop
    /// words). The schema's too: an instance that does not call this uses the schema's;
    /// connecting with another one replaces it and rebuilds the index. `InvalidInput` naming
    /// `search_config` when connecting, for a name the database does not know.
    pub fn search_config(mut self, config: impl Into<String>) -> Self {
        self.search_config = Some(config.into());
        self
    }

    /// Where the schema stands against this build's migrations, read on one connection without
    /// changing anything (a schema that does not exist is at version 0, everything pending).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect), for the URL and the schema's name; `Temporary` when the
    /// server cannot be reached.
    pub async fn schema_status(mut self) -> Result<SchemaStatus> {
        let (options, schema) = self.target()?;
        let connecting = tokio::time::timeout(self.acquire_timeout, PgConnection::connect_with(&options));
        let mut conn = match connecting.await {
            Ok(connected) => connected.map_err(|e| map_sqlx("connecting to read the schema's version", e))?,
            Err(_) => {
                return Err(PersistError::temporary(format!(
                    "connecting to read the schema's version: no answer within {:?}",
                    self.acquire_timeout
                )));
            }
        };
        let status = schema::status(&mut conn, &schema).await;
        let _ = conn.close().await;
        status
    }

    /// The connection options and the schema named by the URL and the builder.
    fn target(&mut self) -> Result<(PgConnectOptions, String)> {
        let (url, named) = split_schema(&self.url)?;
        let schema = match (self.schema.take(), named) {
            (Some(set), Some(named)) if set != named => {
                return Err(PersistError::invalid(
                    "schema",
                    format!("the builder names schema {set:?} and the URL schema={named:?}: one store, one name"),
                ));
            }
            (set, named) => set.or(named).unwrap_or_else(|| "public".to_owned()),
        };
        validate_schema(&schema)?;
        let options = PgConnectOptions::from_str(&url)
            .map_err(|e| PersistError::invalid("url", e.to_string()))?
            // Each execution is planned with its own values (a custom plan). A plan cached per
            // connection (generic) would halve the server's time per add (≈ 0.2 ms to plan,
            // ≈ 0.2 ms to run; 32 clients inserted ≈ 2 100/s with custom plans against ≈ 4 100/s
            // with the generic one, pgbench on this machine), but it is planned once, with the
            // statistics of that moment: on a fresh database (tables never analyzed) the
            // planner looked messages up by `(thread_id, seq)` and filtered on the id, so each
            // add scanned its whole thread and slowed as threads grew (≈ 1 000/s to ≈ 300/s
            // over 15 000 adds) until the next ANALYZE.
            .options([
                ("search_path", schema.clone()),
                ("plan_cache_mode", "force_custom_plan".to_owned()),
                ("lock_timeout", millis(self.lock_timeout)),
                ("statement_timeout", millis(self.statement_timeout)),
            ]);
        // Seen in `pg_stat_activity`, unless the URL or `PGAPPNAME` names the application.
        let options = match options.get_application_name() {
            Some(_) => options,
            None => options.application_name("persist"),
        };
        Ok((options, schema))
    }

    /// Connects, creates the schema if needed and applies the embedded migrations (under an
    /// advisory lock, so instances starting together take turns); with
    /// [`migrate(false)`](Self::migrate), only checks that the schema is at this build's version.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a malformed URL, a parameter it does not know, or a bad schema name
    /// (or one other than the URL's `schema=`); `Temporary` when the server cannot be reached;
    /// `Unsupported` when the schema was written by a newer version of this crate, or, with
    /// `migrate(false)`, when it is not at this build's version.
    pub async fn connect(mut self) -> Result<PostgresBackend> {
        let (options, schema) = self.target()?;
        // A statement ends on the server within `statement_timeout`; its connection is given
        // a few seconds more to come back. Without a statement time-out, five minutes.
        let drain_timeout = match self.statement_timeout {
            Duration::ZERO => Duration::from_secs(300),
            timeout => timeout + Duration::from_secs(5),
        };
        let pool = Pool::new(options, self.max_connections, self.min_connections, self.acquire_timeout, drain_timeout);
        let mut conn = pool.acquire().await?;
        let prepared = if self.migrate {
            prepare_schema(&mut conn, &schema).await
        } else {
            match schema::status(&mut conn, &schema).await {
                Ok(status) => status.require_current(&format!("schema {schema}")),
                Err(error) => Err(error),
            }
        };
        conn.release(&prepared);
        prepared?;
        let mut conn = pool.acquire().await?;
        // Turned on again after an instance turned it off, the feed records a gap (a position
        // burned, and everything up to it counted as removed): the writes made meanwhile have
        // no events, so a reader resuming from before is told (`FeedGap`).
        let enabled = sqlx::query(
            "UPDATE persist_feed_state \
                SET head = CASE WHEN $1 AND NOT enabled THEN greatest(head, trimmed) + 1 ELSE head END, \
                    trimmed = CASE WHEN $1 AND NOT enabled THEN greatest(head, trimmed) + 1 ELSE trimmed END, \
                    enabled = $1",
        )
        .bind(self.feed.is_some())
        .execute(&mut *conn)
        .await
        .map_err(|e| map_sqlx("turning the change feed on or off", e));
        conn.release(&enabled);
        enabled?;
        // An instance that never changes the schema (`migrate(false)`) leaves the index as it is.
        let mut conn = pool.acquire().await?;
        let wanted = search::SearchWanted { index: self.search_index, config: self.search_config.clone() };
        let searching = search::prepare(&mut conn, &wanted, self.migrate).await;
        conn.release(&searching);
        let searching = searching?;
        let search_sql: Arc<str> = Arc::from(search::search_sql(searching.config));
        pool.fill().await?;
        let feed = self.feed.map(|retention| feed::Feed::start(&pool, &schema, retention));
        Ok(PostgresBackend {
            pool,
            schema,
            inserts: Arc::new(Inserts::new(self.max_insert_groups)),
            updates: Arc::new(Inserts::new(self.max_insert_groups)),
            feed,
            statistics: Arc::default(),
            search: searching.enabled,
            search_sql,
        })
    }
}

/// A duration as PostgreSQL's setting text, in milliseconds (`0` disables).
fn millis(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

/// The PostgreSQL backend; see the [crate docs](crate). Cloning shares the pool.
#[derive(Clone)]
pub struct PostgresBackend {
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
}

impl fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBackend").field("schema", &self.schema).finish_non_exhaustive()
    }
}

impl PostgresBackend {
    /// A builder for the database at `url` (`postgres://user:password@host:port/database`).
    pub fn builder(url: impl Into<String>) -> PostgresBackendBuilder {
        PostgresBackendBuilder {
            url: url.into(),
            schema: None,
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(5),
            max_insert_groups: 4,
            feed: Some(FeedRetention::default()),
            lock_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            migrate: true,
            search_index: None,
            search_config: None,
        }
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

    /// Closes the pool, waiting for connections in use to be returned, and stops the change
    /// feed's listener (closing its connection).
    pub async fn close(&self) {
        if let Some(feed) = &self.feed {
            feed.stop();
        }
        self.pool.close().await;
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
            args => self.with(async |conn| ops::apply(conn, args).await).await,
        }
    }

    /// Runs `operation` on a connection of the pool, then gives the connection back (or
    /// closes it, if the operation lost it).
    async fn with<T>(&self, operation: impl AsyncFnOnce(&mut PgConnection) -> Result<T>) -> Result<T> {
        let mut conn = self.pool.acquire().await?;
        let answer = operation(&mut conn).await;
        conn.release(&answer);
        answer
    }
}

fn feed_off() -> PersistError {
    PersistError::Unsupported { what: "a change feed on this handle (turned off)".into() }
}

impl Backend for PostgresBackend {
    async fn apply(&self, args: PersistArgs) -> Result<PersistResult> {
        let answer = self.write(args).await;
        if let Some(feed) = &self.feed {
            feed.kick();
        }
        answer
    }

    async fn read_feed(&self, query: ReadFeed) -> Result<FeedPage> {
        match &self.feed {
            Some(feed) => feed.read(&self.pool, &query).await,
            None => Err(feed_off()),
        }
    }

    fn feed_hub(&self) -> Option<FeedHub> {
        self.feed.as_ref().map(|feed| feed.hub.clone())
    }

    async fn get(&self, query: GetMessage) -> Result<Option<Message>> {
        self.with(async |conn| reads::get(conn, &query).await).await
    }

    async fn get_thread(&self, query: GetThread) -> Result<Option<Thread>> {
        self.with(async |conn| reads::get_thread(conn, &query).await).await
    }

    async fn list(&self, query: ListMessages) -> Result<Page<Message>> {
        match &query.branch {
            Some(branch) => {
                let read = async |conn: &mut PgConnection| branches::list_branch(conn, &query, branch).await;
                self.with(async |conn| branches::in_one_snapshot(conn, read).await).await
            }
            None => self.with(async |conn| reads::list(conn, &query).await).await,
        }
    }

    async fn threads(&self, query: ListThreads) -> Result<Page<Thread, ThreadCursor>> {
        self.with(async |conn| reads::threads(conn, &query).await).await
    }

    async fn search(&self, query: Search) -> Result<Page<SearchHit, SearchCursor>> {
        if !self.search {
            query.validate()?;
            return Err(search::search_off());
        }
        self.with(async |conn| search::search(conn, &self.search_sql, &query).await).await
    }

    async fn branches(&self, query: ListBranches) -> Result<Branches> {
        let read = async |conn: &mut PgConnection| branches::branches(conn, &query).await;
        self.with(async |conn| branches::in_one_snapshot(conn, read).await).await
    }

    fn capabilities(&self) -> Capabilities {
        let caps = Capabilities::new().with_durable(true).with_shared_storage(true).with_sessions(true);
        let caps = caps.with_restore(true).with_feed(self.feed.is_some()).with_branches(true);
        caps.with_summaries(true).with_search(self.search)
    }

    async fn summaries(&self, query: ListSummaries) -> Result<Page<Summary>> {
        self.with(async |conn| summaries::summaries(conn, &query).await).await
    }

    async fn compacted(&self, query: ReadCompacted) -> Result<Compacted> {
        let read = async |conn: &mut PgConnection| summaries::compacted(conn, &query).await;
        self.with(async |conn| branches::in_one_snapshot(conn, read).await).await
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
        self.with(async |conn| ops::bind(conn, &bind).await).await
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
        self.with(async |conn| ops::mark(conn, tenant, &agent_id, &thread_id, None, BindingState::Reset).await).await
    }

    async fn invalidate_session(&self, request: InvalidateSession) -> Result<bool> {
        let InvalidateSession { agent_id, thread_id, session_id, context, .. } = request;
        let tenant = context.tenant();
        self.with(async |conn| {
            ops::mark(conn, tenant, &agent_id, &thread_id, Some(&session_id), BindingState::Invalidated).await
        })
        .await
    }
}
