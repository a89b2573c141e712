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

/// The columns of `persist_messages` (`migrations/0017`) [`message`] reads by name, the thread's
/// id given by `$thread_id`, the statement's parameter for a statement on one thread, or, with
/// `keyed` (a statement over several threads), looked up by the row's `thread` key.
macro_rules! message_columns {
    (keyed) => {
        message_columns!("(SELECT k.thread_id FROM threads k WHERE k.key = thread)")
    };
    ($thread_id:literal) => {
        concat!(
            $thread_id,
            " AS thread_id, message_id, seq, parent_seq, role, content, content_form, metadata, status, version, \
             idempotency_key, created_at, updated_at"
        )
    };
}
pub(crate) use message_columns;

/// The key (`threads.key`) of the thread `(tenant, thread_id)`, the value of a
/// `persist_messages.thread` column: NULL when there is no such thread.
macro_rules! thread_key {
    ($tenant:literal, $thread_id:literal) => {
        concat!("(SELECT key FROM threads WHERE tenant = ", $tenant, " AND thread_id = ", $thread_id, ")")
    };
}
pub(crate) use thread_key;

/// A role as `persist_messages` stores it: the four common roles as the numbers 0 to 3, any
/// other by its name (see [`Cells::role`]).
macro_rules! packed_role {
    ($role:literal) => {
        concat!(
            "CASE ",
            $role,
            " WHEN 'user' THEN 0 WHEN 'assistant' THEN 1 WHEN 'system' THEN 2 WHEN 'tool' THEN 3 \
                  ELSE ",
            $role,
            " END"
        )
    };
}
pub(crate) use packed_role;

/// ` AND $column IN (…)`: the message's role (in `$column`, stored as [`packed_role!`] stores
/// it) is one of the names in the JSON array bound at `$roles`.
macro_rules! role_in {
    ($column:literal, $roles:literal) => {
        concat!(
            " AND ",
            $column,
            " IN (SELECT ",
            crate::rows::packed_role!("wanted.value"),
            " FROM json_each(",
            $roles,
            ") AS wanted)"
        )
    };
}
pub(crate) use role_in;

/// The roles of a listing of some roles, as the JSON array [`role_in!`] reads; `None` for a
/// listing of every role.
pub(crate) fn role_names(query: &persist_core::read::ListMessages) -> Option<String> {
    query.role_names().map(|names| serde_json::Value::from(names).to_string())
}

