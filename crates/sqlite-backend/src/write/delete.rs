//! Deletes: a message, the messages after a seq (truncation), a whole thread (and a purge).

use persist_core::args::{Attached, Delete};
use persist_core::{AgentId, Deleted, MessageId, PersistError, Target, TenantId, ThreadId, Timestamp};
use sqlx::SqliteConnection;

use super::guard::*;
use super::spent::{Removal, spend};
use super::{Failure, OpResult, aborted, refused, sql};
use crate::error::corrupt;
use crate::limits::Limits;
use crate::rows::{packed_id, signed, tenant_key, thread_key};

pub(super) async fn delete_message(
    conn: &mut SqliteConnection,
    delete: &Delete,
    id: &MessageId,
    limits: &Limits,
) -> OpResult<Deleted> {
    let at = Timestamp::now();
    let now = at.as_micros();
    let tenant = delete.context.tenant();
    let removal = Removal::Message(id, delete.expected_version);
    spend(conn, delete.thread_id.as_str(), tenant_key(tenant), removal, at, limits.key_retention).await?;
    let removed = sqlx::query(concat!(
        "DELETE FROM persist_messages \
              WHERE thread = (SELECT key FROM threads WHERE tenant = ?4 AND thread_id = ?1 AND deleted_at IS NULL) \
                AND message_id = ",
        packed_id!("?2"),
        " AND (?3 IS NULL OR version = ?3) RETURNING seq"
    ))
    .bind(delete.thread_id.as_str())
    .bind(id.as_str())
    .bind(delete.expected_version.map(signed))
    .bind(tenant_key(tenant))
    .fetch_optional(&mut *conn)
    .await
    .map_err(sql("deleting the message"))?;
    if removed.is_some() {
        touch_thread(conn, tenant, &delete.thread_id, now).await?;
        return Ok(Deleted::new(delete.thread_id.clone(), vec![id.clone()]));
    }
    // Nothing removed: already gone (an empty answer), or a stale expected version.
    match diagnose_message(conn, &delete.thread_id, id, tenant, delete.expected_version, None).await {
        conflict @ Failure::Refused(PersistError::VersionConflict { .. }) => Err(conflict),
        Failure::Refused(_) => Ok(Deleted::new(delete.thread_id.clone(), Vec::new())),
        aborted @ Failure::Aborted(_) => Err(aborted),
    }
}

pub(super) async fn touch_thread(
    conn: &mut SqliteConnection,
    tenant: Option<&TenantId>,
    thread_id: &ThreadId,
    now: i64,
) -> OpResult<()> {
    sqlx::query("UPDATE threads SET updated_at = ?2 WHERE tenant = ?3 AND thread_id = ?1")
        .bind(thread_id.as_str())
        .bind(now)
        .bind(tenant_key(tenant))
        .execute(&mut *conn)
        .await
        .map_err(sql("touching the thread"))?;
    Ok(())
}

