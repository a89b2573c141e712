//! One write operation as SQL, run by the writer inside its transaction.
//!
//! Each operation first decides, then writes: a request that is refused (`NotFound`,
//! `VersionConflict`, …) is refused before it changes anything, so neighbours in the same
//! group commit are unaffected. The happy path is one or two statements (guards live in the
//! `WHERE` clause, results come back with `RETURNING`, counters move in triggers); when a
//! guarded statement touches no row, a diagnosis query says which rule refused it.

use std::borrow::Cow;
use std::future::poll_fn;

use sqlx::Either;

use persist_core::args::{Delete, Update, UpdateContent};
use persist_core::session::{Bind, BindingState, SessionBinding};
use persist_core::{
    Added, AgentId, ContentUpdated, Deleted, IdempotencyKey, Message, MessageId, Metadata, PersistArgs, PersistError,
    PersistResult, Reserved, RuntimeId, SessionId, Status, Target, TenantId, ThreadId, Timestamp, Updated,
};
use sqlx::SqliteConnection;

use crate::Limits;
use crate::error::map_sqlx;
use crate::rows::{self, binding_columns, json, message_columns, signed, tenant_key, thread_columns};

/// Why an operation did not produce a result.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Refused by a rule before anything was written; the transaction goes on.
    Refused(PersistError),
    /// The database failed, possibly mid-write; the transaction must be rolled back.
    Aborted(PersistError),
}

pub(crate) type OpResult<T> = Result<T, Failure>;

pub(crate) fn sql(context: &'static str) -> impl FnOnce(sqlx::Error) -> Failure {
    move |error| Failure::Aborted(map_sqlx(context, error))
}

pub(crate) fn aborted(error: PersistError) -> Failure {
    Failure::Aborted(error)
}

pub(crate) fn refused(error: PersistError) -> Failure {
    Failure::Refused(error)
}

/// A write the writer applies: a message write from the pipeline, or a session-binding change.
pub(crate) enum Write {
    Persist(PersistArgs),
    Bind(Bind),
    /// Moves the binding of (tenant, agent, thread) to `to`; with `only_session`, only if it is
    /// active and points at that session (compare-and-set).
    Mark {
        tenant: Option<TenantId>,
        agent_id: AgentId,
        thread_id: ThreadId,
        only_session: Option<SessionId>,
        to: BindingState,
    },
}

/// The answer to a [`Write`].
pub(crate) enum Answer {
    Persist(PersistResult),
    Bound(SessionBinding),
    Marked(bool),
}

/// Applies one write. The caller owns the transaction.
pub(crate) async fn apply(conn: &mut SqliteConnection, write: &Write, limits: &Limits) -> OpResult<Answer> {
    match write {
        Write::Persist(args) => persist(conn, args, limits).await.map(Answer::Persist),
        Write::Bind(bind) => bind_session(conn, bind).await.map(Answer::Bound),
        Write::Mark { tenant, agent_id, thread_id, only_session, to } => {
            let marked = sqlx::query(
                "UPDATE session_bindings SET state = ?4, updated_at = ?5 \
                  WHERE tenant = ?6 AND agent_id = ?1 AND thread_id = ?2 \
                    AND (?3 IS NULL OR (session_id = ?3 AND state = 'active'))",
            )
            .bind(agent_id.as_str())
            .bind(thread_id.as_str())
            .bind(only_session.as_ref().map(SessionId::as_str))
            .bind(to.as_str())
            .bind(Timestamp::now().as_micros())
            .bind(tenant_key(tenant.as_ref()))
            .execute(&mut *conn)
            .await
            .map_err(sql("changing a session binding"))?;
            Ok(Answer::Marked(marked.rows_affected() > 0))
        }
    }
}

