//! The change feed: sequencing, reads, cross-instance wake-ups and retention.
//!
//! Events are rows of `persist_feed`, written by triggers in each write's transaction
//! (migration 3; an `embed` writes its own, `vectors.rs`) with a `position` still to give. Positions are given after commit, in commit
//! order, by [`sequence`]: one pass at a time per schema (an advisory lock), each numbering the
//! committed rows still without one in the order they were written (a thread's rows are written
//! in its commit order).
//!
//! Writers never sequence: a pass is a write transaction of its own (a second commit for every
//! write would cost writers a quarter of their throughput). After this instance's writes, a
//! task sends `NOTIFY persist_feed`, at most once every 2 ms (the writes of that time share it;
//! one that fails is sent again). While an instance follows the feed ([`Followers`]: its
//! subscribers wait), the task numbers what is pending first, in one round trip with the
//! notification (payload: the schema), so a listener told of events reads them at once;
//! nobody following, it sends the notification alone (payload: `<schema> pending`), and a
//! listener told so numbers before it reads. Passes also run where events are read: before
//! every feed read (so a reader sees every write committed before it
//! asked; a pass finding nothing pending takes no lock), in each listening instance every
//! second (for an instance that died between its commit and its notification: a lost
//! notification loses nothing, the table is the truth), and with retention every few seconds
//! on every instance (so events nobody reads are numbered, then trimmed, all the same; a pass
//! that numbered any announces them).
//!
//! Each instance with subscribers listens on `persist_feed`: a notification makes it read the
//! events after the last ones it published (numbered by the instance that announced them, or
//! by this one) and wake their scopes' subscribers through its [`FeedHub`]; the second's tick
//! numbers what is pending first. Behind a transaction pooler, where `LISTEN` hears nothing, it listens on a
//! direct connection when given one, and otherwise polls (every [`POLL`]).

use std::sync::Arc;
use std::time::Duration;

use persist_core::feed::{FeedEvent, FeedHub, FeedPage, FeedRetention, FeedScope, ReadFeed, StoredEvent};
use persist_core::read::MAX_PAGE_LIMIT;
use persist_core::{PersistError, Result, Timestamp};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
use tokio::sync::{Mutex, Notify, watch};

use crate::error::map_sqlx;
use crate::feed_followers::{FOLLOWED_FRESH, Followers};
use crate::feed_trim::{LOCK_PASSES, trim};
use crate::pool::Pool;
use crate::rows::tenant_key;

/// The notification channel, shared by every schema: the payload names the schema.
const CHANNEL: &str = "persist_feed";
/// Most events one pass (one transaction) numbers.
const PASS_LIMIT: u32 = 10_000;
/// How often an instance with subscribers sequences and reads without a notification.
const TICK: Duration = Duration::from_secs(1);
/// How often it does when it cannot listen (behind a transaction pooler, without a direct
/// URL to listen on).
const POLL: Duration = Duration::from_millis(250);
/// The shortest time between two notifications of one instance: the writes of that time share
/// one (a notification takes a lock every notifying commit of the server waits for). A
/// follower on another instance waits for it: 10 ms here made a live reply's tokens arrive
/// 9–11 ms after their append (p50, one follower); 2 ms, 5–9 ms (`crates/serve/clients/ai-sdk`'s
/// bench, 28 Nov 2026).
const NOTIFY_GAP: Duration = Duration::from_millis(2);
/// How often each instance numbers what is pending and applies retention.
const TRIM_EVERY: Duration = Duration::from_secs(5);

