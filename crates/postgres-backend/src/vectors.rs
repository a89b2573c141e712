//! Embeddings (see `persist::vector`): `embed`, a short transaction that also records the feed's
//! `embed` event (no trigger: the vector an `add` inserts with its message has the insert's
//! event), and `nearest`, an exact scan of the scope's vectors in the server (the tables of
//! version 15).
//!
//! Without pgvector, every vector of the tenant's model in scope is read once a query (as
//! `bytea`, the bytes of its `f32`s) and scored here as the rows arrive
//! (`persist_core::vector::similarity_to_bytes`, as every backend scores), the best `limit`
//! kept; then their messages are read by key. Multiplying `real[]` columns in SQL (`unnest`)
//! took twenty times as long, decoding `real[]` here ten
//! (docs/performance-history/02-recall-and-vector-index.md, "Recall").
//!
//! With pgvector's index for the query's dimensions (`crate::pgvector`), an approximate query
//! walks it instead: the `limit` vectors in scope the walk finds nearest are scored the same
//! way.
//!
//! `list_embeddings` reads a thread's vectors back as stored (what a copy carries).

use futures_util::TryStreamExt;
use persist_core::vector::{
    Embed, Embedded, Embedding, EmbeddingCursor, ListEmbeddings, Nearest, Neighbour, StoredEmbedding,
    dimensions_mismatch, from_bytes, similarity_to_bytes, to_bytes, unknown_model,
};
use persist_core::{MessageId, Page, PersistError, Result, Role, Status, Timestamp};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};

use crate::error::{corrupt, map_sqlx};
use crate::pgvector::{self, Walk};
use crate::rows::{self, FilterBinds, message_columns, tenant_key};

