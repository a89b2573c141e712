//! Recall: `nearest` top-10 over one user's messages (384 dimensions, 10k and 100k messages
//! across 100 threads, beside another user's as many) on SQLite and PostgreSQL, p50/p99, against
//! an exact scan of the same vectors in this process (the engine limit: no store, no SQL); what
//! an add with its embedding costs against an add alone (one caller, interleaved rounds); and
//! the bytes an embedded message adds.

use std::time::Instant;

use persist::args::{Add, Update};
use persist::postgres::PostgresBackend;
use persist::recall::VectorIndex;
use persist::sqlite::SqliteBackend;
use persist::vector::{Embed, Embedding, Nearest, similarity};
use persist::{Backend, Content, MessageId, Metadata, Pipeline, Role, ThreadId};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::Options;
use crate::measure::{median, p50_p99, rate};
use crate::report::{Row, Target};

pub(crate) const DIMS: usize = 384;
const MODEL: &str = "bench-384";
/// The larger embeddings' length (OpenAI's `text-embedding-3-small`), at the smaller size only.
const WIDE: usize = 1536;

/// The model of vectors of `dims` numbers.
pub(crate) fn model(dims: usize) -> String {
    format!("bench-{dims}")
}
const THREADS: usize = 100;

/// The `n`th unit vector of a fixed sequence (the same in every run and for every store).
fn vector(n: u64) -> Vec<f32> {
    vector_of(n, DIMS)
}

