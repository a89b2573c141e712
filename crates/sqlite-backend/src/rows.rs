//! Rows to values and values to column text.

use std::borrow::Cow;

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
        "thread_id, message_id, seq, parent_seq, role, content, content_form, metadata, status, version, \
         idempotency_key, created_at, updated_at"
    };
}
pub(crate) use message_columns;

/// The thread columns.
macro_rules! thread_columns {
    () => {
        "thread_id, tenant, title, metadata, version, created_at, updated_at, last_seq, \
         message_count, active_leaf, deleted_at"
    };
}
pub(crate) use thread_columns;

/// A message id as the change feed's events store it (migration 16) in column `column` of
/// `row`: a UUID in its canonical text as its 16 bytes, any other id as its text; `buffer`
/// holds the text of a UUID.
pub(crate) fn unpacked_id<'a>(
    row: &'a rusqlite::Row<'_>,
    column: usize,
    buffer: &'a mut [u8; uuid::fmt::Hyphenated::LENGTH],
) -> rusqlite::Result<Option<&'a str>> {
    use rusqlite::types::{Type, ValueRef};
    match row.get_ref(column)? {
        ValueRef::Null => Ok(None),
        ValueRef::Blob(bytes) => match uuid::Uuid::from_slice(bytes) {
            Ok(uuid) => Ok(Some(uuid.hyphenated().encode_lower(buffer))),
            Err(e) => Err(rusqlite::Error::FromSqlConversionFailure(column, Type::Blob, Box::new(e))),
        },
        value => value
            .as_str()
            .map(Some)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(column, value.data_type(), Box::new(e))),
    }
}

