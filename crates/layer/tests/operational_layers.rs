//! The operational layers (retry, timeout, detach, trace, metrics, events, validate, chaos,
//! mirror) and stranded-reservation cleanup, over real backends.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use persist::args::{Add, Reserve, UpdateContent};
use persist::layer::route::{self, RouteLayer};
use persist::layer::{
    ChaosLayer, DetachLayer, Events, InterceptLayer, Limits, MetricsLayer, MirrorLayer, ObserveLayer, RetryLayer,
    RetryPolicy, TimeoutLayer, TraceLayer, ValidateLayer,
};
use persist::maintenance::{CleanupStranded, Maintenance};
use persist::memory::MemoryBackend;
use persist::prelude::*;
use persist::read::{GetMessage, GetThread, ListMessages};
use persist::{
    Backend, Capabilities, Content, Context, IdempotencyKey, Message, MessageId, Metadata, Page, PersistArgs,
    PersistError, PersistOp, PersistResult, Pipeline, Role, Status, TenantId, Thread, ThreadId,
};
use serde_json::json;

fn thread(id: &str) -> ThreadId {
    ThreadId::new(id).unwrap()
}

fn keyed_add(thread_id: &str, key: &str) -> Add {
    Add::new(thread(thread_id), Role::User, Content::text(key)).with_idempotency_key(IdempotencyKey::new(key).unwrap())
}

fn fast_retry(attempts: u32) -> RetryLayer {
    RetryLayer::new(
        RetryPolicy::new()
            .max_attempts(attempts)
            .backoff(Duration::from_micros(100), Duration::from_millis(2))
            .unwrap(),
    )
}

type MakeError = fn() -> PersistError;

/// A backend over memory that misbehaves on purpose: counts calls, can fail after committing,
/// can answer a fixed error, can be slow.
#[derive(Clone, Default)]
struct Faulty {
    store: MemoryBackend,
    calls: Arc<AtomicUsize>,
    fail_after_commit: Arc<AtomicUsize>,
    answer: Arc<Mutex<Option<MakeError>>>,
    delay: Duration,
}

impl Backend for Faulty {
    async fn apply(&self, args: PersistArgs) -> persist::Result<PersistResult> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(error) = *self.answer.lock().unwrap() {
            return Err(error());
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let result = self.store.apply(args).await?;
        let pending = self.fail_after_commit.load(Ordering::SeqCst);
        if pending > 0 {
            self.fail_after_commit.store(pending - 1, Ordering::SeqCst);
            return Err(PersistError::temporary("connection lost after commit"));
        }
        Ok(result)
    }
    async fn get(&self, q: GetMessage) -> persist::Result<Option<Message>> {
        self.store.get(q).await
    }
    async fn get_thread(&self, q: GetThread) -> persist::Result<Option<Thread>> {
        self.store.get_thread(q).await
    }
    async fn list(&self, q: ListMessages) -> persist::Result<Page<Message>> {
        self.store.list(q).await
    }
    async fn threads(
        &self,
        q: persist::read::ListThreads,
    ) -> persist::Result<Page<Thread, persist::read::ThreadCursor>> {
        self.store.threads(q).await
    }
    fn capabilities(&self) -> Capabilities {
        self.store.capabilities()
    }
}

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

#[tokio::test]
async fn mirror_stores_a_generated_id_under_the_primarys_id() {
    let shadow = MemoryBackend::new();
    let mirror = MirrorLayer::new(Pipeline::new(shadow.clone()));
    let pipeline = Pipeline::builder().layer(mirror.clone()).build(MemoryBackend::new());
    let added = pipeline.add(Add::new(thread("t"), Role::User, Content::text("x"))).await.unwrap().message;
    mirror.flushed().await;
    let copy = Pipeline::new(shadow).get(GetMessage::new(thread("t"), added.id.clone())).await.unwrap();
    assert_eq!(copy.map(|m| m.id), Some(added.id));
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

mod tracing_capture {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    /// Every field recorded on every span, and every event's fields; each also under
    /// `level`, its level.
    #[derive(Clone, Default)]
    pub(crate) struct Capture {
        next: Arc<AtomicU64>,
        pub(crate) spans: Arc<Mutex<HashMap<u64, HashMap<String, String>>>>,
        pub(crate) events: Arc<Mutex<Vec<HashMap<String, String>>>>,
    }

    struct Fields<'a>(&'a mut HashMap<String, String>);

    impl Visit for Fields<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.insert(field.name().to_owned(), format!("{value:?}"));
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.insert(field.name().to_owned(), value.to_owned());
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, attrs: &Attributes<'_>) -> Id {
            let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
            let mut fields = HashMap::from([("level".to_owned(), attrs.metadata().level().to_string())]);
            attrs.record(&mut Fields(&mut fields));
            self.spans.lock().unwrap().insert(id, fields);
            Id::from_u64(id)
        }
        fn record(&self, span: &Id, values: &Record<'_>) {
            let mut spans = self.spans.lock().unwrap();
            values.record(&mut Fields(spans.entry(span.into_u64()).or_default()));
        }
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut fields = HashMap::from([("level".to_owned(), event.metadata().level().to_string())]);
            event.record(&mut Fields(&mut fields));
            self.events.lock().unwrap().push(fields);
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }
}

