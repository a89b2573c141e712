//! Races: concurrent adds, merges and retries, through one handle and through two. The races
//! through two handles run in three tenants at once (none, `acme`, `globex`) on the same
//! thread ids: each tenant's thread keeps the contract as if it were alone.

use std::sync::Arc;

use persist_core::args::{Reserve, Update, UpdateContent};
use persist_core::{Backend, Content, IdempotencyKey, Message, Metadata, Role, Status, TenantId, ThreadId};
use serde_json::json;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::fixture::{
    add_text, all_messages, all_messages_in, ctx, gate, get_in, t, tenant, text_add, thread_in, write, written,
};
use crate::{Factory, Outcome};

/// The tenants the races through two handles run in at once.
fn racing_tenants() -> [Option<TenantId>; 3] {
    [None, Some(tenant("acme")), Some(tenant("globex"))]
}

/// Runs `n` adds at once on `tenant`'s `thread`, spread over `handles`; answers every message
/// written.
async fn race_adds<B: Backend>(
    handles: &[Arc<B>],
    tenant: Option<TenantId>,
    thread_id: &ThreadId,
    n: usize,
) -> Vec<Message> {
    let barrier = Arc::new(Barrier::new(n));
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let (b, barrier) = (Arc::clone(&handles[i % handles.len()]), barrier.clone());
        let add = text_add(thread_id, &format!("racer {i}")).with_context(ctx(tenant.as_ref()));
        tasks.spawn(async move {
            barrier.wait().await;
            written(b.as_ref(), add).await
        });
    }
    tasks.join_all().await
}

async fn assert_fifty_distinct<B: Backend>(
    b: &B,
    tenant: Option<&TenantId>,
    thread_id: &ThreadId,
    mut written: Vec<Message>,
) {
    written.sort_by_key(|message| message.seq);
    let seqs: Vec<u64> = written.iter().map(|message| message.seq).collect();
    assert_eq!(seqs, (1..=50).collect::<Vec<u64>>(), "50 distinct seqs, gap-free at assignment ({tenant:?})");
    let stored = all_messages_in(b, tenant, thread_id).await;
    assert_eq!(stored, written, "exactly the 50 acknowledged messages are stored ({tenant:?})");
    let th = thread_in(b, tenant, thread_id).await.unwrap();
    assert_eq!((th.message_count, th.last_seq, th.tenant.as_ref()), (50, 50, tenant));
}

/// Per writer, acknowledged writes get increasing seqs: seq order is commit order.
async fn assert_commit_order<B: Backend>(handles: &[Arc<B>], tenant: Option<TenantId>, thread_id: &ThreadId) {
    let mut tasks = JoinSet::new();
    for writer in 0..5 {
        let (b, thread_id, tenant) = (Arc::clone(&handles[writer % handles.len()]), thread_id.clone(), tenant.clone());
        tasks.spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..10 {
                let add = text_add(&thread_id, &format!("w{writer} #{i}")).with_context(ctx(tenant.as_ref()));
                seqs.push(written(b.as_ref(), add).await.seq);
            }
            seqs
        });
    }
    for seqs in tasks.join_all().await {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "a writer's later write got a lower seq: {seqs:?}");
    }
}

async fn race_merges<B: Backend>(handles: &[Arc<B>], store_b: &B, tenant: Option<TenantId>) {
    let thread_id = t("merge-race");
    let message = written(store_b, text_add(&thread_id, "x").with_context(ctx(tenant.as_ref()))).await;
    let n = 20;
    let barrier = Arc::new(Barrier::new(n));
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let (b, barrier) = (Arc::clone(&handles[i % handles.len()]), barrier.clone());
        let update = Update::message(thread_id.clone(), message.id.clone())
            .with_metadata(Metadata::new().with(format!("key{i}"), json!(i)))
            .with_context(ctx(tenant.as_ref()));
        tasks.spawn(async move {
            barrier.wait().await;
            written(b.as_ref(), update).await
        });
    }
    tasks.join_all().await;
    let stored = get_in(store_b, tenant.as_ref(), &thread_id, &message.id).await.unwrap();
    for i in 0..n {
        assert_eq!(stored.metadata.get(&format!("key{i}")), Some(&json!(i)), "merge of key{i} was lost");
    }
    assert_eq!(stored.version, 1 + n as u64, "every merge bumped the version once");
}

async fn race_retries<B: Backend>(handles: &[Arc<B>], store_b: &B, tenant: Option<TenantId>) {
    let thread_id = t("retry-race");
    let n = 20;
    let barrier = Arc::new(Barrier::new(n));
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let (b, barrier) = (Arc::clone(&handles[i % handles.len()]), barrier.clone());
        let add = text_add(&thread_id, "once")
            .with_idempotency_key(IdempotencyKey::new("turn-7").unwrap())
            .with_context(ctx(tenant.as_ref()));
        tasks.spawn(async move {
            barrier.wait().await;
            write(b.as_ref(), add).await.expect("a retry succeeds")
        });
    }
    let results = tasks.join_all().await;
    let fresh = results.iter().filter(|r| !r.is_deduplicated()).count();
    assert_eq!(fresh, 1, "exactly one of the racing retries wrote");
    let ids: std::collections::HashSet<_> = results.iter().map(|r| r.message().unwrap().id.clone()).collect();
    assert_eq!(ids.len(), 1, "every retry answers the same message");
    assert_eq!(all_messages_in(store_b, tenant.as_ref(), &thread_id).await.len(), 1);
    assert_eq!(thread_in(store_b, tenant.as_ref(), &thread_id).await.unwrap().last_seq, 1);
}

