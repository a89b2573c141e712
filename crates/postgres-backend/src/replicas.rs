//! Reads from hot standbys, with read-your-writes.
//!
//! A backend built with [replicas](crate::PostgresBackendBuilder::replica) writes to the
//! primary and answers the reads of messages, threads, branches, summaries and searches from
//! the standbys (one server per URL). Each write, once committed, reads the primary's WAL
//! position and records it in the handle's [`Consistency`] and the request's; a read must see
//! the newer of the two. Writes committed together share one position read: a read of the
//! position that started after a write's commit covers it, so a group of inserts costs one
//! more round trip, not one per insert. A write whose position was not recorded (an error, a
//! cancelled caller) makes the next read ask the primary for its position first.
//!
//! A standby known to have replayed what the read must see answers at once (its position is
//! asked again when it is more than a second old, which also finds a standby that was
//! promoted); otherwise the read waits for one to get there, up to
//! [`replica_wait`](crate::PostgresBackendBuilder::replica_wait), asking how far each has
//! replayed (`pg_last_wal_replay_lsn()`, one reader asking at a time per standby, the others
//! reading the answer), and past that bound the primary answers. A standby that cannot be
//! reached, was promoted, loses a connection or does not answer a read within the statement
//! time-out (plus 5 s) is left alone for a second (then two, up to thirty while it keeps
//! failing), its reads answered by the others or the primary; a read a standby cancelled (a
//! recovery conflict) or that found its pool full is read again on the primary.
//!
//! The position read after a commit is the primary's WAL insert position: the end of the
//! write's commit record or later. Right after a page boundary that position points past the
//! next page's header, where no record ends, so it is taken back to the boundary (else a
//! standby that has replayed everything would never be seen to reach it until the next write).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use persist_core::{CommitPosition, Consistency, Context, PersistError, Result};
use sqlx::PgConnection;

use crate::error::map_sqlx;
use crate::pool::{Begin, Pool, is_busy, lost_connection};

/// Which writes a read from a standby must see, besides those its request's
/// [`Consistency`] names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Freshness {
    /// Every write this handle (and every handle sharing its
    /// [consistency](crate::PostgresBackendBuilder::consistency)) made: code that writes and
    /// then reads through one handle reads its writes, as without standbys. The default.
    #[default]
    Handle,
    /// Only those of the request's [`Consistency`]: a read that carries none takes a standby as
    /// it is (a UI listing threads), however far behind; writes then hold up no read that
    /// does not ask for them.
    Request,
}

/// How this handle's reads were answered since it connected (see
/// [`PostgresBackend::replica_stats`](crate::PostgresBackend::replica_stats)); also counted as
/// `persist_replica_reads_total{outcome}` through the `metrics` facade, beside the metrics
/// layer's own. A read that fails is not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaStats {
    /// Answered by a standby that had replayed what the read must see when first asked
    /// (`outcome="replica"`).
    pub replica: u64,
    /// Answered by a standby after waiting for it to replay (`outcome="waited"`).
    pub waited: u64,
    /// Answered by the primary: no standby replayed in time, or the standby had not replayed
    /// the schema's creation or a migration yet (`outcome="lagging"`).
    pub lagging: u64,
    /// Answered by the primary: no standby could answer (unreachable, promoted, a lost
    /// connection, no answer in time, a read the standby cancelled, its pool full)
    /// (`outcome="down"`).
    pub down: u64,
}

/// The standbys of one backend and what it knows of them.
pub(crate) struct Replicas {
    standbys: Vec<Standby>,
    wait: Duration,
    /// Longest a standby's read may take before the primary answers it (`None`: no bound).
    read_limit: Option<Duration>,
    freshness: Freshness,
    /// The writes of this handle (and those sharing it).
    handle: Consistency,
    /// Writes whose position was not recorded (counted), how many of them a position read
    /// since covers, and that position: a read that must see some write must see it (the
    /// unrecorded write may be that one).
    unrecorded: AtomicU64,
    floor: Consistency,
    covered: AtomicU64,
    /// The newest position read from the primary, and when that read started: it covers every
    /// write committed before. Position reads take turns here.
    latest: tokio::sync::Mutex<Option<(Instant, CommitPosition)>>,
    /// Round robin among the standbys.
    next: AtomicUsize,
    /// WAL page and segment sizes of the primary (positions right after a page header).
    block: u64,
    segment: u64,
    counts: [AtomicU64; 4],
    counters: [metrics::Counter; 4],
}