#[tokio::test]
async fn trace_records_op_thread_message_seq_outcome_and_duration_but_not_content() {
    let capture = tracing_capture::Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let pipeline = Pipeline::builder().layer(TraceLayer::new()).build(MemoryBackend::new());
    let added = pipeline.add(keyed_add("traced", "secret words")).await.unwrap().message;
    let missing = UpdateContent::new(thread("traced"), MessageId::new("nope").unwrap(), Content::text("x"));
    assert!(pipeline.update_content(missing).await.is_err());

    let spans = capture.spans.lock().unwrap();
    let mut spans: Vec<_> = spans.values().collect();
    spans.sort_by_key(|fields| fields.get("op").cloned());
    let add = spans.iter().find(|f| f.get("op").map(String::as_str) == Some("add")).expect("an add span");
    assert_eq!(add["thread"], "traced");
    assert_eq!(add["message_id"], added.id.as_str());
    assert_eq!(add["level"], "INFO");
    assert!(!add.contains_key("tenant"), "a trusted write names no tenant");
    assert_eq!(add["seq"], "1");
    assert_eq!(add["version"], "1");
    assert_eq!(add["outcome"], "ok");
    assert!(add.contains_key("duration_us") && add.contains_key("request_id"));
    assert!(!add.contains_key("content"), "content is private by default");
    let failed = spans.iter().find(|f| f.get("op").map(String::as_str) == Some("update_content")).unwrap();
    assert_eq!(failed["outcome"], "not_found");
    let events = capture.events.lock().unwrap();
    assert_eq!(events.len(), 2, "one event per write");
    assert!(!events.iter().any(|e| e.values().any(|v| v.contains("secret words"))));
}

/// A streamed reply's steps are traced at DEBUG (many per reply), its finalize at INFO; the
/// tenant is a field of the span; the message id is `message_id`, never `tracing`'s own
/// `message` (the event's text).
#[tokio::test]
async fn trace_puts_stream_steps_at_debug_and_names_the_tenant() {
    let capture = tracing_capture::Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let pipeline = Pipeline::builder().layer(TraceLayer::new()).build(MemoryBackend::new());
    let tenant = persist::Context::new().with_tenant(persist::TenantId::new("acme").unwrap());
    let slot = pipeline.reserve(Reserve::new(thread("streamed"), Role::Assistant).with_context(tenant.clone())).await;
    let slot = slot.unwrap().message;
    for step in ["It", "It left"] {
        let partial = UpdateContent::partial(thread("streamed"), slot.id.clone(), Content::text(step));
        pipeline.update_content(partial.with_context(tenant.clone())).await.unwrap();
    }
    let done = UpdateContent::new(thread("streamed"), slot.id.clone(), Content::text("It left yesterday."));
    pipeline.update_content(done.with_context(tenant)).await.unwrap();

    let spans = capture.spans.lock().unwrap();
    let levels = |op: &str| -> Vec<String> {
        let mut levels: Vec<_> =
            spans.values().filter(|f| f["op"] == op).map(|f| f["level"].clone()).collect::<Vec<_>>();
        levels.sort();
        levels
    };
    assert_eq!(levels("reserve"), ["INFO"]);
    assert_eq!(levels("update_content"), ["DEBUG", "DEBUG", "INFO"]);
    assert!(spans.values().all(|f| f["tenant"] == "acme" && f["message_id"] == slot.id.as_str()));
    let events = capture.events.lock().unwrap();
    let info: Vec<_> = events.iter().filter(|e| e["level"] == "INFO").collect();
    assert_eq!(info.len(), 2, "one INFO line for the reserve, one for the finalize");
    assert_eq!(events.iter().filter(|e| e["level"] == "DEBUG").count(), 2);
    assert!(events.iter().all(|e| e["message"] == "persist write"), "`message` is the event's text only");
}

