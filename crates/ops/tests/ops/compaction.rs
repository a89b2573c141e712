//! Compaction run by `CompactLayer` workers: two instances over one store (SQLite file,
//! PostgreSQL schema) compact a thread being written through both, never two at once, and the
//! compacted read stays whole; a run cut off by a crash resumes once its lease expires; a
//! compactor that fails changes nothing; through `EncryptLayer`, the compactor reads clear text
//! and the summary is sealed at rest.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use persist::args::Add;
use persist::compaction::{Budget, Compaction, CompactionInput, Compactor, KeepLastText, LEASE_NAME, Outcome};
use persist::layer::CompactLayer;
use persist::lease::Lease;
use persist::memory::MemoryBackend;
use persist::postgres::PostgresBackend;
use persist::sqlite::SqliteBackend;
use persist::summary::{ListSummaries, ReadCompacted};
use persist::{Backend, BoxError, Content, Context, Pipeline, Role, ThreadId};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

fn id(text: &str) -> ThreadId {
    ThreadId::new(text).unwrap()
}

/// `KeepLastText`, counting the runs under way per thread (across every instance of the
/// process) and the most seen at once.
#[derive(Clone, Default)]
struct Watched {
    running: Arc<Mutex<HashMap<ThreadId, usize>>>,
    most: Arc<AtomicUsize>,
    runs: Arc<AtomicUsize>,
}

impl Compactor for Watched {
    fn name(&self) -> &str {
        "watched"
    }

    async fn compact(&self, input: CompactionInput<'_>) -> Result<Content, BoxError> {
        let now = {
            let mut running = self.running.lock().unwrap();
            let count = running.entry(input.thread_id.clone()).or_default();
            *count += 1;
            *count
        };
        self.most.fetch_max(now, Ordering::SeqCst);
        self.runs.fetch_add(1, Ordering::SeqCst);
        // Long enough for the other instance to try the same thread meanwhile.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let content = KeepLastText::new(3).compact(input).await;
        *self.running.lock().unwrap().get_mut(input.thread_id).unwrap() -= 1;
        content
    }
}

