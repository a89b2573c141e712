//! SQLite backend for persist: the embedded default.
//!
//! One file, opened with sqlx; the schema is embedded (`sqlx::migrate!`) and applied on open.
//!
//! # Design
//!
//! - **One writer, many readers.** Every write goes to a single task that owns the only write
//!   connection and applies writes in transactions that take the write lock before they read
//!   anything (`BEGIN IMMEDIATE`, or a single statement in autocommit); reads use separate
//!   read-only connections (WAL lets them run alongside the writer): `get`, `get_thread` and
//!   `list` on the caller's thread, on rusqlite connections kept idle between reads (a read
//!   that meets a lock waits there up to the busy timeout), the others on a sqlx pool. Several
//!   writer
//!   connections with deferred transactions fail read-then-write transactions with
//!   `SQLITE_BUSY`; one writer never contends with itself.
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
//!   Once a group is committed, the writes queued meanwhile go to the connection before the
//!   group's callers are answered, so SQLite's thread does not wait while answers go out.
//! - **Checkpoints off the write path.** Every 256 writes the write-ahead log is copied into
//!   the database file (`PRAGMA wal_checkpoint(PASSIVE)`): by a second connection, alongside
//!   the writer, when writes are queued, so a busy writer never waits for one; by the writer
//!   itself when nothing is queued (every answer already sent), where it does not compete with
//!   the next write. SQLite's own automatic checkpoint stays as a backstop at 16384 pages. 256
//!   writes are about 1 000 log pages, SQLite's default: the log stays small enough to stay in
//!   the CPU's cache (every 1024 writes, a lone caller's adds ran ≈ 30% slower). The writer
//!   keeps a 64 MiB page cache.
//! - **Writes survive a dropped caller.** Once a write is queued, the writer finishes it even if
//!   the caller's future is dropped: the write happens entirely or not at all.
//! - **Durability**: WAL with `synchronous=NORMAL` by default (an acknowledged write survives a
//!   crash of the process; a power loss may drop the last commits), or
//!   [`Durability::Full`] (`synchronous=FULL`: also survives power loss, slower).
//! - Several handles (in one process or several) may open one file: the database's write lock
//!   and `busy_timeout` serialize their writers.
//! - **Messages in arrival order.** The `messages` table is a rowid table (schema version 5):
//!   the rows a group commit writes share the table's last pages, and only small index entries
//!   go to each thread's part of an index: `(tenant, thread_id, message_id)` and
//!   `(tenant, thread_id, seq)`, both unique (schema version 6: a thread is `(tenant,
//!   thread_id)`, `tenant` `''` for the threads without one), and the idempotency key's for a message that has one. Keyed by `(thread_id,
//!   message_id)` before, a group of 64 messages on 64 threads wrote 3.0 to 3.9 pages per
//!   message; 2.2 to 2.7 now. Reads pay for it: a thread's messages are spread over the table,
//!   so listing a page of them reads more pages (about a quarter fewer lists a second in the
//!   benchmark, on 128 threads written at once).
//!
//! The file is readable with the `sqlite3` shell: tables `threads` and `messages`, JSON in text
//! columns, times in microseconds since the Unix epoch.
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

mod check;
mod direct;
mod error;
mod feed;
mod migrations;
mod ops;
mod reads;
mod restore;
mod rows;
mod writer;

/// The SQL of a group commit, for `persist-bench` to run the same statement with nothing
/// around it. Not part of the API: it changes with the schema, without notice.
#[doc(hidden)]
pub mod group_sql {
    pub use crate::ops::{INBOX, INBOX_INSERT, READ_REPORT};
}

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use persist_core::feed::{FeedHub, FeedPage, FeedRetention, ReadFeed};
use persist_core::read::{FindStranded, GetMessage, GetThread, ListMessages, ListThreads, Stranded, ThreadCursor};
use persist_core::session::{
    Bind, BindingState, InvalidateSession, ListBindings, ResetSession, Resolution, Resolve, SessionBinding,
    StoredBinding,
};
use persist_core::{
    AgentId, Backend, Capabilities, Message, Page, PersistArgs, PersistError, PersistResult, Result, SessionId,
    TenantId, Thread, ThreadId,
};
use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::{Notify, mpsc, oneshot, watch};

