//! [`Restore`] as SQL: one transaction under the thread's row lock; every message judged
//! before the first insert, then all inserted in one statement.

use std::collections::BTreeSet;

use persist_core::args::Restore;
use persist_core::restore::{Verdict, merged_thread};
use persist_core::{IdempotencyKey, Message, PersistError, Restored, RuntimeId, Thread};
use sqlx::{Connection, PgConnection};

use crate::error::map_sqlx;
use crate::rows::{self, json_text, message_columns, signed, stored_content, stored_form, tenant_key, thread_columns};

fn sql(context: &'static str) -> impl FnOnce(sqlx::Error) -> PersistError {
    move |e| map_sqlx(context, e)
}

/// Restores a thread and its messages (validated by the caller) in one transaction.
pub(crate) async fn restore(conn: &mut PgConnection, restore: &Restore) -> Result<Restored, PersistError> {
    let mut tx = conn.begin().await.map_err(sql("starting the restore"))?;
    match restore_locked(&mut tx, restore).await {
        Ok(restored) => {
            tx.commit().await.map_err(sql("committing the restore"))?;
            Ok(restored)
        }
        Err(refused) => {
            // A rollback that fails answers its own error: the pool then drops the connection
            // rather than hand on one still inside this transaction.
            tx.rollback().await.map_err(sql("rolling back the restore"))?;
            Err(refused)
        }
    }
}