async fn bind_session(conn: &mut SqliteConnection, bind: &Bind) -> OpResult<SessionBinding> {
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

async fn persist(conn: &mut SqliteConnection, args: &PersistArgs, limits: &Limits) -> OpResult<PersistResult> {
    if let Some(plan) = Insert::plan(args, limits) {
        let plan = plan?;
        let inserted = insert_many(conn, std::slice::from_ref(&plan)).await?.pop().flatten();
        return plan.answer(conn, inserted).await;
    }
    args.validate().map_err(refused)?;
    match args {
        PersistArgs::UpdateContent(update) => {
            Ok(ContentUpdated::new(update_content(conn, update, limits).await?).into())
        }
        PersistArgs::Update(update) => match &update.target {
            Target::Message(id) => Ok(Updated::Message(update_message(conn, update, id, limits).await?).into()),
            Target::Thread => Ok(update_thread(conn, update, limits).await?.into()),
            // Refused by `validate` above.
            Target::MessagesAfter(_) => {
                Err(refused(PersistError::invalid("target", "an update applies to a message or a thread")))
            }
        },
        PersistArgs::Delete(delete) => Ok(match &delete.target {
            Target::Message(id) => delete_message(conn, delete, id).await?,
            Target::Thread => delete_thread(conn, delete).await?,
            Target::MessagesAfter(_) => delete_thread(conn, delete).await?,
        }
        .into()),
        PersistArgs::Restore(restore) => Ok(crate::restore::restore(conn, restore, limits).await?.into()),
        PersistArgs::SetOnce(request) => Ok(PersistResult::Value(set_once(conn, request).await?)),
        other => Err(refused(PersistError::Unsupported { what: format!("operation `{}`", other.op()).into() })),
    }
}

/// Stores the value under its name unless one is there, and answers the one stored.
async fn set_once(conn: &mut SqliteConnection, request: &persist_core::once::SetOnce) -> OpResult<String> {
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

/// Applies a group of writes in the caller's transaction, answering each in order.
///
/// Writes run in queue order; each run of consecutive `add`s and `reserve`s is inserted in
/// **one** round trip (a multi-statement query), everything else one by one.
pub(crate) async fn apply_batch(
    conn: &mut SqliteConnection,
    writes: &[&Write],
    limits: &Limits,
) -> OpResult<Vec<Result<Answer, PersistError>>> {
    let mut out = Vec::with_capacity(writes.len());
    let mut run: Vec<Insert<'_>> = Vec::new();
    for write in writes {
        let plan = match write {
            Write::Persist(args) => Insert::plan(args, limits),
            _ => None,
        };
        match plan {
            Some(Ok(plan)) => {
                // The run's answers take the slots of its writes, in order.
                run.push(plan);
                out.push(pending());
            }
            Some(Err(Failure::Refused(error))) => {
                insert_run(conn, &mut run, &mut out).await?;
                out.push(Err(error));
            }
            Some(Err(aborted)) => return Err(aborted),
            None => {
                insert_run(conn, &mut run, &mut out).await?;
                out.push(match apply(conn, write, limits).await {
                    Ok(answer) => Ok(answer),
                    Err(Failure::Refused(error)) => Err(error),
                    Err(aborted) => return Err(aborted),
                });
            }
        }
    }
    insert_run(conn, &mut run, &mut out).await?;
    Ok(out)
}

/// Commits a group made only of `add`s and `reserve`s in **one** round trip: every insert in
/// one statement that is its own transaction (see [`insert_query`]). `None` when the group
/// holds other writes.
///
/// `Err` means nothing was committed (the transaction was rolled back). Once the query
/// succeeded the group is durable, so what follows (diagnosing inserts that wrote nothing: a
/// repeat or a refusal) answers per write and never fails the group.
pub(crate) async fn commit_inserts(
    conn: &mut SqliteConnection,
    writes: &[&Write],
    limits: &Limits,
) -> Option<OpResult<Vec<Result<Answer, PersistError>>>> {
    let mut plans = Vec::with_capacity(writes.len());
    for write in writes {
        match write {
            Write::Persist(args) => plans.push(Insert::plan(args, limits)?),
            _ => return None,
        }
    }
    let mut answers: Vec<Result<Answer, PersistError>> = Vec::with_capacity(plans.len());
    let (mut runnable, mut slots) = (Vec::with_capacity(plans.len()), Vec::with_capacity(plans.len()));
    for plan in plans {
        match plan {
            Ok(plan) => {
                slots.push(answers.len());
                runnable.push(plan);
                // Overwritten below, once the group committed.
                answers.push(pending());
            }
            Err(Failure::Refused(error)) => answers.push(Err(error)),
            Err(aborted) => return Some(Err(aborted)),
        }
    }
    if runnable.is_empty() {
        return Some(Ok(answers));
    }
    let inserted = match insert_query(conn, &runnable, true).await {
        Ok(inserted) => inserted,
        // Nothing was committed (see `insert_query`): the connection is outside any transaction.
        Err(failure) => return Some(Err(failure)),
    };
    for ((plan, row), slot) in runnable.iter().zip(inserted).zip(slots) {
        answers[slot] = match row.transpose() {
            Ok(row) => match plan.answer(conn, row).await {
                Ok(result) => Ok(Answer::Persist(result)),
                Err(Failure::Refused(error) | Failure::Aborted(error)) => Err(error),
            },
            Err(unreadable) => Err(PersistError::Backend {
                message: format!("the write was committed but cannot be read back: {unreadable}").into(),
                source: None,
            }),
        };
    }
    Some(Ok(answers))
}

/// The slot of an insert whose answer is filled in once its run is written.
fn pending() -> Result<Answer, PersistError> {
    Err(PersistError::Backend { message: "the writer did not answer this write".into(), source: None })
}

/// Inserts a run of planned writes and fills their answers, the last `run.len()` of `out`.
async fn insert_run(
    conn: &mut SqliteConnection,
    run: &mut Vec<Insert<'_>>,
    out: &mut [Result<Answer, PersistError>],
) -> OpResult<()> {
    if run.is_empty() {
        return Ok(());
    }
    let inserted = insert_many(conn, run).await?;
    let first = out.len() - run.len();
    for ((plan, row), slot) in run.iter().zip(inserted).zip(&mut out[first..]) {
        *slot = match plan.answer(conn, row).await {
            Ok(result) => Ok(Answer::Persist(result)),
            Err(Failure::Refused(error)) => Err(error),
            Err(aborted) => return Err(aborted),
        };
    }
    run.clear();
    Ok(())
}

/// A planned `add` or `reserve`, its id fixed (generated now when the request named none).
struct Insert<'a> {
    args: &'a PersistArgs,
    thread_id: &'a ThreadId,
    id: MessageId,
    role: &'a persist_core::Role,
    /// Checked against the limits; a reservation's placeholder.
    content: persist_core::Content,
    given_metadata: &'a Metadata,
    metadata: String,
    status: Status,
    idempotency_key: Option<&'a IdempotencyKey>,
    tenant: Option<&'a TenantId>,
}

impl<'a> Insert<'a> {
    /// `None` unless `args` is an add or a reserve; `Some(Err)` when it is refused up front.
    fn plan(args: &'a PersistArgs, limits: &Limits) -> Option<OpResult<Self>> {
        let plan = match args {
            PersistArgs::Add(add) => args.validate().map_err(refused).and_then(|()| {
                Ok(Insert {
                    args,
                    thread_id: &add.thread_id,
                    id: add.message_id.clone().unwrap_or_else(MessageId::generate),
                    role: &add.role,
                    content: limits.content(&add.content)?,
                    given_metadata: &add.metadata,
                    metadata: limits.metadata(&add.metadata)?,
                    status: Status::Complete,
                    idempotency_key: add.idempotency_key.as_ref(),
                    tenant: add.context.tenant(),
                })
            }),
            PersistArgs::Reserve(reserve) => args.validate().map_err(refused).and_then(|()| {
                Ok(Insert {
                    args,
                    thread_id: &reserve.thread_id,
                    id: reserve.message_id.clone().unwrap_or_else(MessageId::generate),
                    role: &reserve.role,
                    content: persist_core::Content::placeholder(),
                    given_metadata: &reserve.metadata,
                    metadata: limits.metadata(&reserve.metadata)?,
                    status: Status::Reserved,
                    idempotency_key: reserve.idempotency_key.as_ref(),
                    tenant: reserve.context.tenant(),
                })
            }),
            _ => return None,
        };
        Some(plan)
    }

    /// The message this insert wrote as row `seq` at `now`: exactly the values it bound.
    fn written(&self, seq: u64, now: Timestamp) -> Message {
        Message {
            thread_id: self.thread_id.clone(),
            id: self.id.clone(),
            role: self.role.clone(),
            content: self.content.clone(),
            metadata: self.given_metadata.clone(),
            status: self.status,
            seq,
            version: 1,
            idempotency_key: self.idempotency_key.cloned(),
            created_at: now,
            updated_at: now,
        }
    }

    /// The result of this insert: the row it wrote, or else a diagnosis (a repeat answered
    /// `deduplicated`, or the refusal).
    async fn answer(&self, conn: &mut SqliteConnection, inserted: Option<Message>) -> OpResult<PersistResult> {
        let (message, deduplicated) = match inserted {
            Some(message) => (message, false),
            None => self.diagnose(conn).await?,
        };
        Ok(match self.status {
            Status::Reserved => Reserved::new(message, deduplicated).into(),
            Status::Complete => Added::new(message, deduplicated).into(),
        })
    }

    /// Why nothing was inserted: the thread refused the write, or it repeats an earlier one.
    async fn diagnose(&self, conn: &mut SqliteConnection) -> OpResult<(Message, bool)> {
        let requested = self.args.message_id();
        writable_thread(conn, self.thread_id, self.tenant, requested).await?;
        if let Some(key) = self.idempotency_key {
            let existing = sqlx::query(concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE tenant = ?3 AND thread_id = ?1 AND idempotency_key = ?2"
            ))
            .bind(self.thread_id.as_str())
            .bind(key.as_str())
            .bind(tenant_key(self.tenant))
            .fetch_optional(&mut *conn)
            .await
            .map_err(sql("looking up the idempotency key"))?;
            if let Some(row) = existing {
                let existing = rows::message(&row).map_err(aborted)?;
                return existing.keyed_repeat(self.args).map(|m| (m, true)).map_err(refused);
            }
        }
        let existing = find_message(conn, self.tenant, self.thread_id, &self.id).await?.ok_or_else(|| {
            aborted(PersistError::Backend {
                message: "the insert was refused for no known reason".into(),
                source: None,
            })
        })?;
        if existing.is_repeat_of(self.args) {
            Ok((existing, true))
        } else {
            Err(refused(PersistError::AlreadyExists { thread_id: self.thread_id.clone(), message_id: self.id.clone() }))
        }
    }
}

