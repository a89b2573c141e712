//! `read_memory` (see `persist::working`): a working memory document, read on a pooled
//! connection.

use persist_core::working::{ReadMemory, WorkingMemory};
use persist_core::{Metadata, PersistError, Result, Timestamp};
use sqlx::{Row, SqlitePool};

use crate::error::map_sqlx;
use crate::rows::tenant_key;

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
