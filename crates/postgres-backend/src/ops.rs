//! Writes, each one SQL statement (atomic on its own, one round trip in the happy path), except
//! a thread delete and an append, each a short transaction.
//!
//! Every write to a thread first locks the thread's row (an upsert of the row, or `SELECT …
//! FOR UPDATE` in a CTE), then touches messages: writers of one thread serialize on that row
//! and get seqs in commit order, writers of different threads run in parallel, and the lock
//! order (thread, then message) is the same everywhere, so they cannot deadlock. Guards live in
//! the `WHERE` clauses; when a guarded statement changes nothing, a diagnosis query says which
//! rule refused it.

use persist_core::args::{Add, Delete, Reserve, Update, UpdateContent};
use persist_core::session::{Bind, BindingState, SessionBinding};
use persist_core::{
    Added, AgentId, Content, ContentUpdated, Deleted, IdempotencyKey, Message, MessageId, Metadata, PersistArgs,
    PersistError, PersistResult, Reserved, Role, SessionId, Status, Target, TenantId, ThreadId, Timestamp, Updated,
};
use sqlx::{Connection, PgConnection, Row};

use crate::error::{is_unique_violation, map_sqlx};
use crate::pool::lost_connection;
use crate::rows::{self, binding_columns, json_text, message_columns, signed, tenant_key, thread_columns};

/// How often a write that lost a race (a unique violation, a row that changed between the
/// write and its diagnosis) is tried again before answering a temporary error.
const RACE_ATTEMPTS: usize = 3;

fn raced() -> PersistError {
    PersistError::temporary("the write kept racing concurrent writers; retry it")
}

/// Refuses what no write may store (see [`PersistArgs::validate`]: JSON nested deeper than a
/// parser accepts, U+0000, …).
pub(crate) fn check(args: &PersistArgs) -> Result<(), PersistError> {
    args.validate()
}

pub(crate) async fn apply(conn: &mut PgConnection, args: PersistArgs) -> Result<PersistResult, PersistError> {
    check(&args)?;
    match &args {
        PersistArgs::Add(_) | PersistArgs::Reserve(_) => apply_insert(conn, &args, None).await,
        PersistArgs::UpdateContent(update) => Ok(ContentUpdated::new(update_content(conn, update).await?).into()),
        PersistArgs::Update(update) => match &update.target {
            Target::Message(id) => Ok(Updated::Message(update_message(conn, update, id).await?).into()),
            Target::Thread => Ok(Updated::Thread(update_thread(conn, update).await?).into()),
            // Refused by `check` above.
            Target::MessagesAfter(_) => {
                Err(PersistError::invalid("target", "an update applies to a message or a thread"))
            }
        },
        PersistArgs::Delete(delete) => Ok(match &delete.target {
            Target::Message(id) => delete_message(conn, delete, id).await?,
            Target::Thread | Target::MessagesAfter(_) => delete_thread(conn, delete).await?,
        }
        .into()),
        PersistArgs::Restore(restore) => Ok(crate::restore::restore(conn, restore).await?.into()),
        PersistArgs::SetOnce(request) => Ok(PersistResult::Value(set_once(conn, request).await?)),
        other => Err(PersistError::Unsupported { what: format!("operation `{}`", other.op()).into() }),
    }
}

/// An add or a reserve (checked by [`check`]); `fixed` is the id to write when the request
/// names none (generated otherwise). A refusal still names only the id the request named.
pub(crate) async fn apply_insert(
    conn: &mut PgConnection,
    args: &PersistArgs,
    fixed: Option<&MessageId>,
) -> Result<PersistResult, PersistError> {
    match args {
        PersistArgs::Add(add) => {
            let (message, deduplicated) = insert(conn, Insert::add(add), args, fixed).await?;
            Ok(Added::new(message, deduplicated).into())
        }
        PersistArgs::Reserve(reserve) => {
            let (message, deduplicated) = insert(conn, Insert::reserve(reserve), args, fixed).await?;
            Ok(Reserved::new(message, deduplicated).into())
        }
        other => Err(PersistError::Unsupported { what: format!("inserting with `{}`", other.op()).into() }),
    }
}

