//! Lookups the writes share, and the diagnosis of a guarded statement that changed nothing.

use persist_core::args::UpdateContent;
use persist_core::{Message, MessageId, PersistError, TenantId, ThreadId};
use sqlx::{PgConnection, Row};

use crate::error::map_sqlx;
use crate::rows::{self, message_columns, tenant_key};

pub(super) async fn find_message(
    conn: &mut PgConnection,
    tenant: Option<&TenantId>,
    thread_id: &ThreadId,
    id: &MessageId,
) -> Result<Option<Message>, PersistError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE tenant = $3 AND thread_id = $1 AND message_id = $2"
    ))
    .bind(thread_id.as_str())
    .bind(id.as_str())
    .bind(tenant_key(tenant))
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| map_sqlx("reading the message", e))?;
    row.map(|row| rows::message(&row)).transpose()
}

/// `Ok(Err(refusal))` when a write may not touch the thread: absent (`NotFound`), deleted
/// (`ThreadDeleted`). `Ok(Ok(version))` otherwise.
pub(super) async fn writable_thread(
    conn: &mut PgConnection,
    thread_id: &ThreadId,
    tenant: Option<&TenantId>,
    message_id: Option<&MessageId>,
) -> Result<Result<u64, PersistError>, PersistError> {
    let row = sqlx::query(
        "SELECT deleted_at IS NOT NULL AS deleted, version FROM threads WHERE tenant = $2 AND thread_id = $1",
    )
    .bind(thread_id.as_str())
    .bind(tenant_key(tenant))
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| map_sqlx("reading the thread", e))?;
    let Some(row) = row else {
        return Ok(Err(PersistError::not_found(thread_id, message_id)));
    };
    let read = |e| map_sqlx("reading the thread", e);
    if row.try_get::<bool, _>("deleted").map_err(read)? {
        return Ok(Err(PersistError::ThreadDeleted { thread_id: thread_id.clone() }));
    }
    let version: i64 = row.try_get("version").map_err(read)?;
    Ok(Ok(u64::try_from(version).unwrap_or_default()))
}

/// Why a guarded write to message `id` changed nothing: `Ok(refusal)`, or `Err` to retry
/// when nothing explains it any more (a concurrent writer changed the row meanwhile).
pub(super) async fn diagnose_message(
    conn: &mut PgConnection,
    thread_id: &ThreadId,
    id: &MessageId,
    tenant: Option<&TenantId>,
    expected_version: Option<u64>,
    content: Option<&UpdateContent>,
) -> Result<Option<PersistError>, PersistError> {
    if let Err(refusal) = writable_thread(conn, thread_id, tenant, Some(id)).await? {
        return Ok(Some(refusal));
    }
    Ok(match find_message(conn, tenant, thread_id, id).await? {
        None => Some(PersistError::not_found(thread_id, Some(id))),
        Some(message) => match expected_version {
            Some(expected) if expected != message.version => Some(PersistError::VersionConflict {
                thread_id: thread_id.clone(),
                message_id: Some(id.clone()),
                expected,
                actual: message.version,
            }),
            _ => content.and_then(|update| update.status_conflict(message.status)),
        },
    })
}
