//! `persist serve`: what HTTP costs. 64 clients send `items.create` of one message, then
//! `items.list` of 20, through the server, and the same work (the converter and the same
//! pipeline) is done in process; the ratio is the server's overhead. On SQLite with one server,
//! and on PostgreSQL with two servers sharing one schema (the clients split between them).

use std::sync::Arc;
use std::time::{Duration, Instant};

use persist::args::AppendTurn;
use persist::convert::openai_responses;
use persist::read::ListMessages;
use persist::serve::{ApiKeys, Auth, Server};
use persist::{Context, Order, Pipeline, TenantId, ThreadId};
use serde_json::{Value, json};

use crate::Options;
use crate::measure::{median, p50_p99, rate};
use crate::report::{Row, Target};

const CLIENTS: usize = 64;
const KEY: &str = "sk-bench-0123456789abcdef";

fn tenant() -> TenantId {
    TenantId::new("bench").expect("a tenant id")
}

/// A server of `pipeline` on a port of its own; answers its `/v1` base URL.
async fn start(pipeline: Pipeline) -> String {
    let keys = ApiKeys::new().with_key(tenant(), KEY).expect("a key");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let base = format!("http://{}/v1", listener.local_addr().expect("an address"));
    tokio::spawn(Server::new(pipeline, Auth::Keys(keys)).serve(listener, std::future::pending()));
    base
}

fn item(n: usize) -> Value {
    json!({"role": "user", "content": format!("Message {n}: where is my order? It was due on Tuesday.")})
}

/// What each of the clients does `per_client` times; answers ops/s and every call's latency.
async fn clients<F, Fut>(per_client: usize, call: F) -> (f64, Vec<Duration>)
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let call = Arc::new(call);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        let call = call.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(per_client);
            for n in 0..per_client {
                let at = Instant::now();
                call(client, n).await;
                latencies.push(at.elapsed());
            }
            latencies
        });
    }
    let latencies: Vec<Duration> = tasks.join_all().await.into_iter().flatten().collect();
    (rate(CLIENTS * per_client, started.elapsed()), latencies)
}

/// A conversation per client, made through the server; answers their ids.
async fn conversations(http: &reqwest::Client, base: &str, items: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let created = post(http, &format!("{base}/conversations"), &json!({})).await;
        let id = created["id"].as_str().expect("an id").to_owned();
        for start in (0..items).step_by(100) {
            let batch: Vec<Value> = (start..(start + 100).min(items)).map(item).collect();
            post(http, &format!("{base}/conversations/{id}/items"), &json!({"items": batch})).await;
        }
        ids.push(id);
    }
    ids
}

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> Value {
    let response = http
        .post(url)
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("the server answers");
    assert!(response.status().is_success(), "{url}: {}", response.status());
    serde_json::from_str(&response.text().await.expect("a body")).expect("JSON")
}

async fn get(http: &reqwest::Client, url: &str) {
    let response = http.get(url).bearer_auth(KEY).send().await.expect("the server answers");
    assert!(response.status().is_success(), "{url}: {}", response.status());
    response.bytes().await.expect("a body");
}

