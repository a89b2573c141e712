//! Deletes: a message, a truncation, a whole thread (and a purge), each under the thread's lock.

use persist_core::args::{Attached, Delete};
use persist_core::{AgentId, Deleted, MessageId, PersistError, Target, Timestamp};
use sqlx::{Connection, PgConnection, Row};

use super::guard::diagnose_message;
use crate::error::{corrupt, map_sqlx};
use crate::rows::{signed, tenant_key};
use crate::spent::{Removal, spend};

pub(super) async fn delete_message(
    conn: &mut PgConnection,
    delete: &Delete,
    id: &MessageId,
) -> Result<Deleted, PersistError> {
    // A transaction whose first statement takes the thread's lock: the splice then sees every
    // child written before (a single statement would see only those of its snapshot, taken
    // before the lock).
    let mut tx = conn.begin().await.map_err(|e| map_sqlx("starting the delete", e))?;
    let answer = delete_message_locked(&mut tx, delete, id).await;
    match &answer {
        Ok(deleted) if !deleted.message_ids.is_empty() => {
            tx.commit().await.map_err(|e| map_sqlx("committing the delete", e))?;
        }
        _ => tx.rollback().await.map_err(|e| map_sqlx("ending the delete", e))?,
    }
    answer
}

/// Removes the message and takes it out of its branch: its children follow its parent (in
/// their stored form: see [`stored_parent`](persist_core::branch::stored_parent)), unless it was
/// the thread's oldest message (they then follow it as history, as after `Delete::covered`),
/// and an active branch that ended at it ends at its parent (at the thread's last message, for
/// a root or a parent that is history).
async fn delete_message_locked(
    tx: &mut PgConnection,
    delete: &Delete,
    id: &MessageId,
) -> Result<Deleted, PersistError> {
    let tenant = delete.context.tenant();
    sqlx::query("SELECT 1 FROM threads WHERE tenant = $1 AND thread_id = $2 AND deleted_at IS NULL FOR UPDATE")
        .bind(tenant_key(tenant))
        .bind(delete.thread_id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| map_sqlx("locking the thread", e))?;
    spend(tx, tenant_key(tenant), delete.thread_id.as_str(), Removal::Message(id, delete.expected_version)).await?;
    let removed = sqlx::query(
        "WITH d AS (DELETE FROM messages m \
                     WHERE m.tenant = $4 AND m.thread_id = $1 AND m.message_id = $2 \
                       AND ($3::bigint IS NULL OR m.version = $3) \
                       AND EXISTS (SELECT 1 FROM threads t WHERE t.tenant = $4 AND t.thread_id = $1 \
                                                             AND t.deleted_at IS NULL) \
                    RETURNING m.message_id, m.seq, \
                              CASE WHEN m.parent_seq IS NULL THEN nullif(m.seq - 1, 0) \
                                   ELSE nullif(m.parent_seq, 0) END AS parent), \
              older AS (SELECT EXISTS (SELECT 1 FROM messages o, d \
                                        WHERE o.tenant = $4 AND o.thread_id = $1 AND o.seq < d.seq) AS has_older), \
              next AS (UPDATE messages m SET parent_seq = coalesce(d.parent, 0) FROM d, older \
                        WHERE m.tenant = $4 AND m.thread_id = $1 AND m.seq = d.seq + 1 AND m.parent_seq IS NULL \
                          AND older.has_older), \
              later AS (UPDATE messages m SET parent_seq = coalesce(d.parent, 0) FROM d, older \
                         WHERE m.tenant = $4 AND m.thread_id = $1 AND m.parent_seq = d.seq AND older.has_older), \
              u AS (UPDATE threads t \
                       SET message_count = t.message_count - 1, updated_at = $5, \
                           active_leaf = CASE WHEN t.active_leaf <> d.seq THEN t.active_leaf \
                                              ELSE coalesce((SELECT p.seq FROM messages p \
                                                              WHERE p.tenant = $4 AND p.thread_id = $1 \
                                                                AND p.seq = d.parent), \
                                                            (SELECT max(o.seq) FROM messages o \
                                                              WHERE o.tenant = $4 AND o.thread_id = $1 \
                                                                AND o.seq <> d.seq)) END \
                      FROM d WHERE t.tenant = $4 AND t.thread_id = $1) \
         SELECT message_id FROM d",
    )
    .bind(delete.thread_id.as_str())
    .bind(id.as_str())
    .bind(delete.expected_version.map(signed))
    .bind(tenant_key(tenant))
    .bind(Timestamp::now().as_micros())
    .fetch_optional(&mut *tx)
    .await
    .map_err(|e| map_sqlx("deleting the message", e))?;
    if removed.is_some() {
        return Ok(Deleted::new(delete.thread_id.clone(), vec![id.clone()]));
    }
    // Nothing removed: already gone (an empty answer), or a stale expected version.
    match diagnose_message(tx, &delete.thread_id, id, tenant, delete.expected_version, None).await? {
        Some(conflict @ PersistError::VersionConflict { .. }) => Err(conflict),
        _ => Ok(Deleted::new(delete.thread_id.clone(), Vec::new())),
    }
}

