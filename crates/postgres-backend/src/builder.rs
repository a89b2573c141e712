//! [`PostgresBackendBuilder`]: the settings of a [`PostgresBackend`], and connecting: the
//! schema prepared (or checked, without migrating), the feed and the search index as the
//! instance asks, the pool filled.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use persist_core::feed::FeedRetention;
use persist_core::schema::SchemaStatus;
use persist_core::{Consistency, PersistError, Result};
use sqlx::postgres::{PgConnectOptions, PgTransactionManager};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection, SqlSafeStr};
use sqlx_core::transaction::TransactionManager;

use crate::error::map_sqlx;
use crate::group::Inserts;
use crate::pool::{Pool, Sessions};
use crate::pooler::{self, Pooler, Settings};
use crate::replicas::{Freshness, Replicas};
use crate::schema::{self, prepare_schema, split_url, validate_schema};
use crate::{PostgresBackend, feed, pgvector, search};

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
    /// The standbys' URLs (see [`replica`](Self::replica)).
    replicas: Vec<String>,
    replica_wait: Duration,
    freshness: Freshness,
    consistency: Option<Consistency>,
    key_retention: Duration,
    /// Set by [`pooler`](Self::pooler); the URL's `pooler=` otherwise, then detected.
    pooler: Option<Pooler>,
    /// Set by [`listen_url`](Self::listen_url), or the URL's `listen_url=`.
    listen_url: Option<String>,
    /// The dimension counts pgvector's index covers (see [`pgvector_hnsw`](Self::pgvector_hnsw)).
    pgvector_dimensions: Vec<usize>,
    pgvector_ef_search: u32,
}

impl PostgresBackendBuilder {
    /// The default settings for the database at `url` (see [`PostgresBackend::builder`]).
    pub(crate) fn new(url: String) -> Self {
        Self {
            url,
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
            replicas: Vec::new(),
            replica_wait: Duration::from_millis(500),
            freshness: Freshness::Handle,
            consistency: None,
            key_retention: persist_core::spent::DEFAULT_KEY_RETENTION,
            pooler: None,
            listen_url: None,
            pgvector_dimensions: Vec::new(),
            pgvector_ef_search: pgvector::DEFAULT_EF_SEARCH,
        }
    }

    /// Approximate [`nearest`](persist_core::Backend::nearest) queries over vectors of these
    /// dimension counts walk pgvector's HNSW index (default: none, every query scans). Exact
    /// queries, and vectors of other dimensions, keep the scan. See
    /// [pgvector](crate#pgvector).
    ///
    /// Connecting installs pgvector if the server has it and the database does not (`CREATE
    /// EXTENSION vector`, which needs a role allowed to), then builds an index per dimension
    /// count over the vectors already stored: `CONCURRENTLY`, writes go on meanwhile, and
    /// connecting waits as long as the build takes (minutes at a few hundred thousand
    /// vectors). Each write of a vector then costs more (the index is kept in its transaction).
    /// An instance that does not [`migrate`](Self::migrate) builds nothing and refuses an
    /// index that is missing.
    ///
    /// `InvalidInput` naming `pgvector_hnsw` when connecting: a dimension count outside 1 to
    /// 2,000, a server without pgvector 0.8 or later.
    pub fn pgvector_hnsw(mut self, dimensions: impl IntoIterator<Item = usize>) -> Self {
        self.pgvector_dimensions.extend(dimensions);
        self
    }

    /// How many candidates a walk of pgvector's index keeps (its `hnsw.ef_search`; default
    /// 100, at least the query's `limit`): of them the nearest `limit` in the query's scope are
    /// answered, scored exactly. A wider walk finds more of the exact answer, at little cost
    /// (the graph's distances take microseconds; each hit handed on costs about 0.4 ms, read
    /// through the index's expression). `InvalidInput` naming `pgvector_ef_search` when
    /// connecting, outside 1 to 1,000.
    pub fn pgvector_ef_search(mut self, width: u32) -> Self {
        self.pgvector_ef_search = width;
        self
    }

    /// The kind of connection pooler between this store and the server (default: the URL's
    /// `pooler=`, else [`Pooler::Detect`]: found when connecting). Through a pooler in
    /// transaction mode (PgBouncer's `pool_mode = transaction`) each operation is one
    /// transaction that sets what it needs, and no statement is kept; see
    /// [Poolers](crate#poolers). Name [`Pooler::Transaction`] for a transaction pooler that
    /// passes startup options through (detection cannot tell it from a direct server).
    pub fn pooler(mut self, pooler: Pooler) -> Self {
        self.pooler = Some(pooler);
        self
    }

