//! The writer: one task owns the write connection and commits in groups.
//!
//! Callers hand their write to the task over a channel and wait for its answer (unless a lone
//! caller's insert takes the lane, `crate::lane`: the task and the lane never hold a
//! transaction at once). The task takes
//! whatever is queued (up to `max_batch`), applies it in one transaction and answers each
//! caller only after it committed, so an answer means the write is durable. A lone caller never
//! waits for company: the task starts as soon as one write is queued.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

use persist_core::{PersistArgs, PersistError};
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use crate::error::map_sqlx;
use crate::gate::Gate;
use crate::lane::{Lane, Ticket};
use crate::limits::Limits;
use crate::wal::{CHECKPOINT_EVERY, Checkpoint, WalLimit, checkpoint, empty_the_log};
use crate::write::{self, Answer, Failure, Write, rollback};

/// One queued write and where to send its answer.
pub(crate) struct Job {
    pub(crate) write: Write,
    pub(crate) reply: oneshot::Sender<Result<Answer, PersistError>>,
    /// Counts the write as queued (see [`Queued`](crate::lane::Queued)) until it is answered.
    pub(crate) ticket: Ticket,
}

impl Job {
    /// Sends the answer, the write no longer counted as queued by then: the caller, woken by
    /// it, may take the lane for its next write.
    fn answer(self, answer: Result<Answer, PersistError>) {
        let Self { write, reply, ticket } = self;
        drop((write, ticket));
        let _ = reply.send(answer);
    }
}

/// Writes committed between two looks at the log's size (one `stat` of its file): a log over
/// its limit is cut back at most this many writes late.
pub(crate) const SIZE_CHECK_EVERY: usize = 32;