/// One standby.
struct Standby {
    pool: Pool,
    /// The newest replay position seen (0 after a failure: a restarted standby may answer
    /// from an older point).
    replayed: AtomicU64,
    /// When its position was last read.
    asked_at: Mutex<Option<Instant>>,
    /// Held while a reader asks its position: one asks at a time, the others read `replayed`.
    asking: tokio::sync::Mutex<()>,
    /// While failing: skipped until then, and the pause that set it.
    failing: Mutex<Option<(Instant, Duration)>>,
}

/// Where a read goes.
enum Choice<'a> {
    Standby(&'a Standby, Outcome),
    Primary(Outcome),
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Replica = 0,
    Waited = 1,
    Lagging = 2,
    Down = 3,
}

const OUTCOMES: [&str; 4] = ["replica", "waited", "lagging", "down"];

/// First pause of a failing standby, and the longest.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
const LONGEST_PAUSE: Duration = Duration::from_secs(30);

/// A standby's position older than this is asked again before the standby answers a read.
const FRESH: Duration = Duration::from_secs(1);

/// A write whose position is not recorded yet: dropped before [`Pending::committed`]
/// succeeded (an error, a cancelled caller), it makes the next read ask the primary first.
pub(crate) struct Pending {
    replicas: Arc<Replicas>,
    recorded: bool,
}

impl Pending {
    /// Records the position of the write, committed by now, in the handle's consistency and
    /// `request`'s.
    pub(crate) async fn committed(mut self, primary: &Pool, request: Option<&Consistency>) {
        if let Ok(position) = self.replicas.position_now(primary).await {
            self.replicas.handle.observe(position);
            if let Some(request) = request {
                request.observe(position);
            }
            self.recorded = true;
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.recorded {
            self.replicas.unrecorded.fetch_add(1, Ordering::AcqRel);
        }
    }
}

impl Replicas {
    pub(crate) async fn new(
        pools: Vec<Pool>,
        primary: &mut PgConnection,
        wait: Duration,
        read_limit: Option<Duration>,
        freshness: Freshness,
        handle: Consistency,
    ) -> Result<Self> {
        let (block, segment): (i64, i64) = sqlx::query_as(
            "SELECT current_setting('wal_block_size')::bigint, \
                    (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size')",
        )
        .fetch_one(&mut *primary)
        .await
        .map_err(|e| map_sqlx("reading the primary's WAL page size", e))?;
        let standbys = pools
            .into_iter()
            .map(|pool| Standby {
                pool,
                replayed: AtomicU64::new(0),
                asked_at: Mutex::new(None),
                asking: tokio::sync::Mutex::new(()),
                failing: Mutex::new(None),
            })
            .collect();
        Ok(Self {
            standbys,
            wait,
            read_limit,
            freshness,
            handle,
            unrecorded: AtomicU64::new(0),
            floor: Consistency::new(),
            covered: AtomicU64::new(0),
            latest: tokio::sync::Mutex::new(None),
            next: AtomicUsize::new(0),
            block: block.max(1) as u64,
            segment: segment.max(1) as u64,
            counts: Default::default(),
            counters: OUTCOMES.map(|outcome| metrics::counter!("persist_replica_reads_total", "outcome" => outcome)),
        })
    }

    /// Records the primary's position now in the handle's consistency: what connecting wrote
    /// (the schema, its migrations) is seen by the handle's reads.
    pub(crate) async fn connected(&self, primary: &Pool) -> Result<()> {
        self.seen(primary, &self.handle).await
    }

    pub(crate) fn stats(&self) -> ReplicaStats {
        let [replica, waited, lagging, down] = self.counts.each_ref().map(|count| count.load(Ordering::Relaxed));
        ReplicaStats { replica, waited, lagging, down }
    }

    pub(crate) async fn close(&self) {
        for standby in &self.standbys {
            standby.pool.close().await;
        }
    }

    /// A write about to be sent: its position is recorded by [`Pending::committed`], or it
    /// counts as unrecorded.
    pub(crate) fn pending(self: &Arc<Self>) -> Pending {
        Pending { replicas: Arc::clone(self), recorded: false }
    }

