use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tower::util::BoxCloneSyncService;
use tower::{Layer, Service};

use super::{ErrorHook, Mirror, Stats};
use persist_core::BoxPersistService;
use persist_core::{PersistArgs, PersistError, PersistOp, PersistResult};

/// Mirrors committed writes to another stack; see the [module docs](super).
#[derive(Clone)]
pub struct MirrorLayer {
    pub(super) target: BoxPersistService,
    pub(super) on_error: Option<ErrorHook>,
    pub(super) stats: Arc<Stats>,
}

impl fmt::Debug for MirrorLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MirrorLayer").field("failures", &self.failures()).finish_non_exhaustive()
    }
}

impl MirrorLayer {
    /// Mirrors to `target` (usually another [`Pipeline`](persist_core::Pipeline)).
    pub fn new<T>(target: T) -> Self
    where
        T: Service<PersistArgs, Response = PersistResult, Error = PersistError> + Clone + Send + Sync + 'static,
        T::Future: Send + 'static,
    {
        Self { target: BoxCloneSyncService::new(target), on_error: None, stats: Arc::default() }
    }

    /// Calls `hook` with each mirror failure (they are never returned to callers).
    pub fn on_error(mut self, hook: impl Fn(PersistOp, &PersistError) + Send + Sync + 'static) -> Self {
        self.on_error = Some(Arc::new(hook));
        self
    }

    /// Mirror writes that failed so far.
    pub fn failures(&self) -> u64 {
        self.stats.failures.load(Ordering::Relaxed)
    }

    /// Waits until no shadow write is in flight.
    pub async fn flushed(&self) {
        loop {
            let idle = self.stats.idle.notified();
            if self.stats.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl<S> Layer<S> for MirrorLayer {
    type Service = Mirror<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Mirror { inner, mirror: self.clone() }
    }
}
