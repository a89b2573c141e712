//! [`Restore`] as SQL: one transaction under the thread's row lock; every message judged
//! before the first insert, then all inserted in one statement.

use persist_core::args::Restore;
use persist_core::restore::{Verdict, merged_thread};
use persist_core::{IdempotencyKey, Message, PersistError, Restored, Thread};
use sqlx::{Connection, PgConnection};

use crate::error::map_sqlx;
use crate::rows::{self, json_text, message_columns, signed, tenant_key, thread_columns};

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
    let mut inserts = Vec::with_capacity(restore.messages.len());
    for incoming in &restore.messages {
        let verdict = match stored {
            None => Verdict::Insert,
            Some(_) => judge(tx, tenant, incoming).await?,
        };
        if verdict == Verdict::Insert {
            inserts.push(incoming);
        }
    }
    insert_all(tx, tenant, &inserts).await?;
    let inserted = inserts.len() as u64;
    let thread = merged_thread(stored.as_ref(), record, inserted);
    if inserted > 0 || stored.as_ref().is_some_and(|s| *s != thread) {
        sqlx::query(
            "UPDATE threads SET version = $3, updated_at = $4, last_seq = $5, message_count = $6 \
              WHERE tenant = $1 AND thread_id = $2",
        )
        .bind(tenant)
        .bind(record.id.as_str())
        .bind(signed(thread.version))
        .bind(thread.updated_at.as_micros())
        .bind(signed(thread.last_seq))
        .bind(signed(thread.message_count))
        .execute(&mut *tx)
        .await
        .map_err(sql("restoring the thread"))?;
    }
    Ok(Restored::new(thread, inserted, restore.messages.len() as u64 - inserted))
}

/// Every message in one statement, its columns as arrays.
async fn insert_all(tx: &mut PgConnection, tenant: &str, messages: &[&Message]) -> Result<(), PersistError> {
    let Some(first) = messages.first() else { return Ok(()) };
    let mut ids = Vec::with_capacity(messages.len());
    let (mut seqs, mut versions, mut created, mut updated) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut roles, mut contents, mut metadata, mut statuses, mut keys) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for m in messages {
        ids.push(m.id.as_str());
        seqs.push(signed(m.seq));
        roles.push(m.role.as_str());
        contents.push(m.content.as_json().into_owned());
        metadata.push(json_text(&m.metadata)?);
        statuses.push(m.status.as_str());
        versions.push(signed(m.version));
        keys.push(m.idempotency_key.as_ref().map(IdempotencyKey::as_str));
        created.push(m.created_at.as_micros());
        updated.push(m.updated_at.as_micros());
    }
    sqlx::query(
        "INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, \
                               idempotency_key, created_at, updated_at) \
         SELECT $1, $2, u.id, u.seq, u.role, u.content::jsonb, u.metadata::jsonb, u.status, u.version, u.key, \
                u.created_at, u.updated_at \
           FROM UNNEST($3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[], \
                       $10::text[], $11::bigint[], $12::bigint[]) \
             AS u(id, seq, role, content, metadata, status, version, key, created_at, updated_at)",
    )
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
    .execute(&mut *tx)
    .await
    .map_err(sql("restoring messages"))?;
    Ok(())
}

/// What the thread holds under the message's id, at its seq and under its idempotency key.
async fn judge(tx: &mut PgConnection, tenant: &str, incoming: &Message) -> Result<Verdict, PersistError> {
    let found = sqlx::query(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE tenant = $1 AND thread_id = $2 \
            AND (message_id = $3 OR seq = $4 OR ($5::text IS NOT NULL AND idempotency_key = $5))"
    ))
    .bind(tenant)
    .bind(incoming.thread_id.as_str())
    .bind(incoming.id.as_str())
    .bind(signed(incoming.seq))
    .bind(incoming.idempotency_key.as_ref().map(IdempotencyKey::as_str))
    .fetch_all(&mut *tx)
    .await
    .map_err(sql("reading the messages a restore meets"))?;
    let found = found.iter().map(rows::message).collect::<Result<Vec<_>, _>>()?;
    Restore::verdict_among(incoming, &found)
}
