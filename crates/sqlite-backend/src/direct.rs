//! The reads a chat screen makes on every turn (`get`, `get_thread`, `list`) run on the
//! caller's thread, on rusqlite read connections of their own.
//!
//! sqlx runs each SQLite connection on a worker thread of its own and hands statements and
//! rows over channels: a `get` of one row crossed threads twice, and spent most of its time in
//! the kernel waking them (BENCHMARKS.md, "SQLite reads against rusqlite"). These reads take a
//! few to a few hundred microseconds, less than a hand-off's round trip, so they run where the
//! caller polls, like a `Mutex` taken briefly: a read that meets a lock (a rare moment in WAL
//! mode) waits up to the busy timeout. The rest of the reads (listings of threads, stranded
//! reservations, bindings) and every write keep sqlx's connections.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use persist_core::read::{GetMessage, GetThread, ListMessages};
use persist_core::{Message, Order, Page, PersistError, Result, Thread};
use rusqlite::{Connection, OpenFlags};

use crate::rows::{self, message_columns, signed, tenant_key, thread_columns};

/// Idle read connections, opened on demand, at most `max_idle` kept.
pub(crate) struct DirectReads {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
    closed: AtomicBool,
}

impl DirectReads {
    pub(crate) fn new(path: PathBuf, busy_timeout: Duration, max_idle: usize) -> Self {
        Self { path, busy_timeout, idle: Mutex::new(Vec::new()), max_idle, closed: AtomicBool::new(false) }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // Nothing panics while holding it.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open(&self) -> Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(|e| map("opening a read connection", e))?;
        conn.busy_timeout(self.busy_timeout).map_err(|e| map("opening a read connection", e))?;
        Ok(conn)
    }

    /// Runs `read` on an idle connection (or a new one), then keeps the connection for the
    /// next read.
    fn with<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
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
                    message_columns!(),
                    " FROM messages WHERE tenant = ?3 AND thread_id = ?1 AND message_id = ?2"
                ))
                .map_err(|e| map("reading a message", e))?;
            let mut found = statement
                .query((query.thread_id.as_str(), query.message_id.as_str(), tenant_key(query.tenant())))
                .map_err(|e| map("reading a message", e))?;
            match found.next().map_err(|e| map("reading a message", e))? {
                Some(row) => rows::message(row).map(Some),
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
        query.validate()?;
        let sql = match query.order {
            Order::Asc => crate::reads::list_sql!("ASC"),
            Order::Desc => crate::reads::list_sql!("DESC"),
        };
        let items = self.with(|conn| {
            let mut statement = conn.prepare_cached(sql).map_err(|e| map("listing messages", e))?;
            let mut found = statement
                .query((
                    query.thread_id.as_str(),
                    query.after.map_or(0, signed),
                    query.before.map_or(i64::MAX, signed),
                    query.include_reserved,
                    tenant_key(query.tenant()),
                    i64::from(query.fetch_limit()),
                ))
                .map_err(|e| map("listing messages", e))?;
            let mut items = Vec::with_capacity(query.fetch_limit() as usize);
            while let Some(row) = found.next().map_err(|e| map("listing messages", e))? {
                items.push(rows::message(row)?);
            }
            Ok(items)
        })?;
        Ok(query.page(items))
    }
}

/// A rusqlite error as the sqlx ones are mapped: a lock that outlasted the busy timeout is
/// temporary, anything else a backend error.
fn map(context: &'static str, error: rusqlite::Error) -> PersistError {
    use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
    match error.sqlite_error_code() {
        Some(DatabaseBusy | DatabaseLocked) => {
            PersistError::temporary(format!("{context}: the database is busy ({error}); retry"))
        }
        _ => PersistError::backend(context, error),
    }
}
