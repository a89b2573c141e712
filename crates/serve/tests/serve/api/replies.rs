//! A live reply's writer over HTTP, on every backend: start (with the user's turn, keyed, one
//! per conversation), appends written once at the writer's offsets, a stop told in the answer
//! to the writer's next call, the reply's status one truth in items, and the writer's signals.

use std::time::Duration;

use persist_serve::Server;
use serde_json::{Value, json};

use super::{Api, GLOBEX, every_backend, keys};

fn text(text: &str) -> Value {
    json!([{"type": "text", "text": text}])
}

#[tokio::test]
async fn a_reply_is_written_over_http_once_at_each_offset_and_stopped_from_anywhere() {
    for (name, pipeline, _dir) in every_backend().await {
        let api = Api::start(Server::new(pipeline, keys())).await;
        let id = api.ok("POST", "/v1/conversations", Some(json!({}))).await["id"].as_str().unwrap().to_owned();
        let replies = format!("/v1/persist/conversations/{id}/replies");
        let start = json!({"items": [{"role": "user", "content": "Tell me a story"}], "lease_seconds": 60});
        let (status, started) =
            api.send("POST", &replies, Some(start.to_string()), &[("idempotency-key", "s-1")]).await;
        assert_eq!(status, 200, "{name}: {started}");
        assert_eq!(
            (started["status"].clone(), started["offset"].clone()),
            (json!("in_progress"), json!("0")),
            "{name}"
        );
        assert_eq!(started["items"][0]["role"], "user", "{name}: the user's turn is written with it");
        let reply = started["id"].as_str().unwrap().to_owned();
        let (_, again) = api.send("POST", &replies, Some(start.to_string()), &[("idempotency-key", "s-1")]).await;
        assert_eq!((again["id"].as_str(), again["written"].clone()), (Some(reply.as_str()), json!(false)), "{name}");
        let (status, running) = api.call("POST", &replies, Some(json!({}))).await;
        assert_eq!((status, running["error"]["code"].clone()), (409, json!("reply_running")), "{name}");
        assert_eq!(running["error"]["reply_id"], reply.as_str(), "{name}: the running reply is named");

        let parts = format!("{replies}/{reply}/parts");
        let first = api.ok("POST", &parts, Some(json!({"offset": "0", "parts": text("Once")}))).await;
        assert_eq!((first["offset"].clone(), first["written"].clone()), (json!("0.4"), json!(true)), "{name}");
        let retried = api.ok("POST", &parts, Some(json!({"offset": "0", "parts": text("Once")}))).await;
        assert_eq!((retried["offset"].clone(), retried["written"].clone()), (json!("0.4"), json!(false)), "{name}");
        let (status, gap) = api.call("POST", &parts, Some(json!({"offset": "0.9", "parts": text("x")}))).await;
        assert_eq!(
            (status, gap["error"]["code"].clone(), gap["error"]["offset"].clone()),
            (409, json!("offset_gap"), json!("0.4"))
        );
        let (status, bad) =
            api.call("POST", &parts, Some(json!({"offset": "0.4", "parts": [{"text": "no type"}]}))).await;
        assert_eq!((status, bad["error"]["param"].clone()), (400, json!("parts[0]")), "{name}");
        let (status, _) = api.call("POST", &parts, Some(json!({"offset": "x", "parts": text("x")}))).await;
        assert_eq!(status, 400, "{name}");
        api.ok("POST", &parts, Some(json!({"offset": "0.4", "parts": text(" upon")}))).await;
        let renewed = api.ok("POST", &format!("{replies}/{reply}/renew"), None).await;
        assert!(renewed["expires_at"].as_f64().unwrap() > 0.0, "{name}: {renewed}");
        let (status, _) =
            api.as_key(GLOBEX).call("POST", &parts, Some(json!({"offset": "0.9", "parts": text("x")}))).await;
        assert_eq!(status, 404, "{name}: another tenant's reply is none");

        // The writer's signals, then a stop from another client: the reply ends at once.
        let signals = api.http.get(format!("{}{replies}/{reply}/signals", api.base)).bearer_auth(super::ACME);
        let mut signals = signals.send().await.unwrap();
        let stop = api.ok("POST", &format!("/v1/persist/conversations/{id}/items/{reply}/stop"), None).await;
        assert_eq!(stop, json!({"stopped": true}), "{name}");
        let mut heard = String::new();
        while !heard.contains("event: stop") {
            let chunk = tokio::time::timeout(Duration::from_secs(10), signals.chunk()).await.unwrap().unwrap();
            heard.push_str(&String::from_utf8_lossy(&chunk.expect("the stream goes on until its event")));
        }
        let (status, told) = api.call("POST", &parts, Some(json!({"offset": "0.9", "parts": text(" a time")}))).await;
        assert_eq!((status, told["error"]["code"].clone()), (409, json!("reply_stopped")), "{name}: {told}");
        let item = api.ok("GET", &format!("/v1/conversations/{id}/items/{reply}"), None).await;
        assert_eq!(item["status"], "incomplete", "{name}: {item}");
        assert_eq!(item["content"][0]["text"], "Once upon", "{name}: the partial reply is kept");

        // The conversation is free: a reply finished in one call, then finished again.
        // A reply of the app's own id.
        let next = api.ok("POST", &replies, Some(json!({"id": "asst_app_1"}))).await["id"].as_str().unwrap().to_owned();
        assert_eq!(next, "asst_app_1", "{name}");
        let finish = json!({"offset": "0", "parts": text("The end.")});
        let done = api.ok("POST", &format!("{replies}/{next}/finish"), Some(finish.clone())).await;
        assert_eq!(
            (done["status"].clone(), done["end"].clone(), done["written"].clone()),
            (json!("completed"), json!("complete"), json!(true))
        );
        let twice = api.ok("POST", &format!("{replies}/{next}/finish"), Some(finish)).await;
        assert_eq!(twice["written"], false, "{name}");
        let (status, ended) = api
            .call("POST", &format!("{replies}/{next}/parts"), Some(json!({"offset": "0.8", "parts": text("!")})))
            .await;
        assert_eq!(
            (status, ended["error"]["code"].clone(), ended["error"]["status"].clone()),
            (409, json!("reply_ended"), json!("completed"))
        );
        let third = api.ok("POST", &replies, Some(json!({}))).await["id"].as_str().unwrap().to_owned();
        let failed = json!({"status": "incomplete", "reason": "the model failed"});
        let gave_up = api.ok("POST", &format!("{replies}/{third}/finish"), Some(failed)).await;
        assert_eq!(
            (gave_up["status"].clone(), gave_up["end"].clone()),
            (json!("incomplete"), json!("interrupted")),
            "{name}"
        );
    }
}

