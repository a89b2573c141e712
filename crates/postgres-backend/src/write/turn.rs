//! `append_turn`: one short transaction under the thread's row lock; the turn decided against
//! its stored keys and ids, then every message inserted in one statement.

use persist_core::args::{AppendTurn, TurnPlan};
use persist_core::branch::{Parent, unknown_message};
use persist_core::{IdempotencyKey, MessageId, PersistError, Timestamp, TurnAppended};
use sqlx::{Connection, PgConnection};

use super::insert::{Vector, fix_dims};
use super::restore::insert_all;
use crate::error::map_sqlx;
use crate::rows::{self, message_columns, signed, tenant_key};

fn sql(context: &'static str) -> impl FnOnce(sqlx::Error) -> PersistError {
    move |e| map_sqlx(context, e)
}

/// Writes every message of `turn` (checked by the caller) or none, in one transaction.
pub(crate) async fn append_turn(conn: &mut PgConnection, turn: &AppendTurn) -> Result<TurnAppended, PersistError> {
    let plan = turn.plan()?;
    let mut tx = conn.begin().await.map_err(sql("starting the turn"))?;
    match append_locked(&mut tx, turn, &plan).await {
        Ok(appended) if appended.deduplicated => {
            // Nothing written: the bump of `last_seq` is undone with the transaction.
            tx.rollback().await.map_err(sql("ending the turn's repeat"))?;
            Ok(appended)
        }
        Ok(appended) => {
            tx.commit().await.map_err(sql("committing the turn"))?;
            Ok(appended)
        }
        Err(refused) => {
            // A rollback that fails answers its own error: the pool then drops the connection
            // rather than hand on one still inside this transaction.
            tx.rollback().await.map_err(sql("rolling back the turn"))?;
            Err(refused)
        }
    }
}

async fn append_locked(
    tx: &mut PgConnection,
    turn: &AppendTurn,
    plan: &TurnPlan,
) -> Result<TurnAppended, PersistError> {
    let tenant = tenant_key(turn.context.tenant());
    // Refused before anything else, as every store does (see `Add::with_embedding`).
    let vectors: Vec<Option<Vector<'_>>> =
        turn.messages.iter().map(|m| m.embedding.as_ref().map(Vector::of).transpose()).collect::<Result<_, _>>()?;
    // Each model once (the turn's checks gave it one length), in one order for every writer: two
    // turns fixing the same new models cannot wait on each other.
    let mut models: Vec<&Vector<'_>> = vectors.iter().flatten().collect();
    models.sort_by_key(|vector| vector.model());
    models.dedup_by_key(|vector| vector.model());
    for vector in models {
        fix_dims(tx, turn.context.tenant(), vector).await?;
    }
    let count = signed(plan.writes().len() as u64);
    let now = Timestamp::now();
    // Creates the thread or takes its row lock, moving `last_seq` past the turn's seqs and the
    // active leaf to its last message (`prev_leaf` keeps the one before); a tombstone answers
    // no row.
    let locked: Option<(i64, Option<i64>)> = sqlx::query_as(
        "INSERT INTO threads AS th (tenant, thread_id, created_at, updated_at, last_seq, message_count, active_leaf) \
         VALUES ($1, $2, $3, $3, $4, $4, $4) \
         ON CONFLICT (tenant, thread_id) DO UPDATE \
            SET last_seq = th.last_seq + $4, message_count = th.message_count + $4, updated_at = EXCLUDED.updated_at, \
                active_leaf = th.last_seq + $4, prev_leaf = th.active_leaf \
          WHERE th.deleted_at IS NULL \
         RETURNING th.last_seq - $4, th.prev_leaf",
    )
    .bind(tenant)
    .bind(turn.thread_id.as_str())
    .bind(now.as_micros())
    .bind(count)
    .fetch_optional(&mut *tx)
    .await
    .map_err(sql("locking the turn's thread"))?;
    let Some((base, leaf)) = locked else {
        return Err(PersistError::ThreadDeleted { thread_id: turn.thread_id.clone() });
    };
    // A new thread's row has no `prev_leaf`: its insert set none.
    let leaf = leaf.filter(|_| base > 0);
    let stored = if base > 0 && (!plan.keys().is_empty() || !plan.ids().is_empty()) {
        let keys: Vec<&str> = plan.keys().iter().map(IdempotencyKey::as_str).collect();
        let ids: Vec<&str> = plan.ids().iter().map(MessageId::as_str).collect();
        let rows = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE tenant = $1 AND thread_id = $2 AND idempotency_key IS NOT NULL \
                 AND idempotency_key = ANY($3) \
             UNION SELECT ",
            message_columns!(),
            " FROM messages WHERE tenant = $1 AND thread_id = $2 AND message_id = ANY($4)"
        ))
        .bind(tenant)
        .bind(turn.thread_id.as_str())
        .bind(keys)
        .bind(ids)
        .fetch_all(&mut *tx)
        .await
        .map_err(sql("looking up the turn's keys and ids"))?;
        let mut stored = rows.iter().map(rows::message).collect::<Result<Vec<_>, _>>()?;
        // A key a stored message holds is that message's; a spent one answers for a removed one.
        let live: Vec<_> = stored.iter().filter_map(|message| message.idempotency_key.clone()).collect();
        let wanted: Vec<&str> =
            plan.keys().iter().filter(|key| !live.contains(key)).map(IdempotencyKey::as_str).collect();
        let spent = crate::spent::spent_keys(tx, tenant, turn.thread_id.as_str(), &wanted).await?;
        stored.extend(plan.spent_repeats(&spent)?);
        stored
    } else {
        Vec::new()
    };
    if let Some(repeat) = plan.decide(stored)? {
        return Ok(TurnAppended::new(turn.thread_id.clone(), repeat, true));
    }
    let base = u64::try_from(base).unwrap_or_default();
    let parent = match &turn.parent {
        Parent::Root => None,
        // Read after the lock: no writer of the thread commits meanwhile.
        Parent::Message(id) => {
            match super::guard::find_message(tx, turn.context.tenant(), &turn.thread_id, id).await? {
                Some(parent) => Some(parent.seq),
                None => return Err(unknown_message(&turn.thread_id, id)),
            }
        }
        _ => leaf.and_then(|leaf| u64::try_from(leaf).ok()),
    };
    let messages = plan.messages_after(base, parent, now);
    insert_all(tx, tenant, &messages.iter().collect::<Vec<_>>()).await?;
    let (mut ids, mut models, mut bytes) = (Vec::new(), Vec::new(), Vec::new());
    for (message, vector) in messages.iter().zip(&vectors) {
        if let Some(vector) = vector {
            ids.push(message.id.as_str());
            models.push(vector.model());
            bytes.push(vector.bytes());
        }
    }
    if !ids.is_empty() {
        sqlx::query(
            "INSERT INTO persist_embeddings (tenant, thread_id, message_id, model, vector) \
             SELECT $1, $2, v.message_id, v.model, v.vector FROM unnest($3::text[], $4::text[], $5::bytea[]) \
                 AS v(message_id, model, vector)",
        )
        .bind(tenant)
        .bind(turn.thread_id.as_str())
        .bind(ids)
        .bind(models)
        .bind(bytes)
        .execute(&mut *tx)
        .await
        .map_err(sql("writing the turn's embeddings"))?;
    }
    Ok(TurnAppended::new(turn.thread_id.clone(), messages, false))
}
