//! Full-text search (see `persist::search`): the FTS5 index the migration of version 14 made,
//! read here, and turned on or off when a handle opens the file; the messages waiting for it
//! (version 24, format 4) indexed before a search reads it.

use persist_core::search::{Search, SearchCursor, SearchHit, SearchQuery};
use persist_core::{Page, PersistError, Result};
use sqlx::{SqliteConnection, SqlitePool};

use crate::error::map_sqlx;
use crate::reads::{FilterBinds, metadata_contains, same_node};
use crate::rows::{self, packed_role, tenant_key};

/// A search of the FTS5 table `$index` (its hidden column `$column`): the index drives (`CROSS
/// JOIN` keeps it first), each match read by rowid and checked against the filters: `?2` tenant
/// (NULL across tenants), `?3` thread, `?4`/`?5` the time range, `?6` the roles (a JSON array,
/// NULL for any), `?7` the thread filter, `?8`–`?11` the cursor (created_at, thread, tenant,
/// seq), `?12` the fetch limit.
macro_rules! search_sql {
    ($index:literal, $column:literal) => {
        concat!(
            "SELECT t.tenant AS tenant, t.thread_id AS thread_id, m.message_id AS message_id, m.seq AS seq, \
                    m.parent_seq AS parent_seq, m.role AS role, m.content AS content, \
                    m.content_form AS content_form, m.metadata AS metadata, \
                    m.status AS status, m.version AS version, m.idempotency_key AS idempotency_key, \
                    m.created_at AS created_at, m.updated_at AS updated_at \
               FROM ",
            $index,
            " s CROSS JOIN persist_messages m ON m.row = s.rowid CROSS JOIN threads t ON t.key = m.thread \
              WHERE s.",
            $column,
            " MATCH ?1 AND m.status IS NOT 'reserved' \
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
        )
    };
}

/// A search of the file's index.
const SEARCH_SQL: &str = search_sql!("persist_search", "persist_search");

/// A search of the messages waiting for the index, indexed for one search in a temporary index
/// (see [`Waiting::Include`]).
const SEARCH_WAITING_SQL: &str = search_sql!("temp.persist_search_waiting", "persist_search_waiting");

/// The rows and texts of the messages waiting for the search index (see `migrations/0024`):
/// those above `persist_search_state.indexed`, and those listed in `persist_search_pending`.
macro_rules! waiting_texts {
    () => {
        "SELECT t.message_rowid, t.body FROM persist_search_texts t \
          WHERE t.message_rowid > (SELECT indexed FROM persist_search_state) AND t.body IS NOT NULL \
         UNION ALL \
         SELECT t.message_rowid, t.body \
           FROM persist_search_pending p CROSS JOIN persist_search_texts t ON t.message_rowid = p.row \
          WHERE p.row <= (SELECT indexed FROM persist_search_state) AND t.body IS NOT NULL"
    };
}

/// Indexes every message waiting for the search index in one statement, hence one segment (as
/// the insert that takes rows 128 past `indexed` does: `sql/defer_search.sql`), and marks none
/// waiting; run in a write transaction. Nothing where the index is kept at once (`indexed`
/// NULL) or off (what waits is dropped: turned on, the index is rebuilt).
pub(crate) const FLUSH: &str = concat!(
    "INSERT INTO persist_search (rowid, body) SELECT * FROM (",
    waiting_texts!(),
    ") WHERE (SELECT enabled FROM persist_search_state); \
     DELETE FROM persist_search_pending; \
     UPDATE persist_search_state SET indexed = (SELECT coalesce(max(row), indexed) FROM persist_messages) \
      WHERE indexed IS NOT NULL;"
);

/// Whether messages wait for the search index (none while it is off: turned on, it is rebuilt).
pub(crate) const ANY_WAITING: &str = "\
    SELECT enabled AND (EXISTS (SELECT 1 FROM persist_search_pending) \
                        OR coalesce((SELECT max(row) FROM persist_messages) > indexed, 0)) \
      FROM persist_search_state";

