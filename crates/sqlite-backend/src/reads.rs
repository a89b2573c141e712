//! Reads, answered from the read pool (never through the writer); `get`, `get_thread` and
//! `list` run on the caller's thread instead (see `direct`), with the listing SQL shared here.

use persist_core::read::{FindStranded, ListThreads, MessageFilter, Stranded, ThreadCursor};
use persist_core::session::{ListBindings, Resolution, Resolve, StoredBinding};
use persist_core::{Page, Result, Thread};
use sqlx::SqlitePool;

use crate::error::map_sqlx;
use crate::rows::{self, binding_columns, json, message_columns, tenant_key, thread_columns};

/// A page of thread `?1` of tenant `?5`: seqs between `?2` and `?3` (exclusive), placeholders
/// only with `?4`, at most `?6`, in `$order`; a listing of some roles adds their condition
/// ([`role_in!`](crate::rows::role_in), on `?7`).
macro_rules! list_sql {
    ($order:literal $(, $($roles:tt)+)?) => {
        concat!(
            "SELECT ",
            message_columns!("?1"),
            " FROM persist_messages WHERE thread = ",
            thread_key!("?5", "?1"),
            " AND seq > ?2 AND seq < ?3 AND (?4 OR status IS NOT 'reserved')",
            $($($roles)+,)?
            " ORDER BY seq ",
            $order,
            " LIMIT +?6"
        )
    };
}
pub(crate) use list_sql;

/// Whether two `json_tree` rows are the same node: the same kind (integer and real are one
/// kind, numbers) and the same atom (containers have none), numbers compared by value.
macro_rules! same_node {
    ($a:literal, $b:literal) => {
        concat!(
            "(",
            $a,
            ".type = ",
            $b,
            ".type OR (",
            $a,
            ".type IN ('integer', 'real') AND ",
            $b,
            ".type IN ('integer', 'real'))) AND ",
            $a,
            ".atom IS ",
            $b,
            ".atom"
        )
    };
}

/// Whether the metadata in `$column` contains the filter bound as one JSON object at `$filter`:
/// for each of the filter's keys, the value equals the filter's: every node (path, kind, value)
/// of one has its match in the other, numbers compared by value (`1` matches `1.0`, as on every
/// backend).
macro_rules! metadata_contains {
    ($column:literal, $filter:literal) => {
        concat!(
            "NOT EXISTS (SELECT 1 FROM json_tree(",
            $filter,
            ") f WHERE f.parent IS NOT NULL AND NOT EXISTS ( \
                    SELECT 1 FROM json_tree(",
            $column,
            ") m WHERE m.fullkey = f.fullkey AND ",
            same_node!("m", "f"),
            ")) \
            AND NOT EXISTS (SELECT 1 FROM json_each(",
            $filter,
            ") k JOIN json_tree(",
            $column,
            ") m ON m.fullkey = k.fullkey \
                        OR substr(m.fullkey, 1, length(k.fullkey) + 1) IN (k.fullkey || '.', k.fullkey || '[') \
                    WHERE NOT EXISTS (SELECT 1 FROM json_tree(",
            $filter,
            ") f WHERE f.fullkey = m.fullkey AND ",
            same_node!("f", "m"),
            "))"
        )
    };
}

pub(crate) use {metadata_contains, same_node};

/// A [`MessageFilter`] as the reads across threads (search, nearest) bind it: the roles as a JSON
/// array and the thread filter as JSON (each `None` when it keeps all), the time range in
/// microseconds.
pub(crate) struct FilterBinds {
    pub(crate) roles: Option<String>,
    pub(crate) thread: Option<String>,
    pub(crate) since: Option<i64>,
    pub(crate) until: Option<i64>,
}

impl FilterBinds {
    pub(crate) fn of(filter: &MessageFilter) -> Result<Self> {
        let roles = filter.role_names().map(|names| serde_json::Value::from(names).to_string());
        let thread = filter.thread_metadata().map(json).transpose()?;
        let (since, until) = filter.micros();
        Ok(Self { roles, thread, since, until })
    }
}