/// Deleting a thread (or truncating it) is a transaction, not one statement: after the thread's row lock is
/// taken, each following statement sees every write committed before it (a single statement
/// would delete only what its snapshot, taken before the lock, saw).
///
/// The transaction always ends here, committed or rolled back, so the connection goes back to
/// the pool outside of one (a cancelled delete drops its connection: the pool closes it).
pub(super) async fn delete_thread(conn: &mut PgConnection, delete: &Delete) -> Result<Deleted, PersistError> {
    let mut tx = conn.begin().await.map_err(|e| map_sqlx("starting the delete", e))?;
    match delete_thread_locked(&mut tx, delete).await {
        Ok(deleted) => {
            tx.commit().await.map_err(|e| map_sqlx("committing the delete", e))?;
            Ok(deleted)
        }
        Err(refused) => {
            tx.rollback().await.map_err(|e| map_sqlx("rolling back the delete", e))?;
            Err(refused)
        }
    }
}

/// A truncation after `seq`, inside [`delete_thread`]'s transaction once the thread's row is
/// locked and checked: every later message removed, the thread's counters and version moved.
pub(super) async fn truncate_locked(
    tx: &mut PgConnection,
    delete: &Delete,
    seq: u64,
    active_leaf: Option<i64>,
) -> Result<Deleted, PersistError> {
    let sql = |context| move |e| map_sqlx(context, e);
    let tenant = tenant_key(delete.context.tenant());
    // Where the active branch ends once the later messages go: its last message at or below the
    // seq, walked up before they go (none kept: the thread's last message, read after).
    let leaf = match active_leaf.and_then(|leaf| u64::try_from(leaf).ok()) {
        Some(leaf) if leaf > seq => {
            let runs = crate::branches::runs(tx, tenant, delete.thread_id.as_str(), leaf).await?;
            let kept = runs.into_iter().filter(|&(lo, _)| lo <= seq).map(|(_, hi)| hi.min(seq)).max().map(signed);
            // A seq of history (before the thread's oldest message) is no message to end at.
            let stored: Option<i64> = match kept {
                Some(kept) => {
                    sqlx::query_scalar("SELECT seq FROM messages WHERE tenant = $2 AND thread_id = $1 AND seq = $3")
                        .bind(delete.thread_id.as_str())
                        .bind(tenant)
                        .bind(kept)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(sql("reading the kept leaf"))?
                }
                None => None,
            };
            stored
        }
        other => other.map(signed),
    };
    spend(tx, tenant, delete.thread_id.as_str(), Removal::After(seq)).await?;
    let removed =
        sqlx::query("DELETE FROM messages WHERE tenant = $2 AND thread_id = $1 AND seq > $3 RETURNING seq, message_id")
            .bind(delete.thread_id.as_str())
            .bind(tenant)
            .bind(signed(seq))
            .fetch_all(&mut *tx)
            .await
            .map_err(sql("truncating the thread"))?;
    let ids = crate::rows::removed_ids(&removed)?;
    if !ids.is_empty() {
        sqlx::query(
            "UPDATE threads SET message_count = message_count - $3, version = version + 1, updated_at = $4, \
                                active_leaf = coalesce($5, (SELECT max(m.seq) FROM messages m \
                                                              WHERE m.tenant = $2 AND m.thread_id = $1)) \
              WHERE tenant = $2 AND thread_id = $1",
        )
        .bind(delete.thread_id.as_str())
        .bind(tenant)
        .bind(i64::try_from(ids.len()).unwrap_or(i64::MAX))
        .bind(Timestamp::now().as_micros())
        .bind(leaf)
        .execute(&mut *tx)
        .await
        .map_err(sql("touching the truncated thread"))?;
    }
    Ok(Deleted::new(delete.thread_id.clone(), ids))
}

