//! [`SqliteBackendBuilder`]: opening a SQLite store (the file, its pragmas, the schema, the
//! reader pool and the writer), and the [`Durability`] and limits (`crate::limits`) it is opened with.

use std::path::{Path, PathBuf};
use std::time::Duration;

use persist_core::feed::FeedRetention;
use persist_core::schema::SchemaStatus;
use persist_core::{PersistError, Result};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::error::{self, map_sqlx};
use crate::limits::Limits;
use crate::migrations::{self, read_status};

mod open;

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

/// A durability by name, as a host's settings give it: `"normal"` or `"full"`.
///
/// ```
/// use persist::sqlite::Durability;
///
/// assert_eq!("full".parse::<Durability>()?, Durability::Full);
/// assert!("fast".parse::<Durability>().is_err());
/// # Ok::<_, persist::PersistError>(())
/// ```
impl std::str::FromStr for Durability {
    type Err = PersistError;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "normal" => Ok(Self::Normal),
            "full" => Ok(Self::Full),
            other => {
                Err(PersistError::invalid("durability", format!("durability {other:?}: give \"normal\" or \"full\"")))
            }
        }
    }
}

/// Configures and opens a [`SqliteBackend`](crate::SqliteBackend).
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
    /// The default settings for the database at `path` (see [`SqliteBackend::builder`](crate::SqliteBackend::builder)).
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
    /// [`SqliteBackend::check`](crate::SqliteBackend::check) for a full check of an open database.
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
    /// own retention (every few seconds, and on [`SqliteBackend::trim_feed`](crate::SqliteBackend::trim_feed)), so the
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
    /// inserts, changes or removes a message's text updates it. A removal, and a change of a
    /// message indexed, takes its old words out in the same transaction; a new text (in a store
    /// of this build's format) waits, by its row, and is indexed with others, in one write,
    /// once 128 rows wait, when the writer is idle, when the handle closes, and before any
    /// search, through any handle or process, reads the index: a search right after a write
    /// finds it.
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
}
