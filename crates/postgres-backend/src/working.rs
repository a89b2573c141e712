//! Working memory (see `persist::working`): a document per tenant and resource (the table of
//! version 16). A write is a short transaction: the row made if absent (at version 0, which no
//! read shows), locked, changed as the core says, written back.

use persist_core::working::{ListMemories, MemoryCursor, ReadMemory, WorkingMemory, WriteMemory};
use persist_core::{Metadata, Page, PersistError, ResourceId, Result, Timestamp};
use sqlx::postgres::PgRow;
use sqlx::{Acquire, PgConnection, Row};

use crate::error::map_sqlx;
use crate::rows::{self, json_text, tenant_key};

fn parse(text: &str) -> Result<Metadata> {
    serde_json::from_str(text).map_err(|e| PersistError::backend("reading the working memory", e))
}

pub(crate) async fn write_memory(conn: &mut PgConnection, write: &WriteMemory) -> Result<WorkingMemory> {
    let tenant = tenant_key(write.tenant());
    let failed = |e| map_sqlx("writing the working memory", e);
    let now = Timestamp::now();
    let mut tx = conn.begin().await.map_err(failed)?;
    sqlx::query(
        "INSERT INTO persist_working_memory (tenant, resource, document, version, created_at, updated_at) \
         VALUES ($1, $2, '{}', 0, $3, $3) ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(write.resource.as_str())
    .bind(now.as_micros())
    .execute(&mut *tx)
    .await
    .map_err(failed)?;
    let row = sqlx::query(
        "SELECT document, version, created_at FROM persist_working_memory \
          WHERE tenant = $1 AND resource = $2 FOR UPDATE",
    )
    .bind(tenant)
    .bind(write.resource.as_str())
    .fetch_one(&mut *tx)
    .await
    .map_err(failed)?;
    let version = u64::try_from(row.try_get::<i64, _>("version").map_err(failed)?).unwrap_or_default();
    let stored = if version == 0 { None } else { Some(parse(row.try_get("document").map_err(failed)?)?) };
    let created_at =
        if version == 0 { now } else { Timestamp::from_micros(row.try_get("created_at").map_err(failed)?) };
    // Refused: the transaction rolls back, and a row it made goes with it.
    let (document, version) = write.apply(stored.as_ref(), version)?;
    sqlx::query(
        "UPDATE persist_working_memory SET document = $3, version = $4, created_at = $5, updated_at = $6 \
          WHERE tenant = $1 AND resource = $2",
    )
    .bind(tenant)
    .bind(write.resource.as_str())
    .bind(json_text(&document)?)
    .bind(i64::try_from(version).unwrap_or(i64::MAX))
    .bind(created_at.as_micros())
    .bind(now.as_micros())
    .execute(&mut *tx)
    .await
    .map_err(failed)?;
    tx.commit().await.map_err(failed)?;
    let tenant = write.tenant().cloned();
    Ok(WorkingMemory::new(tenant, write.resource.clone(), document, version, created_at, now))
}

/// The document of a row of `tenant, resource, document, version, created_at, updated_at`.
fn memory(row: &PgRow) -> Result<WorkingMemory> {
    let failed = |e| map_sqlx("reading the working memory", e);
    let document = parse(row.try_get("document").map_err(failed)?)?;
    let resource = ResourceId::new(row.try_get::<&str, _>("resource").map_err(failed)?)
        .map_err(|e| PersistError::backend("reading a resource id", e))?;
    let version = u64::try_from(row.try_get::<i64, _>("version").map_err(failed)?).unwrap_or_default();
    let at = |column: &str| row.try_get::<i64, _>(column).map(Timestamp::from_micros).map_err(failed);
    Ok(WorkingMemory::new(rows::tenant(row)?, resource, document, version, at("created_at")?, at("updated_at")?))
}

pub(crate) async fn read_memory(conn: &mut PgConnection, query: &ReadMemory) -> Result<Option<WorkingMemory>> {
    let row = sqlx::query(
        "SELECT tenant, resource, document, version, created_at, updated_at FROM persist_working_memory \
          WHERE tenant = $1 AND resource = $2 AND version > 0",
    )
    .bind(tenant_key(query.tenant()))
    .bind(query.resource.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| map_sqlx("reading the working memory", e))?;
    row.as_ref().map(memory).transpose()
}

/// A page of documents: tenant `$1` (NULL across tenants), after the cursor `$2`/`$3` (tenant key,
/// resource), by tenant then resource, bytewise.
pub(crate) async fn memories(
    conn: &mut PgConnection,
    query: &ListMemories,
) -> Result<Page<WorkingMemory, MemoryCursor>> {
    query.validate()?;
    let cursor = query.cursor.as_ref();
    let found = sqlx::query(
        "SELECT tenant, resource, document, version, created_at, updated_at FROM persist_working_memory \
          WHERE version > 0 AND ($1::text IS NULL OR tenant = $1) \
            AND ($2::text IS NULL OR (tenant COLLATE \"C\", resource COLLATE \"C\") > ($2, $3::text)) \
          ORDER BY tenant COLLATE \"C\", resource COLLATE \"C\" LIMIT $4",
    )
    .bind((!query.across_tenants).then(|| tenant_key(query.tenant())))
    .bind(cursor.map(|c| tenant_key(c.tenant())))
    .bind(cursor.map(|c| c.resource().as_str()))
    .bind(i64::from(query.limit) + 1)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| map_sqlx("listing working memory", e))?;
    Ok(query.page(found.iter().map(memory).collect::<Result<_>>()?))
}
