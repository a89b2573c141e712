//! Streamed replies at the cost of a final-only write: partial content updates of a message
//! coalesced, at most one write per message per interval.
//!
//! A model streams a reply as tokens; a host that writes each partial `update_content` keeps
//! the reply durable as it grows, and pays a write per token. [`CoalesceLayer`] keeps the
//! durability and drops most of the writes:
//!
//! - A **partial** update (neither finalizing nor interrupting, no expected version) of a
//!   message written less than an interval ago is held back, replacing any update held back
//!   before it (the latest content wins), and answered at once with [`ContentUpdated::coalesced`] set: the message as
//!   last written, with this update's content. The held-back update is written when the
//!   interval since the message's last write is over, so a crash loses at most one interval of
//!   partial text. A partial update of a message not written for an interval goes down at
//!   once.
//! - **Appends** ([`UpdateContent::appending`], a stream sending each token alone) are held
//!   back together and written as one append of their parts joined; each is answered at once
//!   with the message as last written (its content not joined yet: that would cost the whole
//!   text each token). An append written now carries what was held back before it.
//! - A **final** update (finalizing or [interrupting](UpdateContent::interrupted), or one with
//!   an expected version) goes down at once, after any write of
//!   the same message already under way and instead of any replacement held back (an append
//!   carries the appends held back): the final content is never overwritten by a partial one,
//!   and it is answered as the backend answers it.
//! - A `reserve` goes down at once; its answer starts the message's interval, so the first
//!   tokens after it are held back too. Everything else passes through.
//!
//! A held-back update written later has no caller: a temporary failure keeps it held back for
//! another try an interval later (appends held back are never dropped for a failed write:
//! their callers were answered); a refusal (the message was deleted meanwhile, …) is logged
//! (`tracing`, `WARN`) and the next update, or the final one, meets it too. A held-back answer's
//! version is the one last written, which the layer's own later write moves: an update that
//! expects a version should expect one from an answer that was written, or from a read. Needs
//! a Tokio runtime (a held-back update is written by a spawned task).
//!
//! # Where it goes
//!
//! Outside (added before) [`EventsLayer`](crate::EventsLayer) and any layer that records
//! writes as committed, so that they see the writes that reach the store, not the held-back
//! answers; inside (added after) any layer that sets the request's tenant, which is part of
//! the message's key here. Each stack built from the layer holds back its own updates.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use persist::{args::{Reserve, UpdateContent}, layer::CoalesceLayer, memory::MemoryBackend};
//! use persist::{read::GetMessage, Content, Pipeline, Role, ThreadId};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pipeline = Pipeline::builder()
//!     .layer(CoalesceLayer::new(Duration::from_millis(200)))
//!     .build(MemoryBackend::new());
//! let thread = ThreadId::new("t1")?;
//! let reply = pipeline.reserve(Reserve::new(thread.clone(), Role::Assistant)).await?.message;
//! let mut text = String::new();
//! for token in ["Hel", "lo", " there"] {
//!     text.push_str(token);
//!     let partial = UpdateContent::partial(thread.clone(), reply.id.clone(), Content::text(&text));
//!     pipeline.update_content(partial).await?; // held back: one write per 200 ms at most
//! }
//! let done = UpdateContent::new(thread.clone(), reply.id.clone(), Content::text("Hello there!"));
//! let stored = pipeline.update_content(done).await?; // written at once, in order
//! assert_eq!(stored.message.content.to_text(), "Hello there!");
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

mod future;
mod layer;
mod slots;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Service, ServiceExt};

pub use self::future::ResponseFuture;
pub use self::layer::CoalesceLayer;
use self::slots::{Key, Slot, Slots, Turn};
use persist_core::args::UpdateContent;
use persist_core::raw::take_ready;
use persist_core::{ContentUpdated, PersistArgs, PersistError, PersistResult};

/// The service of a [`CoalesceLayer`].
#[derive(Clone)]
pub struct Coalesce<S> {
    inner: S,
    interval: Duration,
    slots: Arc<Slots>,
}

impl<S: fmt::Debug> fmt::Debug for Coalesce<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coalesce").field("inner", &self.inner).field("interval", &self.interval).finish_non_exhaustive()
    }
}

