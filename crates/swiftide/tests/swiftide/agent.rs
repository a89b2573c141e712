//! swiftide's own agent keeps its history in persist: a swiftide `Agent` whose `DefaultContext`
//! holds a [`PersistHistory`], a scripted model (an `impl ChatCompletion`) and a tool, over
//! several prompts, on SQLite and PostgreSQL; the same conversation with swiftide's in-memory
//! history gives the same messages; an agent restarted on the store goes on; other processes
//! write to the same history; a process killed while its tool runs leaves a call that the next
//! prompt's model request does not hold; persist's compaction reaches the model.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use persist::summary::Summarize;
use persist::{Content, Pipeline, ThreadId};
use persist_swiftide::{PersistHistory, View};
use persist_testkit::{child, stores};
use swiftide_agents::{Agent, DefaultContext};
use swiftide_core::chat_completion::errors::{LanguageModelError, ToolError};
use swiftide_core::chat_completion::{
    ChatCompletion, ChatCompletionRequest, ChatCompletionResponse, ChatMessage, ToolCall, ToolOutput, ToolSpec,
};
use swiftide_core::{AgentContext, MessageHistory, Tool};

/// A model that answers from the request alone (so every process answers alike): a prompt
/// asking to add gets a call of `add`, a tool's output gets the sum said, anything else gets
/// the number of messages it was given. Every request is kept.
#[derive(Clone, Default)]
struct Scripted {
    requests: Arc<Mutex<Vec<Vec<ChatMessage>>>>,
}

#[async_trait]
impl ChatCompletion for Scripted {
    async fn complete(&self, request: &ChatCompletionRequest) -> Result<ChatCompletionResponse, LanguageModelError> {
        let messages = request.messages().to_vec();
        self.requests.lock().unwrap().push(messages.clone());
        let users = messages.iter().filter(|m| matches!(m, ChatMessage::User(_))).count();
        let response = match messages.last() {
            Some(ChatMessage::User(text)) if text.contains("add") => {
                let call = ToolCall::builder()
                    .id(format!("call_{users}"))
                    .name("add")
                    .args(r#"{"x":2,"y":3}"#)
                    .build()
                    .map_err(LanguageModelError::permanent)?;
                ChatCompletionResponse::builder().tool_calls(vec![call]).build()
            }
            Some(ChatMessage::ToolOutput(_, output)) => {
                ChatCompletionResponse::builder().message(format!("The sum is {output}.")).build()
            }
            _ => ChatCompletionResponse::builder().message(format!("I was given {} messages.", messages.len())).build(),
        };
        response.map_err(|e| LanguageModelError::permanent(e.to_string()))
    }
}

/// Adds `x` and `y`; in a child told to die, kills its process instead.
#[derive(Clone)]
struct Add;

#[async_trait]
impl Tool for Add {
    async fn invoke(&self, _: &dyn AgentContext, call: &ToolCall) -> Result<ToolOutput, ToolError> {
        if child().is_some_and(|(mode, _)| mode == "die") {
            std::process::abort();
        }
        let args: serde_json::Value = serde_json::from_str(call.args().unwrap_or("{}"))?;
        let sum = args["x"].as_i64().unwrap_or(0) + args["y"].as_i64().unwrap_or(0);
        Ok(ToolOutput::text(sum.to_string()))
    }

    fn name(&self) -> Cow<'_, str> {
        Cow::Borrowed("add")
    }

    fn tool_spec(&self) -> ToolSpec {
        ToolSpec::builder().name("add").description("Adds two numbers.").build().expect("a spec")
    }
}

/// An agent on `history` (swiftide's in-memory one when `None`); one that resumes a history
/// already holding its system prompt is built without one.
async fn agent(history: Option<PersistHistory>, model: &Scripted) -> Agent {
    let mut context = DefaultContext::default();
    let resumes = match history {
        Some(history) => {
            let resumes = !history.history().await.expect("a read").is_empty();
            context.with_message_history(history);
            resumes
        }
        None => false,
    };
    let mut builder = Agent::builder();
    builder.context(context).llm(model).tools([Add.boxed()]).system_prompt("You add numbers.");
    if resumes {
        builder.no_system_prompt();
    }
    builder.build().expect("an agent")
}

fn history(pipeline: &Pipeline, thread: &str) -> PersistHistory {
    PersistHistory::new(pipeline, ThreadId::new(thread).unwrap())
}

fn transcript(pipeline: &Pipeline, thread: &str) -> PersistHistory {
    history(pipeline, thread).with_view(View::Transcript)
}

