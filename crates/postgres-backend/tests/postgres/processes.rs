//! Two OS processes write concurrently to the same threads of one schema; afterwards counts
//! are exact, seqs unique and gap-free per thread, and no message is duplicated.
//!
//! The child is this test binary run again with `PERSIST_PG_CHILD` set (see `child_writer`).
//! It runs that one test, named by its path in the binary (`processes::child_writer`).

use std::collections::HashSet;
use std::process::Command;

use persist_core::args::Add;
use persist_core::read::{GetThread, ListMessages};
use persist_core::{Backend, Content, IdempotencyKey, MessageId, Role, ThreadId};
use persist_postgres::PostgresBackend;

use crate::support;

const THREADS: usize = 3;
const PER_PROCESS: usize = 300;

/// The child process's entry point: writes `PER_PROCESS` messages round-robin over the
/// threads, from several tasks at once. Ignored in normal runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of two_processes_share_one_schema"]
async fn child_writer() {
    let schema = std::env::var("PERSIST_PG_CHILD").expect("run by two_processes_share_one_schema");
    let name = std::env::var("PERSIST_PG_CHILD_NAME").expect("run by two_processes_share_one_schema");
    let backend = PostgresBackend::builder(support::url()).schema(schema).max_connections(4).connect().await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..4 {
        let (backend, name) = (backend.clone(), name.clone());
        tasks.spawn(async move {
            for i in (task..PER_PROCESS).step_by(4) {
                let id = format!("{name}-{i}");
                let add =
                    Add::new(ThreadId::new(format!("shared-{}", i % THREADS)).unwrap(), Role::User, Content::text(&id))
                        .with_id(MessageId::new(&id).unwrap())
                        .with_idempotency_key(IdempotencyKey::new(&id).unwrap());
                backend.apply(add.into()).await.expect("write");
            }
        });
    }
    tasks.join_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_schema() {
    if !support::available().await {
        return;
    }
    let schema = support::schema_name();
    // Migrate once up front, then let both processes start together.
    let backend = PostgresBackend::builder(support::url()).schema(schema.clone()).connect().await.unwrap();
    // The test's name in the binary: its module's path past the crate's name.
    let child = format!("{}::child_writer", module_path!().split_once("::").unwrap().1);
    let spawn = |name: &str| {
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &child, "--ignored", "--nocapture", "--test-threads=1"])
            .env("PERSIST_PG_CHILD", &schema)
            .env("PERSIST_PG_CHILD_NAME", name)
            .spawn()
            .expect("start a writer process")
    };
    let (mut a, mut b) = (spawn("a"), spawn("b"));
    assert!(a.wait().unwrap().success(), "process a failed");
    assert!(b.wait().unwrap().success(), "process b failed");

    let mut ids = HashSet::new();
    let mut total = 0;
    for t in 0..THREADS {
        let thread = ThreadId::new(format!("shared-{t}")).unwrap();
        let page = backend.list(ListMessages::new(thread.clone()).with_limit(1000)).await.unwrap();
        let seqs: Vec<u64> = page.items.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=page.items.len() as u64).collect::<Vec<_>>(), "seqs of {thread} are 1..n in order");
        let th = backend.get_thread(GetThread::new(thread.clone())).await.unwrap().unwrap();
        assert_eq!((th.message_count, th.last_seq), (page.items.len() as u64, page.items.len() as u64));
        for m in &page.items {
            assert!(ids.insert(m.id.clone()), "{} is duplicated", m.id);
        }
        total += page.items.len();
    }
    assert_eq!(total, 2 * PER_PROCESS, "exact count: no loss, no duplicate");
    backend.close().await;
    support::drop_schema(&schema).await;
}
