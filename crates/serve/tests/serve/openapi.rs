//! The OpenAPI document cannot drift from the server: every documented route is served with
//! exactly the documented methods and query parameters, every route is driven once on a real
//! server and its answer (JSON body, or each Server-Sent Event's data) validated against the
//! schema the document gives for that route and status, errors included, and every documented
//! operation must have been driven.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use persist::memory::MemoryBackend;
use persist::{Pipeline, TenantId};
use persist_serve::Server;
use serde_json::{Value, json};

use crate::support;
use crate::support::{ACME, start};

/// An answer: its status, `content-type`, `allow`, and its body (JSON, else a string).
struct Answer {
    status: u16,
    content_type: String,
    allow: Option<String>,
    body: Value,
}

/// The document, the server, and what was checked against it.
struct Spec {
    doc: Value,
    base: String,
    http: reqwest::Client,
    /// The operations whose 200 answer was validated, as `(method, path template)`.
    validated: HashSet<(String, String)>,
}

impl Spec {
    async fn send(&self, method: &str, path: &str, key: Option<&str>, body: Option<&Value>) -> reqwest::Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        request.send().await.unwrap()
    }

    async fn answer(&self, method: &str, path: &str, key: Option<&str>, body: Option<&Value>) -> Answer {
        let response = self.send(method, path, key, body).await;
        let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
        let (status, content_type, allow) =
            (response.status().as_u16(), header("content-type").unwrap_or_default(), header("allow"));
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer { status, content_type, allow, body }
    }

    /// The documented operation, or a failure naming the route the document lacks.
    fn operation(&self, method: &str, template: &str) -> &Value {
        let operation = &self.doc["paths"][template][method.to_lowercase()];
        assert!(operation.is_object(), "{method} {template} is driven here but not in the OpenAPI document");
        operation
    }

    /// Validates `instance` against `schema`, its `$ref`s resolved in the document's components.
    fn validate(&self, schema: &Value, instance: &Value, what: &str) {
        let mut root = schema.clone();
        root["components"] = self.doc["components"].clone();
        let validator = jsonschema::draft202012::new(&root).unwrap_or_else(|e| panic!("{what}: bad schema: {e}"));
        let errors: Vec<String> =
            validator.iter_errors(instance).map(|e| format!("{e} (at '{}')", e.instance_path().as_str())).collect();
        assert!(
            errors.is_empty(),
            "{what}: the answer does not match the document:\n{}\n{instance:#}",
            errors.join("\n")
        );
    }

    /// Sends a request on `template` (`path` filled in) and validates its body against the
    /// documented request body, and its answer against the documented one for its status.
    async fn call(&mut self, method: &str, template: &str, path: &str, body: Option<Value>) -> Answer {
        self.call_as(method, template, path, Some(ACME), body).await
    }

    async fn call_as(
        &mut self,
        method: &str,
        template: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let what = format!("{method} {path}");
        let operation = self.operation(method, template).clone();
        // Every query parameter sent is documented.
        for pair in path.split_once('?').map(|(_, query)| query.split('&')).into_iter().flatten() {
            let name = pair.split('=').next().unwrap().trim_end_matches("[]");
            let mut documented = operation["parameters"].as_array().into_iter().flatten();
            assert!(documented.any(|p| p["in"] == "query" && p["name"] == name), "{what}: '{name}' is not documented");
        }
        if let Some(body) = &body {
            let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
            assert!(schema.is_object(), "{what}: a body is sent, none is documented");
            self.validate(schema, body, &format!("{what} (request body)"));
        }
        let answer = self.answer(method, path, key, body.as_ref()).await;
        self.check(method, template, path, &answer);
        answer
    }

    /// Validates an answer of `template` against the one the document gives for its status.
    fn check(&mut self, method: &str, template: &str, path: &str, answer: &Answer) {
        let what = format!("{method} {path}");
        let operation = self.operation(method, template).clone();
        let documented = &operation["responses"][answer.status.to_string()];
        assert!(documented.is_object(), "{what}: {} is not a documented answer: {}", answer.status, answer.body);
        let schema = &documented["content"]["application/json"]["schema"];
        assert!(answer.content_type.starts_with("application/json"), "{what}: {}", answer.content_type);
        self.validate(schema, &answer.body, &what);
        if answer.status == 200 {
            self.validated.insert((method.to_owned(), template.to_owned()));
        }
    }

    async fn ok(&mut self, method: &str, template: &str, path: &str, body: Option<Value>) -> Value {
        let answer = self.call(method, template, path, body).await;
        assert_eq!(answer.status, 200, "{method} {path}: {}", answer.body);
        answer.body
    }

    /// Opens an event stream and validates each event's data against the schema the document
    /// gives for its name, until `enough` events (or the stream's end).
    async fn events(&mut self, template: &str, path: &str, enough: usize) -> Vec<(String, Value)> {
        let operation = self.operation("GET", template).clone();
        let media = &operation["responses"]["200"]["content"]["text/event-stream"];
        assert!(media.is_object(), "GET {template} is documented as no event stream");
        let mut response = self.send("GET", path, Some(ACME), None).await;
        assert_eq!(response.status().as_u16(), 200, "GET {path}");
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut text = String::new();
        let mut events = Vec::new();
        loop {
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                let (mut name, mut data) = (String::from("message"), None);
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        name = value.trim().to_owned();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        // The UI message stream's last line is no JSON.
                        if value.trim() != "[DONE]" {
                            data = Some(serde_json::from_str::<Value>(value.trim()).unwrap());
                        }
                    }
                }
                let Some(data) = data else { continue };
                let documented = media["x-events"].as_array().unwrap().iter().find(|e| e["event"] == name.as_str());
                let documented =
                    documented.unwrap_or_else(|| panic!("GET {template}: event '{name}' is not documented"));
                self.validate(&documented["data"], &data, &format!("GET {path}: event {name}"));
                events.push((name, data));
            }
            if events.len() >= enough {
                break;
            }
            match tokio::time::timeout(Duration::from_secs(10), response.chunk()).await.unwrap().unwrap() {
                Some(chunk) => text.push_str(&String::from_utf8_lossy(&chunk)),
                None => break,
            }
        }
        assert!(!events.is_empty(), "GET {path}: no event");
        self.validated.insert(("GET".to_owned(), template.to_owned()));
        events
    }

    /// Every documented `(method, path template)`.
    fn operations(&self) -> BTreeSet<(String, String)> {
        let mut all = BTreeSet::new();
        for (path, item) in self.doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                all.insert((method.to_uppercase(), path.clone()));
            }
        }
        all
    }
}

