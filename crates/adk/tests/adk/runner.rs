//! adk-rust's own runner keeps its sessions in persist: a `Runner` with an `LlmAgent`, a
//! scripted model (adk's `Llm` trait) and a tool holds a conversation with function calls over
//! several prompts, on SQLite and PostgreSQL, and a restarted runner continues it; state in its
//! three tiers; another process writes to the same store; a process killed while its tool runs
//! leaves no call the next model request would be given without its response.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use adk_agent::LlmAgentBuilder;
use adk_core::{
    Agent, Content, Event, Llm, LlmRequest, LlmResponse, LlmResponseStream, Part, Result as AdkResult, SessionId, Tool,
    ToolContext, UserId,
};
use adk_runner::Runner;
use adk_session::{CreateRequest, GetRequest, SessionService};
use async_trait::async_trait;
use futures::StreamExt;
use persist_adk::{PersistSessionService, View};
use persist_testkit::{child, stores};
use serde_json::{Value, json};

const APP: &str = "calculator";

/// Numbers the calls the scripted model makes.
static CALLS: AtomicU64 = AtomicU64::new(1);

/// A model that calls `add` when asked to add, answers a function's response with the sum,
/// and otherwise says how many earlier contents it was given. Keeps every request's contents.
#[derive(Default, Clone)]
struct Scripted {
    requests: Arc<Mutex<Vec<Vec<Content>>>>,
}

fn text_of(content: &Content) -> String {
    content.parts.iter().filter_map(|part| part.text()).collect::<Vec<_>>().join("")
}

#[async_trait]
impl Llm for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    async fn generate_content(&self, request: LlmRequest, _stream: bool) -> AdkResult<LlmResponseStream> {
        self.requests.lock().unwrap().push(request.contents.clone());
        let last = request.contents.last().cloned().unwrap_or_else(|| Content::new("user"));
        let response = last.parts.iter().find_map(|part| match part {
            Part::FunctionResponse { function_response, .. } => Some(function_response.response.clone()),
            _ => None,
        });
        let parts = match response {
            Some(response) => vec![Part::Text { text: format!("The sum is {}.", response["sum"]) }],
            None if text_of(&last).contains("add") => vec![Part::FunctionCall {
                name: "add".into(),
                args: json!({"a": 2, "b": 3}),
                id: Some(format!("call-{}", CALLS.fetch_add(1, Ordering::Relaxed))),
                thought_signature: None,
            }],
            None => vec![Part::Text { text: format!("I was given {} contents.", request.contents.len()) }],
        };
        let mut answer = LlmResponse::new(Content { role: "model".into(), parts });
        answer.turn_complete = true;
        Ok(Box::pin(futures::stream::once(async move { Ok(answer) })))
    }
}

/// Adds `a` and `b`; counts its calls in the user's state, with a `temp:` key that is never
/// stored. In a child process told to die, the process aborts while the tool runs.
struct AddTool;

#[async_trait]
impl Tool for AddTool {
    fn name(&self) -> &str {
        "add"
    }

    fn description(&self) -> &str {
        "Adds a and b."
    }

    async fn execute(&self, ctx: Arc<dyn ToolContext>, args: Value) -> AdkResult<Value> {
        if child().is_some_and(|(mode, _)| mode == "die") {
            std::process::abort();
        }
        let mut actions = ctx.actions();
        actions.state_delta.insert("user:last_sum_of".into(), args.clone());
        actions.state_delta.insert("temp:scratch".into(), json!("never stored"));
        ctx.set_actions(actions);
        Ok(json!({"sum": args["a"].as_i64().unwrap_or(0) + args["b"].as_i64().unwrap_or(0)}))
    }
}

fn runner_of(sessions: Arc<dyn SessionService>, model: Scripted) -> Runner {
    let agent = LlmAgentBuilder::new("calculator")
        .model(Arc::new(model))
        .tool(Arc::new(AddTool))
        .output_key("last_answer")
        .build()
        .expect("an agent");
    Runner::builder()
        .app_name(APP)
        .agent(Arc::new(agent) as Arc<dyn Agent>)
        .session_service(sessions)
        .build()
        .expect("a runner")
}