/// Removes every message after `seq` in the writer's transaction, the thread checked by
/// [`delete_thread`] (the counters move in the delete trigger); the thread's version moves
/// when anything was removed. The active branch ends at its last message kept (walked before
/// the later ones go), or at the thread's last message when it keeps none: set once, after the
/// delete trigger moved it row by row.
pub(super) async fn truncate(
    conn: &mut SqliteConnection,
    delete: &Delete,
    seq: u64,
    active_leaf: Option<u64>,
    limits: &Limits,
) -> OpResult<Deleted> {
    let gone = Deleted::new(delete.thread_id.clone(), Vec::new());
    let tenant = tenant_key(delete.context.tenant());
    let kept = match active_leaf {
        Some(leaf) if leaf > seq => {
            let runs = super::summarize::runs(conn, delete.thread_id.as_str(), tenant, leaf).await?;
            runs.into_iter().filter(|&(lo, _)| lo <= seq).map(|(_, hi)| hi.min(seq)).max()
        }
        other => other,
    };
    spend(conn, delete.thread_id.as_str(), tenant, Removal::After(seq), Timestamp::now(), limits.key_retention).await?;
    let removed = sqlx::query(concat!(
        "DELETE FROM persist_messages WHERE thread = ",
        thread_key!("?2", "?1"),
        " AND seq > ?3 RETURNING seq, message_id"
    ))
    .bind(delete.thread_id.as_str())
    .bind(tenant)
    .bind(signed(seq))
    .fetch_all(&mut *conn)
    .await
    .map_err(sql("truncating the thread"))?;
    let ids = super::removed_ids(&removed)?;
    if ids.is_empty() {
        return Ok(gone);
    }
    sqlx::query(
        "UPDATE threads SET version = version + 1, updated_at = ?3, \
                active_leaf = coalesce((SELECT m.seq FROM persist_messages m WHERE m.thread = threads.key \
                                                                              AND m.seq = ?4), \
                                       (SELECT max(m.seq) FROM persist_messages m WHERE m.thread = threads.key)) \
          WHERE tenant = ?2 AND thread_id = ?1",
    )
    .bind(delete.thread_id.as_str())
    .bind(tenant)
    .bind(Timestamp::now().as_micros())
    .bind(kept.map(signed))
    .execute(&mut *conn)
    .await
    .map_err(sql("touching the truncated thread"))?;
    Ok(Deleted::new(delete.thread_id.clone(), ids))
}

pub(super) async fn delete_thread(conn: &mut SqliteConnection, delete: &Delete, limits: &Limits) -> OpResult<Deleted> {
    let gone = Deleted::new(delete.thread_id.clone(), Vec::new());
    let tenant = tenant_key(delete.context.tenant());
    let thread = match writable_thread(conn, &delete.thread_id, delete.context.tenant(), None).await {
        Ok(thread) => thread,
        // A purge of a tombstone erases what it still says, or frees its id.
        Err(Failure::Refused(PersistError::ThreadDeleted { .. })) if delete.purge => {
            mark_deleted(conn, delete, tenant).await?;
            return Ok(gone);
        }
        Err(Failure::Refused(_)) => return Ok(gone),
        Err(aborted) => return Err(aborted),
    };
    if let Some(expected) = delete.expected_version.filter(|&v| v != thread.version) {
        return Err(refused(PersistError::VersionConflict {
            thread_id: delete.thread_id.clone(),
            message_id: None,
            expected,
            actual: thread.version,
        }));
    }
    if let Some(conflict) = delete.updated_at_conflict(thread.updated_at) {
        return Err(refused(conflict));
    }
    if delete.expected_attached.is_some()
        && let Some(conflict) = delete.attached_conflict(&attached(conn, delete, tenant).await?)
    {
        return Err(refused(conflict));
    }
    if let Target::MessagesAfter(seq) = delete.target {
        super::summarize::truncate_summaries(conn, delete, seq).await?;
        return truncate(conn, delete, seq, thread.active_leaf, limits).await;
    }
    if delete.target == Target::Covered {
        return super::summarize::delete_covered(conn, delete, &thread, limits).await;
    }
    // Marked as being deleted first (a negative `last_seq`, which the tombstone restores): the
    // change feed then records the thread's delete, and not each message it removes. The mark
    // takes no room, so a delete frees room on a full disk before its event needs any.
    sqlx::query("UPDATE threads SET last_seq = -1 - last_seq WHERE tenant = ?2 AND thread_id = ?1")
        .bind(delete.thread_id.as_str())
        .bind(tenant)
        .execute(&mut *conn)
        .await
        .map_err(sql("marking the thread as being deleted"))?;
    let removed = sqlx::query(concat!(
        "DELETE FROM persist_messages WHERE thread = ",
        thread_key!("?2", "?1"),
        " RETURNING seq, message_id"
    ))
    .bind(delete.thread_id.as_str())
    .bind(tenant)
    .fetch_all(&mut *conn)
    .await
    .map_err(sql("deleting the thread's messages"))?;
    let ids = super::removed_ids(&removed)?;
    sqlx::query("DELETE FROM session_bindings WHERE tenant = ?2 AND thread_id = ?1")
        .bind(delete.thread_id.as_str())
        .bind(tenant)
        .execute(&mut *conn)
        .await
        .map_err(sql("deleting the thread's session bindings"))?;
    super::summarize::delete_thread_records(conn, delete).await?;
    mark_deleted(conn, delete, tenant).await?;
    Ok(Deleted::new(delete.thread_id.clone(), ids))
}

