//! Session bindings and values set once.

use persist_core::session::{Bind, SessionBinding};
use persist_core::{PersistError, RuntimeId, Timestamp};
use sqlx::SqliteConnection;

use super::guard::*;
use super::{OpResult, aborted, refused, sql};
use crate::rows::{self, binding_columns, tenant_key};

pub(super) async fn bind_session(conn: &mut SqliteConnection, bind: &Bind) -> OpResult<SessionBinding> {
    bind.validate().map_err(refused)?;
    let tenant = bind.context.tenant();
    if find_thread(conn, tenant, &bind.thread_id).await?.is_some_and(|thread| thread.is_deleted()) {
        return Err(refused(PersistError::ThreadDeleted { thread_id: bind.thread_id.clone() }));
    }
    let row = sqlx::query(concat!(
        "INSERT INTO session_bindings (tenant, agent_id, thread_id, session_id, provider, runtime_id, work_dir, \
                                       state, created_at, updated_at) \
         VALUES (?8, ?1, ?2, ?3, ?4, ?5, ?6, 'active', ?7, ?7) \
         ON CONFLICT (tenant, agent_id, thread_id) DO UPDATE \
            SET session_id = excluded.session_id, provider = excluded.provider, runtime_id = excluded.runtime_id, \
                work_dir = excluded.work_dir, state = 'active', updated_at = excluded.updated_at \
         RETURNING ",
        binding_columns!()
    ))
    .bind(bind.agent_id.as_str())
    .bind(bind.thread_id.as_str())
    .bind(bind.session_id.as_str())
    .bind(bind.provider.as_str())
    .bind(bind.runtime_id.as_ref().map(RuntimeId::as_str))
    .bind(bind.work_dir.as_deref())
    .bind(Timestamp::now().as_micros())
    .bind(tenant_key(tenant))
    .fetch_one(&mut *conn)
    .await
    .map_err(sql("binding the session"))?;
    rows::binding(&row).map(|(binding, _)| binding).map_err(aborted)
}

/// Stores the value under its name unless one is there, and answers the one stored.
pub(super) async fn set_once(conn: &mut SqliteConnection, request: &persist_core::once::SetOnce) -> OpResult<String> {
    let tenant = tenant_key(request.context.tenant());
    sqlx::query("INSERT INTO persist_values (tenant, name, value) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING")
        .bind(tenant)
        .bind(&request.name)
        .bind(&request.value)
        .execute(&mut *conn)
        .await
        .map_err(sql("storing a value"))?;
    sqlx::query_scalar("SELECT value FROM persist_values WHERE tenant = ?1 AND name = ?2")
        .bind(tenant)
        .bind(&request.name)
        .fetch_one(&mut *conn)
        .await
        .map_err(sql("reading a value"))
}
