//! PostgreSQL with a hot standby (`.ci/replica`): what reading each write's commit position
//! costs, and reads answered by the standby against the primary's, side by side in interleaved
//! rounds. Both servers share this machine's cores, so the standby adds no capacity here: the
//! rows measure what the routing costs, not what a standby on its own machine gives.

use std::time::{Duration, Instant};

use persist::postgres::{Freshness, PostgresBackend};
use persist::read::ListMessages;
use persist::{Backend, Context, Order, Pipeline, ThreadId};
use sqlx::{Connection, PgConnection};

use crate::Options;
use crate::measure::{median, percentile, rate};
use crate::postgres::url;
use crate::report::Row;
use crate::workload::{add, as_tasks, latest_50};

fn replica_url() -> String {
    std::env::var("PERSIST_POSTGRES_REPLICA_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5433/test".to_owned())
}

/// One caller adding to a thread and reading it back, `n` times, through `pipeline` (its
/// handle's reads must see its writes): the median time of one add and its read, in µs.
async fn write_then_read(pipeline: &Pipeline, thread: &str, n: usize) -> f64 {
    let thread = ThreadId::new(thread).unwrap();
    let scoped = pipeline.scoped(Context::new());
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        scoped.add(add(&thread, format!("w{i}"))).await.expect("add");
        let page = scoped.list(ListMessages::new(thread.clone()).with_order(Order::Desc).with_limit(1)).await;
        assert_eq!(page.expect("list").items[0].id.as_str(), format!("w{i}"));
        took.push(start.elapsed());
    }
    percentile(&mut took, 50.0)
}

pub(crate) fn run(options: &Options) -> Vec<Row> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    rt.block_on(async {
        let Ok(mut admin) = PgConnection::connect(&url()).await else {
            return vec![Row::skipped("postgres + standby", format!("skipped: no server at {}", url()))];
        };
        if PgConnection::connect(&replica_url()).await.is_err() {
            let why = format!("skipped: no standby at {} (.ci/replica makes one)", replica_url());
            return vec![Row::skipped("postgres + standby", why)];
        }
        let schema = format!("persist_bench_replica_{}", std::process::id());
        let connect = |standby: bool, freshness: Freshness| {
            let builder = PostgresBackend::builder(url()).schema(schema.clone()).max_connections(32);
            let builder = if standby { builder.replica(replica_url()).freshness(freshness) } else { builder };
            builder.connect()
        };
        let primary = connect(false, Freshness::Handle).await.expect("connect");
        let standby = connect(true, Freshness::Handle).await.expect("connect");
        // Reads that ask for no write: the standby as it is.
        let standby_reads = connect(true, Freshness::Request).await.expect("connect");

        let n = options.scale(2000, 200);
        let callers = 64;
        let concurrent = options.scale(6_400, 640);
        let rounds = options.scale(5, 3);
        let (mut one, mut many) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
        for round in 0..rounds {
            let order = if round % 2 == 0 { [&primary, &standby] } else { [&standby, &primary] };
            for backend in order {
                let with = std::ptr::eq(backend, &standby);
                // A fresh thread per round and handle: a long thread slows its adds (both alike).
                let thread = ThreadId::new(format!("single-{with}-{round}")).unwrap();
                let start = Instant::now();
                for k in 0..n {
                    backend.apply(add(&thread, format!("{round}-{k}")).into()).await.expect("add");
                }
                let single = rate(n, start.elapsed());
                let prefix = if with { "with-" } else { "without-" };
                let (group, _) = as_tasks(backend, prefix, callers, concurrent / callers, round).await;
                if with {
                    one.1.push(single);
                    many.1.push(group);
                } else {
                    one.0.push(single);
                    many.0.push(group);
                }
            }
        }
        let ratio = |(without, with): &(Vec<f64>, Vec<f64>)| {
            median(&mut with.iter().zip(without).map(|(a, b)| a / b).collect::<Vec<_>>())
        };
        let (one_ratio, many_ratio) = (ratio(&one), ratio(&many));

        // Reads: 16 threads of 200 messages, 64 callers reading the latest 50.
        let threads = 16;
        for t in 0..threads {
            let thread = ThreadId::new(format!("r-{t}")).unwrap();
            for k in 0..200 {
                primary.apply(add(&thread, format!("m{k}")).into()).await.expect("add");
            }
        }
        let per_caller = options.scale(100, 10);
        let (primary_pipeline, standby_pipeline) = (Pipeline::new(primary.clone()), Pipeline::new(standby_reads.clone()));
        // Caught up before the reads are timed.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (mut from_primary, mut from_standby) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            for step in 0..2 {
                if (round + step) % 2 == 0 {
                    from_primary.push(latest_50(&primary_pipeline, "r-", threads, callers, per_caller).await);
                } else {
                    from_standby.push(latest_50(&standby_pipeline, "r-", threads, callers, per_caller).await);
                }
            }
        }
        let read_ratio = median(&mut from_standby.iter().zip(&from_primary).map(|(a, b)| a / b).collect::<Vec<_>>());

        // Read-your-writes: add, then read it back, one caller.
        let pairs = options.scale(500, 50);
        let plain = write_then_read(&Pipeline::new(primary.clone()), "rw-primary", pairs).await;
        let routed = write_then_read(&Pipeline::new(standby.clone()), "rw-standby", pairs).await;
        let stats = standby.replica_stats();

        for backend in [&primary, &standby, &standby_reads] {
            backend.close().await;
        }
        crate::postgres::drop_schema(&mut admin, &schema).await;
        vec![
            Row::new("postgres + standby: one caller, sequential adds (each reads its commit position)", (n * rounds) as u64, median(&mut one.1))
                .ratio(one_ratio, "ops/s, with a standby / without"),
            Row::new("postgres + standby: 64 callers adding (positions read once per group)", (rounds * concurrent) as u64, median(&mut many.1))
                .ratio(many_ratio, "ops/s, with a standby / without"),
            Row::new(
                "postgres + standby: 64 callers reading the latest 50 (same machine: no capacity added)",
                (rounds * callers * per_caller) as u64,
                median(&mut from_standby),
            )
            .ratio(read_ratio, "reads/s, from the standby / from the primary"),
            Row::new("postgres + standby: add, then read it back through one handle", pairs as u64, 1e6 / routed.max(1.0))
                .ratio(plain / routed.max(1.0), "pairs/s, through the standby / the primary alone")
                .note(format!(
                    "p50 {routed:.0} µs vs {plain:.0} µs; reads answered by the standby at once {}, after waiting {}, by the primary {}",
                    stats.replica,
                    stats.waited,
                    stats.lagging + stats.down
                )),
        ]
    })
}
