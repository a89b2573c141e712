//! `embed`: a message's vector, stored beside it (the tables of version 19), and its event in the
//! change feed (version 23).

use persist_core::PersistError;
use persist_core::vector::{Embed, Embedded, dimensions_mismatch, to_bytes};
use sqlx::{Row, SqliteConnection};

use super::{OpResult, refused, sql};
use crate::rows::{packed_id, tenant_key, thread_key};

/// Refuses embeddings of a model whose dimensions in `tenant` are another length (a turn's, before
/// anything of it is written).
pub(super) async fn check_vectors(
    conn: &mut SqliteConnection,
    tenant: Option<&persist_core::TenantId>,
    embeddings: &[&persist_core::vector::Embedding],
) -> OpResult<()> {
    for embedding in embeddings {
        let stored: Option<i64> =
            sqlx::query_scalar("SELECT dims FROM persist_embedding_models WHERE tenant = ?1 AND model = ?2")
                .bind(tenant_key(tenant))
                .bind(embedding.model())
                .fetch_optional(&mut *conn)
                .await
                .map_err(sql("reading a model's dimensions"))?;
        if let Some(stored) = stored.and_then(|dims| usize::try_from(dims).ok())
            && stored != embedding.dimensions()
        {
            return Err(refused(dimensions_mismatch(embedding.model(), stored, embedding.dimensions())));
        }
    }
    Ok(())
}

pub(super) async fn embed(conn: &mut SqliteConnection, embed: &Embed) -> OpResult<Embedded> {
    let unit = embed.embedding.unit().map_err(refused)?;
    let tenant = tenant_key(embed.context.tenant());
    let model = embed.embedding.model();
    let stored: Option<i64> =
        sqlx::query_scalar("SELECT dims FROM persist_embedding_models WHERE tenant = ?1 AND model = ?2")
            .bind(tenant)
            .bind(model)
            .fetch_optional(&mut *conn)
            .await
            .map_err(sql("reading a model's dimensions"))?;
    if let Some(stored) = stored.and_then(|dims| usize::try_from(dims).ok())
        && stored != unit.len()
    {
        return Err(refused(dimensions_mismatch(model, stored, unit.len())));
    }
    // A deleted thread's messages are gone with it: its key finds none.
    let row = sqlx::query(concat!(
        "SELECT m.row AS row, m.thread AS thread, m.seq AS seq, m.status AS status, m.version AS version \
           FROM persist_messages m \
          WHERE m.thread = ",
        thread_key!("?3", "?1"),
        " AND m.message_id = ",
        packed_id!("?2"),
        " AND NOT EXISTS (SELECT 1 FROM threads t WHERE t.key = m.thread AND t.deleted_at IS NOT NULL)"
    ))
    .bind(embed.thread_id.as_str())
    .bind(embed.message_id.as_str())
    .bind(tenant)
    .fetch_optional(&mut *conn)
    .await
    .map_err(sql("reading the message to embed"))?
    .ok_or_else(|| refused(PersistError::not_found(&embed.thread_id, Some(&embed.message_id))))?;
    let read = |column: &'static str| row.try_get::<i64, _>(column).map_err(sql("reading the message to embed"));
    let (message_row, thread, seq) = (read("row")?, read("thread")?, read("seq")?);
    let version = u64::try_from(read("version")?).unwrap_or_default();
    let status: Option<String> = row.try_get("status").map_err(sql("reading the message to embed"))?;
    if status.as_deref() == Some("reserved") {
        return Err(refused(embed.reserved()));
    }
    if embed.expected_version.is_some_and(|expected| expected != version) {
        return Err(refused(embed.conflict(version)));
    }
    sqlx::query(
        "INSERT INTO persist_embedding_models (tenant, model, dims) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(model)
    .bind(i64::try_from(unit.len()).unwrap_or(i64::MAX))
    .execute(&mut *conn)
    .await
    .map_err(sql("recording a model's dimensions"))?;
    sqlx::query(
        "INSERT INTO persist_embeddings (row, model, thread, seq, vector) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (row, model) DO UPDATE SET vector = excluded.vector",
    )
    .bind(message_row)
    .bind(model)
    .bind(thread)
    .bind(seq)
    .bind(to_bytes(&unit))
    .execute(&mut *conn)
    .await
    .map_err(sql("writing an embedding"))?;
    record_event(conn, thread, message_row, embed).await?;
    Ok(Embedded::new(embed.thread_id.clone(), embed.message_id.clone(), version))
}

/// The feed's event of an embed (`migrations/0023`), when the feed records: op 8 in
/// `persist_events` (`embed` in `persist_feed`, of a store whose format is below 2, as the
/// triggers choose), the message `message_row` of thread `thread` at its version, after the
/// thread's last event. An `add` or a turn that carries vectors has its insert's event alone.
async fn record_event(conn: &mut SqliteConnection, thread: i64, message_row: i64, embed: &Embed) -> OpResult<()> {
    /// The next position, as the triggers take it (`migrations/0016`).
    macro_rules! position {
        () => {
            "max(coalesce((SELECT max(position) FROM persist_feed), 0), \
                 coalesce((SELECT max(position) FROM persist_events), 0), s.trimmed) + 1"
        };
    }
    const EVENTS: &str = concat!(
        "INSERT INTO persist_events (position, thread, op, message_id, seq, version, at, prev) SELECT ",
        position!(),
        ", t.key, 8, m.message_id, m.seq, m.version, CAST(unixepoch('subsec') * 1000000 AS INTEGER), t.feed_last \
           FROM persist_feed_state s, threads t, persist_messages m \
          WHERE s.enabled AND coalesce((SELECT level FROM persist_format), 0) >= 2 AND t.key = ?1 AND m.row = ?2"
    );
    const FEED: &str = concat!(
        "INSERT INTO persist_feed (position, tenant, thread_id, op, message_id, seq, version, at, prev) SELECT ",
        position!(),
        ", t.tenant, t.thread_id, 'embed', ?3, m.seq, m.version, CAST(unixepoch('subsec') * 1000000 AS INTEGER), \
                t.feed_last \
           FROM persist_feed_state s, threads t, persist_messages m \
          WHERE s.enabled AND coalesce((SELECT level FROM persist_format), 0) < 2 AND t.key = ?1 AND m.row = ?2"
    );
    let mut recorded = 0;
    for statement in [EVENTS, FEED] {
        recorded += sqlx::query(statement)
            .bind(thread)
            .bind(message_row)
            .bind(embed.message_id.as_str())
            .execute(&mut *conn)
            .await
            .map_err(sql("recording an embedding in the change feed"))?
            .rows_affected();
    }
    if recorded > 0 {
        sqlx::query("UPDATE threads SET feed_last = last_insert_rowid() WHERE key = ?1")
            .bind(thread)
            .execute(&mut *conn)
            .await
            .map_err(sql("recording an embedding in the change feed"))?;
    }
    Ok(())
}
