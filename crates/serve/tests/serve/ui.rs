//! The AI SDK's UI message stream and chat routes (`persist_serve::ui`) over HTTP, on memory and
//! SQLite: parts as chunks, resume from a place in the parts, a dead generator settled by
//! silence, regenerate as a sibling.

use std::time::Duration;

use persist::args::Reserve;
use persist::memory::MemoryBackend;
use persist::sqlite::SqliteBackend;
use persist::{Pipeline, Role, ThreadId};
use persist_serve::ui::{Chat, Generation};
use serde_json::{Value, json};

async fn tools(generation: Generation) -> Result<(), persist::BoxError> {
    let reply = &generation.reply;
    reply.reasoning("Think").await?;
    reply.reasoning("ing.").await?;
    reply.tool_call("c1", "weather", json!({"city": "Oslo"})).await?;
    reply.tool_result("c1", json!({"celsius": 4})).await?;
    reply.tool_call("c2", "weather", json!({"city": "Nowhere"})).await?;
    reply.tool_error("c2", json!("no such city")).await?;
    reply.text("It is").await?;
    reply.text(" 4 °C.").await?;
    Ok(())
}

async fn serve(pipeline: Pipeline) -> String {
    serve_with(pipeline, tools).await
}

async fn serve_with(pipeline: Pipeline, generate: impl persist_serve::ui::Generate) -> String {
    let chat = Chat::new(pipeline, generate).with_settle_after(Duration::from_millis(300));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum_serve(listener, chat.router()).await });
    base
}

async fn axum_serve(listener: tokio::net::TcpListener, router: axum::Router) {
    axum::serve(listener, router).await.unwrap();
}

/// An SSE body's events as (id, data).
async fn events(response: reqwest::Response) -> Vec<(Option<String>, String)> {
    let text = response.text().await.unwrap();
    text.split("\n\n")
        .filter(|event| event.contains("data:"))
        .map(|event| {
            let field =
                |name: &str| event.lines().find_map(|line| line.strip_prefix(name)).map(|v| v.trim().to_owned());
            (field("id:"), field("data:").unwrap())
        })
        .collect()
}

fn chunks(events: &[(Option<String>, String)]) -> Vec<Value> {
    assert_eq!(events.last().map(|(_, data)| data.as_str()), Some("[DONE]"));
    events[..events.len() - 1].iter().map(|(_, data)| serde_json::from_str(data).unwrap()).collect()
}

fn types(chunks: &[Value]) -> Vec<&str> {
    chunks.iter().map(|chunk| chunk["type"].as_str().unwrap()).collect()
}

fn post(http: &reqwest::Client, base: &str, body: &Value) -> reqwest::RequestBuilder {
    http.post(format!("{base}/api/chat")).header("content-type", "application/json").body(body.to_string())
}

fn turn(thread: &str, user: &str) -> Value {
    json!({"id": thread, "messages": [{"id": user, "role": "user", "parts": [{"type": "text", "text": "Weather?"}]}]})
}

async fn on_every_backend(check: impl AsyncFn(Pipeline)) {
    check(Pipeline::new(MemoryBackend::new())).await;
    let dir = tempfile::tempdir().unwrap();
    check(Pipeline::new(SqliteBackend::open(dir.path().join("ui.db")).await.unwrap())).await;
}