/// The statements of [`delete_thread`], inside its transaction.
pub(super) async fn delete_thread_locked(tx: &mut PgConnection, delete: &Delete) -> Result<Deleted, PersistError> {
    let tenant = tenant_key(delete.context.tenant());
    let gone = || Ok(Deleted::new(delete.thread_id.clone(), Vec::new()));
    let sql = |context| move |e| map_sqlx(context, e);
    let row = sqlx::query(
        "SELECT deleted_at IS NOT NULL AS deleted, version, updated_at, active_leaf FROM threads \
          WHERE tenant = $2 AND thread_id = $1 FOR UPDATE",
    )
    .bind(delete.thread_id.as_str())
    .bind(tenant)
    .fetch_optional(&mut *tx)
    .await
    .map_err(sql("locking the thread"))?;
    let Some(row) = row else { return gone() };
    if row.try_get::<bool, _>("deleted").map_err(sql("reading the thread"))? {
        // A purge of a tombstone erases what it still says, or frees its id.
        if delete.purge {
            mark_deleted(tx, delete, tenant).await?;
        }
        return gone();
    }
    let actual =
        u64::try_from(row.try_get::<i64, _>("version").map_err(sql("reading the thread"))?).unwrap_or_default();
    if let Some(expected) = delete.expected_version.filter(|&expected| expected != actual) {
        return Err(PersistError::VersionConflict {
            thread_id: delete.thread_id.clone(),
            message_id: None,
            expected,
            actual,
        });
    }
    if let Target::MessagesAfter(seq) = delete.target {
        let leaf = row.try_get::<Option<i64>, _>("active_leaf").map_err(sql("reading the thread"))?;
        crate::summaries::remove_after(tx, delete, Some(seq)).await?;
        return truncate_locked(tx, delete, seq, leaf).await;
    }
    if delete.target == Target::Covered {
        let leaf = row.try_get::<Option<i64>, _>("active_leaf").map_err(sql("reading the thread"))?;
        return crate::summaries::delete_covered_locked(tx, delete, leaf).await;
    }
    let updated_at = row.try_get::<i64, _>("updated_at").map_err(sql("reading the thread"))?;
    if let Some(conflict) = delete.updated_at_conflict(Timestamp::from_micros(updated_at)) {
        return Err(conflict);
    }
    // Binds and summaries take the thread's row FOR SHARE: none commits while it is locked.
    if delete.expected_attached.is_some()
        && let Some(conflict) = delete.attached_conflict(&attached(tx, delete, tenant).await?)
    {
        return Err(conflict);
    }
    // The tombstone first: the change feed then records the thread's delete, and not each
    // message it removes.
    sqlx::query("UPDATE threads SET deleted_at = $3 WHERE tenant = $2 AND thread_id = $1")
        .bind(delete.thread_id.as_str())
        .bind(tenant)
        .bind(Timestamp::now().as_micros())
        .execute(&mut *tx)
        .await
        .map_err(sql("marking the thread deleted"))?;
    let removed = sqlx::query("DELETE FROM messages WHERE tenant = $2 AND thread_id = $1 RETURNING seq, message_id")
        .bind(delete.thread_id.as_str())
        .bind(tenant)
        .fetch_all(&mut *tx)
        .await
        .map_err(sql("deleting the thread's messages"))?;
    let ids = crate::rows::removed_ids(&removed)?;
    sqlx::query("DELETE FROM session_bindings WHERE tenant = $2 AND thread_id = $1")
        .bind(delete.thread_id.as_str())
        .bind(tenant)
        .execute(&mut *tx)
        .await
        .map_err(sql("deleting the thread's session bindings"))?;
    crate::summaries::remove_after(tx, delete, None).await?;
    mark_deleted(tx, delete, tenant).await?;
    Ok(Deleted::new(delete.thread_id.clone(), ids))
}