/// The listing of threads: `$tenant` is the condition on the tenant, `$order` the `ORDER BY`.
/// The cursor (`?2` updated_at, `?3` thread_id, `?6` tenant) continues after the last thread
/// listed in newest-first order (ties by id, then tenant). The metadata filter is bound as one
/// JSON object (`?4`, see `metadata_contains`).
macro_rules! threads_sql {
    ($tenant:literal, $order:literal) => {
        concat!(
            "SELECT ",
            thread_columns!(),
            " FROM threads WHERE deleted_at IS NULL AND ",
            $tenant,
            " \
            AND (?2 IS NULL OR updated_at < ?2 OR (updated_at = ?2 AND (thread_id < ?3 \
                 OR (thread_id = ?3 AND tenant < ?6)))) \
            AND ",
            metadata_contains!("threads.metadata", "?4"),
            " ORDER BY ",
            $order,
            " LIMIT +?5"
        )
    };
}

pub(crate) async fn threads(pool: &SqlitePool, query: &ListThreads) -> Result<Page<Thread, ThreadCursor>> {
    query.validate()?;
    // A tenant's listing reads the index by (tenant, updated_at, thread_id); a listing across
    // tenants (for operators) sorts.
    let sql = if query.across_tenants {
        threads_sql!("1", "updated_at DESC, thread_id DESC, tenant DESC")
    } else {
        threads_sql!("tenant = ?1", "updated_at DESC, thread_id DESC")
    };
    let fetched = sqlx::query(sql)
        .bind(tenant_key(query.tenant()))
        .bind(query.cursor.as_ref().map(|c| c.updated_at().as_micros()))
        .bind(query.cursor.as_ref().map(|c| c.thread_id().as_str()))
        .bind(json(&query.filter)?)
        .bind(i64::from(query.fetch_limit()))
        .bind(query.cursor.as_ref().map(|c| tenant_key(c.tenant())))
        .fetch_all(pool)
        .await
        .map_err(|e| map_sqlx("listing threads", e))?;
    Ok(query.page(fetched.iter().map(rows::thread).collect::<Result<Vec<_>>>()?))
}

pub(crate) async fn resolve(pool: &SqlitePool, query: &Resolve) -> Result<Resolution> {
    let row = sqlx::query(concat!(
        "SELECT ",
        binding_columns!(),
        " FROM session_bindings WHERE tenant = ?3 AND agent_id = ?1 AND thread_id = ?2"
    ))
    .bind(query.agent_id.as_str())
    .bind(query.thread_id.as_str())
    .bind(tenant_key(query.context.tenant()))
    .fetch_optional(pool)
    .await
    .map_err(|e| map_sqlx("reading a session binding", e))?;
    let stored = row.map(|row| rows::binding(&row)).transpose()?;
    Ok(Resolution::decide(stored, query))
}

/// The thread's bindings, every agent's, by agent id (bytewise).
pub(crate) async fn bindings(pool: &SqlitePool, query: &ListBindings) -> Result<Vec<StoredBinding>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        binding_columns!(),
        " FROM session_bindings WHERE tenant = ?1 AND thread_id = ?2 ORDER BY agent_id"
    ))
    .bind(tenant_key(query.context.tenant()))
    .bind(query.thread_id.as_str())
    .fetch_all(pool)
    .await
    .map_err(|e| map_sqlx("reading session bindings", e))?;
    rows.iter().map(|row| rows::binding(row).map(|(binding, state)| StoredBinding::new(binding, state))).collect()
}

pub(crate) async fn stranded(pool: &SqlitePool, query: &FindStranded) -> Result<Vec<Stranded>> {
    query.validate()?;
    let rows = sqlx::query(concat!(
        "SELECT (SELECT k.tenant FROM threads k WHERE k.key = thread) AS tenant, ",
        message_columns!(keyed),
        " FROM persist_messages \
          WHERE status = 'reserved' AND created_at < ?1 AND coalesce(updated_at, created_at) < ?1 \
            AND (?3 OR thread IN (SELECT key FROM threads WHERE tenant = ?4)) \
          ORDER BY coalesce(updated_at, created_at) LIMIT +?2"
    ))
    .bind(query.inactive_since.as_micros())
    .bind(i64::from(query.limit))
    .bind(query.across_tenants)
    .bind(tenant_key(query.tenant()))
    .fetch_all(pool)
    .await
    .map_err(|e| map_sqlx("finding stranded reservations", e))?;
    rows.iter().map(|row| Ok(Stranded::new(rows::tenant(row)?, rows::message(row)?))).collect()
}
