//! [`Restore`] as SQL: judge every message, then write, in the writer's transaction.

use std::collections::BTreeSet;

use persist_core::args::Restore;
use persist_core::restore::{Verdict, merged_thread};
use persist_core::{IdempotencyKey, Message, PersistError, Restored, RuntimeId};
use sqlx::SqliteConnection;

use super::{OpResult, aborted, find_thread, refused, sql};
use crate::limits::Limits;
use crate::rows::{self, message_columns, packed_id, packed_role, signed, tenant_key, thread_key};

/// Restores a thread and its messages (validated by the caller); a refusal comes before the
/// first write.
pub(crate) async fn restore(conn: &mut SqliteConnection, restore: &Restore, limits: &Limits) -> OpResult<Restored> {
    let tenant = restore.context.tenant();
    let key = tenant_key(tenant);
    let stored = find_thread(conn, tenant, &restore.thread.id).await?;
    if stored.as_ref().is_some_and(persist_core::Thread::is_deleted) {
        return Err(refused(PersistError::ThreadDeleted { thread_id: restore.thread.id.clone() }));
    }
    let mut inserts = Vec::with_capacity(restore.messages.len());
    for incoming in &restore.messages {
        let verdict = match stored {
            None => Verdict::Insert,
            Some(_) => judge(conn, key, incoming).await?,
        };
        if verdict == Verdict::Insert {
            limits.content(&incoming.content)?;
            inserts.push((incoming, limits.metadata(&incoming.metadata)?));
        }
    }
    check_parents(conn, key, restore).await?;
    let inserted = inserts.len() as u64;
    let thread = merged_thread(stored.as_ref(), &restore.thread, inserted);
    if stored.is_none() {
        // The thread's metadata is written only when the restore creates it; still before any
        // write.
        let thread_metadata = limits.metadata(&restore.thread.metadata)?;
        sqlx::query(
            "INSERT INTO threads (tenant, thread_id, title, metadata, version, created_at, updated_at, last_seq, \
                                  message_count) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0)",
        )
        .bind(key)
        .bind(thread.id.as_str())
        .bind(thread.title.as_deref())
        .bind(&thread_metadata)
        .bind(signed(thread.version))
        .bind(thread.created_at.as_micros())
        .bind(thread.updated_at.as_micros())
        .bind(signed(thread.last_seq))
        .execute(&mut *conn)
        .await
        .map_err(sql("restoring the thread"))?;
    }
    for (message, metadata) in inserts {
        let (content, form) = rows::stored_content(&message.content, limits.packed);
        sqlx::query(concat!(
            "INSERT INTO persist_messages (thread, message_id, seq, role, content, metadata, status, version, \
                                               idempotency_key, created_at, updated_at, parent_seq, content_form) \
                 SELECT key, ",
            packed_id!("?3"),
            ", ?4, ",
            packed_role!("?5"),
            ", ?6, nullif(?7, '{}'), nullif(?8, 'complete'), ?9, ?10, ?11, nullif(?12, ?11), ?13, ?14 \
                   FROM threads WHERE tenant = ?1 AND thread_id = ?2"
        ))
        .bind(key)
        .bind(message.thread_id.as_str())
        .bind(message.id.as_str())
        .bind(signed(message.seq))
        .bind(message.role.as_str())
        .bind(content)
        .bind(metadata)
        .bind(message.status.as_str())
        .bind(signed(message.version))
        .bind(message.idempotency_key.as_ref().map(IdempotencyKey::as_str))
        .bind(message.created_at.as_micros())
        .bind(message.updated_at.as_micros())
        .bind(persist_core::branch::stored_parent(message.seq, message.parent_seq).map(signed))
        .bind(form)
        .execute(&mut *conn)
        .await
        .map_err(sql("restoring a message"))?;
    }
    // The insert trigger moved `last_seq`, `updated_at` and the active leaf to each message's:
    // set the thread's (its leaf once that message is in, else its highest seq).
    let mut thread = thread;
    if inserted > 0 || stored.as_ref().is_some_and(|s| *s != thread) {
        let leaf: Option<i64> = sqlx::query_scalar(
            "UPDATE threads SET version = ?3, updated_at = ?4, last_seq = ?5, \
                    active_leaf = CASE WHEN EXISTS (SELECT 1 FROM persist_messages m WHERE m.thread = threads.key \
                                                                                      AND m.seq = ?6) THEN ?6 \
                                       ELSE (SELECT max(m.seq) FROM persist_messages m WHERE m.thread = threads.key) \
                                  END \
              WHERE tenant = ?1 AND thread_id = ?2 RETURNING active_leaf",
        )
        .bind(key)
        .bind(thread.id.as_str())
        .bind(signed(thread.version))
        .bind(thread.updated_at.as_micros())
        .bind(signed(thread.last_seq))
        .bind(restore.thread.active_leaf.map(signed))
        .fetch_one(&mut *conn)
        .await
        .map_err(sql("restoring the thread"))?;
        thread.active_leaf = leaf.and_then(|leaf| u64::try_from(leaf).ok());
    }
    let bindings = restore_bindings(conn, key, restore).await?;
    Ok(Restored::new(thread, inserted, restore.messages.len() as u64 - inserted).with_bindings(bindings))
}