async fn restore_locked(tx: &mut PgConnection, restore: &Restore) -> Result<Restored, PersistError> {
    let tenant = tenant_key(restore.context.tenant());
    let record = &restore.thread;
    // Create the thread from the record unless it exists; either way, hold its row lock.
    let created = sqlx::query(concat!(
        "INSERT INTO threads (tenant, thread_id, title, metadata, version, created_at, updated_at, last_seq, \
                              message_count) \
         VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, 0) ON CONFLICT (tenant, thread_id) DO NOTHING RETURNING ",
        thread_columns!()
    ))
    .bind(tenant)
    .bind(record.id.as_str())
    .bind(record.title.as_deref())
    .bind(json_text(&record.metadata)?)
    .bind(signed(record.version))
    .bind(record.created_at.as_micros())
    .bind(record.updated_at.as_micros())
    .bind(signed(record.last_seq))
    .fetch_optional(&mut *tx)
    .await
    .map_err(sql("restoring the thread"))?;
    let stored = match created {
        Some(_) => None,
        None => {
            let row = sqlx::query(concat!(
                "SELECT ",
                thread_columns!(),
                " FROM threads WHERE tenant = $1 AND thread_id = $2 FOR UPDATE"
            ))
            .bind(tenant)
            .bind(record.id.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(sql("locking the thread"))?;
            Some(rows::thread(&row)?)
        }
    };
    if stored.as_ref().is_some_and(Thread::is_deleted) {
        return Err(PersistError::ThreadDeleted { thread_id: record.id.clone() });
    }
    let found = match stored {
        Some(_) if !restore.messages.is_empty() => in_the_way(tx, tenant, restore).await?,
        _ => Vec::new(),
    };
    let mut inserts = Vec::with_capacity(restore.messages.len());
    for incoming in &restore.messages {
        if Restore::verdict_among(incoming, &found)? == Verdict::Insert {
            inserts.push(incoming);
        }
    }
    check_parents(tx, tenant, restore).await?;
    insert_all(tx, tenant, &inserts).await?;
    let inserted = inserts.len() as u64;
    let mut thread = merged_thread(stored.as_ref(), record, inserted);
    if inserted > 0 || stored.as_ref().is_some_and(|s| *s != thread) {
        // The thread's active leaf: the record's once that message is in, else its highest seq.
        let leaf: Option<i64> = sqlx::query_scalar(
            "UPDATE threads SET version = $3, updated_at = $4, last_seq = $5, message_count = $6, \
                    active_leaf = CASE WHEN EXISTS (SELECT 1 FROM messages m WHERE m.tenant = $1 \
                                                      AND m.thread_id = $2 AND m.seq = $7) THEN $7 \
                                       ELSE (SELECT max(m.seq) FROM messages m WHERE m.tenant = $1 AND m.thread_id = $2) \
                                  END \
              WHERE tenant = $1 AND thread_id = $2 RETURNING active_leaf",
        )
        .bind(tenant)
        .bind(record.id.as_str())
        .bind(signed(thread.version))
        .bind(thread.updated_at.as_micros())
        .bind(signed(thread.last_seq))
        .bind(signed(thread.message_count))
        .bind(record.active_leaf.map(signed))
        .fetch_one(&mut *tx)
        .await
        .map_err(sql("restoring the thread"))?;
        thread.active_leaf = leaf.and_then(|leaf| u64::try_from(leaf).ok());
    }
    let bindings = restore_bindings(tx, tenant, restore).await?;
    Ok(Restored::new(thread, inserted, restore.messages.len() as u64 - inserted).with_bindings(bindings))
}

/// Writes each binding unless the one stored for its agent changed at the same time or later
/// ([`Restore::binding_wins`], in the statement's `WHERE`); answers how many were written.
async fn restore_bindings(tx: &mut PgConnection, tenant: &str, restore: &Restore) -> Result<u64, PersistError> {
    let mut written = 0;
    for stored in &restore.bindings {
        let b = &stored.binding;
        let done = sqlx::query(
            "INSERT INTO session_bindings (tenant, agent_id, thread_id, session_id, provider, runtime_id, work_dir, \
                                           state, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
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
        .execute(&mut *tx)
        .await
        .map_err(sql("restoring a session binding"))?;
        written += done.rows_affected();
    }
    Ok(written)
}

/// Refuses, before anything is written, a message whose parent is neither an earlier message
/// of the restore nor one the thread holds (nor before every message of both; read under the
/// thread's lock).
async fn check_parents(tx: &mut PgConnection, tenant: &str, restore: &Restore) -> Result<(), PersistError> {
    let incoming: BTreeSet<u64> = restore.messages.iter().map(|m| m.seq).collect();
    let elsewhere: Vec<i64> = restore
        .messages
        .iter()
        .filter_map(|m| m.parent_seq)
        .filter(|parent| !incoming.contains(parent))
        .map(signed)
        .collect();
    let stored: Vec<i64> = if elsewhere.is_empty() {
        Vec::new()
    } else {
        sqlx::query_scalar("SELECT seq FROM messages WHERE tenant = $1 AND thread_id = $2 AND seq = ANY($3)")
            .bind(tenant)
            .bind(restore.thread.id.as_str())
            .bind(elsewhere)
            .fetch_all(&mut *tx)
            .await
            .map_err(sql("looking up restored messages' parents"))?
    };
    // The thread's oldest message: a parent before it is history `Delete::covered` removed.
    let oldest: Option<i64> = sqlx::query_scalar("SELECT min(seq) FROM messages WHERE tenant = $1 AND thread_id = $2")
        .bind(tenant)
        .bind(restore.thread.id.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(sql("looking up a restored thread's oldest message"))?;
    let stored = stored.into_iter().chain(oldest).filter_map(|seq| u64::try_from(seq).ok()).collect();
    persist_core::branch::check_parents(&restore.messages, &stored)
}

/// Every message in one statement, its columns as arrays.
pub(super) async fn insert_all(tx: &mut PgConnection, tenant: &str, messages: &[&Message]) -> Result<(), PersistError> {
    let Some(first) = messages.first() else { return Ok(()) };
    let mut ids = Vec::with_capacity(messages.len());
    let (mut seqs, mut versions, mut created, mut updated) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut roles, mut contents, mut metadata, mut statuses, mut keys) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut parents = Vec::with_capacity(messages.len());
    let mut text_blocks = Vec::with_capacity(messages.len());
    for m in messages {
        ids.push(m.id.as_str());
        seqs.push(signed(m.seq));
        parents.push(persist_core::branch::stored_parent(m.seq, m.parent_seq).map(signed));
        roles.push(m.role.as_str());
        let (content, text_block) = rows::content_param(&m.content);
        contents.push(content.into_owned());
        text_blocks.push(text_block);
        metadata.push(json_text(&m.metadata)?);
        statuses.push(m.status.as_str());
        versions.push(signed(m.version));
        keys.push(m.idempotency_key.as_ref().map(IdempotencyKey::as_str));
        created.push(m.created_at.as_micros());
        updated.push(m.updated_at.as_micros());
    }
    sqlx::query(concat!(
        "INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, content_form, metadata, status, \
                               version, idempotency_key, created_at, updated_at, parent_seq) \
         SELECT $1, $2, u.id, u.seq, u.role, ",
        stored_content!("u.content", "u.text_block"),
        ", ",
        stored_form!("u.text_block"),
        ", u.metadata::jsonb, u.status, u.version, u.key, u.created_at, u.updated_at, u.parent \
           FROM UNNEST($3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[], \
                       $10::text[], $11::bigint[], $12::bigint[], $13::bigint[], $14::boolean[]) \
             AS u(id, seq, role, content, metadata, status, version, key, created_at, updated_at, parent, text_block)",
    ))
    .bind(tenant)
    .bind(first.thread_id.as_str())
    .bind(ids)
    .bind(seqs)
    .bind(roles)
    .bind(contents)
    .bind(metadata)
    .bind(statuses)
    .bind(versions)
    .bind(keys)
    .bind(created)
    .bind(updated)
    .bind(parents)
    .bind(text_blocks)
    .execute(&mut *tx)
    .await
    .map_err(sql("restoring messages"))?;
    Ok(())
}

/// The messages of the thread that hold one of the restored messages' ids, seqs or idempotency
/// keys: one round trip of three index lookups, whatever the batch's size.
async fn in_the_way(tx: &mut PgConnection, tenant: &str, restore: &Restore) -> Result<Vec<Message>, PersistError> {
    let ids: Vec<&str> = restore.messages.iter().map(|m| m.id.as_str()).collect();
    let seqs: Vec<i64> = restore.messages.iter().map(|m| signed(m.seq)).collect();
    let keys: Vec<&str> =
        restore.messages.iter().filter_map(|m| m.idempotency_key.as_ref().map(IdempotencyKey::as_str)).collect();
    let found = sqlx::query(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE tenant = $1 AND thread_id = $2 AND message_id = ANY($3) \
         UNION ALL SELECT ",
        message_columns!(),
        " FROM messages WHERE tenant = $1 AND thread_id = $2 AND seq = ANY($4) \
         UNION ALL SELECT ",
        message_columns!(),
        " FROM messages WHERE tenant = $1 AND thread_id = $2 AND idempotency_key IS NOT NULL \
           AND idempotency_key = ANY($5)"
    ))
    .bind(tenant)
    .bind(restore.thread.id.as_str())
    .bind(ids)
    .bind(seqs)
    .bind(keys)
    .fetch_all(&mut *tx)
    .await
    .map_err(sql("reading the messages a restore meets"))?;
    found.iter().map(rows::message).collect()
}