/// Reads go through the layers: traced with the rows they answered, counted by operation.
#[tokio::test]
async fn trace_and_metrics_see_reads() {
    let capture = tracing_capture::Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let recorder = metrics_capture::Capture::default();
    let metrics = metrics::with_local_recorder(&recorder, MetricsLayer::new);
    let pipeline = Pipeline::builder().layer(TraceLayer::new()).layer(metrics).build(MemoryBackend::new());
    for text in ["a", "b", "c"] {
        pipeline.add(keyed_add("read", text)).await.unwrap();
    }
    assert_eq!(pipeline.list(ListMessages::new(thread("read"))).await.unwrap().items.len(), 3);
    pipeline.get_thread(GetThread::new(thread("read"))).await.unwrap();
    let count = |key: &str| recorder.counters.lock().unwrap()[key].load(Ordering::SeqCst);
    assert_eq!(count("persist_ops_total{op=list,outcome=ok}"), 1, "the read was counted");
    assert_eq!(count("persist_ops_total{op=get_thread,outcome=ok}"), 1);
    assert_eq!(recorder.histograms.lock().unwrap()["persist_op_duration_seconds{op=list}"].values().len(), 1);
    assert_eq!(recorder.histograms.lock().unwrap()["persist_read_rows{op=list}"].values(), [3.0]);
    assert_eq!(recorder.histograms.lock().unwrap()["persist_read_rows{op=get_thread}"].values(), [1.0]);
    assert!(
        recorder.histograms.lock().unwrap()["persist_read_rows{op=add}"].values().is_empty(),
        "writes read no rows"
    );
    let spans = capture.spans.lock().unwrap();
    let list = spans.values().find(|f| f.get("op").map(String::as_str) == Some("list")).expect("a list span");
    assert_eq!((list["thread"].as_str(), list["rows"].as_str(), list["outcome"].as_str()), ("read", "3", "ok"));
}

#[tokio::test]
async fn a_mirror_shadows_writes_but_not_reads() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let target = Pipeline::builder()
        .layer(ObserveLayer::new().on_args(move |args: &PersistArgs| log.lock().unwrap().push(args.op())))
        .build(MemoryBackend::new());
    let mirror = MirrorLayer::new(target);
    let pipeline = Pipeline::builder().layer(mirror.clone()).build(MemoryBackend::new());
    pipeline.add(keyed_add("m", "x")).await.unwrap();
    pipeline.list(ListMessages::new(thread("m"))).await.unwrap();
    pipeline.get_thread(GetThread::new(thread("m"))).await.unwrap();
    mirror.flushed().await;
    assert_eq!(*seen.lock().unwrap(), [PersistOp::Add], "reads are answered by the primary alone");
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

#[tokio::test]
async fn trace_records_content_only_when_asked() {
    let capture = tracing_capture::Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let pipeline = Pipeline::builder().layer(TraceLayer::new().with_content(true)).build(MemoryBackend::new());
    pipeline.add(keyed_add("traced", "visible words")).await.unwrap();
    let spans = capture.spans.lock().unwrap();
    assert!(spans.values().any(|f| f.get("content").is_some_and(|c| c.contains("visible words"))));
}

mod metrics_capture {
    use std::collections::HashMap;
    use std::sync::atomic::AtomicU64;
    use std::sync::{Arc, Mutex};

    use metrics::{Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit};

    #[derive(Default)]
    pub(crate) struct Samples(Mutex<Vec<f64>>);

    impl HistogramFn for Samples {
        fn record(&self, value: f64) {
            self.0.lock().unwrap().push(value);
        }
    }

    impl Samples {
        pub(crate) fn values(&self) -> Vec<f64> {
            self.0.lock().unwrap().clone()
        }
    }

    /// Keys rendered as `name{label=value,…}` (labels in registration order).
    #[derive(Default)]
    pub(crate) struct Capture {
        pub(crate) counters: Mutex<HashMap<String, Arc<AtomicU64>>>,
        pub(crate) histograms: Mutex<HashMap<String, Arc<Samples>>>,
        /// Hand out no-op histograms (a recorder that keeps counters only).
        pub(crate) counters_only: bool,
    }

    fn render(key: &Key) -> String {
        let labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
        format!("{}{{{}}}", key.name(), labels.join(","))
    }

