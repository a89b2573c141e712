//! Compaction: a long agent session kept within a model's context without losing its history.
//! A `CompactLayer` watches writes; when what follows a thread's latest summary outgrows a
//! budget, its worker folds the older messages into a new summary (here with the `KeepLastText`
//! stand-in; a model call in a real app: see `MyModel` below). The compacted read then costs
//! the tail, every raw message stays until retention is told to remove what a summary covers,
//! and after that the compacted read answers exactly what it did before.
//!
//! Run: `cargo run --example compaction`

use std::time::Duration;

use persist::args::{Add, Delete};
use persist::compaction::{Budget, Compaction, CompactionInput, Compactor, KeepLastText};
use persist::layer::CompactLayer;
use persist::read::ListMessages;
use persist::sqlite::SqliteBackend;
use persist::summary::{ListSummaries, ReadCompacted};
use persist::{BoxError, Content, Pipeline, Role, ThreadId};

/// How a model would be plugged in: the previous summary and the messages to fold in become a
/// prompt, the model's answer the summary. (This one answers without a network.)
struct MyModel;

impl Compactor for MyModel {
    fn name(&self) -> &str {
        "my-model"
    }

    async fn compact(&self, input: CompactionInput<'_>) -> Result<Content, BoxError> {
        let mut prompt = String::from("Summarize the conversation so far in a few sentences.\n");
        if let Some(previous) = input.previous {
            prompt += &format!("The summary until now: {}\n", previous.content.to_text());
        }
        for message in input.messages {
            prompt += &format!("{}: {}\n", message.role, message.content.to_text());
        }
        // let answer = client.chat(prompt).await?; — a real model call goes here.
        let answer = KeepLastText::new(2).compact(input).await?;
        Ok(answer)
    }
}

#[tokio::main]
async fn main() -> Result<(), persist::PersistError> {
    let dir = std::env::temp_dir().join(format!("persist-compaction-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| persist::PersistError::backend("creating the example's folder", e))?;
    let backend = SqliteBackend::open(dir.join("compaction.db")).await?;

    // Over 12 messages after the latest summary: compact, keeping the 4 most recent as written.
    let compaction = Compaction::new(MyModel, Budget::messages(12)).keep_recent(4);
    let (layer, worker) = CompactLayer::new(compaction);
    let store = Pipeline::builder().layer(layer).build(backend.clone());
    let compacting = tokio::spawn(worker.run(store.clone()));

    let thread = ThreadId::new("research-session")?;
    for turn in 1..=20 {
        let question = Add::new(thread.clone(), Role::User, Content::text(format!("Question {turn}?")));
        store.add(question).await?;
        let answer = Add::new(thread.clone(), Role::Assistant, Content::text(format!("Answer {turn}.")));
        store.add(answer).await?;
    }
    // The worker runs in the background: wait until it caught up with the last writes.
    for _ in 0..500 {
        if store.compacted(ReadCompacted::new(thread.clone())).await?.messages.len() <= 12 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    compacting.abort();
    let _ = compacting.await; // stopped (a compaction under way is cut off; its lease expires)
    let read = store.compacted(ReadCompacted::new(thread.clone())).await?;

    let summary = read.summary.as_ref().expect("compacted by now");
    println!(
        "-- what a model is given: the summary of #{}..#{}, then {} messages",
        summary.from_seq,
        summary.through_seq,
        read.messages.len()
    );
    println!("summary: {}", summary.content.to_text().replace('\n', " | "));
    for message in &read.messages {
        println!("#{} {:<9} {}", message.seq, message.role.as_str(), message.content.to_text());
    }
    let summaries = store.summaries(ListSummaries::new(thread.clone())).await?.items;
    let stored = store.list(ListMessages::new(thread.clone()).with_limit(100)).await?.items;
    println!(
        "-- {} summaries written as the session grew; all {} messages are still stored",
        summaries.len(),
        stored.len()
    );
    assert_eq!(stored.len(), 40);

    // Retention of what the latest summary covers: the raw messages it stands for go, the
    // compacted read is unchanged.
    let removed = store.delete(Delete::covered(thread.clone())).await?;
    let after = store.compacted(ReadCompacted::new(thread.clone())).await?;
    println!(
        "-- retention removed {} covered messages; the compacted read is the same: {}",
        removed.message_ids.len(),
        after == read
    );
    assert_eq!(after, read);

    backend.close().await;
    std::fs::remove_dir_all(&dir).map_err(|e| persist::PersistError::backend("removing the example's folder", e))?;
    Ok(())
}
