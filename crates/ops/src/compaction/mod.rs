//! Compaction: when a thread's tail (what follows its latest [summary](persist_core::summary)) outgrows
//! a [`Budget`], a [`Compactor`] turns the previous summary and the messages after it into a new
//! summary, written through the pipeline.
//!
//! [`Compaction`] is one run's rules: the compactor, the budget, how many recent messages stay
//! as they are, and who runs it. [`Compaction::compact`] runs it once for a thread, through any
//! [`Pipeline`]: it takes the thread's [lease](persist_core::lease) `persist.compaction` (so one
//! instance at a time compacts a thread, across every instance sharing the store), reads the
//! thread [compacted](persist_core::summary::ReadCompacted), and when the tail is over budget, calls
//! the compactor and writes the summary (idempotent per range: a run repeated after a crash
//! writes it once). A lease its holder never gave up (the instance died) expires after
//! [`lease_for`](Compaction::lease_for), and the next run takes it: compaction resumes.
//! [`CompactLayer`] runs it in the background after writes.
//!
//! Two compactors need no network: [`TrimToolOutputs`] (the messages themselves, long tool
//! outputs cut) and [`KeepLastText`] (the text of the last messages only). A model is plugged in
//! by implementing [`Compactor`]: send the previous summary and the messages to it, answer its
//! text.
//!
//! # Example
//!
//! ```
//! use persist::compaction::{Budget, Compaction, Outcome, KeepLastText};
//! use persist::{args::Add, summary::ReadCompacted, Content, Context, Pipeline, Role, ThreadId};
//! use persist::memory::MemoryBackend;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = Pipeline::new(MemoryBackend::new());
//! let thread = ThreadId::new("long")?;
//! for i in 1..=12 {
//!     store.add(Add::new(thread.clone(), Role::User, Content::text(format!("message {i}")))).await?;
//! }
//! let compaction = Compaction::new(KeepLastText::new(3), Budget::messages(10)).keep_recent(2);
//! let outcome = compaction.compact(&store, thread.clone(), Context::new()).await?;
//! assert!(matches!(outcome, Outcome::Summarized(_)));
//! let read = store.compacted(ReadCompacted::new(thread)).await?;
//! assert_eq!(read.summary.unwrap().through_seq, 10);
//! assert_eq!(read.messages.len(), 2); // the two most recent stay as they are
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

mod compactors;
pub mod layer;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use self::compactors::{KeepLastText, TrimToolOutputs};
pub use self::layer::{CompactLayer, CompactWorker};
use persist_core::Maintenance;
use persist_core::Status;
use persist_core::lease::{Lease, Leased};
use persist_core::summary::{ReadCompacted, Summarize, Summary};
use persist_core::{BoxError, Content, Context, Message, Metadata, PersistError, Pipeline, Result, ThreadId};

/// How long a reply of the tail may go without a write before a compaction settles it; see
/// [`Compaction::settle_after`].
pub const DEFAULT_SETTLE_AFTER: Duration = Duration::from_secs(600);

/// How long a run renews its lease while its compactor works (see
/// [`Compaction::lease_for`]): longer than any summarization should take.
pub const MAX_RENEWED: Duration = Duration::from_secs(3600);

/// The name of the lease a compaction takes on its thread.
pub const LEASE_NAME: &str = "persist.compaction";
/// The metadata key a summary written by [`Compaction`] names its compactor under.
pub const COMPACTOR_KEY: &str = "persist.compactor";

/// What a compactor is given: the thread, its latest summary (if any), and the messages to
/// fold into the next one (the tail's oldest, in seq order, all settled).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct CompactionInput<'a> {
    /// The thread.
    pub thread_id: &'a ThreadId,
    /// The summary the new one replaces (it covers everything before `messages`).
    pub previous: Option<&'a Summary>,
    /// The messages the new summary covers beyond the previous one.
    pub messages: &'a [Message],
}

