//! Idempotency keys that outlive their messages (see `persist::spent`): kept in
//! `persist_spent_keys` (`migrations/0022`) as keyed messages are removed, read by a write that
//! carries one.

use std::time::Duration;

use persist_core::spent::SpentKey;
use persist_core::{IdempotencyKey, PersistError, Timestamp};
pub(super) use persist_sql_kit::Removal;
use persist_sql_kit::SpentRow;
use sqlx::SqliteConnection;

use super::{OpResult, aborted, sql};
use crate::rows::{self, message_columns, packed_id, signed, thread_key};

/// Keeps the keys of the messages of `thread_id` (of `tenant`, as stored) that `removal` is
/// about to take, each until `retention` after `now`, and forgets the thread's keys whose time is
/// up. In the removal's transaction, before it.
pub(super) async fn spend(
    conn: &mut SqliteConnection,
    thread_id: &str,
    tenant: &str,
    removal: Removal<'_>,
    now: Timestamp,
    retention: Duration,
) -> OpResult<()> {
    macro_rules! keyed {
        ($condition:expr) => {
            concat!(
                "SELECT ",
                message_columns!("?1"),
                " FROM persist_messages WHERE thread = ",
                thread_key!("?2", "?1"),
                " AND idempotency_key IS NOT NULL AND ",
                $condition
            )
        };
    }
    let query = match removal {
        Removal::Message(..) => {
            sqlx::query(keyed!(concat!("message_id = ", packed_id!("?3"), " AND (?4 IS NULL OR version = ?4)")))
        }
        Removal::After(_) => sqlx::query(keyed!("seq > ?3")),
        Removal::Covered { .. } => sqlx::query(keyed!("seq <= ?3 AND seq <> ?4")),
    };
    let query = query.bind(thread_id).bind(tenant);
    let query = match removal {
        Removal::Message(id, version) => query.bind(id.as_str()).bind(version.map(signed)),
        Removal::After(seq) => query.bind(signed(seq)),
        Removal::Covered { through, leaf } => query.bind(signed(through)).bind(signed(leaf)),
    };
    let rows = query.fetch_all(&mut *conn).await.map_err(sql("reading the keys of the messages removed"))?;
    sqlx::query(concat!(
        "DELETE FROM persist_spent_keys WHERE thread = ",
        thread_key!("?2", "?1"),
        " AND forget_at <= ?3"
    ))
    .bind(thread_id)
    .bind(tenant)
    .bind(now.as_micros())
    .execute(&mut *conn)
    .await
    .map_err(sql("forgetting spent keys"))?;
    for row in &rows {
        let message = rows::message(row).map_err(aborted)?;
        let Some(spent) = SpentKey::of(&message, now, retention) else { continue };
        sqlx::query(
            "INSERT OR REPLACE INTO persist_spent_keys (thread, idempotency_key, message_id, seq, parent_seq, \
                                                        created_at, fingerprint, forget_at) \
             SELECT key, ?3, ?4, ?5, ?6, ?7, ?8, ?9 FROM threads WHERE tenant = ?2 AND thread_id = ?1",
        )
        .bind(thread_id)
        .bind(tenant)
        .bind(spent.key.as_str())
        .bind(spent.message_id.as_str())
        .bind(signed(spent.seq))
        .bind(spent.parent_seq.map(signed))
        .bind(spent.created_at.as_micros())
        .bind(spent.fingerprint.as_deref())
        .bind(spent.forget_at.as_micros())
        .execute(&mut *conn)
        .await
        .map_err(sql("keeping a spent key"))?;
    }
    Ok(())
}

/// The keys of `keys` spent in thread `thread_id` (of `tenant`) and still remembered at `now`.
pub(super) async fn spent_keys(
    conn: &mut SqliteConnection,
    thread_id: &str,
    tenant: &str,
    keys: &[&IdempotencyKey],
    now: Timestamp,
) -> OpResult<Vec<SpentKey>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let wanted = serde_json::to_string(&keys.iter().map(|key| key.as_str()).collect::<Vec<_>>())
        .map_err(|e| aborted(PersistError::invalid("idempotency_key", e.to_string())))?;
    let rows: Vec<SpentRow> = sqlx::query_as(concat!(
        "SELECT idempotency_key, message_id, seq, parent_seq, created_at, fingerprint, forget_at \
           FROM persist_spent_keys WHERE thread = ",
        thread_key!("?2", "?1"),
        " AND idempotency_key IN (SELECT value FROM json_each(?3)) AND forget_at > ?4"
    ))
    .bind(thread_id)
    .bind(tenant)
    .bind(wanted)
    .bind(now.as_micros())
    .fetch_all(&mut *conn)
    .await
    .map_err(sql("reading spent keys"))?;
    rows.into_iter().map(|row| persist_sql_kit::spent_key(row).map_err(aborted)).collect()
}