/// Inserts every planned message in one round trip: per insert, the thread is created if
/// absent, then the message is inserted unless the thread refuses it or the id or key is
/// taken. Answers, per plan, the row written (or `None`).
async fn insert_many(conn: &mut SqliteConnection, plans: &[Insert<'_>]) -> OpResult<Vec<Option<Message>>> {
    // Inside the caller's transaction: an unreadable report aborts it, nothing is committed.
    insert_query(conn, plans, false).await?.into_iter().map(|row| row.transpose().map_err(aborted)).collect()
}

/// One insert: the thread `(tenant, thread_id)` is created if absent, then the message is
/// inserted unless the thread is deleted or its id or idempotency key is taken. Written
/// once, used twice: with the `NEW.…` columns in the inbox's trigger, and with parameters for
/// a group of one (which then reports its seq with `RETURNING`, `$returning`).
macro_rules! insert_one {
    ($thread:literal, $tenant:literal, $id:literal, $role:literal, $content:literal, $metadata:literal,
     $status:literal, $key:literal, $now:literal, $returning:literal) => {
        concat!(
            "INSERT INTO threads (tenant, thread_id, created_at, updated_at) VALUES (",
            $tenant,
            ", ",
            $thread,
            ", ",
            $now,
            ", ",
            $now,
            ") ON CONFLICT (tenant, thread_id) DO NOTHING; ",
            "INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, \
                                   idempotency_key, created_at, updated_at) \
             SELECT t.tenant, t.thread_id, ",
            $id,
            ", t.last_seq + 1, ",
            $role,
            ", ",
            $content,
            ", ",
            $metadata,
            ", ",
            $status,
            ", 1, ",
            $key,
            ", ",
            $now,
            ", ",
            $now,
            " FROM threads t \
              WHERE t.tenant = ",
            $tenant,
            " AND t.thread_id = ",
            $thread,
            " AND t.deleted_at IS NULL ON CONFLICT DO NOTHING",
            $returning,
            ";"
        )
    };
}

/// A group of one insert: the statements of the inbox's trigger, bound directly (no JSON, no
/// trigger, no report table), the seq returned by the insert.
const INSERT_ONE: &str = concat!(
    "BEGIN IMMEDIATE; ",
    insert_one!("?1", "?2", "?3", "?4", "?5", "?6", "?7", "?8", "?9", " RETURNING seq"),
    " COMMIT;"
);

/// The insert of [`APPLY_INBOX`]: the rows of its one JSON array parameter, in order.
macro_rules! inbox_insert {
    () => {
        "INSERT INTO persist_inbox (plan, thread_id, tenant, message_id, role, content, metadata, status, \
                                    idempotency_key, now) \
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, \
                value ->> 7, value ->> 8, value ->> 9 \
           FROM json_each(?) ORDER BY key;"
    };
}

/// The report of [`APPLY_INBOX`]: `plan:seq` for every row its insert wrote.
macro_rules! read_report {
    () => {
        "SELECT group_concat(plan || ':' || seq, ',') AS written FROM persist_written;"
    };
}

/// Empties the report, applies the rows bound as one JSON array (`[[plan, thread_id, tenant,
/// message_id, role, content, metadata, status, idempotency_key, now], …]`) through the inbox,
/// and reads the report back: three statements, one round trip. In autocommit the insert is
/// its own transaction, committed before the report is read: which statement finished tells a
/// failed insert from a committed one whose report could not be read.
const APPLY_INBOX: &str = concat!("DELETE FROM persist_written; ", inbox_insert!(), " ", read_report!());

/// How many statements of [`APPLY_INBOX`] have finished once its insert has: the `DELETE`, then
/// the insert.
const INSERT_FINISHED: usize = 2;

/// The insert alone of the group statement (`APPLY_INBOX`), for the benchmark.
pub const INBOX_INSERT: &str = inbox_insert!();

/// The report alone of the group statement (`APPLY_INBOX`), for the benchmark.
pub const READ_REPORT: &str = read_report!();

/// The writer connection's inbox, created on that connection only (`TEMP`): inserting a row
/// into the `persist_inbox` view creates the thread `(tenant, thread_id)` if it is absent, then
/// inserts the message unless the thread is deleted or its id or idempotency key is taken, and records in `persist_written` which row wrote a message with which `seq`. Rows
/// are applied one at a time, in order, each seeing the rows before it (the thread's
/// `last_seq`, a key an earlier row took).
pub const INBOX: &str = concat!(
    "PRAGMA temp_store = MEMORY; PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = 16384; \
    PRAGMA secure_delete = ON; \
    CREATE TEMP TABLE IF NOT EXISTS persist_written (plan INTEGER NOT NULL, seq INTEGER NOT NULL); \
    CREATE TEMP VIEW IF NOT EXISTS persist_inbox AS \
        SELECT NULL AS plan, NULL AS thread_id, NULL AS tenant, NULL AS message_id, NULL AS role, NULL AS content, \
               NULL AS metadata, NULL AS status, NULL AS idempotency_key, NULL AS now; \
    CREATE TEMP TRIGGER IF NOT EXISTS persist_inbox_insert INSTEAD OF INSERT ON persist_inbox \
    BEGIN ",
    insert_one!(
        "NEW.thread_id",
        "NEW.tenant",
        "NEW.message_id",
        "NEW.role",
        "NEW.content",
        "NEW.metadata",
        "NEW.status",
        "NEW.idempotency_key",
        "NEW.now",
        ""
    ),
    " INSERT INTO persist_written (plan, seq) \
             SELECT NEW.plan, last_seq FROM threads \
              WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id AND changes() > 0; \
    END;"
);

/// The inserts of `plans` in one round trip and a constant number of statements, whatever
/// the group's size; with `transaction`, the whole group commits in that same round trip (one
/// statement in autocommit; a group of one in `BEGIN IMMEDIATE` … `COMMIT`), otherwise it runs
/// in the caller's transaction.
///
/// Every row travels in one JSON array parameter into the writer connection's `persist_inbox`
/// view, whose trigger applies the rows one at a time, in order (see [`INBOX`]). A fixed
/// statement is prepared once, and the connection's worker thread answers with a handful of
/// results instead of three per row: each result is a hand-off between threads.
async fn insert_query(
    conn: &mut SqliteConnection,
    plans: &[Insert<'_>],
    transaction: bool,
) -> OpResult<Vec<Option<Result<Message, PersistError>>>> {
    let now = Timestamp::now();
    if let ([plan], true) = (plans, transaction) {
        return insert_one(conn, plan, now).await;
    }
    let rows: Vec<InboxRow<'_>> = plans
        .iter()
        .enumerate()
        .map(|(index, plan)| {
            (
                index,
                plan.thread_id.as_str(),
                tenant_key(plan.tenant),
                plan.id.as_str(),
                plan.role.as_str(),
                plan.content.as_json(),
                plan.metadata.as_str(),
                plan.status.as_str(),
                plan.idempotency_key.map(IdempotencyKey::as_str),
                now.as_micros(),
            )
        })
        .collect();
    let rows = serde_json::to_string(&rows).map_err(|e| aborted(PersistError::invalid("message", e.to_string())))?;
    // With `transaction`, the inbox insert is the group's transaction on its own (autocommit):
    // one statement commits or rolls back whole, and outside an explicit transaction SQLite
    // keeps no statement journal (a copy of every page the group changes, made in case the
    // statement fails halfway: ≈ 8% of the writer's time with 64 callers). Its write lock is
    // taken as the statement starts, before it reads anything, as `BEGIN IMMEDIATE` would.
    // The three statements go in one round trip (with 64 callers, a second one for the report
    // left SQLite's thread idle between groups: ≈ 12% fewer writes/s); each answers as it
    // finishes: the `DELETE`, the insert, then the report's row and its end. How many finished
    // tells a failed insert from a committed one whose report could not be read.
    let mut results = sqlx::Executor::fetch_many(&mut *conn, sqlx::query(APPLY_INBOX).bind(rows));
    let (mut finished, mut report) = (0, None);
    let failed = loop {
        match poll_fn(|cx| results.as_mut().poll_next(cx)).await {
            Some(Ok(Either::Left(_))) => finished += 1,
            Some(Ok(Either::Right(row))) => report = Some(sqlx::Row::try_get::<Option<String>, _>(&row, "written")),
            Some(Err(error)) => break Some(error),
            None => break None,
        }
    };
    drop(results);
    let report = match (failed, report) {
        // Nothing of the insert stays: in autocommit it is the transaction, and inside the
        // caller's transaction a statement that fails is rolled back whole.
        (Some(error), _) if finished < INSERT_FINISHED => return Err(sql("inserting messages")(error)),
        // Ended before the insert finished without an error: sqlx's connection thread is gone,
        // and the insert with it (its transaction is rolled back when the connection closes).
        (None, _) if finished < INSERT_FINISHED => {
            return Err(sql("inserting messages")(sqlx::Error::WorkerCrashed));
        }
        (Some(error), _) | (None, Some(Err(error))) => Err(error),
        (None, Some(Ok(written))) => Ok(written),
        (None, None) => Err(sqlx::Error::RowNotFound),
    };
    let written = match report {
        Ok(written) => written,
        // Inside the caller's transaction: abort it, nothing is committed.
        Err(error) if !transaction => return Err(sql("reading the insert report")(error)),
        // Committed: the answers fail, never the group (run again, the writes would repeat).
        Err(error) => {
            let unreadable = || PersistError::Backend {
                message: format!("the writes were committed but their report cannot be read: {error}").into(),
                source: None,
            };
            return Ok(plans.iter().map(|_| Some(Err(unreadable()))).collect());
        }
    };
    let written = written.as_deref();
    // Each pair names the plan that wrote a row and the row's seq: a row is never given to
    // another plan (one that was refused, say for a deleted thread, with the same id).
    // An unreadable report fails only the plans it leaves unanswered: with `transaction`, the
    // group is already committed.
    let mut answers: Vec<Option<Result<Message, PersistError>>> = plans.iter().map(|_| None).collect();
    let mut unreadable = None;
    for pair in written.unwrap_or_default().split(',').filter(|pair| !pair.is_empty()) {
        let parsed =
            pair.split_once(':').and_then(|(plan, seq)| Some((plan.parse::<usize>().ok()?, seq.parse().ok()?)));
        match parsed.and_then(|(index, seq)| Some((answers.get_mut(index)?, plans.get(index)?, seq))) {
            Some((slot, plan, seq)) => *slot = Some(Ok(plan.written(seq, now))),
            None => unreadable = Some(pair),
        }
    }
    if let Some(pair) = unreadable {
        for slot in answers.iter_mut().filter(|slot| slot.is_none()) {
            *slot = Some(Err(PersistError::Backend {
                message: format!("the writer could not read its insert report ({pair:?})").into(),
                source: None,
            }));
        }
    }
    Ok(answers)
}

/// The group of one `plan`: [`INSERT_ONE`], committed in one round trip.
async fn insert_one(
    conn: &mut SqliteConnection,
    plan: &Insert<'_>,
    now: Timestamp,
) -> OpResult<Vec<Option<Result<Message, PersistError>>>> {
    // `fetch_all`: sqlx stops a multi-statement query at the first row for `fetch_one`.
    let inserted = sqlx::query(INSERT_ONE)
        .bind(plan.thread_id.as_str())
        .bind(tenant_key(plan.tenant))
        .bind(plan.id.as_str())
        .bind(plan.role.as_str())
        .bind(plan.content.as_json())
        .bind(plan.metadata.as_str())
        .bind(plan.status.as_str())
        .bind(plan.idempotency_key.map(IdempotencyKey::as_str))
        .bind(now.as_micros())
        .fetch_all(&mut *conn)
        .await;
    let rows = match inserted {
        Ok(rows) => rows,
        Err(error) => {
            // A statement failed after `BEGIN` (or `COMMIT` did): nothing of it may stay.
            crate::writer::rollback(conn).await;
            return Err(sql("inserting a message")(error));
        }
    };
    // The group is committed: an unreadable seq fails this answer only.
    let written = rows.first().map(|row| {
        sqlx::Row::try_get::<i64, _>(row, "seq")
            .map_err(|e| PersistError::backend("reading the inserted seq", e))
            .and_then(|seq| u64::try_from(seq).map_err(|_| crate::error::corrupt(format!("seq {seq}"))))
            .map(|seq| plan.written(seq, now))
    });
    Ok(vec![written])
}

/// One row of the inbox parameter: plan, thread, tenant, id, role, content, metadata, status,
/// idempotency key, time.
type InboxRow<'a> = (usize, &'a str, &'a str, &'a str, &'a str, Cow<'a, str>, &'a str, &'a str, Option<&'a str>, i64);

async fn find_message(
    conn: &mut SqliteConnection,
    tenant: Option<&TenantId>,
    thread_id: &ThreadId,
    id: &MessageId,
) -> OpResult<Option<Message>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE tenant = ?3 AND thread_id = ?1 AND message_id = ?2"
    ))
    .bind(thread_id.as_str())
    .bind(id.as_str())
    .bind(tenant_key(tenant))
    .fetch_optional(&mut *conn)
    .await
    .map_err(sql("reading the message"))?;
    row.map(|row| rows::message(&row)).transpose().map_err(aborted)
}