pub(crate) async fn embed(conn: &mut PgConnection, embed: &Embed) -> Result<Embedded> {
    let unit = embed.embedding.unit()?;
    let tenant = tenant_key(embed.context.tenant());
    let model = embed.embedding.model();
    let failed = |e| map_sqlx("writing an embedding", e);
    let mut tx = conn.begin().await.map_err(failed)?;
    // The first vector of a model fixes its dimensions; a concurrent first one of another
    // length waits for this one's commit and then finds it.
    sqlx::query(
        "INSERT INTO persist_embedding_models (tenant, model, dims) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(model)
    .bind(i32::try_from(unit.len()).unwrap_or(i32::MAX))
    .execute(&mut *tx)
    .await
    .map_err(failed)?;
    let stored: i32 = sqlx::query_scalar("SELECT dims FROM persist_embedding_models WHERE tenant = $1 AND model = $2")
        .bind(tenant)
        .bind(model)
        .fetch_one(&mut *tx)
        .await
        .map_err(failed)?;
    let stored = usize::try_from(stored).unwrap_or_default();
    if stored != unit.len() {
        return Err(dimensions_mismatch(model, stored, unit.len()));
    }
    // Locked against a change of its content until this commits (which would then remove the
    // vector); a deleted thread's messages are gone with it.
    let row = sqlx::query(
        "SELECT m.status, m.version, m.seq FROM messages m \
          WHERE m.tenant = $1 AND m.thread_id = $2 AND m.message_id = $3 \
            AND EXISTS (SELECT 1 FROM threads t \
                         WHERE t.tenant = m.tenant AND t.thread_id = m.thread_id AND t.deleted_at IS NULL) \
            FOR SHARE OF m",
    )
    .bind(tenant)
    .bind(embed.thread_id.as_str())
    .bind(embed.message_id.as_str())
    .fetch_optional(&mut *tx)
    .await
    .map_err(failed)?
    .ok_or_else(|| PersistError::not_found(&embed.thread_id, Some(&embed.message_id)))?;
    let status: String = row.try_get("status").map_err(failed)?;
    let version = u64::try_from(row.try_get::<i64, _>("version").map_err(failed)?).unwrap_or_default();
    if status == "reserved" {
        return Err(embed.reserved());
    }
    if embed.expected_version.is_some_and(|expected| expected != version) {
        return Err(embed.conflict(version));
    }
    sqlx::query(
        "INSERT INTO persist_embeddings (tenant, thread_id, message_id, model, vector) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (tenant, thread_id, message_id, model) DO UPDATE SET vector = excluded.vector",
    )
    .bind(tenant)
    .bind(embed.thread_id.as_str())
    .bind(embed.message_id.as_str())
    .bind(model)
    .bind(to_bytes(&unit))
    .execute(&mut *tx)
    .await
    .map_err(failed)?;
    // The feed's event, as the triggers write the other writes' (sequenced after commit, the
    // instance notified by `apply`): the message at its version, no status.
    sqlx::query(
        "INSERT INTO persist_feed (tenant, thread_id, op, message_id, seq, version) \
         SELECT $1, $2, 'embed', $3, $4, $5 FROM persist_feed_state WHERE enabled",
    )
    .bind(tenant)
    .bind(embed.thread_id.as_str())
    .bind(embed.message_id.as_str())
    .bind(row.try_get::<i64, _>("seq").map_err(failed)?)
    .bind(i64::try_from(version).unwrap_or(i64::MAX))
    .execute(&mut *tx)
    .await
    .map_err(failed)?;
    tx.commit().await.map_err(failed)?;
    Ok(Embedded::new(embed.thread_id.clone(), embed.message_id.clone(), version))
}

/// The scope's vectors of model `$1`: tenant `$2`, one thread `$3`, a thread filter `$4`, the
/// time range `$5`/`$6`, the roles `$7`, interrupted only or complete only `$8`; each with its
/// message's key and seq (ties).
const SCAN_SQL: &str = "\
    SELECT e.thread_id, e.message_id, m.seq, e.vector \
      FROM persist_embeddings e \
      JOIN messages m ON m.tenant = e.tenant AND m.thread_id = e.thread_id AND m.message_id = e.message_id \
      JOIN threads t ON t.tenant = e.tenant AND t.thread_id = e.thread_id \
     WHERE e.tenant = $2 AND e.model = $1 AND ($3::text IS NULL OR e.thread_id = $3) \
       AND t.deleted_at IS NULL \
       AND ($4::jsonb IS NULL OR NOT EXISTS (SELECT 1 FROM jsonb_each($4::jsonb) f \
                                              WHERE (t.metadata -> f.key) IS DISTINCT FROM f.value)) \
       AND m.status <> 'reserved' \
       AND ($8::boolean IS NULL OR (m.status = 'interrupted') = $8) \
       AND ($5::bigint IS NULL OR m.created_at >= $5) AND ($6::bigint IS NULL OR m.created_at < $6) \
       AND ($7::text[] IS NULL OR m.role = ANY ($7))";

/// The messages of the best, by key.
const MESSAGES_SQL: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages m JOIN unnest($2::text[], $3::text[]) AS k(thread_id, message_id) USING (thread_id, message_id) \
      WHERE m.tenant = $1"
);

/// A vector compared: its score, and what breaks ties (thread id, then seq).
struct Candidate {
    score: f32,
    thread_id: String,
    seq: i64,
    message_id: String,
}

/// Better first: a higher score, then a smaller thread id (bytewise) and seq.
fn better(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    b.score.total_cmp(&a.score).then_with(|| a.thread_id.as_bytes().cmp(b.thread_id.as_bytes())).then(a.seq.cmp(&b.seq))
}

