//! `append_turn`: a turn's messages decided together ([`TurnPlan::decide`], on the thread's
//! tombstone and the stored messages holding one of its keys or ids), then inserted whole through
//! the inbox, inside the group's transaction.
//!
//! A group's turns are decided together, before any of its writes ([`decide_ahead`]: one query
//! for all of them), and their rows join the group's inbox run with the adds. A turn whose
//! thread an earlier write of the group addresses is left to [`append_turn`], which decides it
//! at its place in the group, once the writes before it are applied.

use std::collections::HashSet;

use persist_core::args::{AppendTurn, TurnPlan};
use persist_core::branch::{Parent, unknown_message};
use persist_core::{Message, PersistArgs, PersistError, ThreadId, Timestamp, TurnAppended};
use sqlx::SqliteConnection;

use super::insert::{Insert, insert_many};
use super::{OpResult, Write, aborted, refused, sql};
use crate::limits::Limits;
use crate::rows::{self, packed_id, tenant_key};

/// Writes every message of `turn` or none, deciding it first in this transaction: a repeat
/// answers the stored messages, a refusal writes nothing; then the rows go in through the inbox
/// in one round trip, consecutive in the thread.
pub(super) async fn append_turn(
    conn: &mut SqliteConnection,
    turn: &AppendTurn,
    limits: &Limits,
) -> OpResult<TurnAppended> {
    let plan = turn.plan().map_err(refused)?;
    // Refused before anything else, as every store does (see `Add::with_embedding`).
    let embeddings: Vec<_> = turn.messages.iter().filter_map(|m| m.embedding.as_ref()).collect();
    super::embed::check_vectors(conn, turn.context.tenant(), &embeddings).await?;
    let found = look_up(conn, &[(turn, &plan)]).await?.pop().unwrap_or_default();
    if let Some(repeat) = decide(turn, &plan, found).map_err(refused)? {
        return Ok(repeat);
    }
    let inserts = Insert::of_turn(&plan, limits)?;
    let mut written = Vec::with_capacity(inserts.len());
    for row in insert_many(conn, &inserts).await? {
        // Decided above, in this transaction: a row not written means the rules moved under it.
        let message = row.ok_or_else(|| {
            aborted(PersistError::Backend { message: "a message of the turn was not written".into(), source: None })
        })?;
        written.push(message);
    }
    Ok(TurnAppended::new(turn.thread_id.clone(), written, false))
}

/// The turns of a group decided before any of its writes, by the group's position.
pub(super) struct Ahead {
    /// A turn to write whole: its rows join the group's run.
    pub(super) fresh: Vec<Option<TurnPlan>>,
    /// A turn that writes nothing: its repeat, or its refusal.
    pub(super) answered: Vec<Option<Result<TurnAppended, PersistError>>>,
}

