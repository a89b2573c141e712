//! The change feed as a Python async iterator (`Store.feed`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use persist::feed::Subscription;
use persist::{Context, ThreadId};
use pyo3::prelude::*;

use crate::Opened;
use crate::bridge::{Reply, awaitable};
use crate::session;

pub(crate) enum FeedState {
    Unopened { opened: Arc<Opened>, context: Context, thread: Option<ThreadId>, after: u64 },
    Open(Box<Subscription>),
}

/// The change feed as an async iterator; see `_persist.pyi`.
#[pyclass(frozen, module = "persist._persist")]
pub(crate) struct Feed {
    pub(crate) state: Arc<tokio::sync::Mutex<FeedState>>,
    /// The position of the last change given (`after` before the first), readable while a
    /// read waits.
    pub(crate) position: Arc<AtomicU64>,
}

#[pymethods]
impl Feed {
    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (state, position) = (self.state.clone(), self.position.clone());
        awaitable(py, async move {
            let mut state = state.lock().await;
            // A feed never ends (no StopAsyncIteration): it waits for the next change.
            loop {
                match &mut *state {
                    FeedState::Open(subscription) => {
                        let change = session::next_change(subscription).await?;
                        position.store(subscription.position(), Ordering::Release);
                        return Ok(Reply::json(change));
                    }
                    FeedState::Unopened { opened, context, thread, after } => {
                        let store = opened.clone().pipeline().await?.scoped(context.clone());
                        let subscription = session::subscribe(store, thread.clone(), *after).await?;
                        *state = FeedState::Open(Box::new(subscription));
                    }
                }
            }
        })
    }

    #[getter]
    fn position(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }
}