pub use crate::check::CheckReport;
use crate::error::{map_migrate, map_sqlx};
use crate::ops::{Answer, Write};
use crate::writer::Job;

use crate::migrations::MIGRATOR;

/// How hard a commit tries to reach the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Durability {
    /// WAL + `synchronous=NORMAL`: acknowledged writes survive a process crash; a power loss
    /// or OS crash may lose the most recent commits (never corrupts the file).
    #[default]
    Normal,
    /// WAL + `synchronous=FULL`: acknowledged writes also survive a power loss.
    Full,
}

/// Size limits applied to what is stored (serialized JSON bytes).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    max_content_bytes: usize,
    max_metadata_bytes: usize,
}

/// Configures and opens a [`SqliteBackend`].
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use persist::sqlite::{Durability, SqliteBackend};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// let backend = SqliteBackend::builder(dir.path().join("chat.db"))
///     .durability(Durability::Full)
///     .busy_timeout(Duration::from_secs(10))
///     .read_connections(8)
///     .max_content_bytes(1 << 20)
///     .open()
///     .await?;
/// # drop(backend);
/// # Ok::<_, persist::PersistError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct SqliteBackendBuilder {
    path: PathBuf,
    durability: Durability,
    busy_timeout: Duration,
    read_connections: u32,
    max_batch: usize,
    queue_capacity: usize,
    max_database_bytes: Option<u64>,
    wal_size_limit: u64,
    check_integrity: bool,
    limits: Limits,
    feed: Option<FeedRetention>,
    feed_poll: Duration,
    read_only: bool,
}

impl SqliteBackendBuilder {
    /// Opens the file for reads only (default `false`): nothing is ever written to it, not even
    /// the change feed's state or a migration, so a file on a read-only filesystem, or one this
    /// process may not write, can be read. Writes are refused (`Rejected`), as are a feed's
    /// retention and subscriptions (feed reads work while the file's feed records). A file that
    /// does not exist is not created; one of the previous schema version is read as it is, an
    /// older or newer one refused (`Unsupported`: open it writable once to upgrade it). Where
    /// SQLite cannot make the file's WAL index (a read-only filesystem) and no log lies beside
    /// the file, it is read as immutable (nobody can change it there; a log beside it, which
    /// may hold commits, makes the open fail instead).
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Acknowledged-write durability (default [`Durability::Normal`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// How long a write waits for another handle's write lock before failing with a temporary
    /// error (default 5 s).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Size of the read pool (default 4).
    pub fn read_connections(mut self, connections: u32) -> Self {
        self.read_connections = connections.max(1);
        self
    }

    /// Most writes committed in one transaction (default 256, at most 1000: a group's inserts
    /// are one query, and SQLite refuses queries over 1 MB or 32766 bound values).
    pub fn max_batch(mut self, writes: usize) -> Self {
        self.max_batch = writes.clamp(1, 1000);
        self
    }

    /// Writes that may wait for the writer before callers wait to queue (default 4096).
    pub fn queue_capacity(mut self, writes: usize) -> Self {
        self.queue_capacity = writes.max(1);
        self
    }

    /// Largest the database file may grow, in bytes (default: no limit but the disk's). A write
    /// that would grow it further fails with an error that says the database is full, and
    /// changes nothing; the handle goes on serving (deleting frees room for later writes). The
    /// limit is rounded down to whole pages and never below the file's current size
    /// (SQLite's `max_page_count`).
    pub fn max_database_bytes(mut self, bytes: u64) -> Self {
        self.max_database_bytes = Some(bytes);
        self
    }

    /// Largest the write-ahead log's file stays (default 16 MiB). Under load, the writer looks
    /// at its size every 32 writes and, when it is over, copies it back and empties it between
    /// two groups, waiting up to 100 ms for readers still on its frames (readers that start
    /// meanwhile read the database file), so readers coming and going without pause do not keep
    /// it growing. Behind a read that holds one snapshot longer, the log grows past the limit;
    /// after a second without writes, a second connection copies the log back and empties the
    /// file, without waiting for any lock. Without a limit, the file would keep its largest size
    /// for good.
    pub fn wal_size_limit(mut self, bytes: u64) -> Self {
        self.wal_size_limit = bytes;
        self
    }

    /// Checks the file's structure when opening (SQLite's `quick_check`, which reads every
    /// page: about a second per GiB), and refuses to open a damaged file (default off). See
    /// [`SqliteBackend::check`] for a full check of an open database.
    pub fn check_integrity(mut self, check: bool) -> Self {
        self.check_integrity = check;
        self
    }

    /// Largest content accepted, in bytes of JSON (default 8 MiB); larger is `InvalidInput`.
    pub fn max_content_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_content_bytes = bytes;
        self
    }

    /// Largest metadata object accepted, in bytes of JSON (default 256 KiB).
    pub fn max_metadata_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_metadata_bytes = bytes;
        self
    }