/// The temporary index of [`Waiting::Include`], on the reader's connection, filled with the
/// texts of the messages waiting (as the file's index would hold them).
const INDEX_WAITING: &str = concat!(
    "CREATE VIRTUAL TABLE temp.persist_search_waiting USING fts5(\
         body, content = '', columnsize = 0, tokenize = 'unicode61 remove_diacritics 0'); \
     INSERT INTO temp.persist_search_waiting (rowid, body) ",
    waiting_texts!(),
    ";"
);

/// What a search does about the messages waiting for the index (see `migrations/0024`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waiting {
    /// Some waiting: answers `None`, for the handle's writer to index them (every process's:
    /// they are the file's) before the search is made again. A handle that writes.
    Flush,
    /// Searches the index as it is: asked again once the writer indexed those that waited,
    /// what waits now was written after the search was asked for.
    Ignore,
    /// Searches them too, indexed for this search alone in a temporary index on the reader's
    /// connection (dropped after): a handle without a writer.
    Include,
    /// The file has no such table (an older file read as it is).
    Absent,
}

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

/// Searches the file's index; `None` when messages wait for it and `waiting` is
/// [`Waiting::Flush`] (the writer is to index them, then the search is made again).
pub(crate) async fn search(
    pool: &SqlitePool,
    query: &Search,
    waiting: Waiting,
) -> Result<Option<Page<SearchHit, SearchCursor>>> {
    let parsed = query.query()?;
    let mut conn = pool.acquire().await.map_err(|e| map_sqlx("searching", e))?;
    // The switch, the rows waiting and the search read one snapshot: a handle turning the index
    // off meanwhile makes this answer `Unsupported`, never an empty page.
    let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(|e| map_sqlx("searching", e))?;
    let state = if waiting == Waiting::Absent {
        "SELECT enabled, 0 FROM persist_search_state"
    } else {
        "SELECT enabled, EXISTS (SELECT 1 FROM persist_search_pending) \
                OR coalesce((SELECT max(row) FROM persist_messages) > indexed, 0) \
           FROM persist_search_state"
    };
    let (enabled, pending): (bool, bool) =
        sqlx::query_as(state).fetch_one(&mut *tx).await.map_err(|e| map_sqlx("searching", e))?;
    if !enabled {
        return Err(search_off());
    }
    if pending && waiting == Waiting::Flush {
        return Ok(None);
    }
    let include = pending && waiting == Waiting::Include;
    let fts5 = fts5_query(&parsed);
    let mut found = find(&mut tx, SEARCH_SQL, &fts5, query).await?;
    if include {
        sqlx::raw_sql(INDEX_WAITING).execute(&mut *tx).await.map_err(|e| map_sqlx("searching", e))?;
        let waiting = find(&mut tx, SEARCH_WAITING_SQL, &fts5, query).await;
        let dropped = sqlx::query("DROP TABLE temp.persist_search_waiting").execute(&mut *tx).await;
        found.extend(waiting?);
        dropped.map_err(|e| map_sqlx("searching", e))?;
        // In the order of the search's `ORDER BY` (newest first), as many as it fetches.
        found.sort_by(persist_core::search::newest_first);
        found.truncate(query.fetch_limit() as usize);
    }
    tx.commit().await.map_err(|e| map_sqlx("searching", e))?;
    query.page(found).map(Some)
}

/// The messages `sql` (a [`search_sql!`]) finds, with their tenants.
async fn find(
    tx: &mut sqlx::SqliteConnection,
    sql: &'static str,
    fts5: &str,
    query: &Search,
) -> Result<Vec<(Option<persist_core::TenantId>, persist_core::Message)>> {
    let filter = FilterBinds::of(&query.filter)?;
    let cursor = query.cursor.as_ref();
    let tenant = (!query.is_across_tenants()).then(|| tenant_key(query.tenant()));
    let rows = sqlx::query(sql)
        .bind(fts5)
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
    rows.iter().map(|row| Ok((rows::tenant(row)?, rows::message(row)?))).collect()
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
        // Off, nothing waits; on, the rebuild indexes every message, those that waited too.
        sqlx::raw_sql(
            "DELETE FROM persist_search_pending; \
             UPDATE persist_search_state SET indexed = (SELECT coalesce(max(row), indexed) FROM persist_messages) \
              WHERE indexed IS NOT NULL;",
        )
        .execute(&mut *tx)
        .await
        .map_err(map)?;
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
