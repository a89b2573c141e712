//! Schema version 13's second step: threads listed by activity from `threads_by_active_second`
//! (see `migrations/0013_thread_activity_by_second.sql`), made by the instances that migrate.
//!
//! The migration adds `active_second` and the trigger that keeps it for every row written from
//! then on; [`complete`] gives it to the threads stored before, a thousand a transaction (each
//! commits: writers wait for no more than a batch's row locks), builds the new index
//! `CONCURRENTLY` (writes go on meanwhile) and drops `threads_by_activity`. Until the new index
//! is valid the listing could miss the threads without a second, so version 13 reads as pending
//! ([`completed`]): `migrate up` or an instance that migrates completes it, one that does not
//! refuses the store as it refuses one behind. A completion stopped part-way (a crash, a lost
//! connection) goes on from the start at the next one: threads already given their second are
//! read, not written again.

use persist_core::Result;
use sqlx::PgConnection;

use crate::error::map_sqlx;

/// The migration whose second step this is.
pub(crate) const VERSION: i64 = 13;

/// Threads given their second per transaction.
const BATCH: i64 = 1_000;

/// Whether the second step is done in `schema`: its index exists and is valid, and the index it
/// replaces is gone (while that one is kept up, no update of a thread is HOT).
pub(crate) async fn completed(conn: &mut PgConnection, schema: &str) -> Result<bool> {
    sqlx::query_scalar(
        "SELECT coalesce((SELECT i.indisvalid FROM pg_index i \
                           WHERE i.indexrelid = to_regclass(format('%I.%I', $1::text, 'threads_by_active_second'))), \
                         false) \
            AND to_regclass(format('%I.%I', $1::text, 'threads_by_activity')) IS NULL",
    )
    .bind(schema)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| map_sqlx("reading the threads' activity index", e))
}

/// Completes version 13 in `schema`, the one the connection's `search_path` names (migrated to
/// 13 or later), without the connection's time-outs (set by the caller), under an advisory lock per
/// schema: instances connecting together take turns, so an invalid index seen here is a build
/// that failed, not another's under way.
pub(crate) async fn complete(conn: &mut PgConnection, schema: &str) -> Result<()> {
    if completed(conn, schema).await? {
        return Ok(());
    }
    crate::ddl::advisory_lock(conn, "persist_activity").await?;
    let done = under_lock(conn).await;
    done.and(crate::ddl::advisory_unlock(conn, "persist_activity").await)
}

async fn under_lock(conn: &mut PgConnection) -> Result<()> {
    let map = |e| map_sqlx("indexing the threads by activity", e);
    let (valid, old): (Option<bool>, bool) = sqlx::query_as(
        "SELECT (SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass('threads_by_active_second')), \
                to_regclass('threads_by_activity') IS NOT NULL",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(map)?;
    if valid != Some(true) {
        // Every thread stored before the trigger, in key order, a batch a transaction.
        let mut after = (String::new(), String::new());
        loop {
            let last: Option<(String, String)> = sqlx::query_as(
                "WITH batch AS ( \
                    SELECT tenant, thread_id FROM threads WHERE (tenant, thread_id) > ($1, $2) \
                     ORDER BY tenant, thread_id LIMIT $3 FOR NO KEY UPDATE), \
                 given AS ( \
                    UPDATE threads t SET active_second = t.updated_at / 1000000 FROM batch \
                     WHERE t.tenant = batch.tenant AND t.thread_id = batch.thread_id \
                       AND t.active_second IS DISTINCT FROM t.updated_at / 1000000) \
                 SELECT tenant, thread_id FROM batch ORDER BY tenant DESC, thread_id DESC LIMIT 1",
            )
            .bind(&after.0)
            .bind(&after.1)
            .bind(BATCH)
            .fetch_optional(&mut *conn)
            .await
            .map_err(map)?;
            match last {
                Some(last) => after = last,
                None => break,
            }
        }
        if valid == Some(false) {
            crate::ddl::drop_index(conn, "threads_by_active_second").await?;
        }
        crate::ddl::create_index(
            conn,
            "threads",
            "IF NOT EXISTS threads_by_active_second \
                ON threads (tenant, active_second DESC, thread_id DESC) WHERE deleted_at IS NULL",
        )
        .await?;
    }
    if old {
        // (An index a build left invalid is dropped the same way.)
        crate::ddl::drop_index(conn, "threads_by_activity").await?;
    }
    Ok(())
}
