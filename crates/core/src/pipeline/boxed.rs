//! [`BoxBackend`]: any [`Backend`] as one type.

use std::fmt;
use std::future::Future;

use super::backend::{ApplyNow, Backend, BoxFuture, Capabilities};
use crate::args::PersistArgs;
use crate::feed::{FeedHub, FeedPage, ReadFeed};
use crate::model::error::Result;
use crate::request::result::PersistResult;

/// Any [`Backend`] as one type, its methods called through a table of functions: for code
/// compiled once for every backend rather than once per backend (the conformance suite checks
/// each backend and stack through one), or that picks its backend at run time.
///
/// It is the backend it holds: each method, a default one included, is that backend's own
/// (its [`apply_now`](Backend::apply_now) too, so a write it answers at once still is).
///
/// ```
/// use persist::memory::MemoryBackend;
/// use persist::read::GetThread;
/// use persist::{Backend, Pipeline, ThreadId};
/// use persist_core::raw::BoxBackend;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// // A backend and a stack over one, as one type.
/// let backends = [BoxBackend::new(MemoryBackend::new()), BoxBackend::new(Pipeline::new(MemoryBackend::new()))];
/// for backend in &backends {
///     let thread = backend.get_thread(GetThread::new(ThreadId::new("t-1")?)).await?;
///     assert!(thread.is_none());
/// }
/// # Ok::<_, persist::PersistError>(())
/// # }).unwrap();
/// ```
pub struct BoxBackend(Box<dyn DynBackend>);

impl BoxBackend {
    /// `backend`, its type erased.
    pub fn new<B: Backend>(backend: B) -> Self {
        Self(Box::new(backend))
    }
}

impl fmt::Debug for BoxBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxBackend").field("capabilities", &self.0.dyn_capabilities()).finish_non_exhaustive()
    }
}

/// The reads of [`DynBackend`]: each [`Backend`] read, its future boxed.
macro_rules! dyn_reads {
    (
        $($(#[$doc:meta])* $name:ident($args:ty) -> $out:ty = $result:ident, $scope:tt $(, $b:ident($av:ident))?;)*
    ) => {
        $($(
            fn $b(&self, query: $args) -> BoxFuture<'_, Result<$out>>;
        )?)*
    };
}

/// The reads of [`DynBackend`] for a backend: its own.
macro_rules! dyn_reads_of_a_backend {
    (
        $($(#[$doc:meta])* $name:ident($args:ty) -> $out:ty = $result:ident, $scope:tt $(, $b:ident($av:ident))?;)*
    ) => {
        $($(
            fn $b(&self, query: $args) -> BoxFuture<'_, Result<$out>> {
                Box::pin(Backend::$b(self, query))
            }
        )?)*
    };
}

/// [`BoxBackend`]'s reads: those of the backend it holds.
macro_rules! boxed_reads {
    (
        $($(#[$doc:meta])* $name:ident($args:ty) -> $out:ty = $result:ident, $scope:tt $(, $b:ident($av:ident))?;)*
    ) => {
        $($(
            fn $b(&self, query: $args) -> impl Future<Output = Result<$out>> + Send {
                DynBackend::$b(&*self.0, query)
            }
        )?)*
    };
}

/// [`Backend`] made object safe: every method's future boxed.
trait DynBackend: Send + Sync + 'static {
    fn dyn_apply(&self, args: PersistArgs) -> BoxFuture<'_, Result<PersistResult>>;
    fn dyn_apply_now(&self, args: PersistArgs) -> ApplyNow;
    calls!(dyn_reads);
    fn dyn_capabilities(&self) -> Capabilities;
    fn dyn_ping(&self) -> BoxFuture<'_, Result<()>>;
    fn dyn_read_feed(&self, query: ReadFeed) -> BoxFuture<'_, Result<FeedPage>>;
    fn dyn_feed_hub(&self) -> Option<FeedHub>;
}

impl<B: Backend> DynBackend for B {
    fn dyn_apply(&self, args: PersistArgs) -> BoxFuture<'_, Result<PersistResult>> {
        Box::pin(Backend::apply(self, args))
    }

    fn dyn_apply_now(&self, args: PersistArgs) -> ApplyNow {
        Backend::apply_now(self, args)
    }

    calls!(dyn_reads_of_a_backend);

    fn dyn_capabilities(&self) -> Capabilities {
        Backend::capabilities(self)
    }

    fn dyn_ping(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(Backend::ping(self))
    }

    fn dyn_read_feed(&self, query: ReadFeed) -> BoxFuture<'_, Result<FeedPage>> {
        Box::pin(Backend::read_feed(self, query))
    }

    fn dyn_feed_hub(&self) -> Option<FeedHub> {
        Backend::feed_hub(self)
    }
}

impl Backend for BoxBackend {
    fn apply(&self, args: PersistArgs) -> impl Future<Output = Result<PersistResult>> + Send {
        self.0.dyn_apply(args)
    }

    fn apply_now(&self, args: PersistArgs) -> ApplyNow {
        self.0.dyn_apply_now(args)
    }

    calls!(boxed_reads);

    fn capabilities(&self) -> Capabilities {
        self.0.dyn_capabilities()
    }

    fn ping(&self) -> impl Future<Output = Result<()>> + Send {
        self.0.dyn_ping()
    }

    fn read_feed(&self, query: ReadFeed) -> impl Future<Output = Result<FeedPage>> + Send {
        self.0.dyn_read_feed(query)
    }

    fn feed_hub(&self) -> Option<FeedHub> {
        self.0.dyn_feed_hub()
    }
}
