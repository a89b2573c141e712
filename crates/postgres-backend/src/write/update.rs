//! Updates: content (replacements, appends), a message's metadata and role, a thread's fields;
//! a group of message updates in one statement.

use persist_core::args::{Update, UpdateContent};
use persist_core::branch::Switch;
use persist_core::{
    Message, MessageId, Metadata, PersistArgs, PersistError, Role, Status, Target, ThreadId, Timestamp,
};
use sqlx::{Connection, PgConnection};

use super::guard::{diagnose_message, find_message, writable_thread};
use super::{GroupAnswer, RACE_ATTEMPTS, group_answer, raced};
use crate::branches::switched_leaf;
use crate::error::map_sqlx;
use crate::rows::{self, json_text, message_columns, signed, stored_content, stored_form, tenant_key, thread_columns};

/// Several message updates (content replacements and metadata/role patches, each of another
/// message) in one statement: the threads' rows locked in key order (as every write locks
/// them: no deadlock with a group of inserts or another group), each message changed under its
/// guards, each thread touched. Answers the messages written with their tenant; an update not
/// among them (absent, deleted thread, stale version) is for the caller to run alone, which
/// says why. `Ok(Err(_))`: the server refused the statement as a whole, and it wrote nothing.
pub(crate) async fn update_group(conn: &mut PgConnection, group: &[&PersistArgs]) -> GroupAnswer {
    let mut tenant = Vec::with_capacity(group.len());
    let (mut thread_id, mut message_id, mut content, mut delta) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut text_block = Vec::with_capacity(group.len());
    let (mut status, mut over, mut expected, mut set, mut removed, mut role) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for args in group {
        let (id, new_content, new_delta, after, over_statuses, patch, new_role, version) = match args {
            PersistArgs::UpdateContent(u) if !u.append => (
                &u.message_id,
                Some(rows::content_param(&u.content)),
                u.feed_delta().map(|delta| rows::for_jsonb(delta.as_json()).into_owned()),
                u.status_after().map(Status::as_str),
                written_over(u),
                None,
                None,
                u.expected_version,
            ),
            PersistArgs::Update(u) => match &u.target {
                // Metadata and role: whatever the status.
                Target::Message(id) => (
                    id,
                    None,
                    None,
                    None,
                    "reserved,interrupted,complete",
                    u.metadata.as_ref(),
                    u.role.as_ref(),
                    u.expected_version,
                ),
                _ => return Err(PersistError::Unsupported { what: "grouping a thread update".into() }),
            },
            other => return Err(PersistError::Unsupported { what: format!("grouping `{}`", other.op()).into() }),
        };
        let (patch_set, patch_removed) = patch_parts(patch)?;
        tenant.push(tenant_key(args.context().tenant()));
        thread_id.push(args.thread_id().map_or("", ThreadId::as_str));
        message_id.push(id.as_str());
        text_block.push(new_content.as_ref().is_some_and(|(_, text_block)| *text_block));
        content.push(new_content.map(|(content, _)| content.into_owned()));
        delta.push(new_delta);
        status.push(after);
        over.push(over_statuses);
        set.push(patch_set);
        removed.push(json_text(&patch_removed)?);
        role.push(new_role.map(Role::as_str));
        expected.push(version.map(signed));
    }
    let rows = sqlx::query(concat!(
        "WITH u AS ( \
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], \
                                 $7::text[], $8::text[], $9::text[], $11::text[], $12::text[], $13::boolean[]) \
                AS u(tenant, thread_id, message_id, content, status, expected, set, removed, role, over, delta, \
                     text_block)), \
         t AS ( \
            SELECT th.tenant, th.thread_id FROM threads th \
             WHERE (th.tenant, th.thread_id) IN (SELECT tenant, thread_id FROM u) AND th.deleted_at IS NULL \
             ORDER BY th.tenant COLLATE \"C\", th.thread_id COLLATE \"C\" FOR UPDATE), \
         m AS ( \
            UPDATE messages ms SET content = COALESCE(",
        stored_content!("u.content", "u.text_block"),
        ", ms.content), \
                   content_form = CASE WHEN u.content IS NULL THEN ms.content_form ELSE ",
        stored_form!("u.text_block"),
        " END, \
                   status = COALESCE(u.status, ms.status), \
                   metadata = (ms.metadata || u.set::jsonb) \
                              - ARRAY(SELECT jsonb_array_elements_text(u.removed::jsonb)), \
                   role = COALESCE(u.role, ms.role), \
                   version = ms.version + 1, updated_at = $10, delta = u.delta, \
                   delta_version = CASE WHEN u.delta IS NULL THEN NULL ELSE ms.version + 1 END \
              FROM u \
             WHERE ms.tenant = u.tenant AND ms.thread_id = u.thread_id AND ms.message_id = u.message_id \
               AND (u.expected IS NULL OR ms.version = u.expected) \
               AND ms.status = ANY (string_to_array(u.over, ',')) \
               AND (ms.tenant, ms.thread_id) IN (SELECT tenant, thread_id FROM t) \
            RETURNING ms.*), \
         x AS (UPDATE threads SET updated_at = $10 WHERE (tenant, thread_id) IN (SELECT tenant, thread_id FROM m)) \
         SELECT tenant, ",
        message_columns!(),
        " FROM m"
    ))
    .bind(&tenant)
    .bind(&thread_id)
    .bind(&message_id)
    .bind(&content)
    .bind(&status)
    .bind(&expected)
    .bind(&set)
    .bind(&removed)
    .bind(&role)
    .bind(Timestamp::now().as_micros())
    .bind(&over)
    .bind(&delta)
    .bind(&text_block)
    .fetch_all(&mut *conn)
    .await;
    group_answer("updating a group of messages", rows)
}