/// The thread's state as a write sees it; refuses absent (`NotFound`) and deleted
/// (`ThreadDeleted`) threads.
async fn writable_thread(
    conn: &mut SqliteConnection,
    thread_id: &ThreadId,
    tenant: Option<&TenantId>,
    message_id: Option<&MessageId>,
) -> OpResult<persist_core::Thread> {
    match find_thread(conn, tenant, thread_id).await? {
        Some(thread) if thread.is_deleted() => {
            Err(refused(PersistError::ThreadDeleted { thread_id: thread_id.clone() }))
        }
        Some(thread) => Ok(thread),
        None => Err(refused(PersistError::not_found(thread_id, message_id))),
    }
}

pub(crate) async fn find_thread(
    conn: &mut SqliteConnection,
    tenant: Option<&TenantId>,
    thread_id: &ThreadId,
) -> OpResult<Option<persist_core::Thread>> {
    let row = sqlx::query(concat!("SELECT ", thread_columns!(), " FROM threads WHERE tenant = ?2 AND thread_id = ?1"))
        .bind(thread_id.as_str())
        .bind(tenant_key(tenant))
        .fetch_optional(&mut *conn)
        .await
        .map_err(sql("reading the thread"))?;
    row.map(|row| rows::thread(&row)).transpose().map_err(aborted)
}

