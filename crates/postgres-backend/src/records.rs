//! Records (see `persist::records`): opaque values per tenant, space and key (the table of
//! version 19). A write is one transaction of its changes, in order (one statement when they are
//! all puts, or all inserts); a read answers a page by key then space, bytewise (the columns are
//! `COLLATE "C"`).

use persist_core::records::{ReadRecords, Record, RecordCursor, RecordWrite, RecordsWritten, WriteRecords};
use persist_core::{Order, Page, Result, Timestamp};
use sqlx::postgres::PgRow;
use sqlx::{Acquire, PgConnection, Row};

use crate::error::map_sqlx;
use crate::rows::tenant_key;

/// Puts (or inserts) of `write`, when it holds nothing else and names each record once, as one
/// statement of arrays: the common write (a checkpoint with its channels' values) in one round
/// trip, atomic as any statement; `None` otherwise.
async fn as_one_statement(conn: &mut PgConnection, write: &WriteRecords, now: i64) -> Option<Result<RecordsWritten>> {
    let insert = matches!(write.writes.first()?, RecordWrite::Insert { .. });
    let mut rows: Vec<(&str, &str, &[u8], Option<i64>)> = Vec::with_capacity(write.writes.len());
    for change in &write.writes {
        let (space, key, value, expires_at) = match change {
            RecordWrite::Put { space, key, value, expires_at } if !insert => (space, key, value, expires_at),
            RecordWrite::Insert { space, key, value, expires_at } if insert => (space, key, value, expires_at),
            _ => return None,
        };
        rows.push((space.as_str(), key.as_str(), value.as_slice(), expires_at.map(Timestamp::as_micros)));
    }
    // One statement changes a row once: a record named twice goes change by change.
    let mut names: Vec<(&str, &str)> = rows.iter().map(|(space, key, _, _)| (*space, *key)).collect();
    names.sort_unstable();
    if names.windows(2).any(|pair| pair[0] == pair[1]) {
        return None;
    }
    macro_rules! upsert {
        ($($kept:literal)?) => {
            concat!(
                "INSERT INTO persist_records (tenant, space, key, value, expires_at, updated_at) \
                 SELECT $1, space, key, value, expires_at, $6 \
                   FROM unnest($2::text[], $3::text[], $4::bytea[], $5::int8[]) AS r (space, key, value, expires_at) \
                 ON CONFLICT (tenant, space, key) DO UPDATE \
                    SET value = excluded.value, expires_at = excluded.expires_at, updated_at = excluded.updated_at"
                $(, $kept)?
            )
        };
    }
    // An insert writes over an expired record only, as if it were not there.
    let sql = if insert {
        upsert!(" WHERE persist_records.expires_at IS NOT NULL AND persist_records.expires_at <= $6")
    } else {
        upsert!()
    };
    let done = sqlx::query(sql)
        .bind(tenant_key(write.tenant()))
        .bind(rows.iter().map(|r| r.0).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.1).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.2).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.3).collect::<Vec<_>>())
        .bind(now)
        .execute(&mut *conn)
        .await;
    Some(done.map(|done| RecordsWritten::new(done.rows_affected())).map_err(|e| map_sqlx("writing records", e)))
}