/// Each message in a word or two, to compare with what a test expects.
fn spoken(messages: &[ChatMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|message| match message {
            ChatMessage::System(text) => format!("system: {text}"),
            ChatMessage::User(text) => text.clone(),
            ChatMessage::Assistant(Some(text), None) => text.clone(),
            ChatMessage::Assistant(_, Some(calls)) => {
                calls.iter().map(|call| format!("<call {}>", call.name())).collect::<Vec<_>>().join(" ")
            }
            ChatMessage::Assistant(None, None) => "<empty>".into(),
            ChatMessage::ToolOutput(call, output) => format!("<{} = {output}>", call.name()),
            ChatMessage::Summary(text) => format!("summary: {text}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_keeps_its_history_across_prompts_and_a_restart_as_swiftide_keeps_it_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    for store in stores(&dir, "swiftide_agent").await {
        let model = Scripted::default();
        let pipeline = store.open().await;
        let mut persisted = agent(Some(history(&pipeline, "agent")), &model).await;
        let mut in_memory = agent(None, &model).await;
        for prompt in ["Please add 2 and 3.", "Thanks. How many messages now?"] {
            persisted.query(prompt).await.expect("a run on persist");
            in_memory.query(prompt).await.expect("a run in memory");
        }
        let written = persisted.history().await.unwrap();
        assert_eq!(written, in_memory.history().await.unwrap(), "{store:?}: the same messages as in memory");
        assert_eq!(
            spoken(&written),
            [
                "system: You add numbers.",
                "Please add 2 and 3.",
                "<call add>",
                "<add = 5>",
                "The sum is 5.",
                "Thanks. How many messages now?",
                "I was given 6 messages.",
            ],
            "{store:?}"
        );
        // Read back from the store by a history of its own: equal, message for message.
        assert_eq!(transcript(&pipeline, "agent").history().await.unwrap(), written, "{store:?}: lossless");

        // A restarted process: a new pipeline, history and agent go on with the conversation.
        drop(persisted);
        let reopened = store.open().await;
        let mut restarted = agent(Some(history(&reopened, "agent")), &model).await;
        restarted.query("And now?").await.expect("a run after the restart");
        let words = spoken(&restarted.history().await.unwrap());
        assert_eq!(words.len(), 9, "{store:?}: {words:?}");
        assert_eq!(words[7..], ["And now?", "I was given 8 messages."], "{store:?}: no second system prompt");
    }
}

/// The child processes of the test below (see `persist_testkit::child`). Does nothing when run
/// as a test of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_process() {
    let Some((mode, store)) = child() else { return };
    let pipeline = store.open().await;
    let words = if mode == "die" { "Please add 2 and 3 again." } else { "Please add 2 and 3." };
    let mut agent = agent(Some(history(&pipeline, "shared")), &Scripted::default()).await;
    agent.query(words).await.expect("a run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_processes_share_the_history_and_one_killed_while_its_tool_runs_leaves_no_orphan_call() {
    let dir = tempfile::tempdir().unwrap();
    // The children's test by its name in the binary: its module's path past the crate's name.
    let child_process = format!("{}::child_process", module_path!().split_once("::").unwrap().1);
    for store in stores(&dir, "swiftide_processes").await {
        let pipeline = store.open().await;
        assert!(store.run_child(&child_process, "run").success(), "{store:?}: the first process's run");
        let words = spoken(&transcript(&pipeline, "shared").history().await.unwrap());
        assert_eq!(
            words,
            ["system: You add numbers.", "Please add 2 and 3.", "<call add>", "<add = 5>", "The sum is 5."]
        );
        // A second process asks again; the model calls the tool, and the process dies in it.
        assert!(!store.run_child(&child_process, "die").success(), "{store:?}: the second process was killed");
        let words = spoken(&transcript(&pipeline, "shared").history().await.unwrap());
        assert_eq!(words[5..], ["Please add 2 and 3 again.", "<call add>"], "{store:?}: the call, without output");
        // Until someone speaks again, the open call is the model's view too: swiftide's agent
        // runs an open call when it resumes.
        assert_eq!(spoken(&history(&pipeline, "shared").history().await.unwrap()).len(), 7, "{store:?}");

        // This process goes on with a new prompt: the model is not given the dead call.
        let model = Scripted::default();
        let mut resumed = agent(Some(history(&pipeline, "shared")), &model).await;
        resumed.query("Never mind. Hello?").await.expect("a run after the crash");
        let requests = model.requests.lock().unwrap().clone();
        assert_eq!(requests.len(), 1, "{store:?}: the tool was not run again");
        let given = spoken(&requests[0]);
        assert_eq!(
            given[4..],
            ["The sum is 5.", "Please add 2 and 3 again.", "Never mind. Hello?"],
            "{store:?}: no call without its output"
        );
        let words = spoken(&transcript(&pipeline, "shared").history().await.unwrap());
        assert_eq!(words[6..], ["<call add>", "Never mind. Hello?", "I was given 7 messages."], "{store:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persist_compaction_reaches_the_model_as_swiftide_summary() {
    let dir = tempfile::tempdir().unwrap();
    for store in stores(&dir, "swiftide_compaction").await {
        let pipeline = store.open().await;
        let model = Scripted::default();
        let mut first = agent(Some(history(&pipeline, "compacted")), &model).await;
        first.query("Please add 2 and 3.").await.expect("a run");
        // A compactor (here, by hand) summarizes the turn.
        let through = {
            let stored = pipeline.list(persist::read::ListMessages::new(ThreadId::new("compacted").unwrap())).await;
            stored.unwrap().items.last().unwrap().seq
        };
        let summary =
            Summarize::new(ThreadId::new("compacted").unwrap(), through, Content::text("They added 2 and 3: 5."));
        pipeline.summarize(summary).await.expect("a summary");

        let model = Scripted::default();
        let mut next = agent(Some(history(&pipeline, "compacted")), &model).await;
        next.query("Hello?").await.expect("a run");
        let requests = model.requests.lock().unwrap().clone();
        assert_eq!(
            spoken(&requests[0]),
            ["system: You add numbers.", "summary: They added 2 and 3: 5.", "Hello?"],
            "{store:?}: the system prompt, the summary and what follows"
        );
        let all = spoken(&transcript(&pipeline, "compacted").history().await.unwrap());
        assert_eq!(all.len(), 7, "{store:?}: the transcript keeps every message: {all:?}");
    }
}