    /// The change feed ([`persist_core::feed`]): `Some` keeps it with this retention (the
    /// default: seven days, at most a million events), `None` turns it off. The feed is the
    /// file's: its events are written by the file's triggers, whichever process writes, and
    /// the handle that opens the file last decides whether they record. Each handle applies its
    /// own retention (every few seconds, and on [`SqliteBackend::trim_feed`]), so the
    /// strictest of the handles open wins.
    ///
    /// Never silently: while a handle opened with `None` keeps the file's feed off, a read of
    /// the feed through a handle that keeps one answers `Unsupported` saying so (its
    /// subscribers get that error, not a wait for events nobody records), and when a handle
    /// turns the feed on again, a reader resuming from before gets `FeedGap`: the writes made
    /// meanwhile have no events.
    ///
    /// While the feed is off nothing is recorded. One thing is lost with it: if a purge
    /// frees a thread's id meanwhile and the id is taken again, a reader of that thread id
    /// resuming from before the purge may miss the old thread's last events. A tenant's or
    /// the store's reads miss nothing that was recorded.
    pub fn feed(mut self, retention: Option<FeedRetention>) -> Self {
        self.feed = retention;
        self
    }

    /// How often a handle with subscribers looks for other processes' writes to the file
    /// (default 50 ms); its own writes wake its subscribers at once.
    pub fn feed_poll_interval(mut self, interval: Duration) -> Self {
        self.feed_poll = interval.max(Duration::from_millis(1));
        self
    }

    /// Opens (creating if needed) the database and applies the schema. Must be called within a
    /// Tokio runtime with its time driver (as `#[tokio::main]`, `#[tokio::test]` and
    /// `Builder::enable_all` give): it starts the writer task, which keeps time to notice when
    /// writes have stopped.
    ///
    /// # Errors
    ///
    /// `Backend` when the file cannot be opened or is not a SQLite database (it is left
    /// untouched); `Unsupported` when it was written by a newer version of this crate, or when
    /// the runtime has no time driver.
    pub async fn open(self) -> Result<SqliteBackend> {
        if self.read_only {
            return self.open_read_only().await;
        }
        let path = self.path.clone();
        self.open_writable().await.map_err(|error| error::in_file(&path, error))
    }

