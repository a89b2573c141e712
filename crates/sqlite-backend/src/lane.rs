//! The caller's lane: a lone caller's `add`, `reserve` or `append_turn` written on the caller's
//! thread.
//!
//! The writer task owns a sqlx connection, and sqlx runs each SQLite connection on a worker
//! thread of its own: a write handed from the caller to the writer task, then to that thread
//! and back, crossed threads four times, and a lone caller's add spent more time waking threads
//! than in SQLite (docs/performance-history/04-sqlite-one-caller-and-reads.md, "SQLite, one
//! caller, against rusqlite"). The lane is a second write connection (rusqlite, as the direct
//! reads) that a caller uses itself when nobody else is writing: no write of this handle is
//! queued for the writer and the writer holds no transaction (the [`Gate`]). Then the caller
//! runs the insert's statements where it polls, like a `Mutex` taken briefly, and no thread is
//! woken. Under load, the queue is never empty and writes go to the writer, which commits them
//! in groups as before.
//!
//! The lane answers only the common case: the message (or the turn's messages, in one
//! transaction) written, and a request refused before anything is written. A repeat, a refusal
//! that needs diagnosing, the file busy (another process writing: the lane never waits for a
//! lock, its busy timeout is zero), a failure before `COMMIT`: it rolls back and the write goes
//! to the writer, which answers it as any write. A failed `COMMIT` is answered here, as the
//! writer would (made again, an add with a generated id could be made twice). Content over 64
//! KiB, a turn of more than 16 messages or one carrying embeddings goes to the writer. The lane
//! never copies the log back itself. With [`Durability::Full`] every commit waits for the disk,
//! so the caller's thread first tells the runtime (`block_in_place`, which moves the thread's
//! other tasks to another thread), on a multi-thread runtime only; and the writer never commits
//! its groups on the lane's connection, which would hold the runtime's thread it runs on.
//!
//! [`Durability::Full`]: crate::Durability::Full

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use persist_core::{PersistArgs, PersistError};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::mpsc;

use crate::gate::{Gate, Held};
use crate::limits::Limits;
use crate::wal::{CHECKPOINT_EVERY, Checkpoint, WalLimit};
use crate::write::{Answer, GroupConnection, INBOX, OnLane, Write, insert_on_lane, records_on_lane, turn_on_lane};

/// Lane writes between two looks at the log's size (one `stat` of its file): a log over its
/// limit is handed to the writer at most this many writes late.
const SIZE_CHECK_EVERY: usize = 8;

/// The largest content (JSON bytes) a lone caller writes on the lane; larger ones go to the
/// writer, whose work is not done on the caller's thread.
const LANE_CONTENT_MAX: usize = 64 << 10;

/// The most messages of a turn the lane writes (each at most [`LANE_CONTENT_MAX`]): a longer
/// turn goes to the writer, off the caller's thread.
const LANE_TURN_MAX: usize = 16;

/// Whether a `write_records` is small enough for the lane: at most [`LANE_TURN_MAX`] changes of
/// at most [`LANE_CONTENT_MAX`] bytes of values in all (a delete of spaces or a sweep, which may
/// delete many rows, goes to the writer).
fn records_fit(write: &persist_core::records::WriteRecords) -> bool {
    use persist_core::records::RecordWrite;
    let mut bytes = 0;
    write.writes.len() <= LANE_TURN_MAX
        && write.writes.iter().all(|change| match change {
            RecordWrite::Put { value, .. } | RecordWrite::Insert { value, .. } => {
                bytes += value.len();
                bytes <= LANE_CONTENT_MAX
            }
            RecordWrite::Touch { .. } | RecordWrite::Delete { .. } => true,
            _ => false,
        })
}

/// Counts the handle's writes queued for the writer and not yet answered: while any is, a
/// write does not take the lane, so it is never committed before a write queued earlier (one
/// whose caller stopped waiting, say).
#[derive(Debug, Default)]
pub(crate) struct Queued(AtomicUsize);

