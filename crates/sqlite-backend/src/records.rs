//! `read_records` (see `persist::records`): a page of records, read on a pooled connection (the
//! table of version 25).

use persist_core::records::{ReadRecords, Record, RecordCursor};
use persist_core::{Order, Page, Result, Timestamp};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use crate::error::map_sqlx;
use crate::rows::tenant_key;

/// The record of a row of `space, key, value, expires_at, updated_at`.
fn record(row: &SqliteRow, query: &ReadRecords) -> Result<Record> {
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
          WHERE tenant = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
    );
    sql.push_str(match (query.prefix, query.prefix_end().is_some()) {
        (false, _) => " AND space = ?3",
        (true, true) => " AND space >= ?3 AND space < ?4",
        (true, false) => " AND space >= ?3",
    });
    if !query.keys.is_empty() {
        sql.push_str(" AND key IN (SELECT value FROM json_each(?5))");
    }
    if query.before.is_some() {
        sql.push_str(" AND key < ?6");
    }
    let desc = query.order == Order::Desc;
    if query.cursor.is_some() {
        sql.push_str(if desc { " AND (key, space) < (?7, ?8)" } else { " AND (key, space) > (?7, ?8)" });
    }
    sql.push_str(if desc { " ORDER BY key DESC, space DESC" } else { " ORDER BY key, space" });
    sql.push_str(" LIMIT ?9");
    sql
}

pub(crate) async fn records(pool: &SqlitePool, query: &ReadRecords) -> Result<Page<Record, RecordCursor>> {
    query.validate()?;
    let sql = statement(query);
    let keys = (!query.keys.is_empty()).then(|| serde_json::Value::from(query.keys.clone()).to_string());
    let found = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant_key(query.tenant()))
        .bind(Timestamp::now().as_micros())
        .bind(query.space.as_str())
        .bind(query.prefix_end())
        .bind(keys)
        .bind(query.before.as_deref())
        .bind(query.cursor.as_ref().map(RecordCursor::key))
        .bind(query.cursor.as_ref().map(RecordCursor::space))
        .bind(i64::from(query.limit) + 1)
        .fetch_all(pool)
        .await
        .map_err(|e| map_sqlx("reading records", e))?;
    Ok(query.page(found.iter().map(|row| record(row, query)).collect::<Result<_>>()?))
}
