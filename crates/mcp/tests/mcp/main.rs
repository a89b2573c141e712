//! The MCP server through rmcp's own client, over an in-process pipe: every tool, its paging,
//! its errors, the resources and tenancy. (The official Python and TypeScript clients run
//! against the `persist` binary in `.ci/run`: `crates/mcp/clients`.)

mod over_http;

use persist::memory::MemoryBackend;
use persist::recall::{AutoEmbedLayer, HashEmbedder};
use persist::{Pipeline, TenantId};
use persist_mcp::{McpServer, TOOLS};
use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, CallToolResult, ReadResourceRequestParams, ResourceContents};
use rmcp::service::{RoleClient, RunningService};
use serde_json::{Value, json};

type Client = RunningService<RoleClient, ()>;

/// A client connected to `server` through an in-process pipe.
async fn connect(server: McpServer) -> Client {
    let (server_end, client_end) = tokio::io::duplex(1 << 20);
    tokio::spawn(async move {
        if let Ok(running) = server.serve(server_end).await {
            let _ = running.waiting().await;
        }
    });
    ().serve(client_end).await.expect("the client initializes")
}

fn acme() -> Option<TenantId> {
    Some(TenantId::new("acme").unwrap())
}

async fn call(client: &Client, tool: &str, arguments: Value) -> CallToolResult {
    let Value::Object(arguments) = arguments else { panic!("arguments are an object") };
    let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
    client.call_tool(params).await.expect("the call is answered")
}

/// A call that succeeds: its structured answer, checked to be its text too.
async fn ok(client: &Client, tool: &str, arguments: Value) -> Value {
    let result = call(client, tool, arguments).await;
    let text = text(&result);
    assert_ne!(result.is_error, Some(true), "{tool} failed: {text}");
    let answer = result.structured_content.expect("a structured answer");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), answer);
    answer
}

/// A call that fails as a tool error: its text.
async fn refused(client: &Client, tool: &str, arguments: Value) -> String {
    let result = call(client, tool, arguments).await;
    assert_eq!(result.is_error, Some(true), "{tool} was expected to fail: {}", text(&result));
    text(&result)
}

fn text(result: &CallToolResult) -> String {
    let [content] = result.content.as_slice() else { panic!("one content block: {:?}", result.content) };
    content.as_text().expect("text content").text.clone()
}