/// Turns a previous summary and the messages after it into the next summary's content: a model
/// call, usually.
///
/// # Example: a model
///
/// ```
/// use persist::compaction::{CompactionInput, Compactor};
/// use persist::{BoxError, Content};
///
/// struct Llm; // your client
///
/// impl Compactor for Llm {
///     fn name(&self) -> &str {
///         "llm-summary"
///     }
///
///     async fn compact(&self, input: CompactionInput<'_>) -> Result<Content, BoxError> {
///         let mut prompt = String::from("Summarize this conversation so far.\n");
///         if let Some(previous) = input.previous {
///             prompt += &format!("Summary until now: {}\n", previous.content.to_text());
///         }
///         for message in input.messages {
///             prompt += &format!("{}: {}\n", message.role, message.content.to_text());
///         }
///         // let text = client.complete(prompt).await?;
///         let text = format!("{} messages, summarized", input.messages.len());
///         Ok(Content::text(text))
///     }
/// }
/// ```
pub trait Compactor: Send + Sync + 'static {
    /// A short name, recorded in each summary's metadata under [`COMPACTOR_KEY`].
    fn name(&self) -> &str;

    /// The next summary's content (not empty). An error leaves the thread as it was; the next
    /// run tries again.
    fn compact(
        &self,
        input: CompactionInput<'_>,
    ) -> impl Future<Output = std::result::Result<Content, BoxError>> + Send;
}

/// Estimates how many tokens a message costs a model; see [`Budget::tokens`].
pub trait TokenCounter: Send + Sync + 'static {
    /// The message's tokens.
    fn count(&self, message: &Message) -> usize;
}

/// The common estimate: one token for every four bytes of the content's JSON (text-heavy
/// English runs about four characters a token).
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesPerToken;

impl TokenCounter for BytesPerToken {
    fn count(&self, message: &Message) -> usize {
        message.content.json_len().div_ceil(4)
    }
}

/// When a thread's tail is over budget: more messages, bytes of content or estimated tokens
/// than this after its latest summary.
#[derive(Clone)]
pub struct Budget {
    limit: usize,
    measure: Measure,
}

#[derive(Clone)]
enum Measure {
    Messages,
    Bytes,
    Tokens(Arc<dyn TokenCounter>),
}

impl fmt::Debug for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let measure = match self.measure {
            Measure::Messages => "messages",
            Measure::Bytes => "bytes",
            Measure::Tokens(_) => "tokens",
        };
        f.debug_struct("Budget").field("limit", &self.limit).field("measure", &measure).finish()
    }
}

impl Budget {
    /// More than `limit` messages after the latest summary.
    pub fn messages(limit: usize) -> Self {
        Self { limit, measure: Measure::Messages }
    }

    /// More than `limit` bytes of content (its JSON) after the latest summary.
    pub fn bytes(limit: usize) -> Self {
        Self { limit, measure: Measure::Bytes }
    }

    /// More than `limit` tokens after the latest summary, as `counter` estimates them
    /// ([`BytesPerToken`], or a tokenizer of your model's).
    pub fn tokens(limit: usize, counter: impl TokenCounter) -> Self {
        Self { limit, measure: Measure::Tokens(Arc::new(counter)) }
    }

    /// What `messages` cost in this budget's measure.
    pub fn cost(&self, messages: &[Message]) -> usize {
        match &self.measure {
            Measure::Messages => messages.len(),
            Measure::Bytes => messages.iter().map(|m| m.content.json_len()).sum(),
            Measure::Tokens(counter) => messages.iter().map(|m| counter.count(m)).sum(),
        }
    }

    /// Whether `messages` are over this budget.
    pub fn is_over(&self, messages: &[Message]) -> bool {
        self.cost(messages) > self.limit
    }
}

/// What one [`Compaction::compact`] did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Outcome {
    /// A summary was written (or found written: the same range, by a run before).
    Summarized(Summary),
    /// The tail is within the budget: nothing to do.
    WithinBudget,
    /// Over budget, but nothing can be folded in: the messages after the latest summary are
    /// the recent ones kept as they are, or come after a reply still being written.
    NothingSettled,
    /// Another instance holds the thread's compaction lease.
    Busy(Leased),
}

/// How a thread is compacted; see the [module docs](self).
pub struct Compaction<C> {
    compactor: C,
    budget: Budget,
    keep_recent: usize,
    holder: String,
    lease_for: Duration,
    settle_after: Option<Duration>,
}

impl<C> fmt::Debug for Compaction<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compaction")
            .field("budget", &self.budget)
            .field("keep_recent", &self.keep_recent)
            .field("holder", &self.holder)
            .field("lease_for", &self.lease_for)
            .field("settle_after", &self.settle_after)
            .finish_non_exhaustive()
    }
}

