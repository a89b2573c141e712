//! `persist mcp`: what a tool call costs over MCP. `read_thread` (the compacted view of a
//! thread of 20 messages, each client its own thread) is called by 64 clients over streamable
//! HTTP (`persist serve`'s `/mcp`, a key per request, stateless JSON answers), and the same read
//! is done in process (the store's compacted read and the answer's JSON); then one client
//! calls it over stdio, 64 calls in flight on one pipe, against a child process serving MCP on
//! its standard input and output (this binary, started again as `--mcp-stdio-child URL`), as a
//! desktop agent's child server is.
//!
//! Each transport has its floor: over HTTP, an axum route answering the same bytes to a POST;
//! over stdio, a child process (`--mcp-stdio-floor FILE`) answering the same bytes to each line,
//! with blocking reads and writes (the pipe alone). The judged ratios are (the floor + in
//! process) ÷ over the transport: what MCP adds to the read and to the transport.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use persist::args::Add;
use persist::branch::Branch;
use persist::mcp::McpServer;
use persist::serve::{ApiKeys, Auth, Server};
use persist::summary::ReadCompacted;
use persist::{Content, Context, Pipeline, Role, TenantId, ThreadId};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

use crate::Options;
use crate::measure::{median, p50_p99, rate};
use crate::report::{Row, Target};
use crate::serve::{CLIENTS, clients, floor_and_work};

const KEY: &str = "sk-bench-0123456789abcdef";
/// The protocol version the clients speak (stateless servers take it on every request).
const PROTOCOL: &str = "2025-06-18";

fn tenant() -> TenantId {
    TenantId::new("bench").expect("a tenant id")
}

fn thread(client: usize) -> String {
    format!("mcp-{client}")
}

/// `tools/call` of `read_thread` for `client`'s thread, as JSON-RPC request `id`.
fn read_call(id: u64, client: usize) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "read_thread", "arguments": {"thread_id": thread(client)}}})
}

/// The child process of the stdio row: serves MCP on stdio over the store at `url`, for the
/// bench's tenant, until its input closes.
pub(crate) fn stdio_child(url: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    rt.block_on(async {
        let backend = persist::sqlite::SqliteBackend::open(url).await.expect("open");
        let server = McpServer::new(Pipeline::new(backend.clone())).with_tenant(Some(tenant()));
        server.serve_stdio().await.expect("served");
        backend.close().await;
    });
}

/// The stdio floor's child process: answers each request read (a line with an `"id"`; a
/// notification, as JSON-RPC has it, gets none) with the bytes of `file` and a line end, until
/// its input closes; blocking reads and writes, flushed when no line is waiting.
pub(crate) fn stdio_floor(file: &str) {
    use std::io::{BufRead as _, Write as _};
    let mut answer = std::fs::read(file).expect("the answer");
    answer.push(b'\n');
    let mut input = std::io::BufReader::with_capacity(1 << 16, std::io::stdin().lock());
    let mut output = std::io::BufWriter::new(std::io::stdout().lock());
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line).expect("read") == 0 {
            break;
        }
        if line.windows(4).any(|bytes| bytes == b"\"id\"") {
            output.write_all(&answer).expect("written");
        }
        if input.buffer().is_empty() {
            output.flush().expect("flushed");
        }
    }
    output.flush().expect("flushed");
}

/// A thread of 20 messages per client.
async fn threads(pipeline: &Pipeline) {
    let scoped = pipeline.scoped(Context::new().with_tenant(tenant()));
    for client in 0..CLIENTS {
        let thread = ThreadId::new(thread(client)).expect("an id");
        for n in 0..20 {
            let role = if n % 2 == 0 { Role::User } else { Role::Assistant };
            let text = format!("Message {n}: where is my order? It was due on Tuesday, and it is Thursday now.");
            scoped.add(Add::new(thread.clone(), role, Content::text(text))).await.expect("an add");
        }
    }
}

