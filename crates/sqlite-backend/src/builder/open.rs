//! Opening a store as its [`SqliteBackendBuilder`] says: for reads only, or writable (the
//! file checked and migrated, then the reader pool, the writer task, its lane and the feed).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use persist_core::feed::FeedHub;
use persist_core::{PersistError, Result};
use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::{Notify, mpsc, watch};

use super::{Durability, SqliteBackendBuilder};
use crate::error::map_sqlx;
use crate::migrations::{self, check_schema_version, open_writer, read_status};
use crate::shared::Shared;
use crate::{SqliteBackend, check, direct, error, feed, lane, write, writer};

impl SqliteBackendBuilder {
    /// Opens (creating if needed) the database and applies the schema. Must be called within a
    /// Tokio runtime with its time driver (as `#[tokio::main]`, `#[tokio::test]` and
    /// `Builder::enable_all` give): it starts the writer task, which keeps time to notice when
    /// writes have stopped.
    ///
    /// # Errors
    ///
    /// `Backend` when the file cannot be opened or is not a SQLite database (it is left
    /// untouched); `Unsupported` when the file is open in this process through another SQLite
    /// library (Python's `sqlite3`, say: two libraries in one process do not see each other's
    /// locks and corrupt the file; see [`is_open_in_process`](crate::is_open_in_process)), when it was written by a newer version of this crate (or, with
    /// `migrate(false)`, is missing or not at this build's version), or when
    /// the runtime has no time driver.
    pub async fn open(self) -> Result<SqliteBackend> {
        // One store of this process opens at a time, so that a store still opening (its
        // descriptors on the file, its hold not yet recorded) is never taken by another for a
        // second SQLite library: two worker threads of a Node app opening one file at once.
        let _opening = crate::in_process::OPENING.lock().await;
        crate::in_process::check(&self.path).await?;
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
        // Whether a search has messages waiting for the index to look at (an older file has none).
        let search_waiting = sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'persist_search_pending')",
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
        let hold = crate::in_process::Hold::new(&path);
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
            search_waiting,
            feed_readable,
            _hold: hold,
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
        let direct = direct::DirectReads::new(self.path.clone(), self.busy_timeout, idle).with_lane(lane.clone());
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
            search_waiting: true,
            feed_readable: true,
            _hold: crate::in_process::Hold::new(&self.path),
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