    async fn open_read_only(self) -> Result<SqliteBackend> {
        let path = self.path.clone();
        if !path.is_file() {
            return Err(PersistError::backend(
                format!("opening {} for reads: no database file there", path.display()),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        let immutable = direct::needs_immutable(&path);
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .read_only(true)
            .immutable(immutable)
            .busy_timeout(self.busy_timeout);
        let readers = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(self.read_connections)
            .min_connections(0)
            .connect_with(options)
            .await
            .map_err(|e| error::in_file(&path, map_sqlx("opening read connections", e)))?;
        if let Err(error) = check_schema_version(&readers, &path).await {
            readers.close().await;
            return Err(error);
        }
        // No writer: its queue is closed, and it counts as stopped.
        let (jobs, _) = mpsc::channel(1);
        let (stop, _) = mpsc::channel(1);
        let (_, closed) = watch::channel(true);
        let parallel = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let idle = (self.read_connections as usize).max(parallel);
        let direct = direct::DirectReads::new(path.clone(), self.busy_timeout, idle).immutable(immutable);
        let shared = Arc::new(Shared {
            jobs,
            readers,
            direct,
            path,
            stop,
            closed,
            hub: None,
            feed_wake: Arc::new(Notify::new()),
            retention: self.feed.unwrap_or_default(),
            busy_timeout: self.busy_timeout,
            read_only: true,
        });
        Ok(SqliteBackend { shared })
    }

    async fn open_writable(self) -> Result<SqliteBackend> {
        if !timers_enabled() {
            return Err(PersistError::Unsupported {
                what: "a Tokio runtime without its time driver: build it with `enable_time()` or `enable_all()`".into(),
            });
        }
        let synchronous = match self.durability {
            Durability::Normal => SqliteSynchronous::Normal,
            Durability::Full => SqliteSynchronous::Full,
        };
        let options = SqliteConnectOptions::new()
            .filename(&self.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(self.busy_timeout)
            .foreign_keys(true);
        let mut writer = open_writer(&options, self.busy_timeout).await?;
        if self.check_integrity {
            let damage = check::quick(&mut writer).await?;
            if !damage.is_empty() {
                return Err(PersistError::Backend {
                    message: format!("the database file is damaged (left untouched): {}", damage.join("; ")).into(),
                    source: None,
                });
            }
        }
        sqlx::raw_sql(ops::INBOX).execute(&mut writer).await.map_err(|e| map_sqlx("preparing the writer", e))?;
        // Turned on again after a handle turned it off, the feed records a gap: the writes made
        // meanwhile have no events, so a reader resuming from before is told (`FeedGap`).
        sqlx::query(
            "UPDATE persist_feed_state \
                SET trimmed = CASE WHEN ?1 AND NOT enabled \
                                   THEN max(trimmed, coalesce((SELECT max(position) FROM persist_feed), 0)) + 1 \
                                   ELSE trimmed END, \
                    enabled = ?1",
        )
        .bind(self.feed.is_some())
        .execute(&mut writer)
        .await
        .map_err(|e| map_sqlx("turning the change feed on or off", e))?;
        if let Some(bytes) = self.max_database_bytes {
            limit_size(&mut writer, bytes).await?;
        }
        let readers = SqlitePoolOptions::new()
            .test_before_acquire(false) // a local file: nothing to ping
            .max_connections(self.read_connections)
            .min_connections(0)
            .connect_with(options.clone().read_only(true))
            .await
            .map_err(|e| map_sqlx("opening read connections", e))?;
        let checkpointer = options.connect().await.map_err(|e| map_sqlx("opening the database", e))?;
        let (jobs, queue) = mpsc::channel(self.queue_capacity);
        let (checkpoints, requests) = mpsc::channel(1);
        let (stop, stopping) = mpsc::channel(1);
        let (writer_closed, closed) = watch::channel(false);
        let settings = writer::Settings {
            limits: self.limits,
            max_batch: self.max_batch,
            wal: writer::WalLimit {
                path: wal_path(&self.path),
                bytes: self.wal_size_limit,
                busy_timeout: self.busy_timeout,
            },
        };
        let wal = settings.wal.for_checkpointer();
        tokio::spawn(async move {
            let checkpointer = tokio::spawn(writer::checkpointer(checkpointer, requests, wal));
            writer::run(writer, queue, checkpoints, stopping, settings).await;
            // Closed once both of the writer's connections are.
            let _ = checkpointer.await;
            let _ = writer_closed.send(true);
        });
        // Idle connections for as many reads at once as the runtime has threads to run them.
        let parallel = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let idle = (self.read_connections as usize).max(parallel);
        let direct = direct::DirectReads::new(self.path.clone(), self.busy_timeout, idle);
        let hub = self.feed.map(|_| FeedHub::new());
        let feed_wake = Arc::new(Notify::new());
        let retention = self.feed.unwrap_or_default();
        let shared = Arc::new(Shared {
            jobs,
            readers,
            direct,
            path: self.path.clone(),
            stop,
            closed,
            hub: hub.clone(),
            feed_wake: feed_wake.clone(),
            retention,
            busy_timeout: self.busy_timeout,
            read_only: false,
        });
        if let Some(hub) = hub {
            let pump = feed::Pump {
                hub,
                wake: feed_wake,
                poll: self.feed_poll,
                retention,
                path: self.path,
                busy_timeout: self.busy_timeout,
            };
            let head = shared.direct.feed_head()?;
            tokio::spawn(pump.run(Arc::downgrade(&shared), head));
        }
        Ok(SqliteBackend { shared })
    }
}

/// The oldest schema a read-only handle reads as it is: version 9 only added the table of
/// values set once, which reads do not use (a file not yet upgraded is still read, right after
/// the upgrade of the crate, by `persist show` or `persist export`).
const OLDEST_READ_AS_IS: i64 = 8;

/// Refuses a file whose schema this crate cannot read as it is: a read-only handle cannot
/// migrate it.
async fn check_schema_version(readers: &SqlitePool, path: &Path) -> Result<()> {
    let latest = MIGRATOR.iter().map(|migration| migration.version).max().unwrap_or_default();
    let applied: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
        .fetch_one(readers)
        .await
        .map_err(|e| error::in_file(path, map_sqlx("reading the schema version", e)))?;
    let applied = applied.unwrap_or_default();
    let why = match applied.cmp(&latest) {
        std::cmp::Ordering::Equal => return Ok(()),
        std::cmp::Ordering::Less if applied >= OLDEST_READ_AS_IS => return Ok(()),
        std::cmp::Ordering::Less => "open it writable once to upgrade it",
        std::cmp::Ordering::Greater => "a newer version of persist wrote it",
    };
    Err(PersistError::Unsupported {
        what: format!(
            "reading {} (schema version {applied}) for reads only: this version reads version {latest}; {why}",
            path.display()
        )
        .into(),
    })
}

/// Whether the current Tokio runtime has its time driver: Tokio panics when a timer is made
/// without one, so the probe is made here, once, where its panic (and the message the panic
/// hook prints) becomes a clear error, instead of in the writer task, where every later write
/// would fail.
fn timers_enabled() -> bool {
    std::panic::catch_unwind(|| drop(tokio::time::sleep(Duration::ZERO))).is_ok()
}

/// The write-ahead log's file of the database at `path`: SQLite's name for it.
fn wal_path(path: &Path) -> PathBuf {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

/// Opens the writer connection and brings the schema up to date.
///
/// Two processes opening a new file at the same moment both set it up: the one that loses the
/// race finds the file busy (switching it to WAL), a table another process just created, a
/// migration it just recorded, or a migration that fails because the schema it was written for
/// is gone: the other process applied that migration and newer ones meanwhile (the migrator
/// reads which migrations are applied before it takes the file's lock). That one starts over on
/// a fresh connection, where it finds what the other applied and goes on from there, for up to
/// `patience` (the busy timeout). Any other failure is answered at once.
async fn open_writer(options: &SqliteConnectOptions, patience: Duration) -> Result<sqlx::SqliteConnection> {
    let deadline = std::time::Instant::now() + patience.max(Duration::from_secs(1));
    let mut pause = Duration::from_millis(2);
    loop {
        let raced = match options.connect().await {
            Ok(mut writer) => {
                // `run_direct` is `run` without the `Acquire` indirection, whose higher-ranked
                // bound keeps this future from being `Send` (sqlx documents it as the way around).
                match MIGRATOR.run_direct(None, &mut writer, false).await {
                    Ok(()) => return Ok(writer),
                    Err(error) if error::raced_migration(&error) => map_migrate(error),
                    Err(error @ sqlx::migrate::MigrateError::ExecuteMigration(_, version))
                        if applied_elsewhere(&mut writer, version).await =>
                    {
                        map_migrate(error)
                    }
                    Err(error) => return Err(map_migrate(error)),
                }
            }
            Err(error) if error::raced(&error) => map_sqlx("opening the database", error),
            Err(error) => return Err(map_sqlx("opening the database", error)),
        };
        if std::time::Instant::now() + pause > deadline {
            return Err(raced);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Whether migration `version` is recorded as applied (by another process: this one's failed
/// and was rolled back).
async fn applied_elsewhere(conn: &mut sqlx::SqliteConnection, version: i64) -> bool {
    let applied = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM _sqlx_migrations WHERE version = ?1 AND success)")
        .bind(version)
        .fetch_one(&mut *conn)
        .await;
    matches!(applied, Ok(true))
}

/// Caps the database at `bytes` (whole pages) on the writer connection, the only one that
/// writes pages (`max_page_count` is a setting of the connection, not of the file).
async fn limit_size(writer: &mut sqlx::SqliteConnection, bytes: u64) -> Result<()> {
    let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(&mut *writer)
        .await
        .map_err(|e| map_sqlx("reading the page size", e))?;
    let pages = (bytes / page_size.max(1) as u64).clamp(1, i64::MAX as u64);
    // A pragma's value cannot be bound; `pages` is a number we computed.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("PRAGMA max_page_count = {pages}")))
        .execute(&mut *writer)
        .await
        .map_err(|e| map_sqlx("limiting the database size", e))?;
    Ok(())
}

/// The SQLite backend; see the [crate docs](crate). Clones share the writer and the read pool.
#[derive(Clone)]
pub struct SqliteBackend {
    shared: Arc<Shared>,
}

struct Shared {
    jobs: mpsc::Sender<Job>,
    readers: SqlitePool,
    /// `get`, `get_thread` and `list`, on the caller's thread (see `direct`).
    direct: direct::DirectReads,
    path: PathBuf,
    /// Asks the writer to stop (see [`SqliteBackend::close`]).
    stop: mpsc::Sender<()>,
    /// Becomes `true` once the writer has closed its connection.
    closed: watch::Receiver<bool>,
    /// The change feed's wake-ups; `None` with the feed off.
    hub: Option<FeedHub>,
    /// Tells the feed's pump this handle committed a write.
    feed_wake: Arc<Notify>,
    retention: FeedRetention,
    busy_timeout: Duration,
    /// Opened with [`SqliteBackendBuilder::read_only`]: no writer.
    read_only: bool,
}

impl fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteBackend").field("path", &self.shared.path).finish_non_exhaustive()
    }
}

impl SqliteBackend {
    /// A builder for the database at `path` with default settings.
    pub fn builder(path: impl AsRef<Path>) -> SqliteBackendBuilder {
        SqliteBackendBuilder {
            path: path.as_ref().to_owned(),
            durability: Durability::default(),
            busy_timeout: Duration::from_secs(5),
            read_connections: 4,
            max_batch: 256,
            queue_capacity: 4096,
            max_database_bytes: None,
            wal_size_limit: 16 << 20,
            check_integrity: false,
            limits: Limits { max_content_bytes: 8 << 20, max_metadata_bytes: 256 << 10 },
            feed: Some(FeedRetention::default()),
            feed_poll: Duration::from_millis(50),
            read_only: false,
        }
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
        // Reads on the caller's thread stop first: none starts once a close began.
        self.shared.direct.close();
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

    /// Hands `write` to the writer and waits for its answer. Once queued, the write is
    /// finished even if this future is dropped.
    async fn write(&self, write: Write) -> Result<Answer> {
        if self.shared.read_only {
            return Err(self.read_only());
        }
        let (reply, answer) = oneshot::channel();
        self.shared.jobs.send(Job { write, reply }).await.map_err(|_| Self::closed())?;
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

    fn capabilities(&self) -> Capabilities {
        let caps = Capabilities::new().with_durable(true).with_shared_storage(true).with_sessions(true);
        caps.with_restore(true).with_feed(self.shared.hub.is_some())
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