/// The feed's part of a backend, shared by its clones.
pub(crate) struct Feed {
    pub(crate) hub: FeedHub,
    schema: String,
    retention: FeedRetention,
    /// Wakes the notifier after this instance's writes.
    kick: Arc<Notify>,
    /// Wakes a listener that polls (it hears no notification): this instance committed a write.
    written: Arc<Notify>,
    /// The listener, started by the first read (nobody subscribes without reading first).
    listener: Mutex<bool>,
    /// Tells the background tasks to stop: the backend was closed or dropped.
    stop: watch::Sender<bool>,
    /// A pass's statements, in the caller's transaction (see [`sequence`]).
    sequence_sql: String,
    /// Where the listener listens; `None` behind a transaction pooler without a direct URL:
    /// it polls.
    listen: Option<PgConnectOptions>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl Feed {
    /// The feed of `schema`, its sequencer started on `pool`; its listener, once started,
    /// listens on a connection opened with `listen`, or polls without one.
    pub(crate) fn start(
        pool: &Pool,
        schema: &str,
        retention: FeedRetention,
        listen: Option<PgConnectOptions>,
    ) -> Arc<Self> {
        // `enable_bitmapscan` off for the pass: the pending index keeps an entry of every event
        // numbered since the last vacuum, and a bitmap scan visits them all on every pass (10 ms
        // at 200,000, each feed read); an index scan marks them dead the first time and skips
        // them after (0.3 ms). `jit` off: statistics taken while events waited for their number
        // make the planner expect thousands pending (and millions of rows out of the join with
        // `head`), past `jit_above_cost`, and compiling the plan took 100 to 170 ms of every
        // pass, each feed read, for a pass that numbers nothing.
        let sequence_sql = format!(
            "SET LOCAL enable_bitmapscan = off; SET LOCAL jit = off; {LOCK_PASSES}; \
             WITH pending AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM persist_feed \
                               WHERE position IS NULL ORDER BY id LIMIT {PASS_LIMIT}), \
                  total AS (SELECT count(*) AS n FROM pending), \
                  head AS (UPDATE persist_feed_state SET head = head + (SELECT n FROM total) \
                            WHERE (SELECT n FROM total) > 0 RETURNING head - (SELECT n FROM total) AS base), \
                  done AS (UPDATE persist_feed f SET position = head.base + pending.n FROM pending, head \
                            WHERE f.id = pending.id RETURNING f.position) \
             SELECT count(*) FROM done"
        );
        let (stop, stopped) = watch::channel(false);
        let feed = Arc::new(Self {
            hub: FeedHub::new(),
            schema: schema.to_owned(),
            retention,
            kick: Arc::new(Notify::new()),
            written: Arc::new(Notify::new()),
            listener: Mutex::new(false),
            stop,
            sequence_sql,
            listen,
        });
        let background = Background {
            pool: pool.clone(),
            kick: Arc::clone(&feed.kick),
            // The schema name is checked against [a-z_][a-z0-9_]*: safe to quote into SQL.
            notify_sql: format!("SELECT pg_notify('{CHANNEL}', '{schema}')"),
            pending_sql: format!("SELECT pg_notify('{CHANNEL}', '{schema} pending')"),
            followers: Followers::of(schema),
            announce_sql: format!("BEGIN; {}; COMMIT; SELECT pg_notify('{CHANNEL}', '{schema}')", feed.sequence_sql),
            sequence_sql: feed.sequence_sql.clone(),
            retention,
        };
        tokio::spawn(background.run(stopped));
        feed
    }

    /// Asks for a notification: this instance committed a write.
    pub(crate) fn kick(&self) {
        self.kick.notify_one();
        self.written.notify_one();
    }

    /// Stops the background tasks (the backend is closing).
    pub(crate) fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Reads `query`'s events, after a pass numbered every event committed before.
    pub(crate) async fn read(&self, pool: &Pool, query: &ReadFeed) -> Result<FeedPage> {
        query.validate()?;
        self.listen(pool).await?;
        let mut conn = pool.acquire().await?;
        let answer = async {
            sequence(&mut conn, &self.sequence_sql).await?;
            read(&mut conn, query).await
        }
        .await;
        conn.finish(answer).await
    }

    /// Numbers what is pending, then applies retention; answers the newest position removed.
    pub(crate) async fn trim(&self, pool: &Pool) -> Result<u64> {
        let mut conn = pool.acquire().await?;
        let answer = match sequence(&mut conn, &self.sequence_sql).await {
            Ok(_) => trim(&mut conn, &self.retention).await,
            Err(e) => Err(e),
        };
        conn.finish(answer).await
    }

    /// Starts the listener once: subscribed to the channel, then the head read, so every event
    /// after that head is published and every one before is in the reader's own read.
    async fn listen(&self, pool: &Pool) -> Result<()> {
        let mut started = self.listener.lock().await;
        if *started {
            return Ok(());
        }
        let listening = match &self.listen {
            Some(options) => {
                let listening = PgPoolOptions::new().max_connections(1).connect_lazy_with(options.clone());
                let mut listener = PgListener::connect_with(&listening).await.map_err(|e| map_sqlx("listening", e))?;
                listener.listen(CHANNEL).await.map_err(|e| map_sqlx("listening", e))?;
                Some((listener, listening))
            }
            None => None,
        };
        let mut conn = pool.acquire().await?;
        let head = head(&mut conn).await;
        let head = conn.finish(head).await;
        let task = Listener {
            pool: pool.clone(),
            hub: self.hub.clone(),
            written: Arc::clone(&self.written),
            schema: self.schema.clone(),
            sequence_sql: self.sequence_sql.clone(),
            followers: Followers::of(&self.schema),
            published: head?,
        };
        tokio::spawn(task.run(listening, self.stop.subscribe()));
        *started = true;
        Ok(())
    }
}

/// An instance's own background work: a notification after each burst of its writes, and
/// every few seconds a pass and retention.
struct Background {
    pool: Pool,
    kick: Arc<Notify>,
    notify_sql: String,
    /// The notification of events left unnumbered (nobody follows: see [`Followers`]).
    pending_sql: String,
    followers: Followers,
    /// A pass and the notification, in one round trip (the pass numbers at most
    /// `PASS_LIMIT`: more are numbered by the next pass, the readers' or the tick's).
    announce_sql: String,
    sequence_sql: String,
    retention: FeedRetention,
}

impl Background {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut next_trim = tokio::time::Instant::now() + TRIM_EVERY;
        // A notification owed (writes committed, not announced yet), and when to try again
        // after a failure (a server that refuses connections is not asked in a loop).
        let (mut owed, mut retry) = (false, NOTIFY_GAP);
        // Whether anyone follows the feed, and when that was read.
        let mut followed: Option<(bool, tokio::time::Instant)> = None;
        loop {
            tokio::select! {
                biased;
                _ = stop.wait_for(|stopped| *stopped) => return,
                () = self.kick.notified(), if !owed => owed = true,
                () = tokio::time::sleep(retry), if owed => {}
                () = tokio::time::sleep_until(next_trim) => {}
            }
            // Due by the clock, whichever branch woke the task: under a steady stream of writes
            // (one at least every `NOTIFY_GAP`) a notification is always ready first, and the
            // pass and retention, chosen only when no other branch was, never ran.
            let now = tokio::time::Instant::now();
            let due = now >= next_trim;
            if due {
                next_trim = now + TRIM_EVERY;
            }
            let Ok(mut conn) = self.pool.acquire().await else {
                if self.pool.is_closed() {
                    return;
                }
                retry = TICK;
                continue;
            };
            // A failed pass or trim is tried again next time; a failed notification stays
            // owed. Events a pass numbered are announced too (their writer may have died
            // before its own notification).
            let answer = async {
                // While anyone follows the feed, this instance's events are numbered before they
                // are announced, in one round trip with the notification: a listener told of
                // them reads them at once, with no pass of its own. Nobody following, they are
                // announced as they are, for their next reader to number.
                if owed && !due && !conn.is_in_transaction() {
                    let fresh = followed.filter(|(_, read)| read.elapsed() < FOLLOWED_FRESH);
                    let any = match fresh {
                        Some((any, _)) => any,
                        // Unread (the server refused the read), as if followed: the events are
                        // numbered and announced now rather than held back until the retry.
                        None => {
                            let any = self.followers.any(&mut conn).await.unwrap_or(true);
                            followed = Some((any, tokio::time::Instant::now()));
                            any
                        }
                    };
                    if !any {
                        sqlx::raw_sql(AssertSqlSafe(self.pending_sql.clone()))
                            .execute(&mut *conn)
                            .await
                            .map_err(|e| map_sqlx("announcing the change feed's new events", e))?;
                        return Ok(true);
                    }
                    let sent = sqlx::raw_sql(AssertSqlSafe(self.announce_sql.clone())).execute(&mut *conn).await;
                    if let Err(error) = sent {
                        // Ended here: a transaction left open would hold the sequencing lock.
                        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
                        return Err(map_sqlx("announcing the change feed's new events", error));
                    }
                    return Ok(true);
                }
                let mut announce = owed;
                if due || owed {
                    announce |= sequence(&mut conn, &self.sequence_sql).await? > 0;
                }
                if due {
                    trim(&mut conn, &self.retention).await?;
                }
                if announce {
                    // A transaction of its own that writes no table.
                    sqlx::raw_sql(AssertSqlSafe(self.notify_sql.clone()))
                        .execute(&mut *conn)
                        .await
                        .map_err(|e| map_sqlx("announcing the change feed's new events", e))?;
                }
                Ok(announce)
            }
            .await;
            let answer = conn.finish(answer).await;
            match answer {
                Ok(true) => {
                    (owed, retry) = (false, NOTIFY_GAP);
                    // The writes of the gap share the next notification.
                    tokio::time::sleep(NOTIFY_GAP).await;
                }
                Ok(false) => {}
                Err(_) => retry = TICK,
            }
        }
    }
}