/// Runs one prompt; answers the events the runner yielded.
async fn prompt(runner: &Runner, user: &str, session: &str, words: &str) -> Vec<Event> {
    let mut stream = runner
        .run(UserId::new(user).unwrap(), SessionId::new(session).unwrap(), Content::new("user").with_text(words))
        .await
        .expect("a run");
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event.expect("an event"));
    }
    events
}

async fn create(sessions: &dyn SessionService, user: &str, session: &str, state: HashMap<String, Value>) {
    let request = CreateRequest { app_name: APP.into(), user_id: user.into(), session_id: Some(session.into()), state };
    sessions.create(request).await.expect("a session");
}

async fn get(sessions: &dyn SessionService, user: &str, session: &str) -> Box<dyn adk_session::Session> {
    let request = GetRequest {
        app_name: APP.into(),
        user_id: user.into(),
        session_id: session.into(),
        num_recent_events: None,
        after: None,
    };
    sessions.get(request).await.expect("the session")
}

/// What an event says, in short: a text, `<call add>` or `<response add>`.
fn said(event: &Event) -> String {
    let Some(content) = &event.llm_response.content else { return "<no content>".into() };
    content
        .parts
        .iter()
        .map(|part| match part {
            Part::Text { text } => text.clone(),
            Part::FunctionCall { name, .. } => format!("<call {name}>"),
            Part::FunctionResponse { function_response, .. } => format!("<response {}>", function_response.name),
            other => format!("{other:?}"),
        })
        .collect::<Vec<_>>()
        .join("")
}