/// The `n`th unit vector of `dims` numbers of a fixed sequence.
pub(crate) fn vector_of(n: u64, dims: usize) -> Vec<f32> {
    let mut state = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// How many subjects [`topical`] vectors are about.
const TOPICS: u64 = 10_000;

/// The `n`th vector of `dims` near one of [`TOPICS`] centres (`n`'s remainder): the centre plus
/// noise as long as itself, so vectors of one subject are nearer each other (about 0.5) than
/// any others (about 0), as embeddings of texts are. Uniform random vectors ([`vector_of`]) have
/// no neighbourhoods for a partition to find.
pub(crate) fn topical(n: u64, dims: usize) -> Vec<f32> {
    let (centre, noise) = (vector_of(u64::MAX - n % TOPICS, dims), vector_of(n, dims));
    let mut v: Vec<f32> = centre.iter().zip(&noise).map(|(c, e)| c + e).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

fn user_thread(user: usize, i: usize) -> ThreadId {
    ThreadId::new(format!("u{user}-t{}", i % THREADS)).unwrap()
}

/// `total` messages of each of two users, each written with its vector of `dims` by 64 callers.
async fn fill<B: Backend + Clone>(backend: &B, total: usize, dims: usize) {
    fill_users(backend, total, dims, 2, vector_of).await;
}

/// `total` messages of each of `users` users, each written with its vector of `dims` (the
/// `n`th of `vectors`).
pub(crate) async fn fill_users<B: Backend + Clone>(
    backend: &B,
    total: usize,
    dims: usize,
    users: usize,
    vectors: fn(u64, usize) -> Vec<f32>,
) {
    for user in 0..users {
        for i in 0..THREADS {
            let tag = Metadata::new().with("user_id", serde_json::json!(format!("u{user}")));
            let add = Add::new(user_thread(user, i), Role::User, Content::text("opening"));
            backend.apply(add.into()).await.expect("add");
            backend.apply(Update::thread(user_thread(user, i)).with_metadata(tag).into()).await.expect("tag");
        }
        let mut tasks = tokio::task::JoinSet::new();
        for caller in 0..64 {
            let backend = backend.clone();
            tasks.spawn(async move {
                for i in (caller..total).step_by(64) {
                    let thread = user_thread(user, i);
                    let text = format!("message {i} of user {user}: about fifteen words of text, as others");
                    let embedding = Embedding::new(model(dims), vectors((user * total + i) as u64, dims));
                    let add = Add::new(thread, Role::User, Content::text(text)).with_embedding(embedding);
                    backend.apply(add.into()).await.expect("add");
                }
            });
        }
        tasks.join_all().await;
    }
}

/// `n` queries of user 0's messages through the store, through a `VectorIndex` over it (its
/// first query, which builds it from the rows, apart), then the same over the vectors held here.
async fn latency<B: Backend + Clone>(store: &str, backend: &B, total: usize, dims: usize, n: usize) -> Vec<Row> {
    let query = |i: usize| vector_of(1_000_000_000 + i as u64, dims);
    let nearest =
        |i: usize| Nearest::new(Embedding::new(model(dims), query(i))).for_resource("user_id", "u0").with_limit(10);
    let mut stored = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        let found = backend.nearest(nearest(i)).await.expect("nearest");
        assert_eq!(found.len(), 10);
        stored.push(t.elapsed());
    }
    let store_rate = rate(n, start.elapsed());
    let files = tempfile::tempdir().expect("a folder for the index's files");
    let index = VectorIndex::new().with_snapshots(files.path());
    let pipeline = Pipeline::builder().layer(index.layer()).build(backend.clone());
    let t = Instant::now();
    let first = pipeline.nearest(nearest(0)).await.expect("nearest");
    let built = t.elapsed();
    assert_eq!(first, backend.nearest(nearest(0)).await.expect("nearest"), "the index answers as the store");
    // Started again (a restart): its first query reads the file the build wrote (in the
    // background: waited for here), then the feed.
    while !files.path().join("default.vectors").exists() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let restarted = VectorIndex::new().with_snapshots(files.path());
    let again = Pipeline::builder().layer(restarted.layer()).build(backend.clone());
    let t = Instant::now();
    let first_again = again.nearest(nearest(0)).await.expect("nearest");
    let restored = t.elapsed();
    assert_eq!(first_again, first, "the index read from its file answers as the store");
    assert_eq!((restarted.stats().restored, restarted.stats().builds), (1, 0), "read from its file");
    drop((again, restarted));
    let mut indexed = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        let found = pipeline.nearest(nearest(i)).await.expect("nearest");
        assert_eq!(found.len(), 10);
        indexed.push(t.elapsed());
    }
    let index_rate = rate(n, start.elapsed());
    let stats = index.stats();
    assert_eq!(stats.answered as usize, n + 1, "the index answered: {stats:?}");
    // Approximate: ranked by the quantized copies, the best few scored exactly; recall@10 is
    // the share of the exact top 10 it finds.
    let (mut rough, mut found_exact) = (Vec::with_capacity(n), 0);
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        let found = pipeline.nearest(nearest(i).approximate()).await.expect("nearest");
        rough.push(t.elapsed());
        let exact = pipeline.nearest(nearest(i)).await.expect("nearest");
        found_exact += exact.iter().filter(|e| found.iter().any(|f| f.message.id == e.message.id)).count();
    }
    let rough_rate = rate(n, start.elapsed());
    let recall_at_10 = found_exact as f64 / (10 * n) as f64;
    let mut scanned = scans(total, dims, n, vector_of, query);
    let scan_rate = rate(n, scanned.iter().sum());
    let (s50, s99) = p50_p99(&mut stored);
    let (i50, i99) = p50_p99(&mut indexed);
    let (a50, a99) = p50_p99(&mut rough);
    let (e50, e99) = p50_p99(&mut scanned);
    let per_100k = stats.resident_bytes as f64 / stats.vectors as f64 * 100_000.0 / 1_048_576.0;
    vec![
        Row::new(
            format!("recall: exact scan in this process, {total} vectors of one user ({dims} dims)"),
            n as u64,
            scan_rate,
        )
        .latency(e50, e99),
        Row::new(
            format!("recall ({store}): nearest top-10 of {total} messages of one user ({dims} dims)"),
            n as u64,
            store_rate,
        )
        .latency(s50, s99)
        .ratio(s50 / e50, "p50, the store / the scan in this process"),
        Row::new(
            format!("recall ({store}): nearest top-10 of {total} ({dims} dims), through a VectorIndex"),
            n as u64,
            index_rate,
        )
        .latency(i50, i99)
        .ratio(i50 / e50, "p50, the index / the scan in this process")
        .target(Target::RatioAtMost(1.5)),
        Row::new(
            format!("recall ({store}): nearest top-10 of {total} ({dims} dims), approximate"),
            n as u64,
            rough_rate,
        )
        .latency(a50, a99)
        .ratio(a50 / e50, "p50, approximate / the scan in this process")
        .target(Target::RatioAtMost(0.2))
        .recall(recall_at_10, 0.95)
        .note(format!("recall@10 {recall_at_10:.3}")),
        Row::new(
            format!("recall ({store}): the VectorIndex's first query, {total} ({dims} dims) built from the rows"),
            1,
            0.0,
        )
        .latency(built.as_secs_f64() * 1e6, built.as_secs_f64() * 1e6)
        .note(format!("{} vectors of 2 users held, {per_100k:.0} MiB per 100k vectors", stats.vectors)),
        Row::new(
            format!("recall ({store}): the VectorIndex's first query after a restart, {total} ({dims} dims) read from its file"),
            1,
            0.0,
        )
        .latency(restored.as_secs_f64() * 1e6, restored.as_secs_f64() * 1e6)
        .ratio(restored.as_secs_f64(), "seconds")
        .target(Target::RatioAtMost(1.0))
        .note(format!("{:.3} of the build from the rows", restored.as_secs_f64() / built.as_secs_f64())),
    ]
}

