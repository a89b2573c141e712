//! Full-text search (see `persist::search`): the GIN index over `persist_search_vector(content)`
//! (the functions of version 10), read here, built, dropped or reconfigured as an instance
//! connects.

use persist_core::search::{Search, SearchCursor, SearchHit, SearchQuery};
use persist_core::{Page, PersistError, Result};
use sqlx::{AssertSqlSafe, PgConnection};

use crate::error::map_sqlx;
use crate::rows::{self, json_text, signed, tenant_key};

/// A search: the index finds the matches (the condition is the index's expression, `{config}`
/// written out as the index was made), each checked against the filters: `$2` tenant (NULL
/// across tenants), `$3` thread, `$4`/`$5` the time range, `$6` the roles, `$7` the thread
/// filter, `$8`–`$11` the cursor (created_at, thread, tenant, seq), `$12` the fetch limit. Each
/// parameter is named with its type, so the server knows it whether it is used or not.
const SEARCH_SQL: &str = "\
    SELECT m.tenant, m.thread_id, m.message_id, m.seq, m.parent_seq, m.role, m.content::text AS content, \
           m.metadata::text AS metadata, m.status, m.version, m.idempotency_key, m.created_at, m.updated_at \
      FROM messages m \
     WHERE persist_search_vector({config}, m.content) @@ to_tsquery({config}, $1::text) \
       AND m.status <> 'reserved' \
       AND ($2::text IS NULL OR m.tenant = $2) AND ($3::text IS NULL OR m.thread_id = $3) \
       AND ($4::bigint IS NULL OR m.created_at >= $4) AND ($5::bigint IS NULL OR m.created_at < $5) \
       AND ($6::text[] IS NULL OR m.role = ANY ($6)) \
       AND ($8::bigint IS NULL \
            OR (m.created_at, m.thread_id, m.tenant COLLATE \"C\", m.seq) < ($8, $9::text, $10::text, $11::bigint)) \
       AND EXISTS (SELECT 1 FROM threads t \
                    WHERE t.tenant = m.tenant AND t.thread_id = m.thread_id AND t.deleted_at IS NULL \
                      AND ($7::jsonb IS NULL OR NOT EXISTS (SELECT 1 FROM jsonb_each($7::jsonb) f \
                                    WHERE (t.metadata -> f.key) IS DISTINCT FROM f.value))) \
     ORDER BY m.created_at DESC, m.thread_id DESC, m.tenant COLLATE \"C\" DESC, m.seq DESC \
     LIMIT $12";

/// The search statement of a store whose configuration is `config` (a schema-qualified name).
pub(crate) fn search_sql(config: &str) -> String {
    SEARCH_SQL.replace("{config}", &format!("{}::regconfig", quote_literal(config)))
}

/// The `tsquery` of a parsed search: each word a quoted lexeme (`:*` for a prefix), a phrase
/// its words joined by `<->`, terms joined by `&`. Words hold only letters and digits, so
/// nothing in them needs escaping; `to_tsquery` runs them through the store's configuration.
fn tsquery(query: &SearchQuery) -> String {
    let terms: Vec<String> = query
        .terms()
        .iter()
        .map(|term| {
            let last = term.words.len() - 1;
            let words: Vec<String> = term
                .words
                .iter()
                .enumerate()
                .map(|(i, word)| if term.prefix && i == last { format!("'{word}':*") } else { format!("'{word}'") })
                .collect();
            format!("({})", words.join(" <-> "))
        })
        .collect();
    terms.join(" & ")
}