#[tokio::test]
async fn an_items_status_is_one_truth_an_incomplete_reply_is_stored_interrupted() {
    for (name, pipeline, _dir) in every_backend().await {
        let api = Api::start(Server::new(pipeline, keys())).await;
        let cut = json!({"type": "message", "role": "assistant", "status": "incomplete",
                         "content": [{"type": "output_text", "text": "Half an ans"}]});
        let created = api.ok("POST", "/v1/conversations", Some(json!({"items": [cut.clone()]}))).await;
        let id = created["id"].as_str().unwrap().to_owned();
        let items = format!("/v1/conversations/{id}/items");
        let stored = api.ok("GET", &items, None).await;
        assert_eq!(stored["data"][0]["status"], "incomplete", "{name}: {stored}");
        let question = json!({"role": "user", "content": "Go on"});
        let written = api.ok("POST", &items, Some(json!({"items": [question.clone(), cut.clone()]}))).await;
        assert_eq!(written["data"][1]["status"], "incomplete", "{name}: {written}");
        let reply = written["data"][1]["id"].as_str().unwrap().to_owned();
        // What persist says of it agrees: the stream ends interrupted, the stop finds it ended.
        let stop = api.ok("POST", &format!("/v1/persist/conversations/{id}/items/{reply}/stop"), None).await;
        assert_eq!(stop, json!({"stopped": false, "status": "interrupted"}), "{name}");
        let item = api.ok("GET", &format!("{items}/{reply}"), None).await;
        assert_eq!(
            (item["status"].clone(), item["content"][0]["text"].clone()),
            (json!("incomplete"), json!("Half an ans"))
        );

        let (status, error) = api.call("POST", &items, Some(json!({"items": [cut.clone(), question.clone()]}))).await;
        assert_eq!((status, error["error"]["param"].clone()), (400, json!("items[0].status")), "{name}: {error}");
        let open = json!({"type": "message", "role": "assistant", "status": "in_progress", "content": []});
        let (status, error) = api.call("POST", &items, Some(json!({"items": [open]}))).await;
        assert_eq!(status, 400, "{name}: an item is not written in progress: {error}");
        let (status, _) =
            api.call("POST", &format!("/v1/persist/conversations/{id}/replies"), Some(json!({"items": [cut]}))).await;
        assert_eq!(status, 400, "{name}: the items before a reply are complete");
    }
}