/// A message id as `persist_messages` (and the feed's `persist_events`) store it: a UUID in its
/// canonical text (36 lowercase characters) as its 16 bytes, any other id as its text (the same
/// test as the triggers of `migrations/0016` and `0017`).
macro_rules! packed_id {
    ($id:literal) => {
        concat!(
            "CASE WHEN length(",
            $id,
            ") = 36 AND ",
            $id,
            " NOT GLOB '*[^0-9a-f-]*' \
                   AND substr(",
            $id,
            ", 9, 1) || substr(",
            $id,
            ", 14, 1) || substr(",
            $id,
            ", 19, 1) \
                       || substr(",
            $id,
            ", 24, 1) = '----' AND length(unhex(",
            $id,
            ", '-')) = 16 \
              THEN unhex(",
            $id,
            ", '-') ELSE ",
            $id,
            " END"
        )
    };
}
pub(crate) use packed_id;

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
    /// The message id in `column`, stored as [`packed_id!`] stores it.
    fn message_id(&self, column: &'static str) -> Result<MessageId, PersistError>;
    /// The role in `column`, stored as [`packed_role!`] stores it.
    fn role(&self, column: &'static str) -> Result<Role, PersistError>;
}

/// The message id of a stored value: 16 bytes are a UUID (its canonical text), any text the id.
fn unpack(column: &str, bytes: Option<&[u8]>, text: Option<&str>) -> Result<MessageId, PersistError> {
    let id = match (bytes, text) {
        (Some(bytes), _) => {
            let uuid = uuid::Uuid::from_slice(bytes).map_err(|e| corrupt(format!("{column}: {e}")))?;
            MessageId::new(uuid.hyphenated().encode_lower(&mut [0; uuid::fmt::Hyphenated::LENGTH]))
        }
        (None, Some(text)) => MessageId::new(text),
        (None, None) => return Err(corrupt(format!("{column} is NULL"))),
    };
    id.map_err(|e| corrupt(e.to_string()))
}

impl Cells for SqliteRow {
    fn text(&self, column: &'static str) -> Result<Option<&str>, PersistError> {
        self.try_get(column).map_err(|e| map_sqlx("reading a row", e))
    }

    fn int(&self, column: &'static str) -> Result<Option<i64>, PersistError> {
        self.try_get(column).map_err(|e| map_sqlx("reading a row", e))
    }

    fn message_id(&self, column: &'static str) -> Result<MessageId, PersistError> {
        use sqlx::{TypeInfo, ValueRef};
        let value = self.try_get_raw(column).map_err(|e| map_sqlx("reading a row", e))?;
        if !value.is_null() && value.type_info().name() == "BLOB" {
            let bytes: &[u8] = self.try_get(column).map_err(|e| map_sqlx("reading a row", e))?;
            unpack(column, Some(bytes), None)
        } else {
            unpack(column, None, self.text(column)?)
        }
    }

    fn role(&self, column: &'static str) -> Result<Role, PersistError> {
        match self.try_get::<Option<i64>, _>(column) {
            Ok(Some(code)) => role_of(column, code),
            _ => Role::new(text(self, column)?).map_err(|e| corrupt(e.to_string())),
        }
    }
}

impl Cells for rusqlite::Row<'_> {
    fn text(&self, column: &'static str) -> Result<Option<&str>, PersistError> {
        text_in(column, cell(self, column)?)
    }

    fn int(&self, column: &'static str) -> Result<Option<i64>, PersistError> {
        int_in(column, cell(self, column)?)
    }

    fn message_id(&self, column: &'static str) -> Result<MessageId, PersistError> {
        message_id_in(column, cell(self, column)?)
    }

    fn role(&self, column: &'static str) -> Result<Role, PersistError> {
        role_in_cell(column, cell(self, column)?)
    }
}

/// A rusqlite row of a statement whose first columns are [`message_columns!`]'s, which
/// [`MessageReader::of`] checked once for the statement: its cells are read by place, without
/// asking SQLite each column's name again.
struct Placed<'r, 's>(&'r rusqlite::Row<'s>);

impl Cells for Placed<'_, '_> {
    fn text(&self, column: &'static str) -> Result<Option<&str>, PersistError> {
        text_in(column, placed_cell(self.0, column)?)
    }

    fn int(&self, column: &'static str) -> Result<Option<i64>, PersistError> {
        int_in(column, placed_cell(self.0, column)?)
    }

    fn message_id(&self, column: &'static str) -> Result<MessageId, PersistError> {
        message_id_in(column, placed_cell(self.0, column)?)
    }

    fn role(&self, column: &'static str) -> Result<Role, PersistError> {
        role_in_cell(column, placed_cell(self.0, column)?)
    }
}

/// Reads the messages of one statement's rows (see [`message`]): by place when the statement's
/// columns begin as [`message_columns!`] writes them, by name otherwise.
pub(crate) struct MessageReader {
    placed: bool,
}

impl MessageReader {
    /// The reader of `statement`'s rows.
    pub(crate) fn of(statement: &rusqlite::Statement<'_>) -> Self {
        let placed = MESSAGE_COLUMNS
            .iter()
            .enumerate()
            .all(|(index, name)| statement.column_name(index).is_ok_and(|found| found == *name));
        Self { placed }
    }

    /// The message `row` holds.
    pub(crate) fn message(&self, row: &rusqlite::Row<'_>) -> Result<Message, PersistError> {
        if self.placed { message(&Placed(row)) } else { message(row) }
    }
}

