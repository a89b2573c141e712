//! `write_records` (see `persist::records`): every change applied in order, in one transaction
//! (the table of version 25): by the writer, or on the caller's lane ([`records_on_lane`]) when
//! nobody else is writing. Both bind the same statements, made once by [`statement`].

use persist_core::records::{RecordWrite, RecordsWritten, WriteRecords};
use persist_core::{PersistError, PersistResult, Timestamp};
use sqlx::SqliteConnection;

use super::insert::OnLane;
use super::{Answer, OpResult, sql};
use crate::rows::tenant_key;

/// What a statement binds: text, bytes, or an integer that may be NULL.
enum Value<'a> {
    Text(&'a str),
    Bytes(&'a [u8]),
    Int(Option<i64>),
}

/// The statement of one change and what it binds, in the order of its `?N`s; `None` for a change
/// this build does not know.
fn statement<'a>(change: &'a RecordWrite, tenant: &'a str, now: i64) -> Option<(&'static str, Vec<Value<'a>>)> {
    use Value::{Bytes, Int, Text};
    let at = |at: &Option<Timestamp>| Int(at.map(Timestamp::as_micros));
    Some(match change {
        RecordWrite::Put { space, key, value, expires_at } => (
            "INSERT INTO persist_records (tenant, space, key, value, expires_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (tenant, space, key) DO UPDATE \
                SET value = excluded.value, expires_at = excluded.expires_at, updated_at = excluded.updated_at",
            vec![Text(tenant), Text(space), Text(key), Bytes(value), at(expires_at), Int(Some(now))],
        ),
        // An expired record is written over, as if it were not there.
        RecordWrite::Insert { space, key, value, expires_at } => (
            "INSERT INTO persist_records (tenant, space, key, value, expires_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (tenant, space, key) DO UPDATE \
                SET value = excluded.value, expires_at = excluded.expires_at, updated_at = excluded.updated_at \
              WHERE persist_records.expires_at IS NOT NULL AND persist_records.expires_at <= ?6",
            vec![Text(tenant), Text(space), Text(key), Bytes(value), at(expires_at), Int(Some(now))],
        ),
        RecordWrite::Touch { space, key, expires_at } => (
            "UPDATE persist_records SET expires_at = ?4, updated_at = ?5 \
              WHERE tenant = ?1 AND space = ?2 AND key = ?3 AND (expires_at IS NULL OR expires_at > ?5)",
            vec![Text(tenant), Text(space), Text(key), at(expires_at), Int(Some(now))],
        ),
        RecordWrite::Delete { space, key } => (
            "DELETE FROM persist_records WHERE tenant = ?1 AND space = ?2 AND key = ?3",
            vec![Text(tenant), Text(space), Text(key)],
        ),
        RecordWrite::DeleteSpaces { prefix } => (
            "DELETE FROM persist_records WHERE tenant = ?1 AND space >= ?2 AND substr(space, 1, length(?2)) = ?2",
            vec![Text(tenant), Text(prefix)],
        ),
        RecordWrite::Sweep => (
            "DELETE FROM persist_records WHERE tenant = ?1 AND expires_at IS NOT NULL AND expires_at <= ?2",
            vec![Text(tenant), Int(Some(now))],
        ),
        _ => return None,
    })
}

fn unknown() -> PersistError {
    PersistError::Unsupported { what: "a change of records this build does not know".into() }
}

pub(super) async fn write_records(conn: &mut SqliteConnection, write: &WriteRecords) -> OpResult<RecordsWritten> {
    let tenant = tenant_key(write.tenant());
    let now = Timestamp::now().as_micros();
    let mut changed = 0;
    for change in &write.writes {
        let (text, values) = statement(change, tenant, now).ok_or_else(|| super::aborted(unknown()))?;
        let mut query = sqlx::query(text);
        for value in values {
            query = match value {
                Value::Text(text) => query.bind(text),
                Value::Bytes(bytes) => query.bind(bytes),
                Value::Int(int) => query.bind(int),
            };
        }
        changed += query.execute(&mut *conn).await.map_err(sql("writing records"))?.rows_affected();
    }
    Ok(RecordsWritten::new(changed))
}

/// Applies `write` on the caller's lane (`crate::lane`) in one `BEGIN IMMEDIATE` … `COMMIT`; a
/// request that is not valid is answered, any failure of the database rolled back and
/// [`Declined`](OnLane::Declined): the writer applies it then.
pub(crate) fn records_on_lane(conn: &rusqlite::Connection, write: &WriteRecords) -> OnLane {
    if let Err(error) = write.validate() {
        return OnLane::Answered(Err(error));
    }
    let tenant = tenant_key(write.tenant());
    let now = Timestamp::now().as_micros();
    let applied = (|| -> rusqlite::Result<Option<u64>> {
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute(())?;
        let mut changed = 0;
        for change in &write.writes {
            let Some((text, values)) = statement(change, tenant, now) else { return Ok(None) };
            let mut statement = conn.prepare_cached(text)?;
            for (index, value) in values.iter().enumerate() {
                match value {
                    Value::Text(text) => statement.raw_bind_parameter(index + 1, text)?,
                    Value::Bytes(bytes) => statement.raw_bind_parameter(index + 1, bytes)?,
                    Value::Int(int) => statement.raw_bind_parameter(index + 1, int)?,
                }
            }
            changed += statement.raw_execute()? as u64;
        }
        Ok(Some(changed))
    })();
    let committed = match applied {
        Ok(Some(changed)) => conn.prepare_cached("COMMIT").and_then(|mut commit| commit.execute(())).map(|_| changed),
        Ok(None) | Err(_) => {
            let _ = conn.execute_batch("ROLLBACK");
            return OnLane::Declined;
        }
    };
    match committed {
        Ok(changed) => {
            OnLane::Answered(Ok(Answer::Persist(PersistResult::RecordsWritten(RecordsWritten::new(changed)))))
        }
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            if crate::error::busy(&error) {
                return OnLane::Declined;
            }
            // Whether it was made is not known for sure; the caller is told, as the writer would.
            OnLane::Answered(Err(crate::error::map_rusqlite("committing", error)))
        }
    }
}