    /// Records in `request` the primary's position now: a request that read the change feed
    /// (on the primary) then reads the messages its events name from a standby that has them.
    pub(crate) async fn seen(&self, primary: &Pool, request: &Consistency) -> Result<()> {
        request.observe(self.position_now(primary).await?);
        Ok(())
    }

    /// A primary position read that started after this call: the end of every commit before
    /// it, or later. Concurrent callers share reads.
    async fn position_now(&self, primary: &Pool) -> Result<CommitPosition> {
        let after = Instant::now();
        let mut latest = self.latest.lock().await;
        if let Some((started, position)) = *latest
            && started >= after
        {
            return Ok(position);
        }
        let started = Instant::now();
        let mut conn = primary.acquire().await?;
        let read = sqlx::query_scalar::<_, i64>("SELECT (pg_current_wal_insert_lsn() - '0/0')::bigint")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| map_sqlx("reading the primary's WAL position", e));
        let read = conn.finish(read).await;
        let position = CommitPosition::new(record_boundary(read? as u64, self.block, self.segment));
        *latest = Some((started, position));
        Ok(position)
    }

    /// What a read of `context` must see. With writes unrecorded, the primary's position is
    /// read first: every read that must see some write sees it from then on.
    async fn needed(&self, primary: &Pool, context: &Context) -> Result<Option<CommitPosition>> {
        let unrecorded = self.unrecorded.load(Ordering::Acquire);
        if unrecorded > self.covered.load(Ordering::Acquire) {
            let position = self.position_now(primary).await?;
            self.handle.observe(position);
            self.floor.observe(position);
            self.covered.fetch_max(unrecorded, Ordering::AcqRel);
        }
        let request = context.consistency().and_then(Consistency::position);
        let needed = match self.freshness {
            Freshness::Handle => request.max(self.handle.position()),
            // A request that carries a consistency, even one with no position yet (its first
            // write was the one left unrecorded), sees the unrecorded writes.
            Freshness::Request => context.consistency().and(request.max(self.floor.position())),
        };
        Ok(needed)
    }

    /// Runs `read` on a standby that has what `context` must see, or on the primary.
    pub(crate) async fn read<T>(
        &self,
        primary: &Pool,
        context: &Context,
        begin: Begin,
        read: impl AsyncFnOnce(&mut PgConnection) -> Result<T> + Clone,
    ) -> Result<T> {
        let needed = self.needed(primary, context).await?;
        let outcome = match self.choose(needed).await {
            Choice::Primary(outcome) => outcome,
            Choice::Standby(standby, outcome) => match self.on_standby(standby, begin, read.clone()).await {
                Attempt::Answer(answer) => {
                    if answer.is_ok() {
                        self.count(outcome);
                    }
                    return answer;
                }
                Attempt::Primary(outcome) => outcome,
            },
        };
        self.count(outcome);
        let mut conn = primary.acquire_as(begin).await?;
        let answer = read(&mut conn).await;
        conn.finish(answer).await
    }

    /// Runs `read` on `standby`: its answer, or why the primary answers instead.
    async fn on_standby<T>(
        &self,
        standby: &Standby,
        begin: Begin,
        read: impl AsyncFnOnce(&mut PgConnection) -> Result<T>,
    ) -> Attempt<T> {
        let attempt = async {
            let mut conn = match standby.pool.acquire_as(begin).await {
                Ok(conn) => conn,
                // The standby is there, its connections all busy.
                Err(error) if is_busy(&error) => return Attempt::Primary(Outcome::Down),
                Err(_) => {
                    standby.failed();
                    return Attempt::Primary(Outcome::Down);
                }
            };
            let answer = read(&mut conn).await;
            let answer = conn.finish(answer).await;
            match answer {
                Ok(value) => {
                    standby.healthy();
                    Attempt::Answer(Ok(value))
                }
                Err(error) if lost_connection(&error) => {
                    standby.failed();
                    Attempt::Primary(Outcome::Down)
                }
                // It cancelled the read (a recovery conflict, its time-out): the primary answers.
                Err(error) if error.is_temporary() => Attempt::Primary(Outcome::Down),
                // It has not replayed the schema's creation (or a migration) yet.
                Err(error) if schema_missing(&error) => Attempt::Primary(Outcome::Lagging),
                // Not the standby's doing (bad input, a fault of the data): the primary's answer.
                Err(error) => Attempt::Answer(Err(error)),
            }
        };
        match self.read_limit {
            Some(limit) => tokio::time::timeout(limit, attempt).await.unwrap_or_else(|_| {
                standby.failed();
                Attempt::Primary(Outcome::Down)
            }),
            None => attempt.await,
        }
    }

