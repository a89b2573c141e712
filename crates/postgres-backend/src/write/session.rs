//! Session bindings and values set once.

use persist_core::session::{Bind, BindingState, SessionBinding};
use persist_core::{AgentId, PersistError, SessionId, TenantId, ThreadId, Timestamp};
use sqlx::PgConnection;

use super::{RACE_ATTEMPTS, raced};
use crate::error::map_sqlx;
use crate::rows::{self, binding_columns, tenant_key};

/// Stores the value under its name unless one is there, and answers the one stored (the
/// conflict's row is seen by the `SELECT` once the racing insert commits).
pub(super) async fn set_once(
    conn: &mut PgConnection,
    request: &persist_core::once::SetOnce,
) -> Result<String, PersistError> {
    let tenant = tenant_key(request.context.tenant());
    for _ in 0..RACE_ATTEMPTS {
        let stored: Option<String> = sqlx::query_scalar(
            "WITH ins AS (INSERT INTO persist_values (tenant, name, value) VALUES ($1, $2, $3) \
                          ON CONFLICT DO NOTHING RETURNING value) \
             SELECT value FROM ins UNION ALL SELECT value FROM persist_values WHERE tenant = $1 AND name = $2 \
             LIMIT 1",
        )
        .bind(tenant)
        .bind(&request.name)
        .bind(&request.value)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| map_sqlx("storing a value", e))?;
        if let Some(stored) = stored {
            return Ok(stored);
        }
    }
    Err(raced())
}

pub(crate) async fn bind(conn: &mut PgConnection, bind: &Bind) -> Result<SessionBinding, PersistError> {
    bind.validate()?;
    // FOR SHARE waits for a concurrent thread delete and then sees its tombstone.
    let row = sqlx::query(concat!(
        "WITH t AS (SELECT deleted_at FROM threads WHERE tenant = $8 AND thread_id = $2 FOR SHARE) \
         INSERT INTO session_bindings (tenant, agent_id, thread_id, session_id, provider, runtime_id, work_dir, \
                                       state, created_at, updated_at) \
         SELECT $8, $1, $2, $3, $4, $5::text, $6::text, 'active', $7, $7 \
          WHERE NOT EXISTS (SELECT 1 FROM t WHERE deleted_at IS NOT NULL) \
         ON CONFLICT (tenant, agent_id, thread_id) DO UPDATE \
            SET session_id = EXCLUDED.session_id, provider = EXCLUDED.provider, runtime_id = EXCLUDED.runtime_id, \
                work_dir = EXCLUDED.work_dir, state = 'active', updated_at = EXCLUDED.updated_at \
         RETURNING ",
        binding_columns!()
    ))
    .bind(bind.agent_id.as_str())
    .bind(bind.thread_id.as_str())
    .bind(bind.session_id.as_str())
    .bind(bind.provider.as_str())
    .bind(bind.runtime_id.as_ref().map(|r| r.as_str()))
    .bind(bind.work_dir.as_deref())
    .bind(Timestamp::now().as_micros())
    .bind(tenant_key(bind.context.tenant()))
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| map_sqlx("binding the session", e))?;
    match row {
        Some(row) => rows::binding(&row).map(|(binding, _)| binding),
        None => Err(PersistError::ThreadDeleted { thread_id: bind.thread_id.clone() }),
    }
}

/// Moves a binding to `to`; with `only_session`, only if it is active and points at it.
pub(crate) async fn mark(
    conn: &mut PgConnection,
    tenant: Option<&TenantId>,
    agent_id: &AgentId,
    thread_id: &ThreadId,
    only_session: Option<&SessionId>,
    to: BindingState,
) -> Result<bool, PersistError> {
    let done = sqlx::query(
        "UPDATE session_bindings SET state = $4, updated_at = $5 \
          WHERE tenant = $6 AND agent_id = $1 AND thread_id = $2 \
            AND ($3::text IS NULL OR (session_id = $3 AND state = 'active'))",
    )
    .bind(agent_id.as_str())
    .bind(thread_id.as_str())
    .bind(only_session.map(SessionId::as_str))
    .bind(to.as_str())
    .bind(Timestamp::now().as_micros())
    .bind(tenant_key(tenant))
    .execute(&mut *conn)
    .await
    .map_err(|e| map_sqlx("changing a session binding", e))?;
    Ok(done.rows_affected() > 0)
}
