//! Conveniences of a conversation: [`PipelineExt::pop`](crate::PipelineExt::pop), the latest messages removed exactly.

use crate::lifecycle::{Pop, Popped};
use persist_core::Pipeline;
use persist_core::args::Delete;
use persist_core::branch::Branch;
use persist_core::read::{GetThread, ListMessages, MAX_PAGE_LIMIT, Order};
use persist_core::{PersistError, Result};

/// See [`PipelineExt::pop`](crate::PipelineExt::pop).
pub(crate) async fn pop(pipeline: &Pipeline, mut pop: Pop) -> Result<Popped> {
    pop.context = pop.context.consistent();
    if pop.count == 0 || pop.count > MAX_PAGE_LIMIT {
        return Err(PersistError::invalid(
            "count",
            format!("must be between 1 and {MAX_PAGE_LIMIT}, got {}", pop.count),
        ));
    }
    let thread = pipeline.get_thread(GetThread::new(pop.thread_id.clone()).with_context(pop.context.clone())).await?;
    match thread {
        None => return Err(PersistError::not_found(&pop.thread_id, None)),
        Some(thread) if thread.is_deleted() => {
            return Err(PersistError::ThreadDeleted { thread_id: pop.thread_id });
        }
        Some(_) => {}
    }
    let mut latest = ListMessages::new(pop.thread_id.clone());
    if pipeline.capabilities().branches {
        latest = latest.on_branch(Branch::Active);
    }
    let latest =
        latest.with_order(Order::Desc).with_limit(pop.count).include_reserved(true).with_context(pop.context.renewed());
    let page = pipeline.list(latest).await?;
    // A message that did not open (see `EncryptLayer`) is not in the page: deleting around it
    // would leave a gap, not a prefix.
    if let Some(item) = page.unreadable.first() {
        return Err(PersistError::Unreadable {
            thread_id: item.thread_id.clone(),
            message_id: item.message_id.clone(),
            reason: item.reason.clone().into(),
        });
    }
    let mut messages = Vec::new();
    for message in page.items {
        let delete = Delete::message(pop.thread_id.clone(), message.id.clone())
            .with_expected_version(message.version)
            .with_context(pop.context.renewed());
        pipeline.delete(delete).await?;
        messages.push(message);
    }
    messages.reverse();
    Ok(Popped { messages })
}