/// Leaves the thread's tombstone; a purge clears what it said, or removes it to free the id.
pub(super) async fn mark_deleted(tx: &mut PgConnection, delete: &Delete, tenant: &str) -> Result<(), PersistError> {
    let sql = |context| move |e| map_sqlx(context, e);
    let now = Timestamp::now().as_micros();
    // A deleted thread takes no write: its spent keys answer nothing any more.
    crate::spent::forget(tx, tenant, delete.thread_id.as_str()).await?;
    let tombstone = match (delete.purge, delete.free_id) {
        (_, true) => "DELETE FROM threads WHERE tenant = $3 AND thread_id = $1 AND $2::bigint IS NOT NULL",
        (true, false) => {
            "UPDATE threads SET deleted_at = coalesce(deleted_at, $2), updated_at = $2, message_count = 0, \
                                active_leaf = NULL, \
                                title = NULL, metadata = '{}' \
              WHERE tenant = $3 AND thread_id = $1"
        }
        (false, false) => {
            "UPDATE threads SET deleted_at = $2, updated_at = $2, message_count = 0, active_leaf = NULL \
              WHERE tenant = $3 AND thread_id = $1"
        }
    };
    sqlx::query(tombstone)
        .bind(delete.thread_id.as_str())
        .bind(now)
        .bind(tenant)
        .execute(&mut *tx)
        .await
        .map_err(sql("marking the thread deleted"))?;
    if delete.free_id {
        // A freed id leaves the feed too (ids may carry personal data), all but the thread's
        // newest delete, which tells followers the thread is gone.
        // No pass numbers the thread's events while they are erased (see `LOCK_PASSES`).
        sqlx::query(crate::feed_trim::LOCK_PASSES)
            .execute(&mut *tx)
            .await
            .map_err(sql("waiting for the change feed's numbering"))?;
        // Numbered and pending events apart, each through its own partial index (a purge must
        // not scan the whole feed while it holds the thread's lock).
        sqlx::query(
            "WITH kept AS ( \
                 SELECT coalesce( \
                     (SELECT max(id) FROM persist_feed WHERE position IS NULL AND tenant = $2 AND thread_id = $1 \
                         AND message_id IS NULL AND removed = 'thread'), \
                     (SELECT id FROM persist_feed WHERE position IS NOT NULL AND tenant = $2 AND thread_id = $1 \
                         AND message_id IS NULL AND removed = 'thread' ORDER BY position DESC LIMIT 1)) AS id), \
             numbered AS (DELETE FROM persist_feed WHERE tenant = $2 AND thread_id = $1 AND position IS NOT NULL \
                             AND id IS DISTINCT FROM (SELECT id FROM kept)) \
             DELETE FROM persist_feed WHERE position IS NULL AND tenant = $2 AND thread_id = $1 \
                AND id IS DISTINCT FROM (SELECT id FROM kept)",
        )
        .bind(delete.thread_id.as_str())
        .bind(tenant)
        .execute(&mut *tx)
        .await
        .map_err(sql("erasing the thread's feed"))?;
    }
    Ok(())
}

/// The summaries and session bindings the thread of `delete` holds (see
/// [`Delete::with_expected_attached`]).
async fn attached(tx: &mut PgConnection, delete: &Delete, tenant: &str) -> Result<Attached, PersistError> {
    let summaries: Vec<i64> =
        sqlx::query_scalar("SELECT through_seq FROM summaries WHERE tenant = $1 AND thread_id = $2")
            .bind(tenant)
            .bind(delete.thread_id.as_str())
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| map_sqlx("reading the thread's summaries", e))?;
    let bindings: Vec<(String, i64)> =
        sqlx::query_as("SELECT agent_id, updated_at FROM session_bindings WHERE tenant = $1 AND thread_id = $2")
            .bind(tenant)
            .bind(delete.thread_id.as_str())
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| map_sqlx("reading the thread's session bindings", e))?;
    let bindings = bindings
        .into_iter()
        .map(|(agent, at)| Ok((AgentId::new(agent).map_err(|e| corrupt(e.to_string()))?, Timestamp::from_micros(at))))
        .collect::<Result<Vec<_>, PersistError>>()?;
    Ok(Attached::new(summaries.into_iter().map(|seq| seq.max(0) as u64), bindings))
}
