//! persist's extensions: branches, compacted reads, search, the feed, streamed replies, and their paging.

use std::time::Duration;

use persist::memory::MemoryBackend;
use persist::{Pipeline, TenantId};
use persist_serve::Server;
use serde_json::{Value, json};

use super::{ACME, Api, GLOBEX, keys, shared};

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
    // What the document does not allow is refused: an unknown field, a `mode` not one of its two.
    let switch = format!("/v1/persist/conversations/{id}/branches/switch");
    for body in [json!({"item_id": "msg_first", "bogus": 1}), json!({"item_id": "msg_first", "mode": null})] {
        let (status, answer) = api.call("POST", &switch, Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    // A resumed feed still checks its query: `Last-Event-ID` wins over a valid one only.
    let events = format!("/v1/persist/conversations/{id}/events?after=-1");
    let (status, answer) = api.send("GET", &events, None, &[("last-event-id", "0")]).await;
    assert_eq!((status, answer["error"]["param"].clone()), (400, json!("after")), "{answer}");
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