/// The statuses `update` may be written over, as the group statement reads them: `reserved`,
/// then those of [`UpdateContent::may_write_over`], comma-separated.
fn written_over(update: &UpdateContent) -> &'static str {
    match (update.may_write_over(Status::Interrupted), update.may_write_over(Status::Complete)) {
        (true, true) => "reserved,interrupted,complete",
        (true, false) => "reserved,interrupted",
        (false, true) => "reserved,complete",
        (false, false) => "reserved",
    }
}

/// A content update. An append is joined to the content read and written expecting the
/// version read; when another write got in between, it is done again in a transaction that
/// first locks the thread's row, as every writer of the thread does: no other write can change
/// the message between the read and the write, so an append never fails for contention
/// (appends are never retried by `RetryLayer`: a token would be lost).
pub(super) async fn update_content(conn: &mut PgConnection, update: &UpdateContent) -> Result<Message, PersistError> {
    if !update.append {
        return replace_content(conn, update).await;
    }
    // Uncontended, two round trips: read, then write the joined content expecting the version
    // read. Raced, the locked transaction below, where no other write can come in between.
    if let Some(stored) = find_message(conn, update.context.tenant(), &update.thread_id, &update.message_id).await? {
        let resolved = update.resolved(&stored)?;
        match replace_content(conn, &resolved).await {
            Err(PersistError::VersionConflict { expected, .. })
                if update.expected_version.is_none() && Some(expected) == resolved.expected_version => {}
            answer => return answer,
        }
    }
    // The transaction always ends here, committed or rolled back: a connection given back to
    // the pool inside it would hold the thread's row lock until its next use.
    let mut tx = conn.begin().await.map_err(|e| map_sqlx("starting the append", e))?;
    match append_locked(&mut tx, update).await {
        Ok(message) => {
            tx.commit().await.map_err(|e| map_sqlx("committing the append", e))?;
            Ok(message)
        }
        Err(refused) => {
            tx.rollback().await.map_err(|e| map_sqlx("rolling back the append", e))?;
            Err(refused)
        }
    }
}

/// An append inside its transaction: the thread's row locked, the message read, joined and
/// written.
pub(super) async fn append_locked(tx: &mut PgConnection, update: &UpdateContent) -> Result<Message, PersistError> {
    sqlx::query("SELECT 1 FROM threads WHERE tenant = $1 AND thread_id = $2 FOR UPDATE")
        .bind(tenant_key(update.context.tenant()))
        .bind(update.thread_id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| map_sqlx("locking the thread", e))?;
    let Some(stored) = find_message(tx, update.context.tenant(), &update.thread_id, &update.message_id).await? else {
        let refusal = diagnose_message(tx, &update.thread_id, &update.message_id, update.context.tenant(), None, None);
        return Err(refusal
            .await?
            .unwrap_or_else(|| PersistError::not_found(&update.thread_id, Some(&update.message_id))));
    };
    replace_content(tx, &update.resolved(&stored)?).await
}