/// Numbers the committed events still without a position; answers how many.
///
/// Passes of at most `PASS_LIMIT` events each (each its own transaction, so the lock is held
/// briefly) until one finds fewer: every event committed before the call is numbered. A pass
/// that fails is rolled back at once (its lock released, the connection fit for the pool).
///
/// In a transaction already (behind a transaction pooler, the operation's own), the passes are
/// that transaction's, and its lock is held until it ends.
async fn sequence(conn: &mut PgConnection, sql: &str) -> Result<u64> {
    let context = "numbering the change feed";
    // Nothing pending in a snapshot taken now: every event committed before is numbered, and
    // no pass is needed. A pass under way elsewhere has not committed its numbers, so its
    // events still read as pending here, and this pass waits for it. (Readers woken for
    // events their instance numbered before announcing them take no lock: N followers of a
    // reply no longer queue on it, one pass after another.)
    let pending: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM persist_feed WHERE position IS NULL)")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| map_sqlx(context, e))?;
    if !pending {
        return Ok(0);
    }
    let own = !conn.is_in_transaction();
    let sql = if own { format!("BEGIN; {sql}; COMMIT") } else { sql.to_owned() };
    let mut total = 0;
    loop {
        let rows = match sqlx::raw_sql(AssertSqlSafe(sql.clone())).fetch_all(&mut *conn).await {
            Ok(rows) => rows,
            Err(error) => {
                if own {
                    let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
                }
                return Err(map_sqlx(context, error));
            }
        };
        // The last row is the pass's count (the lock's own row comes first).
        let numbered: i64 = match rows.last() {
            Some(row) => row.try_get(0).map_err(|e| map_sqlx(context, e))?,
            None => 0,
        };
        total += u64::try_from(numbered).unwrap_or_default();
        if numbered < i64::from(PASS_LIMIT) {
            return Ok(total);
        }
    }
}

