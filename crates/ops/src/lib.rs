//! Operations composed of ordinary persist requests, and the requests and reports they take:
//!
//! - [`lifecycle`]: fork a thread, retention (prune idle threads, keep the latest messages),
//!   pop the latest messages, branch before a user turn, and the reader of a thread's vectors;
//! - [`maintenance`]: clean up stranded reservations;
//! - [`compaction`]: summaries written when a thread's tail outgrows a budget;
//! - [`live`]: a reply followed as a stream of text from any instance, and stopped from any.
//!
//! Each is built only on the contract (`persist-core`): it sends requests through a
//! [`Pipeline`], so every layer of the stack sees every step, and any backend runs it. The calls
//! are methods of [`PipelineExt`], implemented for [`Pipeline`] and for the tenant-bound
//! [`Scoped`](persist_core::Scoped) handle; `use persist::prelude::*` (or `persist::PipelineExt`) brings them in.
//!
//! # Example
//!
//! ```
//! use persist::prelude::*;
//! use persist::{args::Add, lifecycle::Pop, Content, Pipeline, Role, ThreadId};
//! use persist::memory::MemoryBackend;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pipeline = Pipeline::new(MemoryBackend::new());
//! let thread = ThreadId::new("chat")?;
//! for text in ["hi", "hello!", "oops"] {
//!     pipeline.add(Add::new(thread.clone(), Role::User, Content::text(text))).await?;
//! }
//! assert_eq!(pipeline.pop(Pop::new(thread)).await?.messages.len(), 1);
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

use std::future::Future;

use persist_core::{Context, MessageId, Pipeline, Result, ThreadId};

pub mod compaction;
pub mod lifecycle;
pub mod live;
pub mod maintenance;
mod scoped;

use self::compaction::{Compaction, Compactor, Outcome};
use self::lifecycle::{BranchFromTurn, Fork, ForkReport, Pop, Popped, Prune, PruneReport};
use self::live::{
    AppendReply, FinishReply, FollowParts, FollowReply, PartStream, RenewReply, ReplyStarted, ReplyStream,
    ReplyWritten, StartReply, StopReply, StopSignal, StopState,
};
use self::maintenance::{CleanupReport, CleanupStranded};

mod sealed {
    pub trait Sealed {}
    impl Sealed for persist_core::Pipeline {}
    impl Sealed for persist_core::Scoped {}
}