/// One write counted in [`Queued`] until it is dropped (after its answer is sent, or with the
/// queue when the writer is gone).
#[derive(Debug)]
pub(crate) struct Ticket(Arc<Queued>);

impl Ticket {
    pub(crate) fn new(queued: &Arc<Queued>) -> Self {
        queued.0.fetch_add(1, Ordering::SeqCst);
        Self(queued.clone())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How a caller uses the lane.
pub(crate) enum CallerLane {
    /// Where the caller polls: a commit does not wait for the disk (`Durability::Normal`).
    OnCaller(Arc<Lane>),
    /// A commit waits for the disk (`Durability::Full`): on the caller's thread, told to the
    /// runtime first (`block_in_place`: the thread's other tasks move to another), so no other
    /// task waits behind the disk and the caller is not woken by another thread. Only on a
    /// multi-thread runtime; elsewhere the writer takes the write.
    InPlace(Arc<Lane>),
}

impl CallerLane {
    /// See [`Lane::try_write`].
    pub(crate) fn try_write(&self, write: &Write) -> Option<Result<Answer, PersistError>> {
        match self {
            Self::OnCaller(lane) => lane.try_write(write),
            Self::InPlace(lane) => {
                use tokio::runtime::{Handle, RuntimeFlavor};
                let multi = Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
                if !multi || !lane.may_take() {
                    return None;
                }
                tokio::task::block_in_place(|| lane.try_write(write))
            }
        }
    }

    pub(crate) fn close(&self) {
        self.lane().close();
    }

    pub(crate) fn lane(&self) -> &Arc<Lane> {
        match self {
            Self::OnCaller(lane) | Self::InPlace(lane) => lane,
        }
    }
}

/// What the lane needs besides its connection.
pub(crate) struct LaneSettings {
    pub(crate) path: PathBuf,
    pub(crate) synchronous: &'static str,
    pub(crate) max_page_count: Option<u64>,
    pub(crate) limits: Limits,
    pub(crate) wal: WalLimit,
    /// Waited for while the connection is set up (reading the schema may meet a lock), zero
    /// afterwards.
    pub(crate) busy_timeout: std::time::Duration,
}

/// The lane's connection and the channel to the checkpointer, both gone once the handle closes
/// (the checkpointer ends when every sender of its channel is gone).
struct Open {
    conn: Connection,
    checkpoints: mpsc::Sender<Checkpoint>,
}

/// See the [module docs](self).
pub(crate) struct Lane {
    open: Mutex<Option<Open>>,
    gate: Arc<Gate>,
    queued: Arc<Queued>,
    limits: Limits,
    wal: WalLimit,
    /// Writes committed on the lane since it last asked for a checkpoint, and since it last
    /// looked at the log's size.
    since_checkpoint: AtomicUsize,
    since_size_check: AtomicUsize,
    /// Transactions committed on the lane (a caller's insert, or a group of the writer's).
    committed: AtomicU64,
}

impl Lane {
    /// Opens the lane's connection, set up as the writer's (synchronous, `secure_delete`, the
    /// size cap), a log copied back by the checkpointer and never by a commit, and no busy wait
    /// once set up.
    pub(crate) fn open(
        settings: LaneSettings,
        gate: Arc<Gate>,
        queued: Arc<Queued>,
        checkpoints: mpsc::Sender<Checkpoint>,
    ) -> Result<Self, PersistError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&settings.path, flags).map_err(opening)?;
        conn.busy_timeout(settings.busy_timeout).map_err(opening)?;
        let mut setup = format!("PRAGMA foreign_keys = ON; PRAGMA synchronous = {};", settings.synchronous);
        if let Some(pages) = settings.max_page_count {
            setup.push_str(&format!(" PRAGMA max_page_count = {pages};"));
        }
        conn.execute_batch(&setup).map_err(opening)?;
        // The writer's settings (`secure_delete`) and its inbox, for the groups the writer
        // commits here; then no automatic checkpoint (a commit would copy the log back on the
        // caller's thread, waiting for the disk), a smaller cache than the writer's (inserts
        // touch few pages), and no wait for a lock.
        conn.execute_batch(INBOX).map_err(opening)?;
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0; PRAGMA cache_size = -16384; PRAGMA busy_timeout = 0;")
            .map_err(opening)?;
        // Its own inserts' statements and the reads' (see `try_read`), each prepared once.
        conn.set_prepared_statement_cache_capacity(64);
        Ok(Self {
            open: Mutex::new(Some(Open { conn, checkpoints })),
            gate,
            queued,
            limits: settings.limits,
            wal: settings.wal,
            since_checkpoint: AtomicUsize::new(0),
            since_size_check: AtomicUsize::new(0),
            committed: AtomicU64::new(0),
        })
    }