/// Why a guarded write to message `id` touched no row.
async fn diagnose_message(
    conn: &mut SqliteConnection,
    thread_id: &ThreadId,
    id: &MessageId,
    tenant: Option<&TenantId>,
    expected_version: Option<u64>,
    content: Option<&UpdateContent>,
) -> Failure {
    if let Err(failure) = writable_thread(conn, thread_id, tenant, Some(id)).await {
        return failure;
    }
    match find_message(conn, tenant, thread_id, id).await {
        Err(failure) => failure,
        Ok(None) => refused(PersistError::not_found(thread_id, Some(id))),
        Ok(Some(message)) => match expected_version {
            Some(expected) if expected != message.version => refused(PersistError::VersionConflict {
                thread_id: thread_id.clone(),
                message_id: Some(id.clone()),
                expected,
                actual: message.version,
            }),
            _ if let Some(refusal) = content.and_then(|update| update.status_conflict(message.status)) => {
                refused(refusal)
            }
            _ => aborted(PersistError::Backend {
                message: "a guarded write matched no row for no known reason".into(),
                source: None,
            }),
        },
    }
}

async fn update_content(conn: &mut SqliteConnection, update: &UpdateContent, limits: &Limits) -> OpResult<Message> {
    if !update.append {
        return replace_content(conn, update, limits).await;
    }
    // Joined to the stored content (the writer's transaction: nothing changes it meanwhile),
    // then written as a replacement expecting the stored version.
    match find_message(conn, update.context.tenant(), &update.thread_id, &update.message_id).await? {
        Some(stored) => replace_content(conn, &update.resolved(&stored).map_err(refused)?, limits).await,
        // No message to join to: the guarded write finds none either and says why (absent, or
        // its thread deleted).
        None => replace_content(conn, update, limits).await,
    }
}

async fn replace_content(conn: &mut SqliteConnection, update: &UpdateContent, limits: &Limits) -> OpResult<Message> {
    let content = limits.content(&update.content)?;
    let tenant = tenant_key(update.context.tenant());
    let row = sqlx::query(concat!(
        "UPDATE messages \
            SET content = ?3, status = CASE WHEN ?4 THEN 'complete' ELSE status END, \
                version = version + 1, updated_at = ?5 \
          WHERE tenant = ?7 AND thread_id = ?1 AND message_id = ?2 AND (?6 IS NULL OR version = ?6) \
            AND (?4 OR status <> 'complete') \
            AND EXISTS (SELECT 1 FROM threads t WHERE t.tenant = ?7 AND t.thread_id = ?1 \
                                                  AND t.deleted_at IS NULL) \
         RETURNING ",
        message_columns!()
    ))
    .bind(update.thread_id.as_str())
    .bind(update.message_id.as_str())
    .bind(content.as_json())
    .bind(update.finalize)
    .bind(Timestamp::now().as_micros())
    .bind(update.expected_version.map(signed))
    .bind(tenant)
    .fetch_optional(&mut *conn)
    .await
    .map_err(sql("updating the content"))?;
    match row {
        Some(row) => rows::message(&row).map_err(aborted),
        None => Err(diagnose_message(
            conn,
            &update.thread_id,
            &update.message_id,
            update.context.tenant(),
            update.expected_version,
            Some(update),
        )
        .await),
    }
}

async fn update_message(
    conn: &mut SqliteConnection,
    update: &Update,
    id: &MessageId,
    limits: &Limits,
) -> OpResult<Message> {
    let tenant = update.context.tenant();
    writable_thread(conn, &update.thread_id, tenant, Some(id)).await?;
    let Some(mut message) = find_message(conn, tenant, &update.thread_id, id).await? else {
        return Err(refused(PersistError::not_found(&update.thread_id, Some(id))));
    };
    if let Some(expected) = update.expected_version.filter(|&v| v != message.version) {
        return Err(refused(PersistError::VersionConflict {
            thread_id: update.thread_id.clone(),
            message_id: Some(id.clone()),
            expected,
            actual: message.version,
        }));
    }
    // A read-merge-write is safe here: the writer holds the database's write lock.
    if let Some(patch) = &update.metadata {
        message.metadata.merge(patch);
    }
    let role = update.role.as_ref().unwrap_or(&message.role);
    let row = sqlx::query(concat!(
        "UPDATE messages SET metadata = ?3, role = ?4, version = version + 1, updated_at = ?5 \
          WHERE tenant = ?6 AND thread_id = ?1 AND message_id = ?2 RETURNING ",
        message_columns!()
    ))
    .bind(update.thread_id.as_str())
    .bind(id.as_str())
    .bind(limits.metadata(&message.metadata)?)
    .bind(role.as_str())
    .bind(Timestamp::now().as_micros())
    .bind(tenant_key(tenant))
    .fetch_one(&mut *conn)
    .await
    .map_err(sql("updating the message"))?;
    rows::message(&row).map_err(aborted)
}

