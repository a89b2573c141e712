use std::fmt;
use std::future::Future;

use tower::Layer;

use super::{FromFn, Next};
use persist_core::{PersistArgs, PersistError, PersistResult};

/// Makes a layer from an async closure `f(args, next)`; see the [module docs](super).
pub fn from_fn<F, Fut>(f: F) -> FromFnLayer<F>
where
    F: Fn(PersistArgs, Next) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<PersistResult, PersistError>> + Send + 'static,
{
    FromFnLayer { f }
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