struct Insert<'a> {
    thread_id: &'a ThreadId,
    message_id: Option<&'a MessageId>,
    role: &'a Role,
    content: Content,
    metadata: &'a Metadata,
    status: Status,
    idempotency_key: Option<&'a IdempotencyKey>,
    tenant: Option<&'a TenantId>,
}

impl<'a> Insert<'a> {
    fn add(add: &'a Add) -> Self {
        Self {
            thread_id: &add.thread_id,
            message_id: add.message_id.as_ref(),
            role: &add.role,
            content: add.content.clone(),
            metadata: &add.metadata,
            status: Status::Complete,
            idempotency_key: add.idempotency_key.as_ref(),
            tenant: add.context.tenant(),
        }
    }

    fn reserve(reserve: &'a Reserve) -> Self {
        Self {
            thread_id: &reserve.thread_id,
            message_id: reserve.message_id.as_ref(),
            role: &reserve.role,
            content: Content::placeholder(),
            metadata: &reserve.metadata,
            status: Status::Reserved,
            idempotency_key: reserve.idempotency_key.as_ref(),
            tenant: reserve.context.tenant(),
        }
    }
}

/// Bumps the thread's `last_seq` under its row lock (creating the thread on its first write)
/// and inserts the message with that seq, unless the thread refuses the write or the id or
/// key is taken; then a diagnosis answers the repeat or the refusal.
async fn insert(
    conn: &mut PgConnection,
    new: Insert<'_>,
    args: &PersistArgs,
    fixed: Option<&MessageId>,
) -> Result<(Message, bool), PersistError> {
    let content = new.content.as_json();
    let metadata = json_text(new.metadata)?;
    let tenant = tenant_key(new.tenant);
    let key = new.idempotency_key.map(IdempotencyKey::as_str);
    let generated;
    let id = match new.message_id.or(fixed) {
        Some(id) => id,
        None => {
            generated = MessageId::generate();
            &generated
        }
    };
    for _ in 0..RACE_ATTEMPTS {
        let inserted = sqlx::query(concat!(
            "WITH t AS ( \
                INSERT INTO threads AS th (tenant, thread_id, created_at, updated_at, last_seq, message_count) \
                VALUES ($9, $1, $8, $8, 1, 1) \
                ON CONFLICT (tenant, thread_id) DO UPDATE \
                   SET last_seq = th.last_seq + 1, message_count = th.message_count + 1, \
                       updated_at = EXCLUDED.updated_at \
                 WHERE th.deleted_at IS NULL \
                   AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.tenant = $9 AND m.thread_id = $1 \
                                                              AND m.message_id = $2) \
                   AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.tenant = $9 AND m.thread_id = $1 \
                                                              AND m.idempotency_key = $7) \
                RETURNING th.last_seq), \
             m AS ( \
                INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, \
                                      idempotency_key, created_at, updated_at) \
                SELECT $9, $1, $2, t.last_seq, $3, $4::jsonb, $5::jsonb, $6, 1, $7, $8, $8 FROM t \
                RETURNING *) \
             SELECT ",
            message_columns!(),
            " FROM m"
        ))
        .bind(new.thread_id.as_str())
        .bind(id.as_str())
        .bind(new.role.as_str())
        .bind(&content)
        .bind(&metadata)
        .bind(new.status.as_str())
        .bind(key)
        .bind(Timestamp::now().as_micros())
        .bind(tenant)
        .fetch_optional(&mut *conn)
        .await;
        match inserted {
            Ok(Some(row)) => return Ok((rows::message(&row)?, false)),
            Ok(None) => {
                if let Some(answer) = diagnose_insert(conn, &new, id, args).await? {
                    return answer;
                }
            }
            // Another writer inserted the same id or key after this statement's snapshot.
            Err(error) if is_unique_violation(&error) => {}
            Err(error) => return Err(map_sqlx("inserting the message", error)),
        }
    }
    Err(raced())
}

