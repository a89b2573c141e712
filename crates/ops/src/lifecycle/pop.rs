//! Conveniences of a conversation: [`PipelineExt::pop`](crate::PipelineExt::pop), the latest
//! messages removed exactly, each answered to one caller only.

use crate::lifecycle::{Pop, Popped};
use persist_core::Pipeline;
use persist_core::args::Delete;
use persist_core::branch::Branch;
use persist_core::read::{GetThread, ListMessages, MAX_PAGE_LIMIT, Order};
use persist_core::{Message, PersistError, Result};

/// How many messages a pop may lose to other removers (another pop took each between the pop's
/// read and its delete) before it gives up: each loss is someone else's progress, so only a
/// thread emptied and refilled as fast as it is read runs out of them.
const LOST_CLAIMS: usize = 64;

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
    // Newest first while claiming; answered oldest first.
    let mut claimed = Vec::new();
    let mut lost = 0;
    'read: while claimed.len() < pop.count as usize {
        let latest = newest(pipeline, &pop, pop.count - claimed.len() as u32).await?;
        if latest.is_empty() {
            break;
        }
        for message in latest {
            if claim(pipeline, &pop, &message).await? {
                claimed.push(message);
                continue;
            }
            // Another remover took it: what this pop read is stale, so it reads again.
            lost += 1;
            if lost > LOST_CLAIMS {
                return Err(PersistError::temporary(format!(
                    "other removers took the {LOST_CLAIMS} latest messages of {} this pop tried; retry",
                    pop.thread_id
                )));
            }
            continue 'read;
        }
    }
    claimed.reverse();
    Ok(Popped { messages: claimed })
}

/// The thread's `count` newest messages, reservations included: of the active branch on a
/// store with branches, the newest first.
async fn newest(pipeline: &Pipeline, pop: &Pop, count: u32) -> Result<Vec<Message>> {
    let mut latest = ListMessages::new(pop.thread_id.clone());
    if pipeline.capabilities().branches {
        latest = latest.on_branch(Branch::Active);
    }
    let latest =
        latest.with_order(Order::Desc).with_limit(count).include_reserved(true).with_context(pop.context.renewed());
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
    Ok(page.items)
}

/// Deletes `message` as it was read: `true` when this delete removed it (the caller's to
/// answer), `false` when it was gone already (another caller's). A delete of what is gone
/// answers no id (a layer may say `NotFound`), which is what makes the delete a claim: of two
/// callers that read the same message, exactly one delete removes it.
async fn claim(pipeline: &Pipeline, pop: &Pop, message: &Message) -> Result<bool> {
    let delete = Delete::message(pop.thread_id.clone(), message.id.clone())
        .with_expected_version(message.version)
        .with_context(pop.context.renewed());
    match pipeline.delete(delete).await {
        Ok(deleted) => Ok(deleted.message_ids.contains(&message.id)),
        Err(PersistError::NotFound { message_id: Some(_), .. }) => Ok(false),
        Err(error) => Err(error),
    }
}