/// What the events with content say, in order (events carrying only actions, such as a state
/// delta, say nothing).
fn spoken(events: &[Event]) -> Vec<String> {
    events.iter().filter(|event| event.llm_response.content.is_some()).map(said).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adk_runner_holds_a_conversation_with_function_calls_in_persist_and_a_restarted_one_continues_it() {
    let dir = tempfile::tempdir().unwrap();
    for store in stores(&dir, "conversation").await {
        let sessions: Arc<dyn SessionService> = Arc::new(PersistSessionService::new(&store.open().await));
        let state = HashMap::from([
            ("user:name".to_owned(), json!("Alice")),
            ("app:currency".to_owned(), json!("EUR")),
            ("topic".to_owned(), json!("sums")),
            ("temp:draft".to_owned(), json!(true)),
        ]);
        create(sessions.as_ref(), "alice", "s1", state).await;
        let model = Scripted::default();
        let runner = runner_of(sessions.clone(), model.clone());
        let mut yielded = prompt(&runner, "alice", "s1", "Please add 2 and 3.").await;
        assert_eq!(spoken(&yielded), ["<call add>", "<response add>", "The sum is 5."]);
        yielded.extend(prompt(&runner, "alice", "s1", "Thanks!").await);

        // Restarted: a new pipeline on the same store, a new service, a new runner.
        let sessions: Arc<dyn SessionService> = Arc::new(PersistSessionService::new(&store.open().await));
        let session = get(sessions.as_ref(), "alice", "s1").await;
        let stored = session.events().all();
        let words = spoken(&stored);
        assert_eq!(
            words,
            [
                "Please add 2 and 3.",
                "<call add>",
                "<response add>",
                "The sum is 5.",
                "Thanks!",
                "I was given 5 contents."
            ],
            "{store:?}"
        );
        // Lossless: every event the runner yielded reads back equal (but partial ones, which
        // the runner does not append, and `temp:` state, which is never stored).
        for event in yielded.iter().filter(|event| !event.llm_response.partial) {
            let back = stored.iter().find(|e| e.id == event.id).unwrap_or_else(|| panic!("{store:?}: {}", said(event)));
            let mut written = event.clone();
            written.actions.state_delta.retain(|key, _| !key.starts_with("temp:"));
            assert_eq!(serde_json::to_value(back).unwrap(), serde_json::to_value(written).unwrap(), "{store:?}");
        }
        let state = session.state();
        assert_eq!(state.get("user:name"), Some(json!("Alice")), "{store:?}");
        assert_eq!(state.get("app:currency"), Some(json!("EUR")), "{store:?}");
        assert_eq!(state.get("topic"), Some(json!("sums")), "{store:?}");
        assert_eq!(state.get("user:last_sum_of"), Some(json!({"a": 2, "b": 3})), "{store:?}: the tool's delta");
        assert_eq!(state.get("last_answer"), Some(json!("I was given 5 contents.")), "{store:?}: the output key");
        assert!(state.all().keys().all(|key| !key.starts_with("temp:")), "{store:?}: {:?}", state.all());

        // The restarted runner continues the conversation with its whole history.
        let model = Scripted::default();
        let runner = runner_of(sessions.clone(), model.clone());
        let answer = prompt(&runner, "alice", "s1", "And now?").await;
        assert_eq!(spoken(&answer), ["I was given 7 contents."], "{store:?}");
        let given = model.requests.lock().unwrap()[0].iter().map(text_of).collect::<Vec<_>>();
        assert_eq!(given[0], "Please add 2 and 3.", "{store:?}");

        // The user's state is the user's in every session of the app; the session's is its own.
        create(sessions.as_ref(), "alice", "s2", HashMap::new()).await;
        let other = get(sessions.as_ref(), "alice", "s2").await;
        assert_eq!(other.state().get("user:last_sum_of"), Some(json!({"a": 2, "b": 3})), "{store:?}");
        assert_eq!(other.state().get("topic"), None, "{store:?}");
        // The most recent events only (the last of them carries the output key's delta).
        let recent = sessions
            .get(GetRequest {
                app_name: APP.into(),
                user_id: "alice".into(),
                session_id: "s1".into(),
                num_recent_events: Some(3),
                after: None,
            })
            .await
            .expect("recent");
        let recent = spoken(&recent.events().all());
        assert_eq!(recent, ["And now?", "I was given 7 contents."], "{store:?}");
    }
}

/// The child processes of the test below, in mode `run` or `die` (see
/// `persist_testkit::child`). Does nothing when run as a test of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_process() {
    let Some((mode, store)) = child() else { return };
    let sessions: Arc<dyn SessionService> = Arc::new(PersistSessionService::new(&store.open().await));
    let words = if mode == "die" { "Please add 2 and 3 again." } else { "Please add 2 and 3." };
    prompt(&runner_of(sessions, Scripted::default()), "bob", "shared", words).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_processes_share_sessions_and_one_killed_while_its_tool_runs_leaves_no_orphan_call() {
    let dir = tempfile::tempdir().unwrap();
    // The children's test by its name in the binary: its module's path past the crate's name.
    let child_process = format!("{}::child_process", module_path!().split_once("::").unwrap().1);
    for store in stores(&dir, "processes").await {
        let pipeline = store.open().await;
        let sessions: Arc<dyn SessionService> = Arc::new(PersistSessionService::new(&pipeline));
        create(sessions.as_ref(), "bob", "shared", HashMap::new()).await;
        assert!(store.run_child(&child_process, "run").success(), "{store:?}: the first process's run");
        let words = spoken(&get(sessions.as_ref(), "bob", "shared").await.events().all());
        assert_eq!(words, ["Please add 2 and 3.", "<call add>", "<response add>", "The sum is 5."], "{store:?}");

        // A second process asks the model, which calls the tool, and dies while it runs.
        assert!(!store.run_child(&child_process, "die").success(), "{store:?}: the second process was killed");
        let transcript = PersistSessionService::new(&pipeline).with_view(View::Transcript);
        let words = spoken(&get(&transcript, "bob", "shared").await.events().all());
        assert_eq!(words[4..], ["Please add 2 and 3 again.", "<call add>"], "{store:?}: what the killed run wrote");

        // The next run here: the model is never given the dead run's call.
        let model = Scripted::default();
        let answer = prompt(&runner_of(sessions.clone(), model.clone()), "bob", "shared", "Are you there?").await;
        assert_eq!(spoken(&answer), ["I was given 6 contents."], "{store:?}");
        let given = model.requests.lock().unwrap()[0].clone();
        let calls = given.iter().flat_map(|c| &c.parts).filter(|p| matches!(p, Part::FunctionCall { .. })).count();
        let responses =
            given.iter().flat_map(|c| &c.parts).filter(|p| matches!(p, Part::FunctionResponse { .. })).count();
        assert_eq!((calls, responses), (1, 1), "{store:?}: {given:?}");
        // The transcript keeps it.
        let all = spoken(&get(&transcript, "bob", "shared").await.events().all());
        assert_eq!(all.len(), 8, "{store:?}: {all:?}");
    }
}
