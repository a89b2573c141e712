//! Lookups the writes share: the message and thread a write addresses, and the diagnosis of a
//! guarded statement that touched no row (which rule refused it).

use persist_core::args::UpdateContent;
use persist_core::{Message, MessageId, PersistError, TenantId, ThreadId};
use sqlx::SqliteConnection;

use super::{Failure, OpResult, aborted, refused, sql};
use crate::rows::{self, message_columns, packed_id, tenant_key, thread_columns, thread_key};

pub(super) async fn find_message(
    conn: &mut SqliteConnection,
    tenant: Option<&TenantId>,
    thread_id: &ThreadId,
    id: &MessageId,
) -> OpResult<Option<Message>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        message_columns!("?1"),
        " FROM persist_messages WHERE thread = ",
        thread_key!("?3", "?1"),
        " AND message_id = ",
        packed_id!("?2")
    ))
    .bind(thread_id.as_str())
    .bind(id.as_str())
    .bind(tenant_key(tenant))
    .fetch_optional(&mut *conn)
    .await
    .map_err(sql("reading the message"))?;
    row.map(|row| rows::message(&row)).transpose().map_err(aborted)
}

/// The thread's state as a write sees it; refuses absent (`NotFound`) and deleted
/// (`ThreadDeleted`) threads.
pub(super) async fn writable_thread(
    conn: &mut SqliteConnection,
    thread_id: &ThreadId,
    tenant: Option<&TenantId>,
    message_id: Option<&MessageId>,
) -> OpResult<persist_core::Thread> {
    match find_thread(conn, tenant, thread_id).await? {
        Some(thread) if thread.is_deleted() => {
            Err(refused(PersistError::ThreadDeleted { thread_id: thread_id.clone() }))
        }
        Some(thread) => Ok(thread),
        None => Err(refused(PersistError::not_found(thread_id, message_id))),
    }
}

pub(crate) async fn find_thread(
    conn: &mut SqliteConnection,
    tenant: Option<&TenantId>,
    thread_id: &ThreadId,
) -> OpResult<Option<persist_core::Thread>> {
    let row = sqlx::query(concat!("SELECT ", thread_columns!(), " FROM threads WHERE tenant = ?2 AND thread_id = ?1"))
        .bind(thread_id.as_str())
        .bind(tenant_key(tenant))
        .fetch_optional(&mut *conn)
        .await
        .map_err(sql("reading the thread"))?;
    row.map(|row| rows::thread(&row)).transpose().map_err(aborted)
}

/// Why a guarded write to message `id` touched no row.
pub(super) async fn diagnose_message(
    conn: &mut SqliteConnection,
    thread_id: &ThreadId,
    id: &MessageId,
    tenant: Option<&TenantId>,
    expected_version: Option<u64>,
    content: Option<&UpdateContent>,
) -> Failure {
    if let Err(failure) = writable_thread(conn, thread_id, tenant, Some(id)).await {
        return failure;
    }
    match find_message(conn, tenant, thread_id, id).await {
        Err(failure) => failure,
        Ok(None) => refused(PersistError::not_found(thread_id, Some(id))),
        Ok(Some(message)) => match expected_version {
            Some(expected) if expected != message.version => refused(PersistError::VersionConflict {
                thread_id: thread_id.clone(),
                message_id: Some(id.clone()),
                expected,
                actual: message.version,
            }),
            _ if let Some(refusal) = content.and_then(|update| update.status_conflict(message.status)) => {
                refused(refusal)
            }
            _ => aborted(PersistError::Backend {
                message: "a guarded write matched no row for no known reason".into(),
                source: None,
            }),
        },
    }
}
