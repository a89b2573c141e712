//! Inserts (`add`, `reserve`): one statement each, or a group of them in one statement, and
//! the diagnosis of an insert that wrote nothing.

use persist_core::args::{Add, Reserve};
use persist_core::branch::{Parent, unknown_message};
use persist_core::vector::{Embedding, dimensions_mismatch, to_bytes};
use persist_core::{
    Added, Content, IdempotencyKey, Message, MessageId, Metadata, PersistArgs, PersistError, PersistResult, Reserved,
    Role, Status, TenantId, ThreadId, Timestamp,
};
use sqlx::{Connection, PgConnection};

use super::guard::{find_message, writable_thread};
use super::{RACE_ATTEMPTS, raced};
use crate::error::{is_unique_violation, map_sqlx};
use crate::rows::{self, json_text, message_columns, stored_content, stored_form, tenant_key};

mod group;

pub(crate) use self::group::insert_group;

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

pub(super) struct Insert<'a> {
    thread_id: &'a ThreadId,
    message_id: Option<&'a MessageId>,
    role: &'a Role,
    content: Content,
    metadata: &'a Metadata,
    status: Status,
    idempotency_key: Option<&'a IdempotencyKey>,
    tenant: Option<&'a TenantId>,
    parent: &'a Parent,
    /// The embedding written with the message.
    embedding: Option<&'a Embedding>,
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
            parent: &add.parent,
            embedding: add.embedding.as_ref(),
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
            parent: &reserve.parent,
            embedding: None,
        }
    }
}

/// The stored parent (see [`stored_parent`](persist_core::branch::stored_parent)) of the
/// message a thread row `$t` returned by an insert's lock makes: its `last_seq` is the new
/// message's seq, its `prev_leaf` what the message follows (none: a root).
macro_rules! stored_parent {
    ($t:literal) => {
        concat!(
            "CASE WHEN ",
            $t,
            ".last_seq = 1 OR ",
            $t,
            ".prev_leaf = ",
            $t,
            ".last_seq - 1 THEN NULL ELSE coalesce(",
            $t,
            ".prev_leaf, 0) END"
        )
    };
}
use stored_parent;

/// Neither the message's id (`$2`) nor its idempotency key (`$7`) is taken in thread `$1` of
/// tenant `$9`, nor is the key spent (see `persist::spent`) at `$8`.
macro_rules! id_and_key_free {
    () => {
        "NOT EXISTS (SELECT 1 FROM messages m WHERE m.tenant = $9 AND m.thread_id = $1 AND m.message_id = $2) \
         AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.tenant = $9 AND m.thread_id = $1 \
                                                   AND m.idempotency_key = $7) \
         AND NOT EXISTS (SELECT 1 FROM persist_spent_keys s WHERE s.tenant = $9 AND s.thread_id = $1 \
                                                             AND s.idempotency_key = $7 AND s.forget_at > $8)"
    };
}

/// An insert's statement: the CTEs `$locked` lock the thread's row and move its `last_seq`,
/// the last of them `t` returning `last_seq` and `prev_leaf`; then the message (thread `$1`, id
/// `$2`, role `$3`, content `$4` with its flag `$11` (see `rows::content_param`), metadata `$5`,
/// status `$6`, key `$7`, time `$8`, tenant `$9`) is inserted with that seq and the stored
/// parent `$parent`, and answered.
macro_rules! insert_message {
    ($($locked:expr),+; $($parent:expr),+) => {
        insert_message!(@then ""; $($locked),+; $($parent),+)
    };
    // `$then`: more CTEs, after the message's `m`.
    (@then $then:expr; $($locked:expr),+; $($parent:expr),+) => {
        concat!(
            "WITH ",
            $($locked,)+
            ", m AS ( \
                INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, \
                                      idempotency_key, created_at, updated_at, content_form, parent_seq) \
                SELECT $9, $1, $2, t.last_seq, $3, ",
            stored_content!("$4", "$11"),
            ", $5::jsonb, $6, 1, $7, $8, $8, ",
            stored_form!("$11"),
            ", ",
            $($parent,)+
            " FROM t RETURNING *)",
            $then,
            " SELECT ",
            message_columns!(),
            " FROM m"
        )
    };
}