impl<C: Compactor> Compaction<C> {
    /// Compacts with `compactor` when the tail is over `budget`, keeping the 4 most recent
    /// messages as they are, as a holder of a name of its own (a random id per instance),
    /// leasing the thread for 5 minutes, settling replies silent for 10 minutes (see
    /// [`settle_after`](Self::settle_after)).
    pub fn new(compactor: C, budget: Budget) -> Self {
        Self {
            compactor,
            budget,
            keep_recent: 4,
            holder: format!("persist-{}", uuid::Uuid::now_v7()),
            lease_for: Duration::from_secs(300),
            settle_after: Some(DEFAULT_SETTLE_AFTER),
        }
    }

    /// Settles the replies of the tail that nobody wrote to for `silence` before compacting, as
    /// [`cleanup_stranded`](crate::PipelineExt::cleanup_stranded) would (through the pipeline, expecting
    /// the version read): marked [`Interrupted`](persist_core::Status::Interrupted) with what their
    /// stream wrote, or deleted when it wrote nothing. A compaction never folds past a reply
    /// still `Reserved`, so without this a reply whose generator died would stop the thread's
    /// compaction until an operator ran a cleanup, while its tail grew with every message.
    /// A generator that waits longer than `silence` (a slow tool) keeps its reply alive with
    /// [heartbeats](persist_core::args::UpdateContent::heartbeat). `None` settles nothing: the first
    /// reply left reserved is then reported at each run (`tracing` warning) and the run answers
    /// [`Outcome::NothingSettled`] when it is the first message it could fold. Default: 10
    /// minutes.
    pub fn settle_after(mut self, silence: Option<Duration>) -> Self {
        self.settle_after = silence;
        self
    }

    /// Keeps the `n` most recent messages out of every summary (a model then sees them as
    /// they were written).
    pub fn keep_recent(mut self, n: usize) -> Self {
        self.keep_recent = n;
        self
    }

    /// Takes the thread's lease as `holder` (an instance's name) instead of a random one.
    pub fn holder(mut self, holder: impl Into<String>) -> Self {
        self.holder = holder.into();
        self
    }

    /// How long a thread's lease lasts without renewal (at most a day): after that, an instance
    /// that died while compacting no longer keeps the others out. A run renews it every third
    /// of this while its compactor works, so a compactor may take longer than this.
    pub fn lease_for(mut self, duration: Duration) -> Self {
        self.lease_for = duration;
        self
    }

    /// The compactor.
    pub fn compactor(&self) -> &C {
        &self.compactor
    }

    /// Compacts `thread` (of `context`'s tenant) once, through `pipeline`, if its tail is over
    /// the budget; see the [module docs](self). Every request carries `context` with a
    /// [`Maintenance`] extension.
    ///
    /// # Errors
    ///
    /// A read's or write's error, or the compactor's as `PersistError::Backend`; `Unreadable`
    /// when the summary or a message after it does not open (nothing is written); `Temporary`
    /// when the lease could not be taken (a race with its holder giving it up). The lease is
    /// given up either way (an error giving it up is left to its expiry).
    pub async fn compact(&self, pipeline: &Pipeline, thread: ThreadId, context: Context) -> Result<Outcome> {
        // Its reads see its lease and what was written before it, whichever copy answers.
        let context = context.consistent().with_extension(Maintenance);
        let take = Lease::take(thread.clone(), LEASE_NAME, self.holder.clone(), self.lease_for)?;
        match pipeline.lease(take.clone().with_context(context.renewed())).await? {
            Some(held) if held.holder == self.holder => {}
            Some(held) => return Ok(Outcome::Busy(held)),
            None => return Err(PersistError::temporary("the thread's compaction lease was not taken; try again")),
        }
        let outcome = self.renewing(pipeline, &take, &context, self.compact_leased(pipeline, &thread, &context)).await;
        let give_up = Lease::give_up(thread, LEASE_NAME, self.holder.clone())?;
        if let Err(error) = pipeline.lease(give_up.with_context(context.renewed())).await {
            tracing::warn!(%error, "giving up a compaction lease; it expires on its own");
        }
        outcome
    }

