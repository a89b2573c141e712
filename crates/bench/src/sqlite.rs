//! SQLite: our backend against the same transaction hand-written with sqlx and with rusqlite on
//! a held connection, group commit under 64 concurrent callers against rusqlite's batched rate, and a
//! streaming workload.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use persist::args::{Reserve, UpdateContent};
use persist::read::ListMessages;
use persist::sqlite::SqliteBackend;
use persist::{Backend, Content, Order, Role, ThreadId};

use crate::Options;
use crate::measure::{median, percentile, rate};
use crate::report::{Row, Target};
use crate::workload::{add, as_tasks};

mod baselines;

pub(crate) use self::baselines::HeldRusqlite as HeldConnection;

use self::baselines::{HandWritten, HeldRusqlite, rusqlite_connection, rusqlite_group_rate, rusqlite_rate};

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().expect("a runtime")
}

/// A database file with persist's schema applied.
pub(crate) async fn migrated(path: &Path) {
    drop(SqliteBackend::open(path).await.expect("open"));
}

/// Runs `per_thread` calls of `call(thread, i)` on each of `threads` OS threads at once, each
/// thread with its own current-thread runtime; answers ops/s and every call's latency.
pub(crate) fn on_threads<F, Fut>(threads: usize, per_thread: usize, call: F) -> (f64, Vec<Duration>)
where
    F: Fn(usize, usize) -> Fut + Send + Sync,
    Fut: std::future::Future<Output = ()>,
{
    let barrier = std::sync::Barrier::new(threads + 1);
    let (latencies, elapsed) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, call) = (&barrier, &call);
                scope.spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
                    barrier.wait();
                    rt.block_on(async {
                        let mut latencies = Vec::with_capacity(per_thread);
                        for i in 0..per_thread {
                            let start = Instant::now();
                            call(t, i).await;
                            latencies.push(start.elapsed());
                        }
                        latencies
                    })
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let latencies: Vec<Duration> = handles.into_iter().flat_map(|h| h.join().expect("a caller thread")).collect();
        (latencies, start.elapsed())
    });
    (rate(threads * per_thread, elapsed), latencies)
}

/// `callers` OS threads, each adding `per_caller` messages (ids `{round}-{i}`) to its own thread
/// (`{prefix}{caller}`) through `backend`, whose writer runs on another runtime; answers ops/s
/// and every call's latency.
fn adds_on_threads(
    backend: &SqliteBackend,
    prefix: &'static str,
    callers: usize,
    per_caller: usize,
    round: usize,
) -> (f64, Vec<Duration>) {
    on_threads(callers, per_caller, |caller, i| {
        let backend = backend.clone();
        async move {
            let thread = ThreadId::new(format!("{prefix}{caller}")).unwrap();
            backend.apply(add(&thread, format!("{round}-{i}")).into()).await.expect("add");
        }
    })
}

/// Every rate of one interleaved round, and the latencies of its concurrent callers.
#[derive(Default)]
struct Rounds {
    hand: Vec<f64>,
    held: Vec<f64>,
    ours: Vec<f64>,
    threads: Vec<f64>,
    tasks: Vec<f64>,
    engine: Vec<f64>,
    groups: Vec<f64>,
    statement: Vec<f64>,
    thread_latencies: Vec<Duration>,
    task_latencies: Vec<Duration>,
}

impl Rounds {
    /// The median over rounds of `of(round)`: a ratio is taken within each round, between
    /// rates measured side by side, then the rounds' median.
    fn median_of(&self, of: impl Fn(usize) -> f64) -> f64 {
        median(&mut (0..self.ours.len()).map(of).collect::<Vec<_>>())
    }
}

/// One SQLite shape alone, for a profiler: `one` caller, or 64 callers on OS `threads` or as
/// `tasks`, `PERSIST_BENCH_N` adds in all (default 64 000), on a fresh database.
pub(crate) fn profile(variant: &str) {
    let n = crate::measure::profile_adds(64_000);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let rt = runtime(2);
    let backend = rt.block_on(SqliteBackend::open(dir.path().join("profile.db"))).expect("open");
    let (rate, mut latencies) = match variant {
        "one" => rt.block_on(as_tasks(&backend, "p-", 1, n, 0)),
        "tasks" => rt.block_on(as_tasks(&backend, "p-", 64, n / 64, 0)),
        "threads" => adds_on_threads(&backend, "p-", 64, n / 64, 0),
        other => {
            eprintln!("unknown variant `sqlite-{other}`: sqlite-one, sqlite-threads or sqlite-tasks");
            std::process::exit(2);
        }
    };
    let (p50, p99) = (percentile(&mut latencies, 50.0), percentile(&mut latencies, 99.0));
    eprintln!("sqlite-{variant}: {rate:.0} adds/s, p50 {p50:.0} µs, p99 {p99:.0} µs");
}