/// The engine limit: the `total` vectors of `dims` a fill wrote for user 0, held in memory and
/// scanned by the stores' arithmetic (`similarity`), top 10 by `select_nth_unstable`; the time of
/// each of `n` queries (`query(i)`), the holding aside.
fn scans(
    total: usize,
    dims: usize,
    n: usize,
    vectors: fn(u64, usize) -> Vec<f32>,
    query: impl Fn(usize) -> Vec<f32>,
) -> Vec<std::time::Duration> {
    let held: Vec<Vec<f32>> = (0..total).map(|i| vectors(i as u64, dims)).collect();
    (0..n)
        .map(|i| {
            let q = query(i);
            let t = Instant::now();
            let mut scores: Vec<(f32, usize)> =
                held.iter().enumerate().map(|(at, v)| (similarity(&q, v), at)).collect();
            scores.select_nth_unstable_by(9, |a, b| b.0.total_cmp(&a.0));
            std::hint::black_box(&scores[..10]);
            t.elapsed()
        })
        .collect()
}

/// One caller: `n` adds alone, `n` adds carrying their embedding (written in the add's
/// transaction), and `n` adds each followed by an `embed` of its own, interleaved rounds.
async fn write_cost<B: Backend>(store: &str, backend: &B, rounds: usize, n: usize) -> Vec<Row> {
    let (mut alone, mut carried, mut after) = (Vec::new(), Vec::new(), Vec::new());
    let text = |i: usize| Content::text(format!("plain {i}"));
    for round in 0..rounds {
        let thread = ThreadId::new(format!("cost-plain-{round}")).unwrap();
        let start = Instant::now();
        for i in 0..n {
            backend.apply(Add::new(thread.clone(), Role::User, text(i)).into()).await.unwrap();
        }
        alone.push(rate(n, start.elapsed()));
        let thread = ThreadId::new(format!("cost-carried-{round}")).unwrap();
        let start = Instant::now();
        for i in 0..n {
            let add =
                Add::new(thread.clone(), Role::User, text(i)).with_embedding(Embedding::new(MODEL, vector(i as u64)));
            backend.apply(add.into()).await.unwrap();
        }
        carried.push(rate(n, start.elapsed()));
        let thread = ThreadId::new(format!("cost-embedded-{round}")).unwrap();
        let start = Instant::now();
        for i in 0..n {
            let id = MessageId::generate();
            let add = Add::new(thread.clone(), Role::User, text(i)).with_id(id.clone());
            backend.apply(add.into()).await.unwrap();
            let embed = Embed::new(thread.clone(), id, Embedding::new(MODEL, vector(i as u64)));
            backend.apply(embed.into()).await.unwrap();
        }
        after.push(rate(n, start.elapsed()));
    }
    let ratio = |with: &[f64]| {
        let mut ratios: Vec<f64> = alone.iter().zip(with).map(|(a, e)| a / e).collect();
        median(&mut ratios)
    };
    vec![
        Row::new(format!("recall ({store}): one caller, adds alone"), n as u64, median(&mut alone.clone())),
        Row::new(
            format!("recall ({store}): one caller, adds carrying their embedding ({DIMS} dims)"),
            n as u64,
            median(&mut carried.clone()),
        )
        .ratio(ratio(&carried), "time of an add with its embedding / alone")
        .target(Target::RatioAtMost(1.3)),
        Row::new(
            format!("recall ({store}): one caller, adds each followed by an embed"),
            n as u64,
            median(&mut after.clone()),
        )
        .ratio(ratio(&after), "time of an add and its embed / the add alone"),
    ]
}

