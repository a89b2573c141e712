//! An agent's turn stored whole: the user's message, the assistant's tool call, the tool's
//! result and the reservation of the answer in one transaction; the answer streamed into it; a
//! crash mid-stream, and the recovery: the turn sent again is answered as written (never a
//! second copy), and the answer resumes in the reservation that holds its partial text. Then a
//! reply whose stream dies for good: the cleanup marks it interrupted, its half answer kept.
//!
//! Run: `cargo run --example agent_turns`

use std::time::Duration;

use persist::args::{AppendTurn, TurnMessage, UpdateContent};
use persist::layer::{ProviderHistory, ToolCallsLayer};
use persist::maintenance::CleanupStranded;
use persist::prelude::*;
use persist::read::ListMessages;
use persist::sqlite::SqliteBackend;
use persist::{Content, Context, IdempotencyKey, Part, Pipeline, Role, Status, ThreadId};
use serde_json::json;

/// The turn the agent writes after its tool ran; the same value every time it is sent.
fn turn(thread: &ThreadId) -> Result<AppendTurn, persist::PersistError> {
    let call = Part::tool_call("call_7", "order_status", json!({"order": "1042"}));
    let result = Part::tool_result("call_7", json!({"status": "shipped", "eta": "Friday"}));
    Ok(AppendTurn::new(thread.clone())
        .with_message(TurnMessage::new(Role::User, Content::text("Where is order 1042?")))
        .with_message(TurnMessage::new(Role::Assistant, Content::from_parts([Part::reasoning("Look it up."), call])))
        .with_message(TurnMessage::new(Role::Tool, Content::from_parts([result])))
        .with_reply(Role::Assistant)
        // The client's id for this turn: a retry after a crash is the same turn.
        .with_idempotency_key(IdempotencyKey::new("client-turn-1")?))
}

#[tokio::main]
async fn main() -> Result<(), persist::PersistError> {
    let dir = std::env::temp_dir().join(format!("persist-agent-turns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| persist::PersistError::backend("creating the example's folder", e))?;
    let store =
        Pipeline::builder().layer(ToolCallsLayer::new()).build(SqliteBackend::open(dir.join("turns.db")).await?);
    let thread = ThreadId::new("support:1042")?;

    // 1. The whole turn, at once: four messages with consecutive seqs, or none.
    let written = store.append_turn(turn(&thread)?).await?;
    for message in &written.messages {
        println!("#{} {:<9} {:?}", message.seq, message.role.as_str(), message.status);
    }
    let reply = written.messages.last().expect("the reply").id.clone();

    // 2. The answer streams into the reservation, token by token...
    for token in ["It shipped", " and arrives"] {
        store.update_content(UpdateContent::appending(thread.clone(), reply.clone(), Content::text(token))).await?;
    }
    // ...and the process dies here. On restart the agent sends its turn again:
    let again = store.append_turn(turn(&thread)?).await?;
    assert!(again.deduplicated, "a retried turn is never written twice");
    let stranded = again.messages.last().expect("the reply");
    assert_eq!(stranded.status, Status::Reserved);
    println!("after the crash: {:?} holds {:?}", stranded.status, stranded.content.to_text());

    // 3. The answer is generated again and finished in the same reservation.
    let done = UpdateContent::new(thread.clone(), reply, Content::text("It shipped and arrives on Friday."));
    store.update_content(done).await?;

    // 4. Another question; this time the stream dies and nothing comes back for its reply.
    let follow_up = AppendTurn::new(thread.clone())
        .with_message(TurnMessage::new(Role::User, Content::text("Can it come sooner?")))
        .with_reply(Role::Assistant);
    let cut = store.append_turn(follow_up).await?.messages.last().expect("the reply").id.clone();
    store.update_content(UpdateContent::appending(thread.clone(), cut, Content::text("Express delivery is"))).await?;
    // A periodic cleanup (or `persist cleanup-stranded`) finds the reply idle and marks it
    // interrupted: the half answer is kept, and readers are told it was cut short.
    tokio::time::sleep(Duration::from_millis(60)).await;
    let report = store.cleanup_stranded(CleanupStranded::new(Duration::from_millis(50))).await?;
    assert_eq!(report.interrupted.len(), 1);

    // What a provider is given: the history without orphan tool calls.
    let history = ListMessages::new(thread).with_context(Context::new().with_extension(ProviderHistory));
    let page = store.list(history).await?;
    assert_eq!(page.items.len(), 6);
    assert_eq!(page.items[5].status, Status::Interrupted);
    for message in &page.items {
        let parts: Vec<String> = message.content.parts().iter().map(|p| format!("{p:?}")).collect();
        println!("{:<9} {:<11} {}", message.role.as_str(), message.status.as_str(), parts.join(" "));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
