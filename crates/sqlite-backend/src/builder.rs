//! [`SqliteBackendBuilder`]: opening a SQLite store (the file, its pragmas, the schema, the
//! reader pool and the writer), and the [`Durability`] and limits it is opened with.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use persist_core::feed::{FeedHub, FeedRetention};
use persist_core::schema::SchemaStatus;
use persist_core::{PersistError, Result};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{Notify, mpsc, watch};

use crate::error::map_sqlx;

use crate::migrations::{self, check_schema_version, open_writer, read_status};
use crate::shared::Shared;
use crate::{SqliteBackend, check, direct, error, feed, lane, write, writer};

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
    pub(crate) max_content_bytes: usize,
    pub(crate) max_metadata_bytes: usize,
    /// Whether rows are written in their packed form: the store's format level is 1 (see
    /// `migrations/0015`), read when the handle opens.
    pub(crate) packed: bool,
    /// How long a removed message's idempotency key is remembered (see `persist::spent`).
    pub(crate) key_retention: Duration,
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
    migrate: bool,
    search_index: Option<bool>,
}

impl SqliteBackendBuilder {
    /// The default settings for the database at `path` (see [`SqliteBackend::builder`]).
    pub(crate) fn new(path: &Path) -> Self {
        SqliteBackendBuilder {
            path: path.to_owned(),
            durability: Durability::default(),
            busy_timeout: Duration::from_secs(5),
            read_connections: 4,
            max_batch: 256,
            queue_capacity: 4096,
            max_database_bytes: None,
            wal_size_limit: 16 << 20,
            check_integrity: false,
            limits: Limits {
                max_content_bytes: 8 << 20,
                max_metadata_bytes: 256 << 10,
                packed: false,
                key_retention: persist_core::spent::DEFAULT_KEY_RETENTION,
            },
            feed: Some(FeedRetention::default()),
            feed_poll: Duration::from_millis(50),
            read_only: false,
            migrate: true,
            search_index: None,
        }
    }

    /// Opens the file for reads only (default `false`): nothing is ever written to it, not even
    /// the change feed's state or a migration, so a file on a read-only filesystem, or one this
    /// process may not write, can be read. Writes are refused (`Rejected`), as are a feed's
    /// retention and subscriptions (feed reads work while the file's feed records). A file that
    /// does not exist is not created; one whose schema lacks a change reads use (version 16
    /// gave the change feed its second table), or is newer, is refused (`Unsupported`: open
    /// it writable once to upgrade it). Where
    /// SQLite cannot make the file's WAL index (a read-only filesystem) and no log lies beside
    /// the file, it is read as immutable (nobody can change it there; a log beside it, which
    /// may hold commits, makes the open fail instead).
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Whether opening creates the file and applies the migrations it lacks (default `true`).
    /// With `false`, the schema is not changed: opening fails with `Unsupported` unless the file
    /// exists and is exactly at this build's schema version, saying whether it is behind (which
    /// migrations are pending: apply them with `persist migrate up`, or open it once with
    /// `true`) or ahead (a newer build migrated it). For deployments where upgrading the schema
    /// is a step of its own (see `docs/migrations.md`).
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Where the file's schema stands against this build's migrations, read without changing
    /// anything (a file that does not exist is at version 0, everything pending).
    ///
    /// # Errors
    ///
    /// `Backend` when the file cannot be read or is not a SQLite database.
    pub async fn schema_status(self) -> Result<SchemaStatus> {
        let status = read_status(&self.path, self.busy_timeout).await?;
        Ok(status.unwrap_or_else(|| SchemaStatus::from_records([], migrations::known())))
    }

