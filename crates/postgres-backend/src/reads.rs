//! Reads: plain statements on a connection of the pool.

use persist_core::read::{FindStranded, GetMessage, GetThread, ListMessages, ListThreads, Stranded, ThreadCursor};
use persist_core::session::{ListBindings, Resolution, Resolve, StoredBinding};
use persist_core::{Message, Order, Page, Result, Thread};
use sqlx::PgConnection;

use crate::error::map_sqlx;
use crate::rows::{self, binding_columns, json_text, message_columns, signed, tenant_key, thread_columns};

pub(crate) async fn get(conn: &mut PgConnection, query: &GetMessage) -> Result<Option<Message>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE tenant = $3 AND thread_id = $1 AND message_id = $2"
    ))
    .bind(query.thread_id.as_str())
    .bind(query.message_id.as_str())
    .bind(tenant_key(query.tenant()))
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| map_sqlx("reading a message", e))?;
    row.map(|row| rows::message(&row)).transpose()
}

pub(crate) async fn get_thread(conn: &mut PgConnection, query: &GetThread) -> Result<Option<Thread>> {
    let row = sqlx::query(concat!("SELECT ", thread_columns!(), " FROM threads WHERE tenant = $2 AND thread_id = $1"))
        .bind(query.thread_id.as_str())
        .bind(tenant_key(query.tenant()))
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| map_sqlx("reading a thread", e))?;
    row.map(|row| rows::thread(&row)).transpose()
}

/// A page of thread `$1` of tenant `$5`: seqs between `$2` and `$3` (exclusive), placeholders
/// only with `$4`, at most `$6`, in `$order`, of the roles `$7` (every role when NULL).
macro_rules! list_sql {
    ($order:literal) => {
        concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE tenant = $5 AND thread_id = $1 AND seq > $2 AND seq < $3 \
                AND ($4 OR status <> 'reserved') AND ($7::text[] IS NULL OR role = ANY ($7)) \
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
        .bind(tenant_key(query.tenant()))
        .bind(i64::from(query.fetch_limit()))
        .bind(query.role_names())
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| map_sqlx("listing messages", e))?;
    Ok(query.page(fetched.iter().map(rows::message).collect::<Result<Vec<_>>>()?))
}

/// The listing of threads: `$tenant` is the condition on the tenant, `$after` the cursor's,
/// `$order` the `ORDER BY`. A thread matches when no entry of the filter differs from the
/// thread's metadata (jsonb equality: same key, same value, exactly).
macro_rules! threads_sql {
    ($tenant:literal, $after:literal, $order:literal) => {
        concat!(
            "SELECT ",
            thread_columns!(),
            " FROM threads WHERE deleted_at IS NULL AND ",
            $tenant,
            " AND ",
            $after,
            " AND NOT EXISTS (SELECT 1 FROM jsonb_each($4::jsonb) f \
                               WHERE (threads.metadata -> f.key) IS DISTINCT FROM f.value) \
              ORDER BY ",
            $order,
            " LIMIT $5"
        )
    };
}

pub(crate) async fn threads(conn: &mut PgConnection, query: &ListThreads) -> Result<Page<Thread, ThreadCursor>> {
    query.validate()?;
    // A tenant's listing reads the index by (tenant, active_second, thread_id), each second's
    // threads sorted by `updated_at` as it goes (an incremental sort: `active_second` is
    // `updated_at / 1000000`, so the order is `updated_at DESC, thread_id DESC`); a listing across
    // tenants (for operators) sorts. Without a cursor, a bound past every thread: the bound is
    // always an index condition. Each statement names every parameter (`… IS NULL OR TRUE`
    // for the one it does not use), so the server knows each one's type.
    let sql = if query.across_tenants {
        threads_sql!(
            "($1::text IS NULL OR TRUE)",
            "(updated_at, thread_id, tenant COLLATE \"C\") < ($2::bigint, $3::text, $6::text)",
            "updated_at DESC, thread_id DESC, tenant COLLATE \"C\" DESC"
        )
    } else {
        threads_sql!(
            "tenant = $1 AND ($6::text IS NULL OR TRUE)",
            "active_second <= $2::bigint / 1000000 AND (updated_at, thread_id) < ($2::bigint, $3::text)",
            "active_second DESC, updated_at DESC, thread_id DESC"
        )
    };
    let cursor = query.cursor.as_ref();
    let fetched = sqlx::query(sql)
        .bind(tenant_key(query.tenant()))
        .bind(cursor.map_or(i64::MAX, |c| c.updated_at().as_micros()))
        .bind(cursor.map_or("", |c| c.thread_id().as_str()))
        .bind(json_text(&query.filter)?)
        .bind(i64::from(query.fetch_limit()))
        .bind(cursor.map_or("", |c| tenant_key(c.tenant())))
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| map_sqlx("listing threads", e))?;
    Ok(query.page(fetched.iter().map(rows::thread).collect::<Result<Vec<_>>>()?))
}

pub(crate) async fn resolve(conn: &mut PgConnection, query: &Resolve) -> Result<Resolution> {
    let row = sqlx::query(concat!(
        "SELECT ",
        binding_columns!(),
        " FROM session_bindings WHERE tenant = $3 AND agent_id = $1 AND thread_id = $2"
    ))
    .bind(query.agent_id.as_str())
    .bind(query.thread_id.as_str())
    .bind(tenant_key(query.context.tenant()))
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| map_sqlx("reading a session binding", e))?;
    let stored = row.map(|row| rows::binding(&row)).transpose()?;
    Ok(Resolution::decide(stored, query))
}

pub(crate) async fn stranded(conn: &mut PgConnection, query: &FindStranded) -> Result<Vec<Stranded>> {
    query.validate()?;
    let rows = sqlx::query(concat!(
        "SELECT tenant, ",
        message_columns!(),
        " FROM messages WHERE status = 'reserved' AND created_at < $1 AND updated_at < $1 AND ($3 OR tenant = $4) \
          ORDER BY updated_at LIMIT $2"
    ))
    .bind(query.inactive_since.as_micros())
    .bind(i64::from(query.limit))
    .bind(query.across_tenants)
    .bind(tenant_key(query.tenant()))
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| map_sqlx("finding stranded reservations", e))?;
    rows.iter().map(|row| Ok(Stranded::new(rows::tenant(row)?, rows::message(row)?))).collect()
}

/// The thread's bindings, every agent's, by agent id (bytewise).
pub(crate) async fn bindings(conn: &mut PgConnection, query: &ListBindings) -> Result<Vec<StoredBinding>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        binding_columns!(),
        " FROM session_bindings WHERE tenant = $1 AND thread_id = $2 ORDER BY agent_id COLLATE \"C\""
    ))
    .bind(tenant_key(query.context.tenant()))
    .bind(query.thread_id.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| map_sqlx("reading session bindings", e))?;
    rows.iter().map(|row| rows::binding(row).map(|(binding, state)| StoredBinding::new(binding, state))).collect()
}