/// Refuses, before anything is written, a message whose parent is neither an earlier message
/// of the restore nor one the thread holds (nor before every message of both).
async fn check_parents(conn: &mut SqliteConnection, tenant: &str, restore: &Restore) -> OpResult<()> {
    let incoming: BTreeSet<u64> = restore.messages.iter().map(|m| m.seq).collect();
    let mut stored = BTreeSet::new();
    let elsewhere: BTreeSet<u64> =
        restore.messages.iter().filter_map(|m| m.parent_seq).filter(|p| !incoming.contains(p)).collect();
    for parent in elsewhere {
        let found: Option<i64> = sqlx::query_scalar(concat!(
            "SELECT seq FROM persist_messages WHERE thread = ",
            thread_key!("?1", "?2"),
            " AND seq = ?3"
        ))
        .bind(tenant)
        .bind(restore.thread.id.as_str())
        .bind(signed(parent))
        .fetch_optional(&mut *conn)
        .await
        .map_err(sql("looking up a restored message's parent"))?;
        if found.is_some() {
            stored.insert(parent);
        }
    }
    // The thread's oldest message: a parent before it is history `Delete::covered` removed.
    let oldest: Option<i64> =
        sqlx::query_scalar(concat!("SELECT min(seq) FROM persist_messages WHERE thread = ", thread_key!("?1", "?2")))
            .bind(tenant)
            .bind(restore.thread.id.as_str())
            .fetch_one(&mut *conn)
            .await
            .map_err(sql("looking up a restored thread's oldest message"))?;
    stored.extend(oldest.and_then(|seq| u64::try_from(seq).ok()));
    persist_core::branch::check_parents(&restore.messages, &stored).map_err(refused)
}

/// Writes each binding unless the one stored for its agent changed at the same time or later
/// ([`Restore::binding_wins`], in the statement's `WHERE`); answers how many were written.
async fn restore_bindings(conn: &mut SqliteConnection, tenant: &str, restore: &Restore) -> OpResult<u64> {
    let mut written = 0;
    for stored in &restore.bindings {
        let b = &stored.binding;
        let done = sqlx::query(
            "INSERT INTO session_bindings (tenant, agent_id, thread_id, session_id, provider, runtime_id, work_dir, \
                                           state, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
             ON CONFLICT (tenant, agent_id, thread_id) DO UPDATE \
                SET session_id = excluded.session_id, provider = excluded.provider, \
                    runtime_id = excluded.runtime_id, work_dir = excluded.work_dir, state = excluded.state, \
                    created_at = excluded.created_at, updated_at = excluded.updated_at \
              WHERE session_bindings.updated_at < excluded.updated_at",
        )
        .bind(tenant)
        .bind(b.agent_id.as_str())
        .bind(b.thread_id.as_str())
        .bind(b.session_id.as_str())
        .bind(b.provider.as_str())
        .bind(b.runtime_id.as_ref().map(RuntimeId::as_str))
        .bind(b.work_dir.as_deref())
        .bind(stored.state.as_str())
        .bind(b.created_at.as_micros())
        .bind(b.updated_at.as_micros())
        .execute(&mut *conn)
        .await
        .map_err(sql("restoring a session binding"))?;
        written += done.rows_affected();
    }
    Ok(written)
}

/// What the thread holds under the message's id, at its seq and under its idempotency key, in
/// one query of three index lookups (one `OR` of the three would scan the thread's messages).
async fn judge(conn: &mut SqliteConnection, tenant: &str, incoming: &Message) -> OpResult<Verdict> {
    let found = sqlx::query(concat!(
        "SELECT ",
        message_columns!("?2"),
        " FROM persist_messages WHERE thread = ",
        thread_key!("?1", "?2"),
        " AND message_id = ",
        packed_id!("?3"),
        " UNION SELECT ",
        message_columns!("?2"),
        " FROM persist_messages WHERE thread = ",
        thread_key!("?1", "?2"),
        " AND seq = ?4 \
         UNION SELECT ",
        message_columns!("?2"),
        " FROM persist_messages WHERE thread = ",
        thread_key!("?1", "?2"),
        " AND idempotency_key = ?5"
    ))
    .bind(tenant)
    .bind(incoming.thread_id.as_str())
    .bind(incoming.id.as_str())
    .bind(signed(incoming.seq))
    .bind(incoming.idempotency_key.as_ref().map(IdempotencyKey::as_str))
    .fetch_all(&mut *conn)
    .await
    .map_err(sql("reading the messages a restore meets"))?;
    let found = found.iter().map(rows::message).collect::<Result<Vec<_>, _>>().map_err(aborted)?;
    Restore::verdict_among(incoming, &found).map_err(refused)
}
