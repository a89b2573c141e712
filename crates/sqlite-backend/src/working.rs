//! `read_memory` and `list_memories` (see `persist::working`): working memory documents, read on
//! a pooled connection.

use persist_core::working::{ListMemories, MemoryCursor, ReadMemory, WorkingMemory};
use persist_core::{Metadata, Page, PersistError, ResourceId, Result, Timestamp};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use crate::error::map_sqlx;
use crate::rows::{self, tenant_key};

/// The columns [`memory`] reads.
macro_rules! columns {
    () => {
        "tenant, resource, document, version, created_at, updated_at"
    };
}

/// The document of a row of `columns!()`.
fn memory(row: &SqliteRow) -> Result<WorkingMemory> {
    let failed = |e| map_sqlx("reading the working memory", e);
    let corrupt = |e: &dyn std::fmt::Display| PersistError::backend("reading the working memory", e.to_string());
    let document: Metadata = serde_json::from_str(row.try_get("document").map_err(failed)?).map_err(|e| corrupt(&e))?;
    let resource = ResourceId::new(row.try_get::<&str, _>("resource").map_err(failed)?).map_err(|e| corrupt(&e))?;
    let version = u64::try_from(row.try_get::<i64, _>("version").map_err(failed)?).unwrap_or_default();
    let at = |column: &str| row.try_get::<i64, _>(column).map(Timestamp::from_micros).map_err(failed);
    Ok(WorkingMemory::new(rows::tenant(row)?, resource, document, version, at("created_at")?, at("updated_at")?))
}

pub(crate) async fn read_memory(pool: &SqlitePool, query: &ReadMemory) -> Result<Option<WorkingMemory>> {
    let sql = concat!("SELECT ", columns!(), " FROM persist_working_memory WHERE tenant = ?1 AND resource = ?2");
    let row = sqlx::query(sql)
        .bind(tenant_key(query.tenant()))
        .bind(query.resource.as_str())
        .fetch_optional(pool)
        .await
        .map_err(|e| map_sqlx("reading the working memory", e))?;
    row.as_ref().map(memory).transpose()
}

/// A page of documents: tenant `?1` (NULL across tenants), after the cursor `?2`/`?3` (tenant
/// key, resource), by tenant then resource (bytewise: SQLite's default collation).
pub(crate) async fn memories(pool: &SqlitePool, query: &ListMemories) -> Result<Page<WorkingMemory, MemoryCursor>> {
    query.validate()?;
    let cursor = query.cursor.as_ref();
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM persist_working_memory \
          WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR (tenant, resource) > (?2, ?3)) \
          ORDER BY tenant, resource LIMIT +?4"
    );
    let found = sqlx::query(sql)
        .bind((!query.across_tenants).then(|| tenant_key(query.tenant())))
        .bind(cursor.map(|c| tenant_key(c.tenant())))
        .bind(cursor.map(|c| c.resource().as_str()))
        .bind(i64::from(query.limit) + 1)
        .fetch_all(pool)
        .await
        .map_err(|e| map_sqlx("listing working memory", e))?;
    Ok(query.page(found.iter().map(memory).collect::<Result<_>>()?))
}
