//! A group of inserts, each for a thread of its own, written in one statement ([`insert_group`]).

use persist_core::branch::Parent;
use persist_core::{IdempotencyKey, MessageId, PersistArgs, PersistError, Timestamp};
use sqlx::PgConnection;

use super::{Insert, Vector, stored_parent};
use crate::rows::{self, json_text, message_columns, stored_content, stored_form, tenant_key};
use crate::write::{GroupAnswer, group_answer};

/// The inserts of a group (adds and reserves checked by [`check`](crate::write::check), each for a different
/// thread `(tenant, thread_id)`, each with the id it writes) in one statement: per insert, what
/// [`insert`](super::insert)'s statement does (the thread's row created or locked and its `last_seq` bumped,
/// the message inserted, with its vector when it carries one, unless the thread is deleted, its
/// id or key is taken, or its vector's model has no length yet or another one in the tenant). The threads'
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
        let (content, text_block) = rows::content_param(&new.content);
        columns.content.push(content.into_owned());
        columns.text_block.push(text_block);
        columns.metadata.push(json_text(new.metadata)?);
        columns.status.push(new.status.as_str());
        columns.idempotency_key.push(new.idempotency_key.map(IdempotencyKey::as_str));
        columns.tenant.push(tenant_key(new.tenant));
        // A vector goes in with its message when its model's length in the tenant is known to
        // be its own; otherwise (a first vector, another length) the insert writes nothing here
        // and runs alone, which fixes the length or refuses it.
        match new.embedding.map(Vector::of).transpose() {
            Ok(vector) => {
                columns.model.push(vector.as_ref().map(|v| v.model));
                columns.dims.push(vector.as_ref().map(|v| i32::try_from(v.dims).unwrap_or(i32::MAX)));
                columns.vector.push(vector.map(|v| v.bytes));
            }
            Err(refused) => return Ok(Err(refused)),
        }
        columns.root.push(match new.parent {
            Parent::Root => true,
            // Run alone by the group's writer (it reads its parent under the lock).
            Parent::Message(_) => {
                return Ok(Err(PersistError::Unsupported { what: "grouping an insert that names its parent".into() }));
            }
            _ => false,
        });
    }
    let rows = sqlx::query(concat!(
        "WITH i AS ( \
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                                 $7::text[], $8::text[], $10::boolean[], $11::boolean[], $12::text[], $13::int[], \
                                 $14::bytea[]) \
                AS i(thread_id, message_id, role, content, metadata, status, idempotency_key, tenant, root, \
                     text_block, model, dims, vector)), \
         t AS ( \
            INSERT INTO threads AS th (tenant, thread_id, created_at, updated_at, last_seq, message_count, \
                                       active_leaf, prev_leaf) \
            SELECT i.tenant, i.thread_id, $9, $9, 1, 1, 1, NULL FROM i \
             WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.tenant = i.tenant AND m.thread_id = i.thread_id \
                                                          AND m.message_id = i.message_id) \
               AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.tenant = i.tenant AND m.thread_id = i.thread_id \
                                                          AND m.idempotency_key = i.idempotency_key) \
               AND NOT EXISTS (SELECT 1 FROM persist_spent_keys s \
                                WHERE s.tenant = i.tenant AND s.thread_id = i.thread_id \
                                  AND s.idempotency_key = i.idempotency_key AND s.forget_at > $9) \
               AND (i.model IS NULL OR EXISTS (SELECT 1 FROM persist_embedding_models r \
                                                WHERE r.tenant = i.tenant AND r.model = i.model AND r.dims = i.dims)) \
             ORDER BY i.tenant COLLATE \"C\", i.thread_id COLLATE \"C\" \
            ON CONFLICT (tenant, thread_id) DO UPDATE \
               SET last_seq = th.last_seq + 1, message_count = th.message_count + 1, \
                   updated_at = EXCLUDED.updated_at, active_leaf = th.last_seq + 1, \
                   prev_leaf = th.active_leaf \
             WHERE th.deleted_at IS NULL \
            RETURNING th.tenant, th.thread_id, th.last_seq, th.prev_leaf), \
         m AS ( \
            INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, \
                                  idempotency_key, created_at, updated_at, content_form, parent_seq) \
            SELECT i.tenant, i.thread_id, i.message_id, t.last_seq, i.role, ",
        stored_content!("i.content", "i.text_block"),
        ", i.metadata::jsonb, i.status, 1, i.idempotency_key, $9, $9, ",
        stored_form!("i.text_block"),
        ", CASE WHEN i.root THEN CASE WHEN t.last_seq > 1 THEN 0 END ELSE ",
        stored_parent!("t"),
        " END FROM i JOIN t ON t.tenant = i.tenant AND t.thread_id = i.thread_id \
            RETURNING *), \
         e AS ( \
            INSERT INTO persist_embeddings (tenant, thread_id, message_id, model, vector) \
            SELECT m.tenant, m.thread_id, m.message_id, i.model, i.vector \
              FROM m JOIN i ON i.tenant = m.tenant AND i.thread_id = m.thread_id WHERE i.model IS NOT NULL) \
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
    .bind(&columns.root)
    .bind(&columns.text_block)
    .bind(&columns.model)
    .bind(&columns.dims)
    .bind(&columns.vector)
    .fetch_all(&mut *conn)
    .await;
    group_answer("inserting a group of messages", rows)
}

/// The columns of [`insert_group`]'s rows, one array each.
#[derive(Default)]
pub(super) struct GroupColumns<'a> {
    thread_id: Vec<&'a str>,
    message_id: Vec<&'a str>,
    role: Vec<&'a str>,
    content: Vec<String>,
    metadata: Vec<String>,
    status: Vec<&'a str>,
    idempotency_key: Vec<Option<&'a str>>,
    tenant: Vec<&'a str>,
    /// The insert makes a root ([`Parent::Root`]).
    root: Vec<bool>,
    /// `content` is one text block's text (see `rows::content_param`).
    text_block: Vec<bool>,
    /// The embedding's model, its length and its unit vector's bytes, when the add carries one.
    model: Vec<Option<&'a str>>,
    dims: Vec<Option<i32>>,
    vector: Vec<Option<Vec<u8>>>,
}