    fn count(&self, outcome: Outcome) {
        self.counts[outcome as usize].fetch_add(1, Ordering::Relaxed);
        self.counters[outcome as usize].increment(1);
    }

    /// A standby for a read that must see `needed`: one known to have replayed it (asked
    /// within the last second), else one that gets there within the wait; the primary
    /// otherwise.
    async fn choose(&self, needed: Option<CommitPosition>) -> Choice<'_> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let count = self.standbys.len();
        let order = || (0..count).map(move |i| &self.standbys[(start + i) % count]);
        let needed = needed.map_or(0, CommitPosition::get);
        for standby in order() {
            if standby.usable() && standby.replayed.load(Ordering::Acquire) >= needed && standby.fresh() {
                return Choice::Standby(standby, Outcome::Replica);
            }
        }
        let ask_limit = self.wait.max(Duration::from_secs(1));
        let deadline = Instant::now() + self.wait;
        let mut pause = Duration::from_millis(1);
        let mut first = true;
        loop {
            let mut reachable = false;
            for standby in order().filter(|standby| standby.usable()) {
                let replayed = match standby.ask(ask_limit).await {
                    Asked::At(replayed) => replayed,
                    // Another reader is asking it (or its pool is full): what is known.
                    Asked::Busy => standby.replayed.load(Ordering::Acquire),
                    Asked::Failed => continue,
                };
                reachable = true;
                if replayed >= needed {
                    return Choice::Standby(standby, if first { Outcome::Replica } else { Outcome::Waited });
                }
            }
            if !reachable {
                return Choice::Primary(Outcome::Down);
            }
            let now = Instant::now();
            if now >= deadline {
                return Choice::Primary(Outcome::Lagging);
            }
            first = false;
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(16));
        }
    }
}

/// What asking a standby how far it has replayed found.
#[derive(Debug, PartialEq, Eq)]
enum Asked {
    At(u64),
    /// Not asked: another reader is asking, or every connection is busy.
    Busy,
    /// Unreachable, not a standby, or no answer in time: left alone for a while.
    Failed,
}

/// [`Replicas::on_standby`]'s answer.
enum Attempt<T> {
    /// The standby's answer (an error the primary would give too).
    Answer(Result<T>),
    /// The primary answers, for this reason.
    Primary(Outcome),
}

impl Standby {
    fn failing(&self) -> MutexGuard<'_, Option<(Instant, Duration)>> {
        // Nothing can panic while it is held.
        self.failing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Not failing, or its pause is over.
    fn usable(&self) -> bool {
        self.failing().is_none_or(|(until, _)| Instant::now() >= until)
    }

    /// Its position was read within the last second.
    fn fresh(&self) -> bool {
        let asked = self.asked_at.lock().unwrap_or_else(PoisonError::into_inner);
        asked.is_some_and(|at| at.elapsed() < FRESH)
    }

    /// Left alone for a while: a second, twice the last pause when it fails again once that
    /// pause is over (up to thirty seconds); failures during a pause change nothing. What it
    /// had replayed is forgotten (restarted, it may answer from an older point).
    fn failed(&self) {
        let now = Instant::now();
        let mut failing = self.failing();
        let pause = match *failing {
            Some((until, _)) if now < until => return,
            Some((_, pause)) => (pause * 2).min(LONGEST_PAUSE),
            None => FIRST_PAUSE,
        };
        *failing = Some((now + pause, pause));
        self.replayed.store(0, Ordering::Release);
        *self.asked_at.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn healthy(&self) {
        let mut failing = self.failing();
        if failing.is_some_and(|(until, _)| Instant::now() >= until) {
            *failing = None;
        }
    }

    /// Asks how far it has replayed (one reader at a time; the others are told `Busy`). A
    /// server not in recovery (a standby promoted to primary, or a primary given as a standby)
    /// fails: its history may have left the primary's.
    async fn ask(&self, limit: Duration) -> Asked {
        let Ok(_asking) = self.asking.try_lock() else { return Asked::Busy };
        let read = async {
            let mut conn = self.pool.acquire().await?;
            let read = sqlx::query_scalar::<_, Option<i64>>(
                "SELECT CASE WHEN pg_is_in_recovery() THEN (pg_last_wal_replay_lsn() - '0/0')::bigint END",
            )
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| map_sqlx("reading a standby's replay position", e));
            conn.finish(read).await
        };
        match tokio::time::timeout(limit, read).await {
            Ok(Ok(Some(replayed))) => {
                let replayed = replayed as u64;
                self.replayed.fetch_max(replayed, Ordering::AcqRel);
                *self.asked_at.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
                self.healthy();
                Asked::At(replayed)
            }
            Ok(Err(error)) if is_busy(&error) => Asked::Busy,
            Ok(Ok(None) | Err(_)) | Err(_) => {
                self.failed();
                Asked::Failed
            }
        }
    }
}

