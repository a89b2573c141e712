//! Embeddings (see `persist::vector`): `embed`, a short transaction, and `nearest`, an exact scan
//! of the scope's vectors in the server (the tables of version 15).
//!
//! Without pgvector the server compares `real[]` columns with an SQL expression: every vector of
//! the tenant's model in scope is read once a query. The best `limit` come back with their
//! vectors, and their scores are computed again here as every backend computes them
//! (`persist_core::vector::similarity`), so the same store answers the same numbers everywhere.

use persist_core::vector::{Embed, Embedded, Nearest, Neighbour, dimensions_mismatch, similarity, unknown_model};
use persist_core::{PersistError, Result};
use sqlx::{Acquire, PgConnection, Row};

use crate::error::map_sqlx;
use crate::rows::{self, json_text, message_columns, tenant_key};

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
        "SELECT m.status, m.version FROM messages m \
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
    .bind(&unit)
    .execute(&mut *tx)
    .await
    .map_err(failed)?;
    tx.commit().await.map_err(failed)?;
    Ok(Embedded::new(embed.thread_id.clone(), embed.message_id.clone(), version))
}

/// The scope's `$9` best messages by the dot product of their vectors of model `$2` with `$1`:
/// tenant `$3`, one thread `$4`, a thread filter `$5`, the time range `$6`/`$7`, the roles `$8`,
/// interrupted only or complete only `$10`. Ties by thread id and seq, as everywhere.
const NEAREST_SQL: &str = concat!(
    "SELECT ",
    message_columns!(),
    ", vector FROM ( \
        SELECT m.*, e.vector, \
               (SELECT sum(a::float8 * b::float8) FROM unnest(e.vector, $1::real[]) AS u(a, b)) AS score \
          FROM persist_embeddings e \
          JOIN messages m ON m.tenant = e.tenant AND m.thread_id = e.thread_id AND m.message_id = e.message_id \
          JOIN threads t ON t.tenant = e.tenant AND t.thread_id = e.thread_id \
         WHERE e.tenant = $3 AND e.model = $2 AND ($4::text IS NULL OR e.thread_id = $4) \
           AND t.deleted_at IS NULL \
           AND ($5::jsonb IS NULL OR NOT EXISTS (SELECT 1 FROM jsonb_each($5::jsonb) f \
                                                  WHERE (t.metadata -> f.key) IS DISTINCT FROM f.value)) \
           AND m.status <> 'reserved' \
           AND ($10::boolean IS NULL OR (m.status = 'interrupted') = $10) \
           AND ($6::bigint IS NULL OR m.created_at >= $6) AND ($7::bigint IS NULL OR m.created_at < $7) \
           AND ($8::text[] IS NULL OR m.role = ANY ($8)) \
         ORDER BY score DESC, m.thread_id COLLATE \"C\", m.seq \
         LIMIT $9) found"
);

pub(crate) async fn nearest(conn: &mut PgConnection, query: &Nearest) -> Result<Vec<Neighbour>> {
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
    let roles: Option<Vec<&str>> = (!query.roles.is_empty()).then(|| query.roles.iter().map(|r| r.as_str()).collect());
    let filter = (!query.thread_filter.is_empty()).then(|| json_text(&query.thread_filter)).transpose()?;
    let found = sqlx::query(NEAREST_SQL)
        .bind(&unit)
        .bind(model)
        .bind(tenant)
        .bind(query.thread_id.as_ref().map(|t| t.as_str()))
        .bind(filter)
        .bind(query.since.map(|t| t.as_micros()))
        .bind(query.until.map(|t| t.as_micros()))
        .bind(roles)
        .bind(i64::from(query.limit))
        .bind(query.interrupted)
        .fetch_all(&mut *conn)
        .await
        .map_err(failed)?;
    let scored = found
        .iter()
        .map(|row| {
            let vector: Vec<f32> = row.try_get("vector").map_err(failed)?;
            Ok(Neighbour::new(query.tenant().cloned(), rows::message(row)?, similarity(&unit, &vector)))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(query.answer(scored))
}
