//! pgvector's HNSW index for approximate `nearest` (opt-in:
//! [`pgvector_hnsw`](crate::PostgresBackendBuilder::pgvector_hnsw)): prepared as an instance
//! connects, walked by `vectors::nearest`.
//!
//! Nothing is stored twice. The index is an expression index over the `bytea` vectors
//! `persist_embeddings` already holds: `persist_vector_of(bytea)` reads their little-endian
//! `f32`s into pgvector's `vector` in SQL (sign, exponent and fraction: exact), one partial index
//! per dimension count (`octet_length`). Every write path (add, turn, embed, restore) keeps it in
//! its own transaction, and a deleted row leaves it with the row, so no write path knows of it.
//!
//! The vectors are unit length (persist normalizes them), so the index orders by inner product
//! (`vector_ip_ops`, `<#>`), which ranks as cosine does at less cost.

use std::collections::BTreeSet;

use persist_core::{PersistError, Result};
use sqlx::{AssertSqlSafe, PgConnection};

use crate::ddl;
use crate::error::map_sqlx;

/// The default width of the walk ([`pgvector_ef_search`](crate::PostgresBackendBuilder::pgvector_ef_search)).
pub(crate) const DEFAULT_EF_SEARCH: u32 = 100;

/// The most dimensions pgvector's HNSW index takes for `vector`.
const MAX_DIMENSIONS: usize = 2_000;

/// The widest walk pgvector takes (`hnsw.ef_search`).
const MAX_EF_SEARCH: u32 = 1_000;

/// The oldest pgvector with iterative scans: a walk that finds rows outside the query's scope
/// (another tenant's, another thread's) goes on until it has found enough inside it.
const OLDEST: (u32, u32) = (0, 8);

/// What an instance asks for.
#[derive(Debug)]
pub(crate) struct Wanted {
    pub(crate) dimensions: Vec<usize>,
    pub(crate) ef_search: u32,
}

/// What an instance walks: the dimension counts indexed, the walk's width, and the schema
/// pgvector's type and operators are in (quoted).
#[derive(Debug)]
pub(crate) struct Walk {
    dimensions: BTreeSet<usize>,
    ef_search: u32,
    extension: String,
}

impl Walk {
    /// Whether vectors of `dimensions` are indexed.
    pub(crate) fn covers(&self, dimensions: usize) -> bool {
        self.dimensions.contains(&dimensions)
    }

    /// The settings of the walk's transaction for `limit` hits: the walk's width (at least
    /// `limit`), the candidates the graph's search keeps, of which the nearest `limit` in scope
    /// are handed on; pgvector's iterative scan, which goes on past candidates outside the
    /// scope until the statement has its rows; and no sorting, so the planner walks the graph
    /// even where its statistics think the scope small (it otherwise sorted the scope through
    /// the function, far slower).
    ///
    /// Only `limit` rows are handed on, not the width: PostgreSQL computes the order's value
    /// of every row it hands on, which reads the row's vector through `persist_vector_of` once
    /// more (about 0.4 ms a 384-dimension vector), where the graph's own distances cost
    /// microseconds. The graph ranks its candidates by the same numbers exactly.
    pub(crate) fn settings(&self, limit: u32) -> String {
        format!(
            "SET LOCAL hnsw.ef_search = {}; SET LOCAL hnsw.iterative_scan = relaxed_order; SET LOCAL enable_sort = off",
            self.ef_search.max(limit).min(MAX_EF_SEARCH)
        )
    }

    /// What ends the scan's statement for a walk over vectors of `dimensions`: the index's
    /// condition, its order against the query `$9` (its text, `[x,y,…]`), and the limit `$10`.
    pub(crate) fn order(&self, dimensions: usize) -> String {
        let ext = &self.extension;
        format!(
            " AND octet_length(e.vector) = {bytes} \
             ORDER BY persist_vector_of(e.vector)::{ext}.vector({dimensions}) \
                      OPERATOR({ext}.<#>) $9::text::{ext}.vector({dimensions}) \
             LIMIT $10",
            bytes = dimensions * 4
        )
    }
}

/// The query's text as pgvector reads it: each `f32` as Rust writes it, which reads back exact.
pub(crate) fn vector_text(vector: &[f32]) -> String {
    let parts: Vec<String> = vector.iter().map(f32::to_string).collect();
    format!("[{}]", parts.join(","))
}

/// The index of vectors of `dimensions`.
fn index_name(dimensions: usize) -> String {
    format!("persist_embeddings_hnsw_{dimensions}")
}

