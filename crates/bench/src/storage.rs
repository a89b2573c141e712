//! Bytes per message on disk: 100,000 messages of about 300 bytes of text (100 threads written
//! interleaved, as messages arrive; ids generated, the feed on with its default retention),
//! written through the backend; SQLite's file and log after a checkpoint, PostgreSQL's
//! `pg_total_relation_size` of every table of the store's schema (indexes and TOAST included)
//! once every event of the feed has its position.
//! Both without their full-text search index (the targets' store: what a message costs to
//! keep); SQLite once more as opened by default, with it (what search adds, a plain figure).
//! `PERSIST_BENCH_KEEP=PATH` keeps a copy of the SQLite file (the default one) there, to see where
//! its bytes go (`sqlite3 PATH "SELECT name, sum(pgsize) FROM dbstat GROUP BY name"`).

use std::time::Instant;

use persist::args::Add;
use persist::feed::ReadFeed;
use persist::{Backend, Content, Role, ThreadId};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::Options;
use crate::report::{Row, Target};
use crate::workload::TEXT;

const THREADS: usize = 100;

/// Writes `per_thread` messages to each of `THREADS` threads, a task per thread.
async fn write<B: Backend + Clone>(backend: &B, per_thread: usize) -> f64 {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..THREADS {
        let backend = backend.clone();
        tasks.spawn(async move {
            let thread = ThreadId::new(format!("conversation-{t}")).unwrap();
            let text = format!("{TEXT} {TEXT} {TEXT}");
            for _ in 0..per_thread {
                let add = Add::new(thread.clone(), Role::User, Content::text(&text));
                backend.apply(add.into()).await.expect("add");
            }
        });
    }
    tasks.join_all().await;
    (THREADS * per_thread) as f64 / start.elapsed().as_secs_f64()
}

fn row(store: &str, messages: usize, rate: f64, bytes: u64, target: Option<f64>, detail: String) -> Row {
    let per_message = bytes as f64 / messages as f64;
    let row =
        Row::new(format!("storage: bytes per message on disk ({store}, {messages} × 300 B)"), messages as u64, rate)
            .ratio(per_message, "bytes on disk per message (what a store holds, all told)")
            .note(detail);
    match target {
        Some(target) => row.target(Target::RatioAtMost(target)),
        None => row,
    }
}

/// Writes the dataset to a new SQLite file, with or without its search index; answers the
/// write rate and the bytes of the file and its log once closed.
async fn sqlite(per_thread: usize, search: bool) -> (f64, u64, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("storage.db");
    let sqlite = persist::sqlite::SqliteBackend::builder(&path).search_index(search).open().await.expect("open");
    let rate = write(&sqlite, per_thread).await;
    sqlite.close().await;
    let size = |name: &str| std::fs::metadata(dir.path().join(name)).map_or(0, |m| m.len());
    let (file, log) = (size("storage.db"), size("storage.db-wal"));
    if search && let Ok(keep) = std::env::var("PERSIST_BENCH_KEEP") {
        std::fs::copy(&path, &keep).expect("keeping the file");
        let _ = std::fs::copy(dir.path().join("storage.db-wal"), format!("{keep}-wal"));
    }
    (rate, file + log, format!("file {file} B, log {log} B"))
}

pub(crate) fn run(options: &Options) -> Vec<Row> {
    let per_thread = options.scale(1000, 100);
    let messages = THREADS * per_thread;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    rt.block_on(async {
        let (rate, bytes, detail) = sqlite(per_thread, false).await;
        let mut rows = vec![row("SQLite, no search index", messages, rate, bytes, Some(450.0), detail)];
        let (rate, with_search, detail) = sqlite(per_thread, true).await;
        let added = (with_search as f64 - bytes as f64) / messages as f64;
        let detail = format!("{detail}; the search index adds {added:.0} B a message");
        rows.push(row(
            "SQLite, as opened by default: with its search index",
            messages,
            rate,
            with_search,
            None,
            detail,
        ));

        let url = crate::postgres::url();
        let Ok(mut admin) = PgConnection::connect(&url).await else {
            rows.push(Row::skipped("storage (PostgreSQL)", format!("skipped: no server at {url}")));
            return rows;
        };
        let schema = format!("persist_bench_storage_{}", std::process::id());
        let postgres = persist::postgres::PostgresBackend::builder(url)
            .schema(schema.clone())
            .max_connections(8)
            .search_index(false)
            .connect()
            .await
            .expect("connect");
        let rate = write(&postgres, per_thread).await;
        // Every event numbered, as a store's are within seconds of its writes (a pass numbers
        // at most 10,000, and giving an event its number writes a new version of its row): the
        // figure does not hang on how far the sequencer got when the writes ended.
        for _ in 0..=messages / 10_000 {
            let feed = postgres.read_feed(ReadFeed::across_tenants().with_limit(1)).await.expect("read the feed");
            if feed.head >= messages as u64 {
                break;
            }
        }
        postgres.close().await;
        let _ = sqlx::query("CHECKPOINT").execute(&mut admin).await;
        let sizes: Vec<(String, i64)> = sqlx::query_as(
            "SELECT c.relname::text, pg_total_relation_size(c.oid) FROM pg_class c \
               JOIN pg_namespace n ON n.oid = c.relnamespace \
              WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY 2 DESC",
        )
        .bind(&schema)
        .fetch_all(&mut admin)
        .await
        .expect("table sizes");
        let total: i64 = sizes.iter().map(|(_, bytes)| bytes).sum();
        let detail = sizes
            .iter()
            .filter(|(_, bytes)| *bytes > 65_536)
            .map(|(table, bytes)| format!("{table} {:.0} B/message", *bytes as f64 / messages as f64))
            .collect::<Vec<_>>()
            .join(", ");
        rows.push(row(
            "PostgreSQL, no search index",
            messages,
            rate,
            u64::try_from(total).unwrap_or(0),
            Some(600.0),
            detail,
        ));
        let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        let _ = sqlx::query(AssertSqlSafe(drop)).execute(&mut admin).await;
        rows
    })
}