fn bytes_row(store: &str, bytes: u64, messages: usize) -> Row {
    let per = bytes as f64 / messages as f64;
    Row::new(format!("recall ({store}): bytes an embedded message adds ({DIMS} dims)"), messages as u64, 0.0)
        .note(format!("{per:.0} B per message"))
}

pub(crate) fn run(options: &Options) -> Vec<Row> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    // (messages of each user, dimensions): the wide vectors at the smaller size only.
    let shapes: Vec<(usize, usize)> =
        if options.quick { vec![(2_000, DIMS)] } else { vec![(10_000, DIMS), (100_000, DIMS), (10_000, WIDE)] };
    let queries = options.scale(50, 10);
    rt.block_on(async {
        let mut rows = Vec::new();
        let dir = tempfile::tempdir().expect("a temporary directory");
        for &(total, dims) in &shapes {
            let path = dir.path().join(format!("recall-{total}-{dims}.db"));
            let store = SqliteBackend::open(&path).await.expect("open");
            fill(&store, total, dims).await;
            rows.extend(latency("SQLite", &store, total, dims, queries).await);
            store.close().await;
            if dims != DIMS {
                continue;
            }
            // The same messages without their vectors: the file's difference is theirs.
            let plain = SqliteBackend::open(dir.path().join(format!("plain-{total}.db"))).await.expect("open");
            let sized = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
            fill_plain(&plain, total).await;
            plain.close().await;
            let bytes = sized(&path).saturating_sub(sized(&dir.path().join(format!("plain-{total}.db"))));
            rows.push(bytes_row("SQLite", bytes, 2 * total));
        }

        let url = crate::postgres::url();
        let Ok(mut admin) = PgConnection::connect(&url).await else {
            rows.push(Row::skipped("recall (PostgreSQL)", format!("skipped: no server at {url}")));
            return rows;
        };
        let schema = format!("persist_bench_recall_{}", std::process::id());
        let connect =
            |schema: String| PostgresBackend::builder(url.clone()).schema(schema).max_connections(8).connect();
        for &(total, dims) in &shapes {
            let name = format!("{schema}_{total}_{dims}");
            let store = connect(name.clone()).await.expect("connect");
            fill(&store, total, dims).await;
            // The fill's dead row versions and dirty pages dealt with before the clock starts, so
            // autovacuum and the checkpointer do not share the two cores with the queries.
            // (One statement each: VACUUM runs outside a transaction only.)
            for table in ["persist_embeddings", "messages", "persist_feed"] {
                let vacuum = format!("VACUUM ANALYZE \"{name}\".{table}");
                sqlx::raw_sql(AssertSqlSafe(vacuum)).execute(&mut admin).await.expect("vacuum");
            }
            sqlx::raw_sql("CHECKPOINT").execute(&mut admin).await.expect("checkpoint");
            rows.extend(latency("PostgreSQL", &store, total, dims, queries).await);
            if dims == DIMS {
                let size = format!("SELECT pg_total_relation_size('\"{name}\".persist_embeddings')::bigint");
                let bytes: i64 = sqlx::query_scalar(AssertSqlSafe(size)).fetch_one(&mut admin).await.expect("size");
                rows.push(bytes_row("PostgreSQL", u64::try_from(bytes).unwrap_or_default(), 2 * total));
            }
            store.close().await;
            let drop = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE");
            let _ = sqlx::query(AssertSqlSafe(drop)).execute(&mut admin).await;
        }
        rows
    })
}

