//! `write_memory`: a working memory document changed by the writer, inside its transaction (the
//! table of version 20).

use persist_core::working::{WorkingMemory, WriteMemory};
use persist_core::{Metadata, Timestamp};
use sqlx::{Row, SqliteConnection};

use super::{OpResult, aborted, refused, sql};
use crate::rows::{json, tenant_key};

pub(super) async fn write_memory(conn: &mut SqliteConnection, write: &WriteMemory) -> OpResult<WorkingMemory> {
    let tenant = tenant_key(write.tenant());
    let stored = sqlx::query(
        "SELECT document, version, created_at FROM persist_working_memory WHERE tenant = ?1 AND resource = ?2",
    )
    .bind(tenant)
    .bind(write.resource.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(sql("reading the working memory"))?;
    let (document, version, created_at) = match &stored {
        Some(row) => {
            let text: &str = row.try_get("document").map_err(sql("reading the working memory"))?;
            let document: Metadata = serde_json::from_str(text)
                .map_err(|e| aborted(persist_core::PersistError::backend("reading the working memory", e)))?;
            let version: i64 = row.try_get("version").map_err(sql("reading the working memory"))?;
            let created_at: i64 = row.try_get("created_at").map_err(sql("reading the working memory"))?;
            (Some(document), u64::try_from(version).unwrap_or_default(), Some(created_at))
        }
        None => (None, 0, None),
    };
    let (written, version) = write.apply(document.as_ref(), version).map_err(refused)?;
    let now = Timestamp::now();
    let created_at = created_at.map_or(now, Timestamp::from_micros);
    sqlx::query(
        "INSERT INTO persist_working_memory (tenant, resource, document, version, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (tenant, resource) DO UPDATE \
            SET document = excluded.document, version = excluded.version, updated_at = excluded.updated_at",
    )
    .bind(tenant)
    .bind(write.resource.as_str())
    .bind(json(&written).map_err(aborted)?)
    .bind(i64::try_from(version).unwrap_or(i64::MAX))
    .bind(created_at.as_micros())
    .bind(now.as_micros())
    .execute(&mut *conn)
    .await
    .map_err(sql("writing the working memory"))?;
    let tenant = write.tenant().cloned();
    Ok(WorkingMemory::new(tenant, write.resource.clone(), written, version, created_at, now))
}
