//! Reads from a real hot standby (`.ci/replica`: `pg_basebackup -R`, streaming from the
//! primary): a read sees the writes it must see, waiting for the standby or reading the
//! primary, never an older store; a standby paused, down, or not a standby at all.
//!
//! Pausing the standby's replay holds up every reader of it, so these tests take turns, and
//! the conformance checks on the standby (`replica_conformance`) wait for them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

use persist::args::{Reserve, UpdateContent};
use persist::live::{FollowReply, ReplyChunk};
use persist::prelude::*;
use persist::read::ListMessages;
use persist::session::{Bind, Resolution, Resolve};
use persist::{
    AgentId, CommitPosition, Consistency, Content, Context, Pipeline, ProviderId, Role, SessionId, ThreadId, args::Add,
};
use persist_postgres::{Freshness, PostgresBackend, PostgresBackendBuilder, ReplicaStats};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::sync::RwLockWriteGuard;

use crate::support;
use crate::support::{admin, drop_schema, replica_admin, replica_url, schema_name, url};

/// `persist_replica_reads_total` by outcome, as an exporter sees it: this test binary's global
/// recorder, installed before any backend registers its counters.
#[derive(Clone, Default)]
struct Outcomes(Arc<std::sync::Mutex<HashMap<String, Arc<AtomicU64>>>>);