/// Whether `error` is the server's saying a table, schema or function does not exist: on a
/// standby, that it has not replayed the schema's creation or a migration yet.
fn schema_missing(error: &PersistError) -> bool {
    let source = std::error::Error::source(error).and_then(|source| source.downcast_ref::<sqlx::Error>());
    let code = source.and_then(sqlx::Error::as_database_error).and_then(|db| db.code());
    code.is_some_and(|code| matches!(&*code, "42P01" | "3F000" | "42883"))
}

/// An insert position right after a page header is the page's boundary, where the last record
/// ended (a standby reports that boundary as replayed): `block` and `segment` are the server's
/// WAL page and segment sizes.
fn record_boundary(lsn: u64, block: u64, segment: u64) -> u64 {
    const SHORT_HEADER: u64 = 24;
    const LONG_HEADER: u64 = 40;
    if lsn % segment == LONG_HEADER {
        lsn - LONG_HEADER
    } else if lsn % block == SHORT_HEADER && lsn % segment >= block {
        lsn - SHORT_HEADER
    } else {
        lsn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standby() -> Standby {
        // Never connected: the pool opens connections when asked.
        let options: sqlx::postgres::PgConnectOptions = "postgres://127.0.0.1:1/none".parse().unwrap();
        Standby {
            pool: Pool::new(
                options,
                crate::pool::Sessions::Direct,
                1,
                0,
                Duration::from_secs(1),
                Duration::from_secs(1),
            ),
            replayed: AtomicU64::new(7),
            asked_at: Mutex::new(Some(Instant::now())),
            asking: tokio::sync::Mutex::new(()),
            failing: Mutex::new(None),
        }
    }

    #[test]
    fn a_failing_standby_pauses_once_per_failure_seen_after_its_pause() {
        let standby = standby();
        assert!(standby.usable() && standby.fresh());
        standby.failed();
        standby.failed(); // at the same moment (concurrent reads): one pause, not two
        assert!(!standby.usable() && !standby.fresh());
        assert_eq!(standby.replayed.load(Ordering::Acquire), 0, "what it had replayed is forgotten");
        assert_eq!(standby.failing().map(|(_, pause)| pause), Some(FIRST_PAUSE));
        standby.healthy(); // a read that began before it failed: the pause stands
        assert!(!standby.usable());
        // Once the pause is over, a new failure doubles it, up to the longest.
        for expected in [2, 4, 8, 16, 30, 30] {
            let pause = standby.failing().unwrap().1;
            *standby.failing() = Some((Instant::now() - Duration::from_millis(1), pause));
            assert!(standby.usable());
            standby.failed();
            assert_eq!(standby.failing().unwrap().1, Duration::from_secs(expected));
        }
        *standby.failing() = Some((Instant::now() - Duration::from_millis(1), LONGEST_PAUSE));
        standby.healthy();
        assert_eq!(*standby.failing(), None);
    }

    #[test]
    fn a_position_after_a_page_header_is_the_page_boundary() {
        let boundary = |lsn| super::record_boundary(lsn, 8192, 16 << 20);
        assert_eq!(boundary(0x300_0028), 0x300_0000); // a segment's first page: a long header
        assert_eq!(boundary(0x300_2018), 0x300_2000); // another page: a short header
        assert_eq!(boundary(0x300_2020), 0x300_2020); // a record's end
        assert_eq!(boundary(0x300_0058), 0x300_0058);
    }
}
