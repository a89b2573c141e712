//! Updates: content (replacements and appends), a message's metadata and role, a thread's fields.

use persist_core::args::{Update, UpdateContent};
use persist_core::branch::{Switch, unknown_message};
use persist_core::{Message, MessageId, PersistError, Status, Timestamp, Updated};
use sqlx::SqliteConnection;

use super::guard::*;
use super::{OpResult, aborted, refused, sql};
use crate::limits::Limits;
use crate::rows::{self, message_columns, packed_id, packed_role, signed, tenant_key, thread_columns};

pub(super) async fn update_content(
    conn: &mut SqliteConnection,
    update: &UpdateContent,
    limits: &Limits,
) -> OpResult<Message> {
    if !update.append {
        return replace_content(conn, update, limits).await;
    }
    // Joined to the stored content (the writer's transaction: nothing changes it meanwhile),
    // then written as a replacement expecting the stored version.
    match find_message(conn, update.context.tenant(), &update.thread_id, &update.message_id).await? {
        Some(stored) => replace_content(conn, &update.resolved(&stored).map_err(refused)?, limits).await,
        // No message to join to: the guarded write finds none either and says why (absent, or
        // its thread deleted).
        None => replace_content(conn, update, limits).await,
    }
}

pub(super) async fn replace_content(
    conn: &mut SqliteConnection,
    update: &UpdateContent,
    limits: &Limits,
) -> OpResult<Message> {
    let content = limits.content(&update.content)?;
    let (stored, form) = rows::stored_content(&content, limits.packed);
    let tenant = tenant_key(update.context.tenant());
    let row = sqlx::query(concat!(
        "UPDATE persist_messages \
            SET content = ?3, content_form = ?11, \
                status = CASE WHEN ?4 IS NULL THEN status ELSE nullif(?4, 'complete') END, \
                version = version + 1, updated_at = ?5, delta = ?10, \
                delta_version = CASE WHEN ?10 IS NULL THEN NULL ELSE version + 1 END \
          WHERE thread = (SELECT key FROM threads WHERE tenant = ?7 AND thread_id = ?1 AND deleted_at IS NULL) \
            AND message_id = ",
        packed_id!("?2"),
        " AND (?6 IS NULL OR version = ?6) \
            AND (status = 'reserved' OR (status IS NULL AND ?8) OR (status = 'interrupted' AND ?9)) \
         RETURNING ",
        message_columns!("?1")
    ))
    .bind(update.thread_id.as_str())
    .bind(update.message_id.as_str())
    .bind(stored)
    .bind(update.status_after().map(Status::as_str))
    .bind(Timestamp::now().as_micros())
    .bind(update.expected_version.map(signed))
    .bind(tenant)
    .bind(update.may_write_over(Status::Complete))
    .bind(update.may_write_over(Status::Interrupted))
    .bind(update.feed_delta().map(|delta| delta.as_json()))
    .bind(form)
    .fetch_optional(&mut *conn)
    .await
    .map_err(sql("updating the content"))?;
    match row {
        Some(row) => rows::message(&row).map_err(aborted),
        None => Err(diagnose_message(
            conn,
            &update.thread_id,
            &update.message_id,
            update.context.tenant(),
            update.expected_version,
            Some(update),
        )
        .await),
    }
}