/// The messages [`fill`] writes, without their vectors.
async fn fill_plain<B: Backend + Clone>(backend: &B, total: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..64 {
        let backend = backend.clone();
        tasks.spawn(async move {
            for user in 0..2 {
                for i in (caller..total).step_by(64) {
                    let text = format!("message {i} of user {user}: about fifteen words of text, as others");
                    let add = Add::new(user_thread(user, i), Role::User, Content::text(text));
                    backend.apply(add.into()).await.expect("add");
                }
            }
        });
    }
    tasks.join_all().await;
}

/// `--only embedding`: the write cost of an embedding carried by its add (and of one written
/// after it), one caller, on SQLite and PostgreSQL; apart from the recall reads, whose fills take
/// minutes.
pub(crate) fn run_writes(options: &Options) -> Vec<Row> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    let (rounds, writes) = (options.scale(5, 2), options.scale(1_000, 100));
    rt.block_on(async {
        let mut rows = Vec::new();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let costs = SqliteBackend::open(dir.path().join("cost.db")).await.expect("open");
        rows.extend(write_cost("SQLite", &costs, rounds, writes).await);
        costs.close().await;
        let url = crate::postgres::url();
        let Ok(mut admin) = PgConnection::connect(&url).await else {
            rows.push(Row::skipped("recall (PostgreSQL)", format!("skipped: no server at {url}")));
            return rows;
        };
        let schema = format!("persist_bench_embedding_{}", std::process::id());
        let costs = PostgresBackend::builder(url.clone())
            .schema(schema.clone())
            .max_connections(8)
            .connect()
            .await
            .expect("connect");
        rows.extend(write_cost("PostgreSQL", &costs, rounds, writes).await);
        costs.close().await;
        let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        sqlx::raw_sql(AssertSqlSafe(drop)).execute(&mut admin).await.expect("drop the schema");
        rows
    })
}

