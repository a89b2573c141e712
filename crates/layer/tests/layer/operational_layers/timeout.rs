//! TimeoutLayer and DetachLayer: typed timeouts, whole writes, cancellation storms, slow backends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use persist::args::UpdateContent;
use persist::layer::{DetachLayer, ObserveLayer, TimeoutLayer};
use persist::memory::MemoryBackend;
use persist::read::ListMessages;
use persist::{Backend, Content, MessageId, PersistError, PersistOp, Pipeline};

use super::{Faulty, keyed_add, thread};

#[tokio::test]
async fn timeout_is_a_typed_temporary_error_naming_the_operation() {
    let backend = Faulty { delay: Duration::from_millis(300), ..Faulty::default() };
    let pipeline = Pipeline::builder().layer(TimeoutLayer::new(Duration::from_millis(20))).build(backend);
    let err = pipeline.add(keyed_add("t", "k")).await.unwrap_err();
    assert!(matches!(err, PersistError::Timeout { op: PersistOp::Add, .. }), "{err:?}");
    assert!(err.is_temporary());
}

#[tokio::test]
async fn timeout_passes_inner_errors_through_unchanged() {
    let pipeline = Pipeline::builder().layer(TimeoutLayer::new(Duration::from_secs(5))).build(MemoryBackend::new());
    let missing = UpdateContent::new(thread("t"), MessageId::new("m").unwrap(), Content::text("x"));
    assert!(matches!(pipeline.update_content(missing).await, Err(PersistError::NotFound { .. })));
}

#[tokio::test]
async fn a_timed_out_write_is_whole_with_detach_and_absent_without() {
    for detach in [true, false] {
        let backend = Faulty { delay: Duration::from_millis(60), ..Faulty::default() };
        let builder = Pipeline::builder().layer(TimeoutLayer::new(Duration::from_millis(10)));
        let pipeline = if detach {
            builder.layer(DetachLayer::new()).build(backend.clone())
        } else {
            builder.layer(ObserveLayer::new()).build(backend.clone())
        };
        let err = pipeline.add(keyed_add("t", "k")).await.unwrap_err();
        assert!(matches!(err, PersistError::Timeout { .. }));
        tokio::time::sleep(Duration::from_millis(150)).await;
        let stored = backend.store.list(ListMessages::new(thread("t"))).await.unwrap().items;
        if detach {
            assert_eq!(stored.len(), 1, "the detached write finished after its caller left");
            assert_eq!(stored[0].content.to_text(), "k");
        } else {
            assert!(stored.is_empty(), "the cancelled write left nothing behind");
        }
    }
}

/// A cancellation storm: 2 000 callers give up while the layer under `DetachLayer` is stuck.
/// Only the bound keeps running after they left; the rest never start, and once the stuck
/// writes finish a fresh write is served behind at most the bound.
#[tokio::test]
async fn a_cancellation_storm_leaves_at_most_the_bound_running_and_nothing_queued() {
    const BOUND: usize = 8;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let backend = MemoryBackend::new();
    let pipeline = Pipeline::builder()
        .layer(TimeoutLayer::new(Duration::from_millis(20)))
        .layer(DetachLayer::new().max_in_flight(BOUND))
        .layer(persist::layer::from_fn({
            let (gate, started) = (gate.clone(), started.clone());
            move |args, next| {
                let (gate, started) = (gate.clone(), started.clone());
                async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    // Stuck until the test opens the gate (a held lock, a slow server).
                    drop(gate.acquire().await);
                    next.run(args).await
                }
            }
        }))
        .build(backend.clone());
    let storm: Vec<_> = (0..2000)
        .map(|i| {
            let pipeline = pipeline.clone();
            tokio::spawn(async move { pipeline.add(keyed_add("storm", &format!("k{i}"))).await })
        })
        .collect();
    for caller in storm {
        let error = caller.await.unwrap().unwrap_err();
        assert!(matches!(error, PersistError::Timeout { .. }), "{error:?}");
    }
    assert_eq!(started.load(Ordering::SeqCst), BOUND, "only the bound started below the layer");
    gate.add_permits(usize::MAX >> 4);
    let fresh = pipeline.add(keyed_add("fresh", "now")).await.unwrap();
    assert_eq!(fresh.message.seq, 1);
    // The fresh write waited behind at most the bound: the storm's waiting writes were never
    // started, so none of them is written, now or later.
    let stored = |thread_id| {
        let backend = backend.clone();
        async move { backend.list(ListMessages::new(thread(thread_id)).with_limit(1000)).await.unwrap().items.len() }
    };
    assert!(stored("storm").await <= BOUND);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(stored("storm").await, BOUND, "the started writes finished, no other did");
    assert_eq!(started.load(Ordering::SeqCst), BOUND + 1);
}

#[tokio::test]
async fn a_backend_that_waits_answers_through_its_boxed_future() {
    // `Faulty` keeps the default `apply_now`: every write is handed back, then sleeps.
    let slow = Faulty { delay: Duration::from_millis(2), ..Faulty::default() };
    let pipeline = Pipeline::new(slow.clone());
    let first = pipeline.add(keyed_add("t", "a")).await.unwrap();
    let second = pipeline.add(keyed_add("t", "b")).await.unwrap();
    assert_eq!((first.message.seq, second.message.seq), (1, 2));
    assert_eq!((slow.calls.load(Ordering::SeqCst), slow.store.message_count()), (2, 2));
}
