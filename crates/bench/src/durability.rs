//! SQLite at `Durability::Full` (`synchronous=FULL`: an acknowledged add survives a power loss)
//! against the same transaction hand-written with rusqlite at `synchronous=FULL` on a held
//! connection: one caller, with the search index on (as a store opens by default) and off; and
//! 64 callers at once, which group commit serves with one sync of the log a group.

use std::path::Path;
use std::time::{Duration, Instant};

use persist::sqlite::{Durability, SqliteBackend};
use persist::{Backend, ThreadId};

use crate::Options;
use crate::measure::{median, p50_p99, rate};
use crate::report::{Row, Target};
use crate::sqlite::HeldConnection;
use crate::workload::{add, as_tasks};

/// Opens (and creates) a store at `Durability::Full`, its search index on or off.
async fn open(path: &Path, search: bool) -> SqliteBackend {
    SqliteBackend::builder(path).durability(Durability::Full).search_index(search).open().await.expect("open")
}

/// One caller's adds at `Durability::Full`, side by side with rusqlite at `synchronous=FULL`
/// on a file with the same schema and search setting: rates of both, ours' latencies.
struct OneCaller {
    ours: Vec<f64>,
    theirs: Vec<f64>,
    latencies: Vec<Duration>,
}

fn one_caller(rt: &tokio::runtime::Runtime, dir: &Path, search: bool, rounds: usize, per_round: usize) -> OneCaller {
    let name = if search { "search" } else { "plain" };
    let ours = rt.block_on(open(&dir.join(format!("full-ours-{name}.db")), search));
    let theirs_path = dir.join(format!("full-rusqlite-{name}.db"));
    rt.block_on(async { open(&theirs_path, search).await.close().await });
    let mut held = Some(HeldConnection::open_with(&theirs_path, "FULL"));
    let mut result = OneCaller { ours: Vec::new(), theirs: Vec::new(), latencies: Vec::new() };
    for round in 0..rounds {
        let backend = ours.clone();
        let mut by_rusqlite = held.take().expect("the rusqlite connection");
        // In a task on the runtime's workers, where a server's handlers run; chunks of 50 adds,
        // the first of each pair alternating, so the machine's drift hits both alike.
        let (back, spent, latencies) = rt
            .block_on(rt.spawn(async move {
                let thread = ThreadId::new("single").expect("a thread id");
                let mut spent = [Duration::ZERO; 2];
                let mut latencies = Vec::with_capacity(per_round);
                for chunk in 0..per_round.div_ceil(50) {
                    let ids = chunk * 50..(chunk * 50 + 50).min(per_round);
                    for turn in 0..2 {
                        let which = (chunk + turn) % 2;
                        let start = Instant::now();
                        for i in ids.clone() {
                            let id = format!("{round}-{i}");
                            if which == 0 {
                                let at = Instant::now();
                                backend.apply(add(&thread, id).into()).await.expect("add");
                                latencies.push(at.elapsed());
                            } else {
                                by_rusqlite.add("single", &id);
                            }
                        }
                        spent[which] += start.elapsed();
                    }
                }
                (by_rusqlite, spent, latencies)
            }))
            .expect("the one-caller task");
        held = Some(back);
        result.ours.push(rate(per_round, spent[0]));
        result.theirs.push(rate(per_round, spent[1]));
        result.latencies.extend(latencies);
    }
    rt.block_on(ours.close());
    result
}

/// One caller at `synchronous=FULL` alone, for a profiler or `strace`: `ours-search`,
/// `ours-plain`, `rusqlite-search` or `rusqlite-plain` (the search index on or off),
/// `PERSIST_BENCH_N` adds (default 2000) on a fresh file.
pub(crate) fn profile(variant: &str) {
    let n = crate::measure::profile_adds(2000);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("profile.db");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    let Some((who, search)) = variant.split_once('-').and_then(|(who, index)| match index {
        "search" => Some((who, true)),
        "plain" => Some((who, false)),
        _ => None,
    }) else {
        eprintln!(
            "unknown variant `full-{variant}`: full-ours-search, full-ours-plain, full-rusqlite-search or full-rusqlite-plain"
        );
        std::process::exit(2);
    };
    let start = Instant::now();
    match who {
        "ours" => rt.block_on(async {
            let backend = open(&path, search).await;
            let thread = ThreadId::new("single").expect("a thread id");
            let adds = tokio::spawn(async move {
                for i in 0..n {
                    backend.apply(add(&thread, format!("p-{i}")).into()).await.expect("add");
                }
                backend.close().await;
            });
            adds.await.expect("the adds");
        }),
        "rusqlite" => {
            rt.block_on(async { open(&path, search).await.close().await });
            let mut held = HeldConnection::open_with(&path, "FULL");
            for i in 0..n {
                held.add("single", &format!("p-{i}"));
            }
        }
        _ => {
            eprintln!("unknown variant `full-{variant}`");
            std::process::exit(2);
        }
    }
    eprintln!("full-{variant}: {:.0} adds/s", rate(n, start.elapsed()));
}

pub(crate) fn run(options: &Options) -> Vec<Row> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    let (rounds, per_round) = (options.scale(5, 2), options.scale(1000, 100));
    let mut rows = Vec::new();
    let mut one_callers = Vec::new();
    for search in [true, false] {
        let index = if search { "search index on (the default)" } else { "search index off" };
        let mut r = one_caller(&rt, dir.path(), search, rounds, per_round);
        let ratios: Vec<f64> = r.ours.iter().zip(&r.theirs).map(|(ours, theirs)| ours / theirs).collect();
        let n = (rounds * per_round) as u64;
        let (p50, p99) = p50_p99(&mut r.latencies);
        let ours = median(&mut r.ours);
        rows.push(Row::new(
            format!("durability, sqlite: rusqlite at synchronous=FULL, same transaction, held connection, {index}"),
            n,
            median(&mut r.theirs),
        ));
        rows.push(
            Row::new(format!("durability, sqlite: ours at Durability::Full, one caller, {index}"), n, ours)
                .latency(p50, p99)
                .ratio(median(&mut ratios.clone()), "ops/s, ours / hand-written rusqlite, both FULL")
                .target(Target::RatioAtLeast(0.9)),
        );
        one_callers.push(ours);
    }

    // 64 callers at once: each group's commit is one sync of the log for all its adds, and
    // each add is acknowledged only after that sync.
    let per_caller = options.scale(100, 10);
    let backend = rt.block_on(open(&dir.path().join("full-many.db"), true));
    let mut rates = Vec::new();
    let mut latencies = Vec::new();
    for round in 0..rounds {
        let (rate, mut took) = rt.block_on(as_tasks(&backend, "m-", 64, per_caller, round));
        rates.push(rate);
        latencies.append(&mut took);
    }
    rt.block_on(backend.close());
    let (p50, p99) = p50_p99(&mut latencies);
    let many = median(&mut rates);
    rows.push(
        Row::new(
            "durability, sqlite: ours at Durability::Full, 64 callers as tasks",
            (rounds * per_caller * 64) as u64,
            many,
        )
        .latency(p50, p99)
        .ratio(many / one_callers[0], "ops/s, 64 callers / one caller (group commit)"),
    );
    rows
}