impl Recorder for Outcomes {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let outcome = key.labels().find(|label| label.key() == "outcome").map(|label| label.value().to_owned());
        match outcome.filter(|_| key.name() == "persist_replica_reads_total") {
            Some(outcome) => Counter::from_arc(Arc::clone(self.0.lock().unwrap().entry(outcome).or_default())),
            None => Counter::noop(),
        }
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

static OUTCOMES: LazyLock<Outcomes> = LazyLock::new(|| {
    let outcomes = Outcomes::default();
    metrics::set_global_recorder(outcomes.clone()).expect("the test binary's only recorder");
    outcomes
});

/// The counter's value for `outcome`, summed over every backend of this binary.
fn counted(outcome: &str) -> u64 {
    OUTCOMES.0.lock().unwrap().get(outcome).map_or(0, |count| count.load(Ordering::Relaxed))
}

/// A test's turn with the standby (they pause and resume its replay, and count its reads
/// binary-wide): within this process (the standby's lock, taken alone: neither another of these
/// tests nor a conformance check on the standby runs meanwhile), and across processes, for
/// runners that run each test in a process of its own (an advisory lock on the primary, held by
/// a session of its own until the turn is dropped).
struct Turn {
    _here: RwLockWriteGuard<'static, ()>,
    _across: Option<PgConnection>,
}

async fn turn() -> Turn {
    LazyLock::force(&OUTCOMES);
    let here = support::STANDBY.write().await;
    let across = match admin().await {
        Ok(mut conn) => {
            // "pers", "stby".
            sqlx::query("SELECT pg_advisory_lock(1885696627, 1937007225)").execute(&mut conn).await.unwrap();
            Some(conn)
        }
        Err(_) => None,
    };
    Turn { _here: here, _across: across }
}

/// The standby, replaying, with this test's turn; `None` without one outside CI.
async fn standby() -> Option<(Turn, PgConnection)> {
    let turn = turn().await;
    let mut standby = match replica_admin().await {
        Ok(conn) => conn,
        Err(missing) => {
            assert!(std::env::var_os("CI").is_none(), "{missing}");
            return None;
        }
    };
    resume(&mut standby).await;
    Some((turn, standby))
}

async fn pause(standby: &mut PgConnection) {
    sqlx::query("SELECT pg_wal_replay_pause()").execute(&mut *standby).await.unwrap();
    for _ in 0..500 {
        let state: String =
            sqlx::query_scalar("SELECT pg_get_wal_replay_pause_state()").fetch_one(&mut *standby).await.unwrap();
        if state == "paused" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the standby's replay did not pause");
}

async fn resume(standby: &mut PgConnection) {
    sqlx::query("SELECT pg_wal_replay_resume()").execute(&mut *standby).await.unwrap();
}

/// Waits until the standby has replayed everything the primary has written: its WAL insert
/// position now, taken back to the page boundary when it points past a page's header (as the
/// backend takes the positions it records).
async fn caught_up(standby: &mut PgConnection) {
    let mut primary = admin().await.unwrap();
    let (inserted, block, segment): (i64, i64, i64) = sqlx::query_as(
        "SELECT (pg_current_wal_insert_lsn() - '0/0')::bigint, current_setting('wal_block_size')::bigint, \
                (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size')",
    )
    .fetch_one(&mut primary)
    .await
    .unwrap();
    let _ = primary.close().await;
    let target = match (inserted % segment, inserted % block) {
        (40, _) => inserted - 40,
        (in_segment, 24) if in_segment >= block => inserted - 24,
        _ => inserted,
    };
    for _ in 0..2000 {
        let replayed: i64 = sqlx::query_scalar("SELECT (pg_last_wal_replay_lsn() - '0/0')::bigint")
            .fetch_one(&mut *standby)
            .await
            .unwrap();
        if replayed >= target {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the standby did not catch up");
}

/// The messages of `schema` as the standby has them, read on it directly.
async fn on_standby(standby: &mut PgConnection, schema: &str) -> i64 {
    // Test-made names only: persist_test_ + hex.
    let sql = format!("SELECT count(*) FROM \"{schema}\".messages");
    sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(&mut *standby).await.unwrap()
}

fn add(thread: &ThreadId, text: &str) -> Add {
    Add::new(thread.clone(), Role::User, Content::text(text))
}

async fn texts(pipeline: &Pipeline, query: ListMessages) -> Vec<String> {
    let page = pipeline.list(query).await.unwrap();
    page.items.iter().map(|message| message.content.to_text()).collect()
}

/// A handle on `schema` reading from the standby, waiting up to `wait` for it.
fn reading(schema: &str, wait: Duration) -> PostgresBackendBuilder {
    PostgresBackend::builder(url()).schema(schema.to_owned()).replica(replica_url()).replica_wait(wait)
}

fn stats(replica: u64, waited: u64, lagging: u64, down: u64) -> ReplicaStats {
    let mut stats = ReplicaStats::default();
    (stats.replica, stats.waited, stats.lagging, stats.down) = (replica, waited, lagging, down);
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_handle_reads_its_writes_from_a_paused_standby_through_the_primary() {
    let Some((_turn, mut standby)) = standby().await else { return };
    let schema = schema_name();
    let backend = reading(&schema, Duration::from_millis(300)).freshness(Freshness::Request).connect().await.unwrap();
    let pipeline = Pipeline::new(backend.clone());
    let scoped = pipeline.scoped(Context::new());
    let thread = ThreadId::new("t").unwrap();
    scoped.add(add(&thread, "first")).await.unwrap();
    caught_up(&mut standby).await;

    // Everything replayed: the standby answers at once.
    assert_eq!(scoped.list(ListMessages::new(thread.clone())).await.unwrap().items.len(), 1);
    assert_eq!(backend.replica_stats(), stats(1, 0, 0, 0));

    pause(&mut standby).await;
    scoped.add(add(&thread, "second")).await.unwrap();
    // The standby really is behind: read on it, the write is not there.
    assert_eq!(on_standby(&mut standby, &schema).await, 1);
    // A read that asks for nothing takes the standby as it is (the naive replica read).
    let stale = texts(&pipeline, ListMessages::new(thread.clone())).await;
    assert_eq!(stale, ["first"]);
    assert_eq!(backend.replica_stats(), stats(2, 0, 0, 0));

    // The handle's read must see its write: the standby does not get there in 300 ms, so the
    // primary answers.
    let lagging_before = counted("lagging");
    let started = Instant::now();
    let page = scoped.list(ListMessages::new(thread.clone())).await.unwrap();
    assert_eq!(page.items.iter().map(|m| m.content.to_text()).collect::<Vec<_>>(), ["first", "second"]);
    assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
    assert_eq!(backend.replica_stats(), stats(2, 0, 1, 0));
    assert_eq!(counted("lagging") - lagging_before, 1, "the metrics facade counts it too");

    // Replaying again, the standby answers the handle's reads.
    resume(&mut standby).await;
    let page = scoped.list(ListMessages::new(thread.clone())).await.unwrap();
    assert_eq!(page.items.len(), 2);
    let now = backend.replica_stats();
    assert_eq!((now.replica + now.waited, now.lagging, now.down), (3, 1, 0), "{now:?}");

    backend.close().await;
    drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_carried_to_another_instance_is_awaited() {
    let Some((_turn, mut standby)) = standby().await else { return };
    let schema = schema_name();
    let connect = |wait| reading(&schema, wait).freshness(Freshness::Request).connect();
    let writer = Pipeline::new(connect(Duration::from_millis(300)).await.unwrap());
    let reader_backend = connect(Duration::from_secs(20)).await.unwrap();
    let reader = Pipeline::new(reader_backend.clone());
    let thread = ThreadId::new("t").unwrap();
    caught_up(&mut standby).await;
    pause(&mut standby).await;

    // The write's position, as a cookie would carry it.
    let seen = Consistency::new();
    let ctx = Context::new().with_consistency(seen.clone());
    writer.add(add(&thread, "hello").with_context(ctx)).await.unwrap();
    let cookie = seen.position().expect("a write records its position").to_string();

    // Without it, the other instance reads the standby as it is.
    assert!(texts(&reader, ListMessages::new(thread.clone())).await.is_empty());

    // With it, the read waits for the standby to replay the write: still waiting 300 ms on,
    // answered by the standby once it replays again.
    let ctx = Context::new().with_consistency(Consistency::after(cookie.parse::<CommitPosition>().unwrap()));
    let read = tokio::spawn({
        let reader = reader.clone();
        let thread = thread.clone();
        async move { texts(&reader, ListMessages::new(thread).with_context(ctx)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!read.is_finished(), "the read waits for the standby");
    resume(&mut standby).await;
    assert_eq!(read.await.unwrap(), ["hello"]);
    let now = reader_backend.replica_stats();
    assert_eq!((now.replica + now.waited, now.lagging, now.down), (2, 0, 0), "{now:?}");

    drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_handle_reads_its_own_writes_and_those_of_handles_sharing_its_consistency() {
    let Some((_turn, mut standby)) = standby().await else { return };
    let schema = schema_name();
    let shared = Consistency::new();
    let connect = |consistency: Option<Consistency>| {
        let builder = reading(&schema, Duration::from_millis(100));
        match consistency {
            Some(consistency) => builder.consistency(consistency).connect(),
            None => builder.connect(),
        }
    };
    let writer_backend = connect(Some(shared.clone())).await.unwrap();
    let writer = Pipeline::new(writer_backend.clone());
    let sharing_backend = connect(Some(shared.clone())).await.unwrap();
    let sharing = Pipeline::new(sharing_backend.clone());
    let other = Pipeline::new(connect(None).await.unwrap());
    let thread = ThreadId::new("t").unwrap();
    caught_up(&mut standby).await;
    pause(&mut standby).await;

    let before = shared.position();
    writer.add(add(&thread, "mine")).await.unwrap();
    assert!(shared.position() > before, "the handle's consistency records its writes");
    // Plain calls, no consistency in the request: the handle still reads its write.
    assert_eq!(texts(&writer, ListMessages::new(thread.clone())).await, ["mine"]);
    assert_eq!(writer_backend.replica_stats(), stats(0, 0, 1, 0));
    // So does a handle sharing its consistency; another handle reads the standby as it is.
    assert_eq!(texts(&sharing, ListMessages::new(thread.clone())).await, ["mine"]);
    assert_eq!(sharing_backend.replica_stats(), stats(0, 0, 1, 0));
    assert!(texts(&other, ListMessages::new(thread.clone())).await.is_empty());

    // Session writes record their position too, and session reads are the primary's.
    let (agent, provider) = (AgentId::new("a").unwrap(), ProviderId::new("p").unwrap());
    let position = shared.position();
    let bind = Bind::new(agent.clone(), thread.clone(), SessionId::new("s1").unwrap(), provider.clone());
    writer.bind(bind).await.unwrap();
    assert!(shared.position() > position);
    let resolved = other.resolve(Resolve::new(agent, thread.clone(), provider)).await.unwrap();
    assert!(matches!(resolved, Resolution::Resume(_)), "{resolved:?}");

    resume(&mut standby).await;
    drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_is_followed_through_another_instance_whose_standby_lags() {
    let Some((_turn, mut standby)) = standby().await else { return };
    let schema = schema_name();
    // Reads that carry nothing take the standby as it is: the follower's reads of the reply
    // must see what the feed (read on the primary) told of.
    let connect = || reading(&schema, Duration::from_millis(100)).freshness(Freshness::Request).connect();
    let generator = Pipeline::new(connect().await.unwrap());
    let follower = Pipeline::new(connect().await.unwrap());
    let thread = ThreadId::new("t").unwrap();
    generator.add(add(&thread, "question")).await.unwrap();
    caught_up(&mut standby).await;
    pause(&mut standby).await;

    let reply = generator.reserve(Reserve::new(thread.clone(), Role::Assistant)).await.unwrap().message;
    let mut stream = follower.follow_reply(FollowReply::new(thread.clone(), reply.id.clone())).await.unwrap();
    for token in ["hel", "lo"] {
        let append = UpdateContent::appending(thread.clone(), reply.id.clone(), Content::text(token));
        generator.update_content(append).await.unwrap();
    }
    generator.update_content(UpdateContent::finishing(thread.clone(), reply.id.clone())).await.unwrap();
    let mut text = String::new();
    loop {
        match stream.next().await.unwrap() {
            Some(ReplyChunk::Text { text: more, .. }) => text.push_str(&more),
            Some(ReplyChunk::End(_)) => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(text, "hello");

    resume(&mut standby).await;
    drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_caller_gave_up_is_seen_by_the_handles_next_read() {
    let Some((_turn, mut standby)) = standby().await else { return };
    for freshness in [Freshness::Handle, Freshness::Request] {
        gave_up(&mut standby, freshness).await;
    }
}

/// A write whose caller gave up, then a read: through the pipeline with the handle's
/// freshness, through a scoped handle (whose consistency has no position yet) with the
/// request's.
async fn gave_up(standby: &mut PgConnection, freshness: Freshness) {
    let schema = schema_name();
    let backend = reading(&schema, Duration::from_millis(100)).freshness(freshness).connect().await.unwrap();
    let pipeline = Pipeline::new(backend.clone());
    let scoped = pipeline.scoped(Context::new());
    let thread = ThreadId::new("t").unwrap();
    pipeline.add(add(&thread, "first")).await.unwrap();
    caught_up(standby).await;
    pause(standby).await;

    // The thread's row held by another session: the add waits on the server, its caller gives
    // up, and the add commits once the row is free, its position never read.
    let mut holder = admin().await.unwrap();
    let lock = format!("BEGIN; SELECT 1 FROM \"{schema}\".threads WHERE thread_id = 't' FOR UPDATE");
    sqlx::raw_sql(AssertSqlSafe(lock)).execute(&mut holder).await.unwrap();
    let gave_up = tokio::time::timeout(Duration::from_millis(200), scoped.add(add(&thread, "second"))).await;
    assert!(gave_up.is_err(), "the add waits for the row");
    sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
    let count = format!("SELECT count(*) FROM \"{schema}\".messages");
    for _ in 0..500 {
        let count: i64 = sqlx::query_scalar(AssertSqlSafe(count.clone())).fetch_one(&mut holder).await.unwrap();
        if count == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(on_standby(standby, &schema).await, 1, "the standby does not have it");

    // The next read asks the primary where it is first, so it reads the write.
    let page = match freshness {
        Freshness::Handle => pipeline.list(ListMessages::new(thread.clone())).await.unwrap(),
        _ => scoped.list(ListMessages::new(thread.clone())).await.unwrap(),
    };
    let texts: Vec<String> = page.items.iter().map(|message| message.content.to_text()).collect();
    assert_eq!(texts, ["first", "second"], "{freshness:?}");
    assert_eq!(backend.replica_stats().lagging, 1, "{freshness:?}");

    resume(standby).await;
    backend.close().await;
    drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_the_standby_has_not_replayed_is_read_on_the_primary() {
    let Some((_turn, mut standby)) = standby().await else { return };
    pause(&mut standby).await;
    let schema = schema_name();
    for freshness in [Freshness::Request, Freshness::Handle] {
        // Created by connecting, after the standby stopped replaying: the standby has no such
        // schema. A read of it is no error: the primary answers.
        let backend = reading(&schema, Duration::from_millis(50)).freshness(freshness).connect().await.unwrap();
        let pipeline = Pipeline::new(backend.clone());
        assert!(texts(&pipeline, ListMessages::new(ThreadId::new("t").unwrap())).await.is_empty());
        assert_eq!(backend.replica_stats(), stats(0, 0, 1, 0), "{freshness:?}");
        backend.close().await;
    }
    resume(&mut standby).await;
    drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_that_is_down_or_is_not_a_standby_leaves_its_reads_to_the_primary() {
    let _turn = turn().await;
    if !support::available().await {
        return;
    }
    // Nothing listens on port 1; the primary is in no recovery.
    let down = url().replace("127.0.0.1:5432", "127.0.0.1:1");
    assert_ne!(down, url(), "the tests' server is expected at 127.0.0.1:5432");
    for (standby, what) in [(down, "down"), (url(), "the primary given as a standby")] {
        let schema = schema_name();
        let backend = PostgresBackend::builder(url())
            .schema(schema.clone())
            .replica(standby)
            .replica_wait(Duration::from_millis(100))
            .connect()
            .await
            .unwrap();
        let pipeline = Pipeline::new(backend.clone());
        let thread = ThreadId::new("t").unwrap();
        pipeline.add(add(&thread, "kept")).await.unwrap();
        let counted_before = counted("down");
        for _ in 0..3 {
            assert_eq!(texts(&pipeline, ListMessages::new(thread.clone())).await, ["kept"], "{what}");
        }
        assert_eq!(backend.replica_stats(), stats(0, 0, 0, 3), "{what}");
        assert_eq!(counted("down") - counted_before, 3, "the metrics facade counts them too");
        backend.close().await;
        drop_schema(&schema).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_that_drops_its_connections_is_left_alone_for_a_second_then_read_again() {
    let Some((_turn, mut standby)) = standby().await else { return };
    let schema = schema_name();
    let name = schema.replace("persist_test_", "persist_rt_");
    let separator = if replica_url().contains('?') { '&' } else { '?' };
    let backend = PostgresBackend::builder(url())
        .schema(schema.clone())
        .replica(format!("{}{separator}application_name={name}", replica_url()))
        .freshness(Freshness::Request)
        .connect()
        .await
        .unwrap();
    let pipeline = Pipeline::new(backend.clone());
    let thread = ThreadId::new("t").unwrap();
    pipeline.add(add(&thread, "kept")).await.unwrap();
    caught_up(&mut standby).await;
    assert_eq!(texts(&pipeline, ListMessages::new(thread.clone())).await, ["kept"]);
    assert_eq!(backend.replica_stats(), stats(1, 0, 0, 0));

    // The standby ends the handle's connection (an administrator, a restart).
    let ended: Vec<bool> =
        sqlx::query_scalar("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1")
            .bind(&name)
            .fetch_all(&mut standby)
            .await
            .unwrap();
    assert!(!ended.is_empty() && ended.iter().all(|ended| *ended));

    // The read on the lost connection is the primary's; so is the next, the standby left alone.
    assert_eq!(texts(&pipeline, ListMessages::new(thread.clone())).await, ["kept"]);
    assert_eq!(texts(&pipeline, ListMessages::new(thread.clone())).await, ["kept"]);
    assert_eq!(backend.replica_stats(), stats(1, 0, 0, 2));
    // A second later the standby answers again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(texts(&pipeline, ListMessages::new(thread.clone())).await, ["kept"]);
    assert_eq!(backend.replica_stats(), stats(2, 0, 0, 2));

    backend.close().await;
    drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_url_of_another_schema_or_malformed_is_refused_when_connecting() {
    if !support::available().await {
        return;
    }
    let schema = schema_name();
    for replica in [format!("{}?schema=another", replica_url()), "postgres://[::1".to_owned()] {
        let refused = PostgresBackend::builder(url()).schema(schema.clone()).replica(replica.clone()).connect().await;
        match refused {
            Err(persist::PersistError::InvalidInput { field: "replica", .. }) => {}
            other => panic!("{replica}: {other:?}"),
        }
    }
    drop_schema(&schema).await;
}
