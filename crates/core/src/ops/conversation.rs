//! Conveniences of a conversation: [`Pipeline::pop`], the latest messages removed exactly.

use crate::branch::Branch;
use crate::lifecycle::{Pop, Popped};
use crate::model::error::{PersistError, Result};
use crate::pipeline::Pipeline;
use crate::read::{GetThread, ListMessages, MAX_PAGE_LIMIT, Order};
use crate::request::write::Delete;

impl Pipeline {
    /// Removes the latest [`count`](Pop::count) messages of a thread, reservations included,
    /// **through the pipeline**, and answers them (OpenAI's `pop_item`): a `list` of the newest
    /// messages, then a `delete` of each, newest first, expecting the version read. On a store
    /// with [branches](crate::branch), the latest of the active branch (the conversation as it
    /// is shown), which then ends at the message before them; other branches are left as they
    /// are.
    ///
    /// A message written after it was read (a stream's token, a patch) is kept: its delete is
    /// refused with `VersionConflict`, which the pop answers; the newer messages it removed
    /// before stay removed, so what is left is always a prefix of the thread. A message added
    /// meanwhile is never removed (only the messages read are). To remove everything, see
    /// [`Delete::clear`].
    ///
    /// # Example
    ///
    /// ```
    /// use persist::{args::Add, lifecycle::Pop, memory::MemoryBackend, Content, Pipeline, Role, ThreadId};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pipeline = Pipeline::new(MemoryBackend::new());
    /// let thread = ThreadId::new("t1")?;
    /// for text in ["question", "wrong answer"] {
    ///     pipeline.add(Add::new(thread.clone(), Role::User, Content::text(text))).await?;
    /// }
    /// let popped = pipeline.pop(Pop::new(thread)).await?;
    /// assert_eq!(popped.messages[0].content.to_text(), "wrong answer");
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` (`count`) for a count of 0 or above [`MAX_PAGE_LIMIT`]; `NotFound` for a
    /// thread that does not exist, `ThreadDeleted` for a deleted one; `Unreadable` (nothing
    /// removed) when one of the latest messages does not open; the first refused delete.
    pub async fn pop(&self, mut pop: Pop) -> Result<Popped> {
        pop.context = pop.context.consistent();
        if pop.count == 0 || pop.count > MAX_PAGE_LIMIT {
            return Err(PersistError::invalid(
                "count",
                format!("must be between 1 and {MAX_PAGE_LIMIT}, got {}", pop.count),
            ));
        }
        let thread = self.get_thread(GetThread::new(pop.thread_id.clone()).with_context(pop.context.clone())).await?;
        match thread {
            None => return Err(PersistError::not_found(&pop.thread_id, None)),
            Some(thread) if thread.is_deleted() => {
                return Err(PersistError::ThreadDeleted { thread_id: pop.thread_id });
            }
            Some(_) => {}
        }
        let mut latest = ListMessages::new(pop.thread_id.clone());
        if self.capabilities().branches {
            latest = latest.on_branch(Branch::Active);
        }
        let latest = latest
            .with_order(Order::Desc)
            .with_limit(pop.count)
            .include_reserved(true)
            .with_context(pop.context.renewed());
        let page = self.list(latest).await?;
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
            self.delete(delete).await?;
            messages.push(message);
        }
        messages.reverse();
        Ok(Popped { messages })
    }
}