/// The composed operations, as methods of a [`Pipeline`] and of a [`Scoped`](persist_core::Scoped) handle: each is
/// made of ordinary requests sent through the whole stack. Sealed: implemented for those two
/// only, so methods can be added.
///
/// On a [`Scoped`](persist_core::Scoped) handle every request of an operation carries the handle's context, and an
/// operation across tenants (a prune or a cleanup of another tenant, or of every tenant on
/// purpose) is refused (`Rejected`); one made for every tenant by default
/// ([`Prune::new`], [`CleanupStranded::new`]) is confined to the handle's tenant.
pub trait PipelineExt: sealed::Sealed {
    /// Copies the thread `fork.source` up to a seq into the new thread `fork.target` (same
    /// tenant), **through the pipeline**: each complete message is added with its id, role,
    /// content, metadata and idempotency key, in seq order (the new thread numbers them
    /// `1, 2, …`), an [interrupted](persist_core::Status::Interrupted) one reserved then marked
    /// interrupted with its content; reservations still streaming are not copied. Each message's
    /// [vectors](persist_core::vector) are written to its copy (`Embed`, the numbers the source
    /// stores), unless the stack keeps none or refuses them (an encryption layer without clear
    /// vectors); a copy an earlier run made and the fork changed since gets none. The new thread records where it
    /// came from in its metadata, under [`FORKED_FROM`](lifecycle::FORKED_FROM); the source's [summaries](persist_core::summary)
    /// of what was copied are written to it too (their ranges in its seqs), so its compacted read
    /// holds what they held (one ending before the first message copied, where retention removed
    /// what it covers, has no place in the new thread: counted in
    /// [`ForkReport::summaries_behind`]). A thread with [branches](persist_core::branch)
    /// is copied as the tree it is: each copy follows the copy of its parent (of its nearest
    /// ancestor copied), and the fork's active branch ends where the source's does;
    /// [`Fork::on_branch`] copies one branch, as a line.
    ///
    /// Resumable: a fork run again (after a crash, a time-out) finds what it copied (each add
    /// repeats an identical message, answered `deduplicated`) and completes it without
    /// duplicates. Messages written to the source after the fork started are not copied: the
    /// last seq is fixed when it starts.
    ///
    /// A fork keeps the source's order. A reservation still streaming when a fork ran is not
    /// copied; once it completes, a fork run again would copy it after the later messages
    /// already copied, so it is refused (`InvalidInput` naming `target` and the message). To
    /// bring the late message in its place, truncate the fork before the first later message
    /// ([`Delete::after`](persist_core::args::Delete::after) the seq of the fork's message that
    /// precedes it) and fork again: the truncated messages are copied again, in order.
    ///
    /// # Example
    ///
    /// ```
    /// use persist::PipelineExt;
    /// use persist::{args::Add, lifecycle::Fork, read::ListMessages, Content, Pipeline, Role, ThreadId};
    /// use persist::memory::MemoryBackend;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pipeline = Pipeline::new(MemoryBackend::new());
    /// let (main, branch) = (ThreadId::new("main")?, ThreadId::new("branch")?);
    /// for text in ["hello", "hi!", "tell me a joke"] {
    ///     pipeline.add(Add::new(main.clone(), Role::User, Content::text(text))).await?;
    /// }
    /// let report = pipeline.fork(Fork::new(main, branch.clone()).up_to(2)).await?;
    /// assert_eq!(report.copied, 2);
    /// assert_eq!(pipeline.list(ListMessages::new(branch)).await?.items.len(), 2);
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// `NotFound` when the source does not exist (`ThreadDeleted` when it was deleted);
    /// `InvalidInput` naming `target` when the target is the source, or exists and is not a
    /// fork of the source in progress; `ThreadDeleted` for a deleted target; otherwise the
    /// first error of a read or a write.
    fn fork(&self, fork: Fork) -> impl Future<Output = Result<ForkReport>> + Send;

    /// One batch of retention, **through the pipeline**: of up to `prune.threads` threads
    /// (every tenant's, most recently active first, after `prune.cursor`), deletes those idle
    /// longer than `idle_for` (a `delete` of the thread expecting the version and `updated_at`
    /// read: a thread written meanwhile, even one message added, is kept), and in the others
    /// deletes what the latest summary covers, with [`covered`](Prune::covered) (a
    /// `Delete::covered` expecting the thread's version read), then every message older than the
    /// latest `keep_latest` (each a `delete` expecting the version read). In a thread with
    /// [branches](persist_core::branch), the latest `keep_latest` are counted along the active branch,
    /// and a message of another branch goes when it is older than the oldest of them. Every delete carries
    /// the [`Maintenance`](persist_core::Maintenance) extension and the thread's tenant. With `dry_run`, counts what it
    /// would delete and deletes nothing.
    ///
    /// Run batches from each report's `next_cursor` until one is `done`; a batch run again
    /// finds only what is still to prune.
    ///
    /// # Example
    ///
    /// ```
    /// use persist::PipelineExt;
    /// use std::time::Duration;
    /// use persist::{args::Add, lifecycle::Prune, Content, Pipeline, Role, ThreadId};
    /// use persist::memory::MemoryBackend;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pipeline = Pipeline::new(MemoryBackend::new());
    /// for i in 0..5 {
    ///     pipeline.add(Add::new(ThreadId::new("chat")?, Role::User, Content::text(format!("{i}")))).await?;
    /// }
    /// let report = pipeline.prune(Prune::new().with_keep_latest(2)).await?;
    /// assert_eq!((report.deleted_messages, report.done), (3, true));
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a batch of 0 or over 1000 threads, or a prune that names neither an
    /// idle cutoff (`idle_for`, `idle_before`), `keep_latest` nor `covered`; the first error of a read or a write other than a target
    /// changed or gone meanwhile.
    fn prune(&self, prune: Prune) -> impl Future<Output = Result<PruneReport>> + Send;

