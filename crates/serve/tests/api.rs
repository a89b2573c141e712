//! The Conversations API over HTTP, on every backend: what the SDKs rely on (shapes, paging,
//! errors), tenancy, idempotency keys, the atomic pop, limits and a store that does not answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use persist::layer::from_fn;
use persist::memory::MemoryBackend;
use persist::{Pipeline, TenantId};
use persist_serve::{ApiKeys, Auth, Limits, Server};
use serde_json::{Value, json};

const ACME: &str = "sk-acme-0123456789abcdef";
const GLOBEX: &str = "sk-globex-0123456789abcdef";

fn keys() -> Auth {
    let keys = ApiKeys::new()
        .with_key(TenantId::new("acme").unwrap(), ACME)
        .unwrap()
        .with_key(TenantId::new("globex").unwrap(), GLOBEX)
        .unwrap();
    Auth::Keys(keys)
}

/// A running server and a client of it.
struct Api {
    base: String,
    http: reqwest::Client,
    key: &'static str,
}

impl Api {
    async fn start(server: Server) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(server.serve(listener, std::future::pending()));
        Self { base, http: reqwest::Client::new(), key: ACME }
    }

    fn as_key(&self, key: &'static str) -> Self {
        Self { base: self.base.clone(), http: self.http.clone(), key }
    }

    async fn send(&self, method: &str, path: &str, body: Option<String>, headers: &[(&str, &str)]) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(self.key);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.send(method, path, body.map(|b| b.to_string()), &[]).await
    }

    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, body) = self.call(method, path, body).await;
        assert_eq!(status, 200, "{method} {path}: {body}");
        body
    }

    /// Every item, following `last_id` and `has_more` as the SDKs' auto-paging does.
    async fn all_items(&self, conversation: &str, order: &str, limit: u32) -> Vec<Value> {
        let mut items = Vec::new();
        let mut after = String::new();
        loop {
            let path = format!("/v1/conversations/{conversation}/items?order={order}&limit={limit}{after}");
            let page = self.ok("GET", &path, None).await;
            assert_eq!(page["object"], "list");
            let data = page["data"].as_array().unwrap().clone();
            assert!(data.len() <= limit as usize);
            items.extend(data);
            if !page["has_more"].as_bool().unwrap() {
                return items;
            }
            after = format!("&after={}", page["last_id"].as_str().unwrap());
        }
    }
}

async fn every_backend() -> Vec<(&'static str, Pipeline, Option<tempfile::TempDir>)> {
    let mut stores = vec![("memory", Pipeline::new(MemoryBackend::new()), None)];
    let dir = tempfile::tempdir().unwrap();
    let sqlite = persist::sqlite::SqliteBackend::open(dir.path().join("serve.db")).await.unwrap();
    stores.push(("sqlite", Pipeline::new(sqlite), Some(dir)));
    if let Some(postgres) = postgres().await {
        stores.push(("postgres", Pipeline::new(postgres), None));
    }
    stores
}

