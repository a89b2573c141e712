//! Stopping a reply: [`StopReply`] asked by any client, [`StopSignal`] awaited by the
//! generator.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::writer::{lease_of, settle};
use super::{ReplyEnd, ending, follow_thread, read_message};
use persist_core::Pipeline;
use persist_core::args::MAX_APPEND_JOINS;
use persist_core::args::Update;
use persist_core::feed::Removed;
use persist_core::{Context, context_setter};
use persist_core::{Message, Metadata, Timestamp};
use persist_core::{MessageId, ThreadId};
use persist_core::{PersistError, Result};

/// The message metadata key where a stop is recorded: `{"at": <microseconds since the epoch>}`,
/// written by [`PipelineExt::stop_reply`](crate::PipelineExt::stop_reply) while the reply is reserved. A reply interrupted with it
/// ended [`Stopped`](ReplyEnd::Stopped).
pub const STOP_KEY: &str = "persist.stop";

/// Asks the generation of a reply to stop ([`PipelineExt::stop_reply`](crate::PipelineExt::stop_reply)), or watches for such a
/// request ([`PipelineExt::watch_stop`](crate::PipelineExt::watch_stop)).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StopReply {
    /// The reply's thread.
    pub thread_id: ThreadId,
    /// The reply: a reserved message.
    pub message_id: MessageId,
    /// Request context: its tenant's message.
    #[serde(default)]
    pub context: Context,
}

impl StopReply {
    /// The reply `(thread_id, message_id)`.
    pub fn new(thread_id: ThreadId, message_id: MessageId) -> Self {
        Self { thread_id, message_id, context: Context::new() }
    }

    context_setter!();
}

/// Where a reply's generation stands, as a stop sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "state", content = "end", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StopState {
    /// A stop is recorded and the reply is still being generated: its generator ends it.
    Requested,
    /// The reply is no longer being generated: it ended this way (a stop for it changes
    /// nothing).
    Ended(ReplyEnd),
}

/// See [`PipelineExt::stop_reply`](crate::PipelineExt::stop_reply).
pub(crate) async fn stop_reply(pipeline: &Pipeline, request: StopReply) -> Result<StopState> {
    let StopReply { thread_id, message_id, context } = request;
    let context = context.consistent();
    for _ in 0..MAX_APPEND_JOINS {
        let message = read_message(pipeline, &thread_id, &message_id, &context).await?;
        if let Some(state) = stop_state(&message) {
            return Ok(state);
        }
        // Expecting the version read: a reply that ends meanwhile is answered as ended, not
        // marked stopped after its end. Each conflict is a token that got in first.
        let mark = Metadata::new().with(STOP_KEY, json!({ "at": Timestamp::now().as_micros() }));
        let update = Update::message(thread_id.clone(), message_id.clone())
            .with_metadata(mark)
            .with_expected_version(message.version)
            .with_context(context.clone());
        match pipeline.update(update).await {
            // A writer with a lease (any language's, which learns of the stop at its next
            // call) has its reply ended now: its followers need not wait for that call.
            Ok(persist_core::Updated::Message(marked)) if lease_of(&marked).is_some() => {
                settle(pipeline, &marked, &context).await?;
                return Ok(StopState::Requested);
            }
            Ok(_) => return Ok(StopState::Requested),
            Err(PersistError::VersionConflict { .. }) => {}
            Err(other) => return Err(other),
        }
    }
    Err(PersistError::temporary(format!(
        "the stop was tried {MAX_APPEND_JOINS} times and other writes of the reply got in each time"
    )))
}