/// One tool call over HTTP; checks that it answered the thread.
async fn over_http(http: &reqwest::Client, url: &str, id: u64, client: usize) -> axum::body::Bytes {
    let response = http
        .post(url)
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", PROTOCOL)
        .body(read_call(id, client).to_string())
        .send()
        .await
        .expect("the server answers");
    assert!(response.status().is_success(), "{url}: {}", response.status());
    let bytes = response.bytes().await.expect("a body");
    let answer: Value = serde_json::from_slice(&bytes).expect("JSON");
    assert_eq!(answer["result"]["structuredContent"]["messages"].as_array().map(Vec::len), Some(20), "{answer}");
    bytes
}

/// The floor: an axum route on a port of its own answering `answer` to a POST, after reading
/// the request's body (no MCP, no store, no key); answers its URL.
async fn floor(answer: String) -> String {
    let answer: &'static str = Box::leak(answer.into_boxed_str());
    let route = axum::routing::post(move |body: axum::body::Bytes| async move {
        std::hint::black_box(body);
        ([(axum::http::header::CONTENT_TYPE, "application/json")], answer)
    });
    let router = axum::Router::new().route("/mcp", route);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let url = format!("http://{}/mcp", listener.local_addr().expect("an address"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

/// The tool's work in process: the compacted read, the answer as JSON.
async fn in_process(scoped: &persist::Scoped, client: usize) {
    let thread = ThreadId::new(thread(client)).expect("an id");
    let view = scoped.compacted(ReadCompacted::new(thread).on_branch(Branch::Active)).await.expect("a read");
    let messages: Vec<Value> = view
        .messages
        .iter()
        .map(|m| {
            json!({"id": m.id.as_str(), "seq": m.seq, "role": m.role.as_str(), "text": m.content.to_text(),
                        "status": m.status.as_str(), "created_at": m.created_at.to_rfc3339()})
        })
        .collect();
    assert_eq!(messages.len(), 20);
    std::hint::black_box(json!({"messages": messages}).to_string());
}

/// `calls` tool calls over stdio to this binary started with `args` (the server or the floor),
/// `CLIENTS` in flight; answers ops/s.
async fn over_stdio(args: [&str; 2], calls: usize) -> f64 {
    let exe = std::env::current_exe().expect("this binary");
    let mut child = tokio::process::Command::new(exe)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the child starts");
    let mut input = child.stdin.take().expect("its input");
    let mut output = BufReader::new(child.stdout.take().expect("its output")).lines();
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "persist-bench", "version": "1"}}});
    input.write_all(format!("{init}\n").as_bytes()).await.expect("written");
    output.next_line().await.expect("read").expect("initialized");
    input.write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n").await.expect("written");
    // At most CLIENTS calls in flight: each answer read lets the next call go.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(CLIENTS));
    let started = Instant::now();
    let reader = {
        let in_flight = in_flight.clone();
        tokio::spawn(async move {
            for _ in 0..calls {
                let line = output.next_line().await.expect("read").expect("an answer");
                let answer: Value = serde_json::from_str(&line).expect("JSON");
                assert_eq!(answer["result"]["structuredContent"]["messages"].as_array().map(Vec::len), Some(20));
                in_flight.add_permits(1);
            }
        })
    };
    for n in 0..calls {
        in_flight.acquire().await.expect("open").forget();
        input.write_all(format!("{}\n", read_call(n as u64 + 1, n % CLIENTS)).as_bytes()).await.expect("written");
    }
    reader.await.expect("every answer read");
    let elapsed = started.elapsed();
    drop(input);
    let _ = child.wait().await;
    rate(calls, elapsed)
}