pub(super) async fn update_message(
    conn: &mut SqliteConnection,
    update: &Update,
    id: &MessageId,
    limits: &Limits,
) -> OpResult<Message> {
    let tenant = update.context.tenant();
    writable_thread(conn, &update.thread_id, tenant, Some(id)).await?;
    let Some(mut message) = find_message(conn, tenant, &update.thread_id, id).await? else {
        return Err(refused(PersistError::not_found(&update.thread_id, Some(id))));
    };
    if let Some(expected) = update.expected_version.filter(|&v| v != message.version) {
        return Err(refused(PersistError::VersionConflict {
            thread_id: update.thread_id.clone(),
            message_id: Some(id.clone()),
            expected,
            actual: message.version,
        }));
    }
    // A read-merge-write is safe here: the writer holds the database's write lock.
    if let Some(patch) = &update.metadata {
        message.metadata.merge(patch);
    }
    let role = update.role.as_ref().unwrap_or(&message.role);
    let row = sqlx::query(concat!(
        "UPDATE persist_messages \
            SET metadata = nullif(?3, '{}'), role = ",
        packed_role!("?4"),
        ", version = version + 1, updated_at = ?5, delta = NULL, \
                delta_version = NULL \
          WHERE thread = (SELECT key FROM threads WHERE tenant = ?6 AND thread_id = ?1) AND message_id = ",
        packed_id!("?2"),
        " RETURNING ",
        message_columns!("?1")
    ))
    .bind(update.thread_id.as_str())
    .bind(id.as_str())
    .bind(limits.metadata(&message.metadata)?)
    .bind(role.as_str())
    .bind(Timestamp::now().as_micros())
    .bind(tenant_key(tenant))
    .fetch_one(&mut *conn)
    .await
    .map_err(sql("updating the message"))?;
    rows::message(&row).map_err(aborted)
}

pub(super) async fn update_thread(conn: &mut SqliteConnection, update: &Update, limits: &Limits) -> OpResult<Updated> {
    let mut thread = writable_thread(conn, &update.thread_id, update.context.tenant(), None).await?;
    if let Some(expected) = update.expected_version.filter(|&v| v != thread.version) {
        return Err(refused(PersistError::VersionConflict {
            thread_id: update.thread_id.clone(),
            message_id: None,
            expected,
            actual: thread.version,
        }));
    }
    if let Some(patch) = &update.metadata {
        thread.metadata.merge(patch);
    }
    if let Some(title) = &update.title {
        thread.title = title.clone();
    }
    // `Some(None)`: the active branch made empty.
    let leaf = match &update.switch {
        Some(switch) => Some(switched_leaf(conn, update, switch).await?),
        None => None,
    };
    let row = sqlx::query(concat!(
        "UPDATE threads SET metadata = ?2, title = ?3, version = version + 1, updated_at = ?4, \
                            active_leaf = CASE WHEN ?7 THEN ?6 ELSE active_leaf END \
          WHERE tenant = ?5 AND thread_id = ?1 RETURNING ",
        thread_columns!()
    ))
    .bind(update.thread_id.as_str())
    .bind(limits.metadata(&thread.metadata)?)
    .bind(thread.title.as_deref())
    .bind(Timestamp::now().as_micros())
    .bind(tenant_key(update.context.tenant()))
    .bind(leaf.flatten().map(signed))
    .bind(leaf.is_some())
    .fetch_one(&mut *conn)
    .await
    .map_err(sql("updating the thread"))?;
    Ok(Updated::Thread(rows::thread(&row).map_err(aborted)?))
}

/// The active leaf `switch` names: the message's seq, or the most recent under it; `None` for an
/// empty branch.
async fn switched_leaf(conn: &mut SqliteConnection, update: &Update, switch: &Switch) -> OpResult<Option<u64>> {
    let tenant = update.context.tenant();
    let Some(id) = switch.message_id() else { return Ok(None) };
    let Some(message) = find_message(conn, tenant, &update.thread_id, id).await? else {
        return Err(refused(unknown_message(&update.thread_id, id)));
    };
    if !matches!(switch, Switch::Through(_)) {
        return Ok(Some(message.seq));
    }
    let latest: i64 = sqlx::query_scalar(crate::branches::LATEST_UNDER)
        .bind(update.thread_id.as_str())
        .bind(tenant_key(tenant))
        .bind(signed(message.seq))
        .fetch_one(&mut *conn)
        .await
        .map_err(sql("finding the most recent message of a branch"))?;
    u64::try_from(latest).map(Some).map_err(|_| aborted(crate::error::corrupt(format!("seq {latest}"))))
}
