//! The change feed's wake-ups and retention.
//!
//! Events are rows of `persist_events` (`persist_feed` in a store written before its format
//! was 2), written by triggers in each write's transaction (migrations 7, 8 and 16), and by an
//! `embed` itself (`write/embed.rs`, migration 23). A pump per handle learns of new rows (its own writes, and other processes'
//! on the same file) and wakes the subscribers of their scopes through the handle's
//! [`FeedHub`]: it reads the feed's head when its handle committed a write, and every poll
//! interval for the writes of other processes, then reads the new events and publishes them.
//! It also applies retention every few seconds, on a connection of its own (retention writes
//! rarely and briefly, as another process's writer would).

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use persist_core::feed::{FeedHub, FeedPage, FeedRetention, ReadFeed};
use persist_core::read::MAX_PAGE_LIMIT;
use persist_core::{PersistError, Result, Timestamp};
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::Notify;

/// The feed's head (its newest position in either of its tables, migration 16, or, when
/// retention removed every row, the newest it removed: the triggers number from there,
/// migration 8) and the newest position retention
/// removed; and whether the file's feed records.
pub(crate) const FEED_BOUNDS: &str = "SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0), \
                                                 coalesce((SELECT max(position) FROM persist_events), 0), trimmed), \
                                             trimmed, enabled FROM persist_feed_state";

/// How often retention runs.
const TRIM_EVERY: Duration = Duration::from_secs(5);
/// How long the periodic retention waits for the file's write lock: busy past it, the trim is
/// tried again next time. Short, so that its connection closes soon after its store's: a store
/// opened on the file a moment later (in this process) finds no descriptor it does not know.
const TRIM_WAIT: Duration = Duration::from_millis(250);

/// Most events one retention transaction removes.
const TRIM_BATCH: i64 = 10_000;

/// What a handle's pump needs, besides its handle.
pub(crate) struct Pump {
    pub(crate) hub: FeedHub,
    pub(crate) wake: Arc<Notify>,
    pub(crate) poll: Duration,
    pub(crate) retention: FeedRetention,
    pub(crate) path: PathBuf,
    pub(crate) busy_timeout: Duration,
}

/// What the pump reads the file's feed through: a handle's reads on the caller's thread
/// (`direct::DirectReads`), named here so the feed need not import them.
pub(crate) trait FeedSource: Send + Sync + 'static {
    /// Whether the handle was closed.
    fn is_closed(&self) -> bool;
    /// The feed's newest position.
    fn feed_head(&self) -> Result<u64>;
    /// A page of the feed.
    fn feed(&self, query: &ReadFeed) -> Result<FeedPage>;
}

impl Pump {
    /// Runs until the handle is dropped or closed; `published` is the feed's head when the
    /// handle was opened (nobody could subscribe before).
    pub(crate) async fn run(self, direct: Weak<impl FeedSource>, mut published: u64) {
        let mut next_trim = Instant::now() + TRIM_EVERY;
        let mut trimmer: Option<Connection> = None;
        loop {
            // Woken by this handle's write, or when the interval is up.
            let _ = tokio::time::timeout(self.poll, self.wake.notified()).await;
            let Some(direct) = direct.upgrade() else { return };
            if direct.is_closed() {
                return;
            }
            if Instant::now() >= next_trim {
                next_trim = Instant::now() + TRIM_EVERY;
                trimmer = self.trim_off_the_runtime(trimmer).await;
            }
            // The head first, then whether anyone waits: a subscriber that registers after the
            // check reads everything up to this head itself.
            let Ok(head) = direct.feed_head() else { continue };
            if head > published && self.hub.is_watched() {
                published = self.publish(&*direct, published).unwrap_or(head);
            } else {
                published = head;
            }
        }
    }

    /// Applies retention on a blocking thread, with the connection kept between runs (`None`
    /// when it could not be opened, or the thread was lost).
    ///
    /// Never on the runtime's thread: a trim takes the file's write lock and waits for it, and
    /// the transaction holding it may be this handle's writer's, whose task needs a runtime
    /// thread to commit. On a current-thread runtime the wait lasted the whole busy timeout
    /// (5 s by default) with every task of the runtime stopped behind it. It waits at most
    /// [`TRIM_WAIT`], so the connection does not outlive its store for long either.
    async fn trim_off_the_runtime(&self, mut trimmer: Option<Connection>) -> Option<Connection> {
        let (path, busy_timeout, retention) = (self.path.clone(), self.busy_timeout.min(TRIM_WAIT), self.retention);
        let trimmed = tokio::task::spawn_blocking(move || {
            // A failed trim (the file busy past the timeout) is tried again next time.
            let _ = trim(&mut trimmer, &path, busy_timeout, &retention);
            trimmer
        });
        trimmed.await.ok().flatten()
    }

