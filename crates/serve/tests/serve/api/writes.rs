//! Writes: idempotency keys (never written twice, echoed nor stored) and the atomic pop.

use std::sync::Arc;

use persist::memory::MemoryBackend;
use persist::{Pipeline, TenantId};
use persist_serve::Server;
use serde_json::{Value, json};

use super::{Api, GLOBEX, every_backend, keys, shared};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_come_back_as_sent_and_an_integer_past_64_bits_is_refused() {
    // Sent as text, as a client sends them: each double bit for bit (the largest included, which
    // once made a PostgreSQL thread unreadable), a whole double still a double.
    let numbers = "[0.9424502837770503,1.7976931348623157e308,5e-324,8.9201813375189e16,-9.2e18,1e21,1e-7,\
                   18446744073709551615,-9223372036854775808,0]";
    let expected: Value = serde_json::from_str(numbers).unwrap();
    for (name, pipeline, _dir) in every_backend().await {
        let api = Api::start(Server::new(pipeline, keys())).await;
        let id = api.ok("POST", "/v1/conversations", None).await["id"].as_str().unwrap().to_owned();
        let path = format!("/v1/conversations/{id}/items");
        let body = format!(
            r#"{{"items": [{{"type": "message", "role": "user", "content": [{{"type": "input_text", "text": "n", "numbers": {numbers}}}]}}]}}"#
        );
        let (status, _) = api.send("POST", &path, Some(body), &[]).await;
        assert_eq!(status, 200, "{name}");
        let items = api.all_items(&id, "asc", 100).await;
        let back = &items[0]["content"][0]["numbers"];
        assert_eq!(format!("{back:?}"), format!("{expected:?}"), "{name}: every number as sent");

        for integer in ["18446744073709551616", "-9223372036854775809", "1000000000000000000000000000000"] {
            let body = format!(r#"{{"items": [{{"role": "user", "content": "big", "metadata_like": {integer}}}]}}"#);
            let (status, refused) = api.send("POST", &path, Some(body), &[]).await;
            assert_eq!(status, 400, "{name}: {integer}");
            let message = refused["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(integer) && message.contains("64 bits"), "{name}: {message}");
        }
        // A double written with an exponent is a double: taken.
        let body = r#"{"items": [{"role": "user", "content": "big", "x": 1e30}]}"#.to_owned();
        assert_eq!(api.send("POST", &path, Some(body), &[]).await.0, 200, "{name}");
        assert_eq!(api.all_items(&id, "asc", 100).await.len(), 2, "{name}: nothing refused was written");
    }
}