    /// Runs `work` while renewing the lease `take` took, every third of its time, so a
    /// compactor slower than [`lease_for`](Self::lease_for) keeps the thread: another instance
    /// never takes it while this run is alive. A renewal another holder answered (the lease ran
    /// out between two renewals, and was taken) stops the work before it writes anything:
    /// [`Outcome::Busy`]. A renewal that fails stops it with its error. Renewals end after
    /// [`MAX_RENEWED`]: a compactor that hangs does not keep the thread from the others for
    /// good (its lease then runs out, and the run goes on unrenewed).
    async fn renewing(
        &self,
        pipeline: &Pipeline,
        take: &Lease,
        context: &Context,
        work: impl Future<Output = Result<Outcome>>,
    ) -> Result<Outcome> {
        let every = (self.lease_for / 3).max(Duration::from_millis(10));
        let until = std::time::Instant::now() + MAX_RENEWED;
        let mut work = std::pin::pin!(work);
        loop {
            if std::time::Instant::now() >= until {
                tracing::warn!(thread = %take.thread_id, "a compactor ran past its renewals; its lease runs out");
                return work.await;
            }
            match tokio::time::timeout(every, &mut work).await {
                Ok(outcome) => return outcome,
                Err(_) => match pipeline.lease(take.clone().with_context(context.renewed())).await? {
                    Some(held) if held.holder == self.holder => {}
                    Some(held) => return Ok(Outcome::Busy(held)),
                    None => return Err(PersistError::temporary("the thread's compaction lease was lost; try again")),
                },
            }
        }
    }

    async fn compact_leased(&self, pipeline: &Pipeline, thread: &ThreadId, context: &Context) -> Result<Outcome> {
        let compacted = ReadCompacted::new(thread.clone()).include_reserved(true);
        let mut read = pipeline.compacted(compacted.clone().with_context(context.renewed())).await?;
        if self.settle_silent(pipeline, &read.messages, context).await? {
            read = pipeline.compacted(compacted.with_context(context.renewed())).await?;
        }
        // What does not open (a wrong key, a tampered value) would be covered unread, or a
        // previous summary lost: nothing is written.
        if let Some(item) = read.unreadable.first() {
            return Err(PersistError::Unreadable {
                thread_id: item.thread_id.clone(),
                message_id: item.message_id.clone(),
                reason: format!("compaction stopped: {}", item.reason).into(),
            });
        }
        if !self.budget.is_over(&read.messages) {
            return Ok(Outcome::WithinBudget);
        }
        // Settled messages only, never the most recent, and never a call without its results.
        let settled = read.messages.iter().take_while(|m| m.status != Status::Reserved).count();
        let foldable = settled.min(read.messages.len().saturating_sub(self.keep_recent));
        let foldable = boundary_keeping_tool_pairs(&read.messages, foldable);
        let Some(last) = foldable.checked_sub(1).map(|i| &read.messages[i]) else {
            return Ok(Outcome::NothingSettled);
        };
        let input = CompactionInput {
            thread_id: thread,
            previous: read.summary.as_ref(),
            messages: &read.messages[..foldable],
        };
        let content = self.compactor.compact(input).await.map_err(|source| PersistError::Backend {
            message: format!("the compactor {:?} failed", self.compactor.name()).into(),
            source: Some(source),
        })?;
        let from = read.summary.as_ref().map_or(1, |previous| previous.from_seq);
        let metadata = Metadata::new()
            .with(COMPACTOR_KEY, serde_json::Value::from(self.compactor.name()))
            .with("persist.messages", serde_json::Value::from(foldable));
        let summarize = Summarize::new(thread.clone(), last.seq, content)
            .from_seq(from)
            .with_metadata(metadata)
            .with_context(context.renewed());
        Ok(Outcome::Summarized(pipeline.summarize(summarize).await?.summary))
    }
}