    /// Publishes every event after `last`; answers the newest position published.
    fn publish(&self, direct: &impl FeedSource, mut last: u64) -> Result<u64> {
        loop {
            let query = ReadFeed::across_tenants().after(last).with_limit(MAX_PAGE_LIMIT);
            let page = direct.feed(&query)?;
            self.hub.publish(&page.events);
            last = page.last_position(last);
            if !page.has_more {
                return Ok(last);
            }
        }
    }
}

/// Removes what `retention` no longer keeps, in batches, each its own transaction; answers the
/// newest position removed so far.
pub(crate) fn trim(
    conn: &mut Option<Connection>,
    path: &PathBuf,
    busy_timeout: Duration,
    retention: &FeedRetention,
) -> Result<u64> {
    let map = |e: rusqlite::Error| PersistError::backend("trimming the change feed", e);
    if conn.is_none() {
        let opened = Connection::open(path).map_err(map)?;
        opened.busy_timeout(busy_timeout).map_err(map)?;
        *conn = Some(opened);
    }
    let Some(conn) = conn.as_mut() else { unreachable!("opened above") };
    if let Some(cutoff) = retention.delta_cutoff(Timestamp::now()) {
        // Deltas past their age, in batches of their own (each statement its transaction), in
        // each of the feed's tables (migration 16).
        for sql in [
            "UPDATE persist_feed SET delta = NULL WHERE rowid IN \
               (SELECT rowid FROM persist_feed WHERE delta IS NOT NULL AND at < ?1 LIMIT +?2)",
            "UPDATE persist_events SET delta = NULL WHERE rowid IN \
               (SELECT rowid FROM persist_events WHERE delta IS NOT NULL AND at < ?1 LIMIT +?2)",
        ] {
            while conn.execute(sql, (cutoff.as_micros(), TRIM_BATCH)).map_err(map)?
                == usize::try_from(TRIM_BATCH).unwrap_or(usize::MAX)
            {}
        }
    }
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(map)?;
        let (head, trimmed): (i64, i64) =
            tx.query_row(FEED_BOUNDS, (), |row| Ok((row.get(0)?, row.get(1)?))).map_err(map)?;
        let by_count = retention.count_cutoff(u64::try_from(head).unwrap_or_default());
        let by_age = match retention.age_cutoff(Timestamp::now()) {
            // Everything before the first event young enough to keep.
            Some(cutoff) => tx
                .query_row(
                    "SELECT coalesce(min(coalesce((SELECT position FROM persist_feed WHERE at >= ?1 \
                                                    ORDER BY position LIMIT 1), ?2 + 1), \
                                         coalesce((SELECT position FROM persist_events WHERE at >= ?1 \
                                                    ORDER BY position LIMIT 1), ?2 + 1)) - 1, ?2)",
                    (cutoff.as_micros(), head),
                    |row| row.get::<_, i64>(0),
                )
                .map_err(map)?,
            None => 0,
        };
        // The newest event stays, however old: it holds the head.
        let wanted = i64::try_from(by_count).unwrap_or(i64::MAX).max(by_age).min(head - 1);
        if wanted <= trimmed {
            return Ok(u64::try_from(trimmed).unwrap_or_default());
        }
        let cutoff = wanted.min(trimmed + TRIM_BATCH);
        tx.execute("DELETE FROM persist_feed WHERE position <= ?1", [cutoff]).map_err(map)?;
        tx.execute("DELETE FROM persist_events WHERE position <= ?1", [cutoff]).map_err(map)?;
        tx.execute("UPDATE persist_feed_state SET trimmed = max(trimmed, ?1)", [cutoff]).map_err(map)?;
        tx.commit().map_err(map)?;
        if cutoff == wanted {
            return Ok(u64::try_from(cutoff).unwrap_or_default());
        }
    }
}

/// A feed read through a handle that keeps a feed, while another handle keeps the file's off.
pub(crate) fn turned_off_elsewhere() -> PersistError {
    PersistError::Unsupported {
        what: "the change feed of this file, turned off by a handle opened with `feed(None)`: no event is recorded \
               until a handle keeping a feed opens the file again (readers then get a FeedGap)"
            .into(),
    }
}