    /// Removes the latest [`count`](Pop::count) messages of a thread, reservations included,
    /// **through the pipeline**, and answers them (OpenAI's `pop_item`): a `list` of the newest
    /// messages, then a `delete` of each, newest first, expecting the version read. On a store
    /// with [branches](persist_core::branch), the latest of the active branch (the conversation as it
    /// is shown), which then ends at the message before them; other branches are left as they
    /// are. The one pop of persist: the server's `items/pop` and Python's `pop_item` are this.
    ///
    /// Atomic across callers, processes and instances: each delete is a claim, and a message is
    /// answered only by the pop whose delete removed it, so two pops never answer the same
    /// message. A pop whose message another took meanwhile (its delete found it gone) reads
    /// again and takes the next one; after many such losses it gives up (`Temporary`).
    ///
    /// A message written after it was read (a stream's token, a patch) is kept: its delete is
    /// refused with `VersionConflict`, which the pop answers, so what a pop answers is what it
    /// removed, never a copy older than the store's. A reply still being written counts as a
    /// message: popped, its writer's next write finds it gone. The newer messages a pop removed
    /// before a refusal stay removed, so what is left is always a prefix of the thread. A
    /// message added meanwhile is never removed (only the messages read are). To remove
    /// everything, see [`Delete::clear`](persist_core::args::Delete::clear).
    ///
    /// # Example
    ///
    /// ```
    /// use persist::PipelineExt;
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
    /// `InvalidInput` (`count`) for a count of 0 or above [`MAX_PAGE_LIMIT`](persist_core::read::MAX_PAGE_LIMIT); `NotFound` for a
    /// thread that does not exist, `ThreadDeleted` for a deleted one; `Unreadable` when one of
    /// the latest messages does not open; `Temporary` when other removers took every message it
    /// tried; the first refused delete.
    fn pop(&self, pop: Pop) -> impl Future<Output = Result<Popped>> + Send;