/// 50 concurrent adds on one thread make exactly 50 messages with seqs 1..=50.
pub async fn check_fifty_concurrent_adds_make_fifty_messages<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let handles = [Arc::clone(store.b())];
    let id = t("race");
    let written = race_adds(&handles, None, &id, 50).await;
    assert_fifty_distinct(store.b().as_ref(), None, &id, written).await;
    assert_commit_order(&handles, None, &t("commit-order")).await;
    store.finish().await
}

/// Concurrent merges of different metadata keys on one message all survive.
pub async fn check_concurrent_metadata_merges_all_survive<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    race_merges(&[Arc::clone(store.b())], store.b().as_ref(), None).await;
    store.finish().await
}

/// Concurrent retries of one add (same idempotency key) create exactly one message.
pub async fn check_concurrent_retries_with_one_key_create_one_message<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    race_retries(&[Arc::clone(store.b())], store.b().as_ref(), None).await;
    store.finish().await
}

/// Writers on different threads never interfere: each thread numbers its own messages.
pub async fn check_concurrent_writers_on_many_threads<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let mut tasks = JoinSet::new();
    for i in 0..40 {
        let b = Arc::clone(store.b());
        tasks.spawn(async move { add_text(b.as_ref(), &t(&format!("parallel-{}", i % 8)), "x").await });
    }
    tasks.join_all().await;
    for thread_no in 0..8 {
        let id = t(&format!("parallel-{thread_no}"));
        let seqs: Vec<u64> = all_messages(store.b().as_ref(), &id).await.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5], "thread {id}");
    }
    store.finish().await
}

/// 50 adds raced through two independently opened handles make exactly 50 messages, in each
/// of three tenants racing on the same thread id at once (the thread created by the race).
pub async fn check_two_handles_racing_adds<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, shared_storage);
    let handles = [Arc::clone(store.b()), store.second_handle().await];
    let id = t("two-handle-race");
    let races = racing_tenants().map(|tenant| race_adds(&handles, tenant, &id, 50));
    let written = futures_join(races).await;
    for (tenant, written) in racing_tenants().iter().zip(written) {
        assert_fifty_distinct(handles[1].as_ref(), tenant.as_ref(), &id, written).await;
    }
    let order = t("two-handle-order");
    let orders = racing_tenants().map(|tenant| assert_commit_order(&handles, tenant, &order));
    futures_join(orders).await;
    store.finish().await
}

/// Merges raced through two handles all survive, in three tenants at once.
pub async fn check_two_handles_racing_merges<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, shared_storage);
    let handles = [Arc::clone(store.b()), store.second_handle().await];
    futures_join(racing_tenants().map(|tenant| race_merges(&handles, handles[1].as_ref(), tenant))).await;
    store.finish().await
}

/// Retries raced through two handles create exactly one message, in three tenants at once
/// with the same key.
pub async fn check_two_handles_racing_retries<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, shared_storage);
    let handles = [Arc::clone(store.b()), store.second_handle().await];
    futures_join(racing_tenants().map(|tenant| race_retries(&handles, handles[0].as_ref(), tenant))).await;
    store.finish().await
}

/// 40 appends to one reservation raced through two handles all succeed (contention never
/// fails an append: no layer retries one, a failed token is lost) and each token is stored
/// once, in three tenants at once.
pub async fn check_two_handles_racing_appends<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, shared_storage);
    let handles = [Arc::clone(store.b()), store.second_handle().await];
    futures_join(racing_tenants().map(|tenant| race_appends(&handles, tenant))).await;
    store.finish().await
}

async fn race_appends<B: Backend>(handles: &[Arc<B>], tenant: Option<TenantId>) {
    let thread_id = t("append-race");
    let reserve = Reserve::new(thread_id.clone(), Role::Assistant).with_context(ctx(tenant.as_ref()));
    let reply = written(handles[0].as_ref(), reserve).await;
    let n = 40;
    let barrier = Arc::new(Barrier::new(n));
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let (b, barrier) = (Arc::clone(&handles[i % handles.len()]), barrier.clone());
        let token = UpdateContent::appending(thread_id.clone(), reply.id.clone(), Content::text(format!("<{i}>")))
            .with_context(ctx(tenant.as_ref()));
        tasks.spawn(async move {
            barrier.wait().await;
            write(b.as_ref(), token).await.map(|_| ())
        });
    }
    for (i, answer) in tasks.join_all().await.into_iter().enumerate() {
        assert!(answer.is_ok(), "append {i} failed under contention ({tenant:?}): {answer:?}");
    }
    let stored = get_in(handles[1].as_ref(), tenant.as_ref(), &thread_id, &reply.id).await.unwrap();
    let text = stored.content.to_text();
    for i in 0..n {
        assert_eq!(text.matches(&format!("<{i}>")).count(), 1, "token {i} stored once ({tenant:?}): {text}");
    }
    assert_eq!(text.len(), (0..n).map(|i| format!("<{i}>").len()).sum::<usize>(), "nothing else ({tenant:?})");
    assert_eq!((stored.status, stored.version), (Status::Reserved, 1 + n as u64), "({tenant:?})");
}

/// Runs the three futures at once (on this task: their own spawned writers race each other).
async fn futures_join<T>(futures: [impl Future<Output = T>; 3]) -> [T; 3] {
    let [a, b, c] = futures;
    let (a, b, c) = tokio::join!(a, b, c);
    [a, b, c]
}