/// A row of either driver, read by column name: sqlx's (the writer, the pooled reads) and
/// rusqlite's (the reads on the caller's thread, see `direct`).
pub(crate) trait Cells {
    /// The text in `column` (`None` for NULL).
    fn text(&self, column: &'static str) -> Result<Option<&str>, PersistError>;
    /// The integer in `column` (`None` for NULL).
    fn int(&self, column: &'static str) -> Result<Option<i64>, PersistError>;
}

impl Cells for SqliteRow {
    fn text(&self, column: &'static str) -> Result<Option<&str>, PersistError> {
        self.try_get(column).map_err(|e| map_sqlx("reading a row", e))
    }

    fn int(&self, column: &'static str) -> Result<Option<i64>, PersistError> {
        self.try_get(column).map_err(|e| map_sqlx("reading a row", e))
    }
}

impl Cells for rusqlite::Row<'_> {
    fn text(&self, column: &'static str) -> Result<Option<&str>, PersistError> {
        let value = self.get_ref(column).map_err(|e| PersistError::backend("reading a row", e))?;
        match value {
            rusqlite::types::ValueRef::Null => Ok(None),
            value => value.as_str().map(Some).map_err(|e| corrupt(format!("{column}: {e}"))),
        }
    }

    fn int(&self, column: &'static str) -> Result<Option<i64>, PersistError> {
        let value = self.get_ref(column).map_err(|e| PersistError::backend("reading a row", e))?;
        match value {
            rusqlite::types::ValueRef::Null => Ok(None),
            value => value.as_i64().map(Some).map_err(|e| corrupt(format!("{column}: {e}"))),
        }
    }
}

fn text<'r>(row: &'r impl Cells, column: &'static str) -> Result<&'r str, PersistError> {
    row.text(column)?.ok_or_else(|| corrupt(format!("{column} is NULL")))
}

fn int(row: &impl Cells, column: &'static str) -> Result<i64, PersistError> {
    row.int(column)?.ok_or_else(|| corrupt(format!("{column} is NULL")))
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
pub(crate) fn tenant(row: &impl Cells) -> Result<Option<TenantId>, PersistError> {
    match text(row, "tenant")? {
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

/// The `content_form` of a content stored as one text block's JSON string literal (see
/// [`stored_content`]).
pub(crate) const TEXT_BLOCK: i64 = 1;

/// What the `content` and `content_form` columns hold for `content`: with `compact` (the store's
/// format level is 1, see `migrations/0015`), a content that is one text block as
/// [`Content::text`] writes it is stored as its text's JSON string literal alone, form
/// [`TEXT_BLOCK`]; any other content (and every content at level 0) as its JSON, form NULL.
pub(crate) fn stored_content(content: &Content, compact: bool) -> (Cow<'_, str>, Option<i64>) {
    match content.text_block_json() {
        Some(literal) if compact => (Cow::Borrowed(literal), Some(TEXT_BLOCK)),
        _ => (content.as_json(), None),
    }
}

/// The content the `content` and `content_form` columns hold (see [`stored_content`]).
fn content(row: &impl Cells) -> Result<Content, PersistError> {
    let stored = text(row, "content")?;
    let content = match row.int("content_form")? {
        None => Content::from_json(stored),
        Some(TEXT_BLOCK) => Content::from_text_block_json(stored),
        Some(form) => return Err(corrupt(format!("unknown content_form {form}"))),
    };
    content.map_err(|e| corrupt(e.to_string()))
}

pub(crate) fn message(row: &impl Cells) -> Result<Message, PersistError> {
    let content = content(row)?;
    let status = text(row, "status")?;
    let status = Status::parse(status).ok_or_else(|| corrupt(format!("unknown status {status:?}")))?;
    Ok(Message {
        thread_id: ThreadId::new(text(row, "thread_id")?).map_err(|e| corrupt(e.to_string()))?,
        id: MessageId::new(text(row, "message_id")?).map_err(|e| corrupt(e.to_string()))?,
        role: Role::new(text(row, "role")?).map_err(|e| corrupt(e.to_string()))?,
        content,
        metadata: metadata(text(row, "metadata")?)?,
        status,
        seq: unsigned(int(row, "seq")?, "seq")?,
        parent_seq: parent(row, "seq", "parent_seq")?,
        version: unsigned(int(row, "version")?, "version")?,
        idempotency_key: row
            .text("idempotency_key")?
            .map(IdempotencyKey::new)
            .transpose()
            .map_err(|e| corrupt(e.to_string()))?,
        created_at: Timestamp::from_micros(int(row, "created_at")?),
        updated_at: Timestamp::from_micros(int(row, "updated_at")?),
    })
}

/// The parent of the message of a row, from its stored form (see
/// [`stored_parent`](persist_core::branch::stored_parent)).
pub(crate) fn parent(row: &impl Cells, seq: &'static str, stored: &'static str) -> Result<Option<u64>, PersistError> {
    let seq = unsigned(int(row, seq)?, "seq")?;
    let stored = row.int(stored)?.map(|parent| unsigned(parent, "parent_seq")).transpose()?;
    Ok(persist_core::branch::parent_from_stored(seq, stored))
}

pub(crate) fn thread(row: &impl Cells) -> Result<Thread, PersistError> {
    Ok(Thread {
        id: ThreadId::new(text(row, "thread_id")?).map_err(|e| corrupt(e.to_string()))?,
        tenant: tenant(row)?,
        title: row.text("title")?.map(str::to_owned),
        metadata: metadata(text(row, "metadata")?)?,
        version: unsigned(int(row, "version")?, "version")?,
        created_at: Timestamp::from_micros(int(row, "created_at")?),
        updated_at: Timestamp::from_micros(int(row, "updated_at")?),
        last_seq: unsigned(int(row, "last_seq")?, "last_seq")?,
        message_count: unsigned(int(row, "message_count")?, "message_count")?,
        active_leaf: row.int("active_leaf")?.map(|seq| unsigned(seq, "active_leaf")).transpose()?,
        deleted_at: row.int("deleted_at")?.map(Timestamp::from_micros),
    })
}

/// The session-binding columns.
macro_rules! binding_columns {
    () => {
        "agent_id, thread_id, session_id, provider, runtime_id, work_dir, state, created_at, updated_at"
    };
}
pub(crate) use binding_columns;

pub(crate) fn binding(row: &impl Cells) -> Result<(SessionBinding, BindingState), PersistError> {
    let bad = |e: PersistError| corrupt(e.to_string());
    let state = text(row, "state")?;
    let state = BindingState::parse(state).ok_or_else(|| corrupt(format!("unknown binding state {state:?}")))?;
    let binding = SessionBinding {
        agent_id: AgentId::new(text(row, "agent_id")?).map_err(bad)?,
        thread_id: ThreadId::new(text(row, "thread_id")?).map_err(bad)?,
        session_id: SessionId::new(text(row, "session_id")?).map_err(bad)?,
        provider: ProviderId::new(text(row, "provider")?).map_err(bad)?,
        runtime_id: row.text("runtime_id")?.map(RuntimeId::new).transpose().map_err(bad)?,
        work_dir: row.text("work_dir")?.map(str::to_owned),
        created_at: Timestamp::from_micros(int(row, "created_at")?),
        updated_at: Timestamp::from_micros(int(row, "updated_at")?),
    };
    Ok((binding, state))
}

/// JSON text of a value, for binding.
pub(crate) fn json(value: &impl serde::Serialize) -> Result<String, PersistError> {
    serde_json::to_string(value).map_err(|e| PersistError::backend("encoding JSON", e))
}

/// The summary columns, in the order [`summary`] reads them by name.
macro_rules! summary_columns {
    () => {
        "thread_id, from_seq, through_seq, content, metadata, created_at"
    };
}
pub(crate) use summary_columns;

pub(crate) fn summary(row: &impl Cells) -> Result<persist_core::summary::Summary, PersistError> {
    Ok(persist_core::summary::Summary::new(
        ThreadId::new(text(row, "thread_id")?).map_err(|e| corrupt(e.to_string()))?,
        unsigned(int(row, "from_seq")?, "from_seq")?,
        unsigned(int(row, "through_seq")?, "through_seq")?,
        Content::from_json(text(row, "content")?).map_err(|e| corrupt(e.to_string()))?,
        metadata(text(row, "metadata")?)?,
        Timestamp::from_micros(int(row, "created_at")?),
    ))
}
