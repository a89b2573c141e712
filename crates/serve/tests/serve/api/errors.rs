//! Refusals: malformed requests, wrong methods, unknown parameters, and a store that does not answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use persist::Pipeline;
use persist::layer::from_fn;
use persist::memory::MemoryBackend;
use persist_serve::{Limits, Server};
use serde_json::{Value, json};

use super::{ACME, Api, keys};

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
            // As an id the conversation holds already: a conflict.
            json!({"items": [twice.clone(), twice.clone()]}).to_string(),
            409,
            "",
        ),
        (
            "POST",
            items.clone(),
            json!({"items": [{"role": "user", "content": "x", "id": "msg_é"}]}).to_string(),
            400,
            "items[0].id",
        ),
        (
            "POST",
            items.clone(),
            json!({"items": [{"type": "function_call_output", "call_id": "c", "output": [false]}]}).to_string(),
            400,
            "items[0].output[0]",
        ),
        (
            "POST",
            items.clone(),
            json!({"items": [{"type": "reasoning", "summary": [1]}]}).to_string(),
            400,
            "items[0].summary[0]",
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
