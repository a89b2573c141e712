//! What a chat app on the AI SDK needs, on every backend: a conversation by the client's id,
//! its messages as `UIMessage[]` (read and written back), a sidebar's listing (when it changed,
//! how many messages, a filter on metadata), and a metadata update compare-and-set.

use persist_serve::Server;
use serde_json::json;

use super::{Api, GLOBEX, every_backend, keys};

#[tokio::test]
async fn a_chat_is_made_by_its_clients_id_and_read_and_written_as_ui_messages() {
    for (name, pipeline, _dir) in every_backend().await {
        let api = Api::start(Server::new(pipeline, keys())).await;
        let chat = "chat_Ab3xZ9";
        let path = format!("/v1/persist/conversations/{chat}");
        let made = api.ok("PUT", &path, Some(json!({"metadata": {"title": "Trip"}}))).await;
        assert_eq!((made["id"].clone(), made["metadata"]["title"].clone()), (json!(chat), json!("Trip")), "{name}");
        let again = api.ok("PUT", &path, None).await;
        assert_eq!(again, made, "{name}: the same conversation, as it is");
        let theirs = api.as_key(GLOBEX).ok("PUT", &path, None).await;
        assert_eq!(theirs["metadata"], json!({}), "{name}: another tenant's conversation of that id is its own");
        let (status, _) = api.call("PUT", "/v1/persist/conversations/bad%20id", None).await;
        assert_eq!(status, 400, "{name}");

        let messages = json!([
            {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Weather in Oslo?"}]},
            {"id": "a1", "role": "assistant", "parts": [
                {"type": "reasoning", "text": "Ask the tool."},
                {"type": "tool-weather", "toolCallId": "c1", "state": "output-available",
                 "input": {"city": "Oslo"}, "output": {"celsius": 4}},
                {"type": "text", "text": "4 °C."},
            ]},
        ]);
        let ui = format!("{path}/ui-messages");
        let written = api.ok("POST", &ui, Some(json!({"messages": messages}))).await;
        assert_eq!(written["data"].as_array().unwrap().len(), 2, "{name}: {written}");
        let read = api.ok("GET", &ui, None).await;
        assert_eq!(read["data"], messages, "{name}: the UIMessages as they were written");
        // A role or a part kind the SDK does not have is refused, and nothing is written.
        for (bad, param) in [
            (json!({"id": "x1", "role": "tool", "parts": []}), "messages[0].role"),
            (json!({"id": "x1", "role": "user", "parts": [{"type": "/~"}]}), "messages[0].parts[0].type"),
            (json!({"id": "x1", "role": "user", "parts": [{"type": {}}]}), "messages[0].parts[0].type"),
        ] {
            let (status, error) = api.call("POST", &ui, Some(json!({"messages": [bad]}))).await;
            assert_eq!((status, error["error"]["param"].clone()), (400, json!(param)), "{name}: {error}");
        }
        assert_eq!(api.ok("GET", &ui, None).await["data"].as_array().unwrap().len(), 2, "{name}: nothing written");
        let more = json!([messages[0], messages[1], {"id": "u2", "role": "user", "parts": [{"type": "text", "text": "Thanks"}]}]);
        let written = api.ok("POST", &ui, Some(json!({"messages": more}))).await;
        assert_eq!(written["data"][0]["id"], "u2", "{name}: only the new message is written: {written}");
        assert_eq!(api.ok("GET", &ui, None).await["data"].as_array().unwrap().len(), 3, "{name}");
        let items = api.ok("GET", &format!("/v1/conversations/{chat}/items?order=asc"), None).await;
        assert_eq!(items["data"][0]["content"][0]["text"], "Weather in Oslo?", "{name}: the same messages as items");

        // Deleted, its id is not used again.
        api.ok("DELETE", &format!("/v1/conversations/{chat}"), None).await;
        let (status, body) = api.call("PUT", &path, None).await;
        assert_eq!(status, 409, "{name}: {body}");
    }
}

/// An id given twice is a conflict whether the conversation holds it or not, told before any
/// message is looked up (ten thousand copies of a stored id once cost as many reads: more than
/// a client's 10 s timeout on a loaded machine); more new messages than a turn takes are refused
/// once they are counted. Nothing is written either way.
#[tokio::test]
async fn ui_messages_given_twice_or_more_than_a_turn_are_refused_before_they_are_all_read() {
    for (name, pipeline, _dir) in every_backend().await {
        let api = Api::start(Server::new(pipeline, keys())).await;
        let ui = "/v1/persist/conversations/chat_dup/ui-messages";
        api.ok("PUT", "/v1/persist/conversations/chat_dup", None).await;
        let message = |id: &str| json!({"id": id, "role": "user", "parts": [{"type": "text", "text": id}]});
        api.ok("POST", ui, Some(json!({"messages": [message("0")]}))).await;
        for (messages, why) in [
            (vec![message("0"); 10_000], "a stored id"),
            (vec![message("0"), message("n1"), message("n1")], "a new id"),
        ] {
            let (status, error) = api.call("POST", ui, Some(json!({"messages": messages}))).await;
            assert_eq!(status, 409, "{name}: {why} given twice: {error}");
            assert!(error["error"]["message"].as_str().unwrap().contains("given twice"), "{name}: {error}");
        }
        let many: Vec<_> = (0..300).map(|n| message(&format!("m{n}"))).collect();
        let (status, error) = api.call("POST", ui, Some(json!({"messages": many}))).await;
        assert_eq!((status, error["error"]["param"].clone()), (400, json!("messages")), "{name}: {error}");
        assert!(error["error"]["message"].as_str().unwrap().contains("at most 256"), "{name}: {error}");
        let read = api.ok("GET", ui, None).await;
        assert_eq!(read["data"], json!([message("0")]), "{name}: nothing more written");
    }
}

#[tokio::test]
async fn the_list_says_when_each_changed_and_filters_on_metadata_and_updates_compare_and_set() {
    for (name, pipeline, _dir) in every_backend().await {
        let api = Api::start(Server::new(pipeline, keys())).await;
        let user = api
            .ok(
                "POST",
                "/v1/conversations",
                Some(json!({"metadata": {"kind": "chat"}, "items": [{"role": "user", "content": "hi"}]})),
            )
            .await;
        let bookkeeping = api.ok("POST", "/v1/conversations", Some(json!({"metadata": {"kind": "app"}}))).await;
        let listed = api.ok("GET", "/v1/persist/conversations?metadata[kind]=chat", None).await;
        let data = listed["data"].as_array().unwrap();
        assert_eq!(data.len(), 1, "{name}: {listed}");
        assert_eq!((data[0]["id"].clone(), data[0]["message_count"].clone()), (user["id"].clone(), json!(1)), "{name}");
        assert!(data[0]["updated_at"].as_i64().unwrap() >= data[0]["created_at"].as_i64().unwrap());
        let (status, _) = api.call("GET", "/v1/persist/conversations?metadata=chat", None).await;
        assert_eq!(status, 400, "{name}");

        // Two instances set a title from the same read: one wins, the other is told (412).
        let path = format!("/v1/conversations/{}", bookkeeping["id"].as_str().unwrap());
        let response = api.http.get(format!("{}{path}", api.base)).bearer_auth(super::ACME).send().await.unwrap();
        let tag = response.headers()["etag"].to_str().unwrap().to_owned();
        let set = |title: &str| json!({"metadata": {"kind": "chat", "title": title}});
        let (first, _) = api.send("POST", &path, Some(set("A").to_string()), &[("if-match", &tag)]).await;
        let (second, lost) = api.send("POST", &path, Some(set("B").to_string()), &[("if-match", &tag)]).await;
        assert_eq!(
            (first, second, lost["error"]["code"].clone()),
            (200, 412, json!("precondition_failed")),
            "{name}: {lost}"
        );
        assert_eq!(api.ok("GET", &path, None).await["metadata"]["title"], "A", "{name}");
        // The replaced pair no longer matches; the new one does.
        let apps = api.ok("GET", "/v1/persist/conversations?metadata[kind]=app", None).await;
        assert_eq!(apps["data"], json!([]), "{name}: {apps}");
        let titled = api.ok("GET", "/v1/persist/conversations?metadata[title]=A", None).await;
        assert_eq!(titled["data"].as_array().unwrap().len(), 1, "{name}");
    }
}
