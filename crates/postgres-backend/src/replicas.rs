//! Reads from hot standbys, with read-your-writes.
//!
//! A backend built with [replicas](crate::PostgresBackendBuilder::replica) writes to the
//! primary and answers the reads of messages, threads, branches, summaries and searches from
//! the standbys. Each write, once committed, reads the primary's WAL position (one more round
//! trip on the write's connection) and records it in the handle's
//! [`Consistency`] and the request's; a read
//! must see the newer of the two. A standby known to have replayed that far answers at once;
//! otherwise the read asks the standbys how far they have replayed
//! (`pg_last_wal_replay_lsn()`), waits for one to get there (polling, up to
//! [`replica_wait`](crate::PostgresBackendBuilder::replica_wait)), and past that bound reads
//! the primary. A standby that cannot be reached, was promoted, or loses its connection is left
//! alone for a second (then two, up to thirty while it keeps failing), its reads served by
//! the others or the primary; a read a standby cancelled (a recovery conflict) is read again
//! on the primary.
//!
//! The position read after a commit is the primary's WAL insert position: the end of the
//! write's commit record or later. Right after a page boundary that position points past the
//! next page's header, where no record ends, so it is taken back to the boundary (else a
//! standby that has replayed everything would never be seen to reach it until the next write).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use persist_core::{CommitPosition, Consistency, Context, PersistError, Result};
use sqlx::PgConnection;

use crate::error::map_sqlx;
use crate::pool::{Pool, lost_connection};

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
    /// it is (a UI listing threads), however far behind; writes then cost nothing to a read
    /// that does not ask for them.
    Request,
}

/// How this handle's reads were answered since it connected (see
/// [`PostgresBackend::replica_stats`](crate::PostgresBackend::replica_stats)); also counted as
/// `persist_replica_reads_total{outcome}` through the `metrics` facade, beside the metrics
/// layer's own.
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
    /// connection, a read the standby cancelled) (`outcome="down"`).
    pub down: u64,
}

/// The standbys of one backend and what it knows of them.
pub(crate) struct Replicas {
    standbys: Vec<Standby>,
    wait: Duration,
    freshness: Freshness,
    /// The writes of this handle (and those sharing it).
    handle: Consistency,
    /// A write committed but its position could not be read: the next read asks the primary.
    unsure: AtomicBool,
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
    /// The newest replay position seen.
    replayed: AtomicU64,
    /// While failing: skipped until then, and the next pause.
    failing: Mutex<Option<(Instant, Duration)>>,
}

/// What [`Replicas::choose`] found.
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

