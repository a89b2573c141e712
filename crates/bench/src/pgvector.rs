//! pgvector: approximate `nearest` walking pgvector's HNSW index (`pgvector_hnsw`) against the
//! same store's exact scan, the same queries in turn (one user's messages, 384 dimensions,
//! beside another user's as many; topical vectors, as embeddings of texts are), with recall@10
//! against the exact answer; the index's build over the vectors held; and what an add with its
//! vector costs with the index kept, against the same add in a schema without it (one caller,
//! interleaved rounds).
//!
//! On the server at `$PERSIST_PGVECTOR_URL` (default `postgres://postgres@127.0.0.1:5418/test`,
//! PostgreSQL 18 with pgvector); reported as skipped without one.

use std::time::{Duration, Instant};

use persist::args::Add;
use persist::postgres::{PostgresBackend, PostgresBackendBuilder};
use persist::vector::{Embedding, Nearest};
use persist::{Backend, Content, Role, ThreadId};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::Options;
use crate::measure::{median, p50_p99, rate};
use crate::recall::{DIMS, fill_users, model, topical};
use crate::report::{Row, Target};

fn url() -> String {
    std::env::var("PERSIST_PGVECTOR_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5418/test".to_owned())
}

fn builder(schema: &str) -> PostgresBackendBuilder {
    PostgresBackend::builder(url()).schema(schema).max_connections(8)
}

pub(crate) fn run(options: &Options) -> Vec<Row> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    let total = options.scale(50_000, 5_000);
    let queries = options.scale(50, 10);
    let (rounds, writes) = (5, options.scale(200, 50));
    rt.block_on(async {
        let Ok(mut admin) = PgConnection::connect(&url()).await else {
            return vec![Row::skipped("pgvector", format!("skipped: no server at {} (PERSIST_PGVECTOR_URL)", url()))];
        };
        let schema = format!("persist_bench_pgvector_{}", std::process::id());
        let plain_schema = format!("{schema}_plain");
        let plain = builder(&schema).connect().await.expect("connect");
        fill_users(&plain, total, DIMS, 2, topical).await;
        let vacuum = format!("VACUUM ANALYZE \"{schema}\".persist_embeddings");
        sqlx::raw_sql(AssertSqlSafe(vacuum)).execute(&mut admin).await.expect("vacuum");
        plain.close().await;
        let started = Instant::now();
        let indexed = builder(&schema).pgvector_hnsw([DIMS]).connect().await.expect("connect with the index");
        let built = started.elapsed();
        sqlx::raw_sql("CHECKPOINT").execute(&mut admin).await.expect("checkpoint");
        let wider = builder(&schema).pgvector_hnsw([DIMS]).pgvector_ef_search(WIDER).connect().await.expect("connect");
        let mut rows = latency(&[(100, &indexed), (WIDER, &wider)], total, queries).await;
        wider.close().await;
        rows.push(
            Row::new(format!("pgvector: the HNSW index built over {} vectors ({DIMS} dims)", 2 * total), 1, 0.0)
                .latency(built.as_secs_f64() * 1e6, built.as_secs_f64() * 1e6)
                .note(format!("{:.0} s, connecting with pgvector_hnsw([{DIMS}])", built.as_secs_f64())),
        );
        let without = builder(&plain_schema).connect().await.expect("connect");
        rows.push(write_cost(&indexed, &without, rounds, writes).await);
        indexed.close().await;
        without.close().await;
        for name in [&schema, &plain_schema] {
            let drop = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE");
            let _ = sqlx::query(AssertSqlSafe(drop)).execute(&mut admin).await;
        }
        rows
    })
}

/// The wider walk measured beside the default one (`pgvector_ef_search`).
const WIDER: u32 = 400;

/// `n` queries of user 0's messages, each exact (the scan) then approximate through each of
/// `walks` (its width, and a handle walking that wide), in turn.
async fn latency(walks: &[(u32, &PostgresBackend)], total: usize, n: usize) -> Vec<Row> {
    let nearest = |i: usize| {
        let query = Embedding::new(model(DIMS), topical(1_000_000_000 + i as u64, DIMS));
        Nearest::new(query).for_resource("user_id", "u0").with_limit(10)
    };
    let mut exact = Vec::with_capacity(n);
    let mut rough: Vec<(Vec<Duration>, usize)> = walks.iter().map(|_| (Vec::with_capacity(n), 0)).collect();
    for i in 0..n {
        let t = Instant::now();
        let scanned = walks[0].1.nearest(nearest(i)).await.expect("nearest");
        exact.push(t.elapsed());
        for ((_, store), (times, found)) in walks.iter().zip(&mut rough) {
            let t = Instant::now();
            let walked = store.nearest(nearest(i).approximate()).await.expect("nearest");
            times.push(t.elapsed());
            assert_eq!(walked.len(), 10);
            *found += scanned.iter().filter(|e| walked.iter().any(|w| w.message.id == e.message.id)).count();
        }
    }
    let exact_rate = rate(n, exact.iter().sum());
    let (e50, e99) = p50_p99(&mut exact);
    let mut rows = vec![
        Row::new(
            format!("pgvector: nearest top-10 of {total} of one user ({DIMS} dims), exact scan"),
            n as u64,
            exact_rate,
        )
        .latency(e50, e99),
    ];
    for ((width, _), (mut times, found)) in walks.iter().zip(rough) {
        let recall_at_10 = found as f64 / (10 * n) as f64;
        let walk_rate = rate(n, times.iter().sum());
        let (a50, a99) = p50_p99(&mut times);
        rows.push(
            Row::new(
                format!(
                    "pgvector: nearest top-10 of {total} ({DIMS} dims), approximate, the index walked {width} wide"
                ),
                n as u64,
                walk_rate,
            )
            .latency(a50, a99)
            .ratio(a50 / e50, "p50, approximate / the exact scan, same store")
            .target(Target::RatioAtMost(0.2))
            .recall(recall_at_10, 0.95)
            .note(format!("recall@10 {recall_at_10:.3}")),
        );
    }
    rows
}

/// `rounds` rounds of `n` adds each carrying its vector, with the index kept and without it, in
/// turn; the ratio of the medians of their rates.
async fn write_cost(indexed: &PostgresBackend, without: &PostgresBackend, rounds: usize, n: usize) -> Row {
    let (mut with_index, mut plain) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for (store, rates) in [(indexed, &mut with_index), (without, &mut plain)] {
            let thread = ThreadId::new(format!("cost-{round}")).expect("a thread id");
            let started = Instant::now();
            for i in 0..n {
                let vector = Embedding::new(model(DIMS), topical((round * n + i) as u64, DIMS));
                let add =
                    Add::new(thread.clone(), Role::User, Content::text(format!("cost {i}"))).with_embedding(vector);
                store.apply(add.into()).await.expect("add");
            }
            rates.push(rate(n, started.elapsed().max(Duration::from_nanos(1))));
        }
    }
    let (kept, alone) = (median(&mut with_index), median(&mut plain));
    Row::new(format!("pgvector: an add with its vector ({DIMS} dims), the index kept"), (rounds * n) as u64, kept)
        .ratio(alone / kept, "time, with the index / without it")
        .note("one caller, interleaved rounds")
}
