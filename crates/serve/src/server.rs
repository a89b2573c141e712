//! [`Server`]: a pipeline, the callers' keys and the limits, and what is made of them (the
//! router, the OpenAPI document, the accept loop).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use persist_core::Pipeline;
use persist_recall::Embedder;
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::{ApiError, Auth, Limits, admit, hosts, listen, mount, openapi, recall, reload, routes};

/// The Conversations API over a pipeline: [`router`](Self::router) to mount it,
/// [`serve`](Self::serve) to run it.
#[derive(Debug, Clone)]
pub struct Server {
    pub(crate) shared: Arc<Shared>,
}

#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub(crate) pipeline: Pipeline,
    /// Shared by every server rebuilt from this one: keys reloaded on one are every one's.
    pub(crate) auth: reload::SharedAuth,
    pub(crate) limits: Limits,
    hosts: hosts::Hosts,
    pub(crate) in_flight: Arc<Semaphore>,
    /// Ends the event streams (shared as `auth` is).
    pub(crate) closing: listen::Closing,
    /// What `POST /v1/persist/recall` embeds the query with, when the host gave one.
    pub(crate) embedder: Option<recall::SharedEmbedder>,
    /// The services mounted with [`Server::with_service`], in the order they were.
    pub(crate) mounts: Vec<mount::Mount>,
}

impl Server {
    /// A server of `pipeline`'s conversations, its callers known by `auth`, with the default
    /// [`Limits`].
    pub fn new(pipeline: Pipeline, auth: Auth) -> Self {
        let (auth, closing) = (reload::SharedAuth::new(auth), listen::Closing::new());
        let limits = Limits::default();
        let in_flight = Arc::new(Semaphore::new(limits.max_concurrent_requests));
        let hosts = hosts::Hosts::default();
        let shared = Shared { pipeline, auth, limits, hosts, in_flight, closing, embedder: None, mounts: Vec::new() };
        Self { shared: Arc::new(shared) }
    }

    /// The same server with other limits and hosts (and a request limit of its own); the
    /// embedder and the mounted services are kept.
    fn rebuilt(self, limits: Limits, hosts: hosts::Hosts) -> Self {
        let mut shared = Shared::clone(&self.shared);
        shared.in_flight = Arc::new(Semaphore::new(limits.max_concurrent_requests));
        (shared.limits, shared.hosts) = (limits, hosts);
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
        let embedder = recall::SharedEmbedder::new(embedder);
        self.changed(|shared| shared.embedder = Some(embedder))
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
        mount::check_path(path, &self.shared.mounts);
        let mount = mount::Mount::new(path, service);
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
        let (limits, hosts) = (self.shared.limits.clone(), self.shared.hosts.clone().with(hosts));
        self.rebuilt(limits, hosts)
    }

    /// The limits it holds requests to.
    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// Every route, for a host to serve or to nest in its own axum app. Without keys it answers
    /// for the loopback names and those of [`with_allowed_hosts`](Self::with_allowed_hosts)
    /// only: a host serving it on another address names it there. Its routes are those
    /// [`openapi`](Self::openapi) documents, both made from one table, and the services mounted
    /// with [`with_service`](Self::with_service).
    pub fn router(&self) -> Router {
        // Every route is the table's: the OpenAPI document describes the same table.
        let (mut api, mut probes) = (Router::new(), Router::new());
        for route in routes::table() {
            match route.access {
                crate::route::Access::Probe => probes = probes.route(route.path, route.handler()),
                _ => api = api.route(route.path, route.handler()),
            }
        }
        for mounted in &self.shared.mounts {
            api = mounted.route(api, self);
        }
        let api = api.fallback(routes::no_route).method_not_allowed_fallback(routes::not_allowed);
        // The probes are answered outside the request limit (and unlogged): a busy, healthy
        // instance is not ejected by its load balancer.
        let probes = probes.method_not_allowed_fallback(routes::not_allowed);
        api.layer(axum::middleware::from_fn_with_state(self.clone(), admit::admit))
            .merge(probes)
            .with_state(self.clone())
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
        let limits = self.shared.limits.clone();
        let server = self.rebuilt(limits, hosts);
        let (router, closing) = (server.router(), server.shared.closing.clone());
        let limits = server.shared.limits.clone();
        listen::serve(router, listener, limits.clone(), closing, shutdown).await.log(&limits);
        Ok(())
    }

    /// Ends every event stream it answers (a conversation's `…/events`, an item's `…/stream`),
    /// and those asked for later at once, as [`serve`](Self::serve) does on shutdown: for a host
    /// that serves [`router`](Self::router) itself, before its own graceful shutdown (which
    /// would otherwise wait for each stream's client to leave). Clients resume after their
    /// `Last-Event-ID`.
    pub fn close_streams(&self) {
        self.shared.closing.close();
    }

    /// Refuses a request from a host it does not answer for, where no key proves the caller
    /// (a key cannot be sent from another site's page without a CORS preflight, never granted).
    pub(crate) fn check_host(&self, request: &Request) -> Result<(), ApiError> {
        match self.shared.auth.takes_keys() {
            true => Ok(()),
            false => self.shared.hosts.check(request.headers(), request.uri()),
        }
    }
}
