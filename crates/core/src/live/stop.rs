//! Stopping a reply: [`StopReply`] asked by any client, [`StopSignal`] awaited by the
//! generator.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{ReplyEnd, ending, follow_thread, read_message};
use crate::args::Update;
use crate::context::{Context, context_setter};
use crate::feed::Removed;
use crate::model::error::{PersistError, Result};
use crate::model::id::{MessageId, ThreadId};
use crate::model::{Message, Metadata, Timestamp};
use crate::pipeline::Pipeline;
use crate::request::update_content::MAX_APPEND_JOINS;

/// The message metadata key where a stop is recorded: `{"at": <microseconds since the epoch>}`,
/// written by [`Pipeline::stop_reply`] while the reply is reserved. A reply interrupted with it
/// ended [`Stopped`](ReplyEnd::Stopped).
pub const STOP_KEY: &str = "persist.stop";

/// Asks the generation of a reply to stop ([`Pipeline::stop_reply`]), or watches for such a
/// request ([`Pipeline::watch_stop`]).
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

impl Pipeline {
    /// Asks the generation of a reply to stop: records the request in the message (metadata
    /// key [`STOP_KEY`], an `update` through the pipeline, so every layer and the feed see
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
    pub async fn stop_reply(&self, request: StopReply) -> Result<StopState> {
        let StopReply { thread_id, message_id, context } = request;
        let context = context.consistent();
        for _ in 0..MAX_APPEND_JOINS {
            let message = read_message(self, &thread_id, &message_id, &context).await?;
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
            match self.update(update).await {
                Ok(_) => return Ok(StopState::Requested),
                Err(PersistError::VersionConflict { .. }) => {}
                Err(other) => return Err(other),
            }
        }
        Err(PersistError::temporary(format!(
            "the stop was tried {MAX_APPEND_JOINS} times and other writes of the reply got in each time"
        )))
    }

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
    pub async fn watch_stop(&self, mut request: StopReply) -> Result<StopSignal> {
        // The message is read after the feed told of a change: from a copy of the store that
        // has it.
        request.context = request.context.consistent();
        let mut subscription = follow_thread(self, &request.thread_id, &request.context).await?;
        let first = read_message(self, &request.thread_id, &request.message_id, &request.context).await?;
        let pipeline = self.clone();
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
                let token = change.op == crate::PersistOp::UpdateContent
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
}

/// What a stop finds in `message`: `None` while it is reserved with no stop recorded.
fn stop_state(message: &Message) -> Option<StopState> {
    match ending(message) {
        Some(end) => Some(StopState::Ended(end)),
        None if message.metadata.get(STOP_KEY).is_some() => Some(StopState::Requested),
        None => None,
    }
}

/// Resolves when the generation of a reply should stop; see [`Pipeline::watch_stop`]. Polled
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