/// `persist_vector_of(bytea)`: the bytes of the `f32`s (little-endian) as a `vector`, decoded
/// from sign, exponent and fraction (subnormals included). Persist's vectors are finite; an
/// infinity or NaN would read as 0 rather than fail the write that indexes it. Costly to the
/// planner (`COST`), so that it walks the index rather than compute it for every row.
fn vector_of_sql(ext: &str) -> String {
    format!(
        "CREATE FUNCTION persist_vector_of(bytes bytea) RETURNS {ext}.vector \
         LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE COST 10000 AS $$ \
           SELECT array_agg(((CASE WHEN x.e = 255 THEN 0::float8 \
                                   WHEN x.e = 0 THEN x.f * 2::float8 ^ -149 \
                                   ELSE (x.f + 8388608) * 2::float8 ^ (x.e - 150) END) \
                             * (1 - 2 * x.s))::real ORDER BY x.i)::{ext}.vector \
             FROM (SELECT w.i, (w.b >> 31) & 1 AS s, (w.b >> 23) & 255 AS e, w.b & 8388607 AS f \
                     FROM (SELECT i, get_byte(bytes, 4 * i)::bigint \
                                     | (get_byte(bytes, 4 * i + 1)::bigint << 8) \
                                     | (get_byte(bytes, 4 * i + 2)::bigint << 16) \
                                     | (get_byte(bytes, 4 * i + 3)::bigint << 24) AS b \
                             FROM generate_series(0, octet_length(bytes) / 4 - 1) AS i) w) x \
         $$"
    )
}

/// The index of vectors of `dimensions`, after `CREATE INDEX [CONCURRENTLY]`.
fn index_sql(ext: &str, dimensions: usize) -> String {
    format!(
        "IF NOT EXISTS {name} ON persist_embeddings \
         USING hnsw ((persist_vector_of(vector)::{ext}.vector({dimensions})) {ext}.vector_ip_ops) \
         WHERE octet_length(vector) = {bytes}",
        name = index_name(dimensions),
        bytes = dimensions * 4
    )
}

fn refused(field: &'static str, why: impl Into<String>) -> PersistError {
    PersistError::invalid(field, why.into())
}

/// Readies what `wanted` asks as an instance connects; `None` when it asks for no index.
///
/// An instance that migrates installs pgvector when the server has it and nobody has (`CREATE
/// EXTENSION vector` in `public`, which takes a role allowed to), then the function and the
/// indexes it lacks, under the schema's advisory lock without the connection's time-outs
/// (`CONCURRENTLY` on a table with rows: writes go on while it builds, as long as it takes); an
/// index a build cut short left invalid is built again. One that does not migrate builds
/// nothing, and refuses an index that is not there.
///
/// # Errors
///
/// `InvalidInput` naming `pgvector_hnsw` for a dimension count outside 1 to 2,000, a server
/// without pgvector (or one older than 0.8), or (not migrating) an index missing; naming
/// `pgvector_ef_search` for a width outside 1 to 1,000.
pub(crate) async fn prepare(conn: &mut PgConnection, wanted: &Wanted, migrate: bool) -> Result<Option<Walk>> {
    if !(1..=MAX_EF_SEARCH).contains(&wanted.ef_search) {
        return Err(refused(
            "pgvector_ef_search",
            format!("{}: pgvector walks 1 to {MAX_EF_SEARCH} candidates", wanted.ef_search),
        ));
    }
    if wanted.dimensions.is_empty() {
        return Ok(None);
    }
    if let Some(bad) = wanted.dimensions.iter().find(|d| !(1..=MAX_DIMENSIONS).contains(d)) {
        return Err(refused(
            "pgvector_hnsw",
            format!("{bad} dimensions: pgvector's HNSW index takes 1 to {MAX_DIMENSIONS}"),
        ));
    }
    let dimensions: BTreeSet<usize> = wanted.dimensions.iter().copied().collect();
    let extension = match installed(conn).await? {
        Some(found) => found,
        None if migrate => install(conn).await?,
        None => {
            return Err(refused(
                "pgvector_hnsw",
                "pgvector is not installed in this database, and an instance connecting with `migrate(false)` \
                 installs nothing: connect one that migrates with `pgvector_hnsw` first",
            ));
        }
    };
    let walk = Walk { dimensions, ef_search: wanted.ef_search, extension };
    if migrate {
        ddl::under_schema_lock(conn, "persist_pgvector", async |conn| make(conn, &walk).await).await?;
    } else {
        for dimensions in &walk.dimensions {
            if index_valid(conn, &index_name(*dimensions)).await? != Some(true) {
                return Err(refused(
                    "pgvector_hnsw",
                    format!(
                        "the schema has no index of {dimensions} dimensions, and an instance connecting with \
                         `migrate(false)` builds nothing: connect one that migrates with these dimensions first"
                    ),
                ));
            }
        }
    }
    Ok(Some(walk))
}