/// A fresh schema on `$PERSIST_POSTGRES_URL`; required when `CI` is set, skipped otherwise.
async fn postgres() -> Option<persist::postgres::PostgresBackend> {
    let url =
        std::env::var("PERSIST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("persist_serve_{}", uuid_like());
    let connected =
        persist::postgres::PostgresBackend::builder(&url).schema(&schema).max_connections(8).connect().await;
    match connected {
        Ok(backend) => Some(backend),
        Err(error) if std::env::var_os("CI").is_some() => panic!("PostgreSQL at {url} is required in CI: {error}"),
        Err(error) => {
            eprintln!("SKIPPED the PostgreSQL run: {error}; set PERSIST_POSTGRES_URL");
            None
        }
    }
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{:x}_{}", nanos, std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_the_shapes_the_sdks_read_on_every_backend() {
    for (name, pipeline, _dir) in every_backend().await {
        let api = Api::start(Server::new(pipeline, keys())).await;
        let created = api
            .ok(
                "POST",
                "/v1/conversations",
                Some(json!({"metadata": {"topic": "demo"}, "items": [{"role": "user", "content": "Hello!"}]})),
            )
            .await;
        let id = created["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("conv_"), "{name}: {id}");
        assert_eq!(created["object"], "conversation");
        assert_eq!(created["metadata"], json!({"topic": "demo"}));
        assert!(created["created_at"].as_i64().unwrap() > 1_700_000_000);
        assert_eq!(api.ok("GET", &format!("/v1/conversations/{id}"), None).await, created, "{name}");

        let call = json!({"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{\"city\":\"Paris\"}"});
        let output = json!({"type": "function_call_output", "call_id": "call_1", "output": "16C"});
        let reasoning =
            json!({"type": "reasoning", "id": "rs_abc", "summary": [{"type": "summary_text", "text": "Look it up."}]});
        let answer = json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It is 16C.", "annotations": []}]});
        let written = api
            .ok(
                "POST",
                &format!("/v1/conversations/{id}/items?include[]=reasoning.encrypted_content"),
                Some(json!({"items": [reasoning.clone(), call.clone(), output.clone(), answer.clone()]})),
            )
            .await;
        let data = written["data"].as_array().unwrap();
        assert_eq!(data.len(), 4, "{name}");
        assert_eq!(data[0], reasoning, "{name}: a client's id and fields kept, nothing added");
        assert!(data[1]["id"].as_str().unwrap().starts_with("fc_"));
        assert_eq!((data[1]["call_id"].clone(), data[1]["status"].clone()), (json!("call_1"), json!("completed")));
        assert_eq!(data[2]["output"], "16C");
        assert_eq!((written["first_id"].clone(), written["has_more"].clone()), (json!("rs_abc"), json!(false)));

        // Read back equal, in order, both ways, paged as the SDKs page.
        let asc = api.all_items(&id, "asc", 2).await;
        assert_eq!(asc.len(), 5, "{name}");
        assert_eq!(asc[0]["content"], json!([{"type": "input_text", "text": "Hello!"}]));
        assert_eq!(&asc[1..], data.as_slice(), "{name}");
        let mut desc = api.all_items(&id, "desc", 3).await;
        desc.reverse();
        assert_eq!(desc, asc, "{name}");
        let default_page = api.ok("GET", &format!("/v1/conversations/{id}/items"), None).await;
        assert_eq!(default_page["data"][0], asc[4], "desc by default");

        let item_id = data[1]["id"].as_str().unwrap();
        assert_eq!(api.ok("GET", &format!("/v1/conversations/{id}/items/{item_id}"), None).await, data[1]);
        let after_delete = api.ok("DELETE", &format!("/v1/conversations/{id}/items/{item_id}"), None).await;
        assert_eq!(after_delete["id"], id.as_str(), "an item's delete answers the conversation");
        let (status, error) = api.call("DELETE", &format!("/v1/conversations/{id}/items/{item_id}"), None).await;
        assert_eq!((status, error["error"]["type"].clone()), (404, json!("invalid_request_error")));
        assert_eq!(api.all_items(&id, "asc", 100).await.len(), 4);

        let updated = api.ok("POST", &format!("/v1/conversations/{id}"), Some(json!({"metadata": {"b": "2"}}))).await;
        assert_eq!(updated["metadata"], json!({"b": "2"}), "{name}: replaced whole");
        let deleted = api.ok("DELETE", &format!("/v1/conversations/{id}"), None).await;
        assert_eq!(deleted, json!({"id": id, "object": "conversation.deleted", "deleted": true}));
        for (method, path) in [
            ("GET", format!("/v1/conversations/{id}")),
            ("GET", format!("/v1/conversations/{id}/items")),
            ("DELETE", format!("/v1/conversations/{id}")),
        ] {
            let (status, body) = api.call(method, &path, None).await;
            assert_eq!(status, 404, "{name}: {method} {path}: {body}");
            assert!(body["error"]["message"].as_str().unwrap().contains(&id));
        }
        let (status, _) = api
            .call(
                "POST",
                &format!("/v1/conversations/{id}/items"),
                Some(json!({"items": [{"role": "user", "content": "x"}]})),
            )
            .await;
        assert_eq!(status, 404, "{name}: no write to a deleted conversation");
    }
}

#[tokio::test]
async fn a_key_is_a_tenant_and_another_tenants_conversation_is_404() {
    let api = Api::start(Server::new(Pipeline::new(MemoryBackend::new()), keys())).await;
    let id = api.ok("POST", "/v1/conversations", Some(json!({}))).await["id"].as_str().unwrap().to_owned();
    let globex = api.as_key(GLOBEX);
    for (method, path) in [
        ("GET", format!("/v1/conversations/{id}")),
        ("GET", format!("/v1/conversations/{id}/items")),
        ("DELETE", format!("/v1/conversations/{id}")),
        ("POST", format!("/v1/persist/conversations/{id}/items/pop")),
    ] {
        let (status, body) = globex.call(method, &path, None).await;
        assert_eq!((status, body["error"]["code"].clone()), (404, json!("not_found")), "{method} {path}");
    }
    let (status, _) = globex
        .call(
            "POST",
            &format!("/v1/conversations/{id}/items"),
            Some(json!({"items": [{"role": "user", "content": "x"}]})),
        )
        .await;
    assert_eq!(status, 404);
    let listed = globex.ok("GET", "/v1/persist/conversations", None).await;
    assert_eq!(listed["data"], json!([]));
    let listed = api.ok("GET", "/v1/persist/conversations", None).await;
    assert_eq!(listed["data"][0]["id"], id.as_str());

    for key in ["", "sk-wrong-0123456789abcdef"] {
        let (status, body) = api
            .as_key(Box::leak(key.to_owned().into_boxed_str()))
            .call("GET", &format!("/v1/conversations/{id}"), None)
            .await;
        assert_eq!((status, body["error"]["type"].clone()), (401, json!("authentication_error")));
    }
    let bare = reqwest::get(format!("{}/v1/conversations/{id}", api.base)).await.unwrap();
    assert_eq!(bare.status().as_u16(), 401);
    assert_eq!(reqwest::get(format!("{}/health", api.base)).await.unwrap().status().as_u16(), 200);
    assert_eq!(reqwest::get(format!("{}/ready", api.base)).await.unwrap().status().as_u16(), 200);
}

#[tokio::test]
async fn an_idempotency_key_writes_nothing_twice() {
    let api = Api::start(Server::new(Pipeline::new(MemoryBackend::new()), keys())).await;
    let body = json!({"metadata": {"a": "1"}, "items": [{"role": "user", "content": "hi"}]}).to_string();
    let (_, first) =
        api.send("POST", "/v1/conversations", Some(body.clone()), &[("idempotency-key", "create-1")]).await;
    let (status, again) = api.send("POST", "/v1/conversations", Some(body), &[("idempotency-key", "create-1")]).await;
    assert_eq!((status, &again), (200, &first));
    let (status, other) =
        api.send("POST", "/v1/conversations", Some("{}".into()), &[("idempotency-key", "create-1")]).await;
    assert_eq!((status, other["error"]["code"].clone()), (422, json!("idempotency_key_reused")));
    let (_, other_tenant) = api
        .as_key(GLOBEX)
        .send("POST", "/v1/conversations", Some("{}".into()), &[("idempotency-key", "create-1")])
        .await;
    assert_ne!(other_tenant["id"], first["id"], "a key is the tenant's");

    let id = first["id"].as_str().unwrap();
    let path = format!("/v1/conversations/{id}/items");
    let items = json!({"items": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}).to_string();
    let (_, written) = api.send("POST", &path, Some(items.clone()), &[("idempotency-key", "turn-1")]).await;
    let (status, retried) = api.send("POST", &path, Some(items), &[("idempotency-key", "turn-1")]).await;
    assert_eq!((status, &retried["data"]), (200, &written["data"]), "the retry answers the first one's items");
    assert_eq!(api.all_items(id, "asc", 100).await.len(), 3, "written once");
    let (status, _) = api
        .send(
            "POST",
            &path,
            Some(json!({"items": [{"role": "user", "content": "c"}]}).to_string()),
            &[("idempotency-key", "turn-1")],
        )
        .await;
    assert_eq!(status, 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_its_items_were_deleted_answers_them_and_brings_nothing_back() {
    for (name, pipeline, _dir) in every_backend().await {
        let api = Api::start(Server::new(pipeline, keys())).await;
        let id = api.ok("POST", "/v1/conversations", None).await["id"].as_str().unwrap().to_owned();
        let path = format!("/v1/conversations/{id}/items");
        let items = json!({"items": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]});
        let items = items.to_string();
        let (_, written) = api.send("POST", &path, Some(items.clone()), &[("idempotency-key", "turn-2")]).await;
        let first = written["data"][0]["id"].as_str().unwrap();
        api.ok("DELETE", &format!("{path}/{first}"), None).await;
        api.ok("POST", &format!("/v1/persist/conversations/{id}/items/pop"), None).await;
        assert!(api.all_items(&id, "asc", 100).await.is_empty(), "{name}: both gone");
        // The first answer was lost; the client retries after the items were deleted.
        let (status, retried) = api.send("POST", &path, Some(items), &[("idempotency-key", "turn-2")]).await;
        assert_eq!((status, &retried["data"]), (200, &written["data"]), "{name}: the first call's answer");
        assert!(api.all_items(&id, "asc", 100).await.is_empty(), "{name}: nothing brought back");
        let other = json!({"items": [{"role": "user", "content": "c"}]}).to_string();
        let (status, refused) = api.send("POST", &path, Some(other), &[("idempotency-key", "turn-2")]).await;
        assert_eq!((status, refused["error"]["code"].clone()), (422, json!("idempotency_key_reused")), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_concurrent_pops_each_take_another_item() {
    let api = Arc::new(Api::start(Server::new(Pipeline::new(MemoryBackend::new()), keys())).await);
    let id = api.ok("POST", "/v1/conversations", None).await["id"].as_str().unwrap().to_owned();
    let items: Vec<Value> = (0..40).map(|n| json!({"role": "user", "content": format!("item {n}")})).collect();
    api.ok("POST", &format!("/v1/conversations/{id}/items"), Some(json!({"items": items}))).await;
    let mut pops = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let (api, id) = (api.clone(), id.clone());
        pops.spawn(async move { api.ok("POST", &format!("/v1/persist/conversations/{id}/items/pop"), None).await });
    }
    let popped: std::collections::HashSet<String> =
        pops.join_all().await.iter().map(|item| item["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(popped.len(), 40, "forty distinct items");
    let (status, body) = api.call("POST", &format!("/v1/persist/conversations/{id}/items/pop"), None).await;
    assert_eq!((status, body["error"]["code"].clone()), (404, json!("conversation_empty")));
}

#[tokio::test]
async fn malformed_requests_are_refused_with_the_apis_errors_and_store_nothing() {
    let limits = Limits::default().with_max_body_bytes(64 * 1024);
    let api = Api::start(Server::new(Pipeline::new(MemoryBackend::new()), keys()).with_limits(limits)).await;
    let id = api.ok("POST", "/v1/conversations", None).await["id"].as_str().unwrap().to_owned();
    let items = format!("/v1/conversations/{id}/items");
    let conv = format!("/v1/conversations/{id}");
    let user = |text: &str| json!({"role": "user", "content": text});
    let huge = "x".repeat(70 * 1024);
    let many: Vec<Value> = (0..21).map(|n| user(&n.to_string())).collect();
    let over_turn: Vec<Value> = (0..257).map(|n| user(&n.to_string())).collect();
    let twice = json!({"id": "msg_same", "role": "user", "content": "x"});
    let cases: Vec<(&str, String, String, u16, &str)> = vec![
        ("POST", "/v1/conversations".into(), "{".into(), 400, "body"),
        ("POST", "/v1/conversations".into(), "[]".into(), 400, "body"),
        ("POST", "/v1/conversations".into(), "null".into(), 400, "body"),
        ("POST", "/v1/conversations".into(), json!({"items": many}).to_string(), 400, "items"),
        ("POST", "/v1/conversations".into(), json!({"items": "hi"}).to_string(), 400, "items"),
        ("POST", "/v1/conversations".into(), json!({"items": [1]}).to_string(), 400, "items[0]"),
        ("POST", "/v1/conversations".into(), json!({"metadata": "x"}).to_string(), 400, "metadata"),
        ("POST", "/v1/conversations".into(), json!({"metadata": {"a": 1}}).to_string(), 400, "metadata"),
        (
            "POST",
            "/v1/conversations".into(),
            json!({"metadata": (0..17).map(|n| (n.to_string(), json!("v"))).collect::<serde_json::Map<_, _>>()})
                .to_string(),
            400,
            "metadata",
        ),
        ("POST", "/v1/conversations".into(), json!({"metadata": {"k": "v".repeat(513)}}).to_string(), 400, "metadata"),
        ("POST", "/v1/conversations".into(), json!({"metadata": {"k".repeat(65): "v"}}).to_string(), 400, "metadata"),
        ("POST", "/v1/conversations".into(), json!({"metadata": {"k": "a\u{0}"}}).to_string(), 400, "metadata"),
        ("POST", "/v1/conversations".into(), json!({"model": "gpt"}).to_string(), 400, "model"),
        (
            "POST",
            "/v1/conversations".into(),
            json!({"items": [twice.clone(), twice.clone()]}).to_string(),
            400,
            "items[1].id",
        ),
        ("POST", items.clone(), "{}".into(), 400, "items"),
        ("POST", items.clone(), json!({"items": []}).to_string(), 400, "items"),
        ("POST", items.clone(), json!({"items": over_turn}).to_string(), 400, "items"),
        ("POST", items.clone(), json!({"items": [{"type": "bogus"}]}).to_string(), 400, "items[0].type"),
        ("POST", items.clone(), json!({"items": [{"type": 7}]}).to_string(), 400, "items[0].type"),
        (
            "POST",
            items.clone(),
            json!({"items": [{"type": "item_reference", "id": "msg_1"}]}).to_string(),
            400,
            "items[0].type",
        ),
        (
            "POST",
            items.clone(),
            json!({"items": [{"role": "robot", "content": "x"}]}).to_string(),
            400,
            "items[0].role",
        ),
        ("POST", items.clone(), json!({"items": [{"role": 1, "content": "x"}]}).to_string(), 400, "items[0].role"),
        ("POST", items.clone(), json!({"items": [{"content": "x"}]}).to_string(), 400, "items[0].role"),
        ("POST", items.clone(), json!({"items": [{"role": "user"}]}).to_string(), 400, "items[0].content"),
        (
            "POST",
            items.clone(),
            json!({"items": [{"role": "user", "content": {}}]}).to_string(),
            400,
            "items[0].content",
        ),
        (
            "POST",
            items.clone(),
            json!({"items": [{"role": "user", "content": [1]}]}).to_string(),
            400,
            "items[0].content[0]",
        ),
        (
            "POST",
            items.clone(),
            json!({"items": [{"role": "user", "content": [{"type": "input_text"}]}]}).to_string(),
            400,
            "items[0].content[0].text",
        ),
        (
            "POST",
            items.clone(),
            json!({"items": [{"role": "user", "content": [{"type": "input_text", "text": 5}]}]}).to_string(),
            400,
            "items[0].content[0].text",
        ),
        (
            "POST",
            items.clone(),
            json!({"items": [{"role": "user", "content": [{"type": "audio"}]}]}).to_string(),
            400,
            "items[0].content[0]",
        ),
        (
            "POST",
            items.clone(),
            json!({"items": [user("ok"), {"type": "function_call", "name": "f", "arguments": "{}"}]}).to_string(),
            400,
            "items[1].call_id",
        ),
        (
            "POST",
            items.clone(),
            json!({"items": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]}).to_string(),
            400,
            "items[0].arguments",
        ),
        (
            "POST",
            items.clone(),
            json!({"items": [{"type": "function_call_output", "call_id": "c"}]}).to_string(),
            400,
            "items[0].output",
        ),
        (
            "POST",
            items.clone(),
            json!({"items": [{"type": "function_call_output", "call_id": 3, "output": "x"}]}).to_string(),
            400,
            "items[0].call_id",
        ),
        (
            "POST",
            items.clone(),
            json!({"items": [{"type": "reasoning", "id": "rs_1"}]}).to_string(),
            400,
            "items[0].summary",
        ),
        (
            "POST",
            items.clone(),
            json!({"items": [{"role": "user", "content": "x", "id": 1}]}).to_string(),
            400,
            "items[0].id",
        ),
        (
            "POST",
            items.clone(),
            json!({"items": [{"role": "user", "content": "x", "id": "a\nb"}]}).to_string(),
            400,
            "items[0].id",
        ),
        (
            "POST",
            items.clone(),
            json!({"items": [{"role": "user", "content": "x", "status": "finished"}]}).to_string(),
            400,
            "items[0].status",
        ),
        ("POST", items.clone(), json!({"items": [user("a\u{0}b")]}).to_string(), 400, "items[0]"),
        ("POST", items.clone(), json!({"items": [user(&huge)]}).to_string(), 413, ""),
        ("POST", items.clone(), json!({"items": [user("x")], "extra": true}).to_string(), 400, "extra"),
        ("POST", format!("{items}?include[]=everything"), json!({"items": [user("x")]}).to_string(), 400, "include"),
        ("GET", format!("{items}?limit=0"), String::new(), 400, "limit"),
        ("GET", format!("{items}?limit=101"), String::new(), 400, "limit"),
        ("GET", format!("{items}?limit=ten"), String::new(), 400, "limit"),
        ("GET", format!("{items}?order=sideways"), String::new(), 400, "order"),
        ("GET", format!("{items}?after=msg_nope"), String::new(), 400, "after"),
        ("GET", format!("{items}?include=nope"), String::new(), 400, "include"),
        ("GET", "/v1/persist/conversations?after=not-a-cursor".into(), String::new(), 400, "after"),
        ("POST", conv.clone(), "{}".into(), 400, "metadata"),
        ("POST", conv.clone(), json!({"metadata": [1]}).to_string(), 400, "metadata"),
        ("GET", "/v1/conversations/conv_missing".into(), String::new(), 404, ""),
        ("GET", format!("{items}/msg_missing"), String::new(), 404, ""),
        ("PUT", conv.clone(), "{}".into(), 405, ""),
        ("GET", "/v1/responses".into(), String::new(), 404, ""),
    ];
    assert!(cases.len() >= 50);
    for (method, path, body, status, param) in cases {
        let body = (!body.is_empty()).then_some(body);
        let (got, answer) = api.send(method, &path, body.clone(), &[]).await;
        assert_eq!(got, status, "{method} {path} {body:?}: {answer}");
        let error = &answer["error"];
        assert!(error["message"].is_string() && error["type"].is_string(), "{answer}");
        assert!(error.as_object().unwrap().contains_key("code") && error.as_object().unwrap().contains_key("param"));
        if !param.is_empty() {
            assert_eq!(error["param"], param, "{method} {path} {body:?}: {answer}");
        }
    }
    let page = api.ok("GET", &items, None).await;
    assert_eq!(page["data"], json!([]), "nothing stored by a refused request");
    let listed = api.ok("GET", "/v1/persist/conversations", None).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "no conversation made by a refused create");

    // Declared too large: refused before the body is read.
    let declared = api.send("POST", &items, Some("x".repeat(100 * 1024)), &[]).await;
    assert_eq!(declared.0, 413);
}

#[tokio::test]
async fn a_store_that_does_not_answer_is_503_with_a_retry_hint_never_a_hang() {
    let stalled = Arc::new(AtomicBool::new(false));
    let flag = stalled.clone();
    let pipeline = Pipeline::builder()
        .layer(from_fn(move |args, next| {
            let stalled = flag.load(Ordering::SeqCst);
            async move {
                if stalled {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                next.run(args).await
            }
        }))
        .build(MemoryBackend::new());
    let limits = Limits::default().with_store_timeout(Duration::from_millis(200));
    let api = Api::start(Server::new(pipeline, keys()).with_limits(limits)).await;
    let id = api.ok("POST", "/v1/conversations", None).await["id"].as_str().unwrap().to_owned();
    stalled.store(true, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let response = api.http.get(format!("{}/v1/conversations/{id}", api.base)).bearer_auth(ACME).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert!(started.elapsed() < Duration::from_secs(30));
    let ready = reqwest::get(format!("{}/ready", api.base)).await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    stalled.store(false, Ordering::SeqCst);
    assert_eq!(api.ok("GET", &format!("/v1/conversations/{id}"), None).await["id"], id.as_str());
}

/// A pipeline and a server of it, for the tests that also write as a Rust host would.
async fn shared() -> (Pipeline, Api) {
    let pipeline = Pipeline::new(MemoryBackend::new());
    let api = Api::start(Server::new(pipeline.clone(), keys())).await;
    (pipeline, api)
}

#[tokio::test]
async fn branches_a_host_wrote_are_listed_and_switched_and_the_items_show_the_active_one() {
    use persist::args::Add;
    use persist::branch::Parent;
    let (pipeline, api) = shared().await;
    let id = api
        .ok(
            "POST",
            "/v1/conversations",
            Some(json!({"items": [
                {"role": "user", "content": "Name a color"},
                {"id": "msg_first", "role": "assistant", "content": "Red"},
            ]})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The host regenerates the reply: a sibling of the first one, now on the active branch.
    let scoped = pipeline.scoped(persist::Context::new().with_tenant(TenantId::new("acme").unwrap()));
    let question = api.all_items(&id, "asc", 10).await[0]["id"].as_str().unwrap().to_owned();
    let again =
        Add::new(persist::ThreadId::new(&id).unwrap(), persist::Role::Assistant, persist::Content::text("Blue"))
            .with_id(persist::MessageId::new("msg_second").unwrap())
            .with_parent(Parent::Message(persist::MessageId::new(&question).unwrap()));
    scoped.add(again).await.unwrap();
    let shown = |items: Vec<Value>| items.iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(shown(api.all_items(&id, "asc", 10).await), [question.clone(), "msg_second".to_owned()]);

    let siblings = api.ok("GET", &format!("/v1/persist/conversations/{id}/branches?item_id=msg_first"), None).await;
    assert_eq!(shown(siblings["data"].as_array().unwrap().clone()), ["msg_first", "msg_second"]);
    assert_eq!(siblings["active"], 1);
    let leaves = api.ok("GET", &format!("/v1/persist/conversations/{id}/branches"), None).await;
    assert_eq!(leaves["data"].as_array().unwrap().len(), 2);
    api.ok("POST", &format!("/v1/persist/conversations/{id}/branches/switch"), Some(json!({"item_id": "msg_first"})))
        .await;
    assert_eq!(shown(api.all_items(&id, "desc", 1).await), ["msg_first".to_owned(), question]);
    let (status, body) = api
        .call("POST", &format!("/v1/persist/conversations/{id}/branches/switch"), Some(json!({"item_id": "nope"})))
        .await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn a_compacted_read_gives_the_latest_summary_and_the_items_after_it() {
    use persist::summary::Summarize;
    let (pipeline, api) = shared().await;
    let items: Vec<Value> = (1..=5).map(|n| json!({"role": "user", "content": format!("m{n}")})).collect();
    let id =
        api.ok("POST", "/v1/conversations", Some(json!({"items": items}))).await["id"].as_str().unwrap().to_owned();
    let read = api.ok("GET", &format!("/v1/persist/conversations/{id}/compacted"), None).await;
    assert_eq!((read["summary"].clone(), read["data"].as_array().unwrap().len()), (Value::Null, 5));
    let scoped = pipeline.scoped(persist::Context::new().with_tenant(TenantId::new("acme").unwrap()));
    let summary = Summarize::new(persist::ThreadId::new(&id).unwrap(), 3, persist::Content::text("m1 to m3, in brief"));
    scoped.summarize(summary).await.unwrap();
    let read = api.ok("GET", &format!("/v1/persist/conversations/{id}/compacted"), None).await;
    assert_eq!(read["summary"]["text"], "m1 to m3, in brief");
    let after: Vec<&str> =
        read["data"].as_array().unwrap().iter().map(|i| i["content"][0]["text"].as_str().unwrap()).collect();
    assert_eq!(after, ["m4", "m5"]);
}

#[tokio::test]
async fn search_finds_the_callers_items_only() {
    let api = Api::start(Server::new(Pipeline::new(MemoryBackend::new()), keys())).await;
    let mut ids = Vec::new();
    for text in ["Book a flight to Lisbon", "What is the weather in Paris?"] {
        let body = json!({"items": [{"role": "user", "content": text}]});
        ids.push(api.ok("POST", "/v1/conversations", Some(body)).await["id"].as_str().unwrap().to_owned());
    }
    let hits = api.ok("GET", "/v1/persist/search?q=lisbon", None).await;
    assert_eq!(hits["data"].as_array().unwrap().len(), 1, "{hits}");
    assert_eq!(hits["data"][0]["conversation_id"], ids[0].as_str());
    let scoped = api.ok("GET", &format!("/v1/persist/search?q=lisbon&conversation={}", ids[1]), None).await;
    assert_eq!(scoped["data"], json!([]));
    let other = api.as_key(GLOBEX).ok("GET", "/v1/persist/search?q=lisbon", None).await;
    assert_eq!(other["data"], json!([]), "another tenant's items are not found");
    let (status, body) = api.call("GET", "/v1/persist/search", None).await;
    assert_eq!((status, body["error"]["param"].clone()), (400, json!("q")));
}

#[tokio::test]
async fn the_feed_streams_a_conversations_writes_and_resumes_after_the_last_event() {
    let api = Api::start(Server::new(Pipeline::new(MemoryBackend::new()), keys())).await;
    let id =
        api.ok("POST", "/v1/conversations", Some(json!({"items": [{"role": "user", "content": "one"}]}))).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
    api.ok(
        "POST",
        &format!("/v1/conversations/{id}/items"),
        Some(json!({"items": [{"role": "user", "content": "two"}]})),
    )
    .await;
    let read = |last: Option<&'static str>| {
        let (api, id) = (&api, &id);
        async move {
            let mut request =
                api.http.get(format!("{}/v1/persist/conversations/{id}/events", api.base)).bearer_auth(ACME);
            if let Some(last) = last {
                request = request.header("last-event-id", last);
            }
            let mut response = request.send().await.unwrap();
            assert_eq!(response.headers()["content-type"], "text/event-stream");
            let mut text = String::new();
            while text.matches("\n\n").count() < 1 || !text.contains("id:") {
                let chunk =
                    tokio::time::timeout(Duration::from_secs(10), response.chunk()).await.unwrap().unwrap().unwrap();
                text.push_str(&String::from_utf8_lossy(&chunk));
            }
            text
        }
    };
    let first = read(None).await;
    assert!(first.contains("id: 1") || first.contains("id:1"), "{first}");
    let resumed = read(Some("1")).await;
    assert!(!resumed.contains("id: 1\n") && (resumed.contains("id: 2") || resumed.contains("id:2")), "{resumed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_being_written_streams_resumes_from_an_offset_and_stops() {
    use persist::args::{Reserve, UpdateContent};
    let (pipeline, api) = shared().await;
    let id = api
        .ok("POST", "/v1/conversations", Some(json!({"items": [{"role": "user", "content": "Tell me"}]})))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let scoped = pipeline.scoped(persist::Context::new().with_tenant(TenantId::new("acme").unwrap()));
    let thread = persist::ThreadId::new(&id).unwrap();
    let reply = scoped.reserve(Reserve::new(thread.clone(), persist::Role::Assistant)).await.unwrap().message.id;
    for token in ["Once", " upon"] {
        scoped
            .update_content(UpdateContent::appending(thread.clone(), reply.clone(), persist::Content::text(token)))
            .await
            .unwrap();
    }
    let path = format!("{}/v1/persist/conversations/{id}/items/{reply}/stream", api.base);
    let open = |last: Option<&'static str>| {
        let (http, path) = (api.http.clone(), path.clone());
        async move {
            let mut request = http.get(path).bearer_auth(ACME);
            if let Some(last) = last {
                request = request.header("last-event-id", last);
            }
            request.send().await.unwrap()
        }
    };
    async fn until(response: &mut reqwest::Response, text: &mut String, marker: &str) {
        while !text.contains(marker) {
            let chunk =
                tokio::time::timeout(Duration::from_secs(10), response.chunk()).await.unwrap().unwrap().unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    let mut first = open(None).await;
    let mut seen = String::new();
    until(&mut first, &mut seen, "upon").await;
    assert!(seen.contains("event: text") && seen.contains("Once upon"), "{seen}");

    // From another request, as an instance would: a stop, then the generator ends the reply.
    let stopped = api.ok("POST", &format!("/v1/persist/conversations/{id}/items/{reply}/stop"), None).await;
    assert_eq!(stopped, json!({"stopped": true}));
    scoped
        .update_content(UpdateContent::appending(thread.clone(), reply.clone(), persist::Content::text(" a time")))
        .await
        .unwrap();
    scoped.update_content(UpdateContent::interrupted(thread.clone(), reply.clone())).await.unwrap();
    until(&mut first, &mut seen, "event: end").await;
    assert!(seen.contains(" a time") && seen.contains(r#"{"status":"stopped"}"#), "{seen}");

    // Resumed after character 9 ("Once upon"): only what followed, then the end.
    let mut resumed = open(Some("9")).await;
    let mut again = String::new();
    until(&mut resumed, &mut again, "event: end").await;
    assert!(again.contains(r#""offset":9"#) && again.contains(" a time") && !again.contains("Once"), "{again}");
    let ended = api.ok("POST", &format!("/v1/persist/conversations/{id}/items/{reply}/stop"), None).await;
    assert_eq!(ended, json!({"stopped": false, "status": "stopped"}));
    let (status, _) = api.call("POST", &format!("/v1/persist/conversations/{id}/items/msg_none/stop"), None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_tenant_header_sent_twice_is_401() {
    let auth = Auth::TenantHeader(persist_serve::HeaderName::from_static("x-tenant"));
    let api = Api::start(Server::new(Pipeline::new(MemoryBackend::new()), auth)).await;
    let list = async |tenants: &[&str]| {
        let mut request = api.http.get(format!("{}/v1/persist/conversations", api.base));
        for tenant in tenants {
            request = request.header("x-tenant", *tenant);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, serde_json::from_str::<Value>(&response.text().await.unwrap()).unwrap())
    };
    assert_eq!(list(&["acme"]).await.0, 200);
    // A gateway that appends its header to the client's: the client would pick its tenant.
    for tenants in [&["globex", "acme"][..], &["acme", "acme"], &["globex, acme"], &[]] {
        let (status, body) = list(tenants).await;
        assert_eq!((status, body["error"]["type"].clone()), (401, json!("authentication_error")), "{tenants:?}");
    }
}

/// A server without keys on loopback, and a request to it with `headers`.
async fn open_request(server: Server, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    let api = Api::start(server).await;
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = api.http.request(method, format!("{}{path}", api.base)).body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, value.replace("PORT", api.base.rsplit(':').next().unwrap()));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test]
async fn a_body_not_sent_as_json_is_415_and_stores_nothing() {
    let pipeline = Pipeline::new(MemoryBackend::new());
    let server = Server::new(pipeline.clone(), Auth::Open(None));
    let create = json!({"items": [{"role": "user", "content": "from a web page"}]}).to_string();
    for content_type in [Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("application/jsonx"), None]
    {
        let headers: Vec<(&str, &str)> = content_type.map(|value| ("content-type", value)).into_iter().collect();
        let (status, body) = open_request(server.clone(), "POST", "/v1/conversations", &headers, &create).await;
        assert_eq!(status, 415, "{content_type:?}: {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], "unsupported_media_type");
    }
    let threads = pipeline.threads(persist::read::ListThreads::new()).await.unwrap();
    assert!(threads.items.is_empty(), "nothing written by a refused request");
    let json = [("content-type", "Application/JSON; charset=utf-8")];
    assert_eq!(open_request(server.clone(), "POST", "/v1/conversations", &json, &create).await.0, 200);
    assert_eq!(open_request(server, "POST", "/v1/conversations", &[], "").await.0, 200, "an empty body is {{}}");
}

#[tokio::test]
async fn without_keys_a_foreign_host_or_origin_is_refused() {
    let server = Server::new(Pipeline::new(MemoryBackend::new()), Auth::Open(None));
    let get = async |server: &Server, headers: &[(&str, &str)]| {
        open_request(server.clone(), "GET", "/v1/persist/conversations", headers, "").await
    };
    for allowed in [
        &[][..],
        &[("host", "localhost:PORT")],
        &[("host", "LOCALHOST")],
        &[("host", "[::1]:PORT")],
        &[("host", "127.0.0.1:PORT"), ("origin", "http://localhost:3000")],
    ] {
        assert_eq!(get(&server, allowed).await.0, 200, "{allowed:?}");
    }
    // DNS rebinding (a name of the attacker's that resolves to 127.0.0.1), and a page of
    // another site posting to the loopback address.
    for foreign in [
        &[("host", "rebind.example:PORT")][..],
        &[("host", "localhost.rebind.example")],
        &[("origin", "http://evil.example")],
        &[("origin", "http://127.0.0.1.evil.example:PORT")],
        &[("origin", "null")],
    ] {
        let (status, body) = get(&server, foreign).await;
        assert_eq!((status, body["error"]["type"].clone()), (403, json!("permission_error")), "{foreign:?}: {body}");
    }
    let (status, _) = open_request(
        server.clone(),
        "POST",
        "/v1/conversations",
        &[("origin", "http://evil.example"), ("content-type", "application/json")],
        "{}",
    )
    .await;
    assert_eq!(status, 403, "a cross-site POST writes nothing");

    // An operator names more hosts; `*` allows any.
    let named = server.clone().with_allowed_hosts(["chat.internal", "Gateway.Internal:8443"]);
    for host in
        [&[("host", "chat.internal:PORT"), ("origin", "https://gateway.internal")][..], &[("host", "gateway.internal")]]
    {
        assert_eq!(get(&named, host).await.0, 200, "{host:?}");
    }
    assert_eq!(get(&named, &[("host", "rebind.example")]).await.0, 403);
    let any = server.with_allowed_hosts(["*"]);
    assert_eq!(get(&any, &[("host", "rebind.example"), ("origin", "http://evil.example")]).await.0, 200);

    // With keys the key proves the caller: a page cannot send it to another site without a
    // CORS preflight this server never grants, and behind a balancer hosts vary.
    let keyed = Server::new(Pipeline::new(MemoryBackend::new()), keys());
    let auth = format!("Bearer {ACME}");
    let (status, _) = get(&keyed, &[("host", "api.example.com"), ("authorization", &auth)]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_idempotency_key_is_never_echoed_nor_stored() {
    let (pipeline, api) = shared().await;
    let key = "customer-4711-jane@example.com";
    let id = api.ok("POST", "/v1/conversations", None).await["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/conversations/{id}/items");
    let items = |text: &str| Some(json!({"items": [{"role": "user", "content": text}]}).to_string());
    assert_eq!(api.send("POST", &path, items("a"), &[("idempotency-key", key)]).await.0, 200);
    let (status, refused) = api.send("POST", &path, items("b"), &[("idempotency-key", key)]).await;
    assert_eq!((status, refused["error"]["param"].clone()), (422, json!("Idempotency-Key")));
    assert!(!refused.to_string().contains("4711"), "the key is not echoed: {refused}");
    let create = Some(json!({"metadata": {"a": "1"}}).to_string());
    api.send("POST", "/v1/conversations", create, &[("idempotency-key", key)]).await;
    let (status, refused) = api.send("POST", "/v1/conversations", Some("{}".into()), &[("idempotency-key", key)]).await;
    assert_eq!(status, 422);
    assert!(!refused.to_string().contains("4711"), "{refused}");
    // What persist is handed (and its trace layer logs) is a digest of the key.
    let scoped = pipeline.scoped(persist::Context::new().with_tenant(TenantId::new("acme").unwrap()));
    let listed = scoped.list(persist::read::ListMessages::new(persist::ThreadId::new(&id).unwrap())).await.unwrap();
    let stored = listed.items[0].idempotency_key.as_ref().expect("keyed").to_string();
    assert!(!stored.contains("4711") && stored.starts_with("serve:"), "{stored}");
}

#[tokio::test]
async fn a_wrong_method_is_405_with_allow_and_the_scheme_is_case_insensitive() {
    let api = Api::start(Server::new(Pipeline::new(MemoryBackend::new()), keys())).await;
    let response =
        api.http.put(format!("{}/v1/conversations/conv_x", api.base)).bearer_auth(ACME).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let allow = response.headers().get("allow").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    for method in ["GET", "POST", "DELETE"] {
        assert!(allow.contains(method), "Allow: {allow}");
    }
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let response = api
            .http
            .get(format!("{}/v1/persist/conversations", api.base))
            .header("authorization", format!("{scheme} {ACME}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{scheme}");
    }
}

#[tokio::test]
async fn an_extensions_unknown_query_parameter_is_400() {
    let api = Api::start(Server::new(Pipeline::new(MemoryBackend::new()), keys())).await;
    let id = api.ok("POST", "/v1/conversations", None).await["id"].as_str().unwrap().to_owned();
    for path in [
        "/v1/persist/conversations?cursor=abc".to_owned(),
        "/v1/persist/search?q=hi&cursor=abc".to_owned(),
        format!("/v1/persist/conversations/{id}/compacted?cursor=abc"),
        format!("/v1/persist/conversations/{id}/branches?cursor=abc"),
    ] {
        let (status, body) = api.call("GET", &path, None).await;
        assert_eq!((status, body["error"]["param"].clone()), (400, json!("cursor")), "{path}: {body}");
        assert_eq!(body["error"]["code"], "unknown_parameter", "{path}");
    }
    assert_eq!(api.call("GET", "/v1/persist/conversations?limit=5", None).await.0, 200);
}

#[tokio::test]
async fn a_request_id_is_echoed_and_given_to_the_store() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let record = Arc::clone(&seen);
    let pipeline = Pipeline::builder()
        .layer(from_fn(move |args: persist::PersistArgs, next| {
            let id = args.context().extensions().get::<persist_serve::HttpRequestId>().map(|id| id.0.clone());
            record.lock().unwrap().push(id.unwrap_or_default());
            async move { next.run(args).await }
        }))
        .build(MemoryBackend::new());
    let api = Api::start(Server::new(pipeline, keys())).await;
    let send = async |id: Option<&str>| {
        let mut request = api.http.post(format!("{}/v1/conversations", api.base)).bearer_auth(ACME);
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        response.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(send(Some("trace-7f3a")).await.as_deref(), Some("trace-7f3a"), "the client's id, echoed");
    assert!(seen.lock().unwrap().iter().all(|id| id == "trace-7f3a"), "{seen:?}: the store's calls carry it");
    let made = send(None).await.expect("one made");
    assert!(made.starts_with("req_"), "{made}");
    assert!(seen.lock().unwrap().contains(&made), "{seen:?}");
    // Refused requests carry one too.
    let refused = api.http.post(format!("{}/v1/conversations", api.base)).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    assert!(refused.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn the_extensions_page_with_cursors_pasted_into_the_url_as_they_are() {
    let (_, api) = shared().await;
    let mut created = Vec::new();
    for i in 0..5 {
        let body = json!({"items": [{"role": "user", "content": format!("lisbon trip {i}")}]});
        created.push(api.ok("POST", "/v1/conversations", Some(body)).await["id"].as_str().unwrap().to_owned());
    }
    // Every conversation once, and every hit once, two a page, each `next_cursor` sent as it
    // was answered (persist's cursor text holds `+`, which a URL would read as a space).
    for (first, field) in
        [("/v1/persist/conversations?limit=2", "id"), ("/v1/persist/search?q=lisbon&limit=2", "item_id")]
    {
        let mut seen = Vec::new();
        let mut path = first.to_owned();
        loop {
            let page = api.ok("GET", &path, None).await;
            for entry in page["data"].as_array().unwrap() {
                seen.push(entry[field].as_str().unwrap().to_owned());
            }
            match page["next_cursor"].as_str() {
                Some(cursor) => {
                    assert!(cursor.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)), "{cursor}");
                    path = format!("{first}&after={cursor}");
                }
                None => break,
            }
        }
        let unique: std::collections::BTreeSet<_> = seen.iter().collect();
        assert_eq!((seen.len(), unique.len()), (5, 5), "{first}: {seen:?}");
    }
}