async fn update_thread(conn: &mut SqliteConnection, update: &Update, limits: &Limits) -> OpResult<Updated> {
    let mut thread = writable_thread(conn, &update.thread_id, update.context.tenant(), None).await?;
    if let Some(expected) = update.expected_version.filter(|&v| v != thread.version) {
        return Err(refused(PersistError::VersionConflict {
            thread_id: update.thread_id.clone(),
            message_id: None,
            expected,
            actual: thread.version,
        }));
    }
    if let Some(patch) = &update.metadata {
        thread.metadata.merge(patch);
    }
    if let Some(title) = &update.title {
        thread.title = title.clone();
    }
    let row = sqlx::query(concat!(
        "UPDATE threads SET metadata = ?2, title = ?3, version = version + 1, updated_at = ?4 \
          WHERE tenant = ?5 AND thread_id = ?1 RETURNING ",
        thread_columns!()
    ))
    .bind(update.thread_id.as_str())
    .bind(limits.metadata(&thread.metadata)?)
    .bind(thread.title.as_deref())
    .bind(Timestamp::now().as_micros())
    .bind(tenant_key(update.context.tenant()))
    .fetch_one(&mut *conn)
    .await
    .map_err(sql("updating the thread"))?;
    Ok(Updated::Thread(rows::thread(&row).map_err(aborted)?))
}

async fn delete_message(conn: &mut SqliteConnection, delete: &Delete, id: &MessageId) -> OpResult<Deleted> {
    let now = Timestamp::now().as_micros();
    let tenant = delete.context.tenant();
    let removed = sqlx::query(
        "DELETE FROM messages \
          WHERE tenant = ?4 AND thread_id = ?1 AND message_id = ?2 AND (?3 IS NULL OR version = ?3) \
            AND EXISTS (SELECT 1 FROM threads t WHERE t.tenant = ?4 AND t.thread_id = ?1 \
                                                  AND t.deleted_at IS NULL) \
         RETURNING message_id",
    )
    .bind(delete.thread_id.as_str())
    .bind(id.as_str())
    .bind(delete.expected_version.map(signed))
    .bind(tenant_key(tenant))
    .fetch_optional(&mut *conn)
    .await
    .map_err(sql("deleting the message"))?;
    if removed.is_some() {
        touch_thread(conn, tenant, &delete.thread_id, now).await?;
        return Ok(Deleted::new(delete.thread_id.clone(), vec![id.clone()]));
    }
    // Nothing removed: already gone (an empty answer), or a stale expected version.
    match diagnose_message(conn, &delete.thread_id, id, tenant, delete.expected_version, None).await {
        conflict @ Failure::Refused(PersistError::VersionConflict { .. }) => Err(conflict),
        Failure::Refused(_) => Ok(Deleted::new(delete.thread_id.clone(), Vec::new())),
        aborted @ Failure::Aborted(_) => Err(aborted),
    }
}

async fn touch_thread(
    conn: &mut SqliteConnection,
    tenant: Option<&TenantId>,
    thread_id: &ThreadId,
    now: i64,
) -> OpResult<()> {
    sqlx::query("UPDATE threads SET updated_at = ?2 WHERE tenant = ?3 AND thread_id = ?1")
        .bind(thread_id.as_str())
        .bind(now)
        .bind(tenant_key(tenant))
        .execute(&mut *conn)
        .await
        .map_err(sql("touching the thread"))?;
    Ok(())
}

/// Removes every message after `seq` in the writer's transaction, the thread checked by
/// [`delete_thread`] (the counters move in the delete trigger); the thread's version moves
/// when anything was removed.
async fn truncate(conn: &mut SqliteConnection, delete: &Delete, seq: u64) -> OpResult<Deleted> {
    let gone = Deleted::new(delete.thread_id.clone(), Vec::new());
    let tenant = tenant_key(delete.context.tenant());
    let removed =
        sqlx::query("DELETE FROM messages WHERE tenant = ?2 AND thread_id = ?1 AND seq > ?3 RETURNING seq, message_id")
            .bind(delete.thread_id.as_str())
            .bind(tenant)
            .bind(signed(seq))
            .fetch_all(&mut *conn)
            .await
            .map_err(sql("truncating the thread"))?;
    let ids = removed_ids(&removed)?;
    if ids.is_empty() {
        return Ok(gone);
    }
    sqlx::query("UPDATE threads SET version = version + 1, updated_at = ?3 WHERE tenant = ?2 AND thread_id = ?1")
        .bind(delete.thread_id.as_str())
        .bind(tenant)
        .bind(Timestamp::now().as_micros())
        .execute(&mut *conn)
        .await
        .map_err(sql("touching the truncated thread"))?;
    Ok(Deleted::new(delete.thread_id.clone(), ids))
}

/// The ids of `DELETE … RETURNING seq, message_id` rows, in `seq` order.
fn removed_ids(rows: &[sqlx::sqlite::SqliteRow]) -> OpResult<Vec<MessageId>> {
    use sqlx::Row;
    let mut removed: Vec<(i64, String)> = rows
        .iter()
        .map(|row| Ok((row.try_get::<i64, _>(0)?, row.try_get::<String, _>(1)?)))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(sql("reading deleted ids"))?;
    removed.sort_unstable();
    removed
        .into_iter()
        .map(|(_, id)| MessageId::new(id).map_err(|e| aborted(crate::error::corrupt(e.to_string()))))
        .collect()
}

async fn delete_thread(conn: &mut SqliteConnection, delete: &Delete) -> OpResult<Deleted> {
    let gone = Deleted::new(delete.thread_id.clone(), Vec::new());
    let tenant = tenant_key(delete.context.tenant());
    let thread = match writable_thread(conn, &delete.thread_id, delete.context.tenant(), None).await {
        Ok(thread) => thread,
        // A purge of a tombstone erases what it still says, or frees its id.
        Err(Failure::Refused(PersistError::ThreadDeleted { .. })) if delete.purge => {
            mark_deleted(conn, delete, tenant).await?;
            return Ok(gone);
        }
        Err(Failure::Refused(_)) => return Ok(gone),
        Err(aborted) => return Err(aborted),
    };
    if let Some(expected) = delete.expected_version.filter(|&v| v != thread.version) {
        return Err(refused(PersistError::VersionConflict {
            thread_id: delete.thread_id.clone(),
            message_id: None,
            expected,
            actual: thread.version,
        }));
    }
    if let Some(conflict) = delete.updated_at_conflict(thread.updated_at) {
        return Err(refused(conflict));
    }
    if let Target::MessagesAfter(seq) = delete.target {
        return truncate(conn, delete, seq).await;
    }
    // Marked as being deleted first (a negative `last_seq`, which the tombstone restores): the
    // change feed then records the thread's delete, and not each message it removes. The mark
    // takes no room, so a delete frees room on a full disk before its event needs any.
    sqlx::query("UPDATE threads SET last_seq = -1 - last_seq WHERE tenant = ?2 AND thread_id = ?1")
        .bind(delete.thread_id.as_str())
        .bind(tenant)
        .execute(&mut *conn)
        .await
        .map_err(sql("marking the thread as being deleted"))?;
    let removed = sqlx::query("DELETE FROM messages WHERE tenant = ?2 AND thread_id = ?1 RETURNING seq, message_id")
        .bind(delete.thread_id.as_str())
        .bind(tenant)
        .fetch_all(&mut *conn)
        .await
        .map_err(sql("deleting the thread's messages"))?;
    let ids = removed_ids(&removed)?;
    sqlx::query("DELETE FROM session_bindings WHERE tenant = ?2 AND thread_id = ?1")
        .bind(delete.thread_id.as_str())
        .bind(tenant)
        .execute(&mut *conn)
        .await
        .map_err(sql("deleting the thread's session bindings"))?;
    mark_deleted(conn, delete, tenant).await?;
    Ok(Deleted::new(delete.thread_id.clone(), ids))
}