/// The inserts of a group (adds and reserves checked by [`check`], each for a different
/// thread `(tenant, thread_id)`, each with the id it writes) in one statement: per insert, what
/// [`insert`]'s statement does (the thread's row created or locked and its `last_seq` bumped,
/// the message inserted unless the thread is deleted or its id or key is taken). The threads'
/// rows are locked in bytewise `(tenant, thread_id)` order, so groups running at once cannot
/// deadlock.
///
/// `Ok(Ok(written))`: the messages written, each with its thread's tenant; an insert that wrote nothing has none (run alone,
/// it says why). `Ok(Err(_))`: no answer to give from the statement: the server refused it (a
/// constraint, a trigger, a race with another instance), so it wrote nothing, or a row it
/// wrote did not read back; run alone, each insert is written or answers the copy it finds.
/// `Err(_)`: the connection failed; each insert alone would have met the same failure.
pub(crate) async fn insert_group(conn: &mut PgConnection, group: &[(&PersistArgs, &MessageId)]) -> GroupAnswer {
    let mut columns = GroupColumns::default();
    for &(args, id) in group {
        let new = match args {
            PersistArgs::Add(add) => Insert::add(add),
            PersistArgs::Reserve(reserve) => Insert::reserve(reserve),
            other => return Err(PersistError::Unsupported { what: format!("grouping `{}`", other.op()).into() }),
        };
        columns.thread_id.push(new.thread_id.as_str());
        columns.message_id.push(new.message_id.unwrap_or(id).as_str());
        columns.role.push(new.role.as_str());
        columns.content.push(new.content.as_json().into_owned());
        columns.metadata.push(json_text(new.metadata)?);
        columns.status.push(new.status.as_str());
        columns.idempotency_key.push(new.idempotency_key.map(IdempotencyKey::as_str));
        columns.tenant.push(tenant_key(new.tenant));
    }
    let rows = sqlx::query(concat!(
        "WITH i AS ( \
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                                 $7::text[], $8::text[]) \
                AS i(thread_id, message_id, role, content, metadata, status, idempotency_key, tenant)), \
         t AS ( \
            INSERT INTO threads AS th (tenant, thread_id, created_at, updated_at, last_seq, message_count) \
            SELECT i.tenant, i.thread_id, $9, $9, 1, 1 FROM i \
             WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.tenant = i.tenant AND m.thread_id = i.thread_id \
                                                          AND m.message_id = i.message_id) \
               AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.tenant = i.tenant AND m.thread_id = i.thread_id \
                                                          AND m.idempotency_key = i.idempotency_key) \
             ORDER BY i.tenant COLLATE \"C\", i.thread_id COLLATE \"C\" \
            ON CONFLICT (tenant, thread_id) DO UPDATE \
               SET last_seq = th.last_seq + 1, message_count = th.message_count + 1, \
                   updated_at = EXCLUDED.updated_at \
             WHERE th.deleted_at IS NULL \
            RETURNING th.tenant, th.thread_id, th.last_seq), \
         m AS ( \
            INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, \
                                  idempotency_key, created_at, updated_at) \
            SELECT i.tenant, i.thread_id, i.message_id, t.last_seq, i.role, i.content::jsonb, i.metadata::jsonb, \
                   i.status, 1, i.idempotency_key, $9, $9 \
              FROM i JOIN t ON t.tenant = i.tenant AND t.thread_id = i.thread_id \
            RETURNING *) \
         SELECT tenant, ",
        message_columns!(),
        " FROM m"
    ))
    .bind(&columns.thread_id)
    .bind(&columns.message_id)
    .bind(&columns.role)
    .bind(&columns.content)
    .bind(&columns.metadata)
    .bind(&columns.status)
    .bind(&columns.idempotency_key)
    .bind(&columns.tenant)
    .bind(Timestamp::now().as_micros())
    .fetch_all(&mut *conn)
    .await;
    group_answer("inserting a group of messages", rows)
}

