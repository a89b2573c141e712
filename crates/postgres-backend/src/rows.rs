//! Rows to values.

use persist_core::session::{BindingState, SessionBinding};
use persist_core::{
    AgentId, Content, IdempotencyKey, Message, MessageId, Metadata, PersistError, ProviderId, Role, RuntimeId,
    SessionId, Status, TenantId, Thread, ThreadId, Timestamp,
};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::error::{corrupt, map_sqlx};

/// The message columns, JSON as text, in the names [`message`] reads.
macro_rules! message_columns {
    () => {
        "thread_id, message_id, seq, parent_seq, role, content::text AS content, content_form, \
         metadata::text AS metadata, status, version, idempotency_key, created_at, updated_at"
    };
}
pub(crate) use message_columns;

/// What a statement stores in `content` for a content parameter `$c` with its flag `$b` (see
/// [`content_param`]): a text block's text alone in a finished store (format 1 and later: a
/// build that reads the form runs everywhere), else the content as JSON.
///
/// The store's format is read by the statement itself (a subquery run once a statement,
/// whatever its rows), so an instance never writes a form its store cannot read yet however long
/// ago it connected. The server functions of version 11 (`persist_stored_content`, kept for the
/// statements of builds before) did the same per row, about 50 µs a row: three calls of a
/// function that sets its `search_path`, about a tenth of one caller's adds.
macro_rules! stored_content {
    ($c:literal, $b:literal) => {
        concat!(
            "CASE WHEN ",
            $b,
            " AND (SELECT level FROM persist_format) >= 1 THEN ",
            $c,
            "::jsonb \
                  WHEN ",
            $b,
            " THEN jsonb_build_array(jsonb_build_object('text', ",
            $c,
            "::jsonb, 'type', 'text')) \
                  ELSE ",
            $c,
            "::jsonb END"
        )
    };
}
pub(crate) use stored_content;

/// The `content_form` a statement stores beside [`stored_content!`]'s content.
macro_rules! stored_form {
    ($b:literal) => {
        concat!("CASE WHEN ", $b, " AND (SELECT level FROM persist_format) >= 1 THEN 1::smallint END")
    };
}
pub(crate) use stored_form;

/// A content as the statements of [`stored_content!`] take it: one text block's text as its JSON
/// string literal and `true`, or the content's JSON and `false`.
pub(crate) fn content_param(content: &Content) -> (std::borrow::Cow<'_, str>, bool) {
    match content.text_block_json() {
        Some(literal) => (std::borrow::Cow::Borrowed(literal), true),
        None => (for_jsonb(content.as_json()), false),
    }
}

/// JSON text as `jsonb` keeps its numbers' kinds: a double written with an exponent that is a
/// whole number of 64-bit range (`8.9201813375189e16`) is written out with a fraction
/// (`89201813375189000.0`). `jsonb` stores numbers as `numeric`, which writes such a number back
/// as an integer (`89201813375189000`), read as an integer where a double was stored; with a
/// fraction it keeps one. (Beyond 64 bits an integer is read as a double anyway; `numeric` has
/// no negative zero, so `-0.0` comes back `0.0`.)
pub(crate) fn for_jsonb(text: std::borrow::Cow<'_, str>) -> std::borrow::Cow<'_, str> {
    let mut rewritten: Option<String> = None;
    let mut copied = 0;
    for at in persist_core::raw::json_numbers(&text) {
        let token = &text[at.clone()];
        if !token.contains(['e', 'E']) {
            continue;
        }
        let Ok(number) = token.parse::<f64>() else { continue };
        if number.fract() == 0.0 && number.abs() >= 1.0 && number.abs() < 18_446_744_073_709_551_616.0 {
            let out = rewritten.get_or_insert_with(|| String::with_capacity(text.len() + 8));
            out.push_str(&text[copied..at.start]);
            out.push_str(&format!("{number:.1}"));
            copied = at.end;
        }
    }
    match rewritten {
        Some(mut out) => {
            out.push_str(&text[copied..]);
            std::borrow::Cow::Owned(out)
        }
        None => text,
    }
}

/// The thread columns.
macro_rules! thread_columns {
    () => {
        "thread_id, tenant, title, metadata::text AS metadata, version, created_at, updated_at, last_seq, \
         message_count, active_leaf, deleted_at"
    };
}
pub(crate) use thread_columns;

/// The session-binding columns.
macro_rules! binding_columns {
    () => {
        "agent_id, thread_id, session_id, provider, runtime_id, work_dir, state, created_at, updated_at"
    };
}
pub(crate) use binding_columns;

fn get<'r, T>(row: &'r PgRow, column: &'static str) -> Result<T, PersistError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column).map_err(|e| map_sqlx("reading a row", e))
}