    impl Recorder for Capture {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.counters.lock().unwrap().entry(render(key)).or_default().clone())
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            if self.counters_only {
                return Histogram::noop();
            }
            Histogram::from_arc(self.histograms.lock().unwrap().entry(render(key)).or_default().clone())
        }
    }
}

#[tokio::test]
async fn metrics_count_ops_by_outcome_and_record_durations_and_content_bytes() {
    let recorder = metrics_capture::Capture::default();
    let layer = metrics::with_local_recorder(&recorder, MetricsLayer::new);
    let pipeline = Pipeline::builder().layer(layer).build(MemoryBackend::new());
    let content = Content::text("twelve bytes");
    let add =
        Add::new(thread("t"), Role::User, content.clone()).with_idempotency_key(IdempotencyKey::new("k").unwrap());
    pipeline.add(add.clone()).await.unwrap();
    pipeline.add(add).await.unwrap(); // deduplicated
    let missing = UpdateContent::new(thread("t"), MessageId::new("nope").unwrap(), Content::text("x"));
    assert!(pipeline.update_content(missing).await.is_err());
    pipeline.reserve(Reserve::new(thread("t"), Role::Assistant)).await.unwrap();

    let count = |key: &str| recorder.counters.lock().unwrap()[key].load(Ordering::SeqCst);
    assert_eq!(count("persist_ops_total{op=add,outcome=ok}"), 1);
    assert_eq!(count("persist_ops_total{op=add,outcome=deduplicated}"), 1);
    assert_eq!(count("persist_ops_total{op=update_content,outcome=not_found}"), 1);
    assert_eq!(count("persist_ops_total{op=reserve,outcome=ok}"), 1);
    assert_eq!(count("persist_ops_total{op=delete,outcome=ok}"), 0);
    let histograms = recorder.histograms.lock().unwrap();
    let durations = histograms["persist_op_duration_seconds{op=add}"].values();
    assert_eq!(durations.len(), 2);
    assert!(durations.iter().all(|d| *d >= 0.0 && *d < 5.0));
    // Registering probes whether each duration histogram records; the probe is no sample.
    assert!(histograms["persist_op_duration_seconds{op=delete}"].values().is_empty());
    let bytes = histograms["persist_content_bytes{op=add}"].values();
    assert_eq!(bytes, [content.json_len() as f64, content.json_len() as f64]);
    assert_eq!(histograms["persist_content_bytes{op=update_content}"].values(), [Content::text("x").json_len() as f64]);
}