/// Runs until every handle (every sender) is gone or [`close`](crate::SqliteBackend::close)
/// asks it to stop, finishing every write queued by then; then closes the connection (and drops
/// the checkpointer's channel, which ends the checkpointer).
///
/// Groups overlap by one step: once a group is committed, the writes queued meanwhile are
/// sent to the connection as the next group *before* the committed group's callers are
/// answered, so the connection's thread (where SQLite does the work) does not wait while
/// answers go out. With 64 callers it was otherwise idle a quarter of the time. A lone caller
/// is not affected: with nothing queued, its answer goes out at once.
pub(crate) async fn run(
    mut conn: SqliteConnection,
    mut jobs: mpsc::Receiver<Job>,
    checkpoints: mpsc::Sender<Checkpoint>,
    mut stop: mpsc::Receiver<()>,
    settings: Settings,
) {
    let Settings { limits, max_batch, wal, gate, lane } = settings;
    let lane = lane.as_deref();
    let (mut batch, mut next) = (Vec::with_capacity(max_batch), Vec::with_capacity(max_batch));
    // The outcome of `batch`, already committed (or failed) but not yet answered.
    let mut committed = None;
    let mut since_checkpoint = 0;
    let mut since_size_check = 0;
    let mut size_check_every = SIZE_CHECK_EVERY;
    // Whether the lane had found the log over its limit at the last look.
    let mut was_marked = false;
    loop {
        // Asked to stop (or every handle is gone): no new write is queued from now on, and the
        // writes queued already are still written. Checked every turn: under steady load the
        // writer never waits below.
        if !matches!(stop.try_recv(), Err(mpsc::error::TryRecvError::Empty)) {
            jobs.close();
        }
        let outcome = match committed.take() {
            Some(outcome) => outcome,
            None => {
                let taken = loop {
                    let receive = poll_fn(|cx| {
                        // Asked to stop: no new write is queued, those queued are still written.
                        if stop.poll_recv(cx).is_ready() {
                            jobs.close();
                        }
                        jobs.poll_recv_many(cx, &mut batch, max_batch)
                    });
                    match tokio::time::timeout(WalLimit::IDLE, receive).await {
                        Ok(taken) => break taken,
                        // No write for a while: a log grown past its limit can be cut back, and
                        // the messages waiting for the search index are indexed.
                        Err(_) => {
                            if wal.over() {
                                let _ = checkpoints.try_send(Checkpoint::Trim);
                            }
                            index_waiting(&mut conn, &gate).await;
                        }
                    }
                };
                if taken == 0 {
                    break;
                }
                // Held from here until the last group committed meanwhile is answered.
                gate.take().await;
                commit(&mut conn, lane, &wal, &batch, &limits).await
            }
        };
        since_checkpoint += batch.len();
        match outcome {
            Ok(answers) => {
                while next.len() < max_batch {
                    match jobs.try_recv() {
                        Ok(job) => next.push(job),
                        Err(_) => break,
                    }
                }
                if next.is_empty() {
                    // Before the answers: a caller woken by its answer finds the lane free.
                    gate.give_back();
                    answer(&mut batch, answers);
                } else {
                    let outcome = {
                        let mut committing = pin!(commit(&mut conn, lane, &wal, &next, &limits));
                        // One poll hands the next group to the connection's thread; a small
                        // group of inserts it commits on the lane's connection, here (a few
                        // hundred microseconds before the answers below go out).
                        let early = poll_fn(|cx| Poll::Ready(committing.as_mut().poll(cx))).await;
                        answer(&mut batch, answers);
                        match early {
                            Poll::Ready(outcome) => outcome,
                            Poll::Pending => committing.await,
                        }
                    };
                    committed = Some(outcome);
                    std::mem::swap(&mut batch, &mut next);
                }
            }
            // One operation broke the transaction: isolate it by running each write alone.
            Err(Abort::Operation(_)) if batch.len() > 1 => {
                let mut answers = Vec::with_capacity(batch.len());
                for job in &batch {
                    answers.push(match commit(&mut conn, lane, &wal, std::slice::from_ref(job), &limits).await {
                        Ok(mut answers) => answers.pop().unwrap_or_else(|| Err(lost())),
                        Err(abort) => Err(abort.into_error()),
                    });
                }
                gate.give_back();
                answer(&mut batch, answers);
            }
            // The transaction itself failed (busy, disk full): nothing was applied.
            Err(abort) => {
                gate.give_back();
                let error = abort.into_error();
                let last = batch.pop();
                for job in batch.drain(..) {
                    job.answer(Err(error.replicate()));
                }
                if let Some(job) = last {
                    job.answer(Err(error));
                }
            }
        }
        // A group committing still holds the gate; otherwise it is taken for the upkeep below.
        let holding = committed.is_some();
        since_size_check += batch.len().max(1);
        // The lane just found the log over its limit and stood aside: cut it back now, not 32
        // writes later (later tries follow the pace below).
        let marked = wal.marked_over();
        if marked && !was_marked {
            since_size_check = size_check_every;
        }
        was_marked = marked;
        // Under steady load a committed group is nearly always waiting for its answers here: a
        // cut delays them (up to its wait), only while the log is over its limit.
        if since_size_check >= size_check_every {
            since_size_check = 0;
            if !wal.over() {
                wal.mark_under();
            } else {
                // Readers coming and going keep the log from restarting at its start: cut it
                // back here, under the load (a short stall, only when it is over its limit).
                // A reader holding one snapshot longer makes it fail: then look less often,
                // rather than stall every few writes behind that reader.
                if !holding {
                    gate.take().await;
                }
                let cut = wal.cut_back(&mut conn).await;
                if !holding {
                    gate.give_back();
                }
                if cut {
                    size_check_every = SIZE_CHECK_EVERY;
                    since_checkpoint = 0;
                } else {
                    size_check_every = (size_check_every * 2).min(SIZE_CHECK_EVERY * 64);
                }
            }
        }
        if since_checkpoint >= CHECKPOINT_EVERY {
            since_checkpoint = 0;
            if committed.is_none() && jobs.is_empty() {
                // Nobody is waiting (every answer is sent): copy the log back here, as SQLite's
                // automatic checkpoint would. On the second connection it would run alongside
                // the next write and slow it (a lone caller's adds: 0.74–0.95 of hand-written
                // sqlx that way, 0.84–0.95 this way).
                gate.take().await;
                checkpoint(&mut conn).await;
                gate.give_back();
            } else {
                // Writes are queued: the second connection copies while the writer goes on.
                // Full: a request is already pending, which is enough.
                let _ = checkpoints.try_send(Checkpoint::Copy);
            }
        }
    }
    // What waits for the search index is indexed before the handle lets the file go.
    index_waiting(&mut conn, &gate).await;
    let _ = conn.close().await;
}

/// Indexes the messages waiting for the search index (`migrations/0024`), if any, in a
/// transaction of their own: when the writer is idle, and as it closes. A failure (the file
/// busy) leaves them waiting, for the next search or write.
async fn index_waiting(conn: &mut SqliteConnection, gate: &Gate) {
    let waiting = sqlx::query_scalar::<_, bool>(crate::search::ANY_WAITING).fetch_one(&mut *conn).await;
    if !matches!(waiting, Ok(true)) {
        return;
    }
    gate.take().await;
    if execute(conn, "BEGIN IMMEDIATE").await.is_ok() {
        let indexed = sqlx::raw_sql(crate::search::FLUSH).execute(&mut *conn).await;
        if indexed.is_err() || execute(conn, "COMMIT").await.is_err() {
            rollback(conn).await;
        }
    }
    gate.give_back();
}