impl Replicas {
    pub(crate) async fn new(
        pools: Vec<Pool>,
        primary: &mut PgConnection,
        wait: Duration,
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
            .map(|pool| Standby { pool, replayed: AtomicU64::new(0), failing: Mutex::new(None) })
            .collect();
        Ok(Self {
            standbys,
            wait,
            freshness,
            handle,
            unsure: AtomicBool::new(false),
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
        self.handle.observe(self.primary_position(primary).await?);
        Ok(())
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

    /// Records a committed write's position (read on `primary`) in the handle's consistency and
    /// `request`'s. When it cannot be read, the next read asks the primary for its position
    /// before choosing (see [`needed`](Self::needed)).
    pub(crate) async fn committed(&self, primary: &Pool, request: Option<&Consistency>) {
        match self.primary_position(primary).await {
            Ok(position) => {
                self.handle.observe(position);
                if let Some(request) = request {
                    request.observe(position);
                }
            }
            Err(_) => self.unsure.store(true, Ordering::Release),
        }
    }

    /// The primary's WAL position now: the end of every commit before it, or later.
    async fn primary_position(&self, primary: &Pool) -> Result<CommitPosition> {
        let mut conn = primary.acquire().await?;
        let read = sqlx::query_scalar::<_, i64>("SELECT (pg_current_wal_insert_lsn() - '0/0')::bigint")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| map_sqlx("reading the primary's WAL position", e));
        let answer = read.map(|lsn| CommitPosition::new(record_boundary(lsn as u64, self.block, self.segment)));
        conn.release(&answer);
        answer
    }

    /// The position a read of `context` must see.
    async fn needed(&self, primary: &Pool, context: &Context) -> Option<CommitPosition> {
        if self.unsure.load(Ordering::Acquire) {
            // Observed into the handle, and into this request so that it is seen in any mode.
            if let Ok(position) = self.primary_position(primary).await {
                self.handle.observe(position);
                if let Some(request) = context.consistency() {
                    request.observe(position);
                }
                self.unsure.store(false, Ordering::Release);
                return Some(position);
            }
        }
        let request = context.consistency().and_then(Consistency::position);
        match self.freshness {
            Freshness::Handle => request.max(self.handle.position()),
            Freshness::Request => request,
        }
    }

    /// Runs `read` on a standby that has what `context` must see, or on the primary.
    pub(crate) async fn read<T>(
        &self,
        primary: &Pool,
        context: &Context,
        read: impl AsyncFnOnce(&mut PgConnection) -> Result<T> + Clone,
    ) -> Result<T> {
        let needed = self.needed(primary, context).await;
        let outcome = match self.choose(needed).await {
            Choice::Primary(outcome) => outcome,
            Choice::Standby(standby, outcome) => {
                let answer = match standby.pool.acquire().await {
                    Ok(mut conn) => {
                        let answer = read.clone()(&mut conn).await;
                        conn.release(&answer);
                        answer
                    }
                    Err(error) => {
                        // Unreachable, or every connection busy for too long.
                        standby.failed();
                        Err(error)
                    }
                };
                match answer {
                    Ok(value) => {
                        standby.healthy();
                        self.count(outcome);
                        return Ok(value);
                    }
                    // The standby failed, not the request (a lost connection, a read cancelled
                    // by a recovery conflict): the primary answers it.
                    Err(error) if lost_connection(&error) => {
                        standby.failed();
                        Outcome::Down
                    }
                    Err(error) if error.is_temporary() => Outcome::Down,
                    // The standby has not replayed the schema's creation (or a migration) yet.
                    Err(error) if schema_missing(&error) => Outcome::Lagging,
                    Err(error) => return Err(error),
                }
            }
        };
        self.count(outcome);
        let mut conn = primary.acquire().await?;
        let answer = read(&mut conn).await;
        conn.release(&answer);
        answer
    }

    fn count(&self, outcome: Outcome) {
        self.counts[outcome as usize].fetch_add(1, Ordering::Relaxed);
        self.counters[outcome as usize].increment(1);
    }

    /// A standby for a read that must see `needed`: one known to have replayed it, else one
    /// that gets there within the wait; the primary otherwise.
    async fn choose(&self, needed: Option<CommitPosition>) -> Choice<'_> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let count = self.standbys.len();
        let usable: Vec<&Standby> =
            (0..count).map(|i| &self.standbys[(start + i) % count]).filter(|standby| standby.usable()).collect();
        if usable.is_empty() {
            return Choice::Primary(Outcome::Down);
        }
        let Some(needed) = needed else {
            return Choice::Standby(usable[0], Outcome::Replica);
        };
        if let Some(standby) = usable.iter().find(|standby| standby.replayed.load(Ordering::Acquire) >= needed.get()) {
            return Choice::Standby(standby, Outcome::Replica);
        }
        let deadline = Instant::now() + self.wait;
        let mut pause = Duration::from_millis(1);
        let mut first = true;
        loop {
            let mut reachable = false;
            for standby in &usable {
                if !standby.usable() {
                    continue;
                }
                match standby.replay_position().await {
                    Ok(replayed) if replayed >= needed.get() => {
                        let outcome = if first { Outcome::Replica } else { Outcome::Waited };
                        return Choice::Standby(standby, outcome);
                    }
                    Ok(_) => reachable = true,
                    Err(_) => standby.failed(),
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

impl Standby {
    /// Not failing, or its pause is over.
    fn usable(&self) -> bool {
        match *self.failing.lock().unwrap_or_else(PoisonError::into_inner) {
            Some((until, _)) => Instant::now() >= until,
            None => true,
        }
    }

    fn failed(&self) {
        let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        let pause = match *failing {
            Some((_, pause)) => (pause * 2).min(LONGEST_PAUSE),
            None => FIRST_PAUSE,
        };
        *failing = Some((Instant::now() + pause, pause));
    }

    fn healthy(&self) {
        let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        if failing.is_some() {
            *failing = None;
        }
    }

    /// How far the standby has replayed (and remembers it). A server that is not in recovery
    /// (a standby promoted to primary, or a primary given as a standby) is refused: its
    /// history may have left the primary's.
    async fn replay_position(&self) -> Result<u64> {
        let mut conn = self.pool.acquire().await?;
        let read = sqlx::query_scalar::<_, Option<i64>>("SELECT (pg_last_wal_replay_lsn() - '0/0')::bigint")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| map_sqlx("reading a standby's replay position", e));
        conn.release(&read);
        let replayed = read?.ok_or_else(|| {
            let options = self.pool.options();
            PersistError::Backend {
                message: format!(
                    "the replica at {}:{} is not a standby (not in recovery): its reads go to the primary",
                    options.get_host(),
                    options.get_port()
                )
                .into(),
                source: None,
            }
        })? as u64;
        self.replayed.fetch_max(replayed, Ordering::AcqRel);
        self.healthy();
        Ok(replayed)
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
    #[test]
    fn a_position_after_a_page_header_is_the_page_boundary() {
        let boundary = |lsn| super::record_boundary(lsn, 8192, 16 << 20);
        assert_eq!(boundary(0x300_0028), 0x300_0000); // a segment's first page: a long header
        assert_eq!(boundary(0x300_2018), 0x300_2000); // another page: a short header
        assert_eq!(boundary(0x300_2020), 0x300_2020); // a record's end
        assert_eq!(boundary(0x300_0058), 0x300_0058);
    }
}
