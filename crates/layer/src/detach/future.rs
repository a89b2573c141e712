use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::sync::{AcquireError, OwnedSemaphorePermit};
use tokio::task::JoinHandle;
use tower::Service;

use super::spawn;
use persist_core::{PersistArgs, PersistError, PersistResult};

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// Response future of [`Detach`](super::Detach): waits for a slot, then for the spawned write.
/// Dropping it while it waits for a slot writes nothing; dropping it later does not cancel the
/// write.
pub struct ResponseFuture<S> {
    state: State<S>,
}

// Every future starts `Waiting`, holding the request as every layer's future does: boxing it to
// shrink `Running` would allocate once more per call to save nothing.
#[allow(clippy::large_enum_variant)]
enum State<S> {
    Waiting { slot: Acquire, inner: S, args: Option<PersistArgs> },
    Running { task: JoinHandle<Result<PersistResult, PersistError>> },
}

impl<S> ResponseFuture<S> {
    pub(super) fn running(task: JoinHandle<Result<PersistResult, PersistError>>) -> Self {
        Self { state: State::Running { task } }
    }

    pub(super) fn waiting(slot: Acquire, inner: S, args: PersistArgs) -> Self {
        Self { state: State::Waiting { slot, inner, args: Some(args) } }
    }
}

impl<S> fmt::Debug for ResponseFuture<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Waiting { .. } => "waiting for a slot",
            State::Running { .. } => "running",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}

// Nothing is pinned in place: the slot's future is boxed, the task handle is `Unpin`.
impl<S> Unpin for ResponseFuture<S> {}

impl<S> Future for ResponseFuture<S>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
    S::Future: Send + 'static,
{
    type Output = Result<PersistResult, PersistError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match &mut self.state {
                State::Waiting { slot, inner, args } => {
                    let slot = match ready!(slot.as_mut().poll(cx)) {
                        Ok(slot) => slot,
                        Err(_) => {
                            return Poll::Ready(Err(PersistError::Backend {
                                message: "the detach layer was closed".into(),
                                source: None,
                            }));
                        }
                    };
                    let Some(args) = args.take() else {
                        return Poll::Ready(Err(PersistError::Backend {
                            message: "a detached write was polled after it ended".into(),
                            source: None,
                        }));
                    };
                    let task = spawn(slot, inner.call(args));
                    self.state = State::Running { task };
                }
                State::Running { task } => {
                    return Poll::Ready(match ready!(Pin::new(task).poll(cx)) {
                        Ok(output) => output,
                        Err(join) => Err(PersistError::Backend {
                            message: "the detached write panicked".into(),
                            source: Some(Box::new(join)),
                        }),
                    });
                }
            }
        }
    }
}