pub(super) async fn replace_content(conn: &mut PgConnection, update: &UpdateContent) -> Result<Message, PersistError> {
    let (content, text_block) = rows::content_param(&update.content);
    let tenant = tenant_key(update.context.tenant());
    for _ in 0..RACE_ATTEMPTS {
        let row = sqlx::query(concat!(
            "WITH t AS (SELECT tenant, thread_id FROM threads WHERE tenant = $7 AND thread_id = $1 \
                           AND deleted_at IS NULL FOR UPDATE), \
             m AS (UPDATE messages SET content = ",
            stored_content!("$3", "$11"),
            ", content_form = ",
            stored_form!("$11"),
            ", status = COALESCE($4, status), \
                          version = version + 1, updated_at = $5, delta = $10, \
                          delta_version = CASE WHEN $10::text IS NULL THEN NULL ELSE version + 1 END \
                    WHERE (tenant, thread_id) IN (SELECT tenant, thread_id FROM t) AND message_id = $2 \
                      AND ($6::bigint IS NULL OR version = $6) \
                      AND (status = 'reserved' OR (status = 'complete' AND $8) \
                           OR (status = 'interrupted' AND $9)) \
                   RETURNING *), \
             u AS (UPDATE threads SET updated_at = $5 \
                    WHERE (tenant, thread_id) IN (SELECT tenant, thread_id FROM m)) \
             SELECT ",
            message_columns!(),
            " FROM m"
        ))
        .bind(update.thread_id.as_str())
        .bind(update.message_id.as_str())
        .bind(&content)
        .bind(update.status_after().map(Status::as_str))
        .bind(Timestamp::now().as_micros())
        .bind(update.expected_version.map(signed))
        .bind(tenant)
        .bind(update.may_write_over(Status::Complete))
        .bind(update.may_write_over(Status::Interrupted))
        .bind(update.feed_delta().map(|delta| rows::for_jsonb(delta.as_json())))
        .bind(text_block)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| map_sqlx("updating the content", e))?;
        if let Some(row) = row {
            return rows::message(&row);
        }
        let diagnosis = diagnose_message(
            conn,
            &update.thread_id,
            &update.message_id,
            update.context.tenant(),
            update.expected_version,
            Some(update),
        );
        if let Some(refusal) = diagnosis.await? {
            return Err(refusal);
        }
    }
    Err(raced())
}

/// Splits a metadata patch into what to merge (`||`) and which keys to remove (`-`).
pub(super) fn patch_parts(patch: Option<&Metadata>) -> Result<(String, Vec<String>), PersistError> {
    let Some(patch) = patch else { return Ok(("{}".to_owned(), Vec::new())) };
    let mut set = serde_json::Map::new();
    let mut removed = Vec::new();
    for (key, value) in patch.as_map() {
        if value.is_null() {
            removed.push(key.clone());
        } else {
            set.insert(key.clone(), value.clone());
        }
    }
    Ok((json_text(&set)?, removed))
}

pub(super) async fn update_message(
    conn: &mut PgConnection,
    update: &Update,
    id: &MessageId,
) -> Result<Message, PersistError> {
    let (set, removed) = patch_parts(update.metadata.as_ref())?;
    let tenant = tenant_key(update.context.tenant());
    for _ in 0..RACE_ATTEMPTS {
        // The merge happens in the statement, under the row lock: concurrent patches of
        // different keys all survive.
        let row = sqlx::query(concat!(
            "WITH t AS (SELECT tenant, thread_id FROM threads WHERE tenant = $8 AND thread_id = $1 \
                           AND deleted_at IS NULL FOR UPDATE), \
             m AS (UPDATE messages SET metadata = (metadata || $3::jsonb) - $4::text[], \
                          role = COALESCE($5::text, role), version = version + 1, updated_at = $6, \
                          delta = NULL, delta_version = NULL \
                    WHERE (tenant, thread_id) IN (SELECT tenant, thread_id FROM t) AND message_id = $2 \
                      AND ($7::bigint IS NULL OR version = $7) \
                   RETURNING *), \
             u AS (UPDATE threads SET updated_at = $6 \
                    WHERE (tenant, thread_id) IN (SELECT tenant, thread_id FROM m)) \
             SELECT ",
            message_columns!(),
            " FROM m"
        ))
        .bind(update.thread_id.as_str())
        .bind(id.as_str())
        .bind(&set)
        .bind(&removed)
        .bind(update.role.as_ref().map(Role::as_str))
        .bind(Timestamp::now().as_micros())
        .bind(update.expected_version.map(signed))
        .bind(tenant)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| map_sqlx("updating the message", e))?;
        if let Some(row) = row {
            return rows::message(&row);
        }
        let diagnosis =
            diagnose_message(conn, &update.thread_id, id, update.context.tenant(), update.expected_version, None);
        if let Some(refusal) = diagnosis.await? {
            return Err(refusal);
        }
    }
    Err(raced())
}

