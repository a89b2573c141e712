//! `GET /metrics` in the Prometheus text format, on a listener of its own, read back with a
//! Prometheus text parser: requests by route template and status, their latency histogram,
//! requests in flight, and the store's calls from the pipeline's `MetricsLayer`.
//!
//! Its own test binary, with one test: the `metrics` facade takes one recorder per process, and
//! every server of the crate's other tests (`tests/serve`, one binary) would count its requests
//! into it.

use persist::layer::MetricsLayer;
use persist::memory::MemoryBackend;
use persist::{Pipeline, TenantId};
use persist_serve::metrics::{AlreadyInstalled, Prometheus};
use persist_serve::{ApiKeys, Auth, Server};
use prometheus_parse::{Sample, Scrape, Value};
use serde_json::{Value as Json, json};

const ACME: &str = "sk-acme-0123456789abcdef";

/// Serves `router`-less `serve` futures on ports of their own: the API's base URL.
async fn listener() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    (listener, base)
}

/// The sample of `metric` whose labels are all of `labels`.
fn sample<'a>(scrape: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> &'a Sample {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(name, value)| s.labels.get(name) == Some(*value)))
        .unwrap_or_else(|| panic!("no {metric} with {labels:?}"))
}

fn counter(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match sample(scrape, metric, labels).value {
        Value::Counter(value) => value,
        ref other => panic!("{metric} is not a counter: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_scraped_on_their_own_address_by_route_template_and_status() {
    let prometheus = Prometheus::new();
    prometheus.install().expect("the first recorder");
    assert_eq!(Prometheus::new().install(), Err(AlreadyInstalled), "one recorder per process");
    // The layer registers its metrics when it is built: after the recorder is installed.
    let pipeline = Pipeline::builder().layer(MetricsLayer::new()).build(MemoryBackend::new());
    let keys = ApiKeys::new().with_key(TenantId::new("acme").unwrap(), ACME).unwrap();
    let (api, base) = listener().await;
    tokio::spawn(Server::new(pipeline, Auth::Keys(keys)).serve(api, std::future::pending()));
    let (scraped, metrics) = listener().await;
    tokio::spawn(prometheus.clone().serve(scraped, std::future::pending()));

    let http = reqwest::Client::new();
    let post = |url: String, body: Json, key: Option<&'static str>| {
        let mut request = http.post(url).header("content-type", "application/json").body(body.to_string());
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        async move { request.send().await.unwrap() }
    };
    let mut ids = Vec::new();
    for _ in 0..3 {
        let created = post(format!("{base}/v1/conversations"), json!({}), Some(ACME)).await;
        assert_eq!(created.status(), 200);
        let created: Json = serde_json::from_str(&created.text().await.unwrap()).unwrap();
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let items = json!({"items": [{"id": "msg_1", "role": "user", "content": "Where is my order?"}]});
    let written = format!("{base}/v1/conversations/{}/items", ids[0]);
    assert_eq!(post(written.clone(), items, Some(ACME)).await.status(), 200);
    let other = json!({"items": [{"id": "msg_1", "role": "user", "content": "Another question."}]});
    assert_eq!(post(written, other, Some(ACME)).await.status(), 409, "an id the conversation holds");
    assert_eq!(post(format!("{base}/v1/conversations"), json!({}), None).await.status(), 401);
    let get = |url: String| {
        let request = http.get(url).bearer_auth(ACME);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get(format!("{base}/v1/conversations/{}", ids[1])).await, 200);
    assert_eq!(get(format!("{base}/v1/conversations/conv_0000000000000000000000000000000a")).await, 404);
    assert_eq!(get(format!("{base}/v1/nowhere/{}", ids[2])).await, 404);
    assert_eq!(get(format!("{base}/metrics")).await, 404, "never on the API's address");

    let scrape = http.get(format!("{metrics}/metrics")).send().await.unwrap();
    assert_eq!(scrape.status(), 200);
    assert_eq!(scrape.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let text = scrape.text().await.unwrap();
    let parsed = Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).unwrap();

    let created = [("method", "POST"), ("route", "/v1/conversations"), ("status", "200")];
    assert_eq!(counter(&parsed, "persist_serve_requests_total", &created), 3.0);
    let refused = [("method", "POST"), ("route", "/v1/conversations"), ("status", "401")];
    assert_eq!(counter(&parsed, "persist_serve_requests_total", &refused), 1.0);
    let latency = sample(&parsed, "persist_serve_request_duration_seconds", &[("route", "/v1/conversations")]);
    let Value::Histogram(buckets) = &latency.value else { panic!("a histogram: {latency:?}") };
    let bounds: Vec<f64> = buckets.iter().map(|bucket| bucket.less_than).collect();
    assert_eq!(bounds.first(), Some(&0.0005));
    assert_eq!(bounds.last(), Some(&f64::INFINITY));
    assert!(buckets.windows(2).all(|pair| pair[0].count <= pair[1].count), "cumulative: {buckets:?}");
    assert_eq!(buckets.last().unwrap().count, 4.0, "every create, the refused one too");
    let in_flight = sample(&parsed, "persist_serve_requests_in_flight", &[]);
    assert_eq!(in_flight.value, Value::Gauge(0.0), "none once answered");
    // The store's calls, from the pipeline's layer, by outcome: an error's code for a failure.
    assert_eq!(counter(&parsed, "persist_ops_total", &[("op", "restore"), ("outcome", "ok")]), 3.0, "the creates");
    let turns = |outcome| counter(&parsed, "persist_ops_total", &[("op", "append_turn"), ("outcome", outcome)]);
    assert_eq!((turns("ok"), turns("already_exists")), (1.0, 1.0), "the items written, then refused");
    assert!(counter(&parsed, "persist_ops_total", &[("op", "get_thread"), ("outcome", "ok")]) >= 2.0);
    let durations = sample(&parsed, "persist_op_duration_seconds", &[("op", "append_turn")]);
    assert!(matches!(&durations.value, Value::Histogram(buckets) if buckets.last().unwrap().count == 2.0));
    assert!(parsed.docs.contains_key("persist_serve_requests_total"), "described");

    // The route's template, never a path with its ids (the parser above skips a label value
    // holding `}`, which the text format allows: these lines are read as text).
    let line = |route: &str, status: &str, count: u32| {
        format!("persist_serve_requests_total{{method=\"GET\",route=\"{route}\",status=\"{status}\"}} {count}\n")
    };
    assert!(text.contains(&line("/v1/conversations/{id}", "200", 1)), "{text}");
    assert!(text.contains(&line("/v1/conversations/{id}", "404", 1)), "{text}");
    assert!(text.contains(&line("unmatched", "404", 2)), "/v1/nowhere/…, /metrics: {text}");
    assert!(!ids.iter().any(|id| text.contains(id.as_str())), "no id in a label: {text}");
}

/// The vector index's figures are read at each scrape: budget, what it holds, what answered.
#[tokio::test]
async fn the_vector_index_is_rendered_at_each_scrape() {
    use persist::args::Add;
    use persist::vector::{Embedding, Nearest};
    use persist::{Content, Role, ThreadId};
    use persist_recall::VectorIndex;

    let index = VectorIndex::new().with_budget(8 << 20).with_clusters_from(2);
    let prometheus = Prometheus::new().with_vector_index(index.clone());
    let pipeline = Pipeline::builder().layer(index.layer()).build(MemoryBackend::new());
    let gauge = |scrape: &Scrape, metric: &str| match sample(scrape, metric, &[]).value {
        Value::Gauge(value) => value,
        ref other => panic!("{metric} is not a gauge: {other:?}"),
    };
    let scrape = |text: String| Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let before = scrape(prometheus.render());
    assert_eq!(gauge(&before, "persist_vector_index_budget_bytes"), f64::from(8u32 << 20));
    assert_eq!(gauge(&before, "persist_vector_index_vectors"), 0.0);

    for (n, vector) in [[1.0, 0.0], [0.0, 1.0]].into_iter().enumerate() {
        let add = Add::new(ThreadId::new(format!("t{n}")).unwrap(), Role::User, Content::text("hi"))
            .with_embedding(Embedding::new("m", vector.to_vec()));
        pipeline.add(add).await.unwrap();
    }
    pipeline.nearest(Nearest::new(Embedding::new("m", vec![1.0, 0.0]))).await.unwrap();
    let after = scrape(prometheus.render());
    assert_eq!(gauge(&after, "persist_vector_index_vectors"), 2.0);
    assert_eq!(gauge(&after, "persist_vector_index_tenants"), 1.0);
    assert!(gauge(&after, "persist_vector_index_resident_bytes") > 0.0);
    assert_eq!(counter(&after, "persist_vector_index_queries_total", &[("answered", "index")]), 1.0);
    assert_eq!(counter(&after, "persist_vector_index_builds_total", &[]), 1.0);
    assert_eq!(gauge(&after, "persist_vector_index_clustered_vectors"), 0.0);
    assert_eq!(counter(&after, "persist_vector_index_restored_total", &[]), 0.0);
    assert_eq!(counter(&after, "persist_vector_index_saves_total", &[]), 0.0, "no folder: no files");
    // An approximate query over two vectors or more begins learning the lists (on a thread of
    // their own): a later query puts them in place.
    let mut clustered = 0.0;
    for _ in 0..500 {
        pipeline.nearest(Nearest::new(Embedding::new("m", vec![1.0, 0.0])).approximate()).await.unwrap();
        clustered = gauge(&scrape(prometheus.render()), "persist_vector_index_clustered_vectors");
        if clustered > 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(clustered, 2.0);
}