/// The CTE of an insert that writes an embedding: the vector `$13` of model `$12` beside the
/// message `m` (its model's dimensions were checked before, see [`vector_dims`]).
macro_rules! vector_cte {
    () => {
        ", e AS (INSERT INTO persist_embeddings (tenant, thread_id, message_id, model, vector) \
                 SELECT tenant, thread_id, message_id, $12, $13 FROM m)"
    };
}

/// The CTEs of [`insert`]'s statement: the thread's row created or locked, its `last_seq` bumped.
macro_rules! insert_locked {
    () => {
        concat!(
            "t AS ( \
                INSERT INTO threads AS th (tenant, thread_id, created_at, updated_at, last_seq, message_count, \
                                           active_leaf) \
                VALUES ($9, $1, $8, $8, 1, 1, 1) \
                ON CONFLICT (tenant, thread_id) DO UPDATE \
                   SET last_seq = th.last_seq + 1, message_count = th.message_count + 1, \
                       updated_at = EXCLUDED.updated_at, active_leaf = th.last_seq + 1, \
                       prev_leaf = th.active_leaf \
                 WHERE th.deleted_at IS NULL AND ",
            id_and_key_free!(),
            " RETURNING th.last_seq, th.prev_leaf)"
        )
    };
}

/// The stored parent of [`insert`]'s message: a root (`$10`), else after the active leaf.
macro_rules! insert_parent {
    () => {
        concat!("CASE WHEN $10 THEN CASE WHEN t.last_seq > 1 THEN 0 END ELSE ", stored_parent!("t"), " END")
    };
}

/// [`insert`]'s statement.
const INSERT: &str = insert_message!(insert_locked!(); insert_parent!());

/// [`insert`]'s statement, writing an embedding too.
const INSERT_VECTOR: &str = insert_message!(@then vector_cte!(); insert_locked!(); insert_parent!());

/// The CTEs of [`insert_child`]'s statement: the parent `$10` read, the thread's row moved.
macro_rules! child_locked {
    () => {
        concat!(
            "p AS (SELECT seq FROM messages WHERE tenant = $9 AND thread_id = $1 AND message_id = $10), \
             t AS ( \
                UPDATE threads th \
                   SET last_seq = th.last_seq + 1, message_count = th.message_count + 1, updated_at = $8, \
                       active_leaf = th.last_seq + 1, prev_leaf = p.seq \
                  FROM p \
                 WHERE th.tenant = $9 AND th.thread_id = $1 AND th.deleted_at IS NULL AND ",
            id_and_key_free!(),
            " RETURNING th.last_seq, th.prev_leaf)"
        )
    };
}

/// [`insert_child`]'s statement.
const INSERT_CHILD: &str = insert_message!(child_locked!(); stored_parent!("t"));

/// [`insert_child`]'s statement, writing an embedding too.
const INSERT_CHILD_VECTOR: &str = insert_message!(@then vector_cte!(); child_locked!(); stored_parent!("t"));