/// Several message updates (content replacements and metadata/role patches, each of another
/// message) in one statement: the threads' rows locked in key order (as every write locks
/// them: no deadlock with a group of inserts or another group), each message changed under its
/// guards, each thread touched. Answers the messages written with their tenant; an update not
/// among them (absent, deleted thread, stale version) is for the caller to run alone, which
/// says why. `Ok(Err(_))`: the server refused the statement as a whole, and it wrote nothing.
pub(crate) async fn update_group(conn: &mut PgConnection, group: &[&PersistArgs]) -> GroupAnswer {
    let mut tenant = Vec::with_capacity(group.len());
    let (mut thread_id, mut message_id, mut content) = (Vec::new(), Vec::new(), Vec::new());
    let (mut finalize, mut expected, mut set, mut removed, mut role) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for args in group {
        let (id, new_content, done, patch, new_role, version) = match args {
            PersistArgs::UpdateContent(u) if !u.append => {
                (&u.message_id, Some(u.content.as_json().into_owned()), u.finalize, None, None, u.expected_version)
            }
            PersistArgs::Update(u) => match &u.target {
                Target::Message(id) => (id, None, false, u.metadata.as_ref(), u.role.as_ref(), u.expected_version),
                _ => return Err(PersistError::Unsupported { what: "grouping a thread update".into() }),
            },
            other => return Err(PersistError::Unsupported { what: format!("grouping `{}`", other.op()).into() }),
        };
        let (patch_set, patch_removed) = patch_parts(patch)?;
        tenant.push(tenant_key(args.context().tenant()));
        thread_id.push(args.thread_id().map_or("", ThreadId::as_str));
        message_id.push(id.as_str());
        content.push(new_content);
        finalize.push(done);
        set.push(patch_set);
        removed.push(json_text(&patch_removed)?);
        role.push(new_role.map(Role::as_str));
        expected.push(version.map(signed));
    }
    let rows = sqlx::query(concat!(
        "WITH u AS ( \
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[], $6::bigint[], \
                                 $7::text[], $8::text[], $9::text[]) \
                AS u(tenant, thread_id, message_id, content, finalize, expected, set, removed, role)), \
         t AS ( \
            SELECT th.tenant, th.thread_id FROM threads th \
             WHERE (th.tenant, th.thread_id) IN (SELECT tenant, thread_id FROM u) AND th.deleted_at IS NULL \
             ORDER BY th.tenant COLLATE \"C\", th.thread_id COLLATE \"C\" FOR UPDATE), \
         m AS ( \
            UPDATE messages ms SET content = COALESCE(u.content::jsonb, ms.content), \
                   status = CASE WHEN u.finalize THEN 'complete' ELSE ms.status END, \
                   metadata = (ms.metadata || u.set::jsonb) \
                              - ARRAY(SELECT jsonb_array_elements_text(u.removed::jsonb)), \
                   role = COALESCE(u.role, ms.role), \
                   version = ms.version + 1, updated_at = $10 \
              FROM u \
             WHERE ms.tenant = u.tenant AND ms.thread_id = u.thread_id AND ms.message_id = u.message_id \
               AND (u.expected IS NULL OR ms.version = u.expected) \
               AND (u.content IS NULL OR u.finalize OR ms.status <> 'complete') \
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
    .bind(&finalize)
    .bind(&expected)
    .bind(&set)
    .bind(&removed)
    .bind(&role)
    .bind(Timestamp::now().as_micros())
    .fetch_all(&mut *conn)
    .await;
    group_answer("updating a group of messages", rows)
}

/// The messages a group statement wrote, with their tenants; `Ok(Err(_))` when the server
/// refused the statement as a whole (a constraint, a trigger, a lost race, a lock time-out) with
/// the connection still good: it wrote nothing, and each write runs again alone.
type GroupAnswer = Result<Result<Vec<(Option<TenantId>, Message)>, PersistError>, PersistError>;

fn group_answer(context: &'static str, rows: Result<Vec<sqlx::postgres::PgRow>, sqlx::Error>) -> GroupAnswer {
    match rows {
        Ok(rows) => Ok(rows.iter().map(|row| Ok((rows::tenant(row)?, rows::message(row)?))).collect()),
        Err(error) => {
            let refused_by_server = matches!(error, sqlx::Error::Database(_));
            let error = map_sqlx(context, error);
            if refused_by_server && !lost_connection(&error) { Ok(Err(error)) } else { Err(error) }
        }
    }
}

/// The columns of [`insert_group`]'s rows, one array each.
#[derive(Default)]
struct GroupColumns<'a> {
    thread_id: Vec<&'a str>,
    message_id: Vec<&'a str>,
    role: Vec<&'a str>,
    content: Vec<String>,
    metadata: Vec<String>,
    status: Vec<&'a str>,
    idempotency_key: Vec<Option<&'a str>>,
    tenant: Vec<&'a str>,
}

/// Why an insert wrote nothing: `None` when the state changed meanwhile (try again).
async fn diagnose_insert(
    conn: &mut PgConnection,
    new: &Insert<'_>,
    id: &MessageId,
    args: &PersistArgs,
) -> Result<Option<Result<(Message, bool), PersistError>>, PersistError> {
    if let Err(refusal) = writable_thread(conn, new.thread_id, new.tenant, new.message_id).await? {
        return Ok(Some(Err(refusal)));
    }
    if let Some(key) = new.idempotency_key {
        let row = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE tenant = $3 AND thread_id = $1 AND idempotency_key = $2"
        ))
        .bind(new.thread_id.as_str())
        .bind(key.as_str())
        .bind(tenant_key(new.tenant))
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| map_sqlx("looking up the idempotency key", e))?;
        if let Some(row) = row {
            return Ok(Some(rows::message(&row)?.keyed_repeat(args).map(|m| (m, true))));
        }
    }
    let Some(existing) = find_message(conn, new.tenant, new.thread_id, id).await? else {
        return Ok(None);
    };
    if existing.is_repeat_of(args) {
        Ok(Some(Ok((existing, true))))
    } else {
        Ok(Some(Err(PersistError::AlreadyExists { thread_id: new.thread_id.clone(), message_id: id.clone() })))
    }
}

