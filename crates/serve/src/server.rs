//! [`Server`]: the builder and entry point. It takes a pipeline, the callers' keys and the
//! limits, makes the request state of them ([`App`]) and the admission, and makes of those the
//! router (from the route table), the OpenAPI document and the accept loop.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use persist_core::{PersistError, Pipeline};
use persist_recall::Embedder;
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::http::admit::{self, Admission};
use crate::http::auth::{ApiKeys, Auth};
use crate::http::error::{no_route, not_allowed};
use crate::http::hosts::Hosts;
use crate::http::limits::Limits;
use crate::http::listen::{self, Closing};
use crate::http::mount::{self, Mount};
use crate::http::reload::SharedAuth;
use crate::spec::route::Access;
use crate::spec::{openapi, routes};
use crate::state::{App, SharedEmbedder};

/// The Conversations API over a pipeline: [`router`](Self::router) to mount it,
/// [`serve`](Self::serve) to run it.
#[derive(Debug, Clone)]
pub struct Server {
    shared: Arc<Shared>,
}

#[derive(Debug, Clone)]
struct Shared {
    /// What every request is given: the pipeline, the callers' auth, the limits, the streams'
    /// shutdown and the embedder.
    app: Arc<App>,
    /// The host names it answers for without keys.
    hosts: Hosts,
    /// The request slots ([`Limits::max_concurrent_requests`]).
    in_flight: Arc<Semaphore>,
    /// The services mounted with [`Server::with_service`], in the order they were.
    mounts: Vec<Mount>,
}

impl Server {
    /// A server of `pipeline`'s conversations, its callers known by `auth`, with the default
    /// [`Limits`].
    pub fn new(pipeline: Pipeline, auth: Auth) -> Self {
        let (auth, closing) = (SharedAuth::new(auth), Closing::new());
        let limits = Limits::default();
        let in_flight = Arc::new(Semaphore::new(limits.max_concurrent_requests));
        let app = Arc::new(App { pipeline, auth, limits, closing, embedder: None });
        let shared = Shared { app, hosts: Hosts::default(), in_flight, mounts: Vec::new() };
        Self { shared: Arc::new(shared) }
    }

    /// The same server with other limits and hosts (and a request limit of its own); the
    /// embedder and the mounted services are kept.
    fn rebuilt(self, limits: Limits, hosts: Hosts) -> Self {
        let mut shared = Shared::clone(&self.shared);
        shared.in_flight = Arc::new(Semaphore::new(limits.max_concurrent_requests));
        shared.app = Arc::new(App { limits, ..App::clone(&shared.app) });
        shared.hosts = hosts;
        Self { shared: Arc::new(shared) }
    }

    /// The same server with `change` made to its state.
    fn changed(self, change: impl FnOnce(&mut Shared)) -> Self {
        let mut shared = Shared::clone(&self.shared);
        change(&mut shared);
        Self { shared: Arc::new(shared) }
    }

    /// The same server answering `POST /v1/persist/recall` (semantic recall of the caller's
    /// items) with `embedder`: the model the store's vectors were made with, as the host's
    /// [`AutoEmbedLayer`](persist_recall::AutoEmbedLayer) writes them. Without one, the route
    /// answers 400 with the code `recall_unavailable`.
    pub fn with_embedder(self, embedder: impl Embedder) -> Self {
        let embedder = SharedEmbedder::new(embedder);
        self.changed(|shared| shared.app = Arc::new(App { embedder: Some(embedder), ..App::clone(&shared.app) }))
    }

    /// The same server serving `service` at `path` and every path below it (`/mcp` and
    /// `/mcp/…`; the request's URI is given as the client sent it), with any method: another
    /// protocol (an MCP server) on the same listener, behind the same admission and auth as the
    /// API's routes.
    ///
    /// Each request is admitted as an API request is (host check, body read within the
    /// limits, a request slot, the access line, `x-request-id`), then authenticated as one
    /// (no key or an unknown one is the API's 401, and the service is not called); the service
    /// finds the caller's [`Context`](persist_core::Context) in the request's extensions
    /// (`request.extensions().get::<persist_core::Context>()`): its tenant, the principal
    /// `persist-serve` and the [`HttpRequestId`](crate::HttpRequestId), to scope the pipeline
    /// with. The service's answers are its own (not the API's errors), and its paths are not in
    /// the [OpenAPI document](Self::openapi). It is kept by [`with_limits`](Self::with_limits),
    /// [`with_allowed_hosts`](Self::with_allowed_hosts) and [`serve`](Self::serve).
    ///
    /// # Panics
    ///
    /// When `path` does not start with `/`, ends with `/`, holds `{`, `}` or `*`, or is a
    /// path of the API or of a service mounted already.
    pub fn with_service<S, B>(self, path: &'static str, service: S) -> Self
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
        mount::check_path(path, routes::table().iter().map(|route| route.path), &self.shared.mounts);
        let mount = Mount::new(path, service);
        self.changed(|shared| shared.mounts.push(mount))
    }

    /// The same server with `limits`.
    pub fn with_limits(self, limits: Limits) -> Self {
        let hosts = self.shared.hosts.clone();
        self.rebuilt(limits, hosts)
    }

