//! `append_turn`: a turn's messages decided together, then inserted in one run of the inbox,
//! inside the group's transaction.

use persist_core::args::AppendTurn;
use persist_core::{PersistError, TurnAppended};
use sqlx::SqliteConnection;

use super::guard::find_thread;
use super::insert::{Insert, insert_many};
use super::{OpResult, aborted, refused, sql};
use crate::Limits;
use crate::rows::{self, message_columns, tenant_key};

/// Writes every message of `turn` or none: the thread, keys and ids are checked first (a
/// repeat answers the stored messages, a refusal writes nothing), then the rows go in through
/// the inbox in one round trip, consecutive in the thread.
pub(super) async fn append_turn(
    conn: &mut SqliteConnection,
    turn: &AppendTurn,
    limits: &Limits,
) -> OpResult<TurnAppended> {
    let plan = turn.plan().map_err(refused)?;
    let tenant = turn.context.tenant();
    if find_thread(conn, tenant, &turn.thread_id).await?.is_some_and(|thread| thread.is_deleted()) {
        return Err(refused(PersistError::ThreadDeleted { thread_id: turn.thread_id.clone() }));
    }
    let mut stored = Vec::new();
    if !plan.keys().is_empty() || !plan.ids().is_empty() {
        let list = |items: Vec<&str>| serde_json::to_string(&items).unwrap_or_else(|_| "[]".into());
        let rows = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE tenant = ?1 AND thread_id = ?2 \
               AND (idempotency_key IN (SELECT value FROM json_each(?3)) \
                    OR message_id IN (SELECT value FROM json_each(?4)))"
        ))
        .bind(tenant_key(tenant))
        .bind(turn.thread_id.as_str())
        .bind(list(plan.keys().iter().map(|k| k.as_str()).collect()))
        .bind(list(plan.ids().iter().map(|id| id.as_str()).collect()))
        .fetch_all(&mut *conn)
        .await
        .map_err(sql("looking up the turn's keys and ids"))?;
        for row in &rows {
            stored.push(rows::message(row).map_err(aborted)?);
        }
    }
    if let Some(repeat) = plan.decide(stored).map_err(refused)? {
        return Ok(TurnAppended::new(turn.thread_id.clone(), repeat, true));
    }
    let mut inserts = Vec::with_capacity(plan.writes().len());
    for write in plan.writes() {
        match Insert::plan(write, limits) {
            Some(insert) => inserts.push(insert?),
            None => {
                return Err(aborted(PersistError::Backend {
                    message: "a turn held a write that is not an insert".into(),
                    source: None,
                }));
            }
        }
    }
    let mut written = Vec::with_capacity(inserts.len());
    for row in insert_many(conn, &inserts).await? {
        // Checked above, in this transaction: a row not written means the rules moved under it.
        let message = row.ok_or_else(|| {
            aborted(PersistError::Backend { message: "a message of the turn was not written".into(), source: None })
        })?;
        written.push(message);
    }
    Ok(TurnAppended::new(turn.thread_id.clone(), written, false))
}
