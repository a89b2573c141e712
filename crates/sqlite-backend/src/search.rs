//! Full-text search (see `persist::search`): the FTS5 index the migration of version 14 made,
//! read here, and turned on or off when a handle opens the file.

use persist_core::search::{Search, SearchCursor, SearchHit, SearchQuery};
use persist_core::{Page, PersistError, Result};
use sqlx::{SqliteConnection, SqlitePool};

use crate::error::map_sqlx;
use crate::reads::{FilterBinds, metadata_contains, same_node};
use crate::rows::{self, packed_role, tenant_key};

/// A search: the FTS5 index drives (`CROSS JOIN` keeps it first), each match read by rowid and
/// checked against the filters: `?2` tenant (NULL across tenants), `?3` thread, `?4`/`?5` the
/// time range, `?6` the roles (a JSON array, NULL for any), `?7` the thread filter, `?8`–`?11`
/// the cursor (created_at, thread, tenant, seq), `?12` the fetch limit.
const SEARCH_SQL: &str = concat!(
    "SELECT t.tenant AS tenant, t.thread_id AS thread_id, m.message_id AS message_id, m.seq AS seq, \
            m.parent_seq AS parent_seq, m.role AS role, m.content AS content, \
            m.content_form AS content_form, m.metadata AS metadata, \
            m.status AS status, m.version AS version, m.idempotency_key AS idempotency_key, \
            m.created_at AS created_at, m.updated_at AS updated_at \
       FROM persist_search s CROSS JOIN persist_messages m ON m.row = s.rowid CROSS JOIN threads t ON t.key = m.thread \
      WHERE persist_search MATCH ?1 AND m.status IS NOT 'reserved' \
        AND (?2 IS NULL OR t.tenant = ?2) AND (?3 IS NULL OR t.thread_id = ?3) \
        AND (?4 IS NULL OR m.created_at >= ?4) AND (?5 IS NULL OR m.created_at < ?5) \
        AND (?6 IS NULL OR m.role IN (SELECT ",
    packed_role!("value"),
    " FROM json_each(?6))) \
        AND (?8 IS NULL OR (m.created_at, t.thread_id, t.tenant, m.seq) < (?8, ?9, ?10, ?11)) \
        AND t.deleted_at IS NULL AND (?7 IS NULL OR ",
    metadata_contains!("t.metadata", "?7"),
    ") \
      ORDER BY m.created_at DESC, t.thread_id DESC, t.tenant DESC, m.seq DESC LIMIT +?12"
);

/// The FTS5 query of a parsed search: each term a quoted string (a phrase of its words, which
/// FTS5 tokenizes as the index was), a prefix marked by `*` after it, terms joined by `AND`.
/// Words hold only letters and digits, so nothing in them needs escaping.
fn fts5_query(query: &SearchQuery) -> String {
    let terms: Vec<String> = query
        .terms()
        .iter()
        .map(|term| {
            let phrase = format!("\"{}\"", term.words.join(" "));
            if term.prefix { format!("{phrase} *") } else { phrase }
        })
        .collect();
    terms.join(" AND ")
}

pub(crate) async fn search(pool: &SqlitePool, query: &Search) -> Result<Page<SearchHit, SearchCursor>> {
    let parsed = query.query()?;
    let mut conn = pool.acquire().await.map_err(|e| map_sqlx("searching", e))?;
    // The switch and the search read one snapshot: a handle turning the index off meanwhile
    // makes this answer `Unsupported`, never an empty page.
    let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(|e| map_sqlx("searching", e))?;
    let enabled: bool = sqlx::query_scalar("SELECT enabled FROM persist_search_state")
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| map_sqlx("searching", e))?;
    if !enabled {
        return Err(search_off());
    }
    let filter = FilterBinds::of(&query.filter)?;
    let cursor = query.cursor.as_ref();
    let tenant = (!query.is_across_tenants()).then(|| tenant_key(query.tenant()));
    let rows = sqlx::query(SEARCH_SQL)
        .bind(fts5_query(&parsed))
        .bind(tenant)
        .bind(query.thread_id().map(|t| t.as_str()))
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.roles)
        .bind(filter.thread)
        .bind(cursor.map(|c| c.created_at().as_micros()))
        .bind(cursor.map(|c| c.thread_id().as_str()))
        .bind(cursor.map(|c| tenant_key(c.tenant())))
        .bind(cursor.map(|c| rows::signed(c.seq())))
        .bind(i64::from(query.fetch_limit()))
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| map_sqlx("searching", e))?;
    tx.commit().await.map_err(|e| map_sqlx("searching", e))?;
    let found = rows.iter().map(|row| Ok((rows::tenant(row)?, rows::message(row)?))).collect::<Result<Vec<_>>>()?;
    query.page(found)
}

/// What a search answers while a handle keeps the file's index off.
pub(crate) fn search_off() -> PersistError {
    PersistError::Unsupported {
        what: "search on this file: its search index is off (a handle opened it with `search_index(false)`; \
               opening one with `search_index(true)` rebuilds it)"
            .into(),
    }
}

/// Turns the file's index on or off as this handle opens it (see
/// [`SqliteBackendBuilder::search_index`](crate::SqliteBackendBuilder::search_index); `None`
/// leaves it as it is): off, it is emptied and the triggers stop keeping it; on after being off,
/// it is rebuilt from every message. One transaction: a handle opening meanwhile sees it before
/// or after. Answers whether the index is kept.
pub(crate) async fn keep_search_index(conn: &mut SqliteConnection, keep: Option<bool>) -> Result<bool> {
    let map = |e| map_sqlx("turning the search index on or off", e);
    let Some(keep) = keep else {
        return sqlx::query_scalar("SELECT enabled FROM persist_search_state").fetch_one(&mut *conn).await.map_err(map);
    };
    let mut tx = sqlx::Connection::begin(conn).await.map_err(map)?;
    let changed = sqlx::query("UPDATE persist_search_state SET enabled = ?1 WHERE enabled <> ?1")
        .bind(keep)
        .execute(&mut *tx)
        .await
        .map_err(map)?
        .rows_affected();
    if changed > 0 {
        sqlx::query("INSERT INTO persist_search (persist_search) VALUES ('delete-all')")
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        if keep {
            sqlx::query(
                "INSERT INTO persist_search (rowid, body) \
                 SELECT message_rowid, body FROM persist_search_texts WHERE body IS NOT NULL",
            )
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        }
    }
    tx.commit().await.map_err(map)?;
    Ok(keep)
}