impl<S> Service<PersistArgs> for Coalesce<S>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = PersistResult;
    type Error = PersistError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<persist_core::Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, args: PersistArgs) -> Self::Future {
        let (slots, interval) = (Arc::clone(&self.slots), self.interval);
        if let PersistArgs::UpdateContent(update) = args {
            let key = Key::new(update.context.tenant(), &update.thread_id, &update.message_id);
            let slot = slots.slot(&key);
            // A partial update whose message is free (no write under way, no earlier call on
            // its way) is held back here and now, without a task or a clone of the stack: a
            // stream's many tokens cost the least.
            let update = match self.hold_now(&slot, update) {
                Ok(answer) => return ResponseFuture::ready(answer),
                Err(update) => update,
            };
            // Its turn is taken as it is called: a later call of the message waits behind it.
            let turn = Turn::take(&slot);
            let inner = take_ready(&mut self.inner);
            return ResponseFuture::writing(Box::pin(update_content(slots, interval, inner, update, key, slot, turn)));
        }
        let inner = take_ready(&mut self.inner);
        ResponseFuture::writing(match args {
            PersistArgs::Reserve(reserve) => Box::pin(async move {
                let tenant = reserve.context.tenant().cloned();
                let result = inner.oneshot(reserve.into()).await?;
                if let PersistResult::Reserved(reserved) = &result {
                    slots.written(Key::of(tenant.as_ref(), &reserved.message), &reserved.message).await;
                }
                Ok(result)
            }),
            PersistArgs::AppendTurn(turn) => Box::pin(async move {
                let tenant = turn.context.tenant().cloned();
                let result = inner.oneshot(turn.into()).await?;
                // A turn's reply is a reservation like any other: its interval starts now.
                if let PersistResult::TurnAppended(appended) = &result {
                    for reply in appended.messages.iter().filter(|m| m.status == persist_core::Status::Reserved) {
                        slots.written(Key::of(tenant.as_ref(), reply), reply).await;
                    }
                }
                Ok(result)
            }),
            args => Box::pin(inner.oneshot(args)),
        })
    }
}

impl<S> Coalesce<S>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    /// Holds `update` back at once when it is partial, no earlier call of its message is on
    /// its way and the message's lock is free; gives it back otherwise (to wait its turn, or
    /// to be written).
    fn hold_now(&self, slot: &Arc<Slot>, update: UpdateContent) -> Result<PersistResult, UpdateContent> {
        // Holding back may spawn the later write: only where a runtime is (a call made
        // elsewhere and awaited in one takes the other way).
        if update.is_final()
            || update.expected_version.is_some()
            || slot.has_turns()
            || tokio::runtime::Handle::try_current().is_err()
        {
            return Err(update);
        }
        let Ok(mut gate) = slot.gate.try_lock() else { return Err(update) };
        let answer = gate.hold(update, self.interval)?;
        slots::schedule(&mut gate, slot, &self.inner, self.interval);
        Ok(ContentUpdated::held_back(answer).into())
    }
}

/// A content update: held back, or written once the writes of its message before it are done
/// (the calls of one message take its lock in the order their turns were taken, as long as
/// each is polled: a caller that awaits each call in turn).
async fn update_content<S>(
    slots: Arc<Slots>,
    interval: Duration,
    inner: S,
    update: UpdateContent,
    key: Key,
    slot: Arc<Slot>,
    turn: Turn,
) -> persist_core::Result<PersistResult>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let partial = !update.is_final() && update.expected_version.is_none();
    let mut gate = slot.gate.lock().await;
    drop(turn);
    let update = if partial {
        match gate.hold(update, interval) {
            Ok(answer) => {
                // A fresh clone for the later write: the ready service is not held meanwhile.
                slots::schedule(&mut gate, &slot, &inner, interval);
                return Ok(ContentUpdated::held_back(answer).into());
            }
            Err(update) => update,
        }
    } else {
        update
    };
    // Written now, with what was held back before it (an append carries it; a replacement
    // supersedes it).
    let (update, carried) = gate.merged(update);
    let finalizing = update.is_final();
    let spare = inner.clone();
    let result = inner.oneshot(update.into()).await;
    match &result {
        Ok(PersistResult::ContentUpdated(done)) => {
            gate.written(&done.message);
            gate.finalized |= finalizing;
        }
        Ok(_) => {}
        // Other callers' appends it carried were answered already: kept for a later write.
        Err(_) => {
            if let Some(carried) = carried {
                gate.pending = Some(carried);
                slots::schedule(&mut gate, &slot, &spare, interval);
            }
        }
    }
    let finalized = gate.finalized;
    drop(gate);
    if finalized {
        slots.forget(&key, &slot);
    }
    result
}
