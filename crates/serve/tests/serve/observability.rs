//! What an operator reads: one access line per request at `INFO` under its own target, the
//! store's traces labelled as reads or writes, 5xx answers that say what to do while the log
//! holds the cause; and a search with no word answered with nothing found.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use persist::PersistError;
use persist::layer::{TraceLayer, from_fn};
use persist::memory::MemoryBackend;
use persist::{PersistOp, Pipeline};
use serde_json::{Value, json};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

use crate::support::{ACME, Fields, start};

/// What the driver of a store would say: never in an answer.
const DRIVER_WORDS: &str = "pool timed out: connection refused by 10.0.0.5:5432";

/// An event as logged: its target, level and fields (`message` its text), and the `op` of the
/// span it was recorded in, when that is a store call's.
#[derive(Debug, Clone)]
struct Logged {
    target: String,
    level: tracing::Level,
    fields: HashMap<String, String>,
    op: Option<String>,
}

/// Every event, and each span's `op`.
#[derive(Clone, Default)]
struct Log {
    events: Arc<Mutex<Vec<Logged>>>,
    spans: Arc<Mutex<HashMap<u64, String>>>,
    next: Arc<AtomicU64>,
}

impl Subscriber for Log {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        let mut fields = Fields::default();
        span.record(&mut fields);
        if let Some(op) = fields.0.remove("op") {
            self.spans.lock().unwrap().insert(id, op);
        }
        Id::from_u64(id)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let op = event.parent().and_then(|id| self.spans.lock().unwrap().get(&id.into_u64()).cloned());
        let metadata = event.metadata();
        let logged = Logged { target: metadata.target().to_owned(), level: *metadata.level(), fields: fields.0, op };
        self.events.lock().unwrap().push(logged);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

impl Log {
    fn events(&self) -> Vec<Logged> {
        self.events.lock().unwrap().clone()
    }
}

async fn call(http: &reqwest::Client, method: reqwest::Method, url: String) -> (u16, Value) {
    let mut request = http.request(method.clone(), url).bearer_auth(ACME);
    if method == reqwest::Method::POST {
        request = request.header("content-type", "application/json").body("{}");
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Value::Null))
}

/// The server and its client run on this test's one thread, where the log is the default.
#[tokio::test]
async fn one_access_line_per_request_reads_labelled_as_reads_and_5xx_without_the_drivers_words() {
    let log = Log::default();
    persist_testkit::prepare_capture();
    let _default = tracing::subscriber::set_default(log.clone());
    let failing = Arc::new(AtomicBool::new(false));
    let fails = Arc::clone(&failing);
    let pipeline = Pipeline::builder()
        .layer(TraceLayer::new())
        .layer(from_fn(move |args, next| {
            let fail = fails.load(Ordering::SeqCst);
            async move {
                match fail {
                    true => Err(PersistError::temporary(DRIVER_WORDS)),
                    false => next.run(args).await,
                }
            }
        }))
        .build(MemoryBackend::new());
    let base = start(pipeline).await;
    let http = reqwest::Client::new();
    let (status, created) = call(&http, reqwest::Method::POST, format!("{base}/v1/conversations")).await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(call(&http, reqwest::Method::GET, format!("{base}/v1/conversations/{id}")).await.0, 200);
    assert_eq!(call(&http, reqwest::Method::GET, format!("{base}/v1/conversations/{id}/items")).await.0, 200);
    assert_eq!(call(&http, reqwest::Method::GET, format!("{base}/v1/nowhere/{id}")).await.0, 404);
    failing.store(true, Ordering::SeqCst);
    let (status, refused) = call(&http, reqwest::Method::GET, format!("{base}/v1/conversations/{id}")).await;

    assert_eq!(status, 503);
    let message = refused["error"]["message"].as_str().unwrap();
    assert_eq!(message, "The store is unavailable; retry later.", "what the client can do");
    assert!(!refused.to_string().contains("10.0.0.5") && !refused.to_string().contains("pool"), "{refused}");
    let events = log.events();
    let logs_cause = |e: &&Logged| e.fields.values().any(|value| value.contains(DRIVER_WORDS));
    let cause = events.iter().filter(logs_cause).find(|e| e.target == "persist_serve::error");
    assert_eq!(cause.expect("the server logs the cause").level, tracing::Level::WARN);

    let access: Vec<&Logged> = events.iter().filter(|e| e.target == "persist_serve::access").collect();
    let answered: Vec<(&str, &str)> =
        access.iter().map(|e| (e.fields["status"].as_str(), e.fields["route"].as_str())).collect();
    assert_eq!(
        answered,
        [
            ("200", "/v1/conversations"),
            ("200", "/v1/conversations/{id}"),
            ("200", "/v1/conversations/{id}/items"),
            ("404", "unmatched"),
            ("503", "/v1/conversations/{id}"),
        ],
        "one access line per request, a 5xx's too"
    );
    assert!(access.iter().all(|e| e.level == tracing::Level::INFO && e.fields["message"] == "answered"));
    assert!(access.iter().all(|e| e.fields["request_id"].starts_with("req_")));

    let traced: Vec<&Logged> = events.iter().filter(|e| e.target.starts_with("persist_layer::trace")).collect();
    assert!(traced.iter().any(|e| e.fields["message"] == "persist read"), "the reads are traced");
    for event in traced {
        let op: PersistOp = event.op.as_deref().expect("inside a store call's span").parse().unwrap();
        let expected = if op.is_read() { "persist read" } else { "persist write" };
        assert!(event.fields["message"].starts_with(expected), "{op:?}: {event:?}");
    }
}

#[tokio::test]
async fn a_query_with_no_word_finds_nothing() {
    // Logged as the other test is (a callsite first met on a thread without a subscriber could
    // be cached as of no interest to the other's).
    persist_testkit::prepare_capture();
    let _default = tracing::subscriber::set_default(Log::default());
    let base = start(Pipeline::new(MemoryBackend::new())).await;
    let http = reqwest::Client::new();
    let (status, created) = call(&http, reqwest::Method::POST, format!("{base}/v1/conversations")).await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().unwrap();
    let empty = json!({"object": "list", "data": [], "has_more": false, "next_cursor": null});
    for query in ["%F0%9F%A6%80", "", "%E2%80%94%20%21%3F", "%F0%9F%A6%80&limit=5"] {
        let (status, page) = call(&http, reqwest::Method::GET, format!("{base}/v1/persist/search?q={query}")).await;
        assert_eq!((status, &page), (200, &empty), "q={query}");
    }
    let scoped = format!("{base}/v1/persist/search?q=%F0%9F%A6%80&conversation={id}");
    assert_eq!(call(&http, reqwest::Method::GET, scoped).await, (200, empty));
    // What a query with no word cannot excuse is still refused.
    let missing = format!("{base}/v1/persist/search?q=%F0%9F%A6%80&conversation=conv_missing");
    assert_eq!(call(&http, reqwest::Method::GET, missing).await.0, 404);
    let limit = format!("{base}/v1/persist/search?q=%F0%9F%A6%80&limit=0");
    assert_eq!(call(&http, reqwest::Method::GET, limit).await.0, 400);
    let long = format!("{base}/v1/persist/search?q={}", "%21".repeat(5000));
    assert_eq!(call(&http, reqwest::Method::GET, long).await.0, 400, "a query too long is refused");
}