/// The rows of one store: `bases` (one server or two on the same store) against `pipeline`
/// in process, interleaved over `rounds`.
async fn measure(store: &str, pipeline: Pipeline, bases: Vec<String>, rounds: usize, per_client: usize) -> Vec<Row> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(CLIENTS).build().expect("a client");
    let scoped = pipeline.scoped(Context::new().with_tenant(tenant()));
    let servers = if bases.len() == 1 { "one server".to_owned() } else { format!("{} servers", bases.len()) };
    let mut rows = Vec::new();

    // items.create of one message.
    let (mut over_http, mut in_process, mut ratios, mut latencies) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let ids = Arc::new(conversations(&http, &bases[0], 0).await);
        let (http_rate, mut lat) = {
            let (http, ids, bases) = (http.clone(), ids.clone(), bases.clone());
            clients(per_client, move |client, n| {
                let url = format!("{}/conversations/{}/items", bases[client % bases.len()], ids[client]);
                let http = http.clone();
                async move {
                    post(&http, &url, &json!({"items": [item(n)]})).await;
                }
            })
            .await
        };
        let direct_rate = {
            let scoped = scoped.clone();
            clients(per_client, move |client, n| {
                let scoped = scoped.clone();
                async move {
                    let thread = ThreadId::new(format!("direct-{round}-{client}")).expect("an id");
                    let turn = openai_responses::import(&[item(n)]).expect("an item");
                    scoped.append_turn(AppendTurn::of(thread, turn)).await.expect("a turn");
                }
            })
            .await
            .0
        };
        over_http.push(http_rate);
        in_process.push(direct_rate);
        ratios.push(direct_rate / http_rate);
        latencies.append(&mut lat);
    }
    let ops = (CLIENTS * per_client) as u64;
    let (p50, p99) = p50_p99(&mut latencies);
    rows.push(Row::new(
        format!("serve ({store}): items.create of 1, 64 clients, in process"),
        ops,
        median(&mut in_process),
    ));
    rows.push(
        Row::new(
            format!("serve ({store}): items.create of 1, 64 clients over HTTP, {servers}"),
            ops,
            median(&mut over_http),
        )
        .latency(p50, p99)
        .ratio(median(&mut ratios), "in process / over HTTP")
        .target(Target::RatioAtMost(1.5)),
    );

    // items.list of 20, of conversations of 100 items.
    let ids = Arc::new(conversations(&http, &bases[0], 100).await);
    let (mut over_http, mut in_process, mut ratios, mut latencies) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (http_rate, mut lat) = {
            let (http, ids, bases) = (http.clone(), ids.clone(), bases.clone());
            clients(per_client, move |client, _| {
                let url = format!("{}/conversations/{}/items?limit=20", bases[client % bases.len()], ids[client]);
                let http = http.clone();
                async move { get(&http, &url).await }
            })
            .await
        };
        let direct_rate = {
            let (scoped, ids) = (scoped.clone(), ids.clone());
            clients(per_client, move |client, _| {
                let (scoped, thread) = (scoped.clone(), ThreadId::new(&ids[client]).expect("an id"));
                async move {
                    let query = ListMessages::new(thread).with_limit(20).with_order(Order::Desc).include_reserved(true);
                    let page = scoped.list(query).await.expect("a page");
                    let items = openai_responses::export(&page.items);
                    std::hint::black_box(serde_json::to_vec(&items).expect("JSON"));
                }
            })
            .await
            .0
        };
        over_http.push(http_rate);
        in_process.push(direct_rate);
        ratios.push(direct_rate / http_rate);
        latencies.append(&mut lat);
    }
    let (p50, p99) = p50_p99(&mut latencies);
    rows.push(Row::new(
        format!("serve ({store}): items.list of 20, 64 clients, in process"),
        ops,
        median(&mut in_process),
    ));
    rows.push(
        Row::new(
            format!("serve ({store}): items.list of 20, 64 clients over HTTP, {servers}"),
            ops,
            median(&mut over_http),
        )
        .latency(p50, p99)
        .ratio(median(&mut ratios), "in process / over HTTP")
        .target(Target::RatioAtMost(1.5)),
    );
    rows
}

pub(crate) fn run(options: &Options) -> Vec<Row> {
    let rounds = options.scale(5, 1);
    let per_client = options.scale(40, 3);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let sqlite = persist::sqlite::SqliteBackend::open(dir.path().join("serve.db")).await.expect("open");
        let pipeline = Pipeline::new(sqlite.clone());
        let base = start(pipeline.clone()).await;
        let mut rows = measure("SQLite", pipeline, vec![base], rounds, per_client).await;
        sqlite.close().await;

        let url = crate::postgres::url();
        let Ok(mut admin) = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await else {
            rows.push(Row::skipped("serve (PostgreSQL)", format!("skipped: no server at {url}")));
            return rows;
        };
        let schema = format!("persist_bench_serve_{}", std::process::id());
        let connect = || {
            persist::postgres::PostgresBackend::builder(url.clone()).schema(schema.clone()).max_connections(8).connect()
        };
        // Two servers, each with a backend (a pool) of its own, as two instances would have.
        let (one, two) = (connect().await.expect("connect"), connect().await.expect("connect"));
        let bases = vec![start(Pipeline::new(one.clone())).await, start(Pipeline::new(two.clone())).await];
        rows.extend(measure("PostgreSQL", Pipeline::new(one.clone()), bases, rounds, per_client).await);
        one.close().await;
        two.close().await;
        let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&mut admin).await;
        rows
    })
}
