//! RetryLayer: no duplicate after an ambiguous failure, permanent errors, limits, and retries over chaos.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use persist::args::{Add, Reserve};
use persist::layer::{ChaosLayer, InterceptLayer, RetryPolicy};
use persist::memory::MemoryBackend;
use persist::read::{GetThread, ListMessages};
use persist::{Content, MessageId, PersistArgs, PersistError, Pipeline, Role};

use super::{Faulty, fast_retry, keyed_add, thread};

#[tokio::test]
async fn retry_after_an_ambiguous_failure_never_duplicates() {
    let backend = Faulty::default();
    backend.fail_after_commit.store(2, Ordering::SeqCst);
    let pipeline = Pipeline::builder().layer(fast_retry(5)).build(backend.clone());
    let added = pipeline.add(keyed_add("t", "turn-1")).await.unwrap();
    assert!(!added.deduplicated, "the retry found this request's own first copy: it wrote the message");
    assert_eq!(backend.calls.load(Ordering::SeqCst), 3);
    assert_eq!(backend.store.message_count(), 1);
    // Another request with the same key (a resubmission by the host) is the duplicate.
    let again = pipeline.add(keyed_add("t", "turn-1")).await.unwrap();
    assert!(again.deduplicated, "another request wrote it");
    assert_eq!(again.message.id, added.message.id);
    assert_eq!(backend.store.message_count(), 1);
}

#[tokio::test]
async fn retry_passes_on_the_backends_answer_for_an_id_the_caller_chose() {
    let backend = Faulty::default();
    let pipeline = Pipeline::builder().layer(fast_retry(5)).build(backend.clone());
    let add = || Add::new(thread("t"), Role::User, Content::text("x")).with_id(MessageId::new("chosen").unwrap());
    assert!(!pipeline.add(add()).await.unwrap().deduplicated);
    // The layer cannot tell another request that chose this id from an earlier attempt.
    assert!(pipeline.add(add()).await.unwrap().deduplicated);
}

#[tokio::test]
async fn retry_without_a_key_or_id_never_duplicates_either() {
    let backend = Faulty::default();
    backend.fail_after_commit.store(2, Ordering::SeqCst);
    let pipeline = Pipeline::builder().layer(fast_retry(5)).build(backend.clone());
    let add = Add::new(thread("t"), Role::User, Content::text("no key, no id"));
    let added = pipeline.add(add).await.unwrap();
    assert!(!added.deduplicated, "the retry repeated this request's own write");
    assert_eq!(backend.calls.load(Ordering::SeqCst), 3);
    assert_eq!(backend.store.message_count(), 1);
    let reserved = {
        backend.fail_after_commit.store(1, Ordering::SeqCst);
        pipeline.reserve(Reserve::new(thread("t"), Role::Assistant)).await.unwrap()
    };
    assert!(!reserved.deduplicated);
    assert_eq!(backend.store.message_count(), 2);
}

#[test]
fn chaos_rates_that_are_not_numbers_mean_never() {
    let layer =
        ChaosLayer::new(1).temporary_errors(f64::NAN).fail_after_commit(f64::NAN).latency(f64::NAN, Duration::ZERO);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let store = MemoryBackend::new();
    let pipeline = Pipeline::builder().layer(layer).build(store.clone());
    rt.block_on(async { pipeline.add(keyed_add("t", "k")).await.unwrap() });
    assert_eq!(store.message_count(), 1);
}

#[tokio::test]
async fn retry_never_retries_permanent_errors_and_stops_at_the_limit() {
    let permanent: [fn() -> PersistError; 5] = [
        || PersistError::AlreadyExists { thread_id: thread("t"), message_id: MessageId::new("m").unwrap() },
        || PersistError::VersionConflict { thread_id: thread("t"), message_id: None, expected: 1, actual: 2 },
        || PersistError::not_found(&thread("t"), None),
        || PersistError::ThreadDeleted { thread_id: thread("t") },
        || PersistError::invalid("content", "too big"),
    ];
    for error in permanent {
        let backend = Faulty::default();
        *backend.answer.lock().unwrap() = Some(error);
        let pipeline = Pipeline::builder().layer(fast_retry(5)).build(backend.clone());
        let err = pipeline.add(keyed_add("t", "k")).await.unwrap_err();
        assert!(!err.is_temporary());
        assert_eq!(backend.calls.load(Ordering::SeqCst), 1, "{err} was retried");
    }
    let backend = Faulty::default();
    *backend.answer.lock().unwrap() = Some(|| PersistError::temporary("busy"));
    let pipeline = Pipeline::builder().layer(fast_retry(4)).build(backend.clone());
    assert!(pipeline.add(keyed_add("t", "k")).await.unwrap_err().is_temporary());
    assert_eq!(backend.calls.load(Ordering::SeqCst), 4, "attempts in all, the first included");
}

#[test]
fn retry_backoff_is_validated() {
    let bad = RetryPolicy::new().backoff(Duration::from_secs(2), Duration::from_secs(1));
    assert!(matches!(bad, Err(PersistError::InvalidInput { .. })));
    assert!(RetryPolicy::new().jitter(-1.0).is_err());
}

#[tokio::test]
async fn retry_never_repeats_a_compare_and_set_invalidation() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = attempts.clone();
    let pipeline = Pipeline::builder()
        .layer(fast_retry(5))
        .layer(InterceptLayer::new(move |_: PersistArgs| -> persist::layer::Decision {
            counted.fetch_add(1, Ordering::SeqCst);
            std::ops::ControlFlow::Break(Err(PersistError::temporary("the answer was lost")))
        }))
        .build(MemoryBackend::new());
    let invalidate = persist::session::InvalidateSession::new(
        persist::AgentId::new("bot").unwrap(),
        thread("t"),
        persist::SessionId::new("s").unwrap(),
    );
    assert!(pipeline.invalidate_session(invalidate).await.unwrap_err().is_temporary());
    assert_eq!(attempts.load(Ordering::SeqCst), 1, "tried once");
    attempts.store(0, Ordering::SeqCst);
    assert!(pipeline.get_thread(GetThread::new(thread("t"))).await.unwrap_err().is_temporary());
    assert_eq!(attempts.load(Ordering::SeqCst), 5, "a read is retried like a write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_over_chaos_completes_ten_thousand_adds_without_loss_or_duplicate() {
    let store = MemoryBackend::new();
    let pipeline = Pipeline::builder()
        .layer(fast_retry(40))
        .layer(ChaosLayer::new(42).temporary_errors(0.3).fail_after_commit(0.1))
        .build(store.clone());
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..50 {
        let pipeline = pipeline.clone();
        tasks.spawn(async move {
            for i in 0..200 {
                let key = format!("w{writer}-{i}");
                pipeline.add(keyed_add(&format!("chaos-{}", writer % 5), &key)).await.expect("every add succeeds");
            }
        });
    }
    tasks.join_all().await;
    assert_eq!(store.message_count(), 10_000, "no loss, no duplicate");
    let mut keys = std::collections::HashSet::new();
    for t in 0..5 {
        let mut query = ListMessages::new(thread(&format!("chaos-{t}"))).with_limit(1000);
        loop {
            let page = Pipeline::new(store.clone()).list(query.clone()).await.unwrap();
            for m in &page.items {
                assert!(keys.insert(m.idempotency_key.clone().unwrap()), "duplicate {:?}", m.idempotency_key);
            }
            match query.next_page(&page) {
                Some(next) => query = next,
                None => break,
            }
        }
    }
    assert_eq!(keys.len(), 10_000);
}
