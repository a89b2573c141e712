//! Redirect matching requests to another stack.
//!
//! A [`RouteLayer`] holds named routes, each a predicate on [`PersistArgs`] and a target
//! stack (any service of requests, usually another [`Pipeline`](persist_core::Pipeline)). The
//! **first** matching route wins; a request no route matches continues down the stack. A
//! redirected request never reaches the inner stack, so the default store stays untouched.
//!
//! Reads and session requests pass through the layers like writes, and a predicate on the
//! thread ([`thread_prefix`]) matches a thread's reads as it matches its writes: a routed
//! thread is read back through the same pipeline it was written through. A request across
//! threads that no route claims (`threads`, `find_stranded`, `ping`) goes to the inner stack
//! **and** every target: thread listings are merged newest first with one cursor (a thread
//! two stores hold is listed once), stranded reservations least recently active first, and a
//! ping succeeds when every store answers. So a host lists and cleans up every store a route
//! reaches without knowing where a thread lives. A change-feed read of one thread is routed
//! as the thread's other requests; one of a tenant or of the store is not merged (each store
//! numbers its own events, so no one position resumes across them): it reads the feed of the
//! store under the route, and a routed store's feed is read through that store's pipeline.
//! (A thread `(tenant, id)` that two stores both
//! hold, say
//! written to the default store before the route existed, is listed once per page, but may
//! show up again on a later page with its other store's time.)
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
//! assert!(pipeline.get_thread(GetThread::new(thread.clone())).await?.is_some()); // read where written
//! assert!(Pipeline::new(main).get_thread(GetThread::new(thread)).await?.is_none()); // main untouched
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

mod across;
mod future;
mod layer;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

pub use self::future::ResponseFuture;
pub use self::layer::{RouteLayer, RouteLayerBuilder};
use persist_core::BoxPersistService;
use persist_core::{PersistArgs, PersistError, PersistResult};

type Predicate = Arc<dyn Fn(&PersistArgs) -> bool + Send + Sync>;

/// A predicate matching requests whose thread id starts with `prefix`.
pub fn thread_prefix(prefix: impl Into<String>) -> impl Fn(&PersistArgs) -> bool + Clone + Send + Sync + 'static {
    let prefix: Arc<str> = Arc::from(prefix.into());
    move |args: &PersistArgs| args.thread_id().is_some_and(|thread| thread.as_str().starts_with(&*prefix))
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
    S::Future: Send + 'static,
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
            // Across threads: every store the route reaches answers.
            None if args.thread_id().is_none() && across::merges(args.op()) && !self.routes.is_empty() => {
                let inner = self.inner.call(args.clone());
                let targets = self.routes.iter().map(|entry| entry.target.clone()).collect();
                ResponseFuture::routed(Box::pin(across::fan_out(args, inner, targets)))
            }
            None => ResponseFuture::inner(self.inner.call(args)),
        }
    }
}