pub(crate) async fn nearest(conn: &mut PgConnection, query: &Nearest, walk: Option<&Walk>) -> Result<Vec<Neighbour>> {
    query.validate()?;
    let unit = query.query.unit()?;
    let tenant = tenant_key(query.tenant());
    let model = query.query.model();
    let failed = |e| map_sqlx("finding the nearest messages", e);
    let stored: Option<i32> =
        sqlx::query_scalar("SELECT dims FROM persist_embedding_models WHERE tenant = $1 AND model = $2")
            .bind(tenant)
            .bind(model)
            .fetch_optional(&mut *conn)
            .await
            .map_err(failed)?;
    match stored.map(|dims| usize::try_from(dims).unwrap_or_default()) {
        Some(dims) if dims != unit.len() => return Err(dimensions_mismatch(model, dims, unit.len())),
        Some(_) => {}
        None => {
            let others: Vec<String> = sqlx::query_scalar(
                "SELECT model FROM persist_embedding_models WHERE tenant = $1 ORDER BY model COLLATE \"C\"",
            )
            .bind(tenant)
            .fetch_all(&mut *conn)
            .await
            .map_err(failed)?;
            return if others.is_empty() { Ok(Vec::new()) } else { Err(unknown_model(model, &others)) };
        }
    }
    let walk = walk.filter(|walk| query.approximate && walk.covers(unit.len()));
    let best = match walk {
        Some(walk) => match walked(conn, query, &unit, walk).await? {
            // The walk found `limit` in scope: scored exactly, in exact order.
            best if best.len() >= query.limit as usize => best,
            // A scope the walk ran out of (a few rows in a large index): the scan answers it.
            _ => scanned(conn, query, &unit, SCAN_SQL, None).await?,
        },
        None => scanned(conn, query, &unit, SCAN_SQL, None).await?,
    };
    let threads: Vec<&str> = best.iter().map(|c| c.thread_id.as_str()).collect();
    let ids: Vec<&str> = best.iter().map(|c| c.message_id.as_str()).collect();
    let found =
        sqlx::query(MESSAGES_SQL).bind(tenant).bind(&threads).bind(&ids).fetch_all(&mut *conn).await.map_err(failed)?;
    let mut scored = Vec::with_capacity(found.len());
    for row in &found {
        let message = rows::message(row)?;
        let score = best
            .iter()
            .find(|c| c.thread_id == message.thread_id.as_str() && c.message_id == message.id.as_str())
            .map_or(f32::MIN, |c| c.score);
        scored.push(Neighbour::new(query.tenant().cloned(), message, score));
    }
    Ok(query.answer(scored))
}

/// The `limit` vectors in scope pgvector's index finds nearest the query (see
/// [`Walk::settings`]), scored exactly; in a transaction of its own (a savepoint behind a
/// transaction pooler, whose settings are set back after).
async fn walked(conn: &mut PgConnection, query: &Nearest, unit: &[f32], walk: &Walk) -> Result<Vec<Candidate>> {
    let failed = |e| map_sqlx("walking the vector index", e);
    let outer = conn.is_in_transaction();
    let mut tx = conn.begin().await.map_err(failed)?;
    sqlx::raw_sql(AssertSqlSafe(walk.settings(query.limit))).execute(&mut *tx).await.map_err(failed)?;
    let sql = format!("{SCAN_SQL}{}", walk.order(unit.len()));
    let fetch = (pgvector::vector_text(unit), i64::from(query.limit));
    let best = scanned(&mut tx, query, unit, &sql, Some(fetch)).await?;
    if outer {
        // A savepoint's settings last until the outer transaction ends.
        sqlx::raw_sql("SET LOCAL enable_sort TO DEFAULT").execute(&mut *tx).await.map_err(failed)?;
    }
    tx.commit().await.map_err(failed)?;
    Ok(best)
}

