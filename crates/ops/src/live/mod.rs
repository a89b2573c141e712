//! Live replies: a reply followed as it is written, from any instance, and stopped from any.
//!
//! A reply streamed into a reservation ([`Reserve`](persist_core::args::Reserve), then
//! [`UpdateContent::appending`](persist_core::args::UpdateContent::appending) per token) is already
//! durable token by token, and the change feed records each append **with what it added**
//! (its [`delta`](persist_core::feed::Change::delta)). On that:
//!
//! - [`PipelineExt::follow_reply`](crate::PipelineExt::follow_reply) reads one message as a stream
//!   of text from a character offset: the text written so far, then each delta as it commits,
//!   until the reply ends ([`ReplyEnd`]: complete, interrupted, stopped, deleted). A client that
//!   lost its connection follows again from the offset it reached, through any instance, and
//!   gets each character once. It reads through the pipeline (a decrypting layer opens what it
//!   reads), confined to the context's tenant.
//! - [`PipelineExt::stop_reply`](crate::PipelineExt::stop_reply) asks a reply's generation to stop:
//!   recorded durably in the message (its metadata key [`STOP_KEY`]), answered at once, and
//!   delivered through the feed to the instance or process generating it, which waits for it
//!   with [`PipelineExt::watch_stop`](crate::PipelineExt::watch_stop) beside its model call and ends
//!   the reply with the text it had
//!   ([`UpdateContent::interrupted`](persist_core::args::UpdateContent::interrupted)). Followers see
//!   it end as [`ReplyEnd::Stopped`].
//! - A generator shows it is alive by writing: every token renews the reservation, and
//!   [`UpdateContent::heartbeat`](persist_core::args::UpdateContent::heartbeat) does so while it
//!   waits. [`PipelineExt::cleanup_stranded`](crate::PipelineExt::cleanup_stranded) finds
//!   reservations by silence (no write since its cutoff), not by age, and marks them
//!   interrupted, which ends their followers' streams.
//!
//! - A reply's writer need not be a Rust task holding the reply: any process writes it with one
//!   call per step ([`PipelineExt::start_reply`](crate::PipelineExt::start_reply),
//!   [`append_reply`](crate::PipelineExt::append_reply) at the [`PartOffset`] each answer gives,
//!   [`renew_reply`](crate::PipelineExt::renew_reply),
//!   [`finish_reply`](crate::PipelineExt::finish_reply)): a Node or Python process over HTTP
//!   (`persist serve`) or in process. Such a reply has a writer's lease ([`LEASE_KEY`]): one
//!   generation per thread at a time, an append sent again written once, a stop ending it at
//!   once and told in the writer's next answer, and a writer silent past its lease settled
//!   interrupted by the reply's followers.
//!
//! All of it needs a backend that keeps a change feed
//! ([`Capabilities::feed`](persist_core::Capabilities::feed)): every backend of this project does,
//! across PostgreSQL instances and SQLite processes.
//!
//! # Example
//!
//! ```
//! use persist::args::{Reserve, UpdateContent};
//! use persist::live::{FollowReply, ReplyChunk, ReplyEnd, StopReply, StopState};
//! use persist::prelude::*;
//! use persist::{memory::MemoryBackend, Content, Pipeline, Role, ThreadId};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pipeline = Pipeline::new(MemoryBackend::new());
//! let thread = ThreadId::new("t1")?;
//! let reply = pipeline.reserve(Reserve::new(thread.clone(), Role::Assistant)).await?.message;
//! let token = |text| UpdateContent::appending(thread.clone(), reply.id.clone(), Content::text(text));
//! pipeline.update_content(token("Once upon")).await?;
//!
//! // A client follows the reply from its 5th character (it had "Once " before it reconnected).
//! let mut follower = pipeline.follow_reply(FollowReply::new(thread.clone(), reply.id.clone()).from(5)).await?;
//! assert_eq!(follower.next().await?, Some(ReplyChunk::text(5, "upon")));
//!
//! // The generator watches for a stop beside its model call; another client asks for one.
//! let mut stop = pipeline.watch_stop(StopReply::new(thread.clone(), reply.id.clone())).await?;
//! pipeline.update_content(token(" a time")).await?;
//! assert_eq!(pipeline.stop_reply(StopReply::new(thread.clone(), reply.id.clone())).await?, StopState::Requested);
//! assert_eq!((&mut stop).await?, StopState::Requested);
//! pipeline.update_content(UpdateContent::interrupted(thread.clone(), reply.id.clone())).await?;
//!
//! assert_eq!(follower.next().await?, Some(ReplyChunk::text(9, " a time")));
//! assert_eq!(follower.next().await?, Some(ReplyChunk::End(ReplyEnd::Stopped)));
//! assert_eq!(follower.next().await?, None);
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

