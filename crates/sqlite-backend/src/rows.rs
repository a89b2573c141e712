//! Rows to values and values to column text.

use persist_core::session::{BindingState, SessionBinding};
use persist_core::{
    AgentId, Content, IdempotencyKey, Message, MessageId, Metadata, PersistError, ProviderId, Role, RuntimeId,
    SessionId, Status, TenantId, Thread, ThreadId, Timestamp,
};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::error::{corrupt, map_sqlx};

/// The message columns, in the order [`message`] reads them by name.
macro_rules! message_columns {
    () => {
        "thread_id, message_id, seq, role, content, metadata, status, version, idempotency_key, \
         created_at, updated_at"
    };
}
pub(crate) use message_columns;

/// The thread columns.
macro_rules! thread_columns {
    () => {
        "thread_id, tenant, title, metadata, version, created_at, updated_at, last_seq, \
         message_count, deleted_at"
    };
}
pub(crate) use thread_columns;

fn get<'r, T>(row: &'r SqliteRow, column: &'static str) -> Result<T, PersistError>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(column).map_err(|e| map_sqlx("reading a row", e))
}

fn unsigned(value: i64, column: &str) -> Result<u64, PersistError> {
    u64::try_from(value).map_err(|_| corrupt(format!("{column} is negative ({value})")))
}

/// The `tenant` column's value: the tenant's id, `''` for the threads without a tenant (no
/// tenant id is empty, so every key column is an ordinary `NOT NULL` one).
pub(crate) fn tenant_key(tenant: Option<&TenantId>) -> &str {
    tenant.map_or("", TenantId::as_str)
}

/// The tenant a `tenant` column holds.
pub(crate) fn tenant(row: &SqliteRow) -> Result<Option<TenantId>, PersistError> {
    match get::<&str>(row, "tenant")? {
        "" => Ok(None),
        tenant => TenantId::new(tenant).map(Some).map_err(|e| corrupt(e.to_string())),
    }
}

pub(crate) fn signed(value: u64) -> i64 {
    // Counters and versions start at 0/1 and grow by one per write: they never reach 2^63.
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn metadata(text: &str) -> Result<Metadata, PersistError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| corrupt(format!("metadata is not JSON: {e}")))?;
    Metadata::try_from(value).map_err(|e| corrupt(e.to_string()))
}

pub(crate) fn message(row: &SqliteRow) -> Result<Message, PersistError> {
    let content = Content::from_json(get::<String>(row, "content")?).map_err(|e| corrupt(e.to_string()))?;
    let status = match get::<&str>(row, "status")? {
        "reserved" => Status::Reserved,
        "complete" => Status::Complete,
        other => return Err(corrupt(format!("unknown status {other:?}"))),
    };
    let key: Option<&str> = get(row, "idempotency_key")?;
    Ok(Message {
        thread_id: ThreadId::new(get::<&str>(row, "thread_id")?).map_err(|e| corrupt(e.to_string()))?,
        id: MessageId::new(get::<&str>(row, "message_id")?).map_err(|e| corrupt(e.to_string()))?,
        role: Role::new(get(row, "role")?).map_err(|e| corrupt(e.to_string()))?,
        content,
        metadata: metadata(get(row, "metadata")?)?,
        status,
        seq: unsigned(get(row, "seq")?, "seq")?,
        version: unsigned(get(row, "version")?, "version")?,
        idempotency_key: key.map(IdempotencyKey::new).transpose().map_err(|e| corrupt(e.to_string()))?,
        created_at: Timestamp::from_micros(get(row, "created_at")?),
        updated_at: Timestamp::from_micros(get(row, "updated_at")?),
    })
}

pub(crate) fn thread(row: &SqliteRow) -> Result<Thread, PersistError> {
    let deleted_at: Option<i64> = get(row, "deleted_at")?;
    Ok(Thread {
        id: ThreadId::new(get::<&str>(row, "thread_id")?).map_err(|e| corrupt(e.to_string()))?,
        tenant: tenant(row)?,
        title: get(row, "title")?,
        metadata: metadata(get(row, "metadata")?)?,
        version: unsigned(get(row, "version")?, "version")?,
        created_at: Timestamp::from_micros(get(row, "created_at")?),
        updated_at: Timestamp::from_micros(get(row, "updated_at")?),
        last_seq: unsigned(get(row, "last_seq")?, "last_seq")?,
        message_count: unsigned(get(row, "message_count")?, "message_count")?,
        deleted_at: deleted_at.map(Timestamp::from_micros),
    })
}

/// The session-binding columns.
macro_rules! binding_columns {
    () => {
        "agent_id, thread_id, session_id, provider, runtime_id, work_dir, state, created_at, updated_at"
    };
}
pub(crate) use binding_columns;

pub(crate) fn binding(row: &SqliteRow) -> Result<(SessionBinding, BindingState), PersistError> {
    let bad = |e: PersistError| corrupt(e.to_string());
    let runtime: Option<&str> = get(row, "runtime_id")?;
    let state: &str = get(row, "state")?;
    let state = BindingState::parse(state).ok_or_else(|| corrupt(format!("unknown binding state {state:?}")))?;
    let binding = SessionBinding {
        agent_id: AgentId::new(get::<&str>(row, "agent_id")?).map_err(bad)?,
        thread_id: ThreadId::new(get::<&str>(row, "thread_id")?).map_err(bad)?,
        session_id: SessionId::new(get::<&str>(row, "session_id")?).map_err(bad)?,
        provider: ProviderId::new(get::<&str>(row, "provider")?).map_err(bad)?,
        runtime_id: runtime.map(RuntimeId::new).transpose().map_err(bad)?,
        work_dir: get(row, "work_dir")?,
        created_at: Timestamp::from_micros(get(row, "created_at")?),
        updated_at: Timestamp::from_micros(get(row, "updated_at")?),
    };
    Ok((binding, state))
}

/// JSON text of a value, for binding.
pub(crate) fn json(value: &impl serde::Serialize) -> Result<String, PersistError> {
    serde_json::to_string(value).map_err(|e| PersistError::backend("encoding JSON", e))
}
