//! rig's own agent keeps its memory in persist: a rig `Agent` built with `.memory(...)` and a
//! scripted completion model (rig's `MockCompletionModel`) holds a conversation with tool calls
//! over several prompts, on SQLite and PostgreSQL; other processes write to the same store; a
//! process killed between the model call and the append leaves nothing behind, and the rerun
//! writes the turn once.

use persist::{Pipeline, ThreadId};
use persist_rig::{PersistMemory, View};
use persist_testkit::{Store, child, stores};
use rig_agent::AgentBuilder;
use rig_agent::test_utils::{MockAddTool, MockCompletionModel, MockTurn};
use rig_core::completion::Message;
use rig_core::memory::{ConversationMemory, MemoryError};
use rig_core::message::{AssistantContent, UserContent};
use rig_core::wasm_compat::WasmBoxedFuture;
use serde_json::json;

/// The first turn's script: the model calls `add`, then answers with its result.
fn adding() -> Vec<MockTurn> {
    vec![MockTurn::tool_call("call_1", "add", json!({"x": 1, "y": 2})), MockTurn::text("1 + 2 = 3")]
}

fn texts(message: &Message) -> String {
    match message {
        Message::System { content } => content.clone(),
        Message::User { content } => content
            .iter()
            .filter_map(|c| match c {
                UserContent::Text(text) => Some(text.text.clone()),
                UserContent::ToolResult(_) => Some("<result>".into()),
                _ => None,
            })
            .collect(),
        Message::Assistant(assistant) => assistant
            .content
            .iter()
            .filter_map(|c| match c {
                AssistantContent::Text(text) => Some(text.text.clone()),
                AssistantContent::ToolCall(call) => Some(format!("<call {}>", call.function.name.as_str())),
                _ => None,
            })
            .collect(),
    }
}

/// The transcript of `conversation`, each message as its words.
async fn transcript(pipeline: &Pipeline, conversation: &str) -> Vec<String> {
    let memory = PersistMemory::new(pipeline).with_view(View::Transcript);
    memory.load(&conversation.into()).await.expect("load").iter().map(texts).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rig_agent_holds_a_conversation_with_tool_calls_in_persist() {
    let dir = tempfile::tempdir().unwrap();
    for store in stores(&dir, "rig").await {
        let pipeline = store.open().await;
        let memory = PersistMemory::new(&pipeline);
        let model = MockCompletionModel::from_turns(adding());
        let agent = AgentBuilder::new(model.clone()).tool(MockAddTool).memory(memory.clone()).build();
        let answer = agent.prompt("What is 1 + 2?").conversation("c1").max_turns(3).await.expect("a run");
        assert!(answer.memory_append.is_some(), "{store:?}: the run appended");
        assert_eq!(
            transcript(&pipeline, "c1").await,
            ["What is 1 + 2?", "<call add>", "<result>", "1 + 2 = 3"],
            "{store:?}: the whole turn, the call with its result"
        );
        // Stored as persist's typed parts: the call and its result pair up for every reader.
        let stored = pipeline.list(persist::read::ListMessages::new(ThreadId::new("c1").unwrap())).await.unwrap();
        let call = stored.items[1].content.tool_calls();
        let result = stored.items[2].content.tool_results();
        assert_eq!(call[0].as_tool_call().map(|c| c.id), result[0].as_tool_result().map(|r| r.call_id));

        // A second prompt on a new agent (as after a restart) is given the history.
        let model = MockCompletionModel::from_turns([MockTurn::text("You asked what 1 + 2 is.")]);
        let restarted = AgentBuilder::new(model.clone()).memory(PersistMemory::new(&pipeline)).build();
        restarted.prompt("What did I ask?").conversation("c1").await.expect("a run");
        let request = model.requests().pop().expect("one model call");
        // (rig renders the earlier calls and results for a model without tool support as text.)
        let given: Vec<String> = request.chat_history.iter().map(texts).collect();
        assert_eq!(given.len(), 5, "{store:?}: the stored turn and the new prompt: {given:?}");
        assert_eq!([&given[0], &given[3], &given[4]], ["What is 1 + 2?", "1 + 2 = 3", "What did I ask?"], "{store:?}");
        assert!(given[1].contains("add") && given[2].contains('3'), "{store:?}: the call and its result: {given:?}");
        assert_eq!(transcript(&pipeline, "c1").await.len(), 6, "{store:?}");

        // `clear` empties the conversation and keeps it: numbers go on.
        memory.clear(&"c1".into()).await.unwrap();
        assert!(transcript(&pipeline, "c1").await.is_empty());
        let model = MockCompletionModel::from_turns([MockTurn::text("Hello again.")]);
        AgentBuilder::new(model).memory(memory.clone()).build().prompt("Hi").conversation("c1").await.unwrap();
        let stored = pipeline.list(persist::read::ListMessages::new(ThreadId::new("c1").unwrap())).await.unwrap();
        assert_eq!(stored.items.iter().map(|m| m.seq).collect::<Vec<_>>(), [7, 8], "{store:?}: no seq reused");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_sent_again_writes_nothing_twice_and_the_same_words_later_are_a_new_turn() {
    let dir = tempfile::tempdir().unwrap();
    for store in stores(&dir, "rig").await {
        let pipeline = store.open().await;
        let id = "c2".into();
        // The run's memory and, standing for its retry (the acknowledgement lost), a memory
        // that loaded the conversation at the same place: the retry's key is the same.
        let (memory, retry) = (PersistMemory::new(&pipeline), PersistMemory::new(&pipeline));
        assert!(memory.load(&id).await.unwrap().is_empty());
        assert!(retry.load(&id).await.unwrap().is_empty());
        let turn = vec![Message::user("ping"), Message::assistant("pong")];
        memory.append(&id, turn.clone()).await.unwrap();
        retry.append(&id, turn.clone()).await.unwrap();
        assert_eq!(transcript(&pipeline, "c2").await, ["ping", "pong"], "{store:?}: written once");
        // The same words after the conversation moved on: a new turn.
        memory.load(&id).await.unwrap();
        memory.append(&id, turn.clone()).await.unwrap();
        assert_eq!(transcript(&pipeline, "c2").await, ["ping", "pong", "ping", "pong"], "{store:?}");
        // After a clear, the same words are a new turn too (a key is remembered after its
        // messages are deleted: the place they follow never goes back).
        memory.clear(&id).await.unwrap();
        assert!(memory.load(&id).await.unwrap().is_empty());
        memory.append(&id, turn).await.unwrap();
        assert_eq!(transcript(&pipeline, "c2").await, ["ping", "pong"], "{store:?}: written after the clear");
    }
}

/// A memory whose process dies as the run appends: after the model's answer, before anything
/// is written.
struct DiesBeforeAppend(PersistMemory);

impl ConversationMemory for DiesBeforeAppend {
    fn load<'a>(
        &'a self,
        id: &'a rig_core::id::ConversationId,
    ) -> WasmBoxedFuture<'a, Result<Vec<Message>, MemoryError>> {
        self.0.load(id)
    }

    fn append<'a>(
        &'a self,
        _: &'a rig_core::id::ConversationId,
        _: Vec<Message>,
    ) -> WasmBoxedFuture<'a, Result<(), MemoryError>> {
        // As a SIGKILL would: no unwinding, no destructors, nothing flushed.
        std::process::abort()
    }

    fn clear<'a>(&'a self, id: &'a rig_core::id::ConversationId) -> WasmBoxedFuture<'a, Result<(), MemoryError>> {
        self.0.clear(id)
    }
}

