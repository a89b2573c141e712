//! `write_records` (see `persist::records`): every change applied by the writer, in order,
//! inside its transaction (the table of version 25).

use persist_core::Timestamp;
use persist_core::records::{RecordWrite, RecordsWritten, WriteRecords};
use sqlx::SqliteConnection;

use super::{OpResult, sql};
use crate::rows::tenant_key;

pub(super) async fn write_records(conn: &mut SqliteConnection, write: &WriteRecords) -> OpResult<RecordsWritten> {
    let tenant = tenant_key(write.tenant());
    let now = Timestamp::now().as_micros();
    let mut changed = 0;
    for change in &write.writes {
        let done = match change {
            RecordWrite::Put { space, key, value, expires_at } => sqlx::query(
                "INSERT INTO persist_records (tenant, space, key, value, expires_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (tenant, space, key) DO UPDATE \
                    SET value = excluded.value, expires_at = excluded.expires_at, updated_at = excluded.updated_at",
            )
            .bind(tenant)
            .bind(space.as_str())
            .bind(key.as_str())
            .bind(value.as_slice())
            .bind(expires_at.map(Timestamp::as_micros))
            .bind(now),
            // An expired record is written over, as if it were not there.
            RecordWrite::Insert { space, key, value, expires_at } => sqlx::query(
                "INSERT INTO persist_records (tenant, space, key, value, expires_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (tenant, space, key) DO UPDATE \
                    SET value = excluded.value, expires_at = excluded.expires_at, updated_at = excluded.updated_at \
                  WHERE persist_records.expires_at IS NOT NULL AND persist_records.expires_at <= ?6",
            )
            .bind(tenant)
            .bind(space.as_str())
            .bind(key.as_str())
            .bind(value.as_slice())
            .bind(expires_at.map(Timestamp::as_micros))
            .bind(now),
            RecordWrite::Touch { space, key, expires_at } => sqlx::query(
                "UPDATE persist_records SET expires_at = ?4, updated_at = ?5 \
                  WHERE tenant = ?1 AND space = ?2 AND key = ?3 AND (expires_at IS NULL OR expires_at > ?5)",
            )
            .bind(tenant)
            .bind(space.as_str())
            .bind(key.as_str())
            .bind(expires_at.map(Timestamp::as_micros))
            .bind(now),
            RecordWrite::Delete { space, key } => {
                sqlx::query("DELETE FROM persist_records WHERE tenant = ?1 AND space = ?2 AND key = ?3")
                    .bind(tenant)
                    .bind(space.as_str())
                    .bind(key.as_str())
            }
            RecordWrite::DeleteSpaces { prefix } => sqlx::query(
                "DELETE FROM persist_records WHERE tenant = ?1 AND space >= ?2 AND substr(space, 1, length(?2)) = ?2",
            )
            .bind(tenant)
            .bind(prefix.as_str()),
            RecordWrite::Sweep => sqlx::query(
                "DELETE FROM persist_records WHERE tenant = ?1 AND expires_at IS NOT NULL AND expires_at <= ?2",
            )
            .bind(tenant)
            .bind(now),
            _ => continue,
        };
        changed += done.execute(&mut *conn).await.map_err(sql("writing records"))?.rows_affected();
    }
    Ok(RecordsWritten::new(changed))
}
