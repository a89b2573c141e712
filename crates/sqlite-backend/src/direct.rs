//! The reads a chat screen makes on every turn (`get`, `get_thread`, `list`) run on the
//! caller's thread, on rusqlite read connections of their own.
//!
//! sqlx runs each SQLite connection on a worker thread of its own and hands statements and rows
//! over channels: a `get` of one row crossed threads twice, and spent most of its time in the
//! kernel waking them (docs/performance-history/04-sqlite-one-caller-and-reads.md, "SQLite
//! reads against rusqlite"). These reads take a few to a few hundred microseconds, less than a
//! hand-off's round trip, so they run where the caller polls, like a `Mutex` taken briefly: a
//! read that meets a lock (a rare moment in WAL mode) waits up to the busy timeout. The rest of
//! the reads (listings of threads, stranded reservations, bindings) and every write keep sqlx's
//! connections.
//!
//! A read takes the lane's connection when nobody is using it (see [`Borrowed`]): the
//! connection that wrote last keeps its page cache, where a read connection drops its own
//! after every write of another connection.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use persist_core::feed::{FeedEvent, FeedPage, FeedScope, ReadFeed, StoredEvent};
use persist_core::read::{GetMessage, GetThread, ListMessages};
use persist_core::{Message, Order, Page, PersistError, Result, Thread, ThreadId};
use rusqlite::{Connection, OpenFlags};

use crate::rows::{self, message_columns, packed_id, signed, tenant_key, thread_columns, thread_key};

/// A write connection a read may take while nobody uses it: the lane's (`Lane::try_read`), whose
/// page cache holds what it just wrote, where a read connection drops its whole cache after
/// every write of another connection.
pub(crate) trait Borrowed: Send + Sync {
    /// Runs `read` on the connection if nobody is using it, waiting up to `busy_timeout` for a
    /// lock as a read connection does; leaves `read` unrun otherwise.
    fn try_read(&self, busy_timeout: Duration, read: &mut dyn FnMut(&Connection));
}

/// Idle read connections, opened on demand, at most `max_idle` kept.
pub(crate) struct DirectReads {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
    closed: AtomicBool,
    /// Read as immutable: a file on a read-only medium (see [`needs_immutable`]).
    immutable: bool,
    /// The handle's lane, whose connection a read takes when nobody is using it; `None` for a
    /// handle that only reads.
    lane: Option<Arc<dyn Borrowed>>,
}

/// Whether the file at `path` can only be read as immutable: in WAL mode SQLite needs the
/// file's WAL index beside it, and on a read-only filesystem where there is none it cannot
/// make one. There nobody can change the file, so reading it as immutable is safe.
pub(crate) fn needs_immutable(path: &std::path::Path) -> bool {
    // A log beside the file may hold committed writes, which an immutable read would not see:
    // then the open fails as SQLite says, rather than answer an older store.
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    if std::fs::metadata(std::path::PathBuf::from(wal)).is_ok_and(|meta| meta.len() > 0) {
        return false;
    }
    let probe = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .and_then(|conn| conn.query_row("SELECT count(*) FROM sqlite_master", (), |row| row.get::<_, i64>(0)));
    match probe {
        Err(rusqlite::Error::SqliteFailure(error, _)) => matches!(
            error.code,
            rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::SystemIoFailure
        ),
        _ => false,
    }
}

impl DirectReads {
    pub(crate) fn new(path: PathBuf, busy_timeout: Duration, max_idle: usize) -> Self {
        let idle = Mutex::new(Vec::new());
        Self { path, busy_timeout, idle, max_idle, closed: AtomicBool::new(false), immutable: false, lane: None }
    }

    /// Reads the file as immutable (see [`needs_immutable`]).
    pub(crate) fn immutable(mut self, immutable: bool) -> Self {
        self.immutable = immutable;
        self
    }