    /// Behind a transaction pooler, a direct URL of the same server (not through the pooler)
    /// on which the change feed listens for other instances' notifications (or the URL's
    /// `listen_url=`, percent-encoded). Without one, an instance behind a transaction pooler
    /// learns of other instances' events by polling, every 250 ms (its own wake its followers
    /// at once). Ignored without a pooler:
    /// the feed listens on a connection like the others.
    pub fn listen_url(mut self, url: impl Into<String>) -> Self {
        self.listen_url = Some(url.into());
        self
    }

    /// How long the idempotency key of a removed message is remembered after it went (default
    /// [`DEFAULT_KEY_RETENTION`](persist_core::spent::DEFAULT_KEY_RETENTION), 24 hours): until
    /// then, a retry of the request that wrote it answers what its first call answered and
    /// writes nothing (see [`spent`](persist_core::spent)). Set on every connection (the setting
    /// `persist.key_retention`, in microseconds); applies to keys this instance spends.
    pub fn key_retention(mut self, retention: Duration) -> Self {
        self.key_retention = retention;
        self
    }

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

    /// A hot standby of this database that answers reads (call again for each one): the
    /// reads of messages, threads, branches, summaries and searches go to the standbys (in
    /// turn), writes and every other request to the primary. See
    /// [Replicas](crate#replicas).
    ///
    /// The URL names one standby server (user, password, options as for the primary's; not a
    /// load balancer in front of several, whose positions would mix); the store's schema is
    /// the primary's, and a `schema=` naming another one is refused when
    /// connecting (`InvalidInput` naming `replica`). A standby that cannot be reached when
    /// connecting is no error: its reads go to the others or the primary until it answers.
    pub fn replica(mut self, url: impl Into<String>) -> Self {
        self.replicas.push(url.into());
        self
    }

    /// How long a read waits for a standby to replay the writes it must see before the primary
    /// answers it instead (default 500 ms; zero never waits). Reaching a standby is bounded by
    /// the longer of this and a second.
    pub fn replica_wait(mut self, wait: Duration) -> Self {
        self.replica_wait = wait;
        self
    }

    /// Which writes a read from a standby must see besides its request's
    /// [`Consistency`] (default [`Freshness::Handle`]: every write of this handle).
    pub fn freshness(mut self, freshness: Freshness) -> Self {
        self.freshness = freshness;
        self
    }

