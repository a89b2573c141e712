//! What `docs/scaling.md` quotes: one PostgreSQL primary at 1, 64 and 512 callers (writes/s
//! and reads/s), tenants on two shards (two databases of the same server) against one database,
//! and the bytes of every table and index per message, for its plan.

use std::time::{Duration, Instant};

use persist::args::Add;
use persist::postgres::PostgresBackend;
use persist::shard::Shards;
use persist::{Backend, Content, Context, Pipeline, Role, TenantId, ThreadId};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::Options;
use crate::measure::{median, percentile, rate};
use crate::postgres::url;
use crate::report::Row;
use crate::workload::{TEXT, as_tasks, latest_50};

const DATABASES: [&str; 2] = ["persist_bench_shard_1", "persist_bench_shard_2"];

/// The server's URL naming `database` instead.
fn database_url(database: &str) -> String {
    let url = url();
    let (base, query) = url.split_once('?').map_or((url.as_str(), None), |(base, query)| (base, Some(query)));
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    query.map_or_else(|| format!("{server}/{database}"), |query| format!("{server}/{database}?{query}"))
}

/// `callers` tasks, each adding `per_caller` messages as tenant `t{caller}` through `pipeline`:
/// ops/s and the latencies.
async fn tenants_adding(pipeline: &Pipeline, callers: usize, per_caller: usize, round: usize) -> (f64, Vec<Duration>) {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..callers {
        let pipeline = pipeline.clone();
        tasks.spawn(async move {
            let ctx = Context::new().with_tenant(TenantId::new(format!("t{caller}")).unwrap());
            let thread = ThreadId::new(format!("round-{round}")).unwrap();
            let mut took = Vec::with_capacity(per_caller);
            for _ in 0..per_caller {
                let at = Instant::now();
                let add = Add::new(thread.clone(), Role::User, Content::text(TEXT)).with_context(ctx.clone());
                pipeline.add(add).await.expect("add");
                took.push(at.elapsed());
            }
            took
        });
    }
    let took: Vec<Duration> = tasks.join_all().await.into_iter().flatten().collect();
    (rate(callers * per_caller, start.elapsed()), took)
}

async fn make_databases(admin: &mut PgConnection) {
    for database in DATABASES {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(database)
            .fetch_one(&mut *admin)
            .await
            .expect("pg_database");
        if !exists {
            let create = format!("CREATE DATABASE \"{database}\"");
            sqlx::raw_sql(AssertSqlSafe(create)).execute(&mut *admin).await.expect("create database");
        }
    }
}

async fn drop_schema(url: &str, schema: &str) {
    if let Ok(mut conn) = PgConnection::connect(url).await {
        crate::postgres::drop_schema(&mut conn, schema).await;
        let _ = conn.close().await;
    }
}