    /// Writes `write` on the caller's thread if it is an `add`, a `reserve` or an `append_turn`
    /// (of at most [`LANE_TURN_MAX`] messages) and nobody else is writing, and answers it;
    /// `None` otherwise, or when the lane declines it: the writer is to apply it.
    pub(crate) fn try_write(&self, write: &Write) -> Option<Result<Answer, PersistError>> {
        let fits = |content: &persist_core::Content| content.json_len() <= LANE_CONTENT_MAX;
        let args = match write {
            Write::Persist(args @ PersistArgs::Add(add)) if fits(&add.content) => args,
            Write::Persist(args @ PersistArgs::Reserve(_)) => args,
            Write::Persist(args @ PersistArgs::AppendTurn(turn))
                if turn.messages.len() <= LANE_TURN_MAX && turn.messages.iter().all(|m| fits(&m.content)) =>
            {
                args
            }
            Write::Persist(args @ PersistArgs::WriteRecords(write)) if records_fit(write) => args,
            _ => return None,
        };
        if !self.may_take() || !self.gate.try_take() {
            return None;
        }
        // Given back however this ends, a panic included: the writer waits for it.
        let _held = Held(&self.gate);
        let outcome = {
            // A read on the connection (see `try_read`): the writer takes this write.
            let open = self.take_open()?;
            match open.as_ref() {
                Some(open) => {
                    end_leftover_transaction(&open.conn);
                    let outcome = match args {
                        PersistArgs::AppendTurn(turn) => turn_on_lane(&open.conn, turn, &self.limits),
                        PersistArgs::WriteRecords(write) => records_on_lane(&open.conn, write),
                        args => insert_on_lane(&open.conn, args, &self.limits),
                    };
                    if matches!(outcome, OnLane::Answered(Ok(_))) {
                        self.after_commit(&open.checkpoints);
                    }
                    outcome
                }
                None => OnLane::Declined,
            }
        };
        match outcome {
            OnLane::Answered(answer) => Some(answer),
            OnLane::Declined => None,
        }
    }

    /// Runs `read` on the lane's connection if nobody is using it, and gives `read` back when
    /// somebody is (a write under way, the writer's group, another read) or the lane is closed.
    ///
    /// The connection that wrote last keeps its pages: SQLite drops a connection's whole page
    /// cache when another connection has written since its last transaction, so a read on a
    /// read connection after each of this handle's writes read every page again from the file.
    /// A read here waits for a lock as the read connections do (`busy_timeout`); the lane's
    /// writes never wait, so the wait is set for the read alone.
    ///
    /// Neither a write nor the writer waits for a read here: a write that finds the connection
    /// in use goes to the writer, and the writer commits on its own connection.
    pub(crate) fn try_read<T, F: FnOnce(&Connection) -> T>(&self, busy_timeout: Duration, read: F) -> Result<T, F> {
        let Some(open) = self.take_open() else { return Err(read) };
        let Some(open) = open.as_ref() else { return Err(read) };
        end_leftover_transaction(&open.conn);
        if open.conn.busy_timeout(busy_timeout).is_err() {
            return Err(read);
        }
        let answer = read(&open.conn);
        let _ = open.conn.busy_timeout(Duration::ZERO);
        Ok(answer)
    }

