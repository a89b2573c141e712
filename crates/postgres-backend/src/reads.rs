//! Reads: plain statements on a connection of the pool.

use persist_core::read::{FindStranded, GetMessage, GetThread, ListMessages, ListThreads, ThreadCursor};
use persist_core::session::{Resolution, Resolve};
use persist_core::{Message, Order, Page, Result, TenantId, Thread};
use sqlx::PgConnection;

use crate::error::map_sqlx;
use crate::rows::{self, binding_columns, json_text, message_columns, signed, thread_columns};

fn tenant(tenant: Option<&TenantId>) -> Option<&str> {
    tenant.map(TenantId::as_str)
}

pub(crate) async fn get(conn: &mut PgConnection, query: &GetMessage) -> Result<Option<Message>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE thread_id = $1 AND message_id = $2 \
            AND EXISTS (SELECT 1 FROM threads t WHERE t.thread_id = $1 AND ($3::text IS NULL OR t.tenant = $3))"
    ))
    .bind(query.thread_id.as_str())
    .bind(query.message_id.as_str())
    .bind(tenant(query.tenant()))
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| map_sqlx("reading a message", e))?;
    row.map(|row| rows::message(&row)).transpose()
}

pub(crate) async fn get_thread(conn: &mut PgConnection, query: &GetThread) -> Result<Option<Thread>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        thread_columns!(),
        " FROM threads WHERE thread_id = $1 AND ($2::text IS NULL OR tenant = $2)"
    ))
    .bind(query.thread_id.as_str())
    .bind(tenant(query.tenant()))
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| map_sqlx("reading a thread", e))?;
    row.map(|row| rows::thread(&row)).transpose()
}

macro_rules! list_sql {
    ($order:literal) => {
        concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE thread_id = $1 AND seq > $2 AND seq < $3 AND ($4 OR status = 'complete') \
                AND EXISTS (SELECT 1 FROM threads t WHERE t.thread_id = $1 AND ($5::text IS NULL OR t.tenant = $5)) \
              ORDER BY seq ",
            $order,
            " LIMIT $6"
        )
    };
}

pub(crate) async fn list(conn: &mut PgConnection, query: &ListMessages) -> Result<Page<Message>> {
    query.validate()?;
    let sql = match query.order {
        Order::Asc => list_sql!("ASC"),
        Order::Desc => list_sql!("DESC"),
    };
    let fetched = sqlx::query(sql)
        .bind(query.thread_id.as_str())
        .bind(query.after.map_or(0, signed))
        .bind(query.before.map_or(i64::MAX, signed))
        .bind(query.include_reserved)
        .bind(tenant(query.tenant()))
        .bind(i64::from(query.fetch_limit()))
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| map_sqlx("listing messages", e))?;
    Ok(query.page(fetched.iter().map(rows::message).collect::<Result<Vec<_>>>()?))
}

pub(crate) async fn threads(conn: &mut PgConnection, query: &ListThreads) -> Result<Page<Thread, ThreadCursor>> {
    query.validate()?;
    // A thread matches when no entry of the filter differs from the thread's metadata (jsonb
    // equality: same key, same value, exactly).
    let fetched = sqlx::query(concat!(
        "SELECT ",
        thread_columns!(),
        " FROM threads WHERE deleted_at IS NULL AND ($1::text IS NULL OR tenant = $1) \
            AND (updated_at, thread_id) < ($2::bigint, $3::text) \
            AND NOT EXISTS (SELECT 1 FROM jsonb_each($4::jsonb) f \
                             WHERE (threads.metadata -> f.key) IS DISTINCT FROM f.value) \
          ORDER BY updated_at DESC, thread_id DESC LIMIT $5"
    ))
    .bind(tenant(query.tenant()))
    // Without a cursor, a bound past every thread: the bound is always an index condition.
    .bind(query.cursor.as_ref().map_or(i64::MAX, |c| c.updated_at().as_micros()))
    .bind(query.cursor.as_ref().map_or("", |c| c.thread_id().as_str()))
    .bind(json_text(&query.filter)?)
    .bind(i64::from(query.fetch_limit()))
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| map_sqlx("listing threads", e))?;
    Ok(query.page(fetched.iter().map(rows::thread).collect::<Result<Vec<_>>>()?))
}

pub(crate) async fn resolve(conn: &mut PgConnection, query: &Resolve) -> Result<Resolution> {
    let row = sqlx::query(concat!(
        "SELECT ",
        binding_columns!(),
        " FROM session_bindings WHERE agent_id = $1 AND thread_id = $2"
    ))
    .bind(query.agent_id.as_str())
    .bind(query.thread_id.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| map_sqlx("reading a session binding", e))?;
    let stored = row.map(|row| rows::binding(&row)).transpose()?;
    Ok(Resolution::decide(stored, query))
}

pub(crate) async fn stranded(conn: &mut PgConnection, query: &FindStranded) -> Result<Vec<Message>> {
    query.validate()?;
    let rows = sqlx::query(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE status = 'reserved' AND created_at < $1 AND updated_at < $1 \
          ORDER BY updated_at LIMIT $2"
    ))
    .bind(query.inactive_since.as_micros())
    .bind(i64::from(query.limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| map_sqlx("finding stranded reservations", e))?;
    rows.iter().map(rows::message).collect()
}