pub(super) async fn update_thread(
    conn: &mut PgConnection,
    update: &Update,
) -> Result<persist_core::Thread, PersistError> {
    let Some(switch) = &update.switch else {
        return patch_thread(conn, update, None).await;
    };
    // A switch reads the message it names under the thread's lock, so a message deleted
    // meanwhile is not found: a transaction whose first statement takes the lock.
    let mut tx = conn.begin().await.map_err(|e| map_sqlx("starting the switch", e))?;
    let tenant = update.context.tenant();
    let answer = async {
        sqlx::query("SELECT 1 FROM threads WHERE tenant = $1 AND thread_id = $2 FOR UPDATE")
            .bind(tenant_key(tenant))
            .bind(update.thread_id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| map_sqlx("locking the thread", e))?;
        let actual = writable_thread(&mut tx, &update.thread_id, tenant, None).await??;
        // The version first, as every store checks it: a stale switch is a conflict, whatever it names.
        if let Some(expected) = update.expected_version.filter(|&expected| expected != actual) {
            let thread_id = update.thread_id.clone();
            return Err(PersistError::VersionConflict { thread_id, message_id: None, expected, actual });
        }
        let leaf = match switch.message_id() {
            Some(id) => {
                let latest = matches!(switch, Switch::Through(_));
                Some(switched_leaf(&mut tx, tenant, &update.thread_id, id, latest).await?)
            }
            // An empty branch: the next message without a parent is a root.
            None => None,
        };
        patch_thread(&mut tx, update, Some(leaf)).await
    }
    .await;
    match &answer {
        Ok(_) => tx.commit().await.map_err(|e| map_sqlx("committing the switch", e))?,
        Err(_) => tx.rollback().await.map_err(|e| map_sqlx("ending the switch", e))?,
    }
    answer
}

/// The thread's title and metadata patched, its active leaf moved to `leaf` (when `Some`;
/// `Some(None)` empties the active branch).
async fn patch_thread(
    conn: &mut PgConnection,
    update: &Update,
    leaf: Option<Option<u64>>,
) -> Result<persist_core::Thread, PersistError> {
    let (set, removed) = patch_parts(update.metadata.as_ref())?;
    let tenant = update.context.tenant();
    for _ in 0..RACE_ATTEMPTS {
        let row = sqlx::query(concat!(
            "UPDATE threads SET metadata = (metadata || $2::jsonb) - $3::text[], \
                    title = CASE WHEN $4 THEN $5::text ELSE title END, version = version + 1, updated_at = $6, \
                    active_leaf = CASE WHEN $10 THEN $9::bigint ELSE active_leaf END \
              WHERE tenant = $7 AND thread_id = $1 AND deleted_at IS NULL \
                AND ($8::bigint IS NULL OR version = $8) \
             RETURNING ",
            thread_columns!()
        ))
        .bind(update.thread_id.as_str())
        .bind(&set)
        .bind(&removed)
        .bind(update.title.is_some())
        .bind(update.title.as_ref().and_then(Option::as_deref))
        .bind(Timestamp::now().as_micros())
        .bind(tenant_key(tenant))
        .bind(update.expected_version.map(signed))
        .bind(leaf.flatten().map(signed))
        .bind(leaf.is_some())
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| map_sqlx("updating the thread", e))?;
        if let Some(row) = row {
            return rows::thread(&row);
        }
        match writable_thread(conn, &update.thread_id, tenant, None).await? {
            Err(refusal) => return Err(refusal),
            Ok(actual) => {
                if let Some(expected) = update.expected_version.filter(|&expected| expected != actual) {
                    return Err(PersistError::VersionConflict {
                        thread_id: update.thread_id.clone(),
                        message_id: None,
                        expected,
                        actual,
                    });
                }
            }
        }
    }
    Err(raced())
}
