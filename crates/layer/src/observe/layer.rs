use tower::Layer;

use super::{Observe, OnArgs, OnError, OnResult};

/// Observes requests, results and errors through hooks; see the [module docs](super).
#[derive(Debug, Clone, Default)]
pub struct ObserveLayer<A = (), R = (), E = ()> {
    on_args: A,
    on_result: R,
    on_error: E,
}

impl ObserveLayer {
    /// A layer whose hooks all do nothing; set them with the `on_*` methods.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<A, R, E> ObserveLayer<A, R, E> {
    /// Calls `hook` with each request.
    pub fn on_args<A2: OnArgs>(self, hook: A2) -> ObserveLayer<A2, R, E> {
        ObserveLayer { on_args: hook, on_result: self.on_result, on_error: self.on_error }
    }

    /// Calls `hook` with each successful result.
    pub fn on_result<R2: OnResult + Clone>(self, hook: R2) -> ObserveLayer<A, R2, E> {
        ObserveLayer { on_args: self.on_args, on_result: hook, on_error: self.on_error }
    }

    /// Calls `hook` with each error.
    pub fn on_error<E2: OnError + Clone>(self, hook: E2) -> ObserveLayer<A, R, E2> {
        ObserveLayer { on_args: self.on_args, on_result: self.on_result, on_error: hook }
    }
}

impl<S, A: Clone, R: Clone, E: Clone> Layer<S> for ObserveLayer<A, R, E> {
    type Service = Observe<S, A, R, E>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            on_args: self.on_args.clone(),
            on_result: self.on_result.clone(),
            on_error: self.on_error.clone(),
        }
    }
}
