//! Branches in SQL: a branch read from its last message up, a message's children, the leaves,
//! and the most recent message under one (see migration 8).
//!
//! Most messages follow the one just before them and store no parent (`parent_seq` NULL; see
//! [`stored_parent`](persist_core::branch::stored_parent)), so a branch is a few runs of
//! consecutive seqs. A run starts at a message that stores one (a root, the first message of a
//! branch): the partial indexes of migration 8 hold only those. Walking a branch up is one step
//! per run, not per message, and a page of a branch is read in one statement: the walk, then
//! each run's rows in the page's window.

use std::collections::BTreeSet;

use persist_core::branch::{Branch, Branches, BranchesOf, ListBranches, parent_from_stored, unknown_message};
use persist_core::read::ListMessages;
use persist_core::{Message, Order, Page, PersistError, TenantId, ThreadId};
use sqlx::PgConnection;

use crate::error::map_sqlx;
use crate::rows::{self, message_columns, signed, tenant_key};

/// The walk of the branch ending at seq `$3` of thread `$2` of tenant `$1`: its runs `(lo,
/// hi)`, from the last up. A run starts at the nearest message at or below its end that stores
/// a parent (seq 1 when none does); the run above ends at that parent.
macro_rules! walk {
    () => {
        "WITH RECURSIVE walk(lo, hi) AS ( \
             SELECT coalesce((SELECT max(j.seq) FROM messages j \
                               WHERE j.tenant = $1 AND j.thread_id = $2 AND j.seq <= $3 \
                                 AND j.parent_seq IS NOT NULL), 1), \
                    $3::bigint \
             WHERE $3::bigint IS NOT NULL \
             UNION ALL \
             SELECT coalesce((SELECT max(j.seq) FROM messages j \
                               WHERE j.tenant = $1 AND j.thread_id = $2 AND j.seq <= p.parent_seq \
                                 AND j.parent_seq IS NOT NULL), 1), \
                    p.parent_seq \
               FROM walk w JOIN messages p ON p.tenant = $1 AND p.thread_id = $2 AND p.seq = w.lo \
              WHERE p.parent_seq > 0) "
    };
}

/// A page of a branch: each run's rows within the window (`$4` < seq < `$5`, placeholders only
/// with `$6`), at most `$7` per run and in all, in `$order`.
macro_rules! branch_page {
    ($order:literal) => {
        concat!(
            walk!(),
            "SELECT m.* FROM walk w CROSS JOIN LATERAL ( \
                 SELECT ",
            message_columns!(),
            " FROM messages \
                  WHERE tenant = $1 AND thread_id = $2 AND seq BETWEEN greatest(w.lo, $4 + 1) AND least(w.hi, $5 - 1) \
                    AND ($6 OR status <> 'reserved') \
                  ORDER BY seq ",
            $order,
            " LIMIT $7) m \
              ORDER BY m.seq ",
            $order,
            " LIMIT $7"
        )
    };
}

/// The new active leaf of a thread truncated after seq `$4` whose leaf was `$3`: the last
/// message of its branch at or below `$4` (none when no message of it is).
pub(crate) const LEAF_KEPT: &str = concat!(walk!(), "SELECT max(least(hi, $4)) FROM walk WHERE lo <= $4");

/// The most recent message under seq `$3` of thread `$2` of tenant `$1` (the highest seq among
/// it and its descendants): down the next seq of each run and every run start.
pub(crate) const LATEST_UNDER: &str = "\
    WITH RECURSIVE under(seq) AS ( \
        SELECT $3::bigint \
        UNION ALL \
        SELECT m.seq FROM under u JOIN messages m \
            ON m.tenant = $1 AND m.thread_id = $2 \
           AND ((m.seq = u.seq + 1 AND m.parent_seq IS NULL) OR m.parent_seq = u.seq)) \
    SELECT max(seq) FROM under";

/// The children of seq `$3` (`NULL`: the roots): the message just after it when that stores no
/// parent, and those that store it (the roots: seq 1 when it stores none, and those storing 0).
const CHILDREN: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE tenant = $1 AND thread_id = $2 AND seq = coalesce($3, 0) + 1 AND parent_seq IS NULL \
     UNION ALL SELECT ",
    message_columns!(),
    " FROM messages WHERE tenant = $1 AND thread_id = $2 AND parent_seq = coalesce($3, 0) \
     ORDER BY seq"
);

/// The leaves of a thread (messages no message follows), by seq.
const LEAVES: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages m WHERE tenant = $1 AND thread_id = $2 \
        AND NOT EXISTS (SELECT 1 FROM messages c WHERE c.tenant = $1 AND c.thread_id = $2 \
                           AND c.seq = m.seq + 1 AND c.parent_seq IS NULL) \
        AND NOT EXISTS (SELECT 1 FROM messages c WHERE c.tenant = $1 AND c.thread_id = $2 \
                           AND c.parent_seq = m.seq) \
      ORDER BY seq"
);

/// The seqs of the active branch, with the message named (its seq and parent), in one
/// statement.
const ACTIVE_PATH: &str = concat!(
    "WITH RECURSIVE leaf AS (SELECT active_leaf FROM threads WHERE tenant = $1 AND thread_id = $2), ",
    "walk(lo, hi) AS ( \
         SELECT coalesce((SELECT max(j.seq) FROM messages j \
                           WHERE j.tenant = $1 AND j.thread_id = $2 AND j.seq <= leaf.active_leaf \
                             AND j.parent_seq IS NOT NULL), 1), \
                leaf.active_leaf \
           FROM leaf WHERE leaf.active_leaf IS NOT NULL \
         UNION ALL \
         SELECT coalesce((SELECT max(j.seq) FROM messages j \
                           WHERE j.tenant = $1 AND j.thread_id = $2 AND j.seq <= p.parent_seq \
                             AND j.parent_seq IS NOT NULL), 1), \
                p.parent_seq \
           FROM walk w JOIN messages p ON p.tenant = $1 AND p.thread_id = $2 AND p.seq = w.lo \
          WHERE p.parent_seq > 0) \
     SELECT lo, hi FROM walk"
);

