//! The write-ahead log: checkpoints that copy it back into the database file on a connection
//! of their own (asked for by the writer and the lane), and the limit its file is cut back to.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::{Connection, SqliteConnection};
use tokio::sync::mpsc;

use crate::gate::Gate;

/// Writes committed between two requests for a checkpoint: about 1 000 log pages (a write
/// adds 4 to 5), SQLite's own default. A log four times longer made a lone caller's adds
/// ≈ 30% slower (the kernel's copies into a log no longer in the CPU's cache).
pub(crate) const CHECKPOINT_EVERY: usize = 256;

/// Copies the write-ahead log back into the database file on its own connection, whenever the
/// writer or the lane asks, so neither stalls on it: a `PASSIVE` checkpoint runs alongside the
/// writes and reads; then a log whose file is over its limit is cut back (see [`WalLimit`]).
/// Ends when the writer ends (the lane's sender is gone by then, or goes with it): it is then
/// the last connection that writes, and leaves the log copied back and empty.
pub(crate) async fn checkpointer(
    mut conn: SqliteConnection,
    mut requests: mpsc::Receiver<Checkpoint>,
    wal: WalLimit,
    gate: Arc<Gate>,
) {
    // Nothing here may wait on a lock: a checkpoint that finds one taken is tried again later.
    let _ = sqlx::raw_sql("PRAGMA busy_timeout = 0").execute(&mut conn).await;
    while let Some(request) = requests.recv().await {
        let mut copied = checkpoint(&mut conn).await;
        if request == Checkpoint::Whole {
            // A copy covers what the log held when it began: the lane's writes meanwhile added
            // frames. Those few are copied with the writes held off (the gate), so the log is
            // copied back whole and the next write starts it over at its beginning. Under a
            // steady caller it otherwise never does, and grows until it is cut back (0.6× the
            // adds a second that way).
            gate.take().await;
            copied = checkpoint(&mut conn).await;
            gate.give_back();
        }
        // Only when writes have stopped: emptying the file takes the write lock, and under
        // load the writer would wait for it (a 20 ms stall at every checkpoint).
        if request == Checkpoint::Trim {
            wal.trim(&mut conn, copied).await;
        }
    }
    // Every write is in: the log is copied back whole and emptied, so the database file alone
    // holds the store. (Closing the last connection does the same, but not when that
    // connection only reads.)
    empty_the_log(&mut conn, &wal).await;
    let _ = conn.close().await;
}

/// Copies what the write-ahead log holds into the database file, as far as readers allow
/// (`PASSIVE`). A failed checkpoint loses nothing (the log still holds every commit); the next
/// one, or SQLite's own automatic checkpoint, catches up. Answers whether every frame of the log
/// is in the database file now.
pub(crate) async fn checkpoint(conn: &mut SqliteConnection) -> bool {
    // (busy, frames in the log, frames copied back).
    let copied: Option<(i64, i64, i64)> =
        sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)").fetch_optional(conn).await.ok().flatten();
    matches!(copied, Some((0, frames, done)) if frames == done)
}

/// What the writer asks of the checkpointer connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checkpoint {
    /// Copy the log back (writes are queued: the writer goes on meanwhile).
    Copy,
    /// No write came for a while: copy the log back and, if its file is over the limit, empty it.
    Trim,
    /// Writes came from the lane: copy the log back, then what the lane's writes added
    /// meanwhile with the writes held off, so that the log starts over.
    Whole,
}

