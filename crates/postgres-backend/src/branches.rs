//! Branches in SQL: a branch read from its last message up, a message's children, the leaves,
//! and the most recent message under one (see migration 8).
//!
//! Most messages follow the one just before them and store no parent (`parent_seq` NULL; see
//! [`stored_parent`](persist_core::branch::stored_parent)), so a branch is a few runs of
//! consecutive seqs. A run starts at a message that stores one (a root, the first message of a
//! branch): the partial indexes of migration 8 hold only those. A branch is walked up through
//! them ([`RunWalk`], read from the index in chunks, newest first), then a page's rows are read
//! from the runs it covers.

use std::collections::BTreeSet;

use persist_core::branch::{
    Branch, BranchWindow, Branches, BranchesOf, ListBranches, RunWalk, parent_from_stored, unknown_message,
};
use persist_core::read::ListMessages;
use persist_core::{Message, Order, Page, PersistError, TenantId, ThreadId};
use sqlx::{Connection, PgConnection};

use crate::error::map_sqlx;
use crate::rows::{self, message_columns, signed, tenant_key};

/// The messages that start a run (they store a parent) of thread `$2` of tenant `$1` with seq at
/// most `$3`, newest first, at most `$4`: a chunk of a [`RunWalk`], from the covering partial
/// index alone.
const RUN_STARTS: &str = "\
    SELECT seq, parent_seq FROM messages \
     WHERE tenant = $1 AND thread_id = $2 AND parent_seq IS NOT NULL AND seq <= $3 \
     ORDER BY seq DESC LIMIT $4";

/// Run starts read per statement of a walk: a branch of 1,000 messages that each start a run
/// (ten branches written a message each in turn) is walked in one.
const CHUNK: usize = 10_000;

/// A page of a branch: the rows of the runs `($1[i], $2[i])` of thread `$4` of tenant `$3`,
/// placeholders only with `$5`, at most `$6`, in `$order`, of the roles `$7` (every role when
/// NULL). Each run is a range of the primary
/// key, read in turn (`LATERAL`, kept a subquery by `OFFSET 0`): pulled up into a join, the
/// planner made the thread's messages the outer loop and every run an inner scan (a second for
/// a page of 1,000 runs).
macro_rules! runs_page {
    ($order:literal) => {
        concat!(
            "SELECT ",
            message_columns!(),
            " FROM unnest($1::bigint[], $2::bigint[]) AS r(lo, hi) \
              CROSS JOIN LATERAL (SELECT * FROM messages \
                                   WHERE tenant = $3 AND thread_id = $4 AND seq BETWEEN r.lo AND r.hi OFFSET 0) m \
              WHERE ($5 OR m.status <> 'reserved') AND ($7::text[] IS NULL OR m.role = ANY ($7)) \
              ORDER BY m.seq ",
            $order,
            " LIMIT $6"
        )
    };
}
pub(crate) use runs_page;

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

fn sql(context: &'static str) -> impl FnOnce(sqlx::Error) -> PersistError {
    move |e| map_sqlx(context, e)
}

