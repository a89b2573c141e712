//! MCP over stdio ([`McpServer::serve_streams`], what [`McpServer::serve_stdio`] runs): once the
//! client is initialized, a plain tool call, answered by persist itself, answers exactly what
//! rmcp answers the same call (sent with request `_meta`, which only rmcp takes); before, every
//! message is rmcp's (as is any request of a session without `initialize`, whose requests carry
//! `_meta`); every answer under way is written before the serving ends.

use persist::memory::MemoryBackend;
use persist::{Pipeline, TenantId};
use persist_mcp::McpServer;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, DuplexStream, Lines, ReadHalf, WriteHalf};
use tokio::task::JoinHandle;

/// A client writing raw lines to a server served over an in-process pipe.
struct Lined {
    to_server: WriteHalf<DuplexStream>,
    from_server: Lines<BufReader<ReadHalf<DuplexStream>>>,
    serving: JoinHandle<std::io::Result<()>>,
}

impl Lined {
    fn start() -> Self {
        let server =
            McpServer::new(Pipeline::new(MemoryBackend::new())).with_tenant(Some(TenantId::new("acme").unwrap()));
        let (server_end, client_end) = tokio::io::duplex(1 << 16);
        let (input, output) = tokio::io::split(server_end);
        let serving = tokio::spawn(server.serve_streams(input, output));
        let (from_server, to_server) = tokio::io::split(client_end);
        Self { to_server, from_server: BufReader::new(from_server).lines(), serving }
    }

    async fn send(&mut self, message: &Value) {
        self.to_server.write_all(format!("{message}\n").as_bytes()).await.unwrap();
    }

    async fn next(&mut self) -> Option<Value> {
        self.from_server.next_line().await.unwrap().map(|line| serde_json::from_str(&line).unwrap())
    }

    /// Sends a request and reads its answer (nothing else in flight).
    async fn ask(&mut self, message: &Value) -> Value {
        self.send(message).await;
        self.next().await.expect("an answer")
    }

    /// The `initialize` handshake, as MCP clients open a session.
    async fn initialize(&mut self) {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}});
        let answer = self.ask(&init).await;
        assert!(answer["result"]["serverInfo"].is_object(), "{answer}");
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
    }
}

fn call(id: Value, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": arguments}})
}

/// The same call with request `_meta`: never plain, so rmcp answers it.
fn through_rmcp(mut call: Value) -> Value {
    call["params"]["_meta"] = json!({});
    call
}

#[tokio::test]
async fn a_plain_tool_call_answers_what_rmcp_answers() {
    let mut client = Lined::start();
    client.initialize().await;
    let appended = call(json!(1), "append_message", json!({"thread_id": "trip", "text": "Lisbon at 9"}));
    let answer = client.ask(&appended).await;
    assert_eq!(answer["result"]["isError"], json!(false), "{answer}");
    let text = answer["result"]["content"][0]["text"].as_str().expect("the answer as text");
    assert_eq!(&serde_json::from_str::<Value>(text).unwrap(), &answer["result"]["structuredContent"]);

    let calls = [
        call(json!(2), "read_thread", json!({"thread_id": "trip"})),
        call(json!("a-string-id"), "list_threads", json!({})),
        call(json!(-7), "search_messages", json!({"query": "Lisbon"})),
        call(json!(3), "read_thread", json!({"thread_id": "nowhere"})),
        call(json!(4), "read_thread", json!({"thread": "a misspelled argument"})),
        call(json!(5), "recall", json!({"text": "flights"})),
        call(json!(6), "no_such_tool", json!({})),
        json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "list_threads"}}),
    ];
    for call in calls {
        let direct = client.ask(&call).await;
        let by_rmcp = client.ask(&through_rmcp(call.clone())).await;
        assert_eq!(direct, by_rmcp, "{call}");
        assert_eq!(direct["id"], call["id"], "{direct}");
    }
    let read = client.ask(&call(json!(8), "read_thread", json!({"thread_id": "trip"}))).await;
    assert_eq!(read["result"]["structuredContent"]["messages"][0]["text"], json!("Lisbon at 9"), "{read}");

    client.to_server.shutdown().await.unwrap();
    assert_eq!(client.next().await, None, "nothing after the input closed");
    client.serving.await.unwrap().expect("served to the end");
}

#[tokio::test]
async fn before_the_client_is_initialized_every_message_is_rmcps() {
    let mut client = Lined::start();
    // A tool call first, without the metadata a session without `initialize` needs: rmcp
    // refuses it with a JSON-RPC error, and waits for the session to begin.
    let refused = client.ask(&call(json!(1), "list_threads", json!({}))).await;
    assert_eq!((refused["id"].clone(), refused["error"].is_object()), (json!(1), true), "{refused}");
    client.initialize().await;
    let answer = client.ask(&call(json!(2), "list_threads", json!({}))).await;
    assert_eq!(answer["result"]["isError"], json!(false), "{answer}");
    client.to_server.shutdown().await.unwrap();
    assert_eq!(client.next().await, None);
    client.serving.await.unwrap().expect("served to the end");
}

#[tokio::test]
async fn every_answer_under_way_is_written_before_the_serving_ends() {
    let mut client = Lined::start();
    client.initialize().await;
    let calls = 200;
    for n in 0..calls {
        let message = call(json!(n), "append_message", json!({"thread_id": format!("t{}", n % 7), "text": "hi"}));
        // One in three through rmcp: both kinds of answer are under way when the input closes.
        client.send(&if n % 3 == 0 { through_rmcp(message) } else { message }).await;
    }
    client.to_server.shutdown().await.unwrap();
    let mut ids = Vec::new();
    while let Some(answer) = client.next().await {
        assert_eq!(answer["result"]["isError"], json!(false), "{answer}");
        ids.push(answer["id"].as_u64().unwrap());
    }
    client.serving.await.unwrap().expect("served to the end");
    ids.sort_unstable();
    assert_eq!(ids, (0..calls).collect::<Vec<_>>(), "every call answered once");
}
