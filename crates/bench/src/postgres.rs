//! PostgreSQL: our backend against the same statement hand-written with sqlx, and 64
//! concurrent callers against one.

use std::time::Instant;

use persist::postgres::PostgresBackend;
use persist::{Backend, Content, ThreadId, Timestamp};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::Options;
use crate::measure::{median, percentile, rate};
use crate::report::{Row, Target};
use crate::workload::{TEXT, add, as_tasks};

pub(crate) fn url() -> String {
    std::env::var("PERSIST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The rows of `$measure` (an async expression of `$backend` and `$store`, its name) on a fresh
/// SQLite file, then on a fresh PostgreSQL schema named after `$group` (dropped afterwards; the
/// PostgreSQL rows are reported skipped without a server), on a runtime of two workers.
macro_rules! on_sqlite_and_postgres {
    ($group:literal, |$backend:ident, $store:ident| $measure:expr) => {{
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
        rt.block_on(async {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let sqlite =
                persist::sqlite::SqliteBackend::open(dir.path().join(concat!($group, ".db"))).await.expect("open");
            let mut rows = {
                let ($backend, $store) = (&sqlite, "SQLite");
                $measure.await
            };
            sqlite.close().await;
            let url = crate::postgres::url();
            let Ok(mut admin) = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await else {
                rows.push(crate::report::Row::skipped(
                    concat!($group, " (PostgreSQL)"),
                    format!("skipped: no server at {url}"),
                ));
                return rows;
            };
            let schema = format!(concat!("persist_bench_", $group, "_{}"), std::process::id());
            let postgres = persist::postgres::PostgresBackend::builder(url)
                .schema(schema.clone())
                .max_connections(4)
                .connect()
                .await
                .expect("connect");
            rows.extend({
                let ($backend, $store) = (&postgres, "PostgreSQL");
                $measure.await
            });
            postgres.close().await;
            let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&mut admin).await;
            rows
        })
    }};
}
pub(crate) use on_sqlite_and_postgres;

/// The statement our backend runs for one add, by hand on a held connection.
async fn hand_written_add(conn: &mut PgConnection, thread: &str, id: &str) {
    let content = Content::text(TEXT).as_json().into_owned();
    sqlx::query(
        "WITH t AS ( \
            INSERT INTO threads AS th (tenant, thread_id, created_at, updated_at, last_seq, message_count) \
            VALUES ($9, $1, $8, $8, 1, 1) \
            ON CONFLICT (tenant, thread_id) DO UPDATE \
               SET last_seq = th.last_seq + 1, message_count = th.message_count + 1, updated_at = EXCLUDED.updated_at \
             WHERE th.deleted_at IS NULL \
               AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.tenant = $9 AND m.thread_id = $1 \
                                                          AND m.message_id = $2) \
               AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.tenant = $9 AND m.thread_id = $1 \
                                                          AND m.idempotency_key = $7) \
            RETURNING th.last_seq), \
         m AS ( \
            INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, \
                                  idempotency_key, created_at, updated_at) \
            SELECT $9, $1, $2, t.last_seq, $3, $4::jsonb, $5::jsonb, $6, 1, $7, $8, $8 FROM t \
            RETURNING *) \
         SELECT thread_id, message_id, seq, role, content::text AS content, metadata::text AS metadata, status, \
                version, idempotency_key, created_at, updated_at FROM m",
    )
    .bind(thread)
    .bind(id)
    .bind("user")
    .bind(&content)
    .bind("{}")
    .bind("complete")
    .bind(None::<&str>)
    .bind(Timestamp::now().as_micros())
    .bind("")
    .fetch_optional(&mut *conn)
    .await
    .expect("hand-written add");
}

/// Our backend on 32 connections in this run's own schema (`persist_bench_<pid>`).
async fn bench_backend() -> (PostgresBackend, String) {
    let schema = format!("persist_bench_{}", std::process::id());
    let backend =
        PostgresBackend::builder(url()).schema(schema.clone()).max_connections(32).connect().await.expect("connect");
    (backend, schema)
}

pub(crate) async fn drop_schema(admin: &mut PgConnection, schema: &str) {
    let _ = sqlx::query(AssertSqlSafe(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))).execute(admin).await;
}