/// Sends each job of a committed group its answer. A caller that stopped waiting does not read
/// its answer; its write stands.
fn answer(batch: &mut Vec<Job>, answers: Vec<Result<Answer, PersistError>>) {
    for (job, answer) in batch.drain(..).zip(answers) {
        job.answer(answer);
    }
}

/// What the writer is configured with.
pub(crate) struct Settings {
    pub(crate) limits: Limits,
    /// Most writes committed in one transaction.
    pub(crate) max_batch: usize,
    pub(crate) wal: WalLimit,
    /// Taken while the writer holds a transaction (see [`Gate`]).
    pub(crate) gate: Arc<Gate>,
    /// Where groups of inserts are committed, on this task's thread, when there is one.
    pub(crate) lane: Option<Arc<Lane>>,
}

/// Why a whole group was not committed.
enum Abort {
    /// `BEGIN` or `COMMIT` failed.
    Transaction(PersistError),
    /// An operation failed mid-write.
    Operation(PersistError),
}

impl Abort {
    fn into_error(self) -> PersistError {
        match self {
            Self::Transaction(error) | Self::Operation(error) => error,
        }
    }
}

/// Applies `jobs` in one transaction; answers per job, or why none was committed.
///
/// The writer runs with `secure_delete` on (set with the inbox): a cell a write removes or
/// rewrites is zeroed in its page and a page it frees is zeroed, so no old copy of a row
/// lingers in free space. Once a group holding a purge is committed, the write-ahead log is
/// copied back and emptied (`wal_checkpoint(TRUNCATE)`, waiting for readers up to the busy
/// timeout), so no older copy of a purged page stays in the log. (A reader holding an older
/// snapshot for longer than that leaves the log as it is until a later checkpoint empties it.)
async fn commit(
    conn: &mut SqliteConnection,
    lane: Option<&Lane>,
    wal: &WalLimit,
    jobs: &[Job],
    limits: &Limits,
) -> Result<Vec<Result<Answer, PersistError>>, Abort> {
    let purging = jobs.iter().any(|job| matches!(&job.write, Write::Persist(PersistArgs::Delete(d)) if d.purge));
    if !purging {
        return commit_group(conn, lane, jobs, limits).await;
    }
    let committed = commit_group(conn, lane, jobs, limits).await;
    if committed.is_ok() {
        empty_the_log(conn, wal).await;
    }
    committed
}

async fn commit_group(
    conn: &mut SqliteConnection,
    lane: Option<&Lane>,
    jobs: &[Job],
    limits: &Limits,
) -> Result<Vec<Result<Answer, PersistError>>, Abort> {
    let writes: Vec<&Write> = jobs.iter().map(|job| &job.write).collect();
    // The common case, a group of adds and reserves, commits in a single round trip.
    if let Some(committed) = write::commit_inserts(conn, lane, &writes, limits).await {
        return committed.map_err(|failure| match failure {
            Failure::Refused(error) | Failure::Aborted(error) if error.is_temporary() => Abort::Transaction(error),
            Failure::Refused(error) | Failure::Aborted(error) => Abort::Operation(error),
        });
    }
    // Plain statements, not sqlx's `Transaction`: when `COMMIT` fails (a full disk), SQLite may
    // already have rolled back by itself, the driver's own `ROLLBACK` then fails, and its count
    // of open transactions would stay at one, refusing every later `BEGIN` on this connection.
    // Here a failed write always ends with a `ROLLBACK` whose own failure ("no transaction is
    // active") means there was nothing left to undo, so the connection is always back outside
    // any transaction.
    execute(conn, "BEGIN IMMEDIATE")
        .await
        .map_err(|e| Abort::Transaction(map_sqlx("starting a write transaction", e)))?;
    let answers = match write::apply_batch(conn, &writes, limits).await {
        Ok(answers) => answers,
        Err(failure) => {
            rollback(conn).await;
            return Err(Abort::Operation(match failure {
                Failure::Refused(error) | Failure::Aborted(error) => error,
            }));
        }
    };
    if let Err(error) = execute(conn, "COMMIT").await {
        rollback(conn).await;
        return Err(Abort::Transaction(map_sqlx("committing", error)));
    }
    Ok(answers)
}

async fn execute(conn: &mut SqliteConnection, statement: &'static str) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(statement).execute(conn).await.map(drop)
}

fn lost() -> PersistError {
    PersistError::Backend { message: "the writer lost an answer".into(), source: None }
}
