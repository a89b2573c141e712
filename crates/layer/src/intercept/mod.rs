//! Short-circuit: answer a request without calling the rest of the stack.
//!
//! An [`Interceptor`] looks at each request and returns a [`Decision`]:
//! `ControlFlow::Continue(args)` lets the (possibly rewritten) request continue;
//! `ControlFlow::Break(answer)` answers it right here, with a result (`Break(Ok(result))`, e.g.
//! a dry run) or an error (`Break(Err(error))`, e.g. a policy refusal). A short-circuited
//! request never reaches the backend.
//!
//! (`ControlFlow` rather than `Result<PersistArgs, _>`: the answer is not an error, and a large
//! `Err` would trip clippy's `result_large_err` in every interceptor a user writes.)
//!
//! # Example
//!
//! A maintenance switch that makes the store read-only:
//!
//! ```
//! use std::ops::ControlFlow;
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use persist::{args::Add, layer::{Decision, InterceptLayer}};
//! use persist::{Content, PersistArgs, PersistError, Pipeline, Role, ThreadId};
//! use persist::memory::MemoryBackend;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let read_only = Arc::new(AtomicBool::new(true));
//! let flag = read_only.clone();
//! let pipeline = Pipeline::builder()
//!     .layer(InterceptLayer::new(move |args: PersistArgs| -> Decision {
//!         if flag.load(Ordering::Relaxed) {
//!             ControlFlow::Break(Err(PersistError::rejected("maintenance: writes are paused")))
//!         } else {
//!             ControlFlow::Continue(args)
//!         }
//!     }))
//!     .build(MemoryBackend::new());
//! let add = Add::new(ThreadId::new("t1")?, Role::User, Content::text("hi"));
//! assert!(matches!(pipeline.add(add.clone()).await, Err(PersistError::Rejected { .. })));
//! read_only.store(false, Ordering::Relaxed);
//! assert_eq!(pipeline.add(add).await?.message.seq, 1);
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

mod future;
mod layer;

use std::ops::ControlFlow;
use std::task::{Context, Poll};

use tower::Service;

pub use self::future::ResponseFuture;
pub use self::layer::InterceptLayer;
use persist_core::{PersistArgs, PersistError, PersistResult};

/// What an [`Interceptor`] decided: continue with these args, or answer now.
pub type Decision = ControlFlow<Result<PersistResult, PersistError>, PersistArgs>;

/// Decides, per request, whether it continues down the stack.
pub trait Interceptor {
    /// `Continue(args)` to go on, `Break(answer)` to answer without calling the rest of the stack.
    fn intercept(&self, args: PersistArgs) -> Decision;
}

impl<F: Fn(PersistArgs) -> Decision> Interceptor for F {
    fn intercept(&self, args: PersistArgs) -> Decision {
        self(args)
    }
}

/// The service of [`InterceptLayer`].
#[derive(Debug, Clone)]
pub struct Intercept<S, I> {
    inner: S,
    interceptor: I,
}

impl<S, I> Service<PersistArgs> for Intercept<S, I>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
    I: Interceptor,
{
    type Response = PersistResult;
    type Error = PersistError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PersistError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, args: PersistArgs) -> Self::Future {
        match self.interceptor.intercept(args) {
            ControlFlow::Continue(args) => ResponseFuture::inner(self.inner.call(args)),
            ControlFlow::Break(answer) => ResponseFuture::answered(answer),
        }
    }
}