async fn head(conn: &mut PgConnection) -> Result<u64> {
    let head: i64 = sqlx::query_scalar("SELECT head FROM persist_feed_state")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| map_sqlx("reading the change feed's head", e))?;
    Ok(u64::try_from(head).unwrap_or_default())
}

async fn read(conn: &mut PgConnection, query: &ReadFeed) -> Result<FeedPage> {
    let context = "reading the change feed";
    // The bounds, and the events in scope: a row with the bounds alone when there are none.
    macro_rules! events_where {
        ($scope:literal) => {
            concat!(
                "WITH s AS (SELECT head, trimmed, enabled FROM persist_feed_state) \
                 SELECT s.head, s.trimmed, s.enabled, f.position, f.tenant, f.thread_id, f.op, f.message_id, f.seq, \
                        f.version, f.removed, f.at, f.status, f.delta, f.parent, f.resource \
                   FROM s LEFT JOIN LATERAL (SELECT * FROM persist_feed WHERE ",
                $scope,
                " AND position > $3 ORDER BY position LIMIT $4) f ON true"
            )
        };
    }
    let sql = match query.scope {
        FeedScope::Thread(_) => events_where!("tenant = $1 AND thread_id = $2"),
        FeedScope::Tenant => events_where!("tenant = $1 AND $2::text IS NULL"),
        // One document's (migration 17).
        FeedScope::Memory(_) => events_where!("resource IS NOT NULL AND tenant = $1 AND resource = $2"),
        // Every tenant's: the tenant and thread parameters are bound all the same.
        _ => events_where!("$1::text IS NOT NULL AND $2::text IS NULL"),
    };
    let rows = sqlx::query(sql)
        .bind(tenant_key(query.context.tenant()))
        // The one subject read: a thread's id, or a document's resource.
        .bind(query.thread_id().map(|id| id.as_str()).or(query.resource().map(|r| r.as_str())))
        .bind(i64::try_from(query.after).unwrap_or(i64::MAX))
        .bind(i64::from(query.limit) + 1)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| map_sqlx(context, e))?;
    let unsigned = |n: i64| u64::try_from(n).unwrap_or_default();
    let first = rows.first().ok_or_else(|| PersistError::backend(context, std::io::Error::other("no state row")))?;
    let head = unsigned(first.try_get("head").map_err(|e| map_sqlx(context, e))?);
    let trimmed = unsigned(first.try_get("trimmed").map_err(|e| map_sqlx(context, e))?);
    if !first.try_get::<bool, _>("enabled").map_err(|e| map_sqlx(context, e))? {
        return Err(PersistError::Unsupported {
            what: "the change feed of this schema, turned off by an instance connected with `feed(None)`: no event is \
                   recorded until an instance keeping a feed connects again (readers then get a FeedGap)"
                .into(),
        });
    }
    query.check_position(trimmed, head)?;
    let mut events = Vec::with_capacity(rows.len());
    for row in &rows {
        let Some(position) = row.try_get::<Option<i64>, _>("position").map_err(|e| map_sqlx(context, e))? else {
            continue;
        };
        events.push(event(row, unsigned(position)).map_err(|e| map_sqlx(context, e))??);
    }
    Ok(query.page(events, head))
}

