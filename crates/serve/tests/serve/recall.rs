//! `POST /v1/persist/recall` on the embedded stores: it finds the item most like the query,
//! within the caller's tenant only, scoped to a conversation or a user's threads, with its
//! neighbours; without an embedder it says how to get one; bad input is the API's 400; a model
//! that is down is 503.

use persist::args::Update;
use persist::memory::MemoryBackend;
use persist::recall::{AutoEmbedLayer, HashEmbedder};
use persist::{Context, Metadata, Pipeline, TenantId, ThreadId};
use persist_serve::Server;
use persist_testkit::FlakyEmbedder;
use serde_json::{Value, json};

use crate::support::{ACME, GLOBEX, keys};

/// A server on a port of its own: its base URL.
async fn start(server: Server) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(server.serve(listener, std::future::pending()));
    base
}

/// A request as `key`: the status, the `x-should-retry` header and the JSON body.
async fn post(base: &str, key: &str, path: &str, body: Value) -> (u16, Option<String>, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry = response.headers().get("x-should-retry").map(|v| v.to_str().unwrap().to_owned());
    (status, retry, serde_json::from_str(&response.text().await.unwrap()).unwrap())
}

async fn ok(base: &str, key: &str, path: &str, body: Value) -> Value {
    let (status, _, answer) = post(base, key, path, body).await;
    assert_eq!(status, 200, "{path}: {answer}");
    answer
}

/// A conversation of `key`'s tenant holding `texts` (user messages): its id.
async fn conversation(base: &str, key: &str, texts: &[&str]) -> String {
    let items: Vec<Value> = texts.iter().map(|text| json!({"role": "user", "content": text})).collect();
    ok(base, key, "/v1/conversations", json!({"items": items})).await["id"].as_str().unwrap().to_owned()
}

/// The text of each hit's item, best first.
fn texts(answer: &Value) -> Vec<String> {
    let data = answer["data"].as_array().unwrap();
    data.iter().map(|hit| hit["item"]["content"][0]["text"].as_str().unwrap().to_owned()).collect()
}

fn conversations(answer: &Value) -> Vec<String> {
    let data = answer["data"].as_array().unwrap();
    data.iter().map(|hit| hit["conversation_id"].as_str().unwrap().to_owned()).collect()
}

