//! Services mounted beside the API ([`Server::with_service`](crate::Server::with_service)):
//! another protocol on the same listener, admitted and authenticated as the API's routes are.

use std::convert::Infallible;
use std::fmt;

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use super::extract::{Tenant, context_of};
use super::reload::SharedAuth;

/// A service mounted at a path, type-erased.
#[derive(Clone)]
pub(crate) struct Mount {
    path: &'static str,
    service: BoxCloneSyncService<Request, Response, Infallible>,
}

impl fmt::Debug for Mount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mount").field("path", &self.path).finish_non_exhaustive()
    }
}

/// Refuses a path a service cannot be mounted at (see
/// [`Server::with_service`](crate::Server::with_service)): one not of the form `/name`, one of
/// `api_paths` (the API's), or one `mounted` already.
pub(crate) fn check_path(path: &'static str, mut api_paths: impl Iterator<Item = &'static str>, mounted: &[Mount]) {
    assert!(
        path.len() > 1 && path.starts_with('/') && !path.ends_with('/') && !path.contains(['{', '}', '*']),
        "a service is mounted at a path such as `/mcp`, not {path:?}"
    );
    let taken = api_paths.any(|api| api == path) || mounted.iter().any(|m| m.path == path);
    assert!(!taken, "{path:?} is a path of the API or of a service mounted already");
}

impl Mount {
    pub(crate) fn new<S, B>(path: &'static str, service: S) -> Self
    where
        S: tower::Service<Request, Response = axum::http::Response<B>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let service = service.map_response(|response| response.map(axum::body::Body::new));
        Self { path, service: BoxCloneSyncService::new(service) }
    }

    /// `api` with this service at its path and below, each request authenticated by `auth` first.
    pub(crate) fn route<S: Clone + Send + Sync + 'static>(&self, api: Router<S>, auth: &SharedAuth) -> Router<S> {
        let (auth, inner) = (auth.clone(), self.service.clone());
        let authenticated = tower::service_fn(move |mut request: Request| {
            let (auth, inner) = (auth.clone(), inner.clone());
            async move {
                let tenant = match auth.tenant(request.headers()) {
                    Ok(tenant) => tenant,
                    Err(refused) => return Ok::<_, Infallible>(refused.into_response()),
                };
                let context = context_of(tenant.clone(), request.extensions());
                request.extensions_mut().insert(context);
                let mut response = inner.oneshot(request).await?;
                response.extensions_mut().insert(Tenant(tenant));
                Ok(response)
            }
        });
        api.route_service(self.path, authenticated.clone())
            .route_service(&format!("{}/{{*rest}}", self.path), authenticated)
    }
}
