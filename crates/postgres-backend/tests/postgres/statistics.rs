//! A young store's first statistics: a handle that wrote its first thousand messages analyzes
//! the tables once, so the planner stops serving "is this id free in its thread?" by reading
//! the whole thread (what it does with a new table's missing statistics).

use persist::args::Add;
use persist::postgres::PostgresBackend;
use persist::{Backend, Content, Role, ThreadId};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_young_store_is_analyzed_once_it_holds_a_thousand_messages() {
    if !support::available().await {
        return;
    }
    let schema = support::schema_name();
    let backend = PostgresBackend::builder(support::url()).schema(schema.clone()).connect().await.unwrap();
    let thread = ThreadId::new("long").unwrap();
    let mut conn = PgConnection::connect(&support::url()).await.unwrap();
    let analyzed = format!(
        "SELECT count(*) FROM pg_stat_user_tables WHERE schemaname = '{schema}' AND relname = 'messages' \
           AND (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL)"
    );
    let plan = format!(
        "EXPLAIN SELECT 1 FROM \"{schema}\".messages WHERE tenant = '' AND thread_id = 'long' AND message_id = 'x'"
    );
    for n in 0..999 {
        backend.apply(Add::new(thread.clone(), Role::User, Content::text(format!("{n}"))).into()).await.unwrap();
    }
    let before: i64 = sqlx::query_scalar(AssertSqlSafe(analyzed.clone())).fetch_one(&mut conn).await.unwrap();
    assert_eq!(before, 0, "no statistics yet (autovacuum had no time)");
    let walked: Vec<String> = sqlx::query_scalar(AssertSqlSafe(plan.clone())).fetch_all(&mut conn).await.unwrap();
    assert!(!walked.join("\n").contains("messages_pkey"), "without statistics, not the primary key: {walked:?}");

    backend.apply(Add::new(thread.clone(), Role::User, Content::text("1000")).into()).await.unwrap();
    let mut after: i64 = 0;
    for _ in 0..100 {
        after = sqlx::query_scalar(AssertSqlSafe(analyzed.clone())).fetch_one(&mut conn).await.unwrap();
        if after == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(after, 1, "analyzed after the thousandth insert");
    let plan: Vec<String> = sqlx::query_scalar(AssertSqlSafe(plan)).fetch_all(&mut conn).await.unwrap();
    assert!(plan.join("\n").contains("messages_pkey"), "a lookup by id takes the primary key: {plan:?}");
    conn.close().await.unwrap();
    backend.close().await;
    support::drop_schema(&schema).await;
}