pub(crate) async fn search(
    conn: &mut PgConnection,
    sql: &str,
    query: &Search,
) -> Result<Page<SearchHit, SearchCursor>> {
    let parsed = query.query()?;
    let roles: Option<Vec<&str>> = (!query.roles.is_empty()).then(|| query.roles.iter().map(|r| r.as_str()).collect());
    let filter = (!query.thread_filter.as_map().is_empty()).then(|| json_text(&query.thread_filter)).transpose()?;
    let cursor = query.cursor.as_ref();
    let rows = sqlx::query(AssertSqlSafe(sql.to_owned()))
        .bind(tsquery(&parsed))
        .bind((!query.is_across_tenants()).then(|| tenant_key(query.tenant())))
        .bind(query.thread_id().map(|t| t.as_str()))
        .bind(query.since.map(|t| t.as_micros()))
        .bind(query.until.map(|t| t.as_micros()))
        .bind(roles)
        .bind(filter)
        .bind(cursor.map(|c| c.created_at().as_micros()))
        .bind(cursor.map(|c| c.thread_id().as_str()))
        .bind(cursor.map(|c| tenant_key(c.tenant())))
        .bind(cursor.map(|c| signed(c.seq())))
        .bind(i64::from(query.fetch_limit()))
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| map_sqlx("searching", e))?;
    let found = rows.iter().map(|row| Ok((rows::tenant(row)?, rows::message(row)?))).collect::<Result<Vec<_>>>()?;
    query.page(found)
}

/// What a search answers through an instance connected with the index off.
pub(crate) fn search_off() -> PersistError {
    PersistError::Unsupported { what: "search through this instance: it connected with `search_index(false)`".into() }
}

/// Makes the schema's index what this instance asks as it connects, and answers the schema's
/// text search configuration (schema-qualified) that searches name: with `keep`, the
/// configuration set to `config` (replaced, and the index rebuilt, when it was another) and the
/// index built if missing or left invalid by a build that failed; without, the index dropped.
/// Builds and drops run `CONCURRENTLY`, outside any transaction: writes go on meanwhile.
pub(crate) async fn keep_search_index(conn: &mut PgConnection, keep: bool, config: &str) -> Result<String> {
    let map = |e| map_sqlx("preparing the search index", e);
    if !keep {
        sqlx::query("DROP INDEX CONCURRENTLY IF EXISTS messages_search").execute(&mut *conn).await.map_err(map)?;
        return schema_config(conn).await;
    }
    // Whether it is the store's, and its name schema-qualified (written into the index's
    // expression and every search). A name the database does not know fails the cast.
    let named = sqlx::query_as(
        "SELECT c.oid = persist_search_config(), quote_ident(n.nspname) || '.' || quote_ident(c.cfgname) \
           FROM pg_ts_config c JOIN pg_namespace n ON n.oid = c.cfgnamespace \
          WHERE c.oid = $1::text::regconfig",
    )
    .bind(config)
    .fetch_one(&mut *conn)
    .await;
    let (same, wanted): (bool, String) = match named {
        Ok(named) => named,
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42704") => {
            return Err(PersistError::invalid(
                "search_config",
                format!("{config:?} is not a text search configuration of this database (see `\\dF` in psql)"),
            ));
        }
        Err(e) => return Err(map(e)),
    };
    if !same {
        // Another configuration: the schema's is replaced, and the index, made with the old
        // one, goes (and is built again below).
        let replace = format!(
            "CREATE OR REPLACE FUNCTION persist_search_config() RETURNS regconfig \
             LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT {}::regconfig $$",
            quote_literal(&wanted)
        );
        sqlx::query("DROP INDEX CONCURRENTLY IF EXISTS messages_search").execute(&mut *conn).await.map_err(map)?;
        sqlx::raw_sql(AssertSqlSafe(replace)).execute(&mut *conn).await.map_err(map)?;
    }
    let invalid: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indexrelid = to_regclass('messages_search') AND NOT i.indisvalid)",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(map)?;
    if invalid {
        sqlx::query("DROP INDEX CONCURRENTLY IF EXISTS messages_search").execute(&mut *conn).await.map_err(map)?;
    }
    let create = format!(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_search ON messages \
         USING gin (persist_search_vector({}::regconfig, content)) WHERE status <> 'reserved'",
        quote_literal(&wanted)
    );
    sqlx::query(AssertSqlSafe(create)).execute(&mut *conn).await.map_err(map)?;
    Ok(wanted)
}

/// The schema's text search configuration, schema-qualified.
pub(crate) async fn schema_config(conn: &mut PgConnection) -> Result<String> {
    sqlx::query_scalar(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.cfgname) \
           FROM pg_ts_config c JOIN pg_namespace n ON n.oid = c.cfgnamespace WHERE c.oid = persist_search_config()",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| map_sqlx("reading the search configuration", e))
}

/// `text` as an SQL string literal.
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