fn event(row: &sqlx::postgres::PgRow, position: u64) -> std::result::Result<Result<FeedEvent>, sqlx::Error> {
    let unsigned = |n: i64| u64::try_from(n).unwrap_or_default();
    Ok(FeedEvent::from_stored(StoredEvent {
        position,
        tenant: row.try_get("tenant")?,
        thread_id: row.try_get("thread_id")?,
        resource: row.try_get("resource")?,
        op: row.try_get("op")?,
        message_id: row.try_get("message_id")?,
        seq: row.try_get::<Option<i64>, _>("seq")?.map(unsigned),
        version: unsigned(row.try_get("version")?),
        removed: row.try_get("removed")?,
        status: row.try_get("status")?,
        delta: row.try_get("delta")?,
        parent: row.try_get::<Option<i64>, _>("parent")?.map(unsigned),
        at: Timestamp::from_micros(row.try_get("at")?),
    }))
}

/// An instance's listener: wakes its subscribers for every event committed through any
/// instance.
struct Listener {
    pool: Pool,
    hub: FeedHub,
    /// This instance's writes, which a polling listener publishes at once (only other
    /// instances' wait for the poll).
    written: Arc<Notify>,
    schema: String,
    sequence_sql: String,
    /// Held on the listening connection while subscribers wait here.
    followers: Followers,
    published: u64,
}

