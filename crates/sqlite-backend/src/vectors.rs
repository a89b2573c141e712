//! `nearest` (see `persist::vector`): an exact scan of the scope's vectors of one model, on a
//! rusqlite read connection (each vector compared where SQLite hands its bytes over, never
//! copied), keeping the best `limit`; then the messages of those, by row.
//!
//! An exact scan is what `sqlite-vec`'s `vec0` tables do too (a brute-force pass over the
//! vectors, in C): at the sizes one user's conversations reach it answers in milliseconds
//! (docs/performance-history/02-recall-and-vector-index.md, "Recall"), and it needs no extension
//! loaded into the connection.
//!
//! `list_embeddings`: a thread's vectors as stored (what a copy carries), on a pooled connection.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use persist_core::vector::{
    Embedding, EmbeddingCursor, ListEmbeddings, Nearest, Neighbour, StoredEmbedding, dimensions_mismatch, from_bytes,
    similarity_to_bytes, unknown_model,
};
use persist_core::{Page, PersistError, Result};
use rusqlite::types::ValueRef;

use crate::direct::{DirectReads, map};
use crate::reads::{FilterBinds, metadata_contains, same_node};
use crate::rows::{self, packed_role, tenant_key};

/// The scope's vectors of model `?2`: threads of tenant `?1` (one thread `?3`; a metadata filter
/// `?4`), live, then each thread's vectors (a reservation has none: no message is read).
const SCAN_SQL: &str = concat!(
    "SELECT e.row, e.vector, t.thread_id, e.seq \
       FROM threads t CROSS JOIN persist_embeddings e ON e.thread = t.key AND e.model = ?2 \
      WHERE t.tenant = ?1 AND t.deleted_at IS NULL AND (?3 IS NULL OR t.thread_id = ?3) \
        AND (?4 IS NULL OR ",
    metadata_contains!("t.metadata", "?4"),
    ")"
);

/// [`SCAN_SQL`] with the filters on messages: `?5`/`?6` the time range, `?7` the roles (a JSON
/// array), `?8` 1 for interrupted only, 0 for complete only.
const FILTERED_SCAN_SQL: &str = concat!(
    "SELECT e.row, e.vector, t.thread_id, e.seq \
       FROM threads t CROSS JOIN persist_embeddings e ON e.thread = t.key AND e.model = ?2 \
            CROSS JOIN persist_messages m ON m.row = e.row \
      WHERE t.tenant = ?1 AND t.deleted_at IS NULL AND (?3 IS NULL OR t.thread_id = ?3) \
        AND (?4 IS NULL OR ",
    metadata_contains!("t.metadata", "?4"),
    ") AND m.status IS NOT 'reserved' \
        AND (?8 IS NULL OR (?8 = 1) = (m.status IS 'interrupted')) \
        AND (?5 IS NULL OR m.created_at >= ?5) AND (?6 IS NULL OR m.created_at < ?6) \
        AND (?7 IS NULL OR m.role IN (SELECT ",
    packed_role!("value"),
    " FROM json_each(?7)))"
);

/// A message found by its row, with its thread's id.
const MESSAGE_SQL: &str = "SELECT t.thread_id AS thread_id, m.message_id, m.seq, m.parent_seq, m.role, m.content, \
            m.content_form, m.metadata, m.status, m.version, m.idempotency_key, m.created_at, m.updated_at \
       FROM persist_messages m JOIN threads t ON t.key = m.thread WHERE m.row = ?1";

/// A vector compared: its score, and what breaks ties (thread id, then seq, ascending).
struct Candidate {
    score: f32,
    thread_id: String,
    seq: i64,
    row: i64,
}

/// Better first: a higher score, then a smaller thread id and seq. The heap keeps the worst of
/// the best on top.
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then_with(|| self.thread_id.cmp(&other.thread_id))
            .then(self.seq.cmp(&other.seq))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