/// Bumps the thread's `last_seq` under its row lock (creating the thread on its first write)
/// and inserts the message with that seq, unless the thread refuses the write or the id or
/// key is taken; then a diagnosis answers the repeat or the refusal.
///
/// With an embedding: its model's dimensions are checked first (a refusal before anything else,
/// as every store answers), and the vector is written in the message's statement. The first
/// vector of a model in a tenant fixes its dimensions in a transaction of its own, with the message.
pub(super) async fn insert(
    conn: &mut PgConnection,
    new: Insert<'_>,
    args: &PersistArgs,
    fixed: Option<&MessageId>,
) -> Result<(Message, bool), PersistError> {
    let generated;
    let id = match new.message_id.or(fixed) {
        Some(id) => id,
        None => {
            generated = MessageId::generate();
            &generated
        }
    };
    let vector = match new.embedding {
        Some(embedding) => Some(Vector::of(embedding)?),
        None => None,
    };
    if let Parent::Message(parent) = new.parent {
        return insert_child(conn, &new, parent, args, id, vector.as_ref()).await;
    }
    if let Some(vector) = &vector {
        match vector_dims(conn, new.tenant, vector).await? {
            Some(()) => {}
            // The model's first vector in the tenant.
            None => return insert_first_vector(conn, &new, args, id, vector).await,
        }
    }
    for _ in 0..RACE_ATTEMPTS {
        let inserted = crate::ddl::attempt(conn, async |conn| insert_once(conn, &new, id, vector.as_ref()).await);
        match inserted.await {
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

/// An embedding as an insert writes it: its model, its unit vector's bytes and length.
pub(super) struct Vector<'a> {
    model: &'a str,
    bytes: Vec<u8>,
    dims: usize,
}

impl<'a> Vector<'a> {
    pub(super) fn of(embedding: &'a Embedding) -> Result<Self, PersistError> {
        let unit = embedding.unit()?;
        Ok(Self { model: embedding.model(), bytes: to_bytes(&unit), dims: unit.len() })
    }

    pub(super) fn model(&self) -> &'a str {
        self.model
    }

    pub(super) fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Whether `vector`'s model has its dimensions in `tenant` (`None`: it has none yet); refused
/// when they are another length.
async fn vector_dims(
    conn: &mut PgConnection,
    tenant: Option<&TenantId>,
    vector: &Vector<'_>,
) -> Result<Option<()>, PersistError> {
    let stored: Option<i32> =
        sqlx::query_scalar("SELECT dims FROM persist_embedding_models WHERE tenant = $1 AND model = $2")
            .bind(tenant_key(tenant))
            .bind(vector.model)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| map_sqlx("reading a model's dimensions", e))?;
    match stored.map(|dims| usize::try_from(dims).unwrap_or_default()) {
        Some(dims) if dims != vector.dims => Err(dimensions_mismatch(vector.model, dims, vector.dims)),
        Some(_) => Ok(Some(())),
        None => Ok(None),
    }
}

/// Fixes `vector`'s model's dimensions in `tenant` inside the caller's transaction (a
/// concurrent first vector of another length waits for this one's commit, then finds it);
/// refused when another length is stored.
pub(super) async fn fix_dims(
    tx: &mut PgConnection,
    tenant: Option<&TenantId>,
    vector: &Vector<'_>,
) -> Result<(), PersistError> {
    sqlx::query(
        "INSERT INTO persist_embedding_models (tenant, model, dims) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(tenant_key(tenant))
    .bind(vector.model)
    .bind(i32::try_from(vector.dims).unwrap_or(i32::MAX))
    .execute(&mut *tx)
    .await
    .map_err(|e| map_sqlx("recording a model's dimensions", e))?;
    match vector_dims(tx, tenant, vector).await? {
        Some(()) => Ok(()),
        None => Err(PersistError::Backend { message: "a model's dimensions were not recorded".into(), source: None }),
    }
}

/// [`insert`]'s statement, once.
async fn insert_once(
    conn: &mut PgConnection,
    new: &Insert<'_>,
    id: &MessageId,
    vector: Option<&Vector<'_>>,
) -> Result<Option<sqlx::postgres::PgRow>, sqlx::Error> {
    let (content, text_block) = rows::content_param(&new.content);
    let metadata = json_text(new.metadata).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let query = sqlx::query(if vector.is_some() { INSERT_VECTOR } else { INSERT })
        .bind(new.thread_id.as_str())
        .bind(id.as_str())
        .bind(new.role.as_str())
        .bind(content)
        .bind(metadata)
        .bind(new.status.as_str())
        .bind(new.idempotency_key.map(IdempotencyKey::as_str))
        .bind(Timestamp::now().as_micros())
        .bind(tenant_key(new.tenant))
        .bind(matches!(new.parent, Parent::Root))
        .bind(text_block);
    let query = match vector {
        Some(vector) => query.bind(vector.model).bind(&vector.bytes[..]),
        None => query,
    };
    query.fetch_optional(&mut *conn).await
}

/// [`insert`] of the first vector of a model in a tenant: its dimensions fixed and the message
/// written in one transaction, so that a refused insert fixes nothing.
async fn insert_first_vector(
    conn: &mut PgConnection,
    new: &Insert<'_>,
    args: &PersistArgs,
    id: &MessageId,
    vector: &Vector<'_>,
) -> Result<(Message, bool), PersistError> {
    for _ in 0..RACE_ATTEMPTS {
        let mut tx = conn.begin().await.map_err(|e| map_sqlx("starting the insert", e))?;
        fix_dims(&mut tx, new.tenant, vector).await?;
        let answer = match insert_once(&mut tx, new, id, Some(vector)).await {
            Ok(Some(row)) => Some(rows::message(&row).map(|message| (message, false))),
            Ok(None) => diagnose_insert(&mut tx, new, id, args).await?,
            Err(error) if is_unique_violation(&error) => None,
            Err(error) => Some(Err(map_sqlx("inserting the message", error))),
        };
        match answer {
            Some(Ok((message, false))) => {
                tx.commit().await.map_err(|e| map_sqlx("committing the insert", e))?;
                return Ok((message, false));
            }
            Some(answer) => {
                tx.rollback().await.map_err(|e| map_sqlx("ending the insert", e))?;
                return answer;
            }
            None => tx.rollback().await.map_err(|e| map_sqlx("ending the insert", e))?,
        }
    }
    Err(raced())
}

/// An insert after a named message: a transaction that takes the thread's lock first, so that
/// the parent is read after every earlier writer of the thread committed (a message deleted
/// meanwhile is not found), then inserts as [`insert`] does.
async fn insert_child(
    conn: &mut PgConnection,
    new: &Insert<'_>,
    parent: &MessageId,
    args: &PersistArgs,
    id: &MessageId,
    vector: Option<&Vector<'_>>,
) -> Result<(Message, bool), PersistError> {
    let mut tx = conn.begin().await.map_err(|e| map_sqlx("starting the insert", e))?;
    let answer = match vector {
        Some(vector) => match fix_dims(&mut tx, new.tenant, vector).await {
            Ok(()) => insert_child_locked(&mut tx, new, parent, args, id, Some(vector)).await,
            Err(refused) => Err(refused),
        },
        None => insert_child_locked(&mut tx, new, parent, args, id, None).await,
    };
    match &answer {
        Ok((_, false)) => tx.commit().await.map_err(|e| map_sqlx("committing the insert", e))?,
        _ => tx.rollback().await.map_err(|e| map_sqlx("ending the insert", e))?,
    }
    answer
}

async fn insert_child_locked(
    tx: &mut PgConnection,
    new: &Insert<'_>,
    parent: &MessageId,
    args: &PersistArgs,
    id: &MessageId,
    vector: Option<&Vector<'_>>,
) -> Result<(Message, bool), PersistError> {
    let tenant = tenant_key(new.tenant);
    sqlx::query("SELECT 1 FROM threads WHERE tenant = $1 AND thread_id = $2 FOR UPDATE")
        .bind(tenant)
        .bind(new.thread_id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| map_sqlx("locking the thread", e))?;
    let (content, text_block) = rows::content_param(&new.content);
    let query = sqlx::query(if vector.is_some() { INSERT_CHILD_VECTOR } else { INSERT_CHILD })
        .bind(new.thread_id.as_str())
        .bind(id.as_str())
        .bind(new.role.as_str())
        .bind(&content)
        .bind(json_text(new.metadata)?)
        .bind(new.status.as_str())
        .bind(new.idempotency_key.map(IdempotencyKey::as_str))
        .bind(Timestamp::now().as_micros())
        .bind(tenant)
        .bind(parent.as_str())
        .bind(text_block);
    let query = match vector {
        Some(vector) => query.bind(vector.model).bind(&vector.bytes[..]),
        None => query,
    };
    let inserted = query.fetch_optional(&mut *tx).await.map_err(|e| map_sqlx("inserting the message", e))?;
    if let Some(row) = inserted {
        return Ok((rows::message(&row)?, false));
    }
    // Under the lock nothing moves: the diagnosis is final.
    match diagnose_insert(tx, new, id, args).await? {
        Some(answer) => answer,
        None => Err(unknown_message(new.thread_id, parent)),
    }
}

/// Why an insert wrote nothing: `None` when the state changed meanwhile (try again).
pub(super) async fn diagnose_insert(
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
        let spent =
            crate::spent::spent_keys(conn, tenant_key(new.tenant), new.thread_id.as_str(), &[key.as_str()]).await?;
        if let Some(spent) = spent.first() {
            return Ok(Some(spent.repeat(new.thread_id, args).map(|m| (m, true))));
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
