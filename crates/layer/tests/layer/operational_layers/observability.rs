//! TraceLayer and MetricsLayer: what they record of writes and reads, with capturing subscribers.

use std::sync::atomic::Ordering;
use std::time::Duration;

use persist::args::{Add, Reserve, UpdateContent};
use persist::layer::{MetricsLayer, TraceLayer};
use persist::memory::MemoryBackend;
use persist::read::{GetThread, ListMessages};
use persist::{Content, IdempotencyKey, MessageId, Pipeline, Role};

use super::{Faulty, keyed_add, thread};

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
    persist_testkit::prepare_capture();
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
    persist_testkit::prepare_capture();
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
    persist_testkit::prepare_capture();
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
async fn trace_records_content_only_when_asked() {
    let capture = tracing_capture::Capture::default();
    persist_testkit::prepare_capture();
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
