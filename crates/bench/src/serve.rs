//! `persist serve`: what HTTP costs. 64 clients send `items.create` of one message, then
//! `items.list` of 20, through the server, and the same work is done in process: the same
//! store calls on the same conversations (for a create, the conversation's read and the turn;
//! for a list, the active branch's page) and the same conversions. On SQLite with one server, and on PostgreSQL with two servers
//! sharing one schema (the clients split between them).
//!
//! Two ratios. In process ÷ over HTTP is what a client pays for HTTP at all, loopback and the
//! client included (a plain figure). The judged one puts the server against its floor: the
//! same clients against an axum route in the same process that reads the request's body and
//! answers the bytes the server answered (no store, no key, no JSON read), so that the time of
//! an operation over HTTP is compared with the floor's time plus the in-process work's
//! (`1 / (1/floor + 1/in process)`, rates of the same round): what is left is the server's own
//! path (admission, the key, routing, extractors, the answer's building).

use std::sync::Arc;
use std::time::{Duration, Instant};

use persist::args::AppendTurn;
use persist::branch::Branch;
use persist::convert::openai_responses;
use persist::read::{GetThread, ListMessages};
use persist::serve::{ApiKeys, Auth, Server};
use persist::{Context, Order, Pipeline, TenantId, ThreadId};
use serde_json::{Value, json};

use axum::body::Bytes;
use axum::http::header;

use crate::Options;
use crate::measure::{median, p50_p99, rate};
use crate::report::{Row, Target};

pub(crate) const CLIENTS: usize = 64;
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