fn unsigned(row: &PgRow, column: &'static str) -> Result<u64, PersistError> {
    let value: i64 = get(row, column)?;
    u64::try_from(value).map_err(|_| corrupt(format!("{column} is negative ({value})")))
}

/// The `tenant` column's value: the tenant's id, `''` for the threads without a tenant (no
/// tenant id is empty, so every key column is an ordinary `NOT NULL` one).
fn optional(row: &PgRow, column: &'static str) -> Result<Option<u64>, PersistError> {
    let value: Option<i64> = get(row, column)?;
    value.map(|value| u64::try_from(value).map_err(|_| corrupt(format!("{column} is negative ({value})")))).transpose()
}

/// The parent of a row's message, from its stored form (see
/// [`stored_parent`](persist_core::branch::stored_parent)).
pub(crate) fn parent(row: &PgRow) -> Result<Option<u64>, PersistError> {
    Ok(persist_core::branch::parent_from_stored(unsigned(row, "seq")?, optional(row, "parent_seq")?))
}

pub(crate) use persist_core::raw::tenant_key;

/// The tenant a `tenant` column holds.
pub(crate) fn tenant(row: &PgRow) -> Result<Option<TenantId>, PersistError> {
    persist_core::raw::tenant_from_key(get::<&str>(row, "tenant")?).map_err(bad)
}

/// A version or seq as PostgreSQL's `BIGINT`.
pub(crate) fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn json(row: &PgRow, column: &'static str) -> Result<serde_json::Value, PersistError> {
    let text: &str = get(row, column)?;
    serde_json::from_str(text).map_err(|e| corrupt(format!("{column} is not JSON: {e}")))
}

/// A stored id or role that no longer validates.
fn bad(error: PersistError) -> PersistError {
    corrupt(error.to_string())
}

/// The `content_form` of a content stored as its one text block's text alone (see
/// `migrations/0011`).
const TEXT_BLOCK: i16 = 1;

/// The content the `content` and `content_form` columns hold: JSON, or one text block's text.
fn content(row: &PgRow) -> Result<Content, PersistError> {
    match get::<Option<i16>>(row, "content_form")? {
        None => Ok(Content::new(json(row, "content")?)),
        Some(TEXT_BLOCK) => match json(row, "content")? {
            serde_json::Value::String(text) => Ok(Content::text(text)),
            other => Err(corrupt(format!("a text block's content is not a string: {other}"))),
        },
        Some(form) => Err(corrupt(format!("unknown content_form {form}"))),
    }
}

pub(crate) fn message(row: &PgRow) -> Result<Message, PersistError> {
    let status = get::<&str>(row, "status")?;
    let status = Status::parse(status).ok_or_else(|| corrupt(format!("unknown status {status:?}")))?;
    let key: Option<&str> = get(row, "idempotency_key")?;
    Ok(Message {
        thread_id: ThreadId::new(get::<&str>(row, "thread_id")?).map_err(bad)?,
        id: MessageId::new(get::<&str>(row, "message_id")?).map_err(bad)?,
        role: Role::new(get::<&str>(row, "role")?).map_err(bad)?,
        content: content(row)?,
        metadata: Metadata::try_from(json(row, "metadata")?).map_err(|e| corrupt(e.to_string()))?,
        status,
        seq: unsigned(row, "seq")?,
        parent_seq: parent(row)?,
        version: unsigned(row, "version")?,
        idempotency_key: key.map(|k| IdempotencyKey::new(k).map_err(bad)).transpose()?,
        created_at: Timestamp::from_micros(get(row, "created_at")?),
        updated_at: Timestamp::from_micros(get(row, "updated_at")?),
    })
}

pub(crate) fn thread(row: &PgRow) -> Result<Thread, PersistError> {
    let deleted_at: Option<i64> = get(row, "deleted_at")?;
    Ok(Thread {
        id: ThreadId::new(get::<&str>(row, "thread_id")?).map_err(bad)?,
        tenant: tenant(row)?,
        title: get(row, "title")?,
        metadata: Metadata::try_from(json(row, "metadata")?).map_err(|e| corrupt(e.to_string()))?,
        version: unsigned(row, "version")?,
        created_at: Timestamp::from_micros(get(row, "created_at")?),
        updated_at: Timestamp::from_micros(get(row, "updated_at")?),
        last_seq: unsigned(row, "last_seq")?,
        message_count: unsigned(row, "message_count")?,
        active_leaf: optional(row, "active_leaf")?,
        deleted_at: deleted_at.map(Timestamp::from_micros),
    })
}