    /// Has a store migrated from an earlier version written in this build's packed form from
    /// now on (see [`SchemaStatus::unfinished`]): run it once no instance of an earlier build
    /// uses the file (an earlier build cannot read that form). The feed's events take their
    /// packed form at once (the file's triggers read the format at each write: from then on
    /// they are rows of `persist_events`, which only this build reads); a handle
    /// already open writes contents in the form it opened with until it is opened again. What
    /// `persist migrate finish` does; a store this build created needs none. Answers the status
    /// after.
    ///
    /// # Errors
    ///
    /// `Unsupported` when the file does not exist or is not at this build's schema version
    /// (apply the pending migrations first); `Backend` when it cannot be read or written.
    pub async fn finish(self) -> Result<SchemaStatus> {
        let shown = self.path.display().to_string();
        match read_status(&self.path, self.busy_timeout).await? {
            Some(status) => status.require_current(&shown)?,
            None => {
                return Err(PersistError::Unsupported {
                    what: format!("{shown} does not exist: there is no store to finish").into(),
                });
            }
        }
        let options = SqliteConnectOptions::new().filename(&self.path).busy_timeout(self.busy_timeout);
        let mut conn =
            options.connect().await.map_err(|e| error::in_file(&self.path, map_sqlx("opening the database", e)))?;
        let raised = migrations::raise_format(&mut conn).await;
        let _ = conn.close().await;
        raised.map_err(|e| error::in_file(&self.path, e))?;
        self.schema_status().await
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

    /// Largest the write-ahead log's file stays (default 16 MiB). Under load, the writer (and a
    /// lone caller's lane) looks at its size every 32 writes and, when it is over, copies it
    /// back and empties it between two writes, waiting up to 100 ms for readers still on its
    /// frames (readers that start
    /// meanwhile read the database file), so readers coming and going without pause do not keep
    /// it growing. Behind a read that holds one snapshot longer, the log grows past the limit;
    /// after a second without writes, a second connection copies the log back and empties the
    /// file, without waiting for any lock. Without a limit, the file would keep its largest size
    /// for good. One transaction larger than the limit grows it past the limit too: the search
    /// index's segment merges (FTS5) write up to several MB in one now and then, under a steady
    /// load of large messages.
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

    /// How long the idempotency key of a removed message is remembered after it went (default
    /// [`DEFAULT_KEY_RETENTION`](persist_core::spent::DEFAULT_KEY_RETENTION), 24 hours): until
    /// then, a retry of the request that wrote it answers what its first call answered and
    /// writes nothing (see [`spent`](persist_core::spent)). Applies to keys spent from then on.
    pub fn key_retention(mut self, retention: Duration) -> Self {
        self.limits.key_retention = retention;
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

    /// Turns the full-text search index on or off (see `persist::search`): every write that
    /// inserts, changes or removes a message's text updates it in the same transaction.
    ///
    /// The setting is the file's (on for a new file): a handle that does not call this keeps it
    /// as it is, so a tool opening the file for a moment (the `persist` command line) never
    /// turns it back on or off. Opening with `false` empties the index and stops keeping it
    /// (writes then cost nothing for it), and a search through any handle answers
    /// `Unsupported` saying so; opening with `true` again rebuilds it from every message, in the
    /// transaction that opens the file (as long as building an index takes: about a second per
    /// 100,000 messages).
    pub fn search_index(mut self, keep: bool) -> Self {
        self.search_index = Some(keep);
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
    /// untouched); `Unsupported` when it was written by a newer version of this crate (or, with
    /// `migrate(false)`, is missing or not at this build's version), or when
    /// the runtime has no time driver.
    pub async fn open(self) -> Result<SqliteBackend> {
        if !self.migrate {
            // Read on a connection that changes nothing (not even the journal mode) before the
            // file is opened as usual.
            let shown = self.path.display().to_string();
            match read_status(&self.path, self.busy_timeout).await? {
                Some(status) => status.require_current(&shown)?,
                None => {
                    return Err(PersistError::Unsupported {
                        what: format!(
                            "{shown} does not exist, and `migrate(false)` does not create it (`persist migrate up` \
                             does)"
                        )
                        .into(),
                    });
                }
            }
        }
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
        // What searches through this handle will find: none in a file of a version before
        // search, none while the file's index is off.
        let search = sqlx::query_scalar::<_, bool>("SELECT enabled FROM persist_search_state")
            .fetch_one(&readers)
            .await
            .unwrap_or(false);
        // Whether its feed can be read as this version reads it (an older file's cannot).
        let feed_readable = sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info('persist_events') WHERE name = 'resource')",
        )
        .fetch_one(&readers)
        .await
        .unwrap_or(false);
        // No writer: its queue is closed, and it counts as stopped.
        let (jobs, _) = mpsc::channel(1);
        let (stop, _) = mpsc::channel(1);
        let (_, closed) = watch::channel(true);
        let parallel = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let idle = (self.read_connections as usize).max(parallel);
        let direct = direct::DirectReads::new(path.clone(), self.busy_timeout, idle).immutable(immutable);
        let shared = Arc::new(Shared {
            jobs,
            queued: Arc::default(),
            lane: None,
            readers,
            direct: Arc::new(direct),
            path,
            stop,
            closed,
            hub: None,
            feed_wake: Arc::new(Notify::new()),
            retention: self.feed.unwrap_or_default(),
            busy_timeout: self.busy_timeout,
            read_only: true,
            search,
            feed_readable,
        });
        Ok(SqliteBackend { shared })
    }

    async fn open_writable(mut self) -> Result<SqliteBackend> {
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
            .create_if_missing(self.migrate)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(self.busy_timeout)
            .foreign_keys(true);
        // A store this opening creates is written in this build's format from the start.
        let new = self.migrate && migrations::is_new(&self.path, self.busy_timeout).await;
        let mut writer = if self.migrate {
            open_writer(&options, self.busy_timeout).await?
        } else {
            // Checked current before (see `open`).
            options.connect().await.map_err(|e| map_sqlx("opening the database", e))?
        };
        if self.check_integrity {
            let damage = check::quick(&mut writer).await?;
            if !damage.is_empty() {
                return Err(PersistError::Backend {
                    message: format!("the database file is damaged (left untouched): {}", damage.join("; ")).into(),
                    source: None,
                });
            }
        }
        // Reads and writes see `persist_messages` alone: the messages of an earlier version are
        // copied there before this handle serves (by the build that migrates the store; one
        // that does not refused a store whose copy is not complete, as one behind, in `open`).
        if self.migrate {
            migrations::copy_messages(&mut writer).await?;
        }
        if new {
            migrations::raise_format(&mut writer).await?;
        } else if self.migrate {
            // A finish stopped while it emptied `messages` goes on.
            migrations::drop_messages(&mut writer).await?;
        }
        self.limits.packed =
            migrations::format_level(&mut writer).await?.is_some_and(|level| level >= migrations::COMPACT_CONTENTS);
        sqlx::raw_sql(write::INBOX).execute(&mut writer).await.map_err(|e| map_sqlx("preparing the writer", e))?;
        // Turned on again after a handle turned it off, the feed records a gap: the writes made
        // meanwhile have no events, so a reader resuming from before is told (`FeedGap`).
        sqlx::query(
            "UPDATE persist_feed_state \
                SET trimmed = CASE WHEN ?1 AND NOT enabled \
                                   THEN max(trimmed, coalesce((SELECT max(position) FROM persist_feed), 0), \
                                            coalesce((SELECT max(position) FROM persist_events), 0)) + 1 \
                                   ELSE trimmed END, \
                    enabled = ?1",
        )
        .bind(self.feed.is_some())
        .execute(&mut writer)
        .await
        .map_err(|e| map_sqlx("turning the change feed on or off", e))?;
        let search = crate::search::keep_search_index(&mut writer, self.search_index).await?;
        let max_page_count = match self.max_database_bytes {
            Some(bytes) => Some(limit_size(&mut writer, bytes).await?),
            None => None,
        };
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
        let gate = Arc::new(crate::gate::Gate::default());
        let queued = Arc::new(lane::Queued::default());
        let wal = crate::wal::WalLimit {
            path: wal_path(&self.path),
            bytes: self.wal_size_limit,
            busy_timeout: self.busy_timeout,
            over_limit: Arc::default(),
        };
        let synchronous = match self.durability {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        };
        let settings = lane::LaneSettings {
            path: self.path.clone(),
            synchronous,
            max_page_count,
            limits: self.limits,
            wal: wal.share(),
            busy_timeout: self.busy_timeout,
        };
        let lane = Arc::new(lane::Lane::open(settings, gate.clone(), queued.clone(), checkpoints.clone())?);
        let checkpointer_wal = wal.share();
        let settings = writer::Settings {
            limits: self.limits,
            max_batch: self.max_batch,
            wal,
            gate: gate.clone(),
            // With `Durability::Full` a commit waits for the disk: not on the writer task's
            // thread, which is the runtime's.
            lane: (self.durability == Durability::Normal).then(|| lane.clone()),
        };
        let wal = checkpointer_wal;
        tokio::spawn(async move {
            let checkpointer = tokio::spawn(crate::wal::checkpointer(checkpointer, requests, wal, gate));
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
        let lane = Some(match self.durability {
            Durability::Normal => lane::CallerLane::OnCaller(lane),
            Durability::Full => lane::CallerLane::InPlace(lane),
        });
        let shared = Arc::new(Shared {
            jobs,
            queued,
            lane,
            readers,
            direct: Arc::new(direct),
            path: self.path.clone(),
            stop,
            closed,
            hub: hub.clone(),
            feed_wake: feed_wake.clone(),
            retention,
            busy_timeout: self.busy_timeout,
            read_only: false,
            search,
            feed_readable: true,
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
            tokio::spawn(pump.run(Arc::downgrade(&shared.direct), head));
        }
        Ok(SqliteBackend { shared })
    }
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

/// Caps the database at `bytes` (whole pages) on the writer connection; answers the cap in
/// pages, which the lane's connection, the other one that writes pages, sets too
/// (`max_page_count` is a setting of the connection, not of the file).
async fn limit_size(writer: &mut sqlx::SqliteConnection, bytes: u64) -> Result<u64> {
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
    Ok(pages)
}