pub(crate) mod follow;
mod follower;
pub(crate) mod parts;
pub(crate) mod stop;
mod ui;
pub(crate) mod writer;

pub use self::follow::{FollowReply, ReplyChunk, ReplyStream};
pub use self::parts::{FollowParts, PartChunk, PartStream};
pub use self::stop::{STOP_KEY, StopReply, StopSignal, StopState};
pub use self::ui::UiMessageStream;
pub use self::writer::{
    AppendReply, DEFAULT_LEASE, FinishReply, GENERATION_LEASE, LEASE_BOUNDS, LEASE_KEY, REASON_KEY, RenewReply,
    ReplyStarted, ReplyWritten, StartReply,
};
pub use persist_core::{PartOffset, ReplyConflict};

use serde::{Deserialize, Serialize};

use persist_core::Context;
use persist_core::Pipeline;
use persist_core::feed::{ReadFeed, Subscription};
use persist_core::read::GetMessage;
use persist_core::{Message, Status};
use persist_core::{MessageId, ThreadId};
use persist_core::{PersistError, Result};

/// How a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReplyEnd {
    /// Finished: [`Status::Complete`].
    Complete,
    /// Cut short, its text so far kept: [`Status::Interrupted`] (its generator failed, or went
    /// silent and [`cleanup_stranded`](crate::PipelineExt::cleanup_stranded) marked it).
    Interrupted,
    /// Cut short because a client asked ([`PipelineExt::stop_reply`](crate::PipelineExt::stop_reply)): interrupted, with a stop
    /// recorded.
    Stopped,
    /// The message or its thread was deleted.
    Deleted,
}

impl ReplyEnd {
    /// How `message` ended: `None` while it is [`Reserved`](Status::Reserved) (being written).
    pub fn of(message: &Message) -> Option<Self> {
        ending(message)
    }
}

/// How a message that is no longer streaming ended: `None` while it is
/// [`Reserved`](Status::Reserved).
fn ending(message: &Message) -> Option<ReplyEnd> {
    match message.status {
        Status::Reserved => None,
        Status::Complete => Some(ReplyEnd::Complete),
        Status::Interrupted if message.metadata.get(STOP_KEY).is_some() => Some(ReplyEnd::Stopped),
        Status::Interrupted => Some(ReplyEnd::Interrupted),
    }
}

/// A subscription to one thread's feed from its current head: every event committed after it
/// was made, none before.
async fn follow_thread(pipeline: &Pipeline, thread_id: &ThreadId, context: &Context) -> Result<Subscription> {
    let query = ReadFeed::thread(thread_id.clone()).with_context(context.clone());
    let head = pipeline.feed_head(query.clone()).await?;
    pipeline.subscribe(query.after(head)).await
}

/// The message, read through the pipeline: `NotFound` when it is absent.
async fn read_message(
    pipeline: &Pipeline,
    thread_id: &ThreadId,
    message_id: &MessageId,
    context: &Context,
) -> Result<Message> {
    let get = GetMessage::new(thread_id.clone(), message_id.clone()).with_context(context.clone());
    pipeline.get(get).await?.ok_or_else(|| PersistError::not_found(thread_id, Some(message_id)))
}