pub(crate) async fn write_records(conn: &mut PgConnection, write: &WriteRecords) -> Result<RecordsWritten> {
    write.validate()?;
    let failed = |e| map_sqlx("writing records", e);
    let tenant = tenant_key(write.tenant());
    let now = Timestamp::now().as_micros();
    if let Some(written) = as_one_statement(conn, write, now).await {
        return written;
    }
    let mut tx = conn.begin().await.map_err(failed)?;
    let mut changed = 0;
    for change in &write.writes {
        let done = match change {
            RecordWrite::Put { space, key, value, expires_at }
            | RecordWrite::Insert { space, key, value, expires_at } => {
                macro_rules! upsert {
                    ($($kept:literal)?) => {
                        concat!(
                            "INSERT INTO persist_records (tenant, space, key, value, expires_at, updated_at) \
                             VALUES ($1, $2, $3, $4, $5, $6) \
                             ON CONFLICT (tenant, space, key) DO UPDATE \
                                SET value = excluded.value, expires_at = excluded.expires_at, \
                                    updated_at = excluded.updated_at"
                            $(, $kept)?
                        )
                    };
                }
                // An insert writes over an expired record only, as if it were not there.
                let sql = if matches!(change, RecordWrite::Insert { .. }) {
                    upsert!(" WHERE persist_records.expires_at IS NOT NULL AND persist_records.expires_at <= $6")
                } else {
                    upsert!()
                };
                sqlx::query(sql)
                    .bind(tenant)
                    .bind(space.as_str())
                    .bind(key.as_str())
                    .bind(value.as_slice())
                    .bind(expires_at.map(Timestamp::as_micros))
                    .bind(now)
            }
            RecordWrite::Touch { space, key, expires_at } => sqlx::query(
                "UPDATE persist_records SET expires_at = $4, updated_at = $5 \
                  WHERE tenant = $1 AND space = $2 AND key = $3 AND (expires_at IS NULL OR expires_at > $5)",
            )
            .bind(tenant)
            .bind(space.as_str())
            .bind(key.as_str())
            .bind(expires_at.map(Timestamp::as_micros))
            .bind(now),
            RecordWrite::Delete { space, key } => {
                sqlx::query("DELETE FROM persist_records WHERE tenant = $1 AND space = $2 AND key = $3")
                    .bind(tenant)
                    .bind(space.as_str())
                    .bind(key.as_str())
            }
            RecordWrite::DeleteSpaces { prefix } => {
                sqlx::query("DELETE FROM persist_records WHERE tenant = $1 AND space >= $2 AND starts_with(space, $2)")
                    .bind(tenant)
                    .bind(prefix.as_str())
            }
            RecordWrite::Sweep => sqlx::query(
                "DELETE FROM persist_records WHERE tenant = $1 AND expires_at IS NOT NULL AND expires_at <= $2",
            )
            .bind(tenant)
            .bind(now),
            _ => continue,
        };
        changed += done.execute(&mut *tx).await.map_err(failed)?.rows_affected();
    }
    tx.commit().await.map_err(failed)?;
    Ok(RecordsWritten::new(changed))
}

/// The record of a row of `space, key, value, expires_at, updated_at`.
fn record(row: &PgRow, query: &ReadRecords) -> Result<Record> {
    let failed = |e| map_sqlx("reading records", e);
    Ok(Record::new(
        query.tenant().cloned(),
        row.try_get("space").map_err(failed)?,
        row.try_get("key").map_err(failed)?,
        row.try_get("value").map_err(failed)?,
        row.try_get::<Option<i64>, _>("expires_at").map_err(failed)?.map(Timestamp::from_micros),
        Timestamp::from_micros(row.try_get("updated_at").map_err(failed)?),
    ))
}

/// The statement of `query`: one text per shape of request (which filters it has, its order),
/// each filter bound in a place of its own.
fn statement(query: &ReadRecords) -> String {
    let mut sql = String::from(
        "SELECT space, key, value, expires_at, updated_at FROM persist_records \
          WHERE tenant = $1 AND (expires_at IS NULL OR expires_at > $2)",
    );
    sql.push_str(match (query.prefix, query.prefix_end().is_some()) {
        (false, _) => " AND space = $3",
        (true, true) => " AND space >= $3 AND space < $4",
        (true, false) => " AND space >= $3 AND $4::text IS NULL",
    });
    sql.push_str(if query.keys.is_empty() { " AND $5::text[] IS NULL" } else { " AND key = ANY($5)" });
    sql.push_str(if query.before.is_some() { " AND key < $6" } else { " AND $6::text IS NULL" });
    let desc = query.order == Order::Desc;
    sql.push_str(match (query.cursor.is_some(), desc) {
        (false, _) => " AND $7::text IS NULL AND $8::text IS NULL",
        (true, true) => " AND (key, space) < ($7, $8)",
        (true, false) => " AND (key, space) > ($7, $8)",
    });
    sql.push_str(if desc { " ORDER BY key DESC, space DESC" } else { " ORDER BY key, space" });
    sql.push_str(" LIMIT $9");
    sql
}

pub(crate) async fn records(conn: &mut PgConnection, query: &ReadRecords) -> Result<Page<Record, RecordCursor>> {
    query.validate()?;
    let keys = (!query.keys.is_empty()).then(|| query.keys.clone());
    let found = sqlx::query(sqlx::AssertSqlSafe(statement(query)))
        .bind(tenant_key(query.tenant()))
        .bind(Timestamp::now().as_micros())
        .bind(query.space.as_str())
        .bind(query.prefix_end())
        .bind(keys)
        .bind(query.before.as_deref())
        .bind(query.cursor.as_ref().map(RecordCursor::key))
        .bind(query.cursor.as_ref().map(RecordCursor::space))
        .bind(i64::from(query.limit) + 1)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| map_sqlx("reading records", e))?;
    Ok(query.page(found.iter().map(|row| record(row, query)).collect::<Result<_>>()?))
}
