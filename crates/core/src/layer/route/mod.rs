//! Redirect matching writes to another stack.
//!
//! A [`RouteLayer`] holds named routes, each a predicate on [`PersistArgs`] and a target
//! stack (any write service, usually another [`Pipeline`](crate::Pipeline)). The **first**
//! matching route wins; a request no route matches continues down the stack. A redirected
//! request never reaches the inner stack, so the default store stays untouched.
//!
//! Reads do not pass through the pipeline: read a redirected thread from the target stack.
//!
//! # Example
//!
//! ```
//! use persist::{args::Add, layer::{route, RouteLayer}, read::GetThread};
//! use persist::{Content, Pipeline, Role, ThreadId};
//! use persist::memory::MemoryBackend;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let scratch = Pipeline::new(MemoryBackend::new());
//! let main = MemoryBackend::new();
//! let pipeline = Pipeline::builder()
//!     .layer(RouteLayer::builder().route("scratch", route::thread_prefix("scratch:"), scratch.clone()).build()?)
//!     .build(main.clone());
//!
//! let thread = ThreadId::new("scratch:1")?;
//! pipeline.add(Add::new(thread.clone(), Role::User, Content::text("draft"))).await?;
//! assert!(scratch.get_thread(GetThread::new(thread.clone())).await?.is_some());
//! assert!(pipeline.get_thread(GetThread::new(thread)).await?.is_none()); // main untouched
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

mod future;
mod layer;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

pub use self::future::ResponseFuture;
pub use self::layer::{RouteLayer, RouteLayerBuilder};
use crate::pipeline::BoxPersistService;
use crate::{PersistArgs, PersistError, PersistResult};

type Predicate = Arc<dyn Fn(&PersistArgs) -> bool + Send + Sync>;

/// A predicate matching requests whose thread id starts with `prefix`.
pub fn thread_prefix(prefix: impl Into<String>) -> impl Fn(&PersistArgs) -> bool + Clone + Send + Sync + 'static {
    let prefix: Arc<str> = Arc::from(prefix.into());
    move |args: &PersistArgs| args.thread_id().as_str().starts_with(&*prefix)
}

#[derive(Clone)]
struct Entry {
    name: Arc<str>,
    predicate: Predicate,
    target: BoxPersistService,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Entry {
    fn new<P, T>(name: String, predicate: P, target: T) -> Self
    where
        P: Fn(&PersistArgs) -> bool + Send + Sync + 'static,
        T: Service<PersistArgs, Response = PersistResult, Error = PersistError> + Clone + Send + Sync + 'static,
        T::Future: Send + 'static,
    {
        Self { name: Arc::from(name), predicate: Arc::new(predicate), target: BoxCloneSyncService::new(target) }
    }
}

/// The service of [`RouteLayer`].
#[derive(Debug, Clone)]
pub struct Route<S> {
    inner: S,
    routes: Arc<[Entry]>,
}

impl<S> Route<S> {
    /// The names of the routes, in match order.
    pub fn route_names(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().map(|entry| &*entry.name)
    }
}

impl<S> Service<PersistArgs> for Route<S>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
{
    type Response = PersistResult;
    type Error = PersistError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PersistError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, args: PersistArgs) -> Self::Future {
        match self.routes.iter().find(|entry| (entry.predicate)(&args)) {
            // The target's readiness is driven by `oneshot`, independent of `inner`'s.
            Some(entry) => ResponseFuture::routed(Box::pin(entry.target.clone().oneshot(args))),
            None => ResponseFuture::inner(self.inner.call(args)),
        }
    }
}