/// Decides, in one query, every turn of `writes` whose thread no earlier write of the group
/// addresses: what the lookup sees at the start of the group's transaction is then what the
/// turn would see at its place, so the decision is the one [`append_turn`] would make there.
/// The other turns (a second write to a thread in one group) are left undecided.
pub(super) async fn decide_ahead(conn: &mut SqliteConnection, writes: &[&Write]) -> OpResult<Ahead> {
    let mut ahead =
        Ahead { fresh: writes.iter().map(|_| None).collect(), answered: writes.iter().map(|_| None).collect() };
    let mut addressed: HashSet<(&str, &ThreadId)> = HashSet::new();
    let mut every_thread = false;
    let mut turns = Vec::new();
    for (index, write) in writes.iter().enumerate() {
        let Write::Persist(args) = write else {
            // Session bindings: no thread or message changes.
            continue;
        };
        if matches!(args, PersistArgs::SetOnce(_)) {
            continue;
        }
        let Some(thread_id) = args.thread_id() else {
            // A write naming no thread (none reaches the writer but `SetOnce`, above) might
            // touch any: the turns after it are decided at their place.
            every_thread = true;
            continue;
        };
        let first = addressed.insert((tenant_key(args.context().tenant()), thread_id));
        if let PersistArgs::AppendTurn(turn) = args
            && first
            && !every_thread
        {
            let embeddings: Vec<_> = turn.messages.iter().filter_map(|m| m.embedding.as_ref()).collect();
            match turn.plan() {
                Ok(plan) => match super::embed::check_vectors(conn, turn.context.tenant(), &embeddings).await {
                    Ok(()) => turns.push((index, turn, plan)),
                    Err(super::Failure::Refused(error)) => ahead.answered[index] = Some(Err(error)),
                    Err(aborted) => return Err(aborted),
                },
                Err(error) => ahead.answered[index] = Some(Err(error)),
            }
        }
    }
    if turns.is_empty() {
        return Ok(ahead);
    }
    let asked: Vec<(&AppendTurn, &TurnPlan)> = turns.iter().map(|(_, turn, plan)| (*turn, plan)).collect();
    let found = look_up(conn, &asked).await?;
    for ((index, turn, plan), found) in turns.into_iter().zip(found) {
        match decide(turn, &plan, found) {
            Ok(None) => ahead.fresh[index] = Some(plan),
            Ok(Some(repeat)) => ahead.answered[index] = Some(Ok(repeat)),
            Err(refusal) => ahead.answered[index] = Some(Err(refusal)),
        }
    }
    Ok(ahead)
}

/// What a turn is decided on: its thread's tombstone, and the stored messages of the thread
/// holding one of its keys or ids.
#[derive(Default)]
struct Found {
    deleted: bool,
    /// The turn names a parent its thread does not have.
    parent_missing: bool,
    stored: Vec<Message>,
    /// The turn's keys spent in its thread (see `persist::spent`).
    spent: Vec<persist_core::spent::SpentKey>,
}

/// `Ok(None)` when the turn is to be written whole, its repeat, or why it is refused.
fn decide(turn: &AppendTurn, plan: &TurnPlan, found: Found) -> Result<Option<TurnAppended>, PersistError> {
    if found.deleted {
        return Err(PersistError::ThreadDeleted { thread_id: turn.thread_id.clone() });
    }
    let mut stored = found.stored;
    // A key a stored message holds is that message's; a spent one answers for a removed one.
    let live: Vec<_> = stored.iter().filter_map(|message| message.idempotency_key.clone()).collect();
    let spent: Vec<_> = found.spent.into_iter().filter(|spent| !live.contains(&spent.key)).collect();
    stored.extend(plan.spent_repeats(&spent)?);
    let repeat = plan.decide(stored)?;
    if let (None, true, Parent::Message(parent)) = (&repeat, found.parent_missing, &turn.parent) {
        return Err(unknown_message(&turn.thread_id, parent));
    }
    Ok(repeat.map(|repeat| TurnAppended::new(turn.thread_id.clone(), repeat, true)))
}