/// The seq and parent of message `id`, if the thread has it.
pub(crate) async fn seq_of(
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

/// The runs of the branch of `thread` ending at `leaf`, ascending (see [`RunWalk`]).
pub(crate) async fn runs(
    conn: &mut PgConnection,
    tenant: &str,
    thread: &str,
    leaf: u64,
) -> Result<Vec<(u64, u64)>, PersistError> {
    let mut walk = RunWalk::new(leaf);
    while let Some(at) = walk.wants() {
        let chunk: Vec<(i64, i64)> = sqlx::query_as(RUN_STARTS)
            .bind(tenant)
            .bind(thread)
            .bind(signed(at))
            .bind(CHUNK as i64)
            .fetch_all(&mut *conn)
            .await
            .map_err(sql("walking a branch"))?;
        let chunk: Vec<(u64, Option<u64>)> = chunk
            .into_iter()
            .map(|(seq, stored)| (u64::try_from(seq).unwrap_or_default(), u64::try_from(stored).ok()))
            .collect();
        walk.feed(&chunk, chunk.len() < CHUNK);
    }
    Ok(walk.runs())
}

/// The active leaf of `thread`, if it has messages.
pub(crate) async fn active_leaf(
    conn: &mut PgConnection,
    tenant: &str,
    thread: &str,
) -> Result<Option<u64>, PersistError> {
    let leaf: Option<Option<i64>> =
        sqlx::query_scalar("SELECT active_leaf FROM threads WHERE tenant = $1 AND thread_id = $2")
            .bind(tenant)
            .bind(thread)
            .fetch_optional(&mut *conn)
            .await
            .map_err(sql("reading the active leaf"))?;
    Ok(leaf.flatten().and_then(|leaf| u64::try_from(leaf).ok()))
}

/// Runs `read` in a read-only transaction of one snapshot (`REPEATABLE READ`): the statements
/// of a branch read see one state of the thread, never a branch cut by a delete between them.
///
/// Behind a transaction pooler the operation is a transaction already, begun as one snapshot
/// ([`Begin::Snapshot`](crate::pool::Begin::Snapshot)): it is made read-only (and the server
/// refuses if it was begun otherwise: never a read of two snapshots).
pub(crate) async fn in_one_snapshot<T>(
    conn: &mut PgConnection,
    read: impl AsyncFnOnce(&mut PgConnection) -> Result<T, PersistError>,
) -> Result<T, PersistError> {
    if conn.is_in_transaction() {
        sqlx::raw_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *conn)
            .await
            .map_err(sql("starting a branch read"))?;
        return read(conn).await;
    }
    let mut tx = conn
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(sql("starting a branch read"))?;
    let answer = read(&mut tx).await;
    tx.rollback().await.map_err(sql("ending a branch read"))?;
    answer
}

/// A page of a branch (see the [module docs](self)): its last message, its run starts (a
/// statement per 10,000), and the page's rows (again when placeholders left out leave it
/// short), run in [`in_one_snapshot`].
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
        _ => active_leaf(conn, tenant, thread).await?,
    };
    let Some(leaf) = leaf else { return Ok(Page::new(Vec::new(), None, false)) };
    let runs = runs(conn, tenant, thread, leaf).await?;
    let mut window = BranchWindow::new(runs, query.after, query.before, query.order == Order::Desc);
    let statement = match query.order {
        Order::Asc => runs_page!("ASC"),
        Order::Desc => runs_page!("DESC"),
    };
    let fetch = u64::from(query.fetch_limit());
    let roles = query.role_names();
    let mut items = Vec::with_capacity(fetch as usize);
    let mut span = fetch;
    // Usually once; again when placeholders or other roles left out leave the page short, over
    // twice as many seqs each time (a few messages of some roles in a long branch take a few
    // statements, not one per page's worth of seqs).
    while (items.len() as u64) < fetch && !window.is_empty() {
        let wanted = fetch - items.len() as u64;
        let taken = window.take(if roles.is_some() { span } else { wanted });
        span = span.saturating_mul(2);
        let (los, his): (Vec<i64>, Vec<i64>) = taken.into_iter().map(|(lo, hi)| (signed(lo), signed(hi))).unzip();
        let rows = sqlx::query(statement)
            .bind(los)
            .bind(his)
            .bind(tenant)
            .bind(thread)
            .bind(query.include_reserved)
            .bind(signed(wanted))
            .bind(roles.as_deref())
            .fetch_all(&mut *conn)
            .await
            .map_err(sql("listing a branch"))?;
        for row in &rows {
            items.push(rows::message(row)?);
        }
    }
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
    let path: BTreeSet<u64> = match active_leaf(conn, tenant, thread).await? {
        Some(leaf) => runs(conn, tenant, thread, leaf).await?.into_iter().flat_map(|(lo, hi)| lo..=hi).collect(),
        None => BTreeSet::new(),
    };
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
