//! A swiftide agent whose history survives a restart: it lives in persist's SQLite file. The
//! agent answers a prompt with a tool call, the process "restarts" (the store is closed and
//! opened again, a new agent built), and the new agent's model is given the whole history.
//!
//! The model is scripted (a small `ChatCompletion` of its own) so the example runs offline;
//! any swiftide model (OpenAI, Anthropic, Ollama…) takes its place unchanged.
//!
//! ```text
//! cargo run -p persist-example-swiftide --example swiftide_agent [-- path/to/store.db]
//! ```

use std::borrow::Cow;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use persist::sqlite::SqliteBackend;
use persist::{Pipeline, ThreadId};
use persist_swiftide::PersistHistory;
use swiftide_agents::{Agent, DefaultContext};
use swiftide_core::chat_completion::errors::{LanguageModelError, ToolError};
use swiftide_core::chat_completion::{
    ChatCompletion, ChatCompletionRequest, ChatCompletionResponse, ChatMessage, ToolCall, ToolOutput, ToolSpec,
};
use swiftide_core::{AgentContext, MessageHistory, Tool};

/// A model that calls `add` for a question with a `+`, says the sum a tool gave, and otherwise
/// how many messages it was given.
#[derive(Clone, Default)]
struct Scripted {
    given: Arc<Mutex<Vec<usize>>>,
}

#[async_trait]
impl ChatCompletion for Scripted {
    async fn complete(&self, request: &ChatCompletionRequest) -> Result<ChatCompletionResponse, LanguageModelError> {
        let messages = request.messages();
        self.given.lock().unwrap_or_else(PoisonError::into_inner).push(messages.len());
        let mut answer = ChatCompletionResponse::builder();
        let answer = match messages.last() {
            Some(ChatMessage::User(text)) if text.contains('+') => {
                let call = ToolCall::builder().id("call_1").name("add").args(r#"{"x":20,"y":22}"#).build();
                answer.tool_calls(vec![call.map_err(LanguageModelError::permanent)?]).build()
            }
            Some(ChatMessage::ToolOutput(_, sum)) => answer.message(format!("20 + 22 = {sum}.")).build(),
            _ => answer.message(format!("I was given {} messages of our conversation.", messages.len())).build(),
        };
        answer.map_err(|e| LanguageModelError::permanent(e.to_string()))
    }
}

/// Adds `x` and `y`.
#[derive(Clone)]
struct Add;

#[async_trait]
impl Tool for Add {
    async fn invoke(&self, _: &dyn AgentContext, call: &ToolCall) -> Result<ToolOutput, ToolError> {
        let args: serde_json::Value = serde_json::from_str(call.args().unwrap_or("{}"))?;
        Ok(ToolOutput::text((args["x"].as_i64().unwrap_or(0) + args["y"].as_i64().unwrap_or(0)).to_string()))
    }

    fn name(&self) -> Cow<'_, str> {
        Cow::Borrowed("add")
    }

    fn tool_spec(&self) -> ToolSpec {
        ToolSpec::builder().name("add").description("Adds x and y.").build().expect("a tool spec")
    }
}

/// An agent whose history is `history`; when the history already holds the system prompt (a
/// resumed conversation), the agent does not add it again.
async fn agent(history: PersistHistory, model: &Scripted) -> anyhow::Result<Agent> {
    let resumes = !history.history().await?.is_empty();
    let mut context = DefaultContext::default();
    context.with_message_history(history);
    let mut builder = Agent::builder();
    builder.context(context).llm(model).tools([Add.boxed()]).system_prompt("You are a calculator.");
    if resumes {
        builder.no_system_prompt();
    }
    Ok(builder.build()?)
}

async fn ask(agent: &mut Agent, words: &'static str) -> anyhow::Result<()> {
    let before = agent.history().await?.len();
    agent.query(words).await?;
    for message in &agent.history().await?[before..] {
        println!("  {message}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("persist-swiftide-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = std::env::args().nth(1).map_or_else(|| dir.join("agent.db"), Into::into);
    let thread = ThreadId::new("support-42")?;

    // The first process: a turn with a tool call, kept by persist.
    {
        let store = SqliteBackend::open(&path).await?;
        let history = PersistHistory::new(&Pipeline::new(store.clone()), thread.clone());
        println!("first run:");
        ask(&mut agent(history, &Scripted::default()).await?, "What is 20 + 22?").await?;
        store.close().await;
    }

    // "Restarted": a new store handle on the same file, a new agent, a new model.
    let store = SqliteBackend::open(&path).await?;
    let history = PersistHistory::new(&Pipeline::new(store.clone()), thread);
    let model = Scripted::default();
    println!("after the restart:");
    ask(&mut agent(history.clone(), &model).await?, "What did I ask you?").await?;
    let given = model.given.lock().unwrap_or_else(PoisonError::into_inner)[0];
    assert_eq!(given, 6, "the system prompt, the stored turn (question, call, output, answer) and the new prompt");
    println!("the history holds {} messages", history.history().await?.len());
    store.close().await;
    if std::env::args().nth(1).is_none() {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