    /// Reads on `lane`'s connection whenever nobody is using it.
    pub(crate) fn with_lane(mut self, lane: Arc<dyn Borrowed>) -> Self {
        self.lane = Some(lane);
        self
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // Nothing panics while holding it.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open(&self) -> Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = if self.immutable {
            // A URI's path: `%`, `?` and `#` would be read as its syntax.
            let path = self.path.to_string_lossy().replace('%', "%25").replace('?', "%3f").replace('#', "%23");
            Connection::open_with_flags(format!("file:{path}?immutable=1"), flags | OpenFlags::SQLITE_OPEN_URI)
        } else {
            Connection::open_with_flags(&self.path, flags)
        };
        let conn = conn.map_err(|e| map("opening a read connection", e))?;
        conn.busy_timeout(self.busy_timeout).map_err(|e| map("opening a read connection", e))?;
        Ok(conn)
    }

    /// Runs `read` on the lane's connection when it is free (see [`Borrowed`]), otherwise as
    /// [`with_reader`](Self::with_reader).
    pub(crate) fn with<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let (mut pending, mut answer) = (Some(read), None);
        if let Some(lane) = self.lane.as_ref().filter(|_| !self.closed.load(Ordering::Acquire)) {
            lane.try_read(self.busy_timeout, &mut |conn| {
                if let Some(read) = pending.take() {
                    answer = Some(read(conn));
                }
            });
        }
        match (answer, pending) {
            (Some(answer), _) => answer,
            (None, Some(read)) => self.with_reader(read),
            (None, None) => Err(PersistError::Backend { message: "a read ran without an answer".into(), source: None }),
        }
    }

    /// Runs `read` on an idle read connection (or a new one), then keeps the connection for the
    /// next read: for a long read (a scan of vectors), which would keep the lane's writes off
    /// its connection meanwhile.
    pub(crate) fn with_reader<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        if self.closed.load(Ordering::Acquire) {
            return Err(PersistError::Backend { message: "the SQLite backend is closed".into(), source: None });
        }
        let popped = self.idle().pop();
        let conn = match popped {
            Some(conn) => conn,
            None => self.open()?,
        };
        let answer = read(&conn);
        let mut idle = self.idle();
        if idle.len() < self.max_idle && !self.closed.load(Ordering::Acquire) {
            idle.push(conn);
        }
        answer
    }

    /// Whether [`close`](Self::close) was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Closes every idle connection; later reads fail.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.idle().clear();
    }

    pub(crate) fn get(&self, query: &GetMessage) -> Result<Option<Message>> {
        self.with(|conn| {
            let mut statement = conn
                .prepare_cached(concat!(
                    "SELECT ",
                    message_columns!("?1"),
                    " FROM persist_messages WHERE thread = ",
                    thread_key!("?3", "?1"),
                    " AND message_id = ",
                    packed_id!("?2")
                ))
                .map_err(|e| map("reading a message", e))?;
            let reader = rows::MessageReader::of(&statement);
            let mut found = statement
                .query((query.thread_id.as_str(), query.message_id.as_str(), tenant_key(query.tenant())))
                .map_err(|e| map("reading a message", e))?;
            match found.next().map_err(|e| map("reading a message", e))? {
                Some(row) => reader.message(row).map(Some),
                None => Ok(None),
            }
        })
    }

    pub(crate) fn get_thread(&self, query: &GetThread) -> Result<Option<Thread>> {
        self.with(|conn| {
            let mut statement = conn
                .prepare_cached(concat!(
                    "SELECT ",
                    thread_columns!(),
                    " FROM threads WHERE tenant = ?2 AND thread_id = ?1"
                ))
                .map_err(|e| map("reading a thread", e))?;
            let mut found = statement
                .query((query.thread_id.as_str(), tenant_key(query.tenant())))
                .map_err(|e| map("reading a thread", e))?;
            match found.next().map_err(|e| map("reading a thread", e))? {
                Some(row) => rows::thread(row).map(Some),
                None => Ok(None),
            }
        })
    }

    pub(crate) fn list(&self, query: &ListMessages) -> Result<Page<Message>> {
        if let Some(branch) = &query.branch {
            return self.list_branch(query, branch);
        }
        query.validate()?;
        // A listing of some roles filters in the statement (its own, cached apart), so a page
        // of them reads as far as it takes and no further.
        let roles = rows::role_names(query);
        let sql = match (query.order, roles.is_some()) {
            (Order::Asc, false) => crate::reads::list_sql!("ASC"),
            (Order::Desc, false) => crate::reads::list_sql!("DESC"),
            (Order::Asc, true) => crate::reads::list_sql!("ASC", rows::role_in!("role", "?7")),
            (Order::Desc, true) => crate::reads::list_sql!("DESC", rows::role_in!("role", "?7")),
        };
        let items = self.with(|conn| {
            let mut statement = conn.prepare_cached(sql).map_err(|e| map("listing messages", e))?;
            let reader = rows::MessageReader::of(&statement);
            let params = (
                query.thread_id.as_str(),
                query.after.map_or(0, signed),
                query.before.map_or(i64::MAX, signed),
                query.include_reserved,
                tenant_key(query.tenant()),
                i64::from(query.fetch_limit()),
            );
            let found = match &roles {
                None => statement.query(params),
                Some(roles) => {
                    let (thread, after, before, reserved, tenant, fetch) = params;
                    statement.query((thread, after, before, reserved, tenant, fetch, roles.as_str()))
                }
            };
            let mut found = found.map_err(|e| map("listing messages", e))?;
            let mut items = Vec::with_capacity(query.fetch_limit() as usize);
            while let Some(row) = found.next().map_err(|e| map("listing messages", e))? {
                items.push(reader.message(row)?);
            }
            Ok(items)
        })?;
        Ok(query.page(items))
    }
}

