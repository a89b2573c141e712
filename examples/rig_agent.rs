//! A rig agent whose memory survives a restart: its conversation lives in persist's SQLite
//! file. The agent holds a turn with a tool call, the process "restarts" (the store is closed
//! and opened again, a new agent built), and the new agent is given the whole conversation.
//!
//! The model is scripted (rig's `MockCompletionModel`) so the example runs offline; any rig
//! completion model takes its place unchanged.
//!
//! ```text
//! cargo run -p persist-example-rig --example rig_agent [-- path/to/store.db]
//! ```

use persist::Pipeline;
use persist::sqlite::SqliteBackend;
use persist_rig::PersistMemory;
use rig_agent::AgentBuilder;
use rig_agent::test_utils::{MockAddTool, MockCompletionModel, MockTurn};
use rig_core::completion::Message;
use serde_json::json;

fn words(message: &Message) -> String {
    serde_json::to_string(message).unwrap_or_default()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("persist-rig-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = std::env::args().nth(1).map_or_else(|| dir.join("agent.db"), Into::into);

    // The first process: a turn with a tool call, kept by persist.
    {
        let store = SqliteBackend::open(&path).await?;
        let memory = PersistMemory::new(&Pipeline::new(store.clone()));
        let model = MockCompletionModel::from_turns([
            MockTurn::tool_call("call_1", "add", json!({"x": 20, "y": 22})),
            MockTurn::text("20 + 22 = 42."),
        ]);
        let agent = AgentBuilder::new(model).tool(MockAddTool).memory(memory).build();
        let answer = agent.prompt("What is 20 + 22?").conversation("support-42").max_turns(3).await?;
        println!("first run answered; its memory append: {:?}", answer.memory_append);
        store.close().await;
    }

    // "Restarted": a new store handle on the same file, a new agent, a new model.
    let store = SqliteBackend::open(&path).await?;
    let memory = PersistMemory::new(&Pipeline::new(store.clone()));
    let model = MockCompletionModel::from_turns([MockTurn::text("You asked what 20 + 22 is: 42.")]);
    let agent = AgentBuilder::new(model.clone()).memory(memory).build();
    agent.prompt("What did I ask you?").conversation("support-42").await?;
    let request = model.requests().pop().ok_or("the model was not called")?;
    println!("after the restart the model was given {} messages:", request.chat_history.len());
    for message in &request.chat_history {
        println!("  {}", words(message));
    }
    assert_eq!(request.chat_history.len(), 5, "the stored turn (4 messages) and the new prompt");
    store.close().await;
    if std::env::args().nth(1).is_none() {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