/// The columns [`message_columns!`] selects, in its order.
const MESSAGE_COLUMNS: [&str; 13] = [
    "thread_id",
    "message_id",
    "seq",
    "parent_seq",
    "role",
    "content",
    "content_form",
    "metadata",
    "status",
    "version",
    "idempotency_key",
    "created_at",
    "updated_at",
];

/// Where [`message_columns!`] puts `column` (`None`: not one of its columns).
fn place(column: &str) -> Option<usize> {
    MESSAGE_COLUMNS.iter().position(|name| *name == column)
}

/// The value in `column` of a rusqlite row. rusqlite finds a column by name by asking SQLite
/// for each column's name in turn until one matches (a call and a UTF-8 check each); a
/// message's columns are first looked for where [`message_columns!`] puts them (one call).
fn cell<'r>(row: &'r rusqlite::Row<'_>, column: &'static str) -> Result<rusqlite::types::ValueRef<'r>, PersistError> {
    let statement = row.as_ref();
    let placed = place(column).filter(|&at| statement.column_name(at).is_ok_and(|name| name == column));
    cell_at(row, column, placed)
}

/// [`cell`] for a row of a statement [`MessageReader::of`] found placed: no name asked.
fn placed_cell<'r>(
    row: &'r rusqlite::Row<'_>,
    column: &'static str,
) -> Result<rusqlite::types::ValueRef<'r>, PersistError> {
    cell_at(row, column, place(column))
}

/// The value in `column`, at `placed` when known, else found by its name.
fn cell_at<'r>(
    row: &'r rusqlite::Row<'_>,
    column: &'static str,
    placed: Option<usize>,
) -> Result<rusqlite::types::ValueRef<'r>, PersistError> {
    match placed {
        Some(at) => row.get_ref(at),
        None => row.get_ref(column),
    }
    .map_err(|e| PersistError::backend("reading a row", e))
}

fn text_in<'r>(column: &str, value: rusqlite::types::ValueRef<'r>) -> Result<Option<&'r str>, PersistError> {
    match value {
        rusqlite::types::ValueRef::Null => Ok(None),
        value => value.as_str().map(Some).map_err(|e| corrupt(format!("{column}: {e}"))),
    }
}

fn int_in(column: &str, value: rusqlite::types::ValueRef<'_>) -> Result<Option<i64>, PersistError> {
    match value {
        rusqlite::types::ValueRef::Null => Ok(None),
        value => value.as_i64().map(Some).map_err(|e| corrupt(format!("{column}: {e}"))),
    }
}

fn message_id_in(column: &str, value: rusqlite::types::ValueRef<'_>) -> Result<MessageId, PersistError> {
    match value {
        rusqlite::types::ValueRef::Blob(bytes) => unpack(column, Some(bytes), None),
        rusqlite::types::ValueRef::Null => unpack(column, None, None),
        value => unpack(column, None, Some(value.as_str().map_err(|e| corrupt(format!("{column}: {e}")))?)),
    }
}

fn role_in_cell(column: &str, value: rusqlite::types::ValueRef<'_>) -> Result<Role, PersistError> {
    match value {
        rusqlite::types::ValueRef::Integer(code) => role_of(column, code),
        rusqlite::types::ValueRef::Text(name) => {
            Role::new(std::str::from_utf8(name).map_err(|e| corrupt(format!("{column}: {e}")))?)
                .map_err(|e| corrupt(e.to_string()))
        }
        other => Err(corrupt(format!("{column}: a role of type {}", other.data_type()))),
    }
}