#[tokio::test]
async fn parts_stream_as_ui_chunks_and_resume_inside_a_part() {
    on_every_backend(async |pipeline| {
        let base = serve(pipeline).await;
        let http = reqwest::Client::new();
        let response = post(&http, &base, &turn("t1", "u1")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-vercel-ai-ui-message-stream"], "v1");
        let sent = events(response).await;
        let sent_chunks = chunks(&sent);
        // The stream may see the tokens one by one or already joined: its shape is the same.
        let mut shape = types(&sent_chunks);
        shape.dedup();
        assert_eq!(
            shape,
            [
                "start",
                "start-step",
                "reasoning-start",
                "reasoning-delta",
                "reasoning-end",
                "tool-input-available",
                "tool-output-available",
                "finish-step",
                "start-step",
                "tool-input-available",
                "tool-output-error",
                "finish-step",
                "start-step",
                "text-start",
                "text-delta",
                "text-end",
                "finish-step",
                "finish"
            ]
        );
        let joined = |kind: &str| -> String {
            sent_chunks.iter().filter(|c| c["type"] == kind).map(|c| c["delta"].as_str().unwrap()).collect()
        };
        assert_eq!((joined("reasoning-delta"), joined("text-delta")), ("Thinking.".to_owned(), "It is 4 °C.".to_owned()));
        let call = sent_chunks.iter().find(|c| c["type"] == "tool-input-available").unwrap();
        assert_eq!(call, &json!({"type": "tool-input-available", "toolCallId": "c1", "toolName": "weather", "input": {"city": "Oslo"}}));
        let failed = sent_chunks.iter().find(|c| c["type"] == "tool-output-error").unwrap();
        assert_eq!(failed["errorText"], "no such city");
        assert!(sent_chunks.iter().all(|c| c.get("id").is_none_or(|id| id == "reasoning-0" || id == "text-5")));
        // The last event with an id is where the whole reply ends: 11 characters into part 5.
        assert_eq!(sent.iter().rev().find_map(|(id, _)| id.clone()).as_deref(), Some("5.11"));

        // A client that kept "It is" resumes inside the text part: no new start of it.
        let resumed = http.get(format!("{base}/api/chat/t1/stream")).header("last-event-id", "5.5").send().await.unwrap();
        let resumed = chunks(&events(resumed).await);
        assert_eq!(types(&resumed), ["start", "start-step", "text-delta", "text-end", "finish-step", "finish"]);
        assert_eq!(resumed[2], json!({"type": "text-delta", "id": "text-5", "delta": " 4 °C."}));
        // A place that is not in the reply is refused.
        let beyond = http.get(format!("{base}/api/chat/t1/stream")).header("last-event-id", "2.1").send().await.unwrap();
        assert_eq!(beyond.status(), 400, "characters into a tool call");
        let none = http.get(format!("{base}/api/chat/empty/stream")).send().await.unwrap();
        assert_eq!(none.status(), 204);
    })
    .await;
}

#[tokio::test]
async fn a_reply_whose_generator_died_is_settled_by_silence() {
    on_every_backend(async |pipeline| {
        let base = serve(pipeline.clone()).await;
        let http = reqwest::Client::new();
        // A reply reserved by a process that died before it wrote.
        let thread = ThreadId::new("dead").unwrap();
        pipeline.reserve(Reserve::new(thread.clone(), Role::Assistant)).await.unwrap();
        let refused = post(&http, &base, &turn("dead", "u1")).send().await.unwrap();
        assert_eq!(refused.status(), 409, "still within its silence allowance");
        // A client follows it meanwhile: its stream ends when the reply is settled.
        let following = tokio::spawn(http.get(format!("{base}/api/chat/dead/stream")).send());
        tokio::time::sleep(Duration::from_millis(400)).await;
        let answered = post(&http, &base, &turn("dead", "u1")).send().await.unwrap();
        assert_eq!(answered.status(), 200, "the dead reply settled, the turn goes on");
        let answered = chunks(&events(answered).await);
        assert_eq!(answered.last().unwrap()["type"], "finish");
        let followed = chunks(&events(following.await.unwrap().unwrap()).await);
        assert_eq!(types(&followed), ["start", "start-step", "error"]);
        assert_eq!(followed[2]["errorText"], "The reply was interrupted before its end.");
    })
    .await;
}

#[tokio::test]
async fn regenerate_writes_a_sibling_on_a_branch_of_its_own() {
    on_every_backend(async |pipeline| {
        let base = serve(pipeline.clone()).await;
        let http = reqwest::Client::new();
        let first = post(&http, &base, &turn("r", "u1")).send().await.unwrap();
        let first = chunks(&events(first).await)[0]["messageId"].as_str().unwrap().to_owned();
        let again = json!({"id": "r", "messages": [], "trigger": "regenerate-message", "messageId": first});
        let second = post(&http, &base, &again).send().await.unwrap();
        assert_eq!(second.status(), 200);
        let second = chunks(&events(second).await)[0]["messageId"].as_str().unwrap().to_owned();
        assert_ne!(first, second);
        let thread = ThreadId::new("r").unwrap();
        let all = pipeline.list(persist::read::ListMessages::new(thread.clone())).await.unwrap().items;
        let parent_of = |id: &str| all.iter().find(|m| m.id.as_str() == id).unwrap().parent_seq;
        assert_eq!(parent_of(&first), parent_of(&second), "siblings");
        let active = persist::read::ListMessages::new(thread).on_branch(persist::branch::Branch::Active);
        let active: Vec<_> = pipeline.list(active).await.unwrap().items.into_iter().map(|m| m.id.to_string()).collect();
        assert_eq!(active.last(), Some(&second), "the regenerated reply is on the active branch");
        let unknown = json!({"id": "r", "messages": [], "trigger": "regenerate-message", "messageId": "nope"});
        assert_eq!(post(&http, &base, &unknown).send().await.unwrap().status(), 404);
        let bad = json!({"id": "r", "messages": [], "trigger": "edit"});
        assert_eq!(post(&http, &base, &bad).send().await.unwrap().status(), 400);
    })
    .await;
}

/// Thinks for longer than the silence allowance before its first token.
async fn slow(generation: Generation) -> Result<(), persist::BoxError> {
    tokio::time::sleep(Duration::from_millis(900)).await;
    generation.reply.text("Done thinking.").await?;
    Ok(())
}

#[tokio::test]
async fn a_running_generation_is_renewed_and_never_settled() {
    on_every_backend(async |pipeline| {
        let base = serve_with(pipeline, slow).await;
        let http = reqwest::Client::new();
        let first = tokio::spawn(post(&http, &base, &turn("slow", "u1")).send());
        // Past the 300 ms allowance, the generator still silent: its reply was renewed, so a
        // second turn finds it alive.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let second = post(&http, &base, &turn("slow", "u2")).send().await.unwrap();
        assert_eq!(second.status(), 409, "the reply being generated was not taken for a dead one");
        let first = chunks(&events(first.await.unwrap().unwrap()).await);
        assert_eq!(
            types(&first),
            ["start", "start-step", "text-start", "text-delta", "text-end", "finish-step", "finish"]
        );
    })
    .await;
}

#[tokio::test]
async fn an_edited_user_message_is_a_sibling_of_the_one_it_edits() {
    on_every_backend(async |pipeline| {
        let base = serve(pipeline.clone()).await;
        let http = reqwest::Client::new();
        for user in ["u0", "u1"] {
            let answered = post(&http, &base, &turn("e", user)).send().await.unwrap();
            assert_eq!(chunks(&events(answered).await).last().unwrap()["type"], "finish");
        }
        // `sendMessage({text, messageId: "u1"})`: the SDK sends the edit under the edited id.
        let edit = json!({"id": "e", "trigger": "submit-message", "messageId": "u1", "messages": [
            {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Weather in Oslo?"}]}
        ]});
        let answered = post(&http, &base, &edit).send().await.unwrap();
        assert_eq!(answered.status(), 200);
        let reply = chunks(&events(answered).await)[0]["messageId"].as_str().unwrap().to_owned();

        let thread = ThreadId::new("e").unwrap();
        let all = pipeline.list(persist::read::ListMessages::new(thread.clone())).await.unwrap().items;
        let edited = all.iter().find(|m| m.content.to_text() == "Weather in Oslo?").expect("the edit is stored");
        let original = all.iter().find(|m| m.id.as_str() == "u1").unwrap();
        assert!(original.parent_seq.is_some(), "u1 answers u0's reply");
        assert_eq!(edited.parent_seq, original.parent_seq, "the edit's parent is the original's");
        let siblings = persist::branch::ListBranches::siblings(thread.clone(), original.id.clone());
        let siblings = pipeline.branches(siblings).await.unwrap();
        let ids: Vec<&str> = siblings.items.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["u1", edited.id.as_str()], "both are alternatives at u1");
        assert_eq!(siblings.active, Some(1), "the edit is on the active branch");
        let active = persist::read::ListMessages::new(thread.clone()).on_branch(persist::branch::Branch::Active);
        let active: Vec<_> = pipeline.list(active).await.unwrap().items.into_iter().map(|m| m.id.to_string()).collect();
        assert_eq!(active.len(), 4, "u0, its reply, the edit, its reply: {active:?}");
        assert_eq!(
            active[2..],
            [edited.id.to_string(), reply.clone()],
            "the active branch shows the edit and its reply"
        );

        // A client that names its edit with an id of its own: kept, a sibling too.
        let edit = json!({"id": "e", "trigger": "submit-message", "messageId": "u1", "messages": [
            {"id": "u1-bergen", "role": "user", "parts": [{"type": "text", "text": "Weather in Bergen?"}]}
        ]});
        let answered = post(&http, &base, &edit).send().await.unwrap();
        assert_eq!(chunks(&events(answered).await).last().unwrap()["type"], "finish");
        let siblings = persist::branch::ListBranches::siblings(thread.clone(), original.id.clone());
        let siblings = pipeline.branches(siblings).await.unwrap();
        let ids: Vec<&str> = siblings.items.iter().map(|m| m.id.as_str()).collect();
        assert_eq!((ids.len(), ids[2], siblings.active), (3, "u1-bergen", Some(2)));
        let reply = json!({"id": "e", "trigger": "submit-message", "messageId": reply, "messages": [
            {"id": "x", "role": "user", "parts": [{"type": "text", "text": "?"}]}
        ]});
        assert_eq!(post(&http, &base, &reply).send().await.unwrap().status(), 400, "only a user's message is edited");
    })
    .await;
}