/// The scope's vectors `sql` reads (the scan, or the walk with its query and fetch), each
/// scored here as the rows arrive, the best `limit` kept.
async fn scanned(
    conn: &mut PgConnection,
    query: &Nearest,
    unit: &[f32],
    sql: &str,
    walk: Option<(String, i64)>,
) -> Result<Vec<Candidate>> {
    let failed = |e| map_sqlx("finding the nearest messages", e);
    let filter = FilterBinds::of(&query.filter)?;
    let mut statement = sqlx::query(AssertSqlSafe(sql.to_owned()))
        .bind(query.query.model())
        .bind(tenant_key(query.tenant()))
        .bind(query.thread_id.as_ref().map(|t| t.as_str()))
        .bind(filter.thread)
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.roles)
        .bind(query.interrupted);
    if let Some((vector, fetch)) = walk {
        statement = statement.bind(vector).bind(fetch);
    }
    let mut rows = statement.fetch(&mut *conn);
    let limit = query.limit as usize;
    let mut best: Vec<Candidate> = Vec::with_capacity(2 * limit + 1);
    while let Some(row) = rows.try_next().await.map_err(failed)? {
        let bytes: &[u8] = row.try_get("vector").map_err(failed)?;
        let Some(score) = similarity_to_bytes(unit, bytes) else { continue };
        if best.len() >= limit && best.last().is_some_and(|worst| score < worst.score) {
            continue;
        }
        let candidate = Candidate {
            score,
            thread_id: row.try_get("thread_id").map_err(failed)?,
            seq: row.try_get("seq").map_err(failed)?,
            message_id: row.try_get("message_id").map_err(failed)?,
        };
        let at = best.partition_point(|kept| better(kept, &candidate).is_lt());
        best.insert(at, candidate);
        best.truncate(limit);
    }
    Ok(best)
}

/// `list_embeddings`: a page of the vectors of thread `$2` of tenant `$1` (live), after the
/// cursor `$3`/`$4` (seq, model), by seq then model (bytewise).
pub(crate) async fn embeddings(
    conn: &mut PgConnection,
    query: &ListEmbeddings,
) -> Result<Page<StoredEmbedding, EmbeddingCursor>> {
    query.validate()?;
    let failed = |e| map_sqlx("listing embeddings", e);
    let after = query.after.as_ref();
    let found = sqlx::query(
        "SELECT m.seq, e.message_id, e.model, e.vector, m.role, m.status, m.created_at \
           FROM persist_embeddings e \
           JOIN messages m ON m.tenant = e.tenant AND m.thread_id = e.thread_id AND m.message_id = e.message_id \
          WHERE e.tenant = $1 AND e.thread_id = $2 \
            AND NOT EXISTS (SELECT 1 FROM threads t \
                             WHERE t.tenant = e.tenant AND t.thread_id = e.thread_id AND t.deleted_at IS NOT NULL) \
            AND ($3::bigint IS NULL OR (m.seq, e.model COLLATE \"C\") > ($3, $4::text)) \
          ORDER BY m.seq, e.model COLLATE \"C\" LIMIT $5",
    )
    .bind(tenant_key(query.tenant()))
    .bind(query.thread_id.as_str())
    .bind(after.map(|after| i64::try_from(after.seq).unwrap_or(i64::MAX)))
    .bind(after.map(|after| after.model.as_str()))
    .bind(i64::from(query.limit) + 1)
    .fetch_all(&mut *conn)
    .await
    .map_err(failed)?;
    let mut stored = Vec::with_capacity(found.len());
    for row in &found {
        let bytes: &[u8] = row.try_get("vector").map_err(failed)?;
        let vector = from_bytes(bytes)
            .ok_or_else(|| PersistError::backend("listing embeddings", "a stored vector is not whole f32s"))?;
        let seq = u64::try_from(row.try_get::<i64, _>("seq").map_err(failed)?).unwrap_or_default();
        let model: String = row.try_get("model").map_err(failed)?;
        let id = MessageId::new(row.try_get::<&str, _>("message_id").map_err(failed)?)
            .map_err(|e| PersistError::backend("listing embeddings", e.to_string()))?;
        let role = Role::new(row.try_get::<&str, _>("role").map_err(failed)?).map_err(|e| corrupt(e.to_string()))?;
        let status = row.try_get::<&str, _>("status").map_err(failed)?;
        let status = Status::parse(status).ok_or_else(|| corrupt(format!("unknown status {status:?}")))?;
        let created_at = Timestamp::from_micros(row.try_get("created_at").map_err(failed)?);
        let embedding = Embedding::new(model, vector);
        stored.push(StoredEmbedding::new(id, seq, embedding, role, status, created_at));
    }
    Ok(query.page(stored))
}