pub(crate) fn run(options: &Options) -> Vec<Row> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    rt.block_on(async {
        let Ok(mut admin) = PgConnection::connect(&url()).await else {
            return vec![Row::skipped("scaling (PostgreSQL)", format!("skipped: no server at {}", url()))];
        };
        make_databases(&mut admin).await;
        let schema = format!("persist_bench_scaling_{}", std::process::id());
        let connect = |url: String, schema: String, connections: u32| {
            PostgresBackend::builder(url).schema(schema).max_connections(connections).connect()
        };
        let one = connect(url(), schema.clone(), 32).await.expect("connect");
        let mut rows = Vec::new();

        // One primary: adds at 1, 64 and 512 callers, each its own thread.
        for (callers, total) in
            [(1, options.scale(2_000, 200)), (64, options.scale(12_800, 1_280)), (512, options.scale(25_600, 2_560))]
        {
            let (ops, mut took) = as_tasks(&one, "w", callers, total / callers, callers).await;
            rows.push(
                Row::new(
                    format!("scaling, postgres: one primary, {callers} callers adding (pool of 32)"),
                    total as u64,
                    ops,
                )
                .latency(percentile(&mut took, 50.0), percentile(&mut took, 99.0)),
            );
        }
        // Reads: 64 threads of 100 messages; 64 and 512 callers reading the latest 50.
        let threads = 64;
        let seeding: Vec<_> = (0..threads)
            .map(|t| {
                let one = one.clone();
                async move {
                    let thread = ThreadId::new(format!("read-{t}")).unwrap();
                    for k in 0..100 {
                        one.apply(crate::workload::add(&thread, format!("m{k}")).into()).await.expect("add");
                    }
                }
            })
            .collect();
        for seed in seeding {
            seed.await;
        }
        for (callers, total) in [(64, options.scale(12_800, 1_280)), (512, options.scale(25_600, 2_560))] {
            let reads = latest_50(&Pipeline::new(one.clone()), "read-", threads, callers, total / callers).await;
            rows.push(Row::new(
                format!("scaling, postgres: one primary, {callers} callers reading the latest 50"),
                total as u64,
                reads,
            ));
        }

        // Tenants on two shards (two databases of this server, 16 connections each) against one
        // database (32 connections): the same tenants adding, interleaved rounds.
        let mut stores = Vec::new();
        for database in DATABASES {
            stores.push(Pipeline::new(connect(database_url(database), schema.clone(), 16).await.expect("connect")));
        }
        let directory = connect(url(), format!("{schema}_d"), 4).await.expect("connect");
        let shards = Shards::builder(Pipeline::new(directory.clone()))
            .shard("one", stores[0].clone())
            .shard("two", stores[1].clone())
            .build()
            .expect("shards");
        let (sharded, single) = (Pipeline::new(shards), Pipeline::new(one.clone()));
        let rounds = options.scale(3, 1);
        for (callers, total) in [(64, options.scale(6_400, 640)), (512, options.scale(12_800, 1_280))] {
            let (mut with, mut without, mut ratios, mut took) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for round in 0..rounds {
                let (a, _) = tenants_adding(&single, callers, total / callers, round).await;
                let (b, latencies) = tenants_adding(&sharded, callers, total / callers, round).await;
                with.push(b);
                without.push(a);
                ratios.push(b / a);
                took = latencies;
            }
            rows.push(
                Row::new(
                    format!("scaling, postgres: {callers} tenants adding, on two shards (one server)"),
                    (total * rounds) as u64,
                    median(&mut with),
                )
                .latency(percentile(&mut took, 50.0), percentile(&mut took, 99.0))
                .ratio(median(&mut ratios), "ops/s, two shards / one database (same server, same connections)")
                .note(format!("one database: {:.0} ops/s", median(&mut without))),
            );
        }

        // Where the bytes are: every table and index of the one-database schema, per message.
        let messages: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM \"{schema}\".messages")))
            .fetch_one(&mut admin)
            .await
            .expect("count");
        let _ = sqlx::query("CHECKPOINT").execute(&mut admin).await;
        let sizes: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT c.relname::text, c.relkind::text, pg_relation_size(c.oid) FROM pg_class c \
               JOIN pg_namespace n ON n.oid = c.relnamespace \
              WHERE n.nspname = $1 AND c.relkind IN ('r', 'i', 't') ORDER BY 3 DESC",
        )
        .bind(&schema)
        .fetch_all(&mut admin)
        .await
        .expect("sizes");
        let per = |bytes: i64| bytes as f64 / messages.max(1) as f64;
        let total: i64 = sizes.iter().map(|(_, _, bytes)| bytes).sum();
        let detail = sizes
            .iter()
            .filter(|(_, _, bytes)| per(*bytes) >= 1.0)
            .map(|(name, kind, bytes)| {
                format!("{name}{} {:.0}", if kind == "i" { " (index)" } else { "" }, per(*bytes))
            })
            .collect::<Vec<_>>()
            .join(", ");
        rows.push(
            Row::new(
                format!("scaling, postgres: bytes per message, every relation ({messages} messages)"),
                messages as u64,
                0.0,
            )
            .ratio(per(total), "bytes per message, all relations (no vacuum)")
            .note(detail),
        );

        for backend in [&one, &directory] {
            backend.close().await;
        }
        drop(sharded);
        drop_schema(&url(), &schema).await;
        drop_schema(&url(), &format!("{schema}_d")).await;
        for database in DATABASES {
            drop_schema(&database_url(database), &schema).await;
        }
        rows
    })
}