/// Leaves the thread's tombstone; a purge clears what it said, or removes it to free the id.
async fn mark_deleted(conn: &mut SqliteConnection, delete: &Delete, tenant: &str) -> OpResult<()> {
    let now = Timestamp::now().as_micros();
    let tombstone = match (delete.purge, delete.free_id) {
        (_, true) => "DELETE FROM threads WHERE tenant = ?3 AND thread_id = ?1 AND ?2 IS NOT NULL",
        (true, false) => {
            "UPDATE threads SET deleted_at = coalesce(deleted_at, ?2), updated_at = ?2, message_count = 0, \
                                title = NULL, metadata = '{}', \
                                last_seq = CASE WHEN last_seq < 0 THEN -1 - last_seq ELSE last_seq END \
              WHERE tenant = ?3 AND thread_id = ?1"
        }
        (false, false) => {
            "UPDATE threads SET deleted_at = ?2, updated_at = ?2, message_count = 0, \
                                last_seq = CASE WHEN last_seq < 0 THEN -1 - last_seq ELSE last_seq END \
              WHERE tenant = ?3 AND thread_id = ?1"
        }
    };
    // A freed id leaves the feed too (ids may carry personal data), all but the thread's
    // newest delete, which tells followers the thread is gone: its chain, from the newest event
    // the thread's row names, is erased.
    let chain: Option<i64> = match delete.free_id {
        true => sqlx::query_scalar("SELECT feed_last FROM threads WHERE tenant = ?2 AND thread_id = ?1")
            .bind(delete.thread_id.as_str())
            .bind(tenant)
            .fetch_optional(&mut *conn)
            .await
            .map_err(sql("reading the thread's feed"))?
            .flatten(),
        false => None,
    };
    sqlx::query(tombstone)
        .bind(delete.thread_id.as_str())
        .bind(now)
        .bind(tenant)
        .execute(&mut *conn)
        .await
        .map_err(sql("marking the thread deleted"))?;
    if let Some(newest) = chain {
        // With the feed off, no delete is kept, and the newest event may go: the head must not
        // move back (positions are never reused), so what goes counts as removed.
        sqlx::query(
            "UPDATE persist_feed_state SET trimmed = max(trimmed, coalesce((SELECT max(position) FROM persist_feed), 0)) \
              WHERE NOT EXISTS (SELECT 1 FROM persist_feed WHERE tenant = ?2 AND thread_id = ?1 \
                                   AND message_id IS NULL AND removed = 'thread')",
        )
        .bind(delete.thread_id.as_str())
        .bind(tenant)
        .execute(&mut *conn)
        .await
        .map_err(sql("erasing the thread's feed"))?;
        sqlx::query(
            "WITH RECURSIVE kept(position) AS ( \
                 SELECT max(position) FROM persist_feed \
                  WHERE tenant = ?2 AND thread_id = ?1 AND message_id IS NULL AND removed = 'thread'), \
             chain(position) AS ( \
                 SELECT ?3 UNION SELECT f.prev FROM persist_feed f JOIN chain c ON f.position = c.position \
                  WHERE f.prev IS NOT NULL) \
             DELETE FROM persist_feed \
              WHERE position IN (SELECT position FROM chain) AND position IS NOT (SELECT position FROM kept)",
        )
        .bind(delete.thread_id.as_str())
        .bind(tenant)
        .bind(newest)
        .execute(&mut *conn)
        .await
        .map_err(sql("erasing the thread's feed"))?;
        sqlx::query(
            "UPDATE persist_feed SET prev = NULL WHERE position = (SELECT max(position) FROM persist_feed \
              WHERE tenant = ?2 AND thread_id = ?1 AND message_id IS NULL AND removed = 'thread')",
        )
        .bind(delete.thread_id.as_str())
        .bind(tenant)
        .execute(&mut *conn)
        .await
        .map_err(sql("erasing the thread's feed"))?;
    }
    Ok(())
}

impl Limits {
    /// `content`, once checked against the limits.
    pub(crate) fn content(&self, content: &persist_core::Content) -> OpResult<persist_core::Content> {
        if content.json_len() > self.max_content_bytes {
            return Err(refused(PersistError::invalid(
                "content",
                format!("is {} bytes of JSON, the limit is {}", content.json_len(), self.max_content_bytes),
            )));
        }
        Ok(content.clone())
    }

    pub(crate) fn metadata(&self, metadata: &Metadata) -> OpResult<String> {
        let text = json(metadata).map_err(aborted)?;
        if text.len() > self.max_metadata_bytes {
            return Err(refused(PersistError::invalid(
                "metadata",
                format!("is {} bytes of JSON, the limit is {}", text.len(), self.max_metadata_bytes),
            )));
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use persist_core::args::{Add, Delete};
    use persist_core::{Content, Context, MessageId, PersistError, Role, TenantId, ThreadId};
    use sqlx::{ConnectOptions, Connection, SqliteConnection};

    use super::{Answer, Failure, Write, apply_batch, commit_inserts};
    use crate::Limits;

    async fn connection(dir: &tempfile::TempDir) -> SqliteConnection {
        let options =
            sqlx::sqlite::SqliteConnectOptions::new().filename(dir.path().join("ops.db")).create_if_missing(true);
        let mut conn = options.connect().await.unwrap();
        crate::MIGRATOR.run_direct(None, &mut conn, false).await.unwrap();
        sqlx::raw_sql(super::INBOX).execute(&mut conn).await.unwrap();
        conn
    }

    fn limits() -> Limits {
        Limits { max_content_bytes: 1 << 20, max_metadata_bytes: 1 << 16 }
    }

    fn add(tenant: &str, text: &str) -> Write {
        let args = Add::new(ThreadId::new("shared").unwrap(), Role::User, Content::text(text))
            .with_id(MessageId::new("m").unwrap())
            .with_context(Context::new().with_tenant(TenantId::new(tenant).unwrap()));
        Write::Persist(args.into())
    }

    fn added(answer: &Result<Answer, PersistError>) -> (String, bool) {
        match answer {
            Ok(Answer::Persist(result)) => (result.message().unwrap().content.to_text(), result.is_deduplicated()),
            Ok(_) => panic!("not a message write"),
            Err(error) => panic!("refused: {error}"),
        }
    }

    /// Tenant `tenant`'s thread "shared", deleted: a tombstone that refuses later writes.
    fn tombstone(tenant: &str) -> [Write; 2] {
        let ctx = || Context::new().with_tenant(TenantId::new(tenant).unwrap());
        let thread = || ThreadId::new("shared").unwrap();
        let seed = Add::new(thread(), Role::User, Content::text("seed")).with_context(ctx());
        [Write::Persist(seed.into()), Write::Persist(Delete::thread(thread()).with_context(ctx()).into())]
    }

    #[tokio::test]
    async fn a_row_goes_to_the_insert_that_wrote_it_never_to_a_refused_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = connection(&dir).await;
        let [seed, delete] = tombstone("gone");
        let mut tx = conn.begin().await.unwrap();
        apply_batch(&mut tx, &[&seed, &delete], &limits()).await.unwrap();
        // One group: a write with id "m" to tenant gone's deleted "shared" (refused), then the
        // owner's to its own "shared" (written).
        let (refused, own) = (add("gone", "refused text"), add("owner", "own text"));
        let answers = apply_batch(&mut tx, &[&refused, &own], &limits()).await.unwrap();
        assert!(
            matches!(answers[0], Err(PersistError::ThreadDeleted { .. })),
            "the refused write got {:?}",
            answers[0].as_ref().err()
        );
        assert_eq!(added(&answers[1]), ("own text".to_owned(), false));
        tx.commit().await.unwrap();
    }

    #[tokio::test]
    async fn a_group_runs_in_queue_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = connection(&dir).await;
        let mut tx = conn.begin().await.unwrap();
        let first = add("owner", "first");
        apply_batch(&mut tx, &[&first], &limits()).await.unwrap();
        // A delete queued before an add: the add must see the tombstone.
        let owner = Context::new().with_tenant(TenantId::new("owner").unwrap());
        let delete = Write::Persist(Delete::thread(ThreadId::new("shared").unwrap()).with_context(owner).into());
        let late = add("owner", "late");
        let answers = apply_batch(&mut tx, &[&delete, &late], &limits()).await.unwrap();
        assert!(answers[0].is_ok());
        assert!(matches!(answers[1], Err(PersistError::ThreadDeleted { .. })));
        tx.commit().await.unwrap();
    }