/// Removes the thread's rows from `persist_messages_retired` (`messages` of schema 16, renamed
/// as the store was finished, while it is being emptied): its foreign key names the thread's
/// row, which freeing the id removes.
async fn forget_retired(conn: &mut SqliteConnection, delete: &Delete, tenant: &str) -> OpResult<()> {
    let retired = crate::migrations::has(&mut *conn, "table", crate::migrations::RETIRED)
        .await
        .map_err(sql("looking for the retired messages table"))?;
    if retired {
        sqlx::query("DELETE FROM persist_messages_retired WHERE tenant = ?1 AND thread_id = ?2")
            .bind(tenant)
            .bind(delete.thread_id.as_str())
            .execute(&mut *conn)
            .await
            .map_err(sql("removing a freed thread's retired messages"))?;
    }
    Ok(())
}

/// Leaves the thread's tombstone; a purge clears what it said, or removes it to free the id.
pub(super) async fn mark_deleted(conn: &mut SqliteConnection, delete: &Delete, tenant: &str) -> OpResult<()> {
    let now = Timestamp::now().as_micros();
    if delete.free_id {
        forget_retired(conn, delete, tenant).await?;
    }
    // A deleted thread takes no write: its spent keys answer nothing any more.
    sqlx::query(concat!("DELETE FROM persist_spent_keys WHERE thread = ", thread_key!("?2", "?1")))
        .bind(delete.thread_id.as_str())
        .bind(tenant)
        .execute(&mut *conn)
        .await
        .map_err(sql("forgetting the thread's spent keys"))?;
    let tombstone = match (delete.purge, delete.free_id) {
        (_, true) => "DELETE FROM threads WHERE tenant = ?3 AND thread_id = ?1 AND ?2 IS NOT NULL",
        (true, false) => {
            "UPDATE threads SET deleted_at = coalesce(deleted_at, ?2), updated_at = ?2, message_count = 0, \
                                title = NULL, metadata = '{}', active_leaf = NULL, \
                                last_seq = CASE WHEN last_seq < 0 THEN -1 - last_seq ELSE last_seq END \
              WHERE tenant = ?3 AND thread_id = ?1"
        }
        (false, false) => {
            "UPDATE threads SET deleted_at = ?2, updated_at = ?2, message_count = 0, active_leaf = NULL, \
                                last_seq = CASE WHEN last_seq < 0 THEN -1 - last_seq ELSE last_seq END \
              WHERE tenant = ?3 AND thread_id = ?1"
        }
    };
    // A freed id leaves the feed too (ids may carry personal data), all but the thread's
    // newest delete, which tells followers the thread is gone: its chain, from the newest event
    // the thread's row names, is erased.
    let chain: Option<(Option<i64>, Option<i64>)> = match delete.free_id {
        true => sqlx::query_as("SELECT feed_last, key FROM threads WHERE tenant = ?2 AND thread_id = ?1")
            .bind(delete.thread_id.as_str())
            .bind(tenant)
            .fetch_optional(&mut *conn)
            .await
            .map_err(sql("reading the thread's feed"))?,
        false => None,
    };
    sqlx::query(tombstone)
        .bind(delete.thread_id.as_str())
        .bind(now)
        .bind(tenant)
        .execute(&mut *conn)
        .await
        .map_err(sql("marking the thread deleted"))?;
    if let Some((Some(newest), key)) = chain {
        erase_chain(conn, delete, tenant, newest, key).await?;
    }
    Ok(())
}