/// The columns of a change-feed event, in [`feed_event`]'s order.
macro_rules! feed_columns {
    () => {
        "f.position, f.tenant, f.thread_id, f.op, f.message_id, f.seq, f.version, f.removed, f.at, f.status, f.delta, \
         f.parent, f.resource"
    };
}

impl DirectReads {
    /// The change-feed events `query` asks for, read in one transaction with the bounds they
    /// are checked against.
    pub(crate) fn feed(&self, query: &ReadFeed) -> Result<FeedPage> {
        query.validate()?;
        let context = "reading the change feed";
        self.with(|conn| {
            let read = conn.unchecked_transaction().map_err(|e| map(context, e))?;
            let (head, trimmed, enabled) = bounds(&read)?;
            if !enabled {
                return Err(crate::feed::turned_off_elsewhere());
            }
            query.check_position(trimmed, head)?;
            let tenant = tenant_key(query.context.tenant());
            let (after, fetch) = (signed(query.after), i64::from(query.limit) + 1);
            // The events are rows of two tables (migration 16): `persist_feed`, written until the
            // store's format was 2, and `persist_events` (read through `persist_events_read`),
            // one numbering of positions across both.
            let sql = match query.scope {
                // The thread's chain, walked back from its newest event (kept by its row or, once
                // the row is removed, by the thread's last delete) to where the reader resumes:
                // the thread's own events, however many others' came between. Each link is in
                // one of the two tables.
                FeedScope::Thread(_) => concat!(
                    "WITH RECURSIVE chain(position) AS ( \
                         SELECT coalesce((SELECT feed_last FROM threads WHERE tenant = ?1 AND thread_id = ?2), \
                                         nullif(max(coalesce((SELECT max(position) FROM persist_feed \
                                                               WHERE tenant = ?1 AND thread_id = ?2 \
                                                                 AND message_id IS NULL), 0), \
                                                    coalesce((SELECT max(position) FROM persist_events \
                                                               WHERE tenant = ?1 AND thread_id = ?2 \
                                                                 AND thread IS NULL), 0)), 0)) \
                         UNION ALL \
                         SELECT f.prev FROM chain c JOIN persist_feed f ON f.position = c.position WHERE f.prev > ?3 \
                         UNION ALL \
                         SELECT e.prev FROM chain c JOIN persist_events e ON e.position = c.position \
                          WHERE e.prev > ?3) \
                     SELECT ",
                    feed_columns!(),
                    " FROM chain c CROSS JOIN persist_feed f ON f.position = c.position \
                      WHERE c.position > ?3 AND f.tenant = ?1 AND f.thread_id = ?2 \
                     UNION ALL SELECT ",
                    feed_columns!(),
                    " FROM chain c CROSS JOIN persist_events_read f ON f.position = c.position \
                      WHERE c.position > ?3 AND f.tenant = ?1 AND f.thread_id = ?2 ORDER BY 1 LIMIT +?4"
                ),
                FeedScope::Tenant => concat!(
                    "SELECT ",
                    feed_columns!(),
                    " FROM persist_feed f WHERE tenant = ?1 AND ?2 IS NULL AND position > ?3 \
                     UNION ALL SELECT ",
                    feed_columns!(),
                    " FROM persist_events_read f WHERE tenant = ?1 AND ?2 IS NULL AND position > ?3 \
                     ORDER BY 1 LIMIT +?4"
                ),
                // One document's: its own events (migration 21), by their index.
                FeedScope::Memory(_) => concat!(
                    "SELECT ",
                    feed_columns!(),
                    " FROM persist_events_read f WHERE f.position IN \
                         (SELECT position FROM persist_events WHERE resource IS NOT NULL AND tenant = ?1 \
                             AND resource = ?2 AND position > ?3 ORDER BY position LIMIT +?4) \
                     ORDER BY 1"
                ),
                // Every tenant's: the tenant and thread parameters are bound all the same.
                _ => concat!(
                    "SELECT ",
                    feed_columns!(),
                    " FROM persist_feed f WHERE ?1 IS NOT NULL AND ?2 IS NULL AND position > ?3 \
                     UNION ALL SELECT ",
                    feed_columns!(),
                    " FROM persist_events_read f WHERE ?1 IS NOT NULL AND ?2 IS NULL AND position > ?3 \
                     ORDER BY 1 LIMIT +?4"
                ),
            };
            let mut statement = read.prepare_cached(sql).map_err(|e| map(context, e))?;
            // The one subject read: a thread's id, or a document's resource.
            let thread = query.thread_id().map(ThreadId::as_str).or(query.resource().map(|r| r.as_str()));
            let mut found = statement.query((tenant, thread, after, fetch)).map_err(|e| map(context, e))?;
            let mut events = Vec::new();
            while let Some(row) = found.next().map_err(|e| map(context, e))? {
                events.push(feed_event(row).map_err(|e| map(context, e))??);
            }
            Ok(query.page(events, head))
        })
    }