pub(crate) fn nearest(direct: &DirectReads, query: &Nearest) -> Result<Vec<Neighbour>> {
    query.validate()?;
    let unit = query.query.unit()?;
    let tenant = tenant_key(query.tenant());
    let model = query.query.model();
    let failed = |e| map("finding the nearest messages", e);
    direct.with_reader(|conn| {
        // One snapshot for the model's dimensions, the scan and the messages.
        let tx = conn.unchecked_transaction().map_err(failed)?;
        let stored: Option<i64> = tx
            .prepare_cached("SELECT dims FROM persist_embedding_models WHERE tenant = ?1 AND model = ?2")
            .and_then(|mut s| s.query_row((tenant, model), |row| row.get(0)).map(Some))
            .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(None) } else { Err(e) })
            .map_err(failed)?;
        match stored.map(|dims| usize::try_from(dims).unwrap_or_default()) {
            Some(dims) if dims != unit.len() => return Err(dimensions_mismatch(model, dims, unit.len())),
            Some(_) => {}
            None => {
                let mut statement = tx
                    .prepare_cached("SELECT model FROM persist_embedding_models WHERE tenant = ?1 ORDER BY model")
                    .map_err(failed)?;
                let others = statement
                    .query_map([tenant], |row| row.get::<_, String>(0))
                    .and_then(Iterator::collect::<rusqlite::Result<Vec<String>>>)
                    .map_err(failed)?;
                return if others.is_empty() { Ok(Vec::new()) } else { Err(unknown_model(model, &others)) };
            }
        }
        let FilterBinds { roles, thread: filter, since, until } = FilterBinds::of(&query.filter)?;
        let thread = query.thread_id.as_ref().map(|t| t.as_str());
        let filtered = since.is_some() || until.is_some() || roles.is_some() || query.interrupted.is_some();
        let mut statement = tx.prepare_cached(if filtered { FILTERED_SCAN_SQL } else { SCAN_SQL }).map_err(failed)?;
        let mut found = if filtered {
            let interrupted = query.interrupted.map(i64::from);
            let params = rusqlite::params![tenant, model, thread, filter, since, until, roles, interrupted];
            statement.query(params)
        } else {
            statement.query(rusqlite::params![tenant, model, thread, filter])
        }
        .map_err(failed)?;
        let limit = query.limit as usize;
        let mut best: BinaryHeap<Candidate> = BinaryHeap::with_capacity(limit + 1);
        while let Some(row) = found.next().map_err(failed)? {
            let ValueRef::Blob(bytes) = row.get_ref(1).map_err(failed)? else { continue };
            let Some(score) = similarity_to_bytes(&unit, bytes) else { continue };
            if best.len() == limit && best.peek().is_some_and(|worst| score < worst.score) {
                continue;
            }
            let thread_id = row.get::<_, String>(2).map_err(failed)?;
            best.push(Candidate {
                score,
                thread_id,
                seq: row.get(3).map_err(failed)?,
                row: row.get(0).map_err(failed)?,
            });
            if best.len() > limit {
                best.pop();
            }
        }
        drop(found);
        let mut read = tx.prepare_cached(MESSAGE_SQL).map_err(failed)?;
        let tenant = query.tenant().cloned();
        let mut neighbours = Vec::with_capacity(best.len());
        for candidate in best.into_sorted_vec() {
            let mut rows_found = read.query([candidate.row]).map_err(failed)?;
            if let Some(row) = rows_found.next().map_err(failed)? {
                neighbours.push(Neighbour::new(tenant.clone(), rows::message(row)?, candidate.score));
            }
        }
        Ok(query.answer(neighbours))
    })
}

/// A page of the vectors of thread `?2` of tenant `?1` (live), with their messages' role, status
/// and creation time, after the cursor `?3`/`?4` (seq,
/// model), by seq then model (bytewise: SQLite's default collation).
const LIST_SQL: &str = "\
    SELECT e.seq AS seq, m.message_id AS message_id, e.model AS model, e.vector AS vector, \
           m.role AS role, m.status AS status, m.created_at AS created_at \
      FROM threads t CROSS JOIN persist_embeddings e ON e.thread = t.key \
           CROSS JOIN persist_messages m ON m.row = e.row \
     WHERE t.tenant = ?1 AND t.thread_id = ?2 AND t.deleted_at IS NULL \
       AND (?3 IS NULL OR (e.seq, e.model) > (?3, ?4)) \
     ORDER BY e.seq, e.model LIMIT +?5";

/// `list_embeddings`: the stored vectors of a thread, on a pooled connection.
pub(crate) async fn embeddings(
    pool: &sqlx::SqlitePool,
    query: &ListEmbeddings,
) -> Result<Page<StoredEmbedding, EmbeddingCursor>> {
    use sqlx::Row;
    query.validate()?;
    let failed = |e| crate::error::map_sqlx("listing embeddings", e);
    let after = query.after.as_ref();
    let found = sqlx::query(LIST_SQL)
        .bind(tenant_key(query.tenant()))
        .bind(query.thread_id.as_str())
        .bind(after.map(|after| i64::try_from(after.seq).unwrap_or(i64::MAX)))
        .bind(after.map(|after| after.model.as_str()))
        .bind(i64::from(query.limit) + 1)
        .fetch_all(pool)
        .await
        .map_err(failed)?;
    let mut stored = Vec::with_capacity(found.len());
    for row in &found {
        let bytes: &[u8] = row.try_get("vector").map_err(failed)?;
        let vector = from_bytes(bytes)
            .ok_or_else(|| PersistError::backend("listing embeddings", "a stored vector is not whole f32s"))?;
        let seq = u64::try_from(row.try_get::<i64, _>("seq").map_err(failed)?).unwrap_or_default();
        let model: String = row.try_get("model").map_err(failed)?;
        let id = rows::Cells::message_id(row, "message_id")?;
        let role = rows::Cells::role(row, "role")?;
        let embedding = Embedding::new(model, vector);
        stored.push(StoredEmbedding::new(id, seq, embedding, role, rows::status(row)?, rows::created_at(row)?));
    }
    Ok(query.page(stored))
}