/// Writes 60 messages to one thread through two instances (each its own handle on the store
/// and its own worker), then checks: never two compactions of the thread at once, summaries
/// were written, and the compacted read is the latest summary and every message after it.
async fn two_instances<B: Backend + Clone>(a: B, b: B) {
    let compactor = Watched::default();
    let mut instances = Vec::new();
    let mut workers = Vec::new();
    for (name, backend) in [("a", a), ("b", b)] {
        let compaction = Compaction::new(compactor.clone(), Budget::messages(6)).keep_recent(2).holder(name);
        let (layer, worker) = CompactLayer::new(compaction);
        let pipeline = Pipeline::builder().layer(layer).build(backend);
        workers.push(tokio::spawn(worker.run(pipeline.clone())));
        instances.push(pipeline);
    }
    let thread = id("compacted-by-two");
    for i in 0..60 {
        let pipeline = &instances[i % 2];
        pipeline.add(Add::new(thread.clone(), Role::User, Content::text(format!("m{i}")))).await.unwrap();
        if i % 7 == 0 {
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }
    // The workers catch up: a run after the last write leaves at most the budget.
    let mut read = instances[0].compacted(ReadCompacted::new(thread.clone())).await.unwrap();
    for _ in 0..400 {
        if read.messages.len() <= 6 && compactor.running.lock().unwrap().values().all(|&n| n == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        read = instances[0].compacted(ReadCompacted::new(thread.clone())).await.unwrap();
    }
    for worker in &workers {
        worker.abort();
    }
    assert_eq!(compactor.most.load(Ordering::SeqCst), 1, "one compaction of a thread at a time");
    assert!(compactor.runs.load(Ordering::SeqCst) >= 2, "compacted as it grew");
    let summary = read.summary.clone().expect("a summary");
    let all = instances[1].list(persist::read::ListMessages::new(thread.clone()).with_limit(100)).await.unwrap();
    assert_eq!(all.items.len(), 60, "every message stays");
    let after: Vec<u64> = all.items.iter().filter(|m| m.seq > summary.through_seq).map(|m| m.seq).collect();
    assert_eq!(read.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), after);
    assert!(read.messages.len() <= 6, "within the budget once caught up: {}", read.messages.len());
    let summaries = instances[1].summaries(ListSummaries::new(thread.clone())).await.unwrap().items;
    assert!(summaries.iter().all(|s| s.from_seq == 1), "each folds in the one before: {summaries:?}");
    assert!(summaries.windows(2).all(|w| w[0].through_seq < w[1].through_seq));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sqlite_handles_compact_one_thread_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("compacted.db");
    let a = SqliteBackend::open(&path).await.unwrap();
    let b = SqliteBackend::open(&path).await.unwrap();
    two_instances(a, b).await;
}

fn url() -> String {
    std::env::var("PERSIST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_instances_compact_one_thread_one_at_a_time() {
    let Ok(mut admin) = PgConnection::connect(&url()).await else {
        assert!(std::env::var_os("CI").is_none(), "PostgreSQL is required in CI");
        return;
    };
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let schema = format!("persist_test_compaction_{:x}_{nanos:x}", std::process::id());
    let outcome = tokio::spawn({
        let schema = schema.clone();
        async move {
            let a = PostgresBackend::builder(url()).schema(&schema).connect().await.unwrap();
            let b = PostgresBackend::builder(url()).schema(&schema).connect().await.unwrap();
            two_instances(a.clone(), b.clone()).await;
            a.close().await;
            b.close().await;
        }
    })
    .await;
    // A test-made name only: persist_test_compaction_ and hex.
    let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    let _ = sqlx::query(AssertSqlSafe(drop)).execute(&mut admin).await;
    if let Err(failure) = outcome {
        std::panic::resume_unwind(failure.into_panic());
    }
}

fn long_thread_store() -> (Pipeline, ThreadId) {
    (Pipeline::new(MemoryBackend::new()), id("long"))
}

async fn fill(store: &Pipeline, thread: &ThreadId, n: usize) {
    for i in 1..=n {
        store.add(Add::new(thread.clone(), Role::User, Content::text(format!("m{i}")))).await.unwrap();
    }
}

#[tokio::test]
async fn a_compaction_cut_off_by_a_crash_resumes_once_its_lease_expires() {
    let (store, thread) = long_thread_store();
    fill(&store, &thread, 10).await;
    // An instance took the lease and died before writing its summary.
    let dead = Lease::take(thread.clone(), LEASE_NAME, "dead-instance", Duration::from_millis(200)).unwrap();
    store.lease(dead).await.unwrap();
    let compaction = Compaction::new(KeepLastText::new(2), Budget::messages(5)).keep_recent(1).holder("alive");
    let busy = compaction.compact(&store, thread.clone(), Context::new()).await.unwrap();
    assert!(matches!(&busy, Outcome::Busy(held) if held.holder == "dead-instance"), "{busy:?}");
    tokio::time::sleep(Duration::from_millis(250)).await;
    let resumed = compaction.compact(&store, thread.clone(), Context::new()).await.unwrap();
    let Outcome::Summarized(summary) = resumed else { panic!("{resumed:?}") };
    assert_eq!((summary.from_seq, summary.through_seq), (1, 9));
    assert_eq!(summary.content.to_text(), "user: m8\nuser: m9");
    // Its lease is given up: another instance compacts the thread's next stretch at once.
    fill(&store, &thread, 6).await;
    let other = Compaction::new(KeepLastText::new(2), Budget::messages(5)).keep_recent(1).holder("other");
    assert!(matches!(other.compact(&store, thread.clone(), Context::new()).await.unwrap(), Outcome::Summarized(_)));
    let within = other.compact(&store, thread, Context::new()).await.unwrap();
    assert_eq!(within, Outcome::WithinBudget);
}

struct Failing;

impl Compactor for Failing {
    fn name(&self) -> &str {
        "failing"
    }

    async fn compact(&self, _: CompactionInput<'_>) -> Result<Content, BoxError> {
        Err("the model is down".into())
    }
}

#[tokio::test]
async fn a_failing_compactor_changes_nothing_and_frees_the_thread() {
    let (store, thread) = long_thread_store();
    fill(&store, &thread, 8).await;
    let failing = Compaction::new(Failing, Budget::messages(3)).holder("a");
    let error = failing.compact(&store, thread.clone(), Context::new()).await.unwrap_err();
    assert!(error.to_string().contains("failing"), "{error}");
    assert!(store.summaries(ListSummaries::new(thread.clone())).await.unwrap().items.is_empty());
    let working = Compaction::new(KeepLastText::new(1), Budget::messages(3)).holder("b");
    assert!(matches!(working.compact(&store, thread, Context::new()).await.unwrap(), Outcome::Summarized(_)));
}

#[tokio::test]
async fn a_reply_being_written_is_never_folded_in() {
    let (store, thread) = long_thread_store();
    fill(&store, &thread, 3).await;
    store.reserve(persist::args::Reserve::new(thread.clone(), Role::Assistant)).await.unwrap(); // 4
    fill(&store, &thread, 4).await; // 5..8
    let compaction = Compaction::new(KeepLastText::new(5), Budget::messages(3)).keep_recent(1);
    let Outcome::Summarized(summary) = compaction.compact(&store, thread.clone(), Context::new()).await.unwrap() else {
        panic!("a summary of what comes before the reply")
    };
    assert_eq!(summary.through_seq, 3);
    assert_eq!(
        compaction.compact(&store, thread, Context::new()).await.unwrap(),
        Outcome::NothingSettled,
        "nothing after 3 can be folded in while 4 is written"
    );
}

#[tokio::test]
async fn through_encryption_the_compactor_reads_clear_text_and_the_summary_is_sealed() {
    let storage = MemoryBackend::new();
    let key = persist::encrypt::SecretKey::new([7; 32]);
    let ring = persist::encrypt::KeyRing::new().with_key(persist::encrypt::KeyId::new("k1").unwrap(), key).unwrap();
    let sealed = Pipeline::builder().layer(persist::encrypt::EncryptLayer::new(ring)).build(storage.clone());
    let thread = id("sealed-long");
    fill(&sealed, &thread, 6).await;
    let compaction = Compaction::new(KeepLastText::new(2), Budget::messages(3)).keep_recent(1);
    let Outcome::Summarized(summary) = compaction.compact(&sealed, thread.clone(), Context::new()).await.unwrap()
    else {
        panic!("a summary")
    };
    assert_eq!(summary.content.to_text(), "user: m4\nuser: m5", "read in clear");
    let raw = Pipeline::new(storage);
    let stored = raw.summaries(ListSummaries::new(thread)).await.unwrap().items.remove(0);
    // The clear text's words (`:` and a space, which a sealed envelope's base64 never holds:
    // "m4" alone turns up in one ciphertext of about 40).
    let at_rest = stored.content.as_json();
    assert!(at_rest.contains("persist:sealed") && !at_rest.contains("user: m4"), "sealed at rest: {stored:?}");
}

#[tokio::test]
async fn the_layer_notes_a_thread_once_a_reply_ends_not_for_each_token() {
    let compaction = Compaction::new(KeepLastText::new(1), Budget::messages(100));
    let (layer, mut worker) = CompactLayer::new(compaction);
    let store = Pipeline::builder().layer(layer).build(MemoryBackend::new());
    let thread = id("streamed");
    let reply = store.reserve(persist::args::Reserve::new(thread.clone(), Role::Assistant)).await.unwrap().message;
    for token in ["Hel", "lo"] {
        let append = persist::args::UpdateContent::appending(thread.clone(), reply.id.clone(), Content::text(token));
        store.update_content(append).await.unwrap();
    }
    assert!(worker.drain(&store).await.is_empty(), "a reservation and its tokens note nothing");
    store.update_content(persist::args::UpdateContent::finishing(thread.clone(), reply.id.clone())).await.unwrap();
    store.add(Add::new(thread.clone(), Role::User, Content::text("thanks"))).await.unwrap();
    let noted = worker.drain(&store).await;
    assert_eq!(noted.len(), 1, "the reply's end and the add: one note while queued");
    assert!(matches!(noted[0], (ref t, Ok(Outcome::WithinBudget)) if *t == thread));
}

/// A compactor slower than the lease: the run renews the lease while it works, so a second
/// instance finds the thread busy all along, and one summary is written.
#[tokio::test]
async fn a_slow_compactor_keeps_its_lease_while_it_works() {
    struct Slow;
    impl Compactor for Slow {
        fn name(&self) -> &str {
            "slow"
        }

        async fn compact(&self, input: CompactionInput<'_>) -> Result<Content, BoxError> {
            tokio::time::sleep(Duration::from_millis(700)).await;
            KeepLastText::new(1).compact(input).await
        }
    }
    let (store, thread) = long_thread_store();
    fill(&store, &thread, 8).await;
    let lease = Duration::from_millis(200);
    let slow = Compaction::new(Slow, Budget::messages(3)).keep_recent(1).holder("slow").lease_for(lease);
    let other =
        Compaction::new(KeepLastText::new(1), Budget::messages(3)).keep_recent(1).holder("other").lease_for(lease);
    let running = tokio::spawn({
        let (store, thread) = (store.clone(), thread.clone());
        async move { slow.compact(&store, thread, Context::new()).await }
    });
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(110)).await;
        let tried = other.compact(&store, thread.clone(), Context::new()).await.unwrap();
        assert!(matches!(&tried, Outcome::Busy(held) if held.holder == "slow"), "{tried:?}");
    }
    assert!(matches!(running.await.unwrap().unwrap(), Outcome::Summarized(_)));
    assert_eq!(store.summaries(ListSummaries::new(thread)).await.unwrap().items.len(), 1);
}