    /// The feed's head.
    pub(crate) fn feed_head(&self) -> Result<u64> {
        self.with(|conn| Ok(bounds(conn)?.0))
    }
}

fn bounds(conn: &Connection) -> Result<(u64, u64, bool)> {
    let context = "reading the change feed's bounds";
    let mut statement = conn.prepare_cached(crate::feed::FEED_BOUNDS).map_err(|e| map(context, e))?;
    let (head, trimmed, enabled) = statement
        .query_row((), |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, bool>(2)?)))
        .map_err(|e| map(context, e))?;
    Ok((u64::try_from(head).unwrap_or_default(), u64::try_from(trimmed).unwrap_or_default(), enabled))
}

/// One event of `feed_columns!()`.
fn feed_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<FeedEvent>> {
    let unsigned = |n: i64| u64::try_from(n).unwrap_or_default();
    let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let message_id = rows::unpacked_id(row, 4, &mut id)?;
    Ok(FeedEvent::from_stored(StoredEvent {
        position: unsigned(row.get(0)?),
        tenant: row.get_ref(1)?.as_str()?,
        thread_id: row.get_ref(2)?.as_str_or_null()?,
        resource: row.get_ref(12)?.as_str_or_null()?,
        op: row.get_ref(3)?.as_str()?,
        message_id,
        seq: row.get::<_, Option<i64>>(5)?.map(unsigned),
        version: unsigned(row.get(6)?),
        removed: row.get_ref(7)?.as_str_or_null()?,
        status: row.get_ref(9)?.as_str_or_null()?,
        delta: row.get_ref(10)?.as_str_or_null()?,
        parent: row.get::<_, Option<i64>>(11)?.map(unsigned),
        at: persist_core::Timestamp::from_micros(row.get(8)?),
    }))
}

/// A rusqlite error as the sqlx ones are mapped: a lock that outlasted the busy timeout is
/// temporary, anything else a backend error.
pub(crate) fn map(context: &'static str, error: rusqlite::Error) -> PersistError {
    use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
    match error.sqlite_error_code() {
        Some(DatabaseBusy | DatabaseLocked) => {
            PersistError::temporary(format!("{context}: the database is busy ({error}); retry"))
        }
        _ => PersistError::backend(context, error),
    }
}

impl crate::feed::FeedSource for DirectReads {
    fn is_closed(&self) -> bool {
        DirectReads::is_closed(self)
    }

    fn feed_head(&self) -> Result<u64> {
        DirectReads::feed_head(self)
    }

    fn feed(&self, query: &ReadFeed) -> Result<FeedPage> {
        DirectReads::feed(self, query)
    }
}
