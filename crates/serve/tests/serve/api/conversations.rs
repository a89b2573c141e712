//! The routes the SDKs call, answering the shapes they read on every backend, and request ids.

use std::sync::Arc;

use persist::Pipeline;
use persist::layer::from_fn;
use persist::memory::MemoryBackend;
use persist_serve::Server;
use serde_json::json;

use super::{ACME, Api, every_backend, keys};

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