    /// The connection, unless somebody is using it.
    fn take_open(&self) -> Option<std::sync::MutexGuard<'_, Option<Open>>> {
        match self.open.try_lock() {
            Ok(open) => Some(open),
            // Nothing panics while holding it but a write, which leaves no transaction open
            // (see `end_leftover_transaction`).
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Whether a write could take the lane now: the log under its limit, no write queued for
    /// the writer, nobody holding the gate (a look only: [`try_write`](Self::try_write) takes
    /// the gate).
    fn may_take(&self) -> bool {
        !self.wal.marked_over() && self.queued.0.load(Ordering::SeqCst) == 0 && !self.gate.is_held()
    }

    /// Asks the checkpointer to copy the log back whole every [`CHECKPOINT_EVERY`] writes
    /// ([`Checkpoint::Whole`]: the caller does not wait for it), and looks at the log's size
    /// every [`SIZE_CHECK_EVERY`] writes: over its limit, writes go to the writer until it has cut it
    /// back (see [`WalLimit::over_limit`]).
    fn after_commit(&self, checkpoints: &mpsc::Sender<Checkpoint>) {
        self.committed.fetch_add(1, Ordering::Relaxed);
        if self.since_checkpoint.fetch_add(1, Ordering::Relaxed) + 1 >= CHECKPOINT_EVERY {
            self.since_checkpoint.store(0, Ordering::Relaxed);
            let _ = checkpoints.try_send(Checkpoint::Whole);
        }
        if self.since_size_check.fetch_add(1, Ordering::Relaxed) + 1 >= SIZE_CHECK_EVERY {
            self.since_size_check.store(0, Ordering::Relaxed);
            self.wal.check();
        }
    }

    /// Closes the lane's connection (waiting for a write under way on it); later writes go to
    /// the writer.
    pub(crate) fn close(&self) {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).take();
    }
}

/// Rolls back a transaction left open on the lane's connection: only a panic between `BEGIN`
/// and its end leaves one (the lock is then taken over, poisoned), and the next write must not
/// run inside it.
fn end_leftover_transaction(conn: &Connection) {
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
}

impl crate::direct::Borrowed for Lane {
    fn try_read(&self, busy_timeout: Duration, read: &mut dyn FnMut(&Connection)) {
        let _ = Lane::try_read(self, busy_timeout, read);
    }
}

fn opening(error: rusqlite::Error) -> PersistError {
    PersistError::backend("opening the caller's write connection", error)
}

impl GroupConnection for Lane {
    /// Runs `use_it` on the lane's connection, for the writer (which holds the [`Gate`]);
    /// `None` once the lane is closed.
    /// While a read uses the connection (see [`Lane::try_read`]), `None` too: the writer
    /// commits on its own connection rather than wait for the read on the runtime's thread.
    fn with<T>(&self, use_it: impl FnOnce(&Connection) -> T) -> Option<T> {
        self.take_open()?.as_ref().map(|open| {
            end_leftover_transaction(&open.conn);
            use_it(&open.conn)
        })
    }

    /// Counts a group the writer committed on the lane's connection.
    fn count_commit(&self) {
        self.committed.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
impl Lane {
    /// A lane on the migrated file at `path`, alone (no writer, no checkpointer).
    pub(crate) fn for_tests(path: &std::path::Path) -> Self {
        let settings = LaneSettings {
            path: path.to_owned(),
            synchronous: "NORMAL",
            max_page_count: None,
            limits: Limits {
                max_content_bytes: 1 << 20,
                max_metadata_bytes: 1 << 16,
                packed: true,
                key_retention: persist_core::spent::DEFAULT_KEY_RETENTION,
            },
            wal: WalLimit {
                path: path.with_extension("db-wal"),
                bytes: u64::MAX,
                busy_timeout: std::time::Duration::ZERO,
                over_limit: Arc::default(),
            },
            busy_timeout: std::time::Duration::from_secs(5),
        };
        let (checkpoints, _) = mpsc::channel(1);
        Self::open(settings, Arc::default(), Arc::default(), checkpoints).unwrap()
    }

    /// Transactions committed on the lane so far.
    pub(crate) fn committed(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests;
