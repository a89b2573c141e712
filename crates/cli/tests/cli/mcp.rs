//! `persist mcp` and `persist serve`'s `/mcp` as their binary runs them: the command line's
//! checks, and an embeddings endpoint named by `--embeddings-url` (a stand-in this test serves)
//! embedding what is written and serving recall, over MCP and the API; a failing endpoint loses
//! no message. (The official MCP clients run against the binary in `.ci/run`:
//! `crates/mcp/clients`.)

#![cfg(unix)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::served::Served;
use crate::support::{path_str, run};

const KEY: &str = "sk-acme-0123456789abcdef";
const EMBEDDINGS_KEY: &str = "sk-embeddings-test";

#[test]
fn mcp_refuses_what_does_not_apply() {
    for (args, says) in [
        (vec!["--url", "memory:", "mcp", "--json"], "--json"),
        (vec!["--url", "memory:", "mcp", "--embeddings-url", "ftp://example.com/v1"], "--embeddings-url"),
        (vec!["--url", "memory:", "mcp", "--embeddings-model", "m"], "--embeddings-url"),
        (vec!["--url", "memory:", "--across-tenants", "mcp"], "--across-tenants"),
    ] {
        let output = run(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// A stand-in of an OpenAI-compatible embeddings endpoint on a port of its own: each text's
/// words hashed into 16 numbers; answers 503 while `failing`. Counts the calls it answered.
struct Embeddings {
    addr: String,
    failing: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
}

fn vector(text: &str) -> Vec<f32> {
    let mut vector = vec![0.0f32; 16];
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let hash = word.to_lowercase().bytes().fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        vector[(hash % 16) as usize] += 1.0;
    }
    vector
}

impl Embeddings {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (failing, calls) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let (fail, count) = (failing.clone(), calls.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (fail, count) = (fail.clone(), count.clone());
                std::thread::spawn(move || serve_embeddings(stream, &fail, &count));
            }
        });
        Self { addr, failing, calls }
    }
}

/// Answers the requests of one connection (kept alive) until the client closes it.
fn serve_embeddings(stream: TcpStream, failing: &AtomicBool, calls: &AtomicUsize) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let (mut length, mut authorized, mut line) = (0usize, false, String::new());
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(value) = lower.strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
            authorized |= line.trim() == format!("authorization: Bearer {EMBEDDINGS_KEY}")
                || line.trim() == format!("Authorization: Bearer {EMBEDDINGS_KEY}");
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let request: Value = serde_json::from_slice(&body).unwrap();
        let (status, answer) = if failing.load(Ordering::SeqCst) {
            (503, json!({"error": {"message": "overloaded"}}))
        } else if !authorized {
            (401, json!({"error": {"message": "no key"}}))
        } else {
            calls.fetch_add(1, Ordering::SeqCst);
            let data: Vec<Value> = request["input"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
                .map(|(index, text)| json!({"object": "embedding", "index": index, "embedding": vector(text.as_str().unwrap())}))
                .collect();
            (200, json!({"object": "list", "data": data, "model": request["model"]}))
        };
        let body = answer.to_string();
        let head =
            format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
        if writer.write_all(head.as_bytes()).and_then(|()| writer.write_all(body.as_bytes())).is_err() {
            return;
        }
    }
}

/// A JSON-RPC request to `/mcp` as an MCP client sends it: the answer's `result`.
fn mcp(served: &Served, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let mut stream = TcpStream::connect(&served.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-06-18\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        served.addr,
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{answer}");
    let answer: Value = serde_json::from_str(body).unwrap();
    answer["result"].clone()
}

fn tool(served: &Served, name: &str, arguments: Value) -> Value {
    let result = mcp(served, "tools/call", json!({"name": name, "arguments": arguments}));
    assert_eq!(result["isError"], false, "{name}: {result}");
    result["structuredContent"].clone()
}

#[test]
fn serve_embeds_through_the_named_endpoint_and_recalls_over_mcp_and_the_api() {
    let embeddings = Embeddings::start();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", path_str(&dir.path().join("memory.db")));
    let endpoint = format!("http://{}/v1", embeddings.addr);
    let keys = format!("acme:{KEY}");
    let args = [
        "--url",
        &url,
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--embeddings-url",
        &endpoint,
        "--embeddings-model",
        "stand-in",
        "--embeddings-dimensions",
        "16",
        // Generous: with 5 s, a loaded machine once stored the first message without its vector
        // (recall then answered the other thread). The failing endpoint below answers 503 at once.
        "--embeddings-timeout",
        "60s",
    ];
    let served =
        Served::start(&args, &[("PERSIST_SERVE_KEYS", keys.as_str()), ("PERSIST_EMBEDDINGS_KEY", EMBEDDINGS_KEY)]);

    for (thread, text) in [("trip", "my flight to lisbon leaves at nine"), ("garden", "water the plants on friday")] {
        tool(&served, "append_message", json!({"thread_id": thread, "text": text, "role": "user"}));
    }
    assert_eq!(embeddings.calls.load(Ordering::SeqCst), 2, "each message embedded as it was written");
    let found = tool(&served, "recall", json!({"text": "when does the flight to lisbon leave", "limit": 1}));
    assert_eq!(found["hits"][0]["thread_id"], "trip", "{found}\n{}", served.log());

    // The API's recall: the same vectors.
    let (status, body) =
        served.call("POST", "/v1/persist/recall", Some(KEY), r#"{"query": "plants on friday", "limit": 1}"#);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("water the plants"), "{body}");

    // An endpoint that fails loses no message: stored without its vector, and said in the log.
    embeddings.failing.store(true, Ordering::SeqCst);
    let kept = tool(&served, "append_message", json!({"thread_id": "trip", "text": "also book a taxi"}));
    assert_eq!(kept["seq"], 2);
    let read = tool(&served, "read_thread", json!({"thread_id": "trip", "view": "full"}));
    assert_eq!(read["messages"][1]["text"], "also book a taxi");
    embeddings.failing.store(false, Ordering::SeqCst);
    let log = served.stop();
    assert!(log.contains("persist::recall"), "the failed embedding is logged: {log}");
    assert!(!log.contains(EMBEDDINGS_KEY), "the endpoint's key is never logged");
}

#[test]
fn without_an_endpoint_recall_says_what_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", path_str(&dir.path().join("memory.db")));
    let keys = format!("acme:{KEY}");
    let served =
        Served::start(&["--url", &url, "serve", "--addr", "127.0.0.1:0"], &[("PERSIST_SERVE_KEYS", keys.as_str())]);
    let result = mcp(&served, "tools/call", json!({"name": "recall", "arguments": {"text": "flight"}}));
    assert_eq!(result["isError"], true);
    assert!(result["content"][0]["text"].as_str().unwrap().contains("--embeddings-url"), "{result}");
    let (status, body) = served.call("POST", "/v1/persist/recall", Some(KEY), r#"{"query": "flight"}"#);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("recall_unavailable") && body.contains("--embeddings-url"), "{body}");
    served.stop();
}