impl Listener {
    /// Waits for notifications on `listening` (with the tick as a floor), or polls every
    /// [`POLL`] without it, publishing what is new each time.
    async fn run(mut self, listening: Option<(PgListener, sqlx::PgPool)>, mut stop: watch::Receiver<bool>) {
        let (mut listener, listening) = listening.unzip();
        let every = if listener.is_some() { TICK } else { POLL };
        // The tick's deadline is fixed: other schemas' notifications do not put it off.
        let mut tick = tokio::time::Instant::now() + every;
        // Whether to wait on the listening connection: after it failed, the tick reads alone
        // until the next tick tries it again (a server that refuses it is not asked in a loop).
        let mut listening_ok = listener.is_some();
        // Whether the listening connection holds the followers' lock.
        let mut holding = false;
        let pending = format!("{} pending", self.schema);
        loop {
            // Whether the events to read are numbered already: told so by a notification,
            // which an instance sends once it numbered its events. The tick, a lost connection
            // and this instance's writes (when polling) number what is pending first.
            let mut numbered = false;
            tokio::select! {
                biased;
                _ = stop.wait_for(|stopped| *stopped) => break,
                () = tokio::time::sleep_until(tick) => listening_ok = listening.is_some(),
                () = self.written.notified(), if listening.is_none() => {}
                received = async { listener.as_mut().expect("waited on only with a listener").try_recv().await },
                    if listening_ok => match received
                {
                    Ok(Some(note)) if note.payload() == self.schema => numbered = true,
                    // Events left unnumbered: nobody followed when they were written.
                    Ok(Some(note)) if note.payload() == pending => {}
                    // Another schema's events.
                    Ok(Some(_)) => continue,
                    // A lost connection (it reconnects on the next call), and the lock with it:
                    // read now.
                    Ok(None) => holding = false,
                    // The connection failed, and the lock with it.
                    Err(_) => (listening_ok, holding) = (false, false),
                },
            }
            tick = tokio::time::Instant::now() + every;
            // What else arrived meanwhile is answered by the same pass.
            if let Some(listener) = listener.as_mut() {
                while listener.next_buffered().is_some() {}
            }
            if self.pool.is_closed() {
                break;
            }
            // Followed while subscribers wait here: the writers then number their events.
            if let Some(listener) = listener.as_mut().filter(|_| listening_ok)
                && self.hub.is_watched() != holding
                && self.followers.hold(listener, !holding).await.is_ok()
            {
                holding = !holding;
            }
            let Ok(mut conn) = self.pool.acquire().await else { continue };
            let answer = async {
                // Nobody waiting here: a subscriber that comes numbers and reads for itself.
                if self.hub.is_watched() && !numbered {
                    sequence(&mut conn, &self.sequence_sql).await?;
                }
                self.publish(&mut conn).await
            }
            .await;
            let _ = conn.finish(answer).await;
        }
        drop(listener);
        if let Some(listening) = listening {
            listening.close().await;
        }
    }

    /// Publishes the events after the last published, when anyone waits; else moves on.
    async fn publish(&mut self, conn: &mut PgConnection) -> Result<()> {
        if !self.hub.is_watched() {
            self.published = self.published.max(head(conn).await?);
            return Ok(());
        }
        // The read answers the head too: nothing new is an empty page, one round trip.
        loop {
            let query = ReadFeed::across_tenants().after(self.published).with_limit(MAX_PAGE_LIMIT);
            let page = match read(conn, &query).await {
                Ok(page) => page,
                // Retention passed what was published: subscribers find their gap themselves.
                Err(PersistError::FeedGap { .. }) => {
                    self.published = self.published.max(head(conn).await?);
                    return Ok(());
                }
                Err(other) => return Err(other),
            };
            self.hub.publish(&page.events);
            self.published = page.last_position(self.published);
            if !page.has_more {
                return Ok(());
            }
        }
    }
}