    fn add_id(tenant: &str, id: &str) -> Write {
        let args = Add::new(ThreadId::new("shared").unwrap(), Role::User, Content::text(id))
            .with_id(MessageId::new(id).unwrap())
            .with_context(Context::new().with_tenant(TenantId::new(tenant).unwrap()));
        Write::Persist(args.into())
    }

    async fn count(conn: &mut SqliteConnection) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM messages").fetch_one(conn).await.unwrap()
    }

    #[tokio::test]
    async fn a_group_of_inserts_commits_in_one_query_and_answers_each() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = connection(&dir).await;
        let [seed, delete] = tombstone("gone");
        let mut tx = conn.begin().await.unwrap();
        apply_batch(&mut tx, &[&seed, &delete], &limits()).await.unwrap();
        tx.commit().await.unwrap();
        let (refused, own, repeat, other) =
            (add_id("gone", "m"), add_id("owner", "m"), add_id("owner", "m"), add_id("other", "m"));
        let answers = commit_inserts(&mut conn, &[&refused, &own, &repeat, &other], &limits()).await.unwrap().unwrap();
        assert!(matches!(answers[0], Err(PersistError::ThreadDeleted { .. })));
        assert_eq!(added(&answers[1]), ("m".to_owned(), false));
        assert_eq!(added(&answers[2]), ("m".to_owned(), true), "the repeat answers the first copy");
        assert_eq!(added(&answers[3]), ("m".to_owned(), false), "another tenant's thread of that id is its own");
        assert_eq!(count(&mut conn).await, 2, "committed: owner's m and other's m");
        let other = Write::Persist(Delete::thread(ThreadId::new("shared").unwrap()).into());
        assert!(commit_inserts(&mut conn, &[&other], &limits()).await.is_none(), "not an insert-only group");
    }

    /// Turns the writer's report into a view that fails when read; the rows still go in and out.
    async fn break_the_report(conn: &mut SqliteConnection) {
        sqlx::raw_sql(
            "DROP TABLE temp.persist_written; \
             CREATE TEMP TABLE written_rows (plan INTEGER NOT NULL, seq INTEGER NOT NULL); \
             CREATE TEMP VIEW persist_written AS SELECT plan, json('not json') + seq AS seq FROM written_rows; \
             CREATE TEMP TRIGGER written_insert INSTEAD OF INSERT ON persist_written \
                 BEGIN INSERT INTO written_rows VALUES (NEW.plan, NEW.seq); END; \
             CREATE TEMP TRIGGER written_delete INSTEAD OF DELETE ON persist_written \
                 BEGIN DELETE FROM written_rows; END;",
        )
        .execute(conn)
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_report_that_cannot_be_read_fails_the_answers_of_a_committed_group() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = connection(&dir).await;
        break_the_report(&mut conn).await;
        let (first, second) = (add_id("owner", "first"), add_id("owner", "second"));
        let answers = commit_inserts(&mut conn, &[&first, &second], &limits()).await.unwrap().unwrap();
        for answer in &answers {
            match answer {
                Err(PersistError::Backend { message, .. }) => {
                    assert!(message.contains("committed but their report cannot be read"), "{message}")
                }
                Err(other) => panic!("expected an unreadable report, got {other}"),
                Ok(_) => panic!("expected an unreadable report, got an answer"),
            }
        }
        assert_eq!(count(&mut conn).await, 2, "the group stays committed, once");
    }

    #[tokio::test]
    async fn a_report_that_cannot_be_read_inside_a_transaction_aborts_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = connection(&dir).await;
        break_the_report(&mut conn).await;
        let mut tx = conn.begin().await.unwrap();
        let (first, second) = (add_id("owner", "first"), add_id("owner", "second"));
        let failed = apply_batch(&mut tx, &[&first, &second], &limits()).await;
        assert!(matches!(failed, Err(Failure::Aborted(_))), "the transaction must not go on");
        tx.rollback().await.unwrap();
        assert_eq!(count(&mut conn).await, 0);
    }

    #[tokio::test]
    async fn a_failing_statement_rolls_the_whole_group_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = connection(&dir).await;
        sqlx::query(
            "CREATE TRIGGER refuse_boom BEFORE INSERT ON messages WHEN NEW.message_id = 'boom' \
             BEGIN SELECT RAISE(ABORT, 'boom refused'); END",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        let (fine, boom) = (add_id("owner", "fine"), add_id("owner", "boom"));
        let failed = commit_inserts(&mut conn, &[&fine, &boom], &limits()).await.unwrap();
        assert!(matches!(failed, Err(Failure::Aborted(_))));
        assert_eq!(count(&mut conn).await, 0, "the write before the failure was rolled back");
        // The connection is usable, outside any transaction.
        commit_inserts(&mut conn, &[&fine], &limits()).await.unwrap().unwrap();
        assert_eq!(count(&mut conn).await, 1);
    }
}