/// `path` with its `{id}` and `{item_id}` filled in.
fn fill(template: &str, id: &str, item: &str) -> String {
    template.replace("{id}", id).replace("{item_id}", item)
}

/// A query value the parameter's schema takes.
fn example(schema: &Value) -> String {
    let scalar = if schema["type"] == "array" { &schema["items"] } else { schema };
    match (&scalar["enum"], scalar["type"].as_str()) {
        (Value::Array(values), _) => values[0].as_str().unwrap().to_owned(),
        (_, Some("integer")) => "1".to_owned(),
        _ => "x".to_owned(),
    }
}

async fn spec() -> (Spec, Pipeline) {
    let embedding = persist::recall::AutoEmbedLayer::new(support::embedder());
    let pipeline = Pipeline::builder().layer(embedding).build(MemoryBackend::new());
    let base = start(pipeline.clone()).await;
    let spec = Spec { doc: Server::openapi(), base, http: reqwest::Client::new(), validated: HashSet::new() };
    (spec, pipeline)
}

#[tokio::test]
async fn every_documented_route_is_served_with_exactly_its_methods_and_parameters() {
    let (spec, _) = spec().await;
    assert_eq!(spec.doc["openapi"], "3.1.0");
    let methods = ["GET", "POST", "DELETE", "PUT", "PATCH"];
    let mut ids = HashSet::new();
    for (template, item) in spec.doc["paths"].as_object().unwrap() {
        let path = fill(template, "conv_none", "msg_none");
        let documented: BTreeSet<String> = item.as_object().unwrap().keys().map(|m| m.to_uppercase()).collect();
        for method in methods {
            // A PUT makes a conversation of the id it names: one no conversation may have.
            let path = if method == "PUT" { fill(template, "conv%20none", "msg_none") } else { path.clone() };
            let answer = spec.answer(method, &path, Some(ACME), None).await;
            let not_a_route = answer.status == 404 && answer.body["error"]["code"] == "unknown_url";
            if documented.contains(method) {
                assert!(
                    !not_a_route && answer.status != 405,
                    "{method} {path} is documented, not served: {}",
                    answer.body
                );
                continue;
            }
            // Another method: 405, and the route's `Allow` names the documented methods only.
            assert_eq!(answer.status, 405, "{method} {path} is served but not documented: {}", answer.body);
            let allowed: BTreeSet<String> = answer
                .allow
                .unwrap_or_default()
                .split(',')
                .map(|m| m.trim().to_owned())
                .filter(|m| m != "HEAD" && !m.is_empty())
                .collect();
            assert_eq!(allowed, documented, "{path}: the methods served and documented differ");
        }
        for (method, operation) in item.as_object().unwrap() {
            assert!(ids.insert(operation["operationId"].as_str().unwrap().to_owned()), "operationId twice");
            // Every documented query parameter is taken; an extension refuses any other one.
            let query: Vec<String> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .map(|p| format!("{}={}", p["name"].as_str().unwrap(), example(&p["schema"])))
                .collect();
            let method = method.to_uppercase();
            if method == "GET" && !query.is_empty() {
                let answer = spec.answer(&method, &format!("{path}?{}", query.join("&")), Some(ACME), None).await;
                assert_ne!(answer.body["error"]["code"], "unknown_parameter", "{path}: a documented parameter refused");
            }
            let extension = template.starts_with("/v1/persist/") && !template.ends_with("openapi.json");
            if method == "GET" && extension {
                let answer = spec.answer(&method, &format!("{path}?undocumented=1"), Some(ACME), None).await;
                assert_eq!(answer.body["error"]["code"], "unknown_parameter", "{path} takes an undocumented parameter");
            }
        }
    }
    let unknown = spec.answer("GET", "/v1/nothing", Some(ACME), None).await;
    assert_eq!((unknown.status, unknown.body["error"]["code"].clone()), (404, json!("unknown_url")));
    // Each `$ref` names a schema the document has.
    let text = spec.doc.to_string();
    for reference in text.split("\"#/components/schemas/").skip(1) {
        let name = &reference[..reference.find('"').unwrap()];
        assert!(spec.doc["components"]["schemas"][name].is_object(), "no schema {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_what_the_document_says() {
    use persist::summary::Summarize;
    let (mut spec, pipeline) = spec().await;
    // The document, served without a key, is the one the server generates.
    let served = spec.call_as("GET", "/v1/persist/openapi.json", "/v1/persist/openapi.json", None, None).await;
    assert_eq!((served.status, &served.body), (200, &Server::openapi()));
    for probe in ["/health", "/ready"] {
        spec.call_as("GET", probe, probe, None, None).await;
    }

    let turn = json!([
        {"role": "user", "content": "Where is my order to Lisbon?"},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Look it up."}]},
        {"type": "function_call", "call_id": "call_1", "name": "track", "arguments": "{\"order\":42}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "ships tomorrow"},
    ]);
    let created = spec
        .ok(
            "POST",
            "/v1/conversations",
            "/v1/conversations",
            Some(json!({"metadata": {"topic": "demo"}, "items": turn})),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    spec.ok("POST", "/v1/conversations", "/v1/conversations", Some(json!({}))).await;
    let one = "/v1/conversations/{id}";
    spec.ok("GET", one, &fill(one, &id, ""), None).await;
    spec.ok("POST", one, &fill(one, &id, ""), Some(json!({"metadata": {"topic": "orders"}}))).await;
    let items = "/v1/conversations/{id}/items";
    let reply = json!({"items": [{"id": "msg_reply", "role": "assistant", "content": "It ships tomorrow."}]});
    spec.ok("POST", items, &fill(items, &id, ""), Some(reply.clone())).await;
    let other = json!({"items": [{"id": "msg_reply", "role": "assistant", "content": "Another reply."}]});
    let taken = spec.call("POST", items, &fill(items, &id, ""), Some(other)).await;
    assert_eq!(taken.status, 409, "an item id is unique in its conversation");
    let listed = spec
        .ok(
            "GET",
            items,
            &format!("{}?order=asc&limit=10&include[]=reasoning.encrypted_content", fill(items, &id, "")),
            None,
        )
        .await;
    let kinds: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["message", "reasoning", "function_call", "function_call_output", "message"]);
    let item = "/v1/conversations/{id}/items/{item_id}";
    spec.ok("GET", item, &fill(item, &id, "msg_reply"), None).await;

    let page = "/v1/persist/conversations";
    let first = spec.ok("GET", page, "/v1/persist/conversations?limit=1", None).await;
    let cursor = first["next_cursor"].as_str().expect("a first page of two has a next_cursor");
    let cursor = cursor.replace('+', "%2B").replace(':', "%3A");
    spec.ok("GET", page, &format!("/v1/persist/conversations?limit=1&after={cursor}"), None).await;
    let hits = spec.ok("GET", "/v1/persist/search", "/v1/persist/search?q=lisbon&limit=5", None).await;
    assert_eq!(hits["data"].as_array().unwrap().len(), 1, "{hits}");

    let recall = "/v1/persist/recall";
    let body = json!({"query": "my order to Lisbon", "limit": 3, "neighbours": 1, "keywords": true});
    let recalled = spec.ok("POST", recall, recall, Some(body)).await;
    assert_eq!(recalled["data"][0]["item"]["content"][0]["text"], "Where is my order to Lisbon?", "{recalled}");
    let scoped = json!({"query": "ships", "conversation": id, "user_id": "u1", "keywords": "ships"});
    spec.ok("POST", recall, recall, Some(scoped)).await;
    let elsewhere = spec.call("POST", recall, recall, Some(json!({"query": "x", "conversation": "conv_none"}))).await;
    assert_eq!(elsewhere.status, 404);
    // Bodies the document refuses: sent as they are, their answers checked.
    for body in [json!({"query": "x", "limit": 21}), json!({"query": ""}), json!({"query": "x", "nope": 1})] {
        let answer = spec.answer("POST", recall, Some(ACME), Some(&body)).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        spec.check("POST", recall, recall, &answer);
    }

    let compacted = "/v1/persist/conversations/{id}/compacted";
    spec.ok("GET", compacted, &fill(compacted, &id, ""), None).await;
    let scoped = pipeline.scoped(persist::Context::new().with_tenant(TenantId::new("acme").unwrap()));
    let thread = persist::ThreadId::new(&id).unwrap();
    scoped.summarize(Summarize::new(thread, 2, persist::Content::text("An order to Lisbon."))).await.unwrap();
    let read = spec.ok("GET", compacted, &fill(compacted, &id, ""), None).await;
    assert_eq!(read["summary"]["through_seq"], 2);

    let branches = "/v1/persist/conversations/{id}/branches";
    spec.ok("GET", branches, &fill(branches, &id, ""), None).await;
    spec.ok("GET", branches, &format!("{}?item_id=msg_reply", fill(branches, &id, "")), None).await;
    let switch = "/v1/persist/conversations/{id}/branches/switch";
    spec.ok("POST", switch, &fill(switch, &id, ""), Some(json!({"item_id": "msg_reply", "mode": "through"}))).await;

    let events = "/v1/persist/conversations/{id}/events";
    let feed = spec.events(events, &fill(events, &id, ""), 3).await;
    assert_eq!(feed[0].0, "add");
    let stream = "/v1/persist/conversations/{id}/items/{item_id}/stream";
    let chunks = spec.events(stream, &fill(stream, &id, "msg_reply"), usize::MAX).await;
    assert_eq!(chunks.last().unwrap().0, "end", "{chunks:?}");
    let stop = "/v1/persist/conversations/{id}/items/{item_id}/stop";
    let stopped = spec.ok("POST", stop, &fill(stop, &id, "msg_reply"), None).await;
    assert_eq!(stopped, json!({"stopped": false, "status": "complete"}));

    // A chat by the client's id, and its messages as UIMessages.
    let ensure = "/v1/persist/conversations/{id}";
    spec.ok("PUT", ensure, &fill(ensure, "chat_1", ""), Some(json!({"metadata": {"title": "A chat"}}))).await;
    let ui = "/v1/persist/conversations/{id}/ui-messages";
    let said = json!({"messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Hi"}]}]});
    spec.ok("POST", ui, &fill(ui, "chat_1", ""), Some(said)).await;
    let read = spec.ok("GET", ui, &fill(ui, "chat_1", ""), None).await;
    assert_eq!(read["data"][0]["id"], "u1");

    // A live reply's writer: start, append, renew, the writer's signals after a stop, a
    // refused append (409 with the reply's offset), and a finish.
    let replies = "/v1/persist/conversations/{id}/replies";
    let turn = json!({"items": [{"role": "user", "content": "And the invoice?"}], "lease_seconds": 30});
    let started = spec.ok("POST", replies, &fill(replies, &id, ""), Some(turn)).await;
    let live = started["id"].as_str().unwrap().to_owned();
    let running = spec.call("POST", replies, &fill(replies, &id, ""), Some(json!({}))).await;
    assert_eq!((running.status, running.body["error"]["code"].clone()), (409, json!("reply_running")));
    let parts = "/v1/persist/conversations/{id}/replies/{item_id}/parts";
    let append = json!({"offset": "0", "parts": [{"type": "text", "text": "It is sent."}]});
    spec.ok("POST", parts, &fill(parts, &id, &live), Some(append)).await;
    let gap = spec
        .call(
            "POST",
            parts,
            &fill(parts, &id, &live),
            Some(json!({"offset": 5, "parts": [{"type": "text", "text": "!"}]})),
        )
        .await;
    assert_eq!((gap.status, gap.body["error"]["offset"].clone()), (409, json!("0.11")));
    let ui = "/v1/persist/conversations/{id}/items/{item_id}/ui-stream";
    let chunks = spec.events(ui, &fill(ui, &id, &live), 4).await;
    assert_eq!(chunks[3].1, json!({"type": "text-delta", "id": "text-0", "delta": "It is sent."}), "{chunks:?}");
    let running = "/v1/persist/conversations/{id}/stream";
    let chunks = spec.events(running, &fill(running, &id, ""), 1).await;
    assert_eq!(chunks[0].1["type"], "start");
    let renew = "/v1/persist/conversations/{id}/replies/{item_id}/renew";
    spec.ok("POST", renew, &fill(renew, &id, &live), None).await;
    let finish = "/v1/persist/conversations/{id}/replies/{item_id}/finish";
    let last = json!({"status": "completed", "offset": "0.11", "parts": [{"type": "text", "text": " Today."}]});
    let done = spec.ok("POST", finish, &fill(finish, &id, &live), Some(last)).await;
    assert_eq!(done["end"], "complete");
    let none = spec.answer("GET", &fill(running, &id, ""), Some(ACME), None).await;
    assert_eq!(none.status, 204, "no reply is being generated");
    let stop_running = "/v1/persist/conversations/{id}/stop";
    let nothing = spec.ok("POST", stop_running, &fill(stop_running, &id, ""), None).await;
    assert_eq!(nothing, json!({"stopped": false}));
    let signals = "/v1/persist/conversations/{id}/replies/{item_id}/signals";
    let heard = spec.events(signals, &fill(signals, &id, &live), usize::MAX).await;
    assert_eq!(heard.last().unwrap().0, "end", "{heard:?}");

    let pop = "/v1/persist/conversations/{id}/items/pop";
    spec.ok("POST", pop, &fill(pop, &id, ""), None).await;
    spec.ok("DELETE", item, &fill(item, &id, "rs_1"), None).await;

    // Errors, each documented for its route and answered as the `Error` schema.
    let missing = spec.call("GET", one, &fill(one, "conv_none", ""), None).await;
    assert_eq!(missing.status, 404);
    let bad = spec.call("GET", items, &format!("{}?order=sideways", fill(items, &id, "")), None).await;
    assert_eq!(bad.status, 400);
    let unknown_key = spec.call_as("GET", one, &fill(one, &id, ""), Some("sk-nobody-0123456789abcdef"), None).await;
    assert_eq!(unknown_key.status, 401);
    let no_item = spec.call("POST", stop, &fill(stop, &id, "msg_none"), None).await;
    assert_eq!(no_item.status, 404);
    let no_words = spec.call("GET", "/v1/persist/search", "/v1/persist/search", None).await;
    assert_eq!(no_words.status, 400);

    // A key's retry with another body is 422; a body not declared JSON is 415.
    let (http, url) = (spec.http.clone(), format!("{}/v1/conversations", spec.base));
    let create = |body: &'static str, content_type: &'static str| {
        let request = http.post(&url).bearer_auth(ACME).header("idempotency-key", "key-1");
        request.header("content-type", content_type).body(body).send()
    };
    for (body, content_type, status) in
        [("{}", "application/json", 200), ("{\"metadata\": {}}", "application/json", 422), ("{}", "text/plain", 415)]
    {
        let response = create(body, content_type).await.unwrap();
        let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
        let (code, text) = (response.status().as_u16(), response.text().await.unwrap());
        let answer = Answer { status: code, content_type, allow: None, body: serde_json::from_str(&text).unwrap() };
        assert_eq!(answer.status, status, "{text}");
        spec.check("POST", "/v1/conversations", "/v1/conversations", &answer);
    }
    // Answers of no route (an unknown path, a method a route does not take) are errors too.
    let error = json!({"$ref": "#/components/schemas/Error"});
    for (method, path, status) in [("GET", "/v1/nothing", 404), ("PUT", "/v1/conversations", 405)] {
        let answer = spec.answer(method, path, Some(ACME), None).await;
        assert_eq!(answer.status, status);
        spec.validate(&error, &answer.body, &format!("{method} {path}"));
    }

    spec.ok("DELETE", one, &fill(one, &id, ""), None).await;
    let gone = spec.call("POST", pop, &fill(pop, &id, ""), None).await;
    assert_eq!(gone.status, 404);

    let missed: Vec<_> = spec.operations().into_iter().filter(|op| !spec.validated.contains(op)).collect();
    assert!(missed.is_empty(), "documented operations no answer was validated for: {missed:?}");
}