/// The latest boundary at or before `limit` (the first `n` of `messages` folded) that splits no
/// tool call from its results: a provider refuses a history whose result answers a call it
/// cannot see (one folded into the summary), and a call whose result never follows. A call
/// answered later in `messages` keeps the boundary at or before it; so does a call not answered
/// yet while its turn is open (no user message after it: its tool may still be running), whose
/// result would otherwise come after the summary that folded the call. A call a user message
/// followed unanswered was abandoned, and folds.
fn boundary_keeping_tool_pairs(messages: &[Message], limit: usize) -> usize {
    use std::collections::HashMap;
    // Each call's message, and the last message answering it.
    let mut calls: HashMap<String, (usize, Option<usize>)> = HashMap::new();
    for (index, message) in messages.iter().enumerate() {
        for part in message.content.parts() {
            match part {
                persist_core::Part::ToolCall { id, .. } => {
                    calls.entry(id).or_insert((index, None));
                }
                persist_core::Part::ToolResult { call_id, .. } => {
                    if let Some((_, answered)) = calls.get_mut(&call_id) {
                        *answered = Some(index);
                    }
                }
                _ => {}
            }
        }
    }
    let last_user = messages.iter().rposition(|m| m.role == persist_core::Role::User);
    let spans: Vec<(usize, usize)> = calls
        .into_values()
        .filter_map(|(call, answered)| match answered {
            Some(result) => Some((call, result)),
            // Open: a result may still come after everything read.
            None if last_user.is_none_or(|user| user < call) => Some((call, usize::MAX)),
            None => None,
        })
        .collect();
    // A boundary inside a span moves before its call, which may put it inside another span.
    let mut boundary = limit;
    while let Some(&(call, _)) = spans.iter().find(|&&(call, last)| call < boundary && boundary <= last) {
        boundary = call;
    }
    boundary
}

impl<C> Compaction<C> {
    /// Settles the replies among `messages` silent for longer than `settle_after` (see there);
    /// whether any was settled. Each reply kept reserved is reported.
    async fn settle_silent(&self, pipeline: &Pipeline, messages: &[Message], context: &Context) -> Result<bool> {
        let mut settled = false;
        let now = persist_core::Timestamp::now();
        let Some(silence) = self.settle_after else {
            // The first reply still reserved is what keeps the run from folding past it.
            if let Some(reply) = messages.iter().find(|m| m.status == Status::Reserved) {
                tracing::warn!(
                    thread = %reply.thread_id, message = %reply.id, seq = reply.seq,
                    "a reply still reserved keeps the compaction from folding past it; settle it \
                     (cleanup_stranded) if its generator died"
                );
            }
            return Ok(false);
        };
        for reply in messages.iter().filter(|m| m.status == Status::Reserved) {
            if reply.updated_at >= now.saturating_sub(silence) {
                continue;
            }
            let stranding = crate::maintenance::Stranding::Interrupt;
            match crate::maintenance::cleanup::settle_stranded(pipeline, reply, stranding, context.renewed()).await {
                Ok(_) => {
                    tracing::info!(thread = %reply.thread_id, message = %reply.id, seq = reply.seq, "a silent reply settled");
                    settled = true;
                }
                // Written to meanwhile: alive after all.
                Err(error) if error.is_changed_or_gone() => settled = true,
                Err(error) => return Err(error),
            }
        }
        Ok(settled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use persist_core::{MessageId, Role, Timestamp};

    fn message(text: &str) -> Message {
        let thread = ThreadId::new("t").unwrap();
        Message::stored(thread, MessageId::generate(), 1, Role::User, Content::text(text), Timestamp::now())
    }

    #[test]
    fn each_budget_measures_the_tail_its_way() {
        let tail = [message(&"a".repeat(100)), message(&"b".repeat(100))];
        let bytes = tail[0].content.json_len() + tail[1].content.json_len();
        assert_eq!(Budget::messages(10).cost(&tail), 2);
        assert_eq!(Budget::bytes(10).cost(&tail), bytes);
        assert_eq!(
            Budget::tokens(10, BytesPerToken).cost(&tail),
            tail.iter().map(|m| m.content.json_len().div_ceil(4)).sum::<usize>()
        );
        struct Words;
        impl TokenCounter for Words {
            fn count(&self, message: &Message) -> usize {
                message.content.to_text().split_whitespace().count()
            }
        }
        assert_eq!(Budget::tokens(1, Words).cost(&tail), 2);
        assert!(!Budget::bytes(bytes).is_over(&tail[..0]) && !Budget::bytes(bytes).is_over(&tail));
        assert!(Budget::bytes(bytes - 1).is_over(&tail), "over is more than the limit");
    }
}
