//! Shadow every committed write to a second stack, best effort (e.g. while migrating stores).
//!
//! The primary stack's answer is the caller's answer, always. After the primary committed, the
//! same request goes to the mirror in a spawned task; a mirror failure is reported to the
//! [`on_error`](MirrorLayer::on_error) hook and counted, never returned to the caller. Writes
//! the primary refused are not mirrored. Reads are answered by the primary alone; session
//! writes (bind, reset, invalidate) are mirrored like message writes. Needs a Tokio runtime.
//!
//! A message whose id the primary generated is mirrored under that same id. Shadow writes are
//! sent as their primary writes complete, each in its own task, so a shadow `update_content`
//! can reach the mirror before the shadow `reserve` it follows (and fail there, counted): a
//! mirror converges for whole messages, not for every intermediate step.
//!
//! # Example
//!
//! ```
//! use persist::{args::Add, layer::MirrorLayer, read::GetThread, Content, Pipeline, Role, ThreadId};
//! use persist::memory::MemoryBackend;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let new_store = Pipeline::new(MemoryBackend::new());
//! let mirror = MirrorLayer::new(new_store.clone());
//! let pipeline = Pipeline::builder().layer(mirror.clone()).build(MemoryBackend::new());
//! let thread = ThreadId::new("t1")?;
//! pipeline.add(Add::new(thread.clone(), Role::User, Content::text("hi"))).await?;
//! mirror.flushed().await; // wait for the shadow writes (tests, shutdown)
//! assert!(new_store.get_thread(GetThread::new(thread)).await?.is_some());
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

mod layer;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::sync::Notify;
use tower::{Service, ServiceExt};

pub use self::layer::MirrorLayer;
use persist_core::raw::BoxFuture;
use persist_core::{PersistArgs, PersistError, PersistOp, PersistResult};

type ErrorHook = Arc<dyn Fn(PersistOp, &PersistError) + Send + Sync>;

/// Counters shared by the layer and every service it made.
#[derive(Debug, Default)]
struct Stats {
    failures: AtomicU64,
    in_flight: AtomicU64,
    idle: Notify,
}

/// The service of [`MirrorLayer`].
#[derive(Clone)]
pub struct Mirror<S> {
    inner: S,
    mirror: MirrorLayer,
}

impl<S: fmt::Debug> fmt::Debug for Mirror<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mirror").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl<S> Service<PersistArgs> for Mirror<S>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
    S::Future: Send + 'static,
{
    type Response = PersistResult;
    type Error = PersistError;
    type Future = BoxFuture<'static, Result<PersistResult, PersistError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PersistError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, args: PersistArgs) -> Self::Future {
        // Reads are answered by the primary alone; writes (messages and session bindings) are
        // mirrored.
        if args.op().is_read() {
            return Box::pin(self.inner.call(args));
        }
        let mut shadow = args.clone();
        let primary = self.inner.call(args);
        let mirror = self.mirror.clone();
        Box::pin(async move {
            let result = primary.await;
            if let Ok(committed) = &result {
                // The mirror stores the message under the id the primary chose.
                let id = committed.message().map(|m| m.id.clone());
                match &mut shadow {
                    PersistArgs::AppendTurn(turn) => {
                        for (message, stored) in turn.messages.iter_mut().zip(committed.messages()) {
                            message.message_id.get_or_insert_with(|| stored.id.clone());
                        }
                    }
                    PersistArgs::Add(add) if add.message_id.is_none() => add.message_id = id,
                    PersistArgs::Reserve(reserve) if reserve.message_id.is_none() => reserve.message_id = id,
                    _ => {}
                }
                mirror.stats.in_flight.fetch_add(1, Ordering::AcqRel);
                tokio::spawn(async move {
                    let op = shadow.op();
                    let plain = shadow.without_embeddings();
                    let mut written = mirror.target.clone().oneshot(shadow).await;
                    // A mirror that keeps no vectors (or other lengths) still gets the messages.
                    if let (
                        Err(PersistError::Unsupported { .. } | PersistError::InvalidInput { field: "embedding", .. }),
                        Some(plain),
                    ) = (&written, plain)
                    {
                        written = mirror.target.clone().oneshot(plain).await;
                    }
                    if let Err(error) = written {
                        mirror.stats.failures.fetch_add(1, Ordering::Relaxed);
                        if let Some(hook) = &mirror.on_error {
                            hook(op, &error);
                        }
                    }
                    if mirror.stats.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
                        mirror.stats.idle.notify_waiters();
                    }
                });
            }
            result
        })
    }
}