/// The floor: an axum route on a port of its own answering `create` to a POST of a
/// conversation's items and `list` to a GET of them, after reading the request's body; answers
/// its `/v1` base URL.
async fn floor(create: String, list: String) -> String {
    let create: &'static str = Box::leak(create.into_boxed_str());
    let list: &'static str = Box::leak(list.into_boxed_str());
    let route = axum::routing::post(move |body: Bytes| async move {
        std::hint::black_box(body);
        ([(header::CONTENT_TYPE, "application/json")], create)
    })
    .get(move || async move { ([(header::CONTENT_TYPE, "application/json")], list) });
    let router = axum::Router::new().route("/v1/conversations/{id}/items", route);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let base = format!("http://{}/v1", listener.local_addr().expect("an address"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

/// The rate the floor and the in-process work add up to: their times per operation summed.
pub(crate) fn floor_and_work(floor: f64, work: f64) -> f64 {
    1.0 / (1.0 / floor + 1.0 / work)
}

fn item(n: usize) -> Value {
    json!({"role": "user", "content": format!("Message {n}: where is my order? It was due on Tuesday.")})
}

/// What each of the 64 clients does `per_client` times; answers ops/s and every call's latency.
pub(crate) async fn clients<F, Fut>(per_client: usize, call: F) -> (f64, Vec<Duration>)
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

async fn get(http: &reqwest::Client, url: &str) -> Bytes {
    let response = http.get(url).bearer_auth(KEY).send().await.expect("the server answers");
    assert!(response.status().is_success(), "{url}: {}", response.status());
    response.bytes().await.expect("a body")
}

/// The rows of one store: `bases` (one server or two on the same store) against `pipeline`
/// in process, interleaved over `rounds`.
async fn measure(store: &str, pipeline: Pipeline, bases: Vec<String>, rounds: usize, per_client: usize) -> Vec<Row> {
    let http = crate::http_client(CLIENTS);
    let scoped = pipeline.scoped(Context::new().with_tenant(tenant()));
    let servers = if bases.len() == 1 { "one server".to_owned() } else { format!("{} servers", bases.len()) };
    let mut rows = Vec::new();

    // The floor answers what the server answers: one create's answer, one page of 20.
    let ids = conversations(&http, &bases[0], 100).await;
    let items = format!("{}/conversations/{}/items", bases[0], ids[0]);
    let created = post(&http, &items, &json!({"items": [item(0)]})).await.to_string();
    let page = get(&http, &format!("{items}?limit=20")).await;
    let floor = floor(created, String::from_utf8(page.to_vec()).expect("UTF-8")).await;

    // items.create of one message.
    let (mut over_http, mut in_process, mut ratios, mut latencies) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut floors, mut against_floor) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let ids = Arc::new(conversations(&http, &bases[0], 0).await);
        let floor_rate = {
            let (http, ids, floor) = (http.clone(), ids.clone(), floor.clone());
            clients(per_client, move |client, n| {
                let url = format!("{floor}/conversations/{}/items", ids[client]);
                let http = http.clone();
                async move {
                    post(&http, &url, &json!({"items": [item(n)]})).await;
                }
            })
            .await
            .0
        };
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
        // The server's store calls for the same request: the conversation read (a missing one
        // is 404), then the turn; the item imported with an id of the shape the server gives
        // each item (`msg_` and 32 hex digits: an explicit id, which the turn looks up first, as
        // a repeat of it would be), the written messages exported.
        let direct_rate = {
            let (scoped, ids) = (scoped.clone(), ids.clone());
            clients(per_client, move |client, n| {
                let (scoped, thread) = (scoped.clone(), ThreadId::new(&ids[client]).expect("an id"));
                async move {
                    scoped.get_thread(GetThread::new(thread.clone())).await.expect("a read").expect("a thread");
                    let mut item = item(n);
                    item["id"] = format!("msg_{:032x}", ((client as u128) << 64) | n as u128).into();
                    let turn = openai_responses::import(&[item]).expect("an item");
                    let written = scoped.append_turn(AppendTurn::of(thread, turn)).await.expect("a turn");
                    let items = openai_responses::export(&written.messages);
                    std::hint::black_box(serde_json::to_vec(&items).expect("JSON"));
                }
            })
            .await
            .0
        };
        over_http.push(http_rate);
        in_process.push(direct_rate);
        ratios.push(direct_rate / http_rate);
        floors.push(floor_rate);
        against_floor.push(floor_and_work(floor_rate, direct_rate) / http_rate);
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
        .ratio(median(&mut ratios), "in process / over HTTP"),
    );
    rows.push(
        Row::new(format!("serve ({store}): items.create of 1, 64 clients, the HTTP floor"), ops, median(&mut floors))
            .ratio(median(&mut against_floor), "(floor + in process) / over HTTP")
            .target(Target::RatioAtMost(1.15)),
    );

    // items.list of 20, of conversations of 100 items.
    let ids = Arc::new(conversations(&http, &bases[0], 100).await);
    let (mut over_http, mut in_process, mut ratios, mut latencies) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut floors, mut against_floor) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let floor_rate = {
            let (http, ids, floor) = (http.clone(), ids.clone(), floor.clone());
            clients(per_client, move |client, _| {
                let url = format!("{floor}/conversations/{}/items?limit=20", ids[client]);
                let http = http.clone();
                async move {
                    get(&http, &url).await;
                }
            })
            .await
            .0
        };
        let (http_rate, mut lat) = {
            let (http, ids, bases) = (http.clone(), ids.clone(), bases.clone());
            clients(per_client, move |client, _| {
                let url = format!("{}/conversations/{}/items?limit=20", bases[client % bases.len()], ids[client]);
                let http = http.clone();
                async move {
                    get(&http, &url).await;
                }
            })
            .await
        };
        let direct_rate = {
            let (scoped, ids) = (scoped.clone(), ids.clone());
            clients(per_client, move |client, _| {
                let (scoped, thread) = (scoped.clone(), ThreadId::new(&ids[client]).expect("an id"));
                async move {
                    // The server's listing: the active branch, newest first, reservations included.
                    let query = ListMessages::new(thread)
                        .on_branch(Branch::Active)
                        .with_limit(20)
                        .with_order(Order::Desc)
                        .include_reserved(true);
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
        floors.push(floor_rate);
        against_floor.push(floor_and_work(floor_rate, direct_rate) / http_rate);
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
        .ratio(median(&mut ratios), "in process / over HTTP"),
    );
    rows.push(
        Row::new(format!("serve ({store}): items.list of 20, 64 clients, the HTTP floor"), ops, median(&mut floors))
            .ratio(median(&mut against_floor), "(floor + in process) / over HTTP")
            .target(Target::RatioAtMost(1.15)),
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

/// `--only soak` (never in a full run: it reads the process's resident memory, which earlier
/// scenarios leave pages in): memory after a flood. 64 clients create conversations of one item
/// through one server on a SQLite file, in rounds of 5 000 (1 000 with `--quick`), 30 rounds
/// (3); the process's resident set (`/proc/self/status`: the server's, its store's and the
/// clients', with its anonymous part) and the store's size on disk are read after each round,
/// and 5 s after the last. Memory that grows round after round while the store keeps growing,
/// and keeps growing after the store's caches are full, is a leak; memory that stops growing is
/// caches filling to their size and the allocator keeping pages it freed for the next flood.
/// The last row's ratio is its resident set over the one ten rounds earlier (a full run only).
///
/// Measured (2 cores, glibc's allocator, 30 rounds of 4 992 creates): 14.1 MB resident before
/// the first request, 28.6 MB after round 1, then about 4 MB more a round while SQLite's page
/// caches filled (the writer's connection holds up to 64 MiB, its lane's 16 MiB), up to 96.7 MB
/// (83.0 MB anonymous) at round 18 (90 000 conversations); from there to round 30 it stayed
/// between 96.4 and 96.8 MB while the store grew from 76 to 114 MB, and 96.6 MB 5 s later (a
/// 40-round run: 85.1 to 85.3 MB anonymous from round 18 to 40, the store at 150 MB). A
/// plateau, not a leak.
pub(crate) fn soak(options: &Options) -> Vec<Row> {
    let rounds = options.scale(30, 3);
    let per_client = options.scale(5000, 1000) / CLIENTS;
    if resident().is_none() {
        return vec![Row::skipped("serve soak", "no /proc/self/status")];
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let sqlite = persist::sqlite::SqliteBackend::open(dir.path().join("soak.db")).await.expect("open");
        let base = start(Pipeline::new(sqlite.clone())).await;
        let http = crate::http_client(CLIENTS);
        let stored = || -> f64 {
            let files = std::fs::read_dir(dir.path()).expect("the store's directory");
            files.filter_map(|file| file.ok()?.metadata().ok()).map(|meta| meta.len() as f64).sum::<f64>() / MB
        };
        let (started, _) = resident().unwrap_or_default();
        let ops = CLIENTS * per_client;
        let mut rows = Vec::new();
        let mut after = Vec::with_capacity(rounds);
        for round in 1..=rounds {
            let (http, base) = (http.clone(), base.clone());
            let (rate, mut latencies) = clients(per_client, move |_, n| {
                let (http, url) = (http.clone(), format!("{base}/conversations"));
                async move {
                    post(&http, &url, &json!({"items": [item(n)]})).await;
                }
            })
            .await;
            let (total, anonymous) = resident().unwrap_or_default();
            after.push(total);
            let (p50, p99) = p50_p99(&mut latencies);
            let note = format!(
                "resident {total:.1} MB ({anonymous:.1} MB anonymous; {started:.1} MB before), store {:.1} MB",
                stored()
            );
            rows.push(
                Row::new(format!("serve soak (SQLite): round {round}, {ops} creates, 64 clients"), ops as u64, rate)
                    .latency(p50, p99)
                    .note(note),
            );
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (idle, anonymous) = resident().unwrap_or_default();
        let mut last = Row::new(format!("serve soak (SQLite): 5 s after {rounds} rounds"), (rounds * ops) as u64, 0.0)
            .note(format!("resident {idle:.1} MB ({anonymous:.1} MB anonymous)"));
        if let Some(earlier) = rounds.checked_sub(11).map(|at| after[at]) {
            last = last
                .ratio(idle / earlier, "resident / resident 10 rounds before the last")
                .target(Target::RatioAtMost(1.05));
        }
        rows.push(last);
        sqlite.close().await;
        rows
    })
}

const MB: f64 = 1024.0 * 1024.0;

/// The process's resident set and its anonymous part (`VmRSS`, `RssAnon`), in MB.
fn resident() -> Option<(f64, f64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|line| line.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024.0 / MB)
    };
    Some((field("VmRSS:")?, field("RssAnon:")?))
}
