use tower::Layer;

use super::Intercept;

/// Short-circuits requests its [`Interceptor`](super::Interceptor) answers; see the
/// [module docs](super).
#[derive(Debug, Clone)]
pub struct InterceptLayer<I> {
    interceptor: I,
}

impl<I> InterceptLayer<I> {
    /// A layer deciding with `interceptor`.
    pub fn new(interceptor: I) -> Self {
        Self { interceptor }
    }
}

impl<S, I: Clone> Layer<S> for InterceptLayer<I> {
    type Service = Intercept<S, I>;

    fn layer(&self, inner: S) -> Self::Service {
        Intercept { inner, interceptor: self.interceptor.clone() }
    }
}
