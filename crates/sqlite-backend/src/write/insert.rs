//! Inserts (`add`, `reserve`): planned, then written many at a time, through the inbox table
//! whose trigger numbers each thread's messages.

use std::borrow::Cow;
use std::future::poll_fn;

use sqlx::Either;

use persist_core::args::TurnPlan;
use persist_core::branch::{Parent, parent_from_stored, unknown_message};
use persist_core::vector::{dimensions_mismatch, to_bytes};
use persist_core::{
    Added, IdempotencyKey, Message, MessageId, Metadata, PersistArgs, PersistError, PersistResult, Reserved, Status,
    TenantId, ThreadId, Timestamp,
};
use sqlx::SqliteConnection;

use super::guard::*;
use super::insert_sql::{APPLY_INBOX, APPLY_INBOX_VECTORS, INSERT_FINISHED, INSERT_ONE, INSERT_ONE_VECTOR};
use super::{Answer, Failure, OpResult, Write, aborted, refused, sql};
use crate::limits::Limits;

mod on_lane;
mod run;

use self::on_lane::group_on_lane;
pub(crate) use self::on_lane::{OnLane, insert_on_lane, turn_on_lane};
pub(super) use self::run::{Run, pending};
use crate::rows::{self, message_columns, tenant_key, thread_key};

/// A connection where a small group of inserts commits without a hand-off to sqlx's
/// connection thread: the lane's (`crate::lane::Lane`), when the handle has one. Here, so that
/// the inserts need not know the lane, which builds on them.
pub(crate) trait GroupConnection {
    /// Runs `use_it` on the connection; `None` when it is closed.
    fn with<T>(&self, use_it: impl FnOnce(&rusqlite::Connection) -> T) -> Option<T>;

    /// Counts a group committed on it.
    fn count_commit(&self);
}

/// The most inserts the writer commits in one group on the lane's connection: the work is done
/// where the writer task runs (about 10 µs a row), which it must not hold for long; larger groups
/// go to sqlx's connection thread, where the hand-off is shared by many.
pub(crate) const LANE_GROUP_MAX: usize = 8;