/// The index at a million vectors of one user in a SQLite file (`--only recall-1m`, never in a
/// full run: its fill takes minutes and 2 GB of disk): the vectors [`topical`], as embeddings of
/// texts are; its build from the rows, exact queries, and approximate ones three ways: the int8
/// scan of every vector, then the lists (their learning apart) read one in sixteen and one in
/// four, each with its recall@10 against the exact answer.
pub(crate) fn run_million(options: &Options) -> Vec<Row> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    let total = if options.quick { 20_000 } else { 1_000_000 };
    let queries = options.scale(50, 5);
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteBackend::open(dir.path().join("recall-1m.db")).await.expect("open");
        fill_users(&store, total, DIMS, 1, topical).await;
        let index = VectorIndex::new().with_budget(8 << 30);
        let pipeline = Pipeline::builder().layer(index.layer()).build(store.clone());
        let query = |i: usize| topical(7_000_000_000 + i as u64, DIMS);
        let nearest =
            |i: usize| Nearest::new(Embedding::new(MODEL, query(i))).for_resource("user_id", "u0").with_limit(10);
        let micros = |t: Instant| t.elapsed().as_secs_f64() * 1e6;
        let t = Instant::now();
        pipeline.nearest(nearest(0)).await.expect("nearest");
        let built = micros(t);
        let mut exact = Vec::new();
        let mut best = Vec::new();
        for i in 0..queries {
            let t = Instant::now();
            best.push(pipeline.nearest(nearest(i)).await.expect("nearest"));
            exact.push(t.elapsed());
        }
        // The approximate queries' times and the share of the exact top 10 they found.
        let approximate = |pipeline: &Pipeline| {
            let (pipeline, best) = (pipeline.clone(), &best);
            async move {
                let (mut times, mut found) = (Vec::new(), 0);
                for (i, best) in best.iter().enumerate() {
                    let t = Instant::now();
                    let rough = pipeline.nearest(nearest(i).approximate()).await.expect("nearest");
                    times.push(t.elapsed());
                    found += best.iter().filter(|b| rough.iter().any(|a| a.message.id == b.message.id)).count();
                }
                (times, found as f64 / (10 * best.len()) as f64)
            }
        };
        let (mut scanned_int8, recall_int8) = approximate(&pipeline).await;
        let index = index.with_clusters_from(10_000).with_probes_one_in(16);
        // The first approximate query begins learning the lists (on a thread of their own) and is
        // answered by the int8 scan, as the queries after it, timed, until the lists are in place.
        let t = Instant::now();
        let mut meanwhile = Vec::new();
        while index.stats().clustered == 0 {
            let q = Instant::now();
            pipeline.nearest(nearest(meanwhile.len() % queries).approximate()).await.expect("nearest");
            meanwhile.push(q.elapsed());
        }
        let learnt = micros(t);
        let (m50, m99) = p50_p99(&mut meanwhile);
        let (mut listed, recall_listed) = approximate(&pipeline).await;
        let index = index.with_probes_one_in(4);
        let (mut listed_more, recall_more) = approximate(&pipeline).await;
        let stats = index.stats();
        assert_eq!(stats.clustered, total, "the lists hold every vector: {stats:?}");
        drop(pipeline);
        store.close().await;
        let mut scanned = scans(total, DIMS, queries, topical, query);
        let (e50, e99) = p50_p99(&mut scanned);
        let (x50, x99) = p50_p99(&mut exact);
        let per_million = stats.resident_bytes as f64 / stats.vectors as f64 * 1e6 / 1_073_741_824.0;
        let mut rows = vec![
            Row::new(
                format!("recall-1m: exact scan in this process, {total} vectors ({DIMS} dims, topical)"),
                queries as u64,
                0.0,
            )
            .latency(e50, e99),
            Row::new(
                format!("recall-1m (SQLite): nearest top-10 of {total} through a VectorIndex"),
                queries as u64,
                0.0,
            )
            .latency(x50, x99)
            .ratio(x50 / e50, "p50, the index / the scan in this process")
            .target(Target::RatioAtMost(1.5)),
        ];
        for (how, times, recall) in [
            ("the int8 scan", &mut scanned_int8, recall_int8),
            ("lists, one in 16 read", &mut listed, recall_listed),
            ("lists, one in 4 read", &mut listed_more, recall_more),
        ] {
            let (a50, a99) = p50_p99(times);
            rows.push(
                Row::new(
                    format!("recall-1m (SQLite): nearest top-10 of {total}, approximate: {how}"),
                    queries as u64,
                    0.0,
                )
                .latency(a50, a99)
                .ratio(a50 / e50, "p50, approximate / the scan in this process")
                .note(format!("recall@10 {recall:.3}")),
            );
        }
        rows.push(
            Row::new(format!("recall-1m (SQLite): the VectorIndex's first query, {total} built from the rows"), 1, 0.0)
                .latency(built, built)
                .note(format!("{} vectors held, {per_million:.2} GiB per million with the lists", stats.vectors)),
        );
        rows.push(
            Row::new(format!("recall-1m (SQLite): the lists learnt over {total}, in the background"), 1, 0.0)
                .latency(learnt, learnt),
        );
        rows.push(
            Row::new(
                "recall-1m (SQLite): approximate queries while the lists are learnt (the int8 scan)",
                meanwhile.len() as u64,
                0.0,
            )
            .latency(m50, m99)
            .ratio(m50 / e50, "p50, approximate / the scan in this process"),
        );
        rows
    })
}