    /// Ends a thread's active branch before its user turn [`turn`](BranchFromTurn::turn) (the
    /// `turn`-th user message of the branch, from 1), **through the pipeline**: a `list` of
    /// the branch, then a thread `update` with a [switch](persist_core::branch::Switch) to the
    /// message before that turn, or, for the branch's first message, to none (the next message
    /// starts a root). The next turn, written by any process, follows it on a branch of its
    /// own (the Agents SDK's `create_branch_from_turn`); the branch left stays, to be switched
    /// back to. Answers the message the active branch now ends at (`None`: it is empty).
    ///
    /// # Example
    ///
    /// ```
    /// use persist::PipelineExt;
    /// use persist::{args::Add, lifecycle::BranchFromTurn, memory::MemoryBackend, Content, Pipeline, Role, ThreadId};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pipeline = Pipeline::new(MemoryBackend::new());
    /// let thread = ThreadId::new("t1")?;
    /// let mut added = Vec::new();
    /// for (role, text) in [(Role::User, "hi"), (Role::Assistant, "hello"), (Role::User, "weather?")] {
    ///     added.push(pipeline.add(Add::new(thread.clone(), role, Content::text(text))).await?.message);
    /// }
    /// let end = pipeline.branch_from_turn(BranchFromTurn::new(thread.clone(), 2)).await?;
    /// assert_eq!(end, Some(added[1].id.clone()), "the branch ends before the second user turn");
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` (`turn`) for a turn the active branch does not have (0 among them);
    /// `Unsupported` on a store without [branches](persist_core::branch); the store's errors.
    fn branch_from_turn(&self, request: BranchFromTurn) -> impl Future<Output = Result<Option<MessageId>>> + Send;

    /// Marks interrupted (or deletes) reservations stranded by streams that never finished,
    /// **through the pipeline**.
    ///
    /// Finds `Reserved` messages nobody wrote to for the given age (a stream still sending
    /// content updates is active) with a `find_stranded` sent through the whole stack (a route
    /// asks every store it reaches), then cleans each with a write sent through the whole stack
    /// too, so the layer that redirected the `reserve` redirects the cleanup to the same store,
    /// and observers see it:
    ///
    /// - by default ([`Stranding::Interrupt`](maintenance::Stranding::Interrupt)) an [`UpdateContent::interrupted`](persist_core::args::UpdateContent::interrupted): the reply
    ///   becomes [`Interrupted`](persist_core::Status::Interrupted) with the text its stream wrote,
    ///   and reads list it; a reservation its stream wrote nothing to
    ///   ([`Content::is_blank`](persist_core::Content::is_blank): its generator died before the first
    ///   token) is deleted instead, as nothing the user saw is lost and a model provider would
    ///   refuse an empty reply (reported in [`CleanupReport::deleted`]);
    /// - with [`CleanupStranded::deleting`], a `delete`, its text lost.
    ///
    /// Each write expects the version found, so a reservation written to in the meantime is
    /// kept as it is (counted as skipped). Each names the tenant of the reservation's thread.
    /// The find and the writes carry a [`Maintenance`](persist_core::Maintenance) extension in their context.
    ///
    /// A cleanup reaches every tenant's threads unless it is confined to one with
    /// [`CleanupStranded::only_tenant`].
    ///
    /// # Example
    ///
    /// ```
    /// use persist::PipelineExt;
    /// use std::time::Duration;
    /// use persist::args::{Reserve, UpdateContent};
    /// use persist::{maintenance::CleanupStranded, Content, Pipeline, Role, Status, ThreadId};
    /// use persist::memory::MemoryBackend;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pipeline = Pipeline::new(MemoryBackend::new());
    /// let thread = ThreadId::new("t1")?;
    /// let reply = pipeline.reserve(Reserve::new(thread.clone(), Role::Assistant)).await?.message;
    /// let token = UpdateContent::appending(thread, reply.id, Content::text("Half an ans"));
    /// pipeline.update_content(token).await?;
    /// // The generator dies here; nothing writes to the reply again.
    /// tokio::time::sleep(Duration::from_millis(5)).await;
    /// let report = pipeline.cleanup_stranded(CleanupStranded::new(Duration::from_millis(1))).await?;
    /// let kept = &report.interrupted[0].message;
    /// assert_eq!((kept.status, &kept.content), (Status::Interrupted, &Content::text("Half an ans")));
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// A reservation a layer refuses to clean (`Rejected`, `Unreadable`) is kept and reported in
    /// [`CleanupReport::refused`]; the cleanup goes on with the others.
    ///
    /// # Errors
    ///
    /// The first error of a find, or of a write other than a version conflict, a reservation
    /// gone or finished meanwhile, or a layer's refusal of one reservation.
    fn cleanup_stranded(&self, cleanup: CleanupStranded) -> impl Future<Output = Result<CleanupReport>> + Send;

    /// Follows one message as a stream of text: its text from [`from`](FollowReply::from)
    /// characters on, then what each write adds as it commits, then how it ended; see
    /// [`live`]. Works from any instance or process sharing the store: the writes
    /// of all of them are followed.
    ///
    /// Each addition is taken from the feed event's [`delta`](persist_core::feed::Change::delta),
    /// so following a reply costs one read of the message, then none per token: the message
    /// is read again only when an event has no delta (a replacement, a delta past its
    /// retention or one a decrypting layer could not open), when the reply is interrupted (to
    /// tell a stop), or after the subscriber fell behind the feed's retention. Reads go through the
    /// pipeline with the request's context.
    ///
    /// # Errors
    ///
    /// `NotFound` for a message that does not exist (or not in the context's tenant);
    /// `InvalidInput` (`from`) for an offset beyond the message's text; `Unsupported` on a
    /// backend without a feed; the store's errors. [`ReplyStream::next`] may fail too, and be
    /// asked again.
    fn follow_reply(&self, request: FollowReply) -> impl Future<Output = Result<ReplyStream>> + Send;