    /// The same server answering for these host names too (`NAME` or `NAME:PORT`, any port
    /// either way; `*`: any host), beyond `localhost`, `127.0.0.1`, `[::1]` and the address
    /// [`serve`](Self::serve) listens on. Checked without keys only: see
    /// [Host and Origin](crate#host-and-origin).
    pub fn with_allowed_hosts(self, hosts: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        let (limits, hosts) = (self.shared.app.limits.clone(), self.shared.hosts.clone().with(hosts));
        self.rebuilt(limits, hosts)
    }

    /// The limits it holds requests to.
    pub fn limits(&self) -> &Limits {
        &self.shared.app.limits
    }

    /// Every route, for a host to serve or to nest in its own axum app. Without keys it answers
    /// for the loopback names and those of [`with_allowed_hosts`](Self::with_allowed_hosts)
    /// only: a host serving it on another address names it there. Its routes are those
    /// [`openapi`](Self::openapi) documents, both made from one table, and the services mounted
    /// with [`with_service`](Self::with_service).
    pub fn router(&self) -> Router {
        let app = &self.shared.app;
        // Every route is the table's: the OpenAPI document describes the same table.
        let (mut api, mut probes) = (Router::new(), Router::new());
        for route in routes::table() {
            match route.access {
                Access::Probe => probes = probes.route(route.path, route.handler()),
                _ => api = api.route(route.path, route.handler()),
            }
        }
        for mounted in &self.shared.mounts {
            api = mounted.route(api, &app.auth);
        }
        let api = api.fallback(no_route).method_not_allowed_fallback(not_allowed);
        // The probes are answered outside the request limit (and unlogged): a busy, healthy
        // instance is not ejected by its load balancer.
        let probes = probes.method_not_allowed_fallback(not_allowed);
        let admission = Admission {
            auth: app.auth.clone(),
            hosts: self.shared.hosts.clone(),
            limits: app.limits.clone(),
            in_flight: self.shared.in_flight.clone(),
        };
        api.layer(axum::middleware::from_fn_with_state(Arc::new(admission), admit::admit))
            .merge(probes)
            .with_state(app.clone())
    }

    /// The OpenAPI 3.1 document of [`router`](Self::router)'s routes, the standard ones and the
    /// extensions, as `GET /v1/persist/openapi.json` answers it (without a key: it holds no
    /// data). It is generated from the table the router is built from, so it names every route
    /// and no other; the crate's tests validate a real answer of each route against it. A
    /// client generator takes it as it is.
    pub fn openapi() -> Value {
        openapi::document(&routes::table())
    }

    /// Serves [`router`](Self::router) on `listener` (HTTP/1.1) until `shutdown` completes,
    /// holding connections to [`Limits::header_timeout`] and [`Limits::max_connections`].
    ///
    /// Once `shutdown` completes no connection is accepted, the event streams end (their
    /// clients resume after `Last-Event-ID`, on another instance), and the requests in flight
    /// have [`Limits::shutdown_timeout`] to finish; then the connections still open are closed
    /// (a write a client was not answered for is stored whole or not at all) and it returns.
    ///
    /// # Errors
    ///
    /// The listener's, when its address cannot be read.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let hosts = self.shared.hosts.clone().with_address(listener.local_addr()?);
        let limits = self.shared.app.limits.clone();
        let server = self.rebuilt(limits, hosts);
        let (router, closing) = (server.router(), server.shared.app.closing.clone());
        let limits = server.shared.app.limits.clone();
        listen::serve(router, listener, limits.clone(), closing, shutdown).await.log(&limits);
        Ok(())
    }

    /// Ends every event stream it answers (a conversation's `…/events`, an item's `…/stream`),
    /// and those asked for later at once, as [`serve`](Self::serve) does on shutdown: for a host
    /// that serves [`router`](Self::router) itself, before its own graceful shutdown (which
    /// would otherwise wait for each stream's client to leave). Clients resume after their
    /// `Last-Event-ID`.
    pub fn close_streams(&self) {
        self.shared.app.closing.close();
    }

    /// Replaces the keys of a server that takes keys ([`Auth::Keys`]) while it serves, each
    /// request after the call checked against `keys` (one in flight finishes as it was let
    /// in): for keys rotated without a restart, as `persist serve` does on `SIGHUP`. Every
    /// clone of the server, and the one [`serve`](Self::serve) runs, uses them.
    ///
    /// # Errors
    ///
    /// [`PersistError::InvalidInput`] naming `keys`, the keys in use kept, when `keys` is empty
    /// (every request would be refused: a keys file read while it was being written, say) or
    /// when the server knows its callers otherwise ([`Auth::TenantHeader`], [`Auth::Open`]).
    ///
    /// # Example
    ///
    /// ```
    /// use persist::memory::MemoryBackend;
    /// use persist::Pipeline;
    /// use persist_serve::{ApiKeys, Auth, Server};
    ///
    /// let keys = ApiKeys::parse("acme:sk-acme-0123456789abcdef")?;
    /// let server = Server::new(Pipeline::new(MemoryBackend::new()), Auth::Keys(keys));
    /// // Later, from the keys file as it now is:
    /// let rotated = ApiKeys::parse("acme:sk-acme-0123456789abcdef\nacme:sk-acme-fedcba9876543210")?;
    /// server.reload_keys(rotated)?;
    /// assert!(server.reload_keys(ApiKeys::new()).is_err(), "no keys: the old ones are kept");
    /// # Ok::<_, persist::PersistError>(())
    /// ```
    pub fn reload_keys(&self, keys: ApiKeys) -> Result<(), PersistError> {
        self.shared.app.auth.replace_keys(keys)
    }
}