#[tokio::test]
async fn every_tool_is_listed_with_an_object_schema() {
    let client = connect(McpServer::new(Pipeline::new(MemoryBackend::new()))).await;
    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
    assert_eq!(names, TOOLS);
    for tool in &tools {
        assert_eq!(tool.input_schema.get("type"), Some(&json!("object")), "{}", tool.name);
        assert!(tool.description.as_ref().is_some_and(|d| d.len() > 40), "{} is described", tool.name);
    }
    let read = tools.iter().find(|tool| tool.name == "read_thread").unwrap();
    assert_eq!(read.input_schema["required"], json!(["thread_id"]));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn messages_are_appended_read_listed_and_searched() {
    let client = connect(McpServer::new(Pipeline::new(MemoryBackend::new())).with_tenant(acme())).await;
    let first = ok(
        &client,
        "append_message",
        json!({"thread_id": "trip", "text": "My flight to Lisbon leaves at 9", "role": "user", "thread_metadata": {"user_id": "u1"}}),
    )
    .await;
    assert_eq!((first["thread_id"].as_str(), first["seq"].as_u64()), (Some("trip"), Some(1)));
    ok(&client, "append_message", json!({"thread_id": "trip", "text": "Noted: Lisbon at 9."})).await;
    // A retry with its key writes nothing twice.
    let keyed = json!({"thread_id": "plants", "text": "Water the plants", "idempotency_key": "k-1"});
    let once = ok(&client, "append_message", keyed.clone()).await;
    assert_eq!(ok(&client, "append_message", keyed).await, once);

    let threads = ok(&client, "list_threads", json!({})).await;
    let ids: Vec<&str> =
        threads["threads"].as_array().unwrap().iter().map(|t| t["thread_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["plants", "trip"]);
    assert_eq!(threads["threads"][1]["metadata"], json!({"user_id": "u1"}));
    assert_eq!(threads["next_cursor"], Value::Null);

    let full = ok(&client, "read_thread", json!({"thread_id": "trip", "view": "full"})).await;
    let messages = full["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!((messages[0]["role"].as_str(), messages[1]["role"].as_str()), (Some("user"), Some("assistant")));
    assert_eq!(messages[0]["text"], "My flight to Lisbon leaves at 9");
    assert!(messages[0]["created_at"].as_str().unwrap().ends_with('Z'));
    let compacted = ok(&client, "read_thread", json!({"thread_id": "trip"})).await;
    assert_eq!((compacted["summary"].clone(), compacted["messages"].clone()), (Value::Null, full["messages"].clone()));

    let found = ok(&client, "search_messages", json!({"query": "lisbon"})).await;
    assert_eq!(found["hits"].as_array().unwrap().len(), 2);
    assert!(found["hits"][0]["snippet"].as_str().unwrap().contains("**Lisbon**"));
    let one = ok(&client, "search_messages", json!({"query": "plants", "thread_id": "trip"})).await;
    assert_eq!(one["hits"], json!([]));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn long_answers_are_paged_with_cursors() {
    let client = connect(McpServer::new(Pipeline::new(MemoryBackend::new()))).await;
    for i in 1..=120 {
        ok(&client, "append_message", json!({"thread_id": "long", "text": format!("message number {i}")})).await;
    }
    for view in ["full", "compacted"] {
        let (mut seqs, mut cursor) = (Vec::new(), Value::Null);
        loop {
            let mut arguments = json!({"thread_id": "long", "view": view});
            if !cursor.is_null() {
                arguments["cursor"] = cursor.clone();
            }
            let page = ok(&client, "read_thread", arguments).await;
            let messages = page["messages"].as_array().unwrap();
            assert!(messages.len() <= 50);
            seqs.extend(messages.iter().map(|m| m["seq"].as_u64().unwrap()));
            cursor = page["next_cursor"].clone();
            if cursor.is_null() {
                break;
            }
        }
        assert_eq!(seqs, (1..=120).collect::<Vec<u64>>(), "{view}");
    }
    for i in 0..3 {
        ok(&client, "append_message", json!({"thread_id": format!("t{i}"), "text": "hello"})).await;
    }
    let page = ok(&client, "list_threads", json!({"limit": 2})).await;
    assert_eq!(page["threads"].as_array().unwrap().len(), 2);
    let rest = ok(&client, "list_threads", json!({"limit": 2, "cursor": page["next_cursor"]})).await;
    let ids: Vec<&str> = rest["threads"].as_array().unwrap().iter().map(|t| t["thread_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["t0", "long"]);
    let hits = ok(&client, "search_messages", json!({"query": "number", "limit": 50})).await;
    let more =
        ok(&client, "search_messages", json!({"query": "number", "limit": 50, "cursor": hits["next_cursor"]})).await;
    assert_eq!(more["hits"][0]["seq"], 70);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn working_memory_is_patched_replaced_and_guarded_by_its_version() {
    let client = connect(McpServer::new(Pipeline::new(MemoryBackend::new()))).await;
    let empty = ok(&client, "read_memory", json!({"resource": "user:42"})).await;
    assert_eq!(empty, json!({"resource": "user:42", "document": null, "version": 0}));
    ok(&client, "update_memory", json!({"resource": "user:42", "patch": {"name": "Ada", "diet": {"vegan": true}}}))
        .await;
    let patched =
        ok(&client, "update_memory", json!({"resource": "user:42", "patch": {"diet": {"nuts": false}, "name": null}}))
            .await;
    assert_eq!(patched["document"], json!({"diet": {"vegan": true, "nuts": false}}));
    assert_eq!(patched["version"], 2);
    let conflict =
        refused(&client, "update_memory", json!({"resource": "user:42", "document": {"x": 1}, "version": 1})).await;
    assert!(conflict.contains("conflict") && conflict.contains("version 2"), "{conflict}");
    let replaced =
        ok(&client, "update_memory", json!({"resource": "user:42", "document": {"x": 1}, "version": 2})).await;
    assert_eq!((replaced["document"].clone(), replaced["version"].clone()), (json!({"x": 1}), json!(3)));
    assert_eq!(ok(&client, "read_memory", json!({"resource": "user:42"})).await, replaced);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn bad_arguments_are_tool_errors_and_the_server_goes_on() {
    let client = connect(McpServer::new(Pipeline::new(MemoryBackend::new()))).await;
    for (tool, arguments, says) in [
        ("read_thread", json!({}), "thread_id"),
        ("read_thread", json!({"thread_id": "t", "limit": 0}), "limit"),
        ("list_threads", json!({"limit": "ten"}), "invalid type"),
        ("list_threads", json!({"cursor": "not-a-cursor"}), "cursor"),
        ("search_messages", json!({"query": "x", "colour": "red"}), "unknown field"),
        ("update_memory", json!({"resource": "u", "patch": {}, "document": {}}), "not both"),
        ("update_memory", json!({"resource": "u"}), "patch"),
        ("append_message", json!({"thread_id": "t", "text": "  "}), "empty"),
        ("append_message", json!({"thread_id": "t", "text": "x", "role": "robot"}), "unknown variant"),
        ("read_thread", json!({"thread_id": "nowhere"}), "not found"),
    ] {
        let text = refused(&client, tool, arguments).await;
        assert!(text.contains(says), "{tool}: {text}");
    }
    // An unknown tool is the protocol's error (invalid params), not the model's.
    let params = CallToolRequestParams::new("no_such_tool").with_arguments(serde_json::Map::new());
    let error = client.call_tool(params).await.unwrap_err().to_string();
    assert!(error.contains("the tools are"), "{error}");
    let schema = client.list_all_tools().await.unwrap().into_iter().find(|t| t.name == "read_thread").unwrap();
    let limit = &schema.input_schema["properties"]["limit"];
    assert_eq!((limit["minimum"].clone(), limit["maximum"].clone()), (json!(1), json!(100)), "{limit}");
    // Nothing was half-written, and the server still answers.
    assert_eq!(ok(&client, "list_threads", json!({})).await["threads"], json!([]));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn recall_finds_by_meaning_with_an_embedder_and_says_what_it_needs_without() {
    let embedder = HashEmbedder::new(64);
    let pipeline = Pipeline::builder().layer(AutoEmbedLayer::new(embedder.clone())).build(MemoryBackend::new());
    let without = connect(McpServer::new(pipeline.clone())).await;
    let why = refused(&without, "recall", json!({"text": "flight"})).await;
    assert!(why.contains("--embeddings-url"), "{why}");

    let client = connect(McpServer::new(pipeline).with_embedder(embedder)).await;
    for (thread, text, user) in [
        ("monday", "My flight to Lisbon leaves at nine", "u1"),
        ("tuesday", "Remind me to water the plants", "u1"),
        ("other", "My flight to Lisbon is delayed", "u2"),
    ] {
        ok(&client, "append_message", json!({"thread_id": thread, "text": text, "thread_metadata": {"user_id": user}}))
            .await;
    }
    let found =
        ok(&client, "recall", json!({"text": "when does my flight to Lisbon leave", "user_id": "u1", "limit": 1}))
            .await;
    let hits = found["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!((hits[0]["thread_id"].as_str(), hits[0]["seq"].as_u64()), (Some("monday"), Some(1)));
    assert!(hits[0]["score"].as_f64().unwrap() > 0.5);
    let all = ok(&client, "recall", json!({"text": "flight to Lisbon"})).await;
    assert_eq!(all["hits"].as_array().unwrap().len(), 3);
    without.cancel().await.unwrap();
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn threads_are_resources_of_their_tenant_only() {
    let pipeline = Pipeline::new(MemoryBackend::new());
    let acme_client = connect(McpServer::new(pipeline.clone()).with_tenant(acme())).await;
    let globex = connect(McpServer::new(pipeline).with_tenant(Some(TenantId::new("globex").unwrap()))).await;
    ok(&acme_client, "append_message", json!({"thread_id": "secret", "text": "the launch code is 1234"})).await;
    ok(&acme_client, "update_memory", json!({"resource": "user:1", "patch": {"k": 1}})).await;

    let listed = acme_client.list_resources(None).await.unwrap();
    assert_eq!(listed.resources.len(), 1);
    assert_eq!(listed.resources[0].uri, "persist://threads/secret");
    let templates = acme_client.list_resource_templates(None).await.unwrap();
    assert_eq!(templates.resource_templates[0].uri_template, "persist://threads/{thread_id}");
    let read = acme_client.read_resource(ReadResourceRequestParams::new("persist://threads/secret")).await.unwrap();
    let ResourceContents::TextResourceContents { text, mime_type, .. } = &read.contents[0] else { panic!("text") };
    assert_eq!(mime_type.as_deref(), Some("application/json"));
    assert_eq!(serde_json::from_str::<Value>(text).unwrap()["messages"][0]["text"], "the launch code is 1234");

    // Nothing of acme's reaches globex: not listed, not read, not found, not its memory.
    assert!(globex.list_resources(None).await.unwrap().resources.is_empty());
    assert!(globex.read_resource(ReadResourceRequestParams::new("persist://threads/secret")).await.is_err());
    assert_eq!(ok(&globex, "list_threads", json!({})).await["threads"], json!([]));
    assert!(refused(&globex, "read_thread", json!({"thread_id": "secret"})).await.contains("not found"));
    assert_eq!(ok(&globex, "search_messages", json!({"query": "launch"})).await["hits"], json!([]));
    assert_eq!(ok(&globex, "read_memory", json!({"resource": "user:1"})).await["version"], 0);
    assert!(acme_client.read_resource(ReadResourceRequestParams::new("persist://elsewhere")).await.is_err());
    acme_client.cancel().await.unwrap();
    globex.cancel().await.unwrap();
}

#[tokio::test]
async fn long_texts_are_cut_and_long_pages_end_early() {
    let client = connect(McpServer::new(Pipeline::new(MemoryBackend::new()))).await;
    let long = "ab".repeat(persist_mcp::MAX_TEXT_CHARS);
    ok(&client, "append_message", json!({"thread_id": "big", "text": long})).await;
    let read = ok(&client, "read_thread", json!({"thread_id": "big"})).await;
    let message = &read["messages"][0];
    assert_eq!(message["truncated"], true);
    assert_eq!(message["text_chars"], 2 * persist_mcp::MAX_TEXT_CHARS);
    assert_eq!(message["text"].as_str().unwrap().len(), persist_mcp::MAX_TEXT_CHARS);

    let text = "x".repeat(15_000);
    for _ in 0..30 {
        ok(&client, "append_message", json!({"thread_id": "many", "text": text})).await;
    }
    let (mut seqs, mut cursor, mut pages) = (Vec::new(), Value::Null, 0);
    loop {
        let mut arguments = json!({"thread_id": "many", "view": "full", "limit": 100});
        if !cursor.is_null() {
            arguments["cursor"] = cursor.clone();
        }
        let page = ok(&client, "read_thread", arguments).await;
        let bytes: usize = page["messages"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap().len()).sum();
        assert!(bytes < persist_mcp::MAX_PAGE_BYTES + 15_000, "a page of {bytes} bytes");
        seqs.extend(page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()));
        pages += 1;
        cursor = page["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(seqs, (1..=30).collect::<Vec<u64>>());
    assert_eq!(pages, 3);
    client.cancel().await.unwrap();
}
