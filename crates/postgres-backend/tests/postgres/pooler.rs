//! Through PgBouncer in transaction mode (`.ci/pgbouncer`: `pool_mode = transaction`, only
//! `extra_float_digits` ignored), as operators run it: the whole conformance suite, the
//! detection, migrations of a new schema by instances starting together, the change feed's
//! followers woken (from a direct connection, and by polling), and several instances whose
//! statements share the pooler's server connections.

use std::time::Duration;

use persist::args::Add;
use persist::feed::ReadFeed;
use persist::postgres::{Pooler, PostgresBackend};
use persist::read::ListMessages;
use persist::{Content, IdempotencyKey, Pipeline, Role, ThreadId};

use crate::support::{PoolerFactory, drop_schema, pooler_available, pooler_url, schema_name, url};

mod conformance {
    use super::PoolerFactory;

    persist_conformance::conformance_tests!(PoolerFactory);
}

/// The pooler's URL for `schema`, with more of persist's parameters.
fn through_pooler(schema: &str, more: &str) -> String {
    format!("{}?schema={schema}{more}", pooler_url())
}

/// Skips (outside CI) without a pooler; fails in CI.
async fn pooler() -> bool {
    match pooler_available().await {
        Ok(()) => true,
        Err(missing) => {
            assert!(std::env::var_os("CI").is_none(), "{missing}");
            false
        }
    }
}

fn add(thread: &str, text: &str) -> Add {
    Add::new(ThreadId::new(thread).unwrap(), Role::User, Content::text(text))
}

/// The texts of thread `thread`, in order.
async fn texts(store: &PostgresBackend, thread: &str) -> Vec<String> {
    let page = Pipeline::new(store.clone()).list(ListMessages::new(ThreadId::new(thread).unwrap())).await.unwrap();
    page.items.iter().map(|message| message.content.to_text()).collect()
}

#[tokio::test]
async fn the_store_finds_the_pooler_and_says_so() {
    if !pooler().await {
        return;
    }
    let schema = schema_name();
    let pooled = PostgresBackend::connect(through_pooler(&schema, "")).await.unwrap();
    assert_eq!(pooled.pooler(), Pooler::Transaction, "PgBouncer refuses the startup options: detected");
    let direct = PostgresBackend::builder(url()).schema(schema.clone()).connect().await.unwrap();
    assert_eq!(direct.pooler(), Pooler::None);
    // Named, nothing is detected; naming `none` through a transaction pooler is refused by it.
    let named = PostgresBackend::connect(through_pooler(&schema, "&pooler=transaction")).await.unwrap();
    assert_eq!(named.pooler(), Pooler::Transaction);
    let wrong = PostgresBackend::builder(pooler_url()).schema(schema.clone()).pooler(Pooler::None).connect().await;
    let error = wrong.expect_err("PgBouncer refuses the startup options");
    assert!(error.to_string().contains("unsupported startup parameter"), "{error}");
    // One store, whichever way it is reached.
    Pipeline::new(pooled.clone()).add(add("t", "through the pooler")).await.unwrap();
    assert_eq!(texts(&direct, "t").await, ["through the pooler"]);
    for store in [pooled, direct, named] {
        store.close().await;
    }
    drop_schema(&schema).await;
}

#[tokio::test]
async fn instances_starting_together_migrate_a_new_schema_once() {
    if !pooler().await {
        return;
    }
    let schema = schema_name();
    let url = through_pooler(&schema, "");
    let starts = (0..4).map(|_| tokio::spawn(PostgresBackend::connect(url.clone())));
    let mut stores = Vec::new();
    for start in starts {
        stores.push(start.await.unwrap().unwrap());
    }
    for (at, store) in stores.iter().enumerate() {
        Pipeline::new(store.clone()).add(add("t", &format!("from instance {at}"))).await.unwrap();
    }
    assert_eq!(texts(&stores[0], "t").await.len(), 4);
    let status = PostgresBackend::builder(url).schema_status().await.unwrap();
    assert!(status.pending.is_empty() && status.failed.is_empty(), "{status:?}");
    assert_eq!(status.applied, status.latest);
    for store in stores {
        store.close().await;
    }
    drop_schema(&schema).await;
}

/// Another instance's writes reach a follower of this one, through the pooler: `listen_url`
/// names a direct connection (woken by the notification), or none is named (polled).
async fn followers_are_woken(listen: &str) {
    let schema = schema_name();
    let follower_store = PostgresBackend::connect(through_pooler(&schema, listen)).await.unwrap();
    let writer = Pipeline::new(PostgresBackend::connect(through_pooler(&schema, "")).await.unwrap());
    let thread = ThreadId::new("followed").unwrap();
    let mut follower = Pipeline::new(follower_store.clone()).subscribe(ReadFeed::thread(thread.clone())).await.unwrap();
    for at in 0..5 {
        writer.add(add("followed", &format!("message {at}"))).await.unwrap();
    }
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.len() < 5 {
        let event = tokio::time::timeout_at(deadline, follower.next()).await.expect("woken within 10 s");
        seen.push(event.expect("a feed event").position);
    }
    assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "in order, once each: {seen:?}");
    follower_store.close().await;
    drop_schema(&schema).await;
}

#[tokio::test]
async fn followers_are_woken_from_a_direct_connection() {
    if !pooler().await {
        return;
    }
    let direct = url().replace(':', "%3A").replace('/', "%2F").replace('@', "%40");
    followers_are_woken(&format!("&listen_url={direct}")).await;
}

#[tokio::test]
async fn followers_are_woken_by_polling_without_one() {
    if !pooler().await {
        return;
    }
    followers_are_woken("").await;
}

#[tokio::test]
async fn many_instances_share_the_poolers_server_connections() {
    if !pooler().await {
        return;
    }
    let schema = schema_name();
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(PostgresBackend::builder(through_pooler(&schema, "")).max_connections(8).connect().await.unwrap());
    }
    // 3 instances × 16 writers, each statement on whichever server connection PgBouncer gives.
    let mut writers = Vec::new();
    for (instance, store) in stores.iter().enumerate() {
        for writer in 0..16 {
            let pipeline = Pipeline::new(store.clone());
            writers.push(tokio::spawn(async move {
                for at in 0..10 {
                    let thread = format!("t{}", (instance + writer) % 5);
                    let key = IdempotencyKey::new(format!("{instance}-{writer}-{at}")).unwrap();
                    pipeline.add(add(&thread, "a message").with_idempotency_key(key.clone())).await.unwrap();
                    // A retry is the same write.
                    let again = pipeline.add(add(&thread, "a message").with_idempotency_key(key)).await.unwrap();
                    assert!(again.deduplicated);
                }
            }));
        }
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let mut total = 0;
    let pipeline = Pipeline::new(stores[0].clone());
    for thread in 0..5 {
        let query = ListMessages::new(ThreadId::new(format!("t{thread}")).unwrap()).with_limit(1000);
        let page = pipeline.list(query).await.unwrap();
        let seqs: Vec<u64> = page.items.iter().map(|message| message.seq).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "gapless per thread");
        total += page.items.len();
    }
    assert_eq!(total, 3 * 16 * 10);
    for store in stores {
        store.close().await;
    }
    drop_schema(&schema).await;
}
