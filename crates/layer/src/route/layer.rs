use std::collections::HashSet;
use std::sync::Arc;

use tower::{Layer, Service};

use super::{Entry, Route};
use persist_core::{PersistArgs, PersistError, PersistResult};

/// Redirects matching writes to other stacks; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct RouteLayer {
    routes: Arc<[Entry]>,
}

impl RouteLayer {
    /// Starts a list of routes.
    pub fn builder() -> RouteLayerBuilder {
        RouteLayerBuilder { routes: Vec::new() }
    }
}

/// Builds a [`RouteLayer`]; [`build`](Self::build) validates the routes.
#[derive(Debug, Default)]
pub struct RouteLayerBuilder {
    routes: Vec<Entry>,
}

impl RouteLayerBuilder {
    /// Adds a route named `name`: requests matching `predicate` go to `target`. Routes are
    /// tried in the order added; the first match wins.
    pub fn route<P, T>(mut self, name: impl Into<String>, predicate: P, target: T) -> Self
    where
        P: Fn(&PersistArgs) -> bool + Send + Sync + 'static,
        T: Service<PersistArgs, Response = PersistResult, Error = PersistError> + Clone + Send + Sync + 'static,
        T::Future: Send + 'static,
    {
        self.routes.push(Entry::new(name.into(), predicate, target));
        self
    }

    /// The layer.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when there is no route, or a route name is empty or used twice.
    pub fn build(self) -> Result<RouteLayer, PersistError> {
        if self.routes.is_empty() {
            return Err(PersistError::invalid("routes", "a route layer needs at least one route"));
        }
        let mut names = HashSet::new();
        for entry in &self.routes {
            if entry.name.is_empty() {
                return Err(PersistError::invalid("route name", "must not be empty"));
            }
            if !names.insert(entry.name.clone()) {
                return Err(PersistError::invalid("route name", format!("`{}` is used by two routes", entry.name)));
            }
        }
        Ok(RouteLayer { routes: self.routes.into() })
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = Route<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Route { inner, routes: Arc::clone(&self.routes) }
    }
}
