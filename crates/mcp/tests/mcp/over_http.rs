//! MCP over streamable HTTP ([`McpServer::http_service`]): a plain tool call, answered by the
//! service itself, answers exactly what rmcp answers the same call (sent with request `_meta`,
//! which only rmcp takes), for every kind of answer; what is not a plain call is rmcp's.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use persist::memory::MemoryBackend;
use persist::{Context, Pipeline, TenantId};
use persist_mcp::{McpHttpService, McpServer};
use serde_json::{Value, json};
use tower::ServiceExt as _;

fn service() -> McpHttpService {
    McpServer::new(Pipeline::new(MemoryBackend::new())).with_tenant(Some(TenantId::new("acme").unwrap())).http_service()
}

/// A POST of `body` with the headers MCP clients send (`accept` as given).
fn post(body: &Value, accept: &str) -> Request<Full<Bytes>> {
    Request::post("/mcp")
        .header("host", "127.0.0.1:8080")
        .header("content-type", "application/json")
        .header("accept", accept)
        .header("mcp-protocol-version", "2025-06-18")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

const ACCEPT: &str = "application/json, text/event-stream";

/// The answer's status and body (JSON when it is).
async fn send(service: &McpHttpService, request: Request<Full<Bytes>>) -> (StatusCode, Value) {
    let response: http::Response<BoxBody<Bytes, Infallible>> = service.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, body)
}

fn call(id: Value, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": arguments}})
}

/// The same call with request `_meta`: never plain, so rmcp answers it.
fn through_rmcp(mut call: Value) -> Value {
    call["params"]["_meta"] = json!({});
    call
}

/// `call` answered directly and by rmcp: the same status and body; the answer.
async fn both_ways(service: &McpHttpService, call: Value) -> (StatusCode, Value) {
    let direct = send(service, post(&call, ACCEPT)).await;
    let by_rmcp = send(service, post(&through_rmcp(call.clone()), ACCEPT)).await;
    assert_eq!(direct, by_rmcp, "{call}");
    direct
}

#[tokio::test]
async fn a_plain_tool_call_answers_what_rmcp_answers() {
    let service = service();
    let appended =
        call(json!(1), "append_message", json!({"thread_id": "trip", "text": "Lisbon at 9", "role": "user"}));
    let (status, answer) = send(&service, post(&appended, ACCEPT)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["result"]["isError"], json!(false), "{answer}");
    let structured = &answer["result"]["structuredContent"];
    let text = answer["result"]["content"][0]["text"].as_str().expect("the answer as text");
    assert_eq!(&serde_json::from_str::<Value>(text).unwrap(), structured);
    assert_eq!(answer["id"], json!(1));

    // Answers, each kind of refusal, string and integer ids.
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
        let (status, answer) = both_ways(&service, call.clone()).await;
        assert_eq!(status, StatusCode::OK, "{call}: {answer}");
        assert_eq!(answer["id"], call["id"], "{answer}");
    }
    let (_, read) = both_ways(&service, call(json!(8), "read_thread", json!({"thread_id": "trip"}))).await;
    assert_eq!(read["result"]["structuredContent"]["messages"][0]["text"], json!("Lisbon at 9"), "{read}");
}

#[tokio::test]
async fn the_callers_tenant_confines_a_plain_call() {
    let service = service();
    let appended = call(json!(1), "append_message", json!({"thread_id": "trip", "text": "Lisbon at 9"}));
    assert_eq!(send(&service, post(&appended, ACCEPT)).await.1["result"]["isError"], json!(false));
    for meta in [false, true] {
        let read = call(json!(2), "read_thread", json!({"thread_id": "trip"}));
        let mut request = post(&if meta { through_rmcp(read) } else { read }, ACCEPT);
        request.extensions_mut().insert(Context::new().with_tenant(TenantId::new("globex").unwrap()));
        let (_, answer) = send(&service, request).await;
        assert_eq!(answer["result"]["isError"], json!(true), "{answer}");
    }
}

#[tokio::test]
async fn what_is_not_a_plain_call_is_rmcps_to_answer() {
    let service = service();
    let read = call(json!(1), "list_threads", json!({}));
    // A client that does not take the event stream: refused, as rmcp refuses it.
    assert_eq!(send(&service, post(&read, "application/json")).await.0, StatusCode::NOT_ACCEPTABLE);
    // A weighted Accept is rmcp's to read, and answered.
    let (status, answer) = send(&service, post(&read, "application/json;q=1, text/event-stream;q=0.5")).await;
    assert_eq!((status, &answer["result"]["isError"]), (StatusCode::OK, &json!(false)), "{answer}");
    // A batch, a notification, a float id, an unknown protocol version: rmcp's answers.
    let notification = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(send(&service, post(&notification, ACCEPT)).await.0, StatusCode::ACCEPTED);
    let float = call(json!(1.5), "list_threads", json!({}));
    assert_ne!(send(&service, post(&float, ACCEPT)).await.0, StatusCode::OK);
    let mut unknown = post(&read, ACCEPT);
    unknown.headers_mut().insert("mcp-protocol-version", "1999-01-01".parse().unwrap());
    assert_eq!(send(&service, unknown).await.0, StatusCode::BAD_REQUEST);
    // No host named: refused, as rmcp refuses it.
    let mut hostless = post(&read, ACCEPT);
    hostless.headers_mut().remove("host");
    assert_eq!(send(&service, hostless).await.0, StatusCode::BAD_REQUEST);
    // A body over the limit.
    let huge = call(json!(1), "append_message", json!({"thread_id": "t", "text": "x".repeat(5 << 20)}));
    assert_eq!(send(&service, post(&huge, ACCEPT)).await.0, StatusCode::PAYLOAD_TOO_LARGE);
}