/// The role a number stands for (see [`packed_role!`]).
fn role_of(column: &str, code: i64) -> Result<Role, PersistError> {
    match code {
        0 => Ok(Role::User),
        1 => Ok(Role::Assistant),
        2 => Ok(Role::System),
        3 => Ok(Role::Tool),
        code => Err(corrupt(format!("{column}: unknown role {code}"))),
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

/// The `tenant` column's value: the tenant's id, `''` for the threads without a tenant.
pub(crate) use persist_core::raw::tenant_key;

/// The tenant a `tenant` column holds.
pub(crate) fn tenant(row: &impl Cells) -> Result<Option<TenantId>, PersistError> {
    persist_core::raw::tenant_from_key(text(row, "tenant")?).map_err(|e| corrupt(e.to_string()))
}

pub(crate) fn signed(value: u64) -> i64 {
    // Counters and versions start at 0/1 and grow by one per write: they never reach 2^63.
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn metadata(text: &str) -> Result<Metadata, PersistError> {
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|e| corrupt(format!("metadata is not a JSON object: {e}")))?;
    Ok(Metadata::from(object))
}

/// The `content_form` of a content stored as one text block's JSON string literal (see
/// [`stored_content`]).
pub(crate) const TEXT_BLOCK: i64 = 1;

/// What the `content` and `content_form` columns hold for `content`: with `packed` (the store's
/// format level is 1, see `migrations/0015`), a content that is one text block as
/// [`Content::text`] writes it is stored as its text's JSON string literal alone, form
/// [`TEXT_BLOCK`]; any other content (and every content at level 0) as its JSON, form NULL.
pub(crate) fn stored_content(content: &Content, packed: bool) -> (Cow<'_, str>, Option<i64>) {
    match content.text_block_json() {
        Some(literal) if packed => (Cow::Borrowed(literal), Some(TEXT_BLOCK)),
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

/// The status in the `status` column: `persist_messages` stores NULL for what most messages
/// hold (`migrations/0017`), complete.
pub(crate) fn status(row: &impl Cells) -> Result<Status, PersistError> {
    match row.text("status")? {
        None => Ok(Status::Complete),
        Some(status) => Status::parse(status).ok_or_else(|| corrupt(format!("unknown status {status:?}"))),
    }
}

/// The time in the `created_at` column.
pub(crate) fn created_at(row: &impl Cells) -> Result<Timestamp, PersistError> {
    Ok(Timestamp::from_micros(int(row, "created_at")?))
}

pub(crate) fn message(row: &impl Cells) -> Result<Message, PersistError> {
    let content = content(row)?;
    let status = status(row)?;
    let created_at = created_at(row)?;
    Ok(Message {
        thread_id: ThreadId::new(text(row, "thread_id")?).map_err(|e| corrupt(e.to_string()))?,
        id: row.message_id("message_id")?,
        role: row.role("role")?,
        content,
        metadata: row.text("metadata")?.map_or_else(|| Ok(Metadata::default()), metadata)?,
        status,
        seq: unsigned(int(row, "seq")?, "seq")?,
        parent_seq: parent(row, "seq", "parent_seq")?,
        version: unsigned(int(row, "version")?, "version")?,
        idempotency_key: row
            .text("idempotency_key")?
            .map(IdempotencyKey::new)
            .transpose()
            .map_err(|e| corrupt(e.to_string()))?,
        created_at,
        updated_at: row.int("updated_at")?.map_or(created_at, Timestamp::from_micros),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_looks_for_each_column_where_message_columns_puts_it() {
        let names: Vec<&str> =
            message_columns!("?1").split(", ").map(|column| column.rsplit(' ').next().unwrap_or(column)).collect();
        assert_eq!(names, MESSAGE_COLUMNS);
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!("CREATE TABLE m ({})", &MESSAGE_COLUMNS[1..].join(", "))).unwrap();
        let placed = conn.prepare(concat!("SELECT ", message_columns!("'t'"), ", 1 AS tenant FROM m")).unwrap();
        assert!(MessageReader::of(&placed).placed);
        // Other columns first, or the same ones in another order: read by name.
        for sql in [
            concat!("SELECT 1 AS tenant, ", message_columns!("'t'"), " FROM m"),
            "SELECT message_id, 't' AS thread_id, seq FROM m",
        ] {
            assert!(!MessageReader::of(&conn.prepare(sql).unwrap()).placed, "{sql}");
        }
    }
}
