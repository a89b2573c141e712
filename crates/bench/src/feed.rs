//! What the change feed costs writers: adds with the feed on and off, side by side in
//! interleaved rounds, on SQLite and PostgreSQL, one caller and 64 tasks.

use std::sync::Arc;
use std::time::Instant;

use persist::args::Add;
use persist::feed::{FeedRetention, ReadFeed};
use persist::postgres::PostgresBackend;
use persist::sqlite::SqliteBackend;
use persist::{Backend, Content, Pipeline, Role, ThreadId};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::Options;
use crate::measure::{median, rate};
use crate::report::{Row, Target};

const TEXT: &str = "a user turn of a realistic length, a sentence or two about the task at hand.";

/// `n` adds split over `callers` tasks (each to a thread of its own), as a rate.
async fn adds<B: Backend>(backend: &Arc<B>, tag: &str, callers: usize, n: usize) -> f64 {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..callers {
        let backend = Arc::clone(backend);
        let thread = ThreadId::new(format!("{tag}-{caller}")).unwrap();
        tasks.spawn(async move {
            for _ in 0..n / callers {
                let add = Add::new(thread.clone(), Role::User, Content::text(TEXT));
                backend.apply(add.into()).await.expect("add");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    rate(n / callers * callers, start.elapsed())
}

/// Medians of `on` and `off` over interleaved rounds (the order alternating), and the median
/// of the per-round ratios on/off. Each comparison (`label`) and round writes to threads of
/// its own: an add's cost depends on its thread's length, so a store must not be measured on
/// threads another comparison already grew.
async fn side_by_side<B: Backend>(
    label: &str,
    (on, off): (&Arc<B>, &Arc<B>),
    callers: usize,
    n: usize,
    rounds: usize,
) -> (f64, f64, f64) {
    let (mut with, mut without, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let tag = format!("{label}-r{round}-c{callers}");
        let (a, b) = if round % 2 == 0 {
            let a = adds(on, &format!("on-{tag}"), callers, n).await;
            (a, adds(off, &format!("off-{tag}"), callers, n).await)
        } else {
            let b = adds(off, &format!("off-{tag}"), callers, n).await;
            (adds(on, &format!("on-{tag}"), callers, n).await, b)
        };
        with.push(a);
        without.push(b);
        ratios.push(a / b);
    }
    (median(&mut with), median(&mut without), median(&mut ratios))
}

fn rows(store: &str, callers: usize, n: usize, (on, off, ratio): (f64, f64, f64)) -> Vec<Row> {
    let who = if callers == 1 { "1 caller".to_owned() } else { format!("{callers} tasks") };
    vec![
        Row::new(format!("{store} adds, feed off, {who}"), n as u64, off),
        Row::new(format!("{store} adds, feed on, {who}"), n as u64, on)
            .ratio(ratio, "feed off")
            .target(Target::RatioAtLeast(0.85)),
    ]
}

/// The same with a subscriber following every tenant's events through a pipeline over the
/// feed-on store (as an indexer or an SSE server would), on the same runtime, all along.
async fn with_subscriber<B: Backend + Clone>(
    store: &str,
    on: &Arc<B>,
    off: &Arc<B>,
    (callers, n, rounds): (usize, usize, usize),
) -> Row {
    let pipeline = Pipeline::new(B::clone(on));
    let head = pipeline.read_feed(ReadFeed::across_tenants()).await.expect("read the feed").head;
    let mut following = pipeline.subscribe(ReadFeed::across_tenants().after(head)).await.expect("subscribe");
    let follower = tokio::spawn(async move {
        let mut seen = 0_u64;
        while following.next().await.is_ok() {
            seen += 1;
        }
        seen
    });
    let (on, _, ratio) = side_by_side("subscribed", (on, off), callers, n, rounds).await;
    follower.abort();
    Row::new(format!("{store} adds, feed on, a subscriber reading every event, {callers} tasks"), n as u64, on)
        .ratio(ratio, "feed off")
}

pub(crate) fn run(options: &Options) -> Vec<Row> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    rt.block_on(async {
        // More rounds than elsewhere: the differences measured are a few percent.
        let rounds = options.scale(9, 3);
        let mut out = Vec::new();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let on = Arc::new(SqliteBackend::open(dir.path().join("on.db")).await.expect("open"));
        let off = SqliteBackend::builder(dir.path().join("off.db")).feed(None).open().await.expect("open");
        let off = Arc::new(off);
        for (callers, n) in [(1, options.scale(3000, 300)), (64, options.scale(12_800, 1_280))] {
            out.extend(rows("SQLite", callers, n, side_by_side("on-off", (&on, &off), callers, n, rounds).await));
        }
        out.push(with_subscriber("SQLite", &on, &off, (64, options.scale(12_800, 1_280), rounds)).await);
        on.close().await;
        off.close().await;

        let Ok(mut admin) = PgConnection::connect(&crate::postgres::url()).await else {
            out.push(Row::skipped("PostgreSQL feed", "skipped: no server (PERSIST_POSTGRES_URL)"));
            return out;
        };
        let pid = std::process::id();
        let (on_schema, off_schema) = (format!("persist_bench_feed_on_{pid}"), format!("persist_bench_feed_off_{pid}"));
        let connect = |schema: &str, feed: Option<FeedRetention>| {
            PostgresBackend::builder(crate::postgres::url()).schema(schema).max_connections(32).feed(feed).connect()
        };
        let bare_schema = format!("persist_bench_feed_bare_{pid}");
        let on = Arc::new(connect(&on_schema, Some(FeedRetention::default())).await.expect("connect"));
        let off = Arc::new(connect(&off_schema, None).await.expect("connect"));
        // The baseline of the feed's cost: the same schema without the feed's triggers, as
        // if the feed had never been built (the feed turned off still fires them, to check
        // whether they record).
        let bare = Arc::new(connect(&bare_schema, None).await.expect("connect"));
        let untrigger = format!(
            "SET search_path TO \"{bare_schema}\"; \
             DROP TRIGGER persist_feed_messages_inserted ON messages; \
             DROP TRIGGER persist_feed_messages_updated ON messages; \
             DROP TRIGGER persist_feed_messages_deleted ON messages; \
             DROP TRIGGER persist_feed_thread_changed ON threads; \
             DROP TRIGGER persist_feed_thread_removed ON threads; RESET search_path"
        );
        sqlx::raw_sql(AssertSqlSafe(untrigger)).execute(&mut admin).await.expect("drop the feed's triggers");
        for (callers, n) in [(1, options.scale(2000, 200)), (64, options.scale(6_400, 640))] {
            out.extend(rows("PostgreSQL", callers, n, side_by_side("on-off", (&on, &off), callers, n, rounds).await));
            let who = if callers == 1 { "1 caller".to_owned() } else { format!("{callers} tasks") };
            for (name, store) in [("on", &on), ("off", &off)] {
                let (with, _, ratio) = side_by_side(&format!("{name}-bare"), (store, &bare), callers, n, rounds).await;
                let row = Row::new(format!("PostgreSQL adds, feed {name} vs no feed triggers, {who}"), n as u64, with)
                    .ratio(ratio, "the schema without the feed's triggers")
                    .target(Target::RatioAtLeast(0.95));
                out.push(row);
            }
        }
        out.push(with_subscriber("PostgreSQL", &on, &off, (64, options.scale(6_400, 640), rounds)).await);
        on.close().await;
        off.close().await;
        bare.close().await;
        for schema in [on_schema, off_schema, bare_schema] {
            let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            let _ = sqlx::query(AssertSqlSafe(drop)).execute(&mut admin).await;
        }
        out
    })
}