pub(crate) fn run(options: &Options) -> Vec<Row> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut rows = Vec::new();

    // Side by side, in interleaved rounds (the order rotating each round): one caller, ours
    // and the same transaction by hand; 64 callers on 64 OS threads and as 64 tasks; and
    // rusqlite's rate for the same rows, in 1000-row transactions, in full 64-row groups of
    // single-row inserts, and through our own group statement.
    // Every ratio is taken within a round.
    let rt = runtime(2);
    let (single, callers) = (options.scale(3000, 300), 64);
    let concurrent = options.scale_kept(12_800, 1_280);
    let rounds_wanted = options.scale(5, 3);
    let (one, many) = rt.block_on(async {
        let one = SqliteBackend::open(dir.path().join("ours.db")).await.expect("open");
        let many = SqliteBackend::open(dir.path().join("concurrent.db")).await.expect("open");
        (one, many)
    });
    let mut hand = Some(rt.block_on(HandWritten::open(&dir.path().join("hand.db"))));
    let held_path = dir.path().join("held.db");
    rt.block_on(migrated(&held_path));
    let mut held = Some(HeldRusqlite::open(&held_path));
    let engine_path = dir.path().join("rusqlite.db");
    rt.block_on(migrated(&engine_path));
    let mut engine = rusqlite_connection(&engine_path);
    let groups_path = dir.path().join("rusqlite-groups.db");
    rt.block_on(migrated(&groups_path));
    let mut groups = rusqlite_connection(&groups_path);
    let statement_path = dir.path().join("rusqlite-statement.db");
    rt.block_on(migrated(&statement_path));
    let mut rounds = Rounds::default();
    for round in 0..rounds_wanted {
        for step in 0..6 {
            match (round + step) % 6 {
                // One caller, ours and by hand in lockstep (chunks of 100 adds, the first of each
                // pair alternating), so drift on this noisy machine hits both alike. In a task on
                // the runtime's workers, where a server's handlers run (the thread inside
                // `block_on` is not a worker: every hand-off to the writer task would cross
                // threads).
                0 => {
                    let backend = one.clone();
                    let mut by_hand = hand.take().expect("the hand-written connection");
                    let mut by_rusqlite = held.take().expect("the rusqlite connection");
                    let (by_hand, held_back, ours, hand_rate, held_rate) = rt
                        .block_on(rt.spawn(async move {
                            let thread = ThreadId::new("single").unwrap();
                            let mut spent = [Duration::ZERO; 3];
                            for chunk in 0..single.div_ceil(100) {
                                let ids = chunk * 100..(chunk * 100 + 100).min(single);
                                for turn in 0..3 {
                                    let start = Instant::now();
                                    let which = (chunk + turn) % 3;
                                    for i in ids.clone() {
                                        let id = format!("{round}-{i}");
                                        match which {
                                            0 => {
                                                backend.apply(add(&thread, id).into()).await.expect("add");
                                            }
                                            1 => by_hand.add("single", &id).await,
                                            _ => by_rusqlite.add("single", &id),
                                        }
                                    }
                                    spent[which] += start.elapsed();
                                }
                            }
                            let [ours, theirs, engine] = spent.map(|spent| rate(single, spent));
                            (by_hand, by_rusqlite, ours, theirs, engine)
                        }))
                        .expect("the one-caller task");
                    hand = Some(by_hand);
                    held = Some(held_back);
                    rounds.ours.push(ours);
                    rounds.hand.push(hand_rate);
                    rounds.held.push(held_rate);
                }
                // 64 callers on 64 OS threads (each its own current-thread runtime), one backend
                // whose writer runs on the 2-worker runtime: group commit.
                1 => {
                    let (rate, latencies) = adds_on_threads(&many, "c-", callers, concurrent / callers, round);
                    rounds.threads.push(rate);
                    rounds.thread_latencies.extend(latencies);
                }
                // The same 64 callers as tasks on the 2-worker runtime (what an async server does).
                2 => {
                    let (rate, latencies) = rt.block_on(as_tasks(&many, "k-", callers, concurrent / callers, round));
                    rounds.tasks.push(rate);
                    rounds.task_latencies.extend(latencies);
                }
                3 => rounds.engine.push(rusqlite_rate(&mut engine, concurrent, callers, 1000, round)),
                4 => rounds.statement.push(rusqlite_group_rate(&statement_path, concurrent, callers, round)),
                _ => rounds.groups.push(rusqlite_rate(&mut groups, concurrent, callers, callers, round)),
            }
        }
    }
    // Reads on the database the 64 callers filled (their threads and their tasks wrote a
    // thread each, the messages arriving interleaved): the latest 50 messages of a thread, one
    // thread after another, one caller.
    let (reads, mut read_latencies) = rt.block_on(async {
        let per = options.scale(2000, 200);
        let mut latencies = Vec::with_capacity(per);
        let start = Instant::now();
        for i in 0..per {
            let prefix = if i % 2 == 0 { "c-" } else { "k-" };
            let thread = ThreadId::new(format!("{prefix}{}", (i * 37) % callers)).unwrap();
            let query = ListMessages::new(thread).with_order(Order::Desc).with_limit(50);
            let t = Instant::now();
            let page = many.list(query).await.expect("list");
            latencies.push(t.elapsed());
            assert_eq!(page.items.len(), 50, "a full page");
        }
        (rate(per, start.elapsed()), latencies)
    });

    // The ceiling the 64 OS threads themselves set: the same hand-off (a channel to one task,
    // an answer back) to a task that does no work at all.
    let (ceiling, _) = {
        let (jobs, mut queue) = tokio::sync::mpsc::channel::<tokio::sync::oneshot::Sender<()>>(4096);
        rt.spawn(async move {
            while let Some(reply) = queue.recv().await {
                let _ = reply.send(());
            }
        });
        on_threads(callers, concurrent / callers, |_, _| {
            let jobs = jobs.clone();
            async move {
                let (reply, answer) = tokio::sync::oneshot::channel();
                jobs.send(reply).await.expect("echo");
                answer.await.expect("echo");
            }
        })
    };
    drop(rt);

    let n = rounds_wanted * single;
    let m = rounds_wanted * concurrent;
    let r = &rounds;
    rows.push(Row::new(
        "sqlite: hand-written sqlx, same transaction, one caller",
        n as u64,
        median(&mut r.hand.clone()),
    ));
    rows.push(Row::new(
        "sqlite: hand-written rusqlite, same transaction, held connection, one caller",
        n as u64,
        median(&mut r.held.clone()),
    ));
    rows.push(
        Row::new("sqlite: ours, one caller, sequential adds", n as u64, median(&mut r.ours.clone()))
            .ratio(r.median_of(|i| r.ours[i] / r.hand[i]), "ops/s, ours / hand-written sqlx")
            .target(Target::RatioAtLeast(0.9)),
    );
    rows.push(
        Row::new("sqlite: ours, one caller, against rusqlite", n as u64, median(&mut r.ours.clone()))
            .ratio(r.median_of(|i| r.ours[i] / r.held[i]), "ops/s, ours / hand-written rusqlite")
            .target(Target::RatioAtLeast(0.9)),
    );
    rows.push(Row::new(
        "sqlite: rusqlite, same rows in 1000-row transactions",
        m as u64,
        median(&mut r.engine.clone()),
    ));
    rows.push(
        Row::new(
            "sqlite: rusqlite, same rows in 64-row transactions, one per thread",
            m as u64,
            median(&mut r.groups.clone()),
        )
        .ratio(r.median_of(|i| r.groups[i] / r.ours[i]), "ops/s, full groups with no framework / our one caller")
        .note("64 single-row inserts a transaction"),
    );
    rows.push(
        Row::new(
            "sqlite: rusqlite, our group statement, 64 rows (one per thread) a commit",
            m as u64,
            median(&mut r.statement.clone()),
        )
        .ratio(
            r.median_of(|i| r.statement[i] / r.ours[i]),
            "ops/s, our full groups with nothing around them / our one caller",
        )
        .note("the most our group commit of 64 callers could reach"),
    );
    let mut latencies = r.thread_latencies.clone();
    let (p50, p99) = (percentile(&mut latencies, 50.0), percentile(&mut latencies, 99.0));
    rows.push(
        // A plain figure: the one caller writes on its own thread at the engine's rate (the
        // lane), so 64 callers in groups reach about as much, not a multiple of it; what group
        // commit is measured by is the ratio to rusqlite's batched rate, below.
        Row::new("sqlite: ours, 64 callers on 64 OS threads", m as u64, median(&mut r.threads.clone()))
            .latency(p50, p99)
            .ratio(r.median_of(|i| r.threads[i] / r.ours[i]), "ops/s, 64 callers / our one caller"),
    );
    rows.push(
        Row::new("echo: 64 OS threads handing off to one task that does nothing", concurrent as u64, ceiling)
            .note("scheduling ceiling of the 64-thread harness on this machine"),
    );
    let mut latencies = r.task_latencies.clone();
    let (p50, p99) = (percentile(&mut latencies, 50.0), percentile(&mut latencies, 99.0));
    rows.push(
        Row::new("sqlite: ours, 64 callers as tasks (2 workers)", m as u64, median(&mut r.tasks.clone()))
            .latency(p50, p99)
            .ratio(r.median_of(|i| r.tasks[i] / r.ours[i]), "ops/s, 64 callers / our one caller"),
    );
    rows.push(
        Row::new("sqlite: ours, 64 callers (tasks) vs rusqlite batched", m as u64, median(&mut r.tasks.clone()))
            .ratio(
                r.median_of(|i| r.tasks[i] / r.engine[i]),
                "ops/s, ours with 64 callers / rusqlite 1000-row transactions",
            )
            .target(Target::RatioAtLeast(0.35)),
    );
    rows.push(
        Row::new("sqlite: ours, 64 callers (OS threads) vs rusqlite batched", m as u64, median(&mut r.threads.clone()))
            .ratio(
                r.median_of(|i| r.threads[i] / r.engine[i]),
                "ops/s, ours with 64 callers / rusqlite 1000-row transactions",
            )
            .target(Target::RatioAtLeast(0.35)),
    );
    let (p50, p99) = (percentile(&mut read_latencies, 50.0), percentile(&mut read_latencies, 99.0));
    rows.push(
        Row::new(
            format!(
                "sqlite: list the latest 50 messages of a thread ({} messages on {} threads, interleaved)",
                2 * m,
                2 * callers
            ),
            read_latencies.len() as u64,
            reads,
        )
        .latency(p50, p99),
    );
    let ours = median(&mut r.ours.clone());

    // Concurrency scaling: the same adds from 1, 4, 16 callers (tasks on 2 workers).
    let rt = runtime(2);
    for callers in [1usize, 4, 16] {
        let per = options.scale(2000, 200);
        let total = per * callers;
        let (measured, _) = rt.block_on(async {
            let backend = SqliteBackend::open(dir.path().join(format!("scaling-{callers}.db"))).await.expect("open");
            as_tasks(&backend, "s-", callers, per, 0).await
        });
        rows.push(
            Row::new(format!("sqlite: ours, {callers} callers as tasks"), total as u64, measured)
                .ratio(measured / ours, "ops/s, N callers / our one caller (sequential)"),
        );
    }
    drop(rt);

    // Streaming: 64 streams, each reserve + 20 partial updates + finalize.
    let streams = 64;
    let updates = 20;
    let repeat = options.scale(5, 1);
    let rt = runtime(streams);
    let (ops, elapsed, mut latencies) = rt.block_on(async {
        let backend = Arc::new(SqliteBackend::open(dir.path().join("stream.db")).await.expect("open"));
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for stream in 0..streams {
            let backend = backend.clone();
            tasks.spawn(async move {
                let thread = ThreadId::new(format!("s-{stream}")).unwrap();
                let mut latencies = Vec::new();
                for _ in 0..repeat {
                    let t = Instant::now();
                    let reserved = backend.apply(Reserve::new(thread.clone(), Role::Assistant).into()).await.unwrap();
                    latencies.push(t.elapsed());
                    let id = reserved.message().unwrap().id.clone();
                    let mut text = String::new();
                    for chunk in 0..=updates {
                        text.push_str("token ");
                        let update = UpdateContent::new(thread.clone(), id.clone(), Content::text(&text))
                            .with_finalize(chunk == updates);
                        let t = Instant::now();
                        backend.apply(update.into()).await.unwrap();
                        latencies.push(t.elapsed());
                    }
                }
                latencies
            });
        }
        let latencies: Vec<Duration> = tasks.join_all().await.into_iter().flatten().collect();
        (latencies.len(), start.elapsed(), latencies)
    });
    let (p50, p99) = (percentile(&mut latencies, 50.0), percentile(&mut latencies, 99.0));
    rows.push(
        // Plain figures: the streams' ratio to the final-only add is the `streams` group's row.
        Row::new("sqlite: 64 streams, reserve + 20 updates + finalize", ops as u64, rate(ops, elapsed))
            .latency(p50, p99),
    );
    rows
}
