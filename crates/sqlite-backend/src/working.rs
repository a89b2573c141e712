//! `read_memory` (see `persist::working`): a working memory document, read on a pooled
//! connection.

use persist_core::working::{ListMemories, MemoryCursor, ReadMemory, WorkingMemory};
use persist_core::{Metadata, Page, PersistError, Result, Timestamp};
use sqlx::{Row, SqlitePool};

use crate::error::map_sqlx;
use crate::rows::{self, tenant_key};

pub(crate) async fn read_memory(pool: &SqlitePool, query: &ReadMemory) -> Result<Option<WorkingMemory>> {
    let failed = |e| map_sqlx("reading the working memory", e);
    let row = sqlx::query(
        "SELECT document, version, created_at, updated_at FROM persist_working_memory \
          WHERE tenant = ?1 AND resource = ?2",
    )
    .bind(tenant_key(query.tenant()))
    .bind(query.resource.as_str())
    .fetch_optional(pool)
    .await
    .map_err(failed)?;
    let Some(row) = row else { return Ok(None) };
    let text: &str = row.try_get("document").map_err(failed)?;
    let document: Metadata =
        serde_json::from_str(text).map_err(|e| PersistError::backend("reading the working memory", e))?;
    let version = u64::try_from(row.try_get::<i64, _>("version").map_err(failed)?).unwrap_or_default();
    let at = |column: &str| row.try_get::<i64, _>(column).map(Timestamp::from_micros).map_err(failed);
    let (created_at, updated_at) = (at("created_at")?, at("updated_at")?);
    let tenant = query.tenant().cloned();
    Ok(Some(WorkingMemory::new(tenant, query.resource.clone(), document, version, created_at, updated_at)))
}

/// A page of documents: tenant `?1` (NULL across tenants), after the cursor `?2`/`?3` (tenant
/// key, resource), by tenant then resource (bytewise: SQLite's default collation).
pub(crate) async fn memories(pool: &SqlitePool, query: &ListMemories) -> Result<Page<WorkingMemory, MemoryCursor>> {
    query.validate()?;
    let failed = |e| map_sqlx("listing working memory", e);
    let cursor = query.cursor.as_ref();
    let found = sqlx::query(
        "SELECT tenant, resource, document, version, created_at, updated_at FROM persist_working_memory \
          WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR (tenant, resource) > (?2, ?3)) \
          ORDER BY tenant, resource LIMIT ?4",
    )
    .bind((!query.across_tenants).then(|| tenant_key(query.tenant())))
    .bind(cursor.map(|c| tenant_key(c.tenant())))
    .bind(cursor.map(|c| c.resource().as_str()))
    .bind(i64::from(query.limit) + 1)
    .fetch_all(pool)
    .await
    .map_err(failed)?;
    let mut items = Vec::with_capacity(found.len());
    for row in &found {
        let text: &str = row.try_get("document").map_err(failed)?;
        let document: Metadata =
            serde_json::from_str(text).map_err(|e| PersistError::backend("reading the working memory", e))?;
        let resource: &str = row.try_get("resource").map_err(failed)?;
        let resource =
            persist_core::ResourceId::new(resource).map_err(|e| PersistError::backend("reading a resource id", e))?;
        let version = u64::try_from(row.try_get::<i64, _>("version").map_err(failed)?).unwrap_or_default();
        let at = |column: &str| row.try_get::<i64, _>(column).map(Timestamp::from_micros).map_err(failed);
        items.push(WorkingMemory::new(
            rows::tenant(row)?,
            resource,
            document,
            version,
            at("created_at")?,
            at("updated_at")?,
        ));
    }
    Ok(query.page(items))
}