/// The schema pgvector is installed in (quoted), checked for iterative scans; `None` when it
/// is not installed.
async fn installed(conn: &mut PgConnection) -> Result<Option<String>> {
    let found: Option<(String, String)> = sqlx::query_as(
        "SELECT quote_ident(n.nspname), e.extversion FROM pg_extension e \
           JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'",
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| map_sqlx("reading pgvector's version", e))?;
    let Some((schema, version)) = found else { return Ok(None) };
    let mut parts = version.split('.').map(|part| part.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) < OLDEST {
        return Err(refused(
            "pgvector_hnsw",
            format!(
                "pgvector {version} is installed; its iterative scans need 0.8 or later (ALTER EXTENSION vector UPDATE)"
            ),
        ));
    }
    Ok(Some(schema))
}

/// Installs pgvector in `public`, if the server has it.
async fn install(conn: &mut PgConnection) -> Result<String> {
    let available: Option<String> =
        sqlx::query_scalar("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| map_sqlx("looking for pgvector", e))?;
    if available.is_none() {
        return Err(refused(
            "pgvector_hnsw",
            "this server has no pgvector (no extension `vector` is available): install it on the server, \
             or connect without `pgvector_hnsw`",
        ));
    }
    let created = ddl::attempt(conn, async |conn| {
        sqlx::raw_sql("CREATE EXTENSION IF NOT EXISTS vector SCHEMA public").execute(conn).await
    })
    .await;
    match (created, installed(conn).await?) {
        // Installed by this instance, or by another one meanwhile (two can race on it).
        (_, Some(schema)) => Ok(schema),
        (Err(error), None) => Err(refused(
            "pgvector_hnsw",
            format!("installing pgvector (CREATE EXTENSION vector, which a role allowed to must run): {error}"),
        )),
        (Ok(_), None) => Err(PersistError::backend("installing pgvector", "the extension is not there after CREATE")),
    }
}

/// Whether index `name` of the schema is valid; `None` when there is none.
async fn index_valid(conn: &mut PgConnection, name: &str) -> Result<Option<bool>> {
    sqlx::query_scalar("SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass($1)")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| map_sqlx("reading the vector index's state", e))
}

/// Under the lock: the function, then each index that is missing or was left invalid.
async fn make(conn: &mut PgConnection, walk: &Walk) -> Result<()> {
    let map = |e| map_sqlx("preparing the vector index", e);
    let function: Option<String> = sqlx::query_scalar("SELECT to_regprocedure('persist_vector_of(bytea)')::text")
        .fetch_one(&mut *conn)
        .await
        .map_err(map)?;
    if function.is_none() {
        sqlx::raw_sql(AssertSqlSafe(vector_of_sql(&walk.extension))).execute(&mut *conn).await.map_err(map)?;
    }
    for dimensions in &walk.dimensions {
        let name = index_name(*dimensions);
        match index_valid(conn, &name).await? {
            Some(true) => continue,
            // A build cut short (its instance stopped): made again.
            Some(false) => ddl::drop_index(conn, &name).await?,
            None => {}
        }
        ddl::create_index(conn, "persist_embeddings", &index_sql(&walk.extension, *dimensions)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_reads_back_exact() {
        let vector = [0.1_f32, -2.5, 1.0, f32::MIN_POSITIVE, 1e-45, 0.0];
        let text = vector_text(&vector);
        let read: Vec<f32> = text.trim_matches(['[', ']']).split(',').map(|x| x.parse().unwrap()).collect();
        assert_eq!(read, vector);
    }

    #[test]
    fn a_walk_is_as_wide_as_asked_and_at_least_the_limit() {
        let walk = Walk { dimensions: BTreeSet::from([384]), ef_search: 40, extension: "public".into() };
        assert!(walk.covers(384) && !walk.covers(768));
        assert!(walk.settings(10).starts_with("SET LOCAL hnsw.ef_search = 40;"));
        assert!(walk.settings(500).starts_with("SET LOCAL hnsw.ef_search = 500;"));
        assert!(walk.order(384).contains("octet_length(e.vector) = 1536"));
    }
}