/// Erases a freed thread's events (its chain, from `newest`) but its newest delete, which then
/// names the thread by tenant and id (its row, and with it its key, is gone).
async fn erase_chain(
    conn: &mut SqliteConnection,
    delete: &Delete,
    tenant: &str,
    newest: i64,
    key: Option<i64>,
) -> OpResult<()> {
    // The thread's newest delete, in either of the feed's tables (migration 16): by its names in
    // `persist_feed` and once its row is gone, by its key while it is there.
    macro_rules! kept {
        () => {
            "max(coalesce((SELECT max(position) FROM persist_feed \
                            WHERE tenant = ?2 AND thread_id = ?1 AND message_id IS NULL AND removed = 'thread'), 0), \
                 coalesce((SELECT max(position) FROM persist_events \
                            WHERE thread = ?4 AND message_id IS NULL AND op = 6), 0), \
                 coalesce((SELECT max(position) FROM persist_events \
                            WHERE thread IS NULL AND tenant = ?2 AND thread_id = ?1 AND op = 6), 0))"
        };
    }
    // The chain, from the newest event: its links run through both tables.
    macro_rules! chain {
        () => {
            "WITH RECURSIVE chain(position) AS ( \
                 SELECT ?3 \
                 UNION SELECT f.prev FROM persist_feed f JOIN chain c ON f.position = c.position \
                  WHERE f.prev IS NOT NULL \
                 UNION SELECT e.prev FROM persist_events e JOIN chain c ON e.position = c.position \
                  WHERE e.prev IS NOT NULL) "
        };
    }
    let statements = [
        // With the feed off no delete is written, and the newest event may be one that goes
        // (the kept delete, if any, is an older one): the head must not move back (positions
        // are never reused), so what goes counts as removed.
        concat!(
            chain!(),
            "UPDATE persist_feed_state SET trimmed = max(trimmed, head.position) \
               FROM (SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0), \
                                coalesce((SELECT max(position) FROM persist_events), 0)) AS position) head \
              WHERE head.position IN (SELECT position FROM chain) AND head.position IS NOT ",
            kept!()
        ),
        // The older table's events first (they are the older ones: the walk from the newest
        // still reaches them).
        concat!(
            chain!(),
            "DELETE FROM persist_feed WHERE position IN (SELECT position FROM chain) AND position IS NOT ",
            kept!()
        ),
        concat!(
            chain!(),
            "DELETE FROM persist_events WHERE position IN (SELECT position FROM chain) AND position IS NOT ",
            kept!()
        ),
        concat!("UPDATE persist_feed SET prev = NULL WHERE position = ", kept!()),
        concat!(
            "UPDATE persist_events SET prev = NULL, thread = NULL, tenant = ?2, thread_id = ?1 WHERE position = ",
            kept!()
        ),
    ];
    for statement in statements {
        sqlx::query(statement)
            .bind(delete.thread_id.as_str())
            .bind(tenant)
            .bind(newest)
            .bind(key)
            .execute(&mut *conn)
            .await
            .map_err(sql("erasing the thread's feed"))?;
    }
    Ok(())
}

/// The summaries and session bindings the thread of `delete` holds (see
/// [`Delete::with_expected_attached`]).
async fn attached(conn: &mut SqliteConnection, delete: &Delete, tenant: &str) -> OpResult<Attached> {
    let summaries: Vec<i64> =
        sqlx::query_scalar("SELECT through_seq FROM summaries WHERE tenant = ?2 AND thread_id = ?1")
            .bind(delete.thread_id.as_str())
            .bind(tenant)
            .fetch_all(&mut *conn)
            .await
            .map_err(sql("reading the thread's summaries"))?;
    let bindings: Vec<(String, i64)> =
        sqlx::query_as("SELECT agent_id, updated_at FROM session_bindings WHERE tenant = ?2 AND thread_id = ?1")
            .bind(delete.thread_id.as_str())
            .bind(tenant)
            .fetch_all(&mut *conn)
            .await
            .map_err(sql("reading the thread's session bindings"))?;
    let bindings = bindings
        .into_iter()
        .map(|(agent, at)| Ok((AgentId::new(agent).map_err(|e| corrupt(e.to_string()))?, Timestamp::from_micros(at))))
        .collect::<Result<Vec<_>, PersistError>>()
        .map_err(aborted)?;
    Ok(Attached::new(summaries.into_iter().map(|seq| seq.max(0) as u64), bindings))
}
