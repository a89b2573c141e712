//! Full-text search: what the index costs writes (64 callers, the index on against off, same
//! messages, interleaved rounds, on SQLite and PostgreSQL), and searches over a store of 100k
//! messages (p50, p99: a mix of rare words, two words, a phrase, a prefix; and a common word,
//! thousands of matches sorted for the newest 20).

use std::time::{Duration, Instant};

use persist::args::Add;
use persist::postgres::PostgresBackend;
use persist::search::Search;
use persist::sqlite::SqliteBackend;
use persist::{Backend, Content, Role, ThreadId};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::Options;
use crate::measure::{median, percentile, rate};
use crate::report::{Row, Target};

/// Common words, most messages draw from.
const WORDS: &[&str] = &[
    "the", "a", "to", "of", "and", "in", "is", "it", "you", "that", "for", "on", "with", "as", "this", "be", "at",
    "can", "we", "please", "could", "would", "should", "make", "check", "build", "deploy", "error", "retry", "limit",
    "rate", "request", "response", "server", "client", "database", "query", "index", "table", "message", "thread",
    "agent", "model", "token", "stream", "reply", "user", "tool", "result", "call", "weather", "lisbon", "paris",
    "flight", "hotel", "booking", "meeting", "tomorrow", "today", "report", "summary", "draft", "email", "invoice",
    "order", "payment", "refund", "account", "password", "login", "timeout", "latency", "memory", "disk", "cache",
];

/// The `n`th message's text: about fifteen words (≈ 100 bytes, as the other scenarios' messages)
/// drawn from [`WORDS`], and one of 5,000 rare `topicN` words (each in ≈ 1 in 5,000 messages).
fn text(n: usize) -> String {
    let mut state = (n as u64).wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut words = Vec::with_capacity(16);
    for _ in 0..14 {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        // Skewed: low indices (short, common words) come up more often.
        let r = (state >> 33) as usize;
        let index = (r % WORDS.len()) * (r / WORDS.len() % WORDS.len()) / WORDS.len();
        words.push(WORDS[index].to_owned());
    }
    words.insert(7, format!("topic{}", n * 7919 % 5000));
    words.join(" ")
}

/// `callers` tasks adding `per_caller` messages each to threads of their own; answers adds/s.
async fn writes<B: Backend + Clone>(backend: &B, callers: usize, per_caller: usize, round: usize) -> f64 {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..callers {
        let backend = backend.clone();
        tasks.spawn(async move {
            let thread = ThreadId::new(format!("w{round}-{caller}")).unwrap();
            for i in 0..per_caller {
                let add = Add::new(thread.clone(), Role::User, Content::text(text(caller * per_caller + i)));
                backend.apply(add.into()).await.expect("add");
            }
        });
    }
    tasks.join_all().await;
    rate(callers * per_caller, start.elapsed())
}

/// Index on against off, 64 callers, `rounds` interleaved rounds: rows for both and the ratio.
async fn write_cost<B: Backend + Clone>(store: &str, on: &B, off: &B, rounds: usize, per_caller: usize) -> Vec<Row> {
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        with.push(writes(on, 64, per_caller, round).await);
        without.push(writes(off, 64, per_caller, round).await);
    }
    let mut ratios: Vec<f64> = with.iter().zip(&without).map(|(w, o)| w / o).collect();
    let ops = (64 * per_caller) as u64;
    vec![
        Row::new(format!("search ({store}): 64 callers, index off"), ops, median(&mut without.clone())),
        Row::new(format!("search ({store}): 64 callers, index on"), ops, median(&mut with.clone()))
            .ratio(median(&mut ratios), "adds/s, index on / off")
            .target(Target::RatioAtLeast(0.8)),
    ]
}

