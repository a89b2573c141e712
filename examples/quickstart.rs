//! An agent-style conversation through a small pipeline.
//!
//! A user turn, then the assistant's reply streamed into a reserved placeholder and finalized;
//! an observer indexes messages only once they are complete; a route sends `scratch:` threads
//! to a second store. Prints the transcript and what each store holds.
//!
//! Run: `cargo run --example quickstart`

use std::sync::{Arc, Mutex};

use persist::args::{Add, Reserve, UpdateContent};
use persist::layer::ObserveLayer;
use persist::layer::route::{self, RouteLayer};
use persist::memory::MemoryBackend;
use persist::read::{ListMessages, ListThreads};
use persist::{Content, IdempotencyKey, PersistResult, Pipeline, Role, Status, ThreadId};

#[tokio::main]
async fn main() -> Result<(), persist::PersistError> {
    // What the observer indexed: (thread, seq, text) of complete messages only.
    let index = Arc::new(Mutex::new(Vec::<(String, u64, String)>::new()));
    let indexer = {
        let index = index.clone();
        move |result: &PersistResult| {
            if let Some(m) = result.message().filter(|m| m.status == Status::Complete) {
                let entry = (m.thread_id.to_string(), m.seq, m.content.to_text());
                index.lock().unwrap().push(entry);
            }
        }
    };

    let scratch = Pipeline::new(MemoryBackend::new());
    let pipeline = Pipeline::builder()
        .layer(ObserveLayer::new().on_result(indexer))
        .layer(
            RouteLayer::builder()
                .route("scratch", route::thread_prefix("scratch:"), scratch.clone())
                .build()?,
        )
        .build(MemoryBackend::new());

    let thread = ThreadId::new("support:1042")?;
    pipeline
        .add(
            Add::new(
                thread.clone(),
                Role::User,
                Content::text("My order #1042 has not arrived. Where is it?"),
            )
            .with_idempotency_key(IdempotencyKey::new("turn-1")?),
        )
        .await?;

    // The assistant's reply: reserve first, so every streamed chunk carries a stable id.
    let reply = pipeline
        .reserve(Reserve::new(thread.clone(), Role::Assistant))
        .await?
        .message;
    println!("streaming into message {} (seq {})", reply.id, reply.seq);
    let mut text = String::new();
    for chunk in [
        "Your order ",
        "left our warehouse ",
        "yesterday; ",
        "it arrives ",
        "on Friday.",
    ] {
        text.push_str(chunk);
        let partial = UpdateContent::new(thread.clone(), reply.id.clone(), Content::text(&text))
            .with_finalize(false);
        pipeline.update_content(partial).await?;
    }
    pipeline
        .update_content(UpdateContent::new(
            thread.clone(),
            reply.id.clone(),
            Content::text(&text),
        ))
        .await?;

    // A scratch thread goes to the second store.
    let notes = ThreadId::new("scratch:agent-notes")?;
    pipeline
        .add(Add::new(
            notes.clone(),
            Role::System,
            Content::text("customer asked about #1042"),
        ))
        .await?;

    println!("\ntranscript of {thread}:");
    for m in pipeline
        .list(ListMessages::new(thread.clone()))
        .await?
        .items
    {
        println!(
            "  #{} {:<9} v{} {}",
            m.seq,
            m.role,
            m.version,
            m.content.to_text()
        );
    }

    println!("\nindexed (complete messages only):");
    for (thread, seq, text) in index.lock().unwrap().iter() {
        println!("  {thread} #{seq}: {text}");
    }

    let main_threads = pipeline.threads(ListThreads::new()).await?.items;
    let scratch_threads = scratch.threads(ListThreads::new()).await?.items;
    println!(
        "\nmain store threads:    {:?}",
        main_threads
            .iter()
            .map(|t| t.id.as_str())
            .collect::<Vec<_>>()
    );
    println!(
        "scratch store threads: {:?}",
        scratch_threads
            .iter()
            .map(|t| t.id.as_str())
            .collect::<Vec<_>>()
    );
    Ok(())
}