async fn find_message(
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
async fn writable_thread(
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
async fn diagnose_message(
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

/// A content update. An append is joined to the content read and written expecting the
/// version read; when another write got in between, it is done again in a transaction that
/// first locks the thread's row, as every writer of the thread does: no other write can change
/// the message between the read and the write, so an append never fails for contention
/// (appends are never retried by `RetryLayer`: a token would be lost).
async fn update_content(conn: &mut PgConnection, update: &UpdateContent) -> Result<Message, PersistError> {
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
async fn append_locked(tx: &mut PgConnection, update: &UpdateContent) -> Result<Message, PersistError> {
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

async fn replace_content(conn: &mut PgConnection, update: &UpdateContent) -> Result<Message, PersistError> {
    let content = update.content.as_json();
    let tenant = tenant_key(update.context.tenant());
    for _ in 0..RACE_ATTEMPTS {
        let row = sqlx::query(concat!(
            "WITH t AS (SELECT tenant, thread_id FROM threads WHERE tenant = $7 AND thread_id = $1 \
                           AND deleted_at IS NULL FOR UPDATE), \
             m AS (UPDATE messages SET content = $3::jsonb, \
                          status = CASE WHEN $4 THEN 'complete' ELSE status END, \
                          version = version + 1, updated_at = $5 \
                    WHERE (tenant, thread_id) IN (SELECT tenant, thread_id FROM t) AND message_id = $2 \
                      AND ($6::bigint IS NULL OR version = $6) AND ($4 OR status <> 'complete') \
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
        .bind(update.finalize)
        .bind(Timestamp::now().as_micros())
        .bind(update.expected_version.map(signed))
        .bind(tenant)
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
fn patch_parts(patch: Option<&Metadata>) -> Result<(String, Vec<String>), PersistError> {
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

async fn update_message(conn: &mut PgConnection, update: &Update, id: &MessageId) -> Result<Message, PersistError> {
    let (set, removed) = patch_parts(update.metadata.as_ref())?;
    let tenant = tenant_key(update.context.tenant());
    for _ in 0..RACE_ATTEMPTS {
        // The merge happens in the statement, under the row lock: concurrent patches of
        // different keys all survive.
        let row = sqlx::query(concat!(
            "WITH t AS (SELECT tenant, thread_id FROM threads WHERE tenant = $8 AND thread_id = $1 \
                           AND deleted_at IS NULL FOR UPDATE), \
             m AS (UPDATE messages SET metadata = (metadata || $3::jsonb) - $4::text[], \
                          role = COALESCE($5::text, role), version = version + 1, updated_at = $6 \
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

async fn update_thread(conn: &mut PgConnection, update: &Update) -> Result<persist_core::Thread, PersistError> {
    let (set, removed) = patch_parts(update.metadata.as_ref())?;
    let tenant = update.context.tenant();
    for _ in 0..RACE_ATTEMPTS {
        let row = sqlx::query(concat!(
            "UPDATE threads SET metadata = (metadata || $2::jsonb) - $3::text[], \
                    title = CASE WHEN $4 THEN $5::text ELSE title END, version = version + 1, updated_at = $6 \
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

async fn delete_message(conn: &mut PgConnection, delete: &Delete, id: &MessageId) -> Result<Deleted, PersistError> {
    let tenant = delete.context.tenant();
    for _ in 0..RACE_ATTEMPTS {
        let removed = sqlx::query(
            "WITH t AS (SELECT tenant, thread_id FROM threads WHERE tenant = $4 AND thread_id = $1 \
                           AND deleted_at IS NULL FOR UPDATE), \
             d AS (DELETE FROM messages WHERE (tenant, thread_id) IN (SELECT tenant, thread_id FROM t) \
                      AND message_id = $2 AND ($3::bigint IS NULL OR version = $3) \
                   RETURNING message_id), \
             u AS (UPDATE threads SET message_count = message_count - (SELECT count(*) FROM d), updated_at = $5 \
                    WHERE (tenant, thread_id) IN (SELECT tenant, thread_id FROM t) AND EXISTS (SELECT 1 FROM d)) \
             SELECT message_id FROM d",
        )
        .bind(delete.thread_id.as_str())
        .bind(id.as_str())
        .bind(delete.expected_version.map(signed))
        .bind(tenant_key(tenant))
        .bind(Timestamp::now().as_micros())
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| map_sqlx("deleting the message", e))?;
        if removed.is_some() {
            return Ok(Deleted::new(delete.thread_id.clone(), vec![id.clone()]));
        }
        // Nothing removed: already gone (an empty answer), or a stale expected version.
        match diagnose_message(conn, &delete.thread_id, id, tenant, delete.expected_version, None).await? {
            Some(conflict @ PersistError::VersionConflict { .. }) => return Err(conflict),
            Some(_) => return Ok(Deleted::new(delete.thread_id.clone(), Vec::new())),
            None => {}
        }
    }
    Err(raced())
}

/// Deleting a thread (or truncating it) is a transaction, not one statement: after the thread's row lock is
/// taken, each following statement sees every write committed before it (a single statement
/// would delete only what its snapshot, taken before the lock, saw).
///
/// The transaction always ends here, committed or rolled back, so the connection goes back to
/// the pool outside of one (a cancelled delete drops its connection: the pool closes it).
async fn delete_thread(conn: &mut PgConnection, delete: &Delete) -> Result<Deleted, PersistError> {
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
async fn truncate_locked(tx: &mut PgConnection, delete: &Delete, seq: u64) -> Result<Deleted, PersistError> {
    let sql = |context| move |e| map_sqlx(context, e);
    let tenant = tenant_key(delete.context.tenant());
    let removed =
        sqlx::query("DELETE FROM messages WHERE tenant = $2 AND thread_id = $1 AND seq > $3 RETURNING seq, message_id")
            .bind(delete.thread_id.as_str())
            .bind(tenant)
            .bind(signed(seq))
            .fetch_all(&mut *tx)
            .await
            .map_err(sql("truncating the thread"))?;
    let ids = removed_ids(&removed)?;
    if !ids.is_empty() {
        sqlx::query(
            "UPDATE threads SET message_count = message_count - $3, version = version + 1, updated_at = $4 \
              WHERE tenant = $2 AND thread_id = $1",
        )
        .bind(delete.thread_id.as_str())
        .bind(tenant)
        .bind(i64::try_from(ids.len()).unwrap_or(i64::MAX))
        .bind(Timestamp::now().as_micros())
        .execute(&mut *tx)
        .await
        .map_err(sql("touching the truncated thread"))?;
    }
    Ok(Deleted::new(delete.thread_id.clone(), ids))
}

/// The statements of [`delete_thread`], inside its transaction.
async fn delete_thread_locked(tx: &mut PgConnection, delete: &Delete) -> Result<Deleted, PersistError> {
    let tenant = tenant_key(delete.context.tenant());
    let gone = || Ok(Deleted::new(delete.thread_id.clone(), Vec::new()));
    let sql = |context| move |e| map_sqlx(context, e);
    let row = sqlx::query(
        "SELECT deleted_at IS NOT NULL AS deleted, version, updated_at FROM threads \
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
        return truncate_locked(tx, delete, seq).await;
    }
    let updated_at = row.try_get::<i64, _>("updated_at").map_err(sql("reading the thread"))?;
    if let Some(conflict) = delete.updated_at_conflict(Timestamp::from_micros(updated_at)) {
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
    let ids = removed_ids(&removed)?;
    sqlx::query("DELETE FROM session_bindings WHERE tenant = $2 AND thread_id = $1")
        .bind(delete.thread_id.as_str())
        .bind(tenant)
        .execute(&mut *tx)
        .await
        .map_err(sql("deleting the thread's session bindings"))?;
    mark_deleted(tx, delete, tenant).await?;
    Ok(Deleted::new(delete.thread_id.clone(), ids))
}

/// The ids of `DELETE … RETURNING seq, message_id` rows, in `seq` order.
fn removed_ids(rows: &[sqlx::postgres::PgRow]) -> Result<Vec<MessageId>, PersistError> {
    let mut removed = rows
        .iter()
        .map(|row| Ok((row.try_get::<i64, _>("seq")?, row.try_get::<String, _>("message_id")?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(|e| map_sqlx("reading deleted ids", e))?;
    removed.sort_unstable();
    removed.into_iter().map(|(_, id)| MessageId::new(id).map_err(|e| crate::error::corrupt(e.to_string()))).collect()
}

/// Stores the value under its name unless one is there, and answers the one stored (the
/// conflict's row is seen by the `SELECT` once the racing insert commits).
async fn set_once(conn: &mut PgConnection, request: &persist_core::once::SetOnce) -> Result<String, PersistError> {
    let tenant = tenant_key(request.context.tenant());
    for _ in 0..RACE_ATTEMPTS {
        let stored: Option<String> = sqlx::query_scalar(
            "WITH ins AS (INSERT INTO persist_values (tenant, name, value) VALUES ($1, $2, $3) \
                          ON CONFLICT DO NOTHING RETURNING value) \
             SELECT value FROM ins UNION ALL SELECT value FROM persist_values WHERE tenant = $1 AND name = $2 \
             LIMIT 1",
        )
        .bind(tenant)
        .bind(&request.name)
        .bind(&request.value)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| map_sqlx("storing a value", e))?;
        if let Some(stored) = stored {
            return Ok(stored);
        }
    }
    Err(raced())
}

/// Leaves the thread's tombstone; a purge clears what it said, or removes it to free the id.
async fn mark_deleted(tx: &mut PgConnection, delete: &Delete, tenant: &str) -> Result<(), PersistError> {
    let sql = |context| move |e| map_sqlx(context, e);
    let now = Timestamp::now().as_micros();
    let tombstone = match (delete.purge, delete.free_id) {
        (_, true) => "DELETE FROM threads WHERE tenant = $3 AND thread_id = $1 AND $2::bigint IS NOT NULL",
        (true, false) => {
            "UPDATE threads SET deleted_at = coalesce(deleted_at, $2), updated_at = $2, message_count = 0, \
                                title = NULL, metadata = '{}' \
              WHERE tenant = $3 AND thread_id = $1"
        }
        (false, false) => {
            "UPDATE threads SET deleted_at = $2, updated_at = $2, message_count = 0 WHERE tenant = $3 AND thread_id = $1"
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

pub(crate) async fn bind(conn: &mut PgConnection, bind: &Bind) -> Result<SessionBinding, PersistError> {
    bind.validate()?;
    // FOR SHARE waits for a concurrent thread delete and then sees its tombstone.
    let row = sqlx::query(concat!(
        "WITH t AS (SELECT deleted_at FROM threads WHERE tenant = $8 AND thread_id = $2 FOR SHARE) \
         INSERT INTO session_bindings (tenant, agent_id, thread_id, session_id, provider, runtime_id, work_dir, \
                                       state, created_at, updated_at) \
         SELECT $8, $1, $2, $3, $4, $5::text, $6::text, 'active', $7, $7 \
          WHERE NOT EXISTS (SELECT 1 FROM t WHERE deleted_at IS NOT NULL) \
         ON CONFLICT (tenant, agent_id, thread_id) DO UPDATE \
            SET session_id = EXCLUDED.session_id, provider = EXCLUDED.provider, runtime_id = EXCLUDED.runtime_id, \
                work_dir = EXCLUDED.work_dir, state = 'active', updated_at = EXCLUDED.updated_at \
         RETURNING ",
        binding_columns!()
    ))
    .bind(bind.agent_id.as_str())
    .bind(bind.thread_id.as_str())
    .bind(bind.session_id.as_str())
    .bind(bind.provider.as_str())
    .bind(bind.runtime_id.as_ref().map(|r| r.as_str()))
    .bind(bind.work_dir.as_deref())
    .bind(Timestamp::now().as_micros())
    .bind(tenant_key(bind.context.tenant()))
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| map_sqlx("binding the session", e))?;
    match row {
        Some(row) => rows::binding(&row).map(|(binding, _)| binding),
        None => Err(PersistError::ThreadDeleted { thread_id: bind.thread_id.clone() }),
    }
}

/// Moves a binding to `to`; with `only_session`, only if it is active and points at it.
pub(crate) async fn mark(
    conn: &mut PgConnection,
    tenant: Option<&TenantId>,
    agent_id: &AgentId,
    thread_id: &ThreadId,
    only_session: Option<&SessionId>,
    to: BindingState,
) -> Result<bool, PersistError> {
    let done = sqlx::query(
        "UPDATE session_bindings SET state = $4, updated_at = $5 \
          WHERE tenant = $6 AND agent_id = $1 AND thread_id = $2 \
            AND ($3::text IS NULL OR (session_id = $3 AND state = 'active'))",
    )
    .bind(agent_id.as_str())
    .bind(thread_id.as_str())
    .bind(only_session.map(SessionId::as_str))
    .bind(to.as_str())
    .bind(Timestamp::now().as_micros())
    .bind(tenant_key(tenant))
    .execute(&mut *conn)
    .await
    .map_err(|e| map_sqlx("changing a session binding", e))?;
    Ok(done.rows_affected() > 0)
}