    /// The [`Consistency`] recording this handle's writes (default: one of its own). Handles
    /// given clones of one consistency read each other's writes from the standbys, as one
    /// handle reads its own.
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = Some(consistency);
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
        let (mut conn, schema) = self.one_connection("connecting to read the schema's version").await?;
        let status = schema::status(&mut conn, &schema).await;
        end(conn, status).await
    }

    /// One connection to the schema, outside any pool, and the schema's name; behind a
    /// transaction pooler, in a transaction with the store's settings ([`end`] commits it).
    async fn one_connection(&mut self, context: &'static str) -> Result<(PgConnection, String)> {
        let target = self.target()?;
        let connecting = async {
            let (pooler, conn) = target.pooler().await?;
            let mut conn = match conn {
                Some(conn) => conn,
                None => target.options(pooler).connect().await.map_err(|e| map_sqlx(context, e))?,
            };
            if let Sessions::Pooled { begin, .. } = target.settings.sessions(pooler) {
                PgTransactionManager::begin(&mut conn, Some(AssertSqlSafe(begin).into_sql_str()))
                    .await
                    .map_err(|e| map_sqlx(context, e))?;
            }
            Ok(conn)
        };
        match tokio::time::timeout(self.acquire_timeout, connecting).await {
            Ok(connected) => Ok((connected?, target.settings.schema)),
            Err(_) => Err(PersistError::temporary(format!("{context}: no answer within {:?}", self.acquire_timeout))),
        }
    }

    /// Has a schema migrated from an earlier version written in this build's packed form from
    /// now on (see [`SchemaStatus::unfinished`]): run it once no instance of an earlier build
    /// uses the schema (an earlier build cannot read that form). Every instance of this build
    /// writes the packed form from its next write on. What `persist migrate finish` does; a
    /// schema this build created needs none. Answers the status after.
    ///
    /// # Errors
    ///
    /// As [`schema_status`](Self::schema_status); `Unsupported` when the schema is not at this
    /// build's version (apply the pending migrations first).
    pub async fn finish(mut self) -> Result<SchemaStatus> {
        let (mut conn, schema) = self.one_connection("connecting to finish the schema").await?;
        let finished = async {
            schema::status(&mut conn, &schema).await?.require_current(&format!("schema {schema}"))?;
            schema::raise_format(&mut conn).await?;
            schema::status(&mut conn, &schema).await
        }
        .await;
        end(conn, finished).await
    }

    /// Where the store is: the URL, the schema and the settings, the pooler named by the URL
    /// and the builder.
    fn target(&mut self) -> Result<Target> {
        let (url, named) = split_url(&self.url)?;
        let schema = match (self.schema.take(), named.schema) {
            (Some(set), Some(named)) if set != named => {
                return Err(PersistError::invalid(
                    "schema",
                    format!("the builder names schema {set:?} and the URL schema={named:?}: one store, one name"),
                ));
            }
            (set, named) => set.or(named).unwrap_or_else(|| "public".to_owned()),
        };
        validate_schema(&schema)?;
        let listen = match self.listen_url.take().or(named.listen_url) {
            Some(url) => Some(base_options(&split_url(&url)?.0, "listen_url")?),
            None => None,
        };
        Ok(Target {
            base: base_options(&url, "url")?,
            settings: Settings {
                schema,
                lock_timeout: self.lock_timeout,
                statement_timeout: self.statement_timeout,
                key_retention: self.key_retention,
            },
            pooler: self.pooler.or(named.pooler).unwrap_or_default(),
            listen,
        })
    }

    /// The standbys' pools (nothing opened yet), reached as the primary is (`pooler`).
    fn replica_pools(&self, target: &Target, pooler: Pooler, drain_timeout: Duration) -> Result<Vec<Pool>> {
        let reach = self.replica_wait.max(Duration::from_secs(1));
        let schema = &target.settings.schema;
        let mut pools = Vec::with_capacity(self.replicas.len());
        for url in &self.replicas {
            let (url, named) = split_url(url).map_err(|e| PersistError::invalid("replica", e.to_string()))?;
            if let Some(named) = named.schema.filter(|named| named != schema) {
                return Err(PersistError::invalid(
                    "replica",
                    format!(
                        "a replica's URL names schema={named:?}, the store's is {schema:?}: a standby holds the same store"
                    ),
                ));
            }
            let standby = Target { base: base_options(&url, "replica")?, ..target.clone() };
            let sessions = target.settings.sessions(pooler);
            pools.push(Pool::new(standby.options(pooler), sessions, self.max_connections, 0, reach, drain_timeout));
        }
        Ok(pools)
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
        let target = self.target()?;
        // A statement ends on the server within `statement_timeout`; its connection is given
        // a few seconds more to come back. Without a statement time-out, five minutes.
        let drain_timeout = match self.statement_timeout {
            Duration::ZERO => Duration::from_secs(300),
            timeout => timeout + Duration::from_secs(5),
        };
        let (pooler, detected) =
            tokio::time::timeout(self.acquire_timeout, target.pooler()).await.map_err(|_| {
                PersistError::temporary(format!(
                    "connecting to PostgreSQL: no answer within {:?}",
                    self.acquire_timeout
                ))
            })??;
        let replica_pools = self.replica_pools(&target, pooler, drain_timeout)?;
        let sessions = target.settings.sessions(pooler);
        let (min, max) = (self.min_connections, self.max_connections);
        let pool = Pool::new(target.options(pooler), sessions, max, min, self.acquire_timeout, drain_timeout);
        if let Some(conn) = detected {
            pool.adopt(conn);
        }
        let schema = target.settings.schema.clone();
        let mut conn = pool.acquire().await?;
        let prepared = if self.migrate {
            prepare_schema(&mut conn, &schema).await
        } else {
            match schema::status(&mut conn, &schema).await {
                Ok(status) => status.require_current(&format!("schema {schema}")),
                Err(error) => Err(error),
            }
        };
        conn.finish(prepared).await?;
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
        conn.finish(enabled).await?;
        // An instance that never changes the schema (`migrate(false)`) leaves the index as it is.
        let mut conn = pool.acquire().await?;
        let wanted = search::SearchWanted { index: self.search_index, config: self.search_config.clone() };
        let searching = search::prepare(&mut conn, &wanted, self.migrate).await;
        let searching = conn.finish(searching).await?;
        let search_sql: Arc<str> = Arc::from(search::search_sql(searching.config));
        let mut conn = pool.acquire().await?;
        let wanted =
            pgvector::Wanted { dimensions: self.pgvector_dimensions.clone(), ef_search: self.pgvector_ef_search };
        let walking = pgvector::prepare(&mut conn, &wanted, self.migrate).await;
        let pgvector = conn.finish(walking).await?.map(Arc::new);
        let replicas = if replica_pools.is_empty() {
            None
        } else {
            let mut conn = pool.acquire().await?;
            let handle = self.consistency.take().unwrap_or_default();
            // A standby's read is bounded on this side too (a standby cut off by the network
            // answers nothing, and its statement time-out never fires).
            let read_limit =
                (!self.statement_timeout.is_zero()).then(|| self.statement_timeout + Duration::from_secs(5));
            let replicas =
                Replicas::new(replica_pools, &mut conn, self.replica_wait, read_limit, self.freshness, handle).await;
            let replicas = conn.finish(replicas).await?;
            replicas.connected(&pool).await?;
            Some(Arc::new(replicas))
        };
        pool.fill().await?;
        // Behind a transaction pooler, `LISTEN` hears nothing: a direct connection, or polling.
        let listen = match pooler {
            Pooler::Transaction => target.listen,
            _ => Some(pool.options()),
        };
        let feed = self.feed.map(|retention| feed::Feed::start(&pool, &schema, retention, listen));
        tracing::info!(schema = %schema, pooler = %pooler, "persist connected to PostgreSQL");
        Ok(PostgresBackend {
            pooler,
            pool,
            schema,
            inserts: Arc::new(Inserts::new(self.max_insert_groups)),
            updates: Arc::new(Inserts::new(self.max_insert_groups)),
            feed,
            statistics: Arc::default(),
            search: searching.enabled,
            search_sql,
            replicas,
            pgvector,
        })
    }
}