async fn stores() -> Vec<(&'static str, Pipeline, Option<tempfile::TempDir>)> {
    let embed = || AutoEmbedLayer::new(HashEmbedder::new(256));
    let dir = tempfile::tempdir().unwrap();
    let sqlite = persist::sqlite::SqliteBackend::open(dir.path().join("recall.db")).await.unwrap();
    vec![
        ("memory", Pipeline::builder().layer(embed()).build(MemoryBackend::new()), None),
        ("sqlite", Pipeline::builder().layer(embed()).build(sqlite), Some(dir)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_finds_the_callers_items_most_like_the_query_and_never_another_tenants() {
    for (store, pipeline, _dir) in stores().await {
        let server = Server::new(pipeline.clone(), keys()).with_embedder(HashEmbedder::new(256));
        let base = start(server).await;
        let trip = conversation(&base, ACME, &["My sister lives in Lisbon", "I like green tea"]).await;
        let chores = conversation(&base, ACME, &["Book the flight for Friday", "Water the plants"]).await;
        let theirs = conversation(&base, GLOBEX, &["My brother lives in Lisbon", "Lisbon Lisbon Lisbon"]).await;

        let found = ok(&base, ACME, "/v1/persist/recall", json!({"query": "who lives in Lisbon?", "limit": 1})).await;
        assert_eq!(texts(&found), ["My sister lives in Lisbon"], "{store}: {found}");
        let hit = &found["data"][0];
        assert_eq!((hit["object"].clone(), hit["conversation_id"].clone()), (json!("recall.hit"), json!(trip)));
        assert_eq!(hit["item"]["type"], "message");
        assert!(hit["item"]["id"].as_str().unwrap().starts_with("msg_"));
        assert!(hit["score"].as_f64().unwrap() > 0.0 && hit["score"] == hit["similarity"], "{hit}");
        assert_eq!(found["model"], "persist-hash-v1-256");

        // Every item of the tenant at most, never another tenant's; best first.
        let all = ok(&base, ACME, "/v1/persist/recall", json!({"query": "Lisbon", "limit": 20})).await;
        assert_eq!(all["data"].as_array().unwrap().len(), 4, "{store}: {all}");
        assert!(conversations(&all).iter().all(|c| *c == trip || *c == chores), "{store}: {all}");
        let scores: Vec<f64> = all["data"].as_array().unwrap().iter().map(|h| h["score"].as_f64().unwrap()).collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
        let globex = ok(&base, GLOBEX, "/v1/persist/recall", json!({"query": "who lives in Lisbon?"})).await;
        assert_eq!(conversations(&globex), [theirs.clone(), theirs.clone()], "{store}: {globex}");
        // Another tenant's conversation is not there, as one that does not exist.
        let (status, _, answer) =
            post(&base, ACME, "/v1/persist/recall", json!({"query": "Lisbon", "conversation": theirs})).await;
        assert_eq!((status, answer["error"]["code"].clone()), (404, json!("not_found")), "{store}");

        // One conversation's; the items around each hit; fused with keywords.
        let one = ok(&base, ACME, "/v1/persist/recall", json!({"query": "Lisbon", "conversation": chores})).await;
        assert!(conversations(&one).iter().all(|c| *c == chores), "{store}: {one}");
        let around =
            ok(&base, ACME, "/v1/persist/recall", json!({"query": "sister in Lisbon", "limit": 1, "neighbours": 1}))
                .await;
        assert_eq!(around["data"][0]["before"], json!([]));
        assert_eq!(around["data"][0]["after"][0]["content"][0]["text"], "I like green tea", "{store}: {around}");
        let fused = json!({"query": "the plants", "keywords": "plants", "limit": 2});
        let fused = ok(&base, ACME, "/v1/persist/recall", fused).await;
        assert_eq!(texts(&fused)[0], "Water the plants", "{store}: {fused}");
        let fused = ok(&base, ACME, "/v1/persist/recall", json!({"query": "green tea", "keywords": true})).await;
        assert_eq!(texts(&fused)[0], "I like green tea", "{store}: {fused}");

        // A user's threads: those whose metadata `user_id` is theirs.
        let acme = pipeline.scoped(Context::new().with_tenant(TenantId::new("acme").unwrap()));
        let marked =
            Update::thread(ThreadId::new(&chores).unwrap()).with_metadata(Metadata::new().with("user_id", json!("u1")));
        acme.update(marked).await.unwrap();
        let user =
            ok(&base, ACME, "/v1/persist/recall", json!({"query": "Lisbon", "user_id": "u1", "limit": 20})).await;
        assert_eq!(conversations(&user), [chores.clone(), chores.clone()], "{store}: {user}");
        let nobody = ok(&base, ACME, "/v1/persist/recall", json!({"query": "Lisbon", "user_id": "u2"})).await;
        assert_eq!(nobody["data"], json!([]), "{store}");

        // A conversation's own `metadata.user_id` marks it too, and an update without it unmarks it.
        ok(&base, ACME, &format!("/v1/conversations/{trip}"), json!({"metadata": {"user_id": "u2", "plan": "pro"}}))
            .await;
        let theirs =
            ok(&base, ACME, "/v1/persist/recall", json!({"query": "Lisbon", "user_id": "u2", "limit": 20})).await;
        assert_eq!(conversations(&theirs), [trip.clone(), trip.clone()], "{store}: {theirs}");
        let read = reqwest::Client::new()
            .get(format!("{base}/v1/conversations/{trip}"))
            .bearer_auth(ACME)
            .send()
            .await
            .unwrap();
        let read: Value = serde_json::from_str(&read.text().await.unwrap()).unwrap();
        assert_eq!(read["metadata"], json!({"user_id": "u2", "plan": "pro"}), "the API's metadata as it was written");
        ok(&base, ACME, &format!("/v1/conversations/{trip}"), json!({"metadata": {"plan": "pro"}})).await;
        let gone = ok(&base, ACME, "/v1/persist/recall", json!({"query": "Lisbon", "user_id": "u2"})).await;
        assert_eq!(gone["data"], json!([]), "{store}");
        let created = json!({"items": [{"role": "user", "content": "Lisbon again"}], "metadata": {"user_id": "u3"}});
        let new = ok(&base, ACME, "/v1/conversations", created).await["id"].as_str().unwrap().to_owned();
        let found = ok(&base, ACME, "/v1/persist/recall", json!({"query": "Lisbon", "user_id": "u3"})).await;
        assert_eq!(conversations(&found), [new], "{store}: {found}");
    }
}

#[tokio::test]
async fn without_an_embedder_recall_says_how_to_get_one() {
    let base = start(Server::new(Pipeline::new(MemoryBackend::new()), keys())).await;
    let (status, retry, answer) = post(&base, ACME, "/v1/persist/recall", json!({"query": "anything"})).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(retry.as_deref(), Some("false"));
    let error = &answer["error"];
    assert_eq!(
        (error["type"].clone(), error["code"].clone()),
        (json!("invalid_request_error"), json!("recall_unavailable"))
    );
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("embedding model") && message.contains("persist serve --embeddings-url URL"), "{message}");
    // Still a tenant's route: no key is 401.
    let bare = reqwest::Client::new().post(format!("{base}/v1/persist/recall")).send().await.unwrap();
    assert_eq!(bare.status().as_u16(), 401);
}

#[tokio::test]
async fn bad_requests_are_the_apis_400s_and_a_model_that_is_down_is_503() {
    let flaky = FlakyEmbedder::new(HashEmbedder::new(64));
    let switch = flaky.clone();
    let pipeline = Pipeline::builder().layer(AutoEmbedLayer::new(flaky.clone())).build(MemoryBackend::new());
    let base = start(Server::new(pipeline, keys()).with_embedder(flaky)).await;
    conversation(&base, ACME, &["My sister lives in Lisbon"]).await;
    for (body, param) in [
        (json!({}), "query"),
        (json!({"query": ""}), "query"),
        (json!({"query": "  "}), "query"),
        (json!({"query": 3}), "query"),
        (json!({"query": "x", "limit": 0}), "limit"),
        (json!({"query": "x", "limit": 21}), "limit"),
        (json!({"query": "x", "limit": "5"}), "limit"),
        (json!({"query": "x", "limit": 2.5}), "limit"),
        (json!({"query": "x", "neighbours": 6}), "neighbours"),
        (json!({"query": "x", "keywords": 1}), "keywords"),
        (json!({"query": "x", "user_id": 7}), "user_id"),
        (json!({"query": "x", "conversation": ""}), "conversation"),
        (json!({"query": "x", "cursor": "c"}), "cursor"),
    ] {
        let (status, _, answer) = post(&base, ACME, "/v1/persist/recall", body.clone()).await;
        assert_eq!((status, answer["error"]["param"].clone()), (400, json!(param)), "{body}: {answer}");
        assert_eq!(answer["error"]["type"], "invalid_request_error");
    }
    let found = ok(&base, ACME, "/v1/persist/recall", json!({"query": "Lisbon", "limit": 20})).await;
    assert_eq!(texts(&found), ["My sister lives in Lisbon"]);

    switch.set_down(true);
    let (status, _, answer) = post(&base, ACME, "/v1/persist/recall", json!({"query": "Lisbon"})).await;
    assert_eq!((status, answer["error"]["code"].clone()), (503, json!("embedder_unavailable")), "{answer}");
    assert!(!answer.to_string().contains("is down"), "the model's words are logged, not answered: {answer}");
}
