//! An agent-style conversation stored in a local SQLite file (the embedded default).
//!
//! Each run appends the next turn to the same conversation: a user message, then the
//! assistant's reply streamed into a reserved placeholder and finalized. An observer indexes
//! messages only once they are complete; a route sends `scratch:` threads to an in-memory
//! store. Running it again continues the conversation where the file left it.
//!
//! Run: `cargo run --example quickstart` (the file is `persist-quickstart.db` in the current
//! directory, or `$PERSIST_QUICKSTART_DB`; delete it to start over).

use std::sync::{Arc, Mutex};

use persist::args::{Add, Reserve, UpdateContent};
use persist::layer::ObserveLayer;
use persist::layer::route::{self, RouteLayer};
use persist::memory::MemoryBackend;
use persist::read::{GetThread, ListMessages, ListThreads};
use persist::sqlite::SqliteBackend;
use persist::{Content, IdempotencyKey, PersistResult, Pipeline, Role, Status, ThreadId};

/// The conversation, one (question, streamed answer) pair per run; it cycles when exhausted.
const SCRIPT: [(&str, &[&str]); 3] = [
    (
        "My order #1042 has not arrived. Where is it?",
        &["Your order ", "left our warehouse ", "yesterday; ", "it arrives Friday."],
    ),
    (
        "Can I change the delivery address?",
        &["Yes: ", "until it ships ", "from the hub, ", "reply with the new address."],
    ),
    ("Thanks! Please send it to 12 Harbour Lane.", &["Done: ", "the address is ", "now 12 Harbour Lane."]),
];

#[tokio::main]
async fn main() -> Result<(), persist::PersistError> {
    let path = std::env::var("PERSIST_QUICKSTART_DB").unwrap_or_else(|_| "persist-quickstart.db".into());
    let store = SqliteBackend::open(&path).await?;

    // What the observer indexed: complete messages only (a placeholder is not content).
    let index = Arc::new(Mutex::new(Vec::<String>::new()));
    let indexer = {
        let index = index.clone();
        move |result: &PersistResult| {
            if let Some(m) = result.message().filter(|m| m.status == Status::Complete && !result.is_deduplicated()) {
                index.lock().unwrap().push(format!("{} #{}: {}", m.thread_id, m.seq, m.content.to_text()));
            }
        }
    };
    let scratch = Pipeline::new(MemoryBackend::new());
    let pipeline = Pipeline::builder()
        .layer(ObserveLayer::new().on_result(indexer))
        .layer(RouteLayer::builder().route("scratch", route::thread_prefix("scratch:"), scratch.clone()).build()?)
        .build(store);

    let thread = ThreadId::new("support:1042")?;
    let existing = pipeline.get_thread(GetThread::new(thread.clone())).await?;
    let turn = existing.map_or(0, |t| t.message_count / 2) as usize;
    let (question, answer) = SCRIPT[turn % SCRIPT.len()];
    println!("{path}: turn {} of the conversation", turn + 1);

    // Idempotency keys make the turn safe to re-run after a crash: nothing is written twice.
    pipeline
        .add(
            Add::new(thread.clone(), Role::User, Content::text(question))
                .with_idempotency_key(IdempotencyKey::new(format!("turn-{turn}-user"))?),
        )
        .await?;
    let reserve = Reserve::new(thread.clone(), Role::Assistant)
        .with_idempotency_key(IdempotencyKey::new(format!("turn-{turn}-reply"))?);
    let reply = pipeline.reserve(reserve).await?.message;
    println!("streaming the reply into message {} (seq {})", reply.id, reply.seq);
    let mut text = String::new();
    for chunk in answer {
        text.push_str(chunk);
        let partial = UpdateContent::partial(thread.clone(), reply.id.clone(), Content::text(&text));
        pipeline.update_content(partial).await?;
    }
    pipeline.update_content(UpdateContent::new(thread.clone(), reply.id.clone(), Content::text(&text))).await?;

    let notes = ThreadId::new("scratch:agent-notes")?;
    pipeline.add(Add::new(notes, Role::System, Content::text(format!("answered turn {}", turn + 1)))).await?;

    println!("\ntranscript of {thread}:");
    let mut query = ListMessages::new(thread.clone());
    loop {
        let page = pipeline.list(query.clone()).await?;
        for m in &page.items {
            println!("  #{:<2} {:<9} v{:<2} {}", m.seq, m.role, m.version, m.content.to_text());
        }
        match query.next_page(&page) {
            Some(next) => query = next,
            None => break,
        }
    }

    println!("\nindexed this run (complete messages only):");
    for line in index.lock().unwrap().iter() {
        println!("  {line}");
    }

    // Through the pipeline, a listing spans both stores (the route merges them).
    let listed = pipeline.threads(ListThreads::new()).await?.items;
    let ephemeral = scratch.threads(ListThreads::new()).await?.items;
    println!("\nevery thread:      {:?}", listed.iter().map(|t| t.id.as_str()).collect::<Vec<_>>());
    println!("in-memory scratch: {:?}", ephemeral.iter().map(|t| t.id.as_str()).collect::<Vec<_>>());
    Ok(())
}