pub(crate) fn run(options: &Options) -> Vec<Row> {
    let rounds = options.scale(5, 1);
    let per_client = options.scale(40, 3);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = dir.path().join("mcp.db");
        let sqlite = persist::sqlite::SqliteBackend::open(&db).await.expect("open");
        let pipeline = Pipeline::new(sqlite.clone());
        threads(&pipeline).await;
        let keys = ApiKeys::new().with_key(tenant(), KEY).expect("a key");
        let server = Server::new(pipeline.clone(), Auth::Keys(keys))
            .with_service("/mcp", McpServer::new(pipeline.clone()).http_service());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let url = format!("http://{}/mcp", listener.local_addr().expect("an address"));
        tokio::spawn(server.serve(listener, std::future::pending()));
        let http = crate::http_client(CLIENTS);
        let scoped = pipeline.scoped(Context::new().with_tenant(tenant()));
        let ids = Arc::new(AtomicU64::new(1));

        let answer = over_http(&http, &url, 0, 0).await;
        let floor = floor(String::from_utf8(answer.to_vec()).expect("UTF-8")).await;

        let (mut http_rates, mut direct_rates, mut ratios, mut latencies) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut floors, mut against_floor) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let floor_rate = {
                let (http, floor, ids) = (http.clone(), floor.clone(), ids.clone());
                clients(per_client, move |client, _| {
                    let (http, floor, id) = (http.clone(), floor.clone(), ids.fetch_add(1, Ordering::Relaxed));
                    async move {
                        over_http(&http, &floor, id, client).await;
                    }
                })
                .await
                .0
            };
            let (http_rate, mut lat) = {
                let (http, url, ids) = (http.clone(), url.clone(), ids.clone());
                clients(per_client, move |client, _| {
                    let (http, url, id) = (http.clone(), url.clone(), ids.fetch_add(1, Ordering::Relaxed));
                    async move {
                        over_http(&http, &url, id, client).await;
                    }
                })
                .await
            };
            let direct_rate = {
                let scoped = scoped.clone();
                clients(per_client, move |client, _| {
                    let scoped = scoped.clone();
                    async move { in_process(&scoped, client).await }
                })
                .await
                .0
            };
            http_rates.push(http_rate);
            direct_rates.push(direct_rate);
            ratios.push(direct_rate / http_rate);
            floors.push(floor_rate);
            against_floor.push(floor_and_work(floor_rate, direct_rate) / http_rate);
            latencies.append(&mut lat);
        }
        let ops = (CLIENTS * per_client) as u64;
        let (p50, p99) = p50_p99(&mut latencies);
        let direct = median(&mut direct_rates);
        let mut rows = vec![
            Row::new("mcp (SQLite): read_thread of 20, 64 clients, in process", ops, direct),
            Row::new("mcp (SQLite): read_thread of 20, 64 clients over streamable HTTP", ops, median(&mut http_rates))
                .latency(p50, p99)
                .ratio(median(&mut against_floor), "(floor + in process) / over HTTP")
                .target(Target::RatioAtMost(1.3)),
            Row::new("mcp (SQLite): read_thread of 20, 64 clients, the HTTP floor", ops, median(&mut floors))
                .ratio(median(&mut ratios), "in process / over HTTP"),
        ];
        // Over stdio, the server and the floor side by side, a round each in turn.
        let answer_file = dir.path().join("answer.json");
        std::fs::write(&answer_file, &answer).expect("written");
        let (db, answer_file) = (db.to_string_lossy(), answer_file.to_string_lossy());
        let (mut stdio_rates, mut stdio_floors, mut stdio_against_floor) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let floor_rate = over_stdio(["--mcp-stdio-floor", &answer_file], ops as usize).await;
            let stdio_rate = over_stdio(["--mcp-stdio-child", &db], ops as usize).await;
            stdio_floors.push(floor_rate);
            stdio_rates.push(stdio_rate);
            stdio_against_floor.push(floor_and_work(floor_rate, direct) / stdio_rate);
        }
        let stdio = median(&mut stdio_rates);
        rows.push(
            Row::new("mcp (SQLite): read_thread of 20, 64 in flight over stdio (a child process)", ops, stdio)
                .ratio(median(&mut stdio_against_floor), "(floor + in process) / over stdio")
                .target(Target::RatioAtMost(1.3)),
        );
        rows.push(
            Row::new(
                "mcp (SQLite): read_thread of 20, 64 in flight over stdio, the floor",
                ops,
                median(&mut stdio_floors),
            )
            .ratio(direct / stdio, "in process / over stdio"),
        );
        sqlite.close().await;
        rows
    })
}