pub(crate) fn binding(row: &PgRow) -> Result<(SessionBinding, BindingState), PersistError> {
    let runtime: Option<&str> = get(row, "runtime_id")?;
    let state: &str = get(row, "state")?;
    let state = BindingState::parse(state).ok_or_else(|| corrupt(format!("unknown binding state {state:?}")))?;
    let binding = SessionBinding {
        agent_id: AgentId::new(get::<&str>(row, "agent_id")?).map_err(bad)?,
        thread_id: ThreadId::new(get::<&str>(row, "thread_id")?).map_err(bad)?,
        session_id: SessionId::new(get::<&str>(row, "session_id")?).map_err(bad)?,
        provider: ProviderId::new(get::<&str>(row, "provider")?).map_err(bad)?,
        runtime_id: runtime.map(|r| RuntimeId::new(r).map_err(bad)).transpose()?,
        work_dir: get(row, "work_dir")?,
        created_at: Timestamp::from_micros(get(row, "created_at")?),
        updated_at: Timestamp::from_micros(get(row, "updated_at")?),
    };
    Ok((binding, state))
}

/// JSON text of a value, for binding as `$n::jsonb`.
pub(crate) fn json_text(value: &impl serde::Serialize) -> Result<String, PersistError> {
    let text = serde_json::to_string(value).map_err(|e| PersistError::backend("encoding JSON", e))?;
    Ok(for_jsonb(text.into()).into_owned())
}

/// A [`MessageFilter`](persist_core::read::MessageFilter) as the reads across threads (search,
/// nearest) bind it: the roles' names and the thread filter as JSON text (each `None` when it
/// keeps all), the time range in microseconds.
pub(crate) struct FilterBinds<'a> {
    pub(crate) roles: Option<Vec<&'a str>>,
    pub(crate) thread: Option<String>,
    pub(crate) since: Option<i64>,
    pub(crate) until: Option<i64>,
}

impl<'a> FilterBinds<'a> {
    pub(crate) fn of(filter: &'a persist_core::read::MessageFilter) -> Result<Self, PersistError> {
        let thread = filter.thread_metadata().map(json_text).transpose()?;
        let (since, until) = filter.micros();
        Ok(Self { roles: filter.role_names(), thread, since, until })
    }
}

/// The summary columns, JSON as text, in the names [`summary`] reads.
macro_rules! summary_columns {
    () => {
        "thread_id, from_seq, through_seq, content::text AS content, metadata::text AS metadata, created_at"
    };
}
pub(crate) use summary_columns;

pub(crate) fn summary(row: &PgRow) -> Result<persist_core::summary::Summary, PersistError> {
    Ok(persist_core::summary::Summary::new(
        ThreadId::new(get::<&str>(row, "thread_id")?).map_err(bad)?,
        unsigned(row, "from_seq")?,
        unsigned(row, "through_seq")?,
        Content::new(json(row, "content")?),
        Metadata::try_from(json(row, "metadata")?).map_err(|e| corrupt(e.to_string()))?,
        Timestamp::from_micros(get(row, "created_at")?),
    ))
}

/// The ids of `DELETE … RETURNING seq, message_id` rows, in `seq` order.
pub(crate) fn removed_ids(rows: &[PgRow]) -> Result<Vec<MessageId>, PersistError> {
    let mut removed = rows
        .iter()
        .map(|row| Ok((row.try_get::<i64, _>("seq")?, row.try_get::<String, _>("message_id")?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(|e| map_sqlx("reading deleted ids", e))?;
    removed.sort_unstable();
    removed.into_iter().map(|(_, id)| MessageId::new(id).map_err(|e| corrupt(e.to_string()))).collect()
}

#[cfg(test)]
mod tests {
    use super::for_jsonb;

    #[test]
    fn whole_doubles_written_with_an_exponent_keep_a_fraction_for_jsonb() {
        let cases = [
            (
                r#"[8.9201813375189e16,-9.2e18,1.8e19]"#,
                r#"[89201813375188992.0,-9200000000000000000.0,18000000000000000000.0]"#,
            ),
            // Beyond 64 bits, below 1, fractions and integers: as they are.
            (
                r#"[1e21,1.7976931348623157e308,1e-7,2.5e-3,0.5,100,-3]"#,
                r#"[1e21,1.7976931348623157e308,1e-7,2.5e-3,0.5,100,-3]"#,
            ),
            // Inside strings (escaped quotes too) nothing is a number.
            (r#"{"a\"1e17":"8e16","k":8e16}"#, r#"{"a\"1e17":"8e16","k":80000000000000000.0}"#),
        ];
        for (given, expected) in cases {
            assert_eq!(for_jsonb(given.into()), expected, "{given}");
        }
    }
}
