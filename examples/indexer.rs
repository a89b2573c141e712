//! Plugin style 2, observe hooks: a search indexer that never indexes placeholders, indexes a
//! message once it is complete, and purges what is deleted.
//!
//! The hooks see a result alone, which does not name its tenant: this indexer serves one
//! tenant. An index of several tenants' messages keys them by tenant with a `from_fn` layer
//! (it sees the request's context and its result) or from `Events` (each event names its tenant).
//!
//! Run: `cargo run --example indexer`

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use persist::args::{Add, Delete, Reserve, UpdateContent};
use persist::layer::ObserveLayer;
use persist::memory::MemoryBackend;
use persist::{Content, PersistResult, Pipeline, Role, Status, ThreadId};

type Index = Arc<Mutex<BTreeMap<(String, String), String>>>;

#[tokio::main]
async fn main() -> Result<(), persist::PersistError> {
    let index: Index = Arc::default();
    let sink = index.clone();
    let indexer = ObserveLayer::new().on_result(move |result: &PersistResult| {
        let mut index = sink.lock().unwrap();
        if let PersistResult::Deleted(deleted) = result {
            for id in &deleted.message_ids {
                index.remove(&(deleted.thread_id.to_string(), id.to_string()));
            }
        } else if let Some(m) = result.message().filter(|m| m.status == Status::Complete) {
            index.insert((m.thread_id.to_string(), m.id.to_string()), m.content.to_text());
        }
    });
    let pipeline = Pipeline::builder().layer(indexer).build(MemoryBackend::new());

    let thread = ThreadId::new("index-demo")?;
    let question = pipeline.add(Add::new(thread.clone(), Role::User, Content::text("What is WAL?"))).await?.message;
    let slot = pipeline.reserve(Reserve::new(thread.clone(), Role::Assistant)).await?.message;
    println!("after reserve:  {} indexed (the placeholder is not)", index.lock().unwrap().len());
    let partial = UpdateContent::partial(thread.clone(), slot.id.clone(), Content::text("Write-ahead"));
    pipeline.update_content(partial).await?;
    println!("while streaming: {} indexed", index.lock().unwrap().len());
    let answer = "Write-ahead logging: readers and a writer at once.";
    pipeline.update_content(UpdateContent::new(thread.clone(), slot.id, Content::text(answer))).await?;
    println!("after finalize: {} indexed", index.lock().unwrap().len());
    pipeline.delete(Delete::message(thread, question.id)).await?;
    let remaining: Vec<String> = index.lock().unwrap().values().cloned().collect();
    println!("after delete:   {} indexed: {remaining:?}", remaining.len());
    Ok(())
}