fn sql(context: &'static str) -> impl FnOnce(sqlx::Error) -> PersistError {
    move |e| map_sqlx(context, e)
}

/// The seq and parent of message `id`, if the thread has it.
async fn seq_of(
    conn: &mut PgConnection,
    tenant: &str,
    thread: &str,
    id: &str,
) -> Result<Option<(u64, Option<u64>)>, PersistError> {
    let row: Option<(i64, Option<i64>)> =
        sqlx::query_as("SELECT seq, parent_seq FROM messages WHERE tenant = $1 AND thread_id = $2 AND message_id = $3")
            .bind(tenant)
            .bind(thread)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(sql("finding a message"))?;
    Ok(row.map(|(seq, stored)| {
        let seq = u64::try_from(seq).unwrap_or_default();
        (seq, parent_from_stored(seq, stored.and_then(|p| u64::try_from(p).ok())))
    }))
}

/// A page of a branch (see the [module docs](self)).
pub(crate) async fn list_branch(
    conn: &mut PgConnection,
    query: &ListMessages,
    branch: &Branch,
) -> Result<Page<Message>, PersistError> {
    query.validate()?;
    let (tenant, thread) = (tenant_key(query.tenant()), query.thread_id.as_str());
    let leaf = match branch {
        Branch::EndingAt(id) => match seq_of(conn, tenant, thread, id.as_str()).await? {
            Some((seq, _)) => Some(seq),
            None => return Err(unknown_message(&query.thread_id, id)),
        },
        _ => {
            sqlx::query_scalar::<_, Option<i64>>("SELECT active_leaf FROM threads WHERE tenant = $1 AND thread_id = $2")
                .bind(tenant)
                .bind(thread)
                .fetch_optional(&mut *conn)
                .await
                .map_err(sql("reading the active leaf"))?
                .flatten()
                .and_then(|leaf| u64::try_from(leaf).ok())
        }
    };
    let Some(leaf) = leaf else { return Ok(Page::new(Vec::new(), None, false)) };
    let statement = match query.order {
        Order::Asc => branch_page!("ASC"),
        Order::Desc => branch_page!("DESC"),
    };
    let rows = sqlx::query(statement)
        .bind(tenant)
        .bind(thread)
        .bind(signed(leaf))
        .bind(query.after.map_or(0, signed))
        .bind(query.before.map_or(i64::MAX, signed))
        .bind(query.include_reserved)
        .bind(i64::from(query.fetch_limit()))
        .fetch_all(&mut *conn)
        .await
        .map_err(sql("listing a branch"))?;
    let items = rows.iter().map(rows::message).collect::<Result<Vec<_>, _>>()?;
    Ok(query.page(items))
}

/// A message's siblings or a thread's leaves, with the one on the active branch.
pub(crate) async fn branches(conn: &mut PgConnection, query: &ListBranches) -> Result<Branches, PersistError> {
    let (tenant, thread) = (tenant_key(query.tenant()), query.thread_id.as_str());
    let rows = match &query.of {
        BranchesOf::Siblings(id) => {
            let Some((_, parent)) = seq_of(conn, tenant, thread, id.as_str()).await? else {
                return Err(unknown_message(&query.thread_id, id));
            };
            sqlx::query(CHILDREN).bind(tenant).bind(thread).bind(parent.map(signed)).fetch_all(&mut *conn).await
        }
        _ => sqlx::query(LEAVES).bind(tenant).bind(thread).fetch_all(&mut *conn).await,
    }
    .map_err(sql("reading branches"))?;
    let items = rows.iter().map(rows::message).collect::<Result<Vec<_>, _>>()?;
    let runs: Vec<(i64, i64)> = sqlx::query_as(ACTIVE_PATH)
        .bind(tenant)
        .bind(thread)
        .fetch_all(&mut *conn)
        .await
        .map_err(sql("walking the active branch"))?;
    let path: BTreeSet<u64> = runs
        .into_iter()
        .flat_map(|(lo, hi)| u64::try_from(lo).unwrap_or_default()..=u64::try_from(hi).unwrap_or_default())
        .collect();
    Ok(Branches::on_path(items, &path))
}

/// The active leaf a switch to message `id` makes (its seq, or with `latest` the most recent
/// under it), read under the thread's lock; `NotFound` for a message the thread does not have.
pub(crate) async fn switched_leaf(
    tx: &mut PgConnection,
    tenant: Option<&TenantId>,
    thread_id: &ThreadId,
    id: &persist_core::MessageId,
    latest: bool,
) -> Result<u64, PersistError> {
    let (tenant, thread) = (tenant_key(tenant), thread_id.as_str());
    let Some((seq, _)) = seq_of(tx, tenant, thread, id.as_str()).await? else {
        return Err(unknown_message(thread_id, id));
    };
    if !latest {
        return Ok(seq);
    }
    let latest: Option<i64> = sqlx::query_scalar(LATEST_UNDER)
        .bind(tenant)
        .bind(thread)
        .bind(signed(seq))
        .fetch_one(&mut *tx)
        .await
        .map_err(sql("finding the most recent message of a branch"))?;
    Ok(latest.and_then(|latest| u64::try_from(latest).ok()).unwrap_or(seq))
}