/// One PostgreSQL shape alone, for a profiler: `one` caller or 64 `tasks` on 32 connections,
/// `PERSIST_BENCH_N` adds in all (default 20 000), in a fresh schema dropped afterwards.
pub(crate) fn profile(variant: &str) {
    let n = crate::measure::profile_adds(20_000);
    let callers = match variant {
        "one" => 1,
        "tasks" => 64,
        other => {
            eprintln!("unknown variant `postgres-{other}`: postgres-one or postgres-tasks");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    rt.block_on(async {
        let (backend, schema) = bench_backend().await;
        let (rate, mut latencies) = as_tasks(&backend, "p-", callers, n / callers, 0).await;
        let (p50, p99) = (percentile(&mut latencies, 50.0), percentile(&mut latencies, 99.0));
        eprintln!("postgres-{variant}: {rate:.0} adds/s, p50 {p50:.0} µs, p99 {p99:.0} µs");
        backend.close().await;
        let mut admin = PgConnection::connect(&url()).await.expect("connect");
        drop_schema(&mut admin, &schema).await;
    });
}

pub(crate) fn run(options: &Options) -> Vec<Row> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    rt.block_on(async {
        let Ok(mut admin) = PgConnection::connect(&url()).await else {
            return vec![Row::skipped("postgres", format!("skipped: no server at {} (PERSIST_POSTGRES_URL)", url()))];
        };
        let (backend, schema) = bench_backend().await;
        // The same session settings our backend's connections use.
        let options_url = format!("{}?options=-csearch_path%3D{schema}%20-cplan_cache_mode%3Dforce_custom_plan", url());
        let mut conn = PgConnection::connect(&options_url).await.expect("connect by hand");

        // Side by side, in interleaved rounds (the order rotating each round): one caller by
        // hand and ours, and 64 callers as tasks; every ratio is taken within a round.
        let n = options.scale(3000, 300);
        let callers = 64;
        let concurrent = options.scale(6_400, 640);
        let rounds = options.scale(5, 3);
        let thread = ThreadId::new("single").unwrap();
        let (mut ours, mut by_hand, mut many) = (Vec::new(), Vec::new(), Vec::new());
        let mut latencies = Vec::new();
        for round in 0..rounds {
            for step in 0..3 {
                match (round + step) % 3 {
                    0 => {
                        let start = Instant::now();
                        for i in 0..n {
                            hand_written_add(&mut conn, "hand", &format!("h{round}-{i}")).await;
                        }
                        by_hand.push(rate(n, start.elapsed()));
                    }
                    1 => {
                        let start = Instant::now();
                        for i in 0..n {
                            backend.apply(add(&thread, format!("o{round}-{i}")).into()).await.expect("add");
                        }
                        ours.push(rate(n, start.elapsed()));
                    }
                    _ => {
                        let (rate, measured) = as_tasks(&backend, "c-", callers, concurrent / callers, round).await;
                        latencies.extend(measured);
                        many.push(rate);
                    }
                }
            }
        }
        let ratio = |of: &[f64], to: &[f64]| median(&mut of.iter().zip(to).map(|(a, b)| a / b).collect::<Vec<_>>());
        let (ours_vs_hand, many_vs_one) = (ratio(&ours, &by_hand), ratio(&many, &ours));
        let (p50, p99) = (percentile(&mut latencies, 50.0), percentile(&mut latencies, 99.0));
        let total = rounds * concurrent;
        let replies = options.scale(3, 1);
        let streamed = streams(&backend, replies).await;

        backend.close().await;
        let _ = conn.close().await;
        drop_schema(&mut admin, &schema).await;
        vec![
            Row::new(
                "postgres: hand-written sqlx, same statement, one caller",
                (n * rounds) as u64,
                median(&mut by_hand),
            ),
            Row::new("postgres: ours, one caller, sequential adds", (n * rounds) as u64, median(&mut ours))
                .ratio(ours_vs_hand, "ops/s, ours / hand-written sqlx")
                .target(Target::RatioAtLeast(0.9)),
            Row::new(
                "postgres: ours, 64 callers as tasks (2 workers, 32 connections)",
                total as u64,
                median(&mut many),
            )
            .latency(p50, p99)
            .ratio(many_vs_one, "ops/s, 64 callers / our one caller")
            .target(Target::RatioAtLeast(3.0)),
            Row::new(
                "postgres: 64 streams, reserve + 20 partial updates + final (replies/s; content updates grouped)",
                (64 * replies) as u64,
                streamed,
            ),
        ]
    })
}

/// 64 streams at once, each writing `replies` replies as reserve, 20 partial content updates
/// and a final one, straight to the backend; answers replies/s (the baseline of grouping
/// content updates as inserts are).
pub(crate) async fn streams(backend: &PostgresBackend, replies: usize) -> f64 {
    use persist::Role;
    use persist::args::{Reserve, UpdateContent};
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for stream in 0..64 {
        let backend = backend.clone();
        tasks.spawn(async move {
            let thread = ThreadId::new(format!("stream-{stream}")).unwrap();
            for _ in 0..replies {
                let reserved =
                    backend.apply(Reserve::new(thread.clone(), Role::Assistant).into()).await.expect("reserve");
                let id = reserved.message().expect("a message").id.clone();
                let mut text = String::new();
                for update in 0..=20 {
                    text.push_str("token ");
                    let partial = UpdateContent::new(thread.clone(), id.clone(), Content::text(&text))
                        .with_finalize(update == 20);
                    backend.apply(partial.into()).await.expect("update");
                }
            }
        });
    }
    tasks.join_all().await;
    rate(64 * replies, start.elapsed())
}
