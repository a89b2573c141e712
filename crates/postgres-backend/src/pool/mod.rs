//! The backend's connection pool: a stack of idle connections, the one used last on top.
//!
//! sqlx's `PgPool` was used before and cost every write twice: a released connection is pinged
//! (a second round trip, from a spawned task) before it can be handed out again, and idle
//! connections are handed out in turn, so after a burst a lone writer cycled through every
//! connection of the pool, each one cold on the server (measured on 2 vCPUs: one caller's adds
//! fell from ≈ 1 100/s to ≈ 850/s once 32 connections had been opened).
//!
//! Here a connection goes back on the stack when its last statement ended cleanly (a result,
//! or an error the server answered), with no round trip; one whose connection failed is closed.
//!
//! A lease dropped mid-statement (its caller was cancelled) keeps its slot in the pool until
//! the server is done with that statement: a task reads the connection up to the server's
//! next `ReadyForQuery`, rolls back a transaction left open, and puts the connection back on
//! the stack, clean. Closing it at once instead would free the slot while the server process
//! goes on waiting (for a row lock, say), and the next caller would open another: timed-out
//! callers once filled every connection slot of the server that way. So this pool never has
//! more than `max` server connections, cancelled or not. A connection that does not come back
//! clean within [`Pool::drain_timeout`] is closed, and only then is its slot freed.
//!
//! Connections idle longer than [`IDLE_TIMEOUT`] (the bottom of the stack) and older than
//! [`MAX_LIFETIME`] are closed as writes go by.
//!
//! Behind a transaction pooler ([`Sessions::Pooled`]) a server connection is this client's only
//! for a transaction: so each lease is one transaction, begun with the settings a direct
//! connection carries from its start (`SET LOCAL`, in the same round trip as `BEGIN`) and
//! committed by [`Lease::finish`]; a transaction the lease's operation opens is a savepoint in
//! it. The connections keep no statements (statements are unnamed, parsed per execution): a
//! named one prepared through one server connection would be looked for on another.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use persist_core::{PersistError, Result};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgDatabaseError, PgSeverity, PgTransactionManager};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, SqlSafeStr};
use sqlx_core::transaction::TransactionManager;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// An idle connection is closed after this long unused (while more than `min_connections`
/// are open).
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// A connection is closed, not reused, once it is this old.
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(1800);

/// How the server's sessions are had: the connections' own, or a pooler's, one transaction
/// at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sessions {
    /// Each connection is a server session of its own: settings given once when it opens,
    /// statements prepared once and kept.
    Direct,
    /// Through a transaction pooler: each lease is one transaction, begun with `begin` (`BEGIN`
    /// and the settings, `SET LOCAL`), or `snapshot` for a [`Begin::Snapshot`]; no statement
    /// kept.
    Pooled { begin: String, snapshot: String },
}

/// How a lease's transaction begins behind a transaction pooler (a direct connection's lease
/// begins none: its operation does, if it needs one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Begin {
    /// `READ COMMITTED`, as every statement on a direct connection.
    ReadCommitted,
    /// `REPEATABLE READ`: one snapshot for the whole lease, for
    /// [`in_one_snapshot`](crate::branches::in_one_snapshot).
    Snapshot,
}

/// Shared by every clone of the backend.
#[derive(Clone)]
pub(crate) struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    options: PgConnectOptions,
    sessions: Sessions,
    /// Idle connections, the most recently used last.
    idle: Mutex<Vec<Idle>>,
    /// One permit per connection that may be open or in use: `max_connections`.
    permits: Arc<Semaphore>,
    max: u32,
    min: u32,
    acquire_timeout: Duration,
    /// How long a cancelled operation's connection may take to come back clean.
    drain_timeout: Duration,
    closed: AtomicBool,
}

struct Idle {
    conn: PgConnection,
    opened: Instant,
    since: Instant,
}

