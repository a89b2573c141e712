//! Full-text search (see `persist::search`): the GIN index over `persist_search_vector(content)`
//! (the functions of version 10), read here, built, dropped or reconfigured as an instance
//! connects.

use persist_core::search::{Search, SearchCursor, SearchHit, SearchQuery};
use persist_core::{Page, PersistError, Result};
use sqlx::{AssertSqlSafe, PgConnection};

use crate::error::map_sqlx;
use crate::rows::{self, FilterBinds, signed, tenant_key};

/// A search: the index finds the matches (the condition is the index's expression, `{config}`
/// written out as the index was made), each checked against the filters: `$2` tenant (NULL
/// across tenants), `$3` thread, `$4`/`$5` the time range, `$6` the roles, `$7` the thread
/// filter, `$8`–`$11` the cursor (created_at, thread, tenant, seq), `$12` the fetch limit. Each
/// parameter is named with its type, so the server knows it whether it is used or not.
const SEARCH_SQL: &str = "\
    SELECT m.tenant, m.thread_id, m.message_id, m.seq, m.parent_seq, m.role, m.content::text AS content, m.content_form, \
           m.metadata::text AS metadata, m.status, m.version, m.idempotency_key, m.created_at, m.updated_at \
      FROM messages m \
     WHERE persist_search_vector({config}, m.content) @@ to_tsquery({config}, $1::text) \
       AND m.status <> 'reserved' \
       AND ($2::text IS NULL OR m.tenant = $2) AND ($3::text IS NULL OR m.thread_id = $3) \
       AND ($4::bigint IS NULL OR m.created_at >= $4) AND ($5::bigint IS NULL OR m.created_at < $5) \
       AND ($6::text[] IS NULL OR m.role = ANY ($6)) \
       AND ($8::bigint IS NULL \
            OR (m.created_at, m.thread_id COLLATE \"C\", m.tenant COLLATE \"C\", m.seq) \
               < ($8, $9::text, $10::text, $11::bigint)) \
       AND EXISTS (SELECT 1 FROM threads t \
                    WHERE t.tenant = m.tenant AND t.thread_id = m.thread_id AND t.deleted_at IS NULL \
                      AND ($7::jsonb IS NULL OR NOT EXISTS (SELECT 1 FROM jsonb_each($7::jsonb) f \
                                    WHERE (t.metadata -> f.key) IS DISTINCT FROM f.value))) \
     ORDER BY m.created_at DESC, m.thread_id COLLATE \"C\" DESC, m.tenant COLLATE \"C\" DESC, m.seq DESC \
     LIMIT $12";

/// The search statement of a store whose text search configuration is the one of OID `config`
/// (digits only: nothing of a name reaches the statement's text).
pub(crate) fn search_sql(config: u32) -> String {
    SEARCH_SQL.replace("{config}", &format!("'{config}'::regconfig"))
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
    let filter = FilterBinds::of(&query.filter)?;
    let cursor = query.cursor.as_ref();
    let rows = sqlx::query(AssertSqlSafe(sql.to_owned()))
        .bind(tsquery(&parsed))
        .bind((!query.is_across_tenants()).then(|| tenant_key(query.tenant())))
        .bind(query.thread_id().map(|t| t.as_str()))
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.roles)
        .bind(filter.thread)
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

/// The schema's search settings: whether the index is kept, and the OID of its text search
/// configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SearchState {
    pub(crate) enabled: bool,
    pub(crate) config: u32,
}

/// What an instance asks of the schema's search settings (`None`: as the schema has them).
#[derive(Debug, Clone, Default)]
pub(crate) struct SearchWanted {
    pub(crate) index: Option<bool>,
    pub(crate) config: Option<String>,
}

async fn read_state(conn: &mut PgConnection) -> Result<SearchState> {
    let (enabled, config): (bool, i64) =
        sqlx::query_as("SELECT enabled, config::oid::bigint FROM persist_search_state")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| map_sqlx("reading the search settings", e))?;
    Ok(SearchState { enabled, config: u32::try_from(config).unwrap_or_default() })
}

/// The OID of the text search configuration `name`.
///
/// # Errors
///
/// `InvalidInput` naming `search_config` for a name the database does not know.
async fn config_oid(conn: &mut PgConnection, name: &str) -> Result<u32> {
    match sqlx::query_scalar::<_, i64>("SELECT $1::text::regconfig::oid::bigint").bind(name).fetch_one(&mut *conn).await
    {
        Ok(oid) => Ok(u32::try_from(oid).unwrap_or_default()),
        Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("42704" | "42602" | "3F000")) => {
            Err(PersistError::invalid(
                "search_config",
                format!("{name:?} is not a text search configuration of this database (see `\\dF` in psql)"),
            ))
        }
        Err(e) => Err(map_sqlx("reading the search configuration", e)),
    }
}

/// The schema's search settings as this instance leaves them, as it connects. An instance that
/// does not `migrate` changes nothing: it reads them, and refuses settings of its own that
/// differ. One that does applies what it asks (`None`: the schema's setting stays) and makes the
/// index match: dropped when off or made with another configuration, built when on and missing
/// or left invalid by a build that failed. Under an advisory lock per schema (instances
/// connecting together take turns, so an invalid index seen here is a failed build, not
/// another's under way), without the connection's time-outs (a build on a large table takes as
/// long as it takes; writes go on meanwhile, `CONCURRENTLY`).
pub(crate) async fn prepare(conn: &mut PgConnection, wanted: &SearchWanted, migrate: bool) -> Result<SearchState> {
    let state = read_state(conn).await?;
    let config = match &wanted.config {
        Some(name) => config_oid(conn, name).await?,
        None => state.config,
    };
    let target = SearchState { enabled: wanted.index.unwrap_or(state.enabled), config };
    if !migrate {
        if target != state {
            return Err(PersistError::invalid(
                "search_config",
                "differs from the schema's search settings, which an instance connecting with `migrate(false)` \
                 does not change: connect one that migrates with these settings first",
            ));
        }
        return Ok(state);
    }
    crate::ddl::under_schema_lock(conn, "persist_search", async |conn| index_as(conn, target).await).await?;
    Ok(target)
}

/// Under the lock: the settings written, the index made to match `target`.
async fn index_as(conn: &mut PgConnection, target: SearchState) -> Result<()> {
    let map = |e| map_sqlx("preparing the search index", e);
    // Read again under the lock: another instance may have changed them meanwhile.
    let state = read_state(conn).await?;
    if state != target {
        sqlx::query("UPDATE persist_search_state SET enabled = $1, config = $2::bigint::oid::regconfig")
            .bind(target.enabled)
            .bind(i64::from(target.config))
            .execute(&mut *conn)
            .await
            .map_err(map)?;
    }
    let invalid: Option<bool> = sqlx::query_scalar(
        "SELECT NOT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass('messages_search')",
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(map)?;
    if invalid.is_some() && (!target.enabled || invalid == Some(true) || state.config != target.config) {
        crate::ddl::drop_index(conn, "messages_search").await?;
    }
    if target.enabled {
        let definition = format!(
            "IF NOT EXISTS messages_search ON messages \
             USING gin (persist_search_vector('{}'::regconfig, content)) WHERE status <> 'reserved'",
            target.config
        );
        crate::ddl::create_index(conn, "messages", &definition).await?;
    }
    Ok(())
}
