//! What a write leaves on its connection when it is refused: the pool takes connections back
//! without a round trip, so a refused thread delete must end its own transaction (and free
//! the thread's row lock) before its connection is handed to the next write.

mod support;

use std::time::Duration;

use persist_core::args::{Add, Delete};
use persist_core::{Backend, Content, PersistError, PersistResult, Role, ThreadId};
use persist_postgres::PostgresBackend;

fn add(thread: &ThreadId, text: &str) -> persist_core::PersistArgs {
    Add::new(thread.clone(), Role::User, Content::text(text)).into()
}

fn seq(result: PersistResult) -> u64 {
    match result {
        PersistResult::Added(added) => added.message.seq,
        other => panic!("expected an add's answer, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_thread_delete_leaves_no_lock_behind() {
    if !support::available().await {
        return;
    }
    let schema = support::schema_name();
    // One connection: the refused delete's connection is the very one the next write gets.
    let first =
        PostgresBackend::builder(support::url()).schema(schema.clone()).max_connections(1).connect().await.unwrap();
    let other =
        PostgresBackend::builder(support::url()).schema(schema.clone()).max_connections(1).connect().await.unwrap();
    let thread = ThreadId::new("locked").unwrap();
    assert_eq!(seq(first.apply(add(&thread, "one")).await.unwrap()), 1);

    let refused = first.apply(Delete::thread(thread.clone()).with_expected_version(99).into()).await;
    assert!(
        matches!(refused, Err(PersistError::VersionConflict { expected: 99, .. })),
        "a stale expected version is refused: {refused:?}"
    );

    // Another process's write to the same thread would wait on a row lock left open.
    let written = tokio::time::timeout(Duration::from_secs(5), other.apply(add(&thread, "two")))
        .await
        .expect("the thread's row lock was released with the refused delete")
        .unwrap();
    assert_eq!(seq(written), 2);
    // And the refused delete's connection still writes, outside any transaction.
    assert_eq!(seq(first.apply(add(&thread, "three")).await.unwrap()), 3);

    first.close().await;
    other.close().await;
    support::drop_schema(&schema).await;
}
