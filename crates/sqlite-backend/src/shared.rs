//! What every clone of a [`SqliteBackend`](crate::SqliteBackend) shares: the writer's queue, the
//! readers, the feed's wake-ups and the settings the handle was opened with. Built by the
//! builder; read by the backend's calls and the feed's pump.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use persist_core::feed::{FeedHub, FeedRetention};
use sqlx::sqlite::SqlitePool;
use tokio::sync::{Notify, mpsc, watch};

use crate::writer::Job;
use crate::{direct, lane};

pub(crate) struct Shared {
    pub(crate) jobs: mpsc::Sender<Job>,
    /// The handle's writes in `jobs` not answered yet.
    pub(crate) queued: Arc<lane::Queued>,
    /// A lone caller's inserts, on its own thread (see `lane`); `None` for reads only.
    pub(crate) lane: Option<lane::CallerLane>,
    pub(crate) readers: SqlitePool,
    /// `get`, `get_thread` and `list`, on the caller's thread (see `direct`).
    /// (An `Arc` the feed's pump holds weakly: it ends with the last handle.)
    pub(crate) direct: Arc<direct::DirectReads>,
    pub(crate) path: PathBuf,
    /// Asks the writer to stop (see [`SqliteBackend::close`]).
    pub(crate) stop: mpsc::Sender<()>,
    /// Becomes `true` once the writer has closed its connection.
    pub(crate) closed: watch::Receiver<bool>,
    /// The change feed's wake-ups; `None` with the feed off.
    pub(crate) hub: Option<FeedHub>,
    /// Tells the feed's pump this handle committed a write.
    pub(crate) feed_wake: Arc<Notify>,
    pub(crate) retention: FeedRetention,
    pub(crate) busy_timeout: Duration,
    /// Opened with [`SqliteBackendBuilder::read_only`]: no writer.
    pub(crate) read_only: bool,
    /// The search index is kept (as far as this handle knows: a search reads the file's state).
    pub(crate) search: bool,
    /// The file has the table of messages waiting for the search index (schema version 24):
    /// false only for a read-only handle on an older file.
    pub(crate) search_waiting: bool,
    /// The file's feed has what every read of the feed reads (schema version 21): false only for
    /// a read-only handle on an older file.
    pub(crate) feed_readable: bool,
    /// This store's hold on its file, which other SQLite libraries of the process are kept off.
    pub(crate) _hold: crate::in_process::Hold,
}