/// Looks up what decides each turn in one query, one row per stored message found (by id, then
/// by key: a message may come twice) and one per turn for its thread's tombstone and whether
/// the parent it names is missing. The turns travel as one JSON array, `[[index, tenant,
/// thread_id, [keys], [ids], parent], …]`; `CROSS JOIN` keeps SQLite from reading a thread's
/// every message: each key and id is one index search.
const LOOK_UP: &str = concat!(
    "WITH turn (turn_no, turn_tenant, turn_thread, turn_keys, turn_ids, turn_parent, turn_key) AS ( \
        SELECT value ->> 0, value ->> 1, value ->> 2, value -> 3, value -> 4, value ->> 5, \
               (SELECT key FROM threads WHERE tenant = value ->> 1 AND thread_id = value ->> 2) \
          FROM json_each(?1)) \
    SELECT turn_no, NULL AS deleted, NULL AS parent_missing, turn_thread AS thread_id, message_id, seq, parent_seq, \
           role, content, content_form, metadata, status, version, idempotency_key, created_at, updated_at \
      FROM turn CROSS JOIN json_each(turn_ids) AS wanted CROSS JOIN persist_messages \
     WHERE thread = turn_key AND message_id = ",
    packed_id!("wanted.value"),
    " UNION ALL \
    SELECT turn_no, NULL, NULL, turn_thread, message_id, seq, parent_seq, role, content, content_form, metadata, \
           status, version, idempotency_key, created_at, updated_at \
      FROM turn CROSS JOIN json_each(turn_keys) AS wanted CROSS JOIN persist_messages \
     WHERE thread = turn_key AND idempotency_key = wanted.value \
    UNION ALL \
    SELECT turn_no, EXISTS (SELECT 1 FROM threads t WHERE t.key = turn_key AND t.deleted_at IS NOT NULL), \
           turn_parent IS NOT NULL AND turn_parent <> '' \
               AND NOT EXISTS (SELECT 1 FROM persist_messages p WHERE p.thread = turn_key \
                                 AND p.message_id = ",
    packed_id!("turn_parent"),
    "), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL \
      FROM turn"
);

/// One turn of [`LOOK_UP`]'s parameter: its index, tenant, thread, keys, ids and the parent
/// it names (`None`: the active leaf, `""`: a root).
type Asked<'a> = (usize, &'a str, &'a str, Vec<&'a str>, Vec<&'a str>, Option<&'a str>);

/// What decides each of `turns`, in their order, read in the caller's transaction.
async fn look_up(conn: &mut SqliteConnection, turns: &[(&AppendTurn, &TurnPlan)]) -> OpResult<Vec<Found>> {
    let asked: Vec<Asked<'_>> = turns
        .iter()
        .enumerate()
        .map(|(index, (turn, plan))| {
            (
                index,
                tenant_key(turn.context.tenant()),
                turn.thread_id.as_str(),
                plan.keys().iter().map(|key| key.as_str()).collect(),
                plan.ids().iter().map(|id| id.as_str()).collect(),
                match &turn.parent {
                    Parent::Message(id) => Some(id.as_str()),
                    Parent::Root => Some(""),
                    _ => None,
                },
            )
        })
        .collect();
    let asked = serde_json::to_string(&asked).map_err(|e| aborted(PersistError::invalid("messages", e.to_string())))?;
    let rows = sqlx::query(LOOK_UP)
        .bind(asked)
        .fetch_all(&mut *conn)
        .await
        .map_err(sql("looking up the turns' threads, keys and ids"))?;
    let mut found: Vec<Found> = turns.iter().map(|_| Found::default()).collect();
    for row in &rows {
        let cell = |column| sqlx::Row::try_get::<Option<i64>, _>(row, column).map_err(sql("reading a turn's lookup"));
        let turn = cell("turn_no")?
            .and_then(|index| usize::try_from(index).ok())
            .and_then(|index| found.get_mut(index))
            .ok_or_else(|| aborted(crate::error::corrupt("a turn's lookup named no turn of the group")))?;
        match cell("deleted")? {
            Some(deleted) => {
                turn.deleted = deleted != 0;
                turn.parent_missing = cell("parent_missing")?.is_some_and(|missing| missing != 0);
            }
            None => turn.stored.push(rows::message(row).map_err(aborted)?),
        }
    }
    if turns.iter().any(|(_, plan)| !plan.keys().is_empty()) {
        for (index, turn) in turns.iter().enumerate() {
            let (turn, plan) = turn;
            let keys: Vec<_> = plan.keys().iter().collect();
            let tenant = tenant_key(turn.context.tenant());
            found[index].spent =
                super::spent::spent_keys(conn, turn.thread_id.as_str(), tenant, &keys, Timestamp::now()).await?;
        }
    }
    Ok(found)
}
