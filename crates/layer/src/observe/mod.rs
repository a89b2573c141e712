//! Observe every request, result and error without changing them.
//!
//! The easiest way to watch writes (indexing, audit, counters): three small hook traits,
//! [`OnArgs`], [`OnResult`] and [`OnError`], implemented for `()` (do nothing) and for
//! closures. Only the accessors of [`PersistArgs`] and [`PersistResult`] are needed, so an
//! observer never has to match every operation.
//!
//! [`OnResult`] sees the result alone, and a result does not name the tenant: a message is
//! `(tenant, thread, id)`, so two tenants' messages can share a thread and message id. An
//! observer that keeps messages of several tenants (an index) keys them by tenant with a
//! [`from_fn`](crate::from_fn()) layer, which sees the request's context and its result,
//! or subscribes to [`Events`](crate::Events), whose events name their tenant.
//!
//! # Example
//!
//! An indexer that skips placeholders and indexes messages once they are complete:
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use persist::{args::{Reserve, UpdateContent}, layer::ObserveLayer};
//! use persist::{Content, PersistResult, Pipeline, Role, Status, ThreadId};
//! use persist::memory::MemoryBackend;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let index = Arc::new(Mutex::new(Vec::new()));
//! let sink = index.clone();
//! let pipeline = Pipeline::builder()
//!     .layer(ObserveLayer::new().on_result(move |result: &PersistResult| {
//!         if let Some(m) = result.message().filter(|m| m.status == Status::Complete) {
//!             sink.lock().unwrap().push(m.content.to_text());
//!         }
//!     }))
//!     .build(MemoryBackend::new());
//! let thread = ThreadId::new("t1")?;
//! let slot = pipeline.reserve(Reserve::new(thread.clone(), Role::Assistant)).await?.message;
//! assert!(index.lock().unwrap().is_empty()); // a placeholder is not content
//! pipeline.update_content(UpdateContent::new(thread, slot.id, Content::text("done"))).await?;
//! assert_eq!(*index.lock().unwrap(), ["done"]);
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

mod future;
mod layer;

use std::task::{Context, Poll};

use tower::Service;

pub use self::future::ResponseFuture;
pub use self::layer::ObserveLayer;
use persist_core::{PersistArgs, PersistError, PersistOp, PersistResult};

/// Called with each request before it goes further down the stack.
pub trait OnArgs {
    /// Sees the request.
    fn on_args(&self, args: &PersistArgs);
}

/// Called with each successful result on its way back up (which does not name the tenant; see
/// the [module docs](self)).
pub trait OnResult {
    /// Sees the result.
    fn on_result(&self, result: &PersistResult);
}

/// Called with each error on its way back up.
pub trait OnError {
    /// Sees the error of an `op` request.
    fn on_error(&self, op: PersistOp, error: &PersistError);
}

impl OnArgs for () {
    fn on_args(&self, _: &PersistArgs) {}
}

impl OnResult for () {
    fn on_result(&self, _: &PersistResult) {}
}

impl OnError for () {
    fn on_error(&self, _: PersistOp, _: &PersistError) {}
}

impl<F: Fn(&PersistArgs)> OnArgs for F {
    fn on_args(&self, args: &PersistArgs) {
        self(args)
    }
}

impl<F: Fn(&PersistResult)> OnResult for F {
    fn on_result(&self, result: &PersistResult) {
        self(result)
    }
}

impl<F: Fn(PersistOp, &PersistError)> OnError for F {
    fn on_error(&self, op: PersistOp, error: &PersistError) {
        self(op, error)
    }
}

/// The service of [`ObserveLayer`]: calls the hooks around `inner`.
#[derive(Debug, Clone)]
pub struct Observe<S, A = (), R = (), E = ()> {
    inner: S,
    on_args: A,
    on_result: R,
    on_error: E,
}

impl<S, A, R, E> Service<PersistArgs> for Observe<S, A, R, E>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
    A: OnArgs,
    R: OnResult + Clone,
    E: OnError + Clone,
{
    type Response = PersistResult;
    type Error = PersistError;
    type Future = ResponseFuture<S::Future, R, E>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PersistError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, args: PersistArgs) -> Self::Future {
        self.on_args.on_args(&args);
        let op = args.op();
        ResponseFuture::new(self.inner.call(args), op, self.on_result.clone(), self.on_error.clone())
    }
}
