//! An adk-rust runner whose sessions survive a restart: they live in persist's SQLite file.
//! The runner's `LlmAgent` answers a prompt with a function call, the process "restarts" (the
//! store is closed and opened again, a new runner built), and the new runner's model is given
//! the whole session, with the state the tool and the agent wrote.
//!
//! The model is scripted (a small `Llm` of its own) so the example runs offline; any adk model
//! (Gemini, OpenAI, Anthropic) takes its place unchanged.
//!
//! ```text
//! cargo run -p persist-example-adk --example adk_agent [-- path/to/store.db]
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use adk_agent::LlmAgentBuilder;
use adk_core::{
    Agent, Content, Llm, LlmRequest, LlmResponse, LlmResponseStream, Part, Result, SessionId, Tool, ToolContext, UserId,
};
use adk_runner::Runner;
use adk_session::{CreateRequest, GetRequest, SessionService};
use futures::StreamExt;
use persist::Pipeline;
use persist::sqlite::SqliteBackend;
use persist_adk::PersistSessionService;
use serde_json::{Value, json};

/// A model that calls `add` for a question with numbers, answers a function's response with
/// its sum, and otherwise says how much of the session it was given.
#[derive(Default)]
struct Scripted {
    given: Mutex<Vec<usize>>,
}

#[async_trait::async_trait]
impl Llm for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    async fn generate_content(&self, request: LlmRequest, _stream: bool) -> Result<LlmResponseStream> {
        self.given.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(request.contents.len());
        let last = request.contents.last().cloned().unwrap_or_else(|| Content::new("user"));
        let part = match last.parts.first() {
            Some(Part::FunctionResponse { function_response, .. }) => {
                Part::Text { text: format!("20 + 22 = {}.", function_response.response["sum"]) }
            }
            Some(Part::Text { text }) if text.contains('+') => Part::FunctionCall {
                name: "add".into(),
                args: json!({"x": 20, "y": 22}),
                id: Some("call_1".into()),
                thought_signature: None,
            },
            _ => Part::Text { text: format!("I was given {} contents of this session.", request.contents.len()) },
        };
        let mut answer = LlmResponse::new(Content { role: "model".into(), parts: vec![part] });
        answer.turn_complete = true;
        Ok(Box::pin(futures::stream::once(async move { Ok(answer) })))
    }
}

/// Adds `x` and `y`, and remembers the last sum in the user's state (every session of theirs).
struct Add;

#[async_trait::async_trait]
impl Tool for Add {
    fn name(&self) -> &str {
        "add"
    }

    fn description(&self) -> &str {
        "Adds x and y."
    }

    async fn execute(&self, ctx: Arc<dyn ToolContext>, args: Value) -> Result<Value> {
        let sum = args["x"].as_i64().unwrap_or(0) + args["y"].as_i64().unwrap_or(0);
        let mut actions = ctx.actions();
        actions.state_delta.insert("user:last_sum".into(), json!(sum));
        ctx.set_actions(actions);
        Ok(json!({"sum": sum}))
    }
}

fn runner(sessions: Arc<dyn SessionService>, model: Arc<Scripted>) -> Result<Runner> {
    let agent =
        LlmAgentBuilder::new("calculator").model(model).tool(Arc::new(Add)).output_key("last_answer").build()?;
    Runner::builder().app_name("calculator").agent(Arc::new(agent) as Arc<dyn Agent>).session_service(sessions).build()
}

async fn ask(runner: &Runner, words: &str) -> Result<()> {
    let (user, session) = (UserId::new("alice")?, SessionId::new("support-42")?);
    let mut events = runner.run(user, session, Content::new("user").with_text(words)).await?;
    while let Some(event) = events.next().await {
        let event = event?;
        for part in event.llm_response.content.iter().flat_map(|content| &content.parts) {
            match part {
                Part::Text { text } if !event.llm_response.partial => println!("  {}: {text}", event.author),
                Part::FunctionCall { name, args, .. } => println!("  {} calls {name}({args})", event.author),
                _ => {}
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("persist-adk-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = std::env::args().nth(1).map_or_else(|| dir.join("agent.db"), Into::into);

    // The first process: a session, and a turn with a function call, kept by persist.
    {
        let store = SqliteBackend::open(&path).await?;
        let sessions: Arc<dyn SessionService> = Arc::new(PersistSessionService::new(&Pipeline::new(store.clone())));
        let state = HashMap::from([("user:name".to_owned(), json!("Alice"))]);
        let create = CreateRequest {
            app_name: "calculator".into(),
            user_id: "alice".into(),
            session_id: Some("support-42".into()),
            state,
        };
        sessions.create(create).await?;
        println!("first run:");
        ask(&runner(sessions, Arc::default())?, "What is 20 + 22?").await?;
        store.close().await;
    }

    // "Restarted": a new store handle on the same file, a new runner, a new model.
    let store = SqliteBackend::open(&path).await?;
    let sessions: Arc<dyn SessionService> = Arc::new(PersistSessionService::new(&Pipeline::new(store.clone())));
    let model = Arc::new(Scripted::default());
    println!("after the restart:");
    ask(&runner(sessions.clone(), model.clone())?, "What did I ask you?").await?;
    let given = model.given.lock().unwrap_or_else(std::sync::PoisonError::into_inner)[0];
    assert_eq!(given, 5, "the stored turn (the question, the call, its response, the answer) and the new prompt");

    let get = GetRequest {
        app_name: "calculator".into(),
        user_id: "alice".into(),
        session_id: "support-42".into(),
        num_recent_events: None,
        after: None,
    };
    let session = sessions.get(get).await?;
    let mut state: Vec<_> = session.state().all().into_iter().collect();
    state.sort_by(|a, b| a.0.cmp(&b.0));
    println!("the session holds {} events; its state:", session.events().len());
    for (key, value) in state {
        println!("  {key} = {value}");
    }
    assert_eq!(session.state().get("user:last_sum"), Some(json!(42)));
    store.close().await;
    if std::env::args().nth(1).is_none() {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