/// How large the write-ahead log's file may stay once the load that grew it is over.
///
/// When no write has come for [`IDLE`](Self::IDLE), the writer looks at the file's size and,
/// if it is over the limit, asks the checkpointer, which copies the log back and, if it all
/// went into the database file, empties it (`wal_checkpoint(TRUNCATE)`) without waiting for
/// any lock: a reader still on an older snapshot, or a write under way, makes it give up until
/// the next time. No write ever waits for it.
///
/// Not SQLite's `journal_size_limit`, which cuts the file at every restart of the log: under
/// load the log grows again at once, and regrowing the file cost 64 callers a quarter of their
/// writes a second (33–36k against 45–50k, alternating runs). Nor a trim after every checkpoint
/// under load: the truncation takes the write lock, and the writer slept ≈ 20 ms behind it
/// (28–34k, p99 21 ms).
pub(crate) struct WalLimit {
    pub(crate) path: std::path::PathBuf,
    pub(crate) bytes: u64,
    /// The writer connection's busy timeout, set back after a cut.
    pub(crate) busy_timeout: std::time::Duration,
    /// Set by the lane when it finds the log over the limit, cleared once it is cut back (or
    /// found under the limit): meanwhile writes go to the writer, which cuts it back between
    /// two of its own writes, as it always did under load. (A cut by the second connection
    /// raced the lane's back-to-back transactions for the file's lock, then the writer's own
    /// cut, and the log grew past four times its limit.)
    pub(crate) over_limit: Arc<AtomicBool>,
}

impl WalLimit {
    /// How long the writer waits without a write before it looks at the log's size.
    pub(crate) const IDLE: std::time::Duration = std::time::Duration::from_secs(1);

    /// How long a cut under load waits for the readers still on the log's frames.
    const CUT_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

    /// The same limit, for the checkpointer or the lane.
    pub(crate) fn share(&self) -> Self {
        Self {
            path: self.path.clone(),
            bytes: self.bytes,
            busy_timeout: self.busy_timeout,
            over_limit: self.over_limit.clone(),
        }
    }

    /// Whether the lane found the log over the limit and it is not cut back yet.
    pub(crate) fn marked_over(&self) -> bool {
        self.over_limit.load(Ordering::Relaxed)
    }

    /// Looks at the log's size (for the lane); over the limit, marks it so (see
    /// [`over_limit`](Self::over_limit)).
    pub(crate) fn check(&self) {
        if self.over() {
            self.over_limit.store(true, Ordering::Relaxed);
        }
    }

    pub(crate) fn mark_under(&self) {
        self.over_limit.store(false, Ordering::Relaxed);
    }

    /// Copies the log back and empties it on the writer's connection, between two groups,
    /// waiting up to [`CUT_WAIT`](Self::CUT_WAIT) for readers still on its frames. Readers
    /// that start meanwhile read the database file (the log is copied back whole, and no write
    /// adds to it while the writer waits), so they do not hold it up: readers that come and go
    /// without pause no longer keep the log growing. A reader holding one snapshot longer than
    /// the wait leaves it for the next cut.
    /// Answers whether the log was emptied.
    pub(crate) async fn cut_back(&self, conn: &mut SqliteConnection) -> bool {
        let wait = format!("PRAGMA busy_timeout = {}", Self::CUT_WAIT.as_millis());
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(wait)).execute(&mut *conn).await;
        // One row: (busy, log frames, frames copied); busy 0 means the log was emptied.
        let done: Result<(i64, i64, i64), sqlx::Error> =
            sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&mut *conn).await;
        let back = format!("PRAGMA busy_timeout = {}", self.busy_timeout.as_millis());
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(back)).execute(&mut *conn).await;
        let cut = matches!(done, Ok((0, _, _)));
        if cut {
            self.mark_under();
        }
        cut
    }

    pub(crate) fn over(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|meta| meta.len() > self.bytes)
    }

    /// Empties a log that is over the limit and `copied` back whole.
    pub(crate) async fn trim(&self, conn: &mut SqliteConnection, copied: bool) {
        if copied && self.over() {
            let done: Result<(i64, i64, i64), sqlx::Error> =
                sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(conn).await;
            if matches!(done, Ok((0, _, _))) {
                self.mark_under();
            }
        }
    }
}

/// Copies the write-ahead log back and empties it, trying again for about half a second while
/// another connection holds what it needs (a checkpoint running alongside, a reader's snapshot:
/// a checkpoint that meets another one is refused at once, whatever the busy timeout).
pub(crate) async fn empty_the_log(conn: &mut SqliteConnection, wal: &WalLimit) {
    for _ in 0..50 {
        // One row: (busy, log frames, frames checkpointed); busy 0 means the log was emptied.
        let done: Result<(i64, i64, i64), sqlx::Error> =
            sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&mut *conn).await;
        if matches!(done, Ok((0, _, _))) {
            wal.mark_under();
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