/// Commits a group made only of `add`s and `reserve`s in **one** round trip: every insert in
/// one statement that is its own transaction (see [`insert_query`]). `None` when the group
/// holds other writes.
///
/// `Err` means nothing was committed (the transaction was rolled back). Once the query
/// succeeded the group is durable, so what follows (diagnosing inserts that wrote nothing: a
/// repeat or a refusal) answers per write and never fails the group.
pub(crate) async fn commit_inserts(
    conn: &mut SqliteConnection,
    lane: Option<&impl GroupConnection>,
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
    // On the lane's connection, in this thread, when the writer has one: no hand-off to sqlx's
    // connection thread and back.
    // Larger groups go to sqlx's thread: the lane's work is done where the writer task runs,
    // which it must not hold for long.
    let lane = lane.filter(|_| runnable.len() <= LANE_GROUP_MAX);
    let on_lane =
        lane.and_then(|lane| lane.with(|conn| group_on_lane(conn, &runnable)).flatten().map(|rows| (lane, rows)));
    let inserted = match on_lane {
        Some((lane, inserted)) => {
            lane.count_commit();
            inserted
        }
        None => match insert_query(conn, &runnable, true).await {
            Ok(inserted) => inserted,
            // Nothing was committed (see `insert_query`): the connection is outside any transaction.
            Err(failure) => return Some(Err(failure)),
        },
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

/// A planned `add` or `reserve`, its id fixed (generated now when the request named none).
pub(super) struct Insert<'a> {
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
    parent: &'a Parent,
    /// Whether the store takes the packed form of content (see [`rows::stored_content`]).
    packed: bool,
    /// The embedding written with the message: its model and unit vector.
    vector: Option<(&'a str, Vec<f32>)>,
}

impl<'a> Insert<'a> {
    /// The rows of a turn written whole, checked against the limits (a refusal writes none).
    pub(super) fn of_turn(plan: &'a TurnPlan, limits: &Limits) -> OpResult<Vec<Self>> {
        let mut inserts = Vec::with_capacity(plan.writes().len());
        for write in plan.writes() {
            match Self::plan(write, limits) {
                Some(insert) => inserts.push(insert?),
                None => {
                    return Err(aborted(PersistError::Backend {
                        message: "a turn held a write that is not an insert".into(),
                        source: None,
                    }));
                }
            }
        }
        Ok(inserts)
    }

    /// `None` unless `args` is an add or a reserve; `Some(Err)` when it is refused up front.
    pub(super) fn plan(args: &'a PersistArgs, limits: &Limits) -> Option<OpResult<Self>> {
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
                    parent: &add.parent,
                    packed: limits.packed,
                    vector: match &add.embedding {
                        Some(embedding) => Some((embedding.model(), embedding.unit().map_err(refused)?)),
                        None => None,
                    },
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
                    parent: &reserve.parent,
                    packed: limits.packed,
                    vector: None,
                })
            }),
            _ => return None,
        };
        Some(plan)
    }

    /// This insert as row `index` of a group written at `now`: the parameters of its
    /// statements (see [`InboxRow`]).
    fn row(&self, index: usize, now: Timestamp) -> InboxRow<'_> {
        let (content, form) = rows::stored_content(&self.content, self.packed);
        (
            index,
            self.thread_id.as_str(),
            tenant_key(self.tenant),
            self.id.as_str(),
            self.role.as_str(),
            content,
            self.metadata.as_str(),
            self.status.as_str(),
            self.idempotency_key.map(IdempotencyKey::as_str),
            now.as_micros(),
            self.parent_param(),
            form,
            self.vector.as_ref().map(|(model, _)| *model),
            self.vector.as_ref().map(|(_, unit)| unit.len()),
            self.vector.as_ref().map(|(_, unit)| hex(&to_bytes(unit))),
        )
    }

    /// Whether the insert writes an embedding with its message.
    pub(super) fn has_vector(&self) -> bool {
        self.vector.is_some()
    }

    /// The refusal of this insert's vector by the store: another length than its model's in
    /// the tenant (see `persist::vector`).
    async fn vector_refused(&self, conn: &mut SqliteConnection) -> OpResult<Option<PersistError>> {
        let Some((model, unit)) = &self.vector else { return Ok(None) };
        let stored: Option<i64> =
            sqlx::query_scalar("SELECT dims FROM persist_embedding_models WHERE tenant = ?1 AND model = ?2")
                .bind(tenant_key(self.tenant))
                .bind(*model)
                .fetch_optional(&mut *conn)
                .await
                .map_err(sql("reading a model's dimensions"))?;
        Ok(stored
            .and_then(|dims| usize::try_from(dims).ok())
            .filter(|&dims| dims != unit.len())
            .map(|dims| dimensions_mismatch(model, dims, unit.len())))
    }

    /// The `parent` parameter of the insert: NULL to follow the active leaf, `''` for a root,
    /// else the parent's id.
    fn parent_param(&self) -> Option<&'a str> {
        match self.parent {
            Parent::Message(id) => Some(id.as_str()),
            Parent::Root => Some(""),
            _ => None,
        }
    }

    /// The message this insert wrote as row `seq` after `parent_seq` at `now`: exactly the
    /// values it bound.
    fn written(&self, seq: u64, parent_seq: Option<u64>, now: Timestamp) -> Message {
        Message {
            thread_id: self.thread_id.clone(),
            id: self.id.clone(),
            role: self.role.clone(),
            content: self.content.clone(),
            metadata: self.given_metadata.clone(),
            status: self.status,
            seq,
            parent_seq,
            version: 1,
            idempotency_key: self.idempotency_key.cloned(),
            created_at: now,
            updated_at: now,
        }
    }

    /// The result of this insert: the row it wrote, or else a diagnosis (a repeat answered
    /// `deduplicated`, or the refusal).
    pub(super) async fn answer(
        &self,
        conn: &mut SqliteConnection,
        inserted: Option<Message>,
    ) -> OpResult<PersistResult> {
        let (message, deduplicated) = match inserted {
            Some(message) => (message, false),
            None => self.diagnose(conn).await?,
        };
        Ok(self.result(message, deduplicated))
    }

    fn result(&self, message: Message, deduplicated: bool) -> PersistResult {
        match self.status {
            Status::Reserved => Reserved::new(message, deduplicated).into(),
            Status::Complete | Status::Interrupted => Added::new(message, deduplicated).into(),
        }
    }

    /// Why nothing was inserted: the thread refused the write, or it repeats an earlier one.
    async fn diagnose(&self, conn: &mut SqliteConnection) -> OpResult<(Message, bool)> {
        // Refused before anything else, as every store does (see `Add::with_embedding`).
        if let Some(refusal) = self.vector_refused(conn).await? {
            return Err(refused(refusal));
        }
        let requested = self.args.message_id();
        writable_thread(conn, self.thread_id, self.tenant, requested).await?;
        if let Some(key) = self.idempotency_key {
            let existing = sqlx::query(concat!(
                "SELECT ",
                message_columns!("?1"),
                " FROM persist_messages WHERE thread = ",
                thread_key!("?3", "?1"),
                " AND idempotency_key = ?2"
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
            let tenant = tenant_key(self.tenant);
            // Whatever the insert's guard met, remembered then: a key that expired since still
            // answers it (the guard read it at the insert's time).
            let met = Timestamp::from_micros(i64::MIN);
            let spent = super::spent::spent_keys(conn, self.thread_id.as_str(), tenant, &[key], met).await?;
            if let Some(spent) = spent.first() {
                return spent.repeat(self.thread_id, self.args).map(|m| (m, true)).map_err(refused);
            }
        }
        let Some(existing) = find_message(conn, self.tenant, self.thread_id, &self.id).await? else {
            if let Parent::Message(parent) = self.parent
                && find_message(conn, self.tenant, self.thread_id, parent).await?.is_none()
            {
                return Err(refused(unknown_message(self.thread_id, parent)));
            }
            return Err(aborted(PersistError::Backend {
                message: "the insert was refused for no known reason".into(),
                source: None,
            }));
        };
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
pub(super) async fn insert_many(conn: &mut SqliteConnection, plans: &[Insert<'_>]) -> OpResult<Vec<Option<Message>>> {
    // Inside the caller's transaction: an unreadable report aborts it, nothing is committed.
    insert_query(conn, plans, false).await?.into_iter().map(|row| row.transpose().map_err(aborted)).collect()
}

/// The inserts of `plans` in one round trip and a constant number of statements, whatever
/// the group's size; with `transaction`, the whole group commits in that same round trip (one
/// statement in autocommit; a group of one in `BEGIN IMMEDIATE` … `COMMIT`), otherwise it runs
/// in the caller's transaction.
///
/// Every row travels in one JSON array parameter into the writer connection's `persist_inbox`
/// view, whose trigger applies the rows one at a time, in order (see [`INBOX`]). A fixed
/// statement is prepared once, and the connection's worker thread answers with a handful of
/// results instead of three per row: each result is a hand-off between threads.
pub(super) async fn insert_query(
    conn: &mut SqliteConnection,
    plans: &[Insert<'_>],
    transaction: bool,
) -> OpResult<Vec<Option<Result<Message, PersistError>>>> {
    let now = Timestamp::now();
    if let ([plan], true) = (plans, transaction) {
        return insert_one(conn, plan, now).await;
    }
    let rows = inbox_rows(plans, now)?;
    // With `transaction`, the inbox insert is the group's transaction on its own (autocommit):
    // one statement commits or rolls back whole, and outside an explicit transaction SQLite
    // keeps no statement journal (a copy of every page the group changes, made in case the
    // statement fails halfway: ≈ 8% of the writer's time with 64 callers). Its write lock is
    // taken as the statement starts, before it reads anything, as `BEGIN IMMEDIATE` would.
    // The three statements go in one round trip (with 64 callers, a second one for the report
    // left SQLite's thread idle between groups: ≈ 12% fewer writes/s); each answers as it
    // finishes: the `DELETE`, the insert, then the report's row and its end. How many finished
    // tells a failed insert from a committed one whose report could not be read.
    let apply = if plans.iter().any(Insert::has_vector) { APPLY_INBOX_VECTORS } else { APPLY_INBOX };
    let mut results = sqlx::Executor::fetch_many(&mut *conn, sqlx::query(apply).bind(rows));
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
    if failed.is_some() && transaction {
        // In autocommit, nothing rolls FTS5 back: its reader would stay open (see there).
        super::release_search_reader(conn).await;
    }
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
    Ok(from_report(plans, written.as_deref(), now))
}

/// The inbox's one parameter: every row of `plans` as a JSON array, written at `now`.
fn inbox_rows(plans: &[Insert<'_>], now: Timestamp) -> OpResult<String> {
    let rows: Vec<InboxRow<'_>> = plans.iter().enumerate().map(|(index, plan)| plan.row(index, now)).collect();
    serde_json::to_string(&rows).map_err(|e| aborted(PersistError::invalid("message", e.to_string())))
}

/// Per plan, the row the inbox's report says it wrote (`written`: `plan:seq:parent`, …), or
/// `None`.
fn from_report(
    plans: &[Insert<'_>],
    written: Option<&str>,
    now: Timestamp,
) -> Vec<Option<Result<Message, PersistError>>> {
    // Each entry names the plan that wrote a row, the row's seq and its parent: a row is never
    // given to another plan (one that was refused, say for a deleted thread, with the same id).
    // An unreadable report fails only the plans it leaves unanswered: with `transaction`, the
    // group is already committed.
    let mut answers: Vec<Option<Result<Message, PersistError>>> = plans.iter().map(|_| None).collect();
    let mut unreadable = None;
    for pair in written.unwrap_or_default().split(',').filter(|pair| !pair.is_empty()) {
        let mut fields = pair.split(':');
        let parsed = (|| {
            let (plan, seq, parent) = (fields.next()?, fields.next()?, fields.next()?);
            let parent = if parent.is_empty() { None } else { Some(parent.parse().ok()?) };
            Some((plan.parse::<usize>().ok()?, seq.parse().ok()?, parent))
        })();
        match parsed.and_then(|(index, seq, parent)| Some((answers.get_mut(index)?, plans.get(index)?, seq, parent))) {
            Some((slot, plan, seq, parent)) => {
                *slot = Some(Ok(plan.written(seq, parent_from_stored(seq, parent), now)))
            }
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
    answers
}

/// The group of one `plan`: [`INSERT_ONE`], committed in one round trip.
pub(super) async fn insert_one(
    conn: &mut SqliteConnection,
    plan: &Insert<'_>,
    now: Timestamp,
) -> OpResult<Vec<Option<Result<Message, PersistError>>>> {
    let (content, form) = rows::stored_content(&plan.content, plan.packed);
    // `fetch_all`: sqlx stops a multi-statement query at the first row for `fetch_one`.
    let query = sqlx::query(if plan.vector.is_some() { INSERT_ONE_VECTOR } else { INSERT_ONE })
        .bind(plan.thread_id.as_str())
        .bind(tenant_key(plan.tenant))
        .bind(plan.id.as_str())
        .bind(plan.role.as_str())
        .bind(content)
        .bind(plan.metadata.as_str())
        .bind(plan.status.as_str())
        .bind(plan.idempotency_key.map(IdempotencyKey::as_str))
        .bind(now.as_micros())
        .bind(plan.parent_param())
        .bind(form);
    let query = match &plan.vector {
        Some((model, unit)) => {
            query.bind(*model).bind(i64::try_from(unit.len()).unwrap_or(i64::MAX)).bind(to_bytes(unit))
        }
        None => query,
    };
    let inserted = query.fetch_all(&mut *conn).await;
    let rows = match inserted {
        Ok(rows) => rows,
        Err(error) => {
            // A statement failed after `BEGIN` (or `COMMIT` did): nothing of it may stay.
            super::rollback(conn).await;
            return Err(sql("inserting a message")(error));
        }
    };
    // The group is committed: an unreadable seq fails this answer only.
    let written = rows.first().map(|row| {
        let seq = sqlx::Row::try_get::<i64, _>(row, "seq")
            .map_err(|e| PersistError::backend("reading the inserted seq", e))
            .and_then(|seq| u64::try_from(seq).map_err(|_| crate::error::corrupt(format!("seq {seq}"))))?;
        let parent = sqlx::Row::try_get::<Option<i64>, _>(row, "parent_seq")
            .map_err(|e| PersistError::backend("reading the inserted parent", e))?
            .map(|parent| u64::try_from(parent).map_err(|_| crate::error::corrupt(format!("parent_seq {parent}"))))
            .transpose()?;
        Ok(plan.written(seq, parent_from_stored(seq, parent), now))
    });
    Ok(vec![written])
}

/// One row of the inbox parameter: plan, thread, tenant, id, role, content, metadata, status,
/// idempotency key, time, parent, content form; then the embedding's model, dimensions and
/// vector in hex (read by the inbox of vectors only).
pub(super) type InboxRow<'a> = (
    usize,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    Cow<'a, str>,
    &'a str,
    &'a str,
    Option<&'a str>,
    i64,
    Option<&'a str>,
    Option<i64>,
    Option<&'a str>,
    Option<usize>,
    Option<String>,
);

/// `bytes` in lowercase hex, as SQLite's `unhex` reads it.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 15)]));
    }
    text
}
