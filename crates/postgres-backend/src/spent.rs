//! Idempotency keys that outlive their messages (see `persist::spent`): kept in
//! `persist_spent_keys` (`migrations/0018`) as keyed messages are removed, read by a write that
//! carries one.
//!
//! How long a key is kept is the instance's key retention, which every connection carries as the
//! setting `persist.key_retention` (microseconds; 24 hours where it is not set).

use persist_core::spent::SpentKey;
use persist_core::{PersistError, Timestamp};
pub(crate) use persist_sql_kit::Removal;
use persist_sql_kit::SpentRow;
use sqlx::PgConnection;

use crate::error::map_sqlx;
use crate::rows::{self, message_columns, signed};

/// `forget_at` for a key spent at `$at`: the connection's key retention after it.
macro_rules! forget_at {
    ($at:literal) => {
        concat!($at, " + coalesce(current_setting('persist.key_retention', true)::bigint, 86400000000)")
    };
}

/// Keeps the keys of the messages of `thread_id` (of `tenant`, as stored) that `removal` is
/// about to take, and forgets the thread's keys whose time is up. Under the thread's lock, in
/// the removal's transaction, before it.
pub(crate) async fn spend(
    tx: &mut PgConnection,
    tenant: &str,
    thread_id: &str,
    removal: Removal<'_>,
) -> Result<(), PersistError> {
    macro_rules! keyed {
        ($condition:literal) => {
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE tenant = $1 AND thread_id = $2 AND idempotency_key IS NOT NULL AND ",
                $condition
            )
        };
    }
    let query = match removal {
        Removal::Message(..) => sqlx::query(keyed!("message_id = $3 AND ($4::bigint IS NULL OR version = $4)")),
        Removal::After(_) => sqlx::query(keyed!("seq > $3")),
        Removal::Covered { .. } => sqlx::query(keyed!("seq <= $3 AND seq <> $4")),
    };
    let query = query.bind(tenant).bind(thread_id);
    let query = match removal {
        Removal::Message(id, version) => query.bind(id.as_str()).bind(version.map(signed)),
        Removal::After(seq) => query.bind(signed(seq)),
        Removal::Covered { through, leaf } => query.bind(signed(through)).bind(signed(leaf)),
    };
    let rows = query.fetch_all(&mut *tx).await.map_err(|e| map_sqlx("reading the keys of the messages removed", e))?;
    let now = Timestamp::now();
    sqlx::query("DELETE FROM persist_spent_keys WHERE tenant = $1 AND thread_id = $2 AND forget_at <= $3")
        .bind(tenant)
        .bind(thread_id)
        .bind(now.as_micros())
        .execute(&mut *tx)
        .await
        .map_err(|e| map_sqlx("forgetting spent keys", e))?;
    let spent: Vec<SpentKey> = rows
        .iter()
        .map(rows::message)
        .collect::<Result<Vec<_>, _>>()?
        .iter()
        .filter_map(|message| SpentKey::of(message, now, std::time::Duration::ZERO))
        .collect();
    if spent.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&SpentKey) -> Option<String>| spent.iter().map(f).collect::<Vec<_>>();
    sqlx::query(concat!(
        "INSERT INTO persist_spent_keys (tenant, thread_id, idempotency_key, message_id, seq, parent_seq, created_at, \
                                         fingerprint, forget_at) \
         SELECT $1, $2, k.key, k.message_id, k.seq, k.parent_seq, k.created_at, k.fingerprint, ",
        forget_at!("$9"),
        " FROM unnest($3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[]) \
             AS k(key, message_id, seq, parent_seq, created_at, fingerprint) \
         ON CONFLICT (tenant, thread_id, idempotency_key) DO UPDATE \
            SET message_id = EXCLUDED.message_id, seq = EXCLUDED.seq, parent_seq = EXCLUDED.parent_seq, \
                created_at = EXCLUDED.created_at, fingerprint = EXCLUDED.fingerprint, forget_at = EXCLUDED.forget_at"
    ))
    .bind(tenant)
    .bind(thread_id)
    .bind(column(|k| Some(k.key.as_str().to_owned())))
    .bind(column(|k| Some(k.message_id.as_str().to_owned())))
    .bind(spent.iter().map(|k| signed(k.seq)).collect::<Vec<_>>())
    .bind(spent.iter().map(|k| k.parent_seq.map(signed)).collect::<Vec<_>>())
    .bind(spent.iter().map(|k| k.created_at.as_micros()).collect::<Vec<_>>())
    .bind(column(|k| k.fingerprint.clone()))
    .bind(now.as_micros())
    .execute(&mut *tx)
    .await
    .map_err(|e| map_sqlx("keeping the spent keys", e))?;
    Ok(())
}

/// Forgets every key spent in thread `thread_id` of `tenant` (a purge).
pub(crate) async fn forget(tx: &mut PgConnection, tenant: &str, thread_id: &str) -> Result<(), PersistError> {
    sqlx::query("DELETE FROM persist_spent_keys WHERE tenant = $1 AND thread_id = $2")
        .bind(tenant)
        .bind(thread_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_sqlx("forgetting the thread's spent keys", e))?;
    Ok(())
}

/// The keys of `keys` spent in thread `thread_id` of `tenant` and still remembered now.
pub(crate) async fn spent_keys(
    conn: &mut PgConnection,
    tenant: &str,
    thread_id: &str,
    keys: &[&str],
) -> Result<Vec<SpentKey>, PersistError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<SpentRow> = sqlx::query_as(
        "SELECT idempotency_key, message_id, seq, parent_seq, created_at, fingerprint, forget_at \
           FROM persist_spent_keys \
          WHERE tenant = $1 AND thread_id = $2 AND idempotency_key = ANY($3) AND forget_at > $4",
    )
    .bind(tenant)
    .bind(thread_id)
    .bind(keys)
    .bind(Timestamp::now().as_micros())
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| map_sqlx("reading spent keys", e))?;
    rows.into_iter().map(persist_sql_kit::spent_key).collect()
}