/// See [`PipelineExt::watch_stop`](crate::PipelineExt::watch_stop).
pub(crate) async fn watch_stop(pipeline: &Pipeline, mut request: StopReply) -> Result<StopSignal> {
    // The message is read after the feed told of a change: from a copy of the store that
    // has it.
    request.context = request.context.consistent();
    let mut subscription = follow_thread(pipeline, &request.thread_id, &request.context).await?;
    let first = read_message(pipeline, &request.thread_id, &request.message_id, &request.context).await?;
    let pipeline = pipeline.clone();
    let watch = async move {
        let StopReply { thread_id, message_id, context } = request;
        let (mut version, mut status) = (first.version, first.status);
        if let Some(state) = stop_state(&first) {
            return Ok(state);
        }
        loop {
            let event = match subscription.next().await {
                Ok(event) => event,
                // Fell behind the feed's retention: follow again, and read the message
                // (a stop may be among the events missed).
                Err(PersistError::FeedGap { .. }) => {
                    subscription = follow_thread(&pipeline, &thread_id, &context).await?;
                    match read_message(&pipeline, &thread_id, &message_id, &context).await {
                        Ok(message) => match stop_state(&message) {
                            Some(state) => return Ok(state),
                            None => (version, status) = (message.version, message.status),
                        },
                        Err(PersistError::NotFound { .. } | PersistError::ThreadDeleted { .. }) => {
                            return Ok(StopState::Ended(ReplyEnd::Deleted));
                        }
                        Err(other) => return Err(other),
                    }
                    continue;
                }
                Err(other) => return Err(other),
            };
            let change = &event.change;
            if change.removed == Some(Removed::Thread) {
                return Ok(StopState::Ended(ReplyEnd::Deleted));
            }
            if change.message_id.as_ref() != Some(&message_id) {
                continue;
            }
            // A removal carries the message's last version: told before versions compare.
            if change.removed == Some(Removed::Message) {
                return Ok(StopState::Ended(ReplyEnd::Deleted));
            }
            if change.version <= version {
                continue;
            }
            // A token's event changes neither metadata nor status: nothing to read.
            let token = change.op == persist_core::PersistOp::UpdateContent
                && change.delta.is_some()
                && change.status == Some(status)
                && change.version == version + 1;
            if token {
                version = change.version;
                continue;
            }
            let message = match read_message(&pipeline, &thread_id, &message_id, &context).await {
                Ok(message) => message,
                Err(PersistError::NotFound { .. } | PersistError::ThreadDeleted { .. }) => {
                    return Ok(StopState::Ended(ReplyEnd::Deleted));
                }
                Err(other) => return Err(other),
            };
            if let Some(state) = stop_state(&message) {
                return Ok(state);
            }
            (version, status) = (message.version, message.status);
        }
    };
    Ok(StopSignal { watch: Some(Box::pin(watch)), answered: None })
}

/// What a stop finds in `message`: `None` while it is reserved with no stop recorded.
fn stop_state(message: &Message) -> Option<StopState> {
    match ending(message) {
        Some(end) => Some(StopState::Ended(end)),
        None if message.metadata.get(STOP_KEY).is_some() => Some(StopState::Requested),
        None => None,
    }
}

/// Resolves when the generation of a reply should stop; see [`PipelineExt::watch_stop`](crate::PipelineExt::watch_stop). Polled
/// again once resolved, it answers the same state at once (an error, once: watch again).
pub struct StopSignal {
    watch: Option<Pin<Box<dyn Future<Output = Result<StopState>> + Send>>>,
    answered: Option<StopState>,
}

impl fmt::Debug for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopSignal").finish_non_exhaustive()
    }
}

impl Future for StopSignal {
    type Output = Result<StopState>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        if let Some(state) = self.answered {
            return Poll::Ready(Ok(state));
        }
        let Some(watch) = self.watch.as_mut() else {
            return Poll::Ready(Err(PersistError::Backend {
                message: "this stop watch failed before: watch the reply again".into(),
                source: None,
            }));
        };
        let answer = std::task::ready!(watch.as_mut().poll(cx));
        self.watch = None;
        if let Ok(state) = &answer {
            self.answered = Some(*state);
        }
        Poll::Ready(answer)
    }
}