/// The child processes of the test below, in mode `run` or `die` (see
/// `persist_testkit::child`). Does nothing when run as a test of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_process() {
    let Some((mode, store)) = child() else { return };
    let pipeline = store.open().await;
    let memory = PersistMemory::new(&pipeline);
    let model = MockCompletionModel::from_turns(adding());
    let prompt = if mode == "die" { "And 1 + 2 again?" } else { "What is 1 + 2?" };
    let builder = AgentBuilder::new(model).tool(MockAddTool);
    let agent =
        if mode == "die" { builder.memory(DiesBeforeAppend(memory)).build() } else { builder.memory(memory).build() };
    agent.prompt(prompt).conversation("shared").max_turns(3).await.expect("a run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_processes_share_the_store_and_one_killed_before_its_append_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // The children's test by its name in the binary: its module's path past the crate's name.
    let child_process = format!("{}::child_process", module_path!().split_once("::").unwrap().1);
    for store in stores(&dir, "rig").await {
        // Made here first (the schema, the migrations), then written by another process.
        let pipeline = store.open().await;
        assert!(store.run_child(&child_process, "run").success(), "{store:?}: the first process's run");
        assert_eq!(transcript(&pipeline, "shared").await, ["What is 1 + 2?", "<call add>", "<result>", "1 + 2 = 3"]);
        // A second process calls the model (and the tool), then dies as it appends.
        assert!(!store.run_child(&child_process, "die").success(), "{store:?}: the second process was killed");
        assert_eq!(transcript(&pipeline, "shared").await.len(), 4, "{store:?}: nothing of the killed run");
        // Rerun here: the turn is written once, its call with its result.
        let model = MockCompletionModel::from_turns(adding());
        let agent = AgentBuilder::new(model).tool(MockAddTool).memory(PersistMemory::new(&pipeline)).build();
        agent.prompt("And 1 + 2 again?").conversation("shared").max_turns(3).await.expect("the rerun");
        let words = transcript(&pipeline, "shared").await;
        assert_eq!(words[4..], ["And 1 + 2 again?", "<call add>", "<result>", "1 + 2 = 3"], "{store:?}: {words:?}");
        assert_eq!(words.len(), 8, "{store:?}: no duplicate");
    }
}

/// rig's own history policies (`rig-memory`) wrap `PersistMemory` as they wrap rig's in-memory
/// default: the model is given the window, persist keeps every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rig_memorys_window_stacked_on_top_still_works() {
    use rig_memory::{PolicyMemory, SlidingWindowMemory};
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Store::Sqlite(dir.path().join("window.db")).open().await;
    let memory = PolicyMemory::new(PersistMemory::new(&pipeline), SlidingWindowMemory::last_messages(2));
    let mut given = Vec::new();
    for (prompt, reply) in [("one", "1"), ("two", "2"), ("three", "3")] {
        let model = MockCompletionModel::from_turns([MockTurn::text(reply)]);
        let agent = AgentBuilder::new(model.clone()).memory(memory.clone()).build();
        agent.prompt(prompt).conversation("window").await.expect("a run");
        given = model.requests().pop().expect("a model call").chat_history.iter().map(texts).collect();
    }
    assert_eq!(given, ["two", "2", "three"], "the window of the last two, and the prompt");
    assert_eq!(transcript(&pipeline, "window").await, ["one", "1", "two", "2", "three", "3"], "persist keeps all");
}