/// Searches of a store holding `total` messages: the mixed queries, then a common word.
async fn search_latency<B: Backend + Clone>(store: &str, backend: &B, total: usize, n: usize) -> Vec<Row> {
    let queries = |i: usize| -> String {
        match i % 5 {
            0 => format!("topic{}", i * 31 % 5000),
            1 => format!("topic{} weather", i * 17 % 5000),
            2 => "\"rate limit\"".to_owned(),
            3 => "lisb*".to_owned(),
            _ => "invoice refund".to_owned(),
        }
    };
    let run = async |query: &dyn Fn(usize) -> String| {
        let mut latencies = Vec::with_capacity(n);
        let start = Instant::now();
        for i in 0..n {
            let t = Instant::now();
            let page = backend.search(Search::new(query(i))).await.expect("search");
            std::hint::black_box(page);
            latencies.push(t.elapsed());
        }
        (rate(n, start.elapsed()), latencies)
    };
    let (mixed, mut mixed_latencies) = run(&queries).await;
    let (common, mut common_latencies) = run(&|_| "the".to_owned()).await;
    let p = |latencies: &mut Vec<Duration>| (percentile(latencies, 50.0), percentile(latencies, 99.0));
    let (m50, m99) = p(&mut mixed_latencies);
    let (c50, c99) = p(&mut common_latencies);
    vec![
        Row::new(format!("search ({store}): {total} messages, rare words, pairs, a phrase, a prefix"), n as u64, mixed)
            .latency(m50, m99),
        Row::new(format!("search ({store}): {total} messages, a word in most of them (newest 20)"), n as u64, common)
            .latency(c50, c99),
    ]
}

/// Fills `backend` with `total` messages, 64 callers at a time.
async fn fill<B: Backend + Clone>(backend: &B, total: usize) {
    writes(backend, 64, total / 64, 999).await;
}

pub(crate) fn run(options: &Options) -> Vec<Row> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    let (rounds, per_caller) = (options.scale(5, 2), options.scale(200, 30));
    let total = options.scale(100_000, 10_000);
    let searches = options.scale(500, 50);
    rt.block_on(async {
        let mut rows = Vec::new();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let on = SqliteBackend::open(dir.path().join("on.db")).await.expect("open");
        let off = SqliteBackend::builder(dir.path().join("off.db")).search_index(false).open().await.expect("open");
        rows.extend(write_cost("SQLite", &on, &off, rounds, per_caller).await);
        off.close().await;
        on.close().await;
        let store = SqliteBackend::open(dir.path().join("searched.db")).await.expect("open");
        fill(&store, total).await;
        rows.extend(search_latency("SQLite", &store, total, searches).await);
        store.close().await;

        let url = crate::postgres::url();
        let Ok(mut admin) = PgConnection::connect(&url).await else {
            rows.push(Row::skipped("search (PostgreSQL)", format!("skipped: no server at {url}")));
            return rows;
        };
        let schemas: Vec<String> = ["on", "off", "searched"]
            .iter()
            .map(|s| format!("persist_bench_search_{s}_{}", std::process::id()))
            .collect();
        let connect = |schema: &str, index: bool| {
            PostgresBackend::builder(url.clone()).schema(schema).max_connections(8).search_index(index).connect()
        };
        let on = connect(&schemas[0], true).await.expect("connect");
        let off = connect(&schemas[1], false).await.expect("connect");
        rows.extend(write_cost("PostgreSQL", &on, &off, rounds, per_caller).await);
        // Streamed replies: every token's update rewrites `content`, which the index's
        // expression reads (no HOT update for it while the index is there, reserved or not).
        let replies = options.scale(3, 1);
        let (mut with, mut without) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            with.push(crate::postgres::streams(&on, replies).await);
            without.push(crate::postgres::streams(&off, replies).await);
        }
        let mut ratios: Vec<f64> = with.iter().zip(&without).map(|(w, o)| w / o).collect();
        rows.push(Row::new(
            "search (PostgreSQL): 64 streams, index off (replies/s)",
            (64 * replies) as u64,
            median(&mut without.clone()),
        ));
        rows.push(
            Row::new(
                "search (PostgreSQL): 64 streams, index on (replies/s)",
                (64 * replies) as u64,
                median(&mut with.clone()),
            )
            .ratio(median(&mut ratios), "replies/s, index on / off"),
        );
        on.close().await;
        off.close().await;
        let store = connect(&schemas[2], true).await.expect("connect");
        fill(&store, total).await;
        let analyze = format!("ANALYZE \"{}\".messages", schemas[2]);
        sqlx::query(AssertSqlSafe(analyze)).execute(&mut admin).await.expect("analyze");
        rows.extend(search_latency("PostgreSQL", &store, total, searches).await);
        store.close().await;
        for schema in schemas {
            let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            let _ = sqlx::query(AssertSqlSafe(drop)).execute(&mut admin).await;
        }
        rows
    })
}
