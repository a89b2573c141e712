//! `read_records` (see `persist::records`): a page of records, read on the caller's thread as
//! the messages' reads are (`crate::direct`; the table of version 25).

use persist_core::records::{ReadRecords, Record, RecordCursor};
use persist_core::{Order, Page, Result, Timestamp};

use crate::direct::{self, DirectReads};
use crate::rows::tenant_key;

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
    sql.push_str(" LIMIT +?9");
    sql
}

pub(crate) fn records(direct: &DirectReads, query: &ReadRecords) -> Result<Page<Record, RecordCursor>> {
    query.validate()?;
    let sql = statement(query);
    let keys = (!query.keys.is_empty()).then(|| serde_json::Value::from(query.keys.clone()).to_string());
    let end = query.prefix_end();
    let cursor = query.cursor.as_ref();
    let found = direct.with(|conn| {
        let failed = |e| direct::map("reading records", e);
        let mut statement = conn.prepare_cached(&sql).map_err(failed)?;
        let params = rusqlite::params![
            tenant_key(query.tenant()),
            Timestamp::now().as_micros(),
            query.space.as_str(),
            end.as_deref(),
            keys.as_deref(),
            query.before.as_deref(),
            cursor.map(RecordCursor::key),
            cursor.map(RecordCursor::space),
            i64::from(query.limit) + 1,
        ];
        let rows = statement.query_map(params, |row| {
            Ok(Record::new(
                query.tenant().cloned(),
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get::<_, Option<i64>>(3)?.map(Timestamp::from_micros),
                Timestamp::from_micros(row.get(4)?),
            ))
        });
        rows.and_then(Iterator::collect::<rusqlite::Result<Vec<Record>>>).map_err(failed)
    })?;
    Ok(query.page(found))
}