/// Where a store is, read off its URL and builder.
#[derive(Clone)]
struct Target {
    /// The connection options without the store's settings.
    base: PgConnectOptions,
    settings: Settings,
    /// As configured: [`Pooler::Detect`] until [`pooler`](Self::pooler) found it.
    pooler: Pooler,
    /// The feed's direct connection behind a transaction pooler.
    listen: Option<PgConnectOptions>,
}

impl Target {
    /// The pooler in front, found with a connection if configured to be detected (answered
    /// when fit for the pool).
    async fn pooler(&self) -> Result<(Pooler, Option<PgConnection>)> {
        match self.pooler {
            Pooler::Detect => pooler::detect(&self.settings.direct(self.base.clone()), &self.settings).await,
            configured => Ok((configured, None)),
        }
    }

    /// The options of the pool's connections through `pooler` (resolved).
    fn options(&self, pooler: Pooler) -> PgConnectOptions {
        match pooler {
            Pooler::Transaction => Settings::pooled(self.base.clone()),
            _ => self.settings.direct(self.base.clone()),
        }
    }
}

/// The options of a connection to the server at `url` (`field` names it in errors), named
/// `persist` in `pg_stat_activity` unless the URL or `PGAPPNAME` names the application.
fn base_options(url: &str, field: &'static str) -> Result<PgConnectOptions> {
    let options = PgConnectOptions::from_str(url).map_err(|e| PersistError::invalid(field, e.to_string()))?;
    Ok(match options.get_application_name() {
        Some(_) => options,
        None => options.application_name("persist"),
    })
}

/// Ends a connection [`one_connection`](PostgresBackendBuilder::one_connection) opened:
/// commits its transaction behind a transaction pooler, then closes it; answers `result`, or
/// the commit's failure.
async fn end<T>(mut conn: PgConnection, result: Result<T>) -> Result<T> {
    let committed = if conn.is_in_transaction() {
        PgTransactionManager::commit(&mut conn).await.map_err(|e| map_sqlx("committing the transaction", e))
    } else {
        Ok(())
    };
    let _ = conn.close().await;
    result.and_then(|answer| committed.map(|()| answer))
}
