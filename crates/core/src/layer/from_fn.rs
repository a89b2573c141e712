//! Write a layer as an async closure, like axum's `from_fn`.
//!
//! The closure gets the request and a [`Next`]; it may inspect or rewrite the request, call
//! `next.run(args)` (or not, to short-circuit), and inspect or replace the result. It is the
//! easiest way in, at the cost of one allocation per request (the closure's future and `Next`
//! are boxed); always-on layers that must cost nothing are written as a
//! `Layer` + `Service` + hand-written future instead.
//!
//! # Example
//!
//! An audit log:
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use persist::{args::Add, layer::from_fn, Content, Pipeline, Role, ThreadId};
//! use persist::memory::MemoryBackend;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let audit = Arc::new(Mutex::new(Vec::new()));
//! let log = audit.clone();
//! let pipeline = Pipeline::builder()
//!     .layer(from_fn(move |args, next| {
//!         let log = log.clone();
//!         async move {
//!             let thread = args.thread_id().map(|t| t.to_string()).unwrap_or_default();
//!             let line = format!("{} {thread}", args.op());
//!             let result = next.run(args).await;
//!             log.lock().unwrap().push(format!("{line} ok={}", result.is_ok()));
//!             result
//!         }
//!     }))
//!     .build(MemoryBackend::new());
//! pipeline.add(Add::new(ThreadId::new("t1")?, Role::User, Content::text("hi"))).await?;
//! assert_eq!(*audit.lock().unwrap(), ["add t1 ok=true"]);
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

use std::fmt;
use std::future::Future;
use std::mem;
use std::task::{Context, Poll};

use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt};

use crate::backend::BoxFuture;
use crate::pipeline::BoxPersistService;
use crate::{PersistArgs, PersistError, PersistResult};

/// Makes a layer from an async closure `f(args, next)`; see the [module docs](self).
pub fn from_fn<F, Fut>(f: F) -> FromFnLayer<F>
where
    F: Fn(PersistArgs, Next) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<PersistResult, PersistError>> + Send + 'static,
{
    FromFnLayer { f }
}

/// The rest of the stack, handed to a [`from_fn`] closure.
pub struct Next {
    inner: BoxPersistService,
}

impl Next {
    /// Sends `args` down the rest of the stack.
    pub fn run(self, args: PersistArgs) -> impl Future<Output = Result<PersistResult, PersistError>> + Send + 'static {
        self.inner.oneshot(args)
    }
}

impl fmt::Debug for Next {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Next").finish_non_exhaustive()
    }
}

/// The layer of [`from_fn`].
#[derive(Clone)]
pub struct FromFnLayer<F> {
    f: F,
}

impl<F> fmt::Debug for FromFnLayer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromFnLayer").field("f", &std::any::type_name::<F>()).finish()
    }
}

impl<S, F: Clone> Layer<S> for FromFnLayer<F> {
    type Service = FromFn<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        FromFn { inner, f: self.f.clone() }
    }
}

/// The service of [`from_fn`].
#[derive(Clone)]
pub struct FromFn<S, F> {
    inner: S,
    f: F,
}

impl<S, F> fmt::Debug for FromFn<S, F>
where
    S: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromFn").field("inner", &self.inner).field("f", &std::any::type_name::<F>()).finish()
    }
}

impl<S, F, Fut> Service<PersistArgs> for FromFn<S, F>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    F: Fn(PersistArgs, Next) -> Fut,
    Fut: Future<Output = Result<PersistResult, PersistError>> + Send + 'static,
{
    type Response = PersistResult;
    type Error = PersistError;
    type Future = BoxFuture<'static, Result<PersistResult, PersistError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PersistError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, args: PersistArgs) -> Self::Future {
        // Hand the service that was polled ready to `Next`, keep a fresh clone for later calls.
        let clone = self.inner.clone();
        let ready = mem::replace(&mut self.inner, clone);
        let next = Next { inner: BoxCloneSyncService::new(ready) };
        Box::pin((self.f)(args, next))
    }
}
