//! The change feed's retention (see `crate::feed`): what `FeedRetention` no longer keeps,
//! removed under the sequencing lock, the lock passes, retention and erasing deletes share.

use persist_core::feed::FeedRetention;
use persist_core::{Result, Timestamp};
use sqlx::PgConnection;

use crate::error::map_sqlx;

/// Takes the sequencing lock of the schema the connection's `search_path` names (the class
/// 0x70657273, "pers", and the schema's hash), until the transaction ends. Passes and retention
/// hold it; a statement that removes events of one thread takes it first, so that no pass
/// numbers one of them between the statement's snapshot and its delete (a row numbered
/// meanwhile would no longer match the delete of pending rows, nor have matched the delete of
/// numbered ones, and would stay; or the two would wait on each other's rows).
pub(crate) const LOCK_PASSES: &str = "SELECT pg_advisory_xact_lock(1885696627, hashtext(current_schema()))";

/// Removes what `retention` no longer keeps, in one transaction under the sequencing lock (so
/// no pass numbers events meanwhile); answers the newest position removed.
pub(crate) async fn trim(conn: &mut PgConnection, retention: &FeedRetention) -> Result<u64> {
    use sqlx::Connection;
    let sql = |e| map_sqlx("trimming the change feed", e);
    if let Some(cutoff) = retention.delta_cutoff(Timestamp::now()) {
        // Deltas past their age, in batches of their own (each statement its transaction): no
        // lock needed, the sequencer does not read them.
        const BATCH: i64 = 10_000;
        loop {
            let cleared = sqlx::query(
                "UPDATE persist_feed SET delta = NULL WHERE id IN \
                   (SELECT id FROM persist_feed WHERE delta IS NOT NULL AND at < $1 LIMIT $2)",
            )
            .bind(cutoff.as_micros())
            .bind(BATCH)
            .execute(&mut *conn)
            .await
            .map_err(sql)?;
            if cleared.rows_affected() < u64::try_from(BATCH).unwrap_or(u64::MAX) {
                break;
            }
        }
    }
    let mut tx = conn.begin().await.map_err(sql)?;
    let outcome = async {
        sqlx::query(LOCK_PASSES).execute(&mut *tx).await.map_err(sql)?;
        let (head, trimmed): (i64, i64) =
            sqlx::query_as("SELECT head, trimmed FROM persist_feed_state").fetch_one(&mut *tx).await.map_err(sql)?;
        let by_count =
            i64::try_from(retention.count_cutoff(u64::try_from(head).unwrap_or_default())).unwrap_or(i64::MAX);
        let by_age = match retention.age_cutoff(Timestamp::now()) {
            // Everything before the first event young enough to keep.
            Some(cutoff) => sqlx::query_scalar(
                "SELECT coalesce((SELECT position - 1 FROM persist_feed WHERE position IS NOT NULL AND at >= $1 \
                                   ORDER BY position LIMIT 1), $2)",
            )
            .bind(cutoff.as_micros())
            .bind(head)
            .fetch_one(&mut *tx)
            .await
            .map_err(sql)?,
            None => 0,
        };
        // The newest event stays, however old, as on every backend.
        let cutoff = by_count.max(by_age).min(head - 1);
        if cutoff <= trimmed {
            return Ok((trimmed, false));
        }
        sqlx::query("DELETE FROM persist_feed WHERE position <= $1")
            .bind(cutoff)
            .execute(&mut *tx)
            .await
            .map_err(sql)?;
        sqlx::query("UPDATE persist_feed_state SET trimmed = greatest(trimmed, $1)")
            .bind(cutoff)
            .execute(&mut *tx)
            .await
            .map_err(sql)?;
        Ok((cutoff, true))
    }
    .await;
    // Ended here, either way: a transaction left to roll back when the connection is next used
    // would hold the sequencing lock until then (on an idle instance, seconds).
    match outcome {
        Ok((trimmed, changed)) => {
            if changed {
                tx.commit().await.map_err(sql)?;
            } else {
                tx.rollback().await.map_err(sql)?;
            }
            Ok(u64::try_from(trimmed).unwrap_or_default())
        }
        Err(error) => {
            let _ = tx.rollback().await;
            Err(error)
        }
    }
}
