//! The planner's first statistics of a young store.
//!
//! Until a table is first analyzed, PostgreSQL's planner estimates every index whose first
//! columns are `(tenant, thread_id)` at one row and takes the smallest: for the add's check that
//! a message id is free in its thread, the `(tenant, thread_id, seq)` index, read with a filter
//! on the id. That is every message of the thread, so an add costs more the longer its thread,
//! until autovacuum's first `ANALYZE`, which comes a minute or more later (never, with it off),
//! and after which the planner takes the primary key. A handle that has written
//! [`AFTER_INSERTS`] messages analyzes the tables once, if nothing has yet.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use persist_core::Result;
use sqlx::PgConnection;

use crate::error::map_sqlx;
use crate::pool::Pool;

/// How many inserts a handle writes before it checks the tables' statistics.
pub(crate) const AFTER_INSERTS: u64 = 1000;

/// One handle's count of inserts, until it checked.
#[derive(Debug, Default)]
pub(crate) struct FirstStatistics {
    inserts: AtomicU64,
    checked: AtomicBool,
}

impl FirstStatistics {
    /// Counts `n` inserts; the one that reaches [`AFTER_INSERTS`] starts the check, in a task
    /// of its own (an `ANALYZE` of a young table takes milliseconds, never the caller's).
    pub(crate) fn inserted(self: &Arc<Self>, n: u64, pool: &Pool) {
        if self.checked.load(Ordering::Relaxed) || self.inserts.fetch_add(n, Ordering::Relaxed) + n < AFTER_INSERTS {
            return;
        }
        if self.checked.swap(true, Ordering::Relaxed) {
            return;
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            // Best effort: a failure leaves it to autovacuum, as before.
            let _ = analyze_if_never(&pool).await;
        });
    }
}

/// `ANALYZE` of `messages` and `threads` when neither a manual nor an automatic one ran yet.
async fn analyze_if_never(pool: &Pool) -> Result<()> {
    let mut conn = pool.acquire().await?;
    let answer = analyze(&mut conn).await;
    conn.finish(answer).await
}

async fn analyze(conn: &mut PgConnection) -> Result<()> {
    let context = "analyzing a young store's tables";
    let never: bool = sqlx::query_scalar(
        "SELECT coalesce(bool_and(last_analyze IS NULL AND last_autoanalyze IS NULL), false) \
           FROM pg_stat_user_tables WHERE relid IN ('messages'::regclass, 'threads'::regclass)",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| map_sqlx(context, e))?;
    if never {
        sqlx::query("ANALYZE messages, threads").execute(&mut *conn).await.map_err(|e| map_sqlx(context, e))?;
    }
    Ok(())
}