#[tokio::test]
async fn metrics_count_with_a_recorder_that_keeps_no_histograms() {
    let recorder = metrics_capture::Capture { counters_only: true, ..Default::default() };
    let layer = metrics::with_local_recorder(&recorder, MetricsLayer::new);
    let pipeline = Pipeline::builder().layer(layer).build(MemoryBackend::new());
    pipeline.add(keyed_add("t", "a")).await.unwrap();
    pipeline.add(keyed_add("t", "a")).await.unwrap();
    let count = |key: &str| recorder.counters.lock().unwrap()[key].load(Ordering::SeqCst);
    assert_eq!(count("persist_ops_total{op=add,outcome=ok}"), 1);
    assert_eq!(count("persist_ops_total{op=add,outcome=deduplicated}"), 1);
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

#[tokio::test]
async fn metrics_time_the_whole_write_not_just_the_call() {
    let recorder = metrics_capture::Capture::default();
    let layer = metrics::with_local_recorder(&recorder, MetricsLayer::new);
    let slow = Faulty { delay: Duration::from_millis(30), ..Faulty::default() };
    let pipeline = Pipeline::builder().layer(layer).build(slow);
    pipeline.add(keyed_add("t", "slow")).await.unwrap();
    let histograms = recorder.histograms.lock().unwrap();
    let durations = histograms["persist_op_duration_seconds{op=add}"].values();
    assert_eq!(durations.len(), 1);
    assert!(durations[0] >= 0.030, "the backend's 30 ms are in the duration: {durations:?}");
}

#[tokio::test]
async fn events_publish_committed_writes_per_thread_reservation_first() {
    let events = Events::new(64);
    let pipeline = Pipeline::builder().layer(events.layer()).build(MemoryBackend::new());
    let mut mine = events.subscribe_thread(None, thread("mine"));
    let mut all = events.subscribe();
    pipeline.add(keyed_add("other", "noise")).await.unwrap();
    let slot = pipeline.reserve(Reserve::new(thread("mine"), Role::Assistant)).await.unwrap().message;
    let missing = UpdateContent::new(thread("mine"), MessageId::new("nope").unwrap(), Content::text("x"));
    assert!(pipeline.update_content(missing).await.is_err(), "refused writes are not published");
    let partial = UpdateContent::partial(thread("mine"), slot.id.clone(), Content::text("Hel"));
    pipeline.update_content(partial).await.unwrap();
    pipeline.update_content(UpdateContent::new(thread("mine"), slot.id.clone(), Content::text("Hello"))).await.unwrap();

    let first = mine.recv().await.unwrap();
    let reserved = first.result.message().unwrap();
    assert_eq!((first.result.op(), &reserved.id, reserved.status), (PersistOp::Reserve, &slot.id, Status::Reserved));
    assert!(reserved.content.is_placeholder(), "the id arrives before any content");
    assert_eq!(mine.recv().await.unwrap().result.message().unwrap().content.to_text(), "Hel");
    assert_eq!(mine.recv().await.unwrap().result.message().unwrap().status, Status::Complete);
    let mut seen = Vec::new();
    while let Ok(event) = all.try_recv() {
        seen.push((event.result.op(), event.result.thread_id().map(ToString::to_string).unwrap_or_default()));
    }
    assert_eq!(seen.len(), 4, "four committed writes: {seen:?}");
}

#[tokio::test]
async fn events_name_their_tenant_and_a_thread_subscription_follows_one_tenants_thread() {
    let events = Events::new(64);
    let pipeline = Pipeline::builder().layer(events.layer()).build(MemoryBackend::new());
    let acme = TenantId::new("acme").unwrap();
    let mut acme_general = events.subscribe_thread(Some(acme.clone()), thread("general"));
    let mut all = events.subscribe();
    let globex = pipeline.scoped(Context::new().with_tenant(TenantId::new("globex").unwrap()));
    globex.add(keyed_add("general", "globex's")).await.unwrap();
    pipeline.add(keyed_add("general", "no tenant's")).await.unwrap();
    pipeline.scoped(Context::new().with_tenant(acme.clone())).add(keyed_add("general", "acme's")).await.unwrap();

    let event = acme_general.recv().await.unwrap();
    assert_eq!(event.tenant.as_ref(), Some(&acme));
    assert_eq!(event.result.message().unwrap().content.to_text(), "acme's", "only acme's general");
    let tenants: Vec<_> = std::iter::from_fn(|| all.try_recv().ok())
        .map(|event| event.tenant.as_ref().map(|t| t.as_str().to_owned()))
        .collect();
    assert_eq!(tenants, [Some("globex".to_owned()), None, Some("acme".to_owned())]);
}

#[tokio::test]
async fn a_lagging_subscriber_never_blocks_writers() {
    let events = Events::new(4);
    let pipeline = Pipeline::builder().layer(events.layer()).build(MemoryBackend::new());
    let mut slow = events.subscribe();
    for i in 0..100 {
        pipeline.add(keyed_add("t", &format!("k{i}"))).await.unwrap();
    }
    assert!(matches!(slow.recv().await, Err(tokio::sync::broadcast::error::RecvError::Lagged(96))));
    assert_eq!(slow.recv().await.unwrap().result.message().unwrap().seq, 97, "then the newest events");
}

#[tokio::test]
async fn validate_refuses_writes_over_each_limit_before_the_store() {
    let store = MemoryBackend::new();
    let limits = Limits::new().max_content_bytes(100).max_metadata_bytes(50).max_metadata_depth(2).max_id_bytes(10);
    let pipeline = Pipeline::builder().layer(ValidateLayer::new(limits)).build(store.clone());
    let cases: Vec<(PersistArgs, &str)> = vec![
        (Add::new(thread("t"), Role::User, Content::text("x".repeat(200))).into(), "content"),
        (
            Add::new(thread("t"), Role::User, Content::text("x"))
                .with_metadata(Metadata::new().with("k", json!("v".repeat(60))))
                .into(),
            "metadata",
        ),
        (
            Reserve::new(thread("t"), Role::Assistant)
                .with_metadata(Metadata::new().with("k", json!({"a": {"b": 1}})))
                .into(),
            "metadata",
        ),
        (Add::new(thread("a-very-long-thread"), Role::User, Content::text("x")).into(), "thread_id"),
        (keyed_add("t", "an-overlong-key").into(), "idempotency_key"),
        (
            UpdateContent::new(thread("t"), MessageId::new("message-id-too-long").unwrap(), Content::text("x")).into(),
            "message_id",
        ),
    ];
    for (args, field) in cases {
        match pipeline.execute(args).await {
            Err(PersistError::InvalidInput { field: got, reason }) => {
                assert_eq!(got, field);
                assert!(reason.contains("limit"), "{reason}");
            }
            other => panic!("expected InvalidInput on {field}, got {other:?}"),
        }
    }
    assert_eq!(store.message_count(), 0);
    pipeline.add(Add::new(thread("t"), Role::User, Content::text("fits"))).await.unwrap();
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

#[tokio::test]
async fn mirror_failures_are_observed_never_surfaced_and_the_primary_wins() {
    let failed = Arc::new(AtomicU64::new(0));
    let seen = failed.clone();
    let broken = Pipeline::builder()
        .layer(InterceptLayer::new(|_: PersistArgs| -> persist::layer::Decision {
            std::ops::ControlFlow::Break(Err(PersistError::rejected("mirror is down")))
        }))
        .build(MemoryBackend::new());
    let mirror = MirrorLayer::new(broken).on_error(move |_, _| {
        seen.fetch_add(1, Ordering::SeqCst);
    });
    let primary = MemoryBackend::new();
    let pipeline = Pipeline::builder().layer(mirror.clone()).build(primary.clone());
    for i in 0..3 {
        pipeline.add(keyed_add("t", &format!("k{i}"))).await.expect("the primary's answer wins");
    }
    mirror.flushed().await;
    assert_eq!((mirror.failures(), failed.load(Ordering::SeqCst)), (3, 3));
    assert_eq!(primary.message_count(), 3);
}

#[tokio::test]
async fn mirror_shadows_only_committed_writes() {
    let shadow = MemoryBackend::new();
    let mirror = MirrorLayer::new(Pipeline::new(shadow.clone()));
    let pipeline = Pipeline::builder().layer(mirror.clone()).build(MemoryBackend::new());
    let id = MessageId::new("m1").unwrap();
    pipeline.add(keyed_add("t", "k").with_id(id.clone())).await.unwrap();
    let refused = UpdateContent::new(thread("t"), id.clone(), Content::text("x")).with_expected_version(9);
    assert!(pipeline.update_content(refused).await.is_err());
    pipeline.update_content(UpdateContent::new(thread("t"), id.clone(), Content::text("v2"))).await.unwrap();
    mirror.flushed().await;
    let copy = Pipeline::new(shadow).get(GetMessage::new(thread("t"), id)).await.unwrap().unwrap();
    assert_eq!((copy.content.to_text().as_str(), copy.version), ("v2", 2));
}

#[tokio::test]
async fn cleanup_of_stranded_reservations_runs_through_the_pipeline_and_its_routes() {
    let scratch_store = MemoryBackend::new();
    let scratch = Pipeline::new(scratch_store.clone());
    let main_store = MemoryBackend::new();
    let observed = Arc::new(Mutex::new(Vec::new()));
    let log = observed.clone();
    let pipeline = Pipeline::builder()
        .layer(ObserveLayer::new().on_args(move |args: &PersistArgs| {
            if args.op() == PersistOp::UpdateContent {
                let maintenance = args.context().extensions().get::<Maintenance>().is_some();
                log.lock().unwrap().push((args.thread_id().map(ToString::to_string).unwrap_or_default(), maintenance));
            }
        }))
        .layer(
            RouteLayer::builder().route("scratch", route::thread_prefix("scratch:"), scratch.clone()).build().unwrap(),
        )
        .build(main_store.clone());

    let routed = pipeline.reserve(Reserve::new(thread("scratch:1"), Role::Assistant)).await.unwrap().message;
    let local = pipeline.reserve(Reserve::new(thread("main"), Role::Assistant)).await.unwrap().message;
    // Their streams wrote a token each (a blank reservation is deleted, not marked).
    for reply in [&routed, &local] {
        let token = UpdateContent::appending(reply.thread_id.clone(), reply.id.clone(), Content::text("Hal"));
        pipeline.update_content(token).await.unwrap();
    }
    observed.lock().unwrap().clear();
    let kept = pipeline.add(keyed_add("main", "complete")).await.unwrap().message;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let young = pipeline.reserve(Reserve::new(thread("main"), Role::Assistant)).await.unwrap().message;

    let report = pipeline.cleanup_stranded(CleanupStranded::new(Duration::from_millis(10))).await.unwrap();
    let mut interrupted: Vec<_> =
        report.interrupted.iter().map(|s| (s.message.thread_id.clone(), s.message.id.clone())).collect();
    interrupted.sort();
    assert_eq!(interrupted, [(thread("main"), local.id.clone()), (thread("scratch:1"), routed.id.clone())]);
    assert_eq!((report.deleted.len(), report.skipped), (0, 0));
    // The routed reservation was marked in the store the reserve went to; main kept the rest.
    let marked = scratch.get(GetMessage::new(thread("scratch:1"), routed.id)).await.unwrap().unwrap();
    assert_eq!(marked.status, Status::Interrupted);
    let main = Pipeline::new(main_store);
    assert!(main.get(GetMessage::new(thread("main"), kept.id)).await.unwrap().is_some());
    let young = main.get(GetMessage::new(thread("main"), young.id)).await.unwrap().unwrap();
    assert_eq!(young.status, Status::Reserved, "young reservations stay as they are");
    assert!(main.get_thread(GetThread::new(thread("scratch:1"))).await.unwrap().is_none(), "main never saw scratch");
    assert_eq!(scratch_store.message_count(), 1);
    // Every write went through the stack, marked as maintenance.
    let mut seen = observed.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, [("main".to_owned(), true), ("scratch:1".to_owned(), true)]);
}

#[tokio::test]
async fn lifecycle_steps_go_through_the_layers_so_an_indexer_follows_them() {
    let index = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
    let sink = index.clone();
    let pipeline = Pipeline::builder()
        .layer(ObserveLayer::new().on_result(move |result: &PersistResult| {
            let mut index = sink.lock().unwrap();
            match result {
                PersistResult::Deleted(deleted) => {
                    for id in &deleted.message_ids {
                        index.remove(&(deleted.thread_id.to_string(), id.to_string()));
                    }
                }
                other => {
                    if let Some(m) = other.message().filter(|m| m.status == Status::Complete) {
                        index.insert((m.thread_id.to_string(), m.id.to_string()));
                    }
                }
            }
        }))
        .build(MemoryBackend::new());
    for i in 0..4 {
        pipeline.add(keyed_add("main", &format!("k{i}"))).await.unwrap();
    }
    let fork = persist::lifecycle::Fork::new(thread("main"), thread("branch"));
    assert_eq!(pipeline.fork(fork).await.unwrap().copied, 4);
    let count = |name: &str| index.lock().unwrap().iter().filter(|(t, _)| t == name).count();
    assert_eq!(count("branch"), 4, "the indexer saw every forked message");
    pipeline.delete(persist::args::Delete::after(thread("branch"), 2)).await.unwrap();
    assert_eq!(count("branch"), 2, "and every truncated one go");
    pipeline.prune(persist::lifecycle::Prune::new().with_keep_latest(1)).await.unwrap();
    assert_eq!((count("main"), count("branch")), (1, 1), "and what retention removed");
    pipeline.delete(persist::args::Delete::purge(thread("main"))).await.unwrap();
    assert_eq!(count("main"), 0, "and what a purge erased");
}

#[tokio::test]
async fn cleanup_reaches_every_tenant_and_deletes_each_reservation_in_its_own_tenant() {
    let store = MemoryBackend::new();
    let tenants = Arc::new(Mutex::new(Vec::new()));
    let log = tenants.clone();
    let pipeline = Pipeline::builder()
        .layer(ObserveLayer::new().on_args(move |args: &PersistArgs| {
            if args.op() == PersistOp::Delete {
                log.lock().unwrap().push(args.context().tenant().map(|t| t.as_str().to_owned()));
            }
        }))
        .build(store.clone());
    let (acme, globex) = (TenantId::new("acme").unwrap(), TenantId::new("globex").unwrap());
    for tenant in [Some(&acme), Some(&globex), None] {
        let context = Context::new().for_tenant(tenant.cloned());
        pipeline.reserve(Reserve::new(thread("general"), Role::Assistant).with_context(context)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(20)).await;

    // Confined to one tenant: only acme's.
    let only_acme = CleanupStranded::new(Duration::from_millis(10)).only_tenant(Some(acme.clone())).deleting();
    let report = pipeline.cleanup_stranded(only_acme).await.unwrap();
    assert_eq!(report.deleted.iter().map(|s| s.tenant.clone()).collect::<Vec<_>>(), [Some(acme.clone())]);
    // Across tenants (the default): the two others, each deleted in its own tenant.
    let report = pipeline.cleanup_stranded(CleanupStranded::new(Duration::from_millis(10)).deleting()).await.unwrap();
    let mut cleaned: Vec<_> = report.deleted.iter().map(|s| s.tenant.clone()).collect();
    cleaned.sort();
    assert_eq!(cleaned, [None, Some(globex.clone())]);
    assert_eq!(store.message_count(), 0);
    let mut deletes = tenants.lock().unwrap().clone();
    deletes.sort();
    assert_eq!(deletes, [None, Some("acme".to_owned()), Some("globex".to_owned())]);
}

#[tokio::test]
async fn cleanup_keeps_a_reservation_filled_since_it_was_found() {
    // A stack whose cleanup write sees the reservation changed: the version precondition keeps
    // it, whether the cleanup marks (the default) or deletes.
    for deleting in [false, true] {
        let store = MemoryBackend::new();
        let pipeline = Pipeline::new(store.clone());
        let slot = pipeline.reserve(Reserve::new(thread("t"), Role::Assistant)).await.unwrap().message;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let filler = pipeline.clone();
        let racing = Pipeline::builder()
            .layer(persist::layer::from_fn(move |args: PersistArgs, next| {
                let filler = filler.clone();
                async move {
                    let target = match &args {
                        PersistArgs::Delete(delete) => delete.target.message_id().cloned(),
                        PersistArgs::UpdateContent(update) if update.interrupt => Some(update.message_id.clone()),
                        _ => None,
                    };
                    if let (Some(id), Some(thread_id)) = (target, args.thread_id()) {
                        let partial = UpdateContent::partial(thread_id.clone(), id, Content::text("late chunk"));
                        filler.update_content(partial).await?;
                    }
                    next.run(args).await
                }
            }))
            .build(store.clone());
        let mut cleanup = CleanupStranded::new(Duration::from_millis(1));
        if deleting {
            cleanup = cleanup.deleting();
        }
        let report = racing.cleanup_stranded(cleanup).await.unwrap();
        assert!(report.deleted.is_empty() && report.interrupted.is_empty(), "{report:?}");
        assert_eq!(report.skipped, 1);
        let kept = pipeline.get(GetMessage::new(thread("t"), slot.id)).await.unwrap().unwrap();
        assert_eq!((kept.content.to_text(), kept.status), ("late chunk".to_owned(), Status::Reserved));
    }
}

#[tokio::test]
async fn cleanup_goes_on_past_a_reservation_a_layer_refuses() {
    // A layer that refuses to write one thread (as EncryptLayer refuses a tenant whose keys were
    // destroyed): that reservation is reported and kept, the others are cleaned.
    let store = MemoryBackend::new();
    let pipeline = Pipeline::new(store.clone());
    let blocked = pipeline.reserve(Reserve::new(thread("blocked"), Role::Assistant)).await.unwrap().message;
    let free = pipeline.reserve(Reserve::new(thread("free"), Role::Assistant)).await.unwrap().message;
    for reply in [&blocked, &free] {
        let token = UpdateContent::appending(reply.thread_id.clone(), reply.id.clone(), Content::text("Hal"));
        pipeline.update_content(token).await.unwrap();
    }
    let blocked = pipeline.get(GetMessage::new(thread("blocked"), blocked.id)).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let guarded = Pipeline::builder()
        .layer(persist::layer::from_fn(|args: PersistArgs, next| async move {
            if args.thread_id().is_some_and(|id| id.as_str() == "blocked") && args.op() == PersistOp::UpdateContent {
                return Err(PersistError::rejected("the keys of this thread's tenant were destroyed"));
            }
            next.run(args).await
        }))
        .build(store.clone());
    let report = guarded.cleanup_stranded(CleanupStranded::new(Duration::from_millis(1))).await.unwrap();
    assert_eq!(report.interrupted.iter().map(|s| s.message.id.as_str()).collect::<Vec<_>>(), [free.id.as_str()]);
    assert_eq!(report.refused.len(), 1, "{report:?}");
    assert_eq!(report.refused[0].stranded.message.id, blocked.id);
    assert!(report.refused[0].reason.contains("destroyed"), "{report:?}");
    let kept = pipeline.get(GetMessage::new(thread("blocked"), blocked.id)).await.unwrap().unwrap();
    assert_eq!(kept.status, Status::Reserved, "kept as it is");
}