impl Pool {
    /// A pool of at most `max` connections opened with `options`, with `min` kept open.
    /// A connection left mid-statement gets `drain_timeout` to come back clean.
    pub(crate) fn new(
        options: PgConnectOptions,
        sessions: Sessions,
        max: u32,
        min: u32,
        acquire_timeout: Duration,
        drain_timeout: Duration,
    ) -> Self {
        let max = max.max(1);
        Self {
            inner: Arc::new(Inner {
                options,
                sessions,
                idle: Mutex::new(Vec::with_capacity(max as usize)),
                permits: Arc::new(Semaphore::new(max as usize)),
                max,
                min: min.min(max),
                acquire_timeout,
                drain_timeout,
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// Opens connections until `min_connections` are idle.
    pub(crate) async fn fill(&self) -> Result<()> {
        while (self.inner.lock().len() as u32) < self.inner.min {
            let conn = self.open().await?;
            self.inner.lock().push(Idle { conn, opened: Instant::now(), since: Instant::now() });
        }
        Ok(())
    }

    /// A connection for one operation: the one used last if any is idle, else a new one. Waits
    /// up to the acquire time-out for one to become free.
    ///
    /// # Errors
    ///
    /// `Temporary` when none became free in time or the server cannot be reached; `Backend`
    /// once the pool is closed.
    pub(crate) async fn acquire(&self) -> Result<Lease> {
        self.acquire_as(Begin::ReadCommitted).await
    }

    /// [`acquire`](Self::acquire), its transaction begun as `begin` says behind a transaction
    /// pooler.
    pub(crate) async fn acquire_as(&self, begin: Begin) -> Result<Lease> {
        let started = Instant::now();
        let permits = Arc::clone(&self.inner.permits);
        let permit = match tokio::time::timeout(self.inner.acquire_timeout, permits.acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(closed()),
            Err(_) => return Err(PersistError::temporary(BUSY)),
        };
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        let idle = self.inner.lock().pop();
        let (conn, opened) = match idle {
            Some(idle) => (idle.conn, idle.opened),
            None => {
                let left = self.inner.acquire_timeout.saturating_sub(started.elapsed());
                let conn = tokio::time::timeout(left, self.open()).await.map_err(|_| {
                    let options = &self.inner.options;
                    PersistError::temporary(format!(
                        "connecting to PostgreSQL at {}:{} timed out after {left:?}",
                        options.get_host(),
                        options.get_port()
                    ))
                })??;
                (conn, Instant::now())
            }
        };
        let mut lease = Lease { conn: Some(conn), opened, inner: Arc::clone(&self.inner), permit: Some(permit) };
        if let Sessions::Pooled { begin: read_committed, snapshot } = &self.inner.sessions {
            let sql = if begin == Begin::Snapshot { snapshot } else { read_committed };
            let begun = PgTransactionManager::begin(&mut lease, Some(AssertSqlSafe(sql.clone()).into_sql_str()))
                .await
                .map_err(|e| crate::error::map_sqlx("beginning a transaction", e));
            if let Err(error) = begun {
                // The transaction is not open: a live connection is clean (the statement
                // failed whole).
                lease.put_back(lost_connection(&error));
                return Err(error);
            }
        }
        Ok(lease)
    }

    /// Puts a connection opened elsewhere (the one that found how the server's sessions are
    /// had) on the stack, as if released.
    pub(crate) fn adopt(&self, conn: PgConnection) {
        self.inner.give_back(conn, Instant::now());
    }

    /// The options connections are opened with.
    pub(crate) fn options(&self) -> PgConnectOptions {
        self.inner.options.clone()
    }

    /// Whether [`close`](Self::close) was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    async fn open(&self) -> Result<PgConnection> {
        let options = &self.inner.options;
        options.connect().await.map_err(|error| {
            let place = match options.get_socket() {
                Some(socket) => socket.display().to_string(),
                None => format!("{}:{}", options.get_host(), options.get_port()),
            };
            let database = options.get_database().unwrap_or(options.get_username());
            crate::error::map_connect(&format!("{place}, database {database}"), error)
        })
    }

    /// Refuses new operations, waits for those in flight to give their connection back, then
    /// closes every connection.
    pub(crate) async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        // Every permit taken = no lease left. Fails only if another `close` got there first.
        if let Ok(all) = self.inner.permits.acquire_many(self.inner.max).await {
            self.inner.permits.close();
            drop(all);
        }
        let idle = std::mem::take(&mut *self.inner.lock());
        for idle in idle {
            let _ = idle.conn.close().await;
        }
    }

    /// Connections open now, idle or in use.
    #[cfg(test)]
    fn open_connections(&self) -> usize {
        let in_use = self.inner.max as usize - self.inner.permits.available_permits();
        in_use + self.inner.lock().len()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Vec<Idle>> {
        // A panic cannot leave the vector half-changed (push, pop, drain): keep using it.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn closed() -> PersistError {
    PersistError::Backend { message: "the PostgreSQL backend was closed".into(), source: None }
}

/// One connection, taken from the pool for one operation; dereferences to the connection.
///
/// Give it back with [`Lease::release`]; dropped otherwise (the operation was cancelled), it
/// is drained in the background, holding its slot, and put back only once it is clean (see
/// the [module docs](self)).
pub(crate) struct Lease {
    conn: Option<PgConnection>,
    opened: Instant,
    inner: Arc<Inner>,
    // Dropped after the connection is back on the stack: a waiter woken by this permit finds
    // it there. Taken by the drain of a cancelled lease.
    permit: Option<OwnedSemaphorePermit>,
}

impl Lease {
    /// Ends the operation that answered `result`, and answers it: behind a transaction pooler,
    /// the lease's transaction is committed first (rolled back, if a statement failed in it),
    /// and a commit that fails is the answer. The connection goes back on the stack unless the
    /// connection itself failed (it is closed).
    pub(crate) async fn finish<T>(mut self, result: Result<T>) -> Result<T> {
        let result = match self.inner.sessions {
            Sessions::Direct => result,
            Sessions::Pooled { .. } => {
                let Some(conn) = self.conn.as_mut() else { return result };
                // A transaction a statement aborted ends as a rollback (the server answers the
                // `COMMIT` so); a lost connection has nothing left to end.
                if result.as_ref().err().is_some_and(lost_connection) {
                    result
                } else {
                    let committed = PgTransactionManager::commit(conn)
                        .await
                        .map_err(|e| crate::error::map_sqlx("committing the transaction", e));
                    match (result, committed) {
                        (Ok(_), Err(error)) => Err(error),
                        (result, _) => result,
                    }
                }
            }
        };
        self.release(&result);
        result
    }

    /// Gives the connection back, or closes it when `result` says the connection itself failed
    /// (behind a transaction pooler, after [`finish`](Self::finish) ended the transaction).
    fn release<T>(self, result: &Result<T>) {
        self.put_back(result.as_ref().err().is_some_and(lost_connection));
    }

    fn put_back(mut self, lost: bool) {
        let Some(conn) = self.conn.take() else { return };
        if !lost && !conn.is_in_transaction() {
            self.inner.give_back(conn, self.opened);
        }
    }
}

impl Inner {
    /// Puts a clean connection back on the stack (unless the pool is closed or the connection
    /// too old), retiring connections idle too long.
    fn give_back(&self, conn: PgConnection, opened: Instant) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        let mut retired = Vec::new();
        {
            let mut idle = self.lock();
            if now.duration_since(opened) < MAX_LIFETIME {
                idle.push(Idle { conn, opened, since: now });
            } else {
                retired.push(conn);
            }
            // The bottom of the stack has waited longest.
            while idle.len() > self.min as usize
                && idle.first().is_some_and(|oldest| now.duration_since(oldest.since) >= IDLE_TIMEOUT)
            {
                retired.push(idle.remove(0).conn);
            }
        }
        for conn in retired {
            retire(conn);
        }
    }
}

/// Reads a cancelled operation's connection up to the server's `ReadyForQuery` (the statement
/// it was in ended on the server: done, failed, or timed out there), then rolls back whatever
/// transaction it left open: the connection is then as clean as a released one. The
/// `ROLLBACK` is sent whether or not one is open (the driver cannot always tell; with none,
/// the server only warns): this path is taken by cancelled operations alone.
async fn drain(conn: &mut PgConnection) -> std::result::Result<(), sqlx::Error> {
    // The statement may end in an error the server answered (its lock or statement time-out
    // fired, a constraint): the driver reports it before the `ReadyForQuery` that follows, so
    // read on. Each round reads at least one message; the caller bounds the time.
    loop {
        match conn.ping().await {
            Ok(()) => break,
            Err(sqlx::Error::Database(_)) => continue,
            Err(lost) => return Err(lost),
        }
    }
    // Behind a transaction pooler, the lease's own transaction (sqlx counts it).
    if conn.is_in_transaction() {
        while conn.is_in_transaction() {
            PgTransactionManager::rollback(conn).await?;
        }
        return Ok(());
    }
    sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await.map(drop)
}

impl Deref for Lease {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.conn.as_ref().expect("a lease holds its connection until released")
    }
}

impl DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn.as_mut().expect("a lease holds its connection until released")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let (Some(mut conn), Ok(runtime)) = (self.conn.take(), tokio::runtime::Handle::try_current()) else {
            // Released, or no runtime left to drain on: dropping the socket closes it.
            return;
        };
        let (inner, opened, permit) = (Arc::clone(&self.inner), self.opened, self.permit.take());
        runtime.spawn(async move {
            match tokio::time::timeout(inner.drain_timeout, drain(&mut conn)).await {
                Ok(Ok(())) => inner.give_back(conn, opened),
                // Not clean in time: closing it is all that is left.
                _ => drop(conn),
            }
            drop(permit);
        });
    }
}