    /// Follows one message as a stream of its [parts](persist_core::Part): from
    /// [`from`](FollowParts::from) on, then what each write adds as it commits (a token as a
    /// [`Delta`](live::PartChunk::Delta) of the text or reasoning part it joins, a tool call,
    /// its result or a file as a [`Part`](live::PartChunk::Part)), then how it ended. What a
    /// UI that shows reasoning and tool calls as they happen follows (the AI SDK's UI message
    /// stream in `persist-serve`); reads and costs as [`follow_reply`](Self::follow_reply).
    ///
    /// # Example
    ///
    /// ```
    /// use persist::args::{Reserve, UpdateContent};
    /// use persist::live::{FollowParts, PartChunk, PartOffset, ReplyEnd};
    /// use persist::prelude::*;
    /// use persist::{memory::MemoryBackend, Content, Part, Pipeline, Role, ThreadId};
    /// use serde_json::json;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pipeline = Pipeline::new(MemoryBackend::new());
    /// let thread = ThreadId::new("t1")?;
    /// let reply = pipeline.reserve(Reserve::new(thread.clone(), Role::Assistant)).await?.message;
    /// let append = |part| UpdateContent::appending(thread.clone(), reply.id.clone(), Content::from_parts([part]));
    /// pipeline.update_content(append(Part::reasoning("Weather: "))).await?;
    ///
    /// let mut parts = pipeline.follow_parts(FollowParts::new(thread.clone(), reply.id.clone())).await?;
    /// assert_eq!(parts.next().await?, Some(PartChunk::Part { index: 0, part: Part::reasoning("Weather: ") }));
    /// pipeline.update_content(append(Part::reasoning("ask the tool."))).await?;
    /// let call = Part::tool_call("c1", "weather", json!({"city": "Oslo"}));
    /// pipeline.update_content(append(call.clone()).with_finalize(true)).await?;
    ///
    /// let added = Part::reasoning("ask the tool.");
    /// assert_eq!(parts.next().await?, Some(PartChunk::Delta { index: 0, offset: 9, added }));
    /// assert_eq!(parts.next().await?, Some(PartChunk::Part { index: 1, part: call }));
    /// assert_eq!(parts.offset(), PartOffset::before(2));
    /// assert_eq!(parts.next().await?, Some(PartChunk::End(ReplyEnd::Complete)));
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`follow_reply`](Self::follow_reply); `InvalidInput` (`from`) for a place that is not
    /// in the message's parts (beyond them, or characters into a part that is not text or
    /// reasoning).
    fn follow_parts(&self, request: FollowParts) -> impl Future<Output = Result<PartStream>> + Send;

    /// Asks the generation of a reply to stop: records the request in the message (metadata
    /// key [`STOP_KEY`](live::STOP_KEY), an `update` through the pipeline, so every layer and the feed see
    /// it), where the generator's [`watch_stop`](Self::watch_stop) finds it, on whichever
    /// instance or process it runs. Answers at once, without waiting for the generator.
    ///
    /// Asking again, or asking for a reply that already ended, is answered, not refused:
    /// [`StopState::Requested`] while the reply is reserved (recorded once), else
    /// [`StopState::Ended`] with how it ended, and nothing written.
    ///
    /// # Errors
    ///
    /// `NotFound` for a message that does not exist (or not in the context's tenant),
    /// `ThreadDeleted`; the store's errors.
    fn stop_reply(&self, request: StopReply) -> impl Future<Output = Result<StopState>> + Send;

    /// A future the generator of a reply awaits beside its model call: it resolves when a stop
    /// is requested ([`stop_reply`](Self::stop_reply), from any instance or process), or when
    /// the reply ends otherwise ([`StopState::Ended`]: another writer finalized, interrupted
    /// or deleted it). Poll it by `&mut` in a `select!` loop: it keeps its place between polls.
    ///
    /// It follows the thread's feed and reads the message only when an event changes its
    /// metadata or status (a token's event does not), through the pipeline with the request's
    /// context.
    ///
    /// # Example
    ///
    /// ```
    /// use persist::PipelineExt;
    /// use persist::args::{Reserve, UpdateContent};
    /// use persist::live::{StopReply, StopState};
    /// use persist::{memory::MemoryBackend, Content, Pipeline, Role, ThreadId};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pipeline = Pipeline::new(MemoryBackend::new());
    /// let thread = ThreadId::new("t1")?;
    /// let reply = pipeline.reserve(Reserve::new(thread.clone(), Role::Assistant)).await?.message;
    /// let mut stop = pipeline.watch_stop(StopReply::new(thread.clone(), reply.id.clone())).await?;
    ///
    /// // Another client, on any instance, asks for a stop.
    /// pipeline.stop_reply(StopReply::new(thread.clone(), reply.id.clone())).await?;
    ///
    /// let mut model = ["Hel", "lo", " there"].into_iter(); // the model's tokens
    /// let append = |token| UpdateContent::appending(thread.clone(), reply.id.clone(), Content::text(token));
    /// let ended = loop {
    ///     tokio::select! {
    ///         biased;
    ///         state = &mut stop => break state?,
    ///         token = async { model.next() } => match token {
    ///             Some(token) => { pipeline.update_content(append(token)).await?; }
    ///             None => break StopState::Ended(persist::live::ReplyEnd::Complete),
    ///         },
    ///     }
    /// };
    /// assert_eq!(ended, StopState::Requested);
    /// // Keep what was said, marked as cut short: followers see the reply end `Stopped`.
    /// pipeline.update_content(UpdateContent::interrupted(thread, reply.id)).await?;
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`follow_reply`](Self::follow_reply); the future answers the store's errors too.
    fn watch_stop(&self, request: StopReply) -> impl Future<Output = Result<StopSignal>> + Send;

    /// Starts a live reply that any process writes with the calls below (a Node or Python
    /// process in process, or over HTTP through `persist serve`): the messages before it (the
    /// user's turn) and its reservation in one write, with a writer's
    /// [lease](live::StartReply::lease). One reply is generated per thread at a time, across
    /// instances: while another's writer is alive the start is refused
    /// [`ReplyConflict::Running`](live::ReplyConflict::Running) (naming it); a dead writer's
    /// reply is settled interrupted first. Keyed, a start sent again answers the reply the
    /// first one started (`deduplicated`).
    ///
    /// # Errors
    ///
    /// `ReplyConflict` (`Running`); `InvalidInput` for a lease out of
    /// [`LEASE_BOUNDS`](live::LEASE_BOUNDS) or a message of the turn; as `append_turn`.
    fn start_reply(&self, request: StartReply) -> impl Future<Output = Result<ReplyStarted>> + Send;

    /// Appends parts to a live reply at the writer's offset ([`AppendReply::at`]: what its
    /// previous call answered): written once however often it is sent (a repeat answers
    /// `written: false`), a gap refused. Each append renews the writer's lease, reaches every
    /// follower, and tells the writer of a stop: the reply then ends stopped and the append is
    /// refused [`ReplyConflict::Stopped`](live::ReplyConflict::Stopped), nothing written.
    ///
    /// # Errors
    ///
    /// `ReplyConflict` (`Gap`, `Diverged`, `Stopped`); `MessageComplete` once the reply ended
    /// (finished, or settled after its lease ran out); `InvalidInput` for content that is not
    /// an array of blocks; `NotFound`.
    fn append_reply(&self, request: AppendReply) -> impl Future<Output = Result<ReplyWritten>> + Send;

    /// Renews a live reply's writer's lease without writing parts (while a tool or a model's
    /// first token is awaited); tells of a stop as [`append_reply`](Self::append_reply) does.
    ///
    /// # Errors
    ///
    /// As [`append_reply`](Self::append_reply).
    fn renew_reply(&self, request: RenewReply) -> impl Future<Output = Result<ReplyWritten>> + Send;

    /// Ends a live reply complete, or interrupted with a reason, after its last parts if any,
    /// and gives the thread's generation up. Sent again, it answers `written: false`.
    ///
    /// # Errors
    ///
    /// As [`append_reply`](Self::append_reply); `MessageComplete` when it ended otherwise.
    fn finish_reply(&self, request: FinishReply) -> impl Future<Output = Result<ReplyWritten>> + Send;

    /// Compacts a thread once, if its tail is over the budget; see
    /// [`Compaction::compact`](compaction::Compaction::compact). On a [`Pipeline`], the run's
    /// requests carry a new [`Context`] (no tenant: call `Compaction::compact` for another); on
    /// a [`Scoped`](persist_core::Scoped) handle, the handle's context, so it reads, leases and summarizes the scope's
    /// thread and no other tenant's.
    ///
    /// # Example
    ///
    /// ```
    /// use persist::PipelineExt;
    /// use persist::compaction::{Budget, Outcome, Compaction, KeepLastText};
    /// use persist::{args::Add, summary::ReadCompacted, Content, Context, Pipeline, Role, TenantId, ThreadId};
    /// use persist::memory::MemoryBackend;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pipeline = Pipeline::new(MemoryBackend::new());
    /// let acme = pipeline.scoped(Context::new().with_tenant(TenantId::new("acme")?));
    /// let thread = ThreadId::new("general")?;
    /// for i in 1..=6 {
    ///     acme.add(Add::new(thread.clone(), Role::User, Content::text(format!("m{i}")))).await?;
    /// }
    /// let compaction = Compaction::new(KeepLastText::new(2), Budget::messages(4)).keep_recent(1);
    /// assert!(matches!(acme.compact(&compaction, thread.clone()).await?, Outcome::Summarized(_)));
    /// assert_eq!(acme.compacted(ReadCompacted::new(thread)).await?.messages.len(), 1);
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Compaction::compact`](compaction::Compaction::compact).
    fn compact<C: Compactor>(
        &self,
        compaction: &Compaction<C>,
        thread: ThreadId,
    ) -> impl Future<Output = Result<Outcome>> + Send;
}

impl PipelineExt for Pipeline {
    fn fork(&self, fork: Fork) -> impl Future<Output = Result<ForkReport>> + Send {
        lifecycle::fork::fork(self, fork)
    }

    fn prune(&self, prune: Prune) -> impl Future<Output = Result<PruneReport>> + Send {
        lifecycle::prune::prune(self, prune)
    }

    fn pop(&self, pop: Pop) -> impl Future<Output = Result<Popped>> + Send {
        lifecycle::pop::pop(self, pop)
    }

    fn branch_from_turn(&self, request: BranchFromTurn) -> impl Future<Output = Result<Option<MessageId>>> + Send {
        lifecycle::turns::branch_from_turn(self, request)
    }

    fn cleanup_stranded(&self, cleanup: CleanupStranded) -> impl Future<Output = Result<CleanupReport>> + Send {
        maintenance::cleanup::cleanup_stranded(self, cleanup)
    }

    fn follow_reply(&self, request: FollowReply) -> impl Future<Output = Result<ReplyStream>> + Send {
        live::follow::follow_reply(self, request)
    }

    fn follow_parts(&self, request: FollowParts) -> impl Future<Output = Result<PartStream>> + Send {
        live::parts::follow_parts(self, request)
    }

    fn stop_reply(&self, request: StopReply) -> impl Future<Output = Result<StopState>> + Send {
        live::stop::stop_reply(self, request)
    }

    fn watch_stop(&self, request: StopReply) -> impl Future<Output = Result<StopSignal>> + Send {
        live::stop::watch_stop(self, request)
    }

    fn start_reply(&self, request: StartReply) -> impl Future<Output = Result<ReplyStarted>> + Send {
        live::writer::start_reply(self, request)
    }

    fn append_reply(&self, request: AppendReply) -> impl Future<Output = Result<ReplyWritten>> + Send {
        live::writer::append_reply(self, request)
    }

    fn renew_reply(&self, request: RenewReply) -> impl Future<Output = Result<ReplyWritten>> + Send {
        live::writer::renew_reply(self, request)
    }

    fn finish_reply(&self, request: FinishReply) -> impl Future<Output = Result<ReplyWritten>> + Send {
        live::writer::finish_reply(self, request)
    }

    fn compact<C: Compactor>(
        &self,
        compaction: &Compaction<C>,
        thread: ThreadId,
    ) -> impl Future<Output = Result<Outcome>> + Send {
        compaction.compact(self, thread, Context::new())
    }
}