/// Closes a connection that will not be reused: politely (a `Terminate` message) on the current
/// runtime if there is one; else dropping it closes the socket.
fn retire(conn: PgConnection) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.close()).await;
        });
    }
}

/// The error of an [`acquire`](Pool::acquire) that found every connection busy until its
/// time-out: the server is there, the pool is full.
const BUSY: &str = "no PostgreSQL connection became free in time";

/// Whether `error` is an [`acquire`](Pool::acquire) that found every connection busy (not a
/// server that cannot be reached).
pub(crate) fn is_busy(error: &PersistError) -> bool {
    matches!(error, PersistError::Temporary { message, source: None } if message == BUSY)
}

/// Whether `error` says the connection itself failed (lost, or the protocol broke), so it must
/// not be reused. An error the server answered (a constraint, a serialization failure) leaves
/// the connection as good as before.
pub(crate) fn lost_connection(error: &PersistError) -> bool {
    match std::error::Error::source(error).and_then(|source| source.downcast_ref::<sqlx::Error>()) {
        Some(sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed) => true,
        // The server ends the session after a FATAL error (terminated by an administrator,
        // shutting down) and connection exceptions (class 08).
        Some(sqlx::Error::Database(db)) => {
            db.try_downcast_ref::<PgDatabaseError>()
                .is_some_and(|pg| matches!(pg.severity(), PgSeverity::Fatal | PgSeverity::Panic))
                || db.code().is_some_and(|code| code.starts_with("08"))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
