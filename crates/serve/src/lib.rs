//! OpenAI's **Conversations API** served on any persist pipeline, so apps in Python and
//! TypeScript store their conversations in persist with the clients they already have: the
//! official `openai` SDKs (`client.conversations`, `client.conversations.items`) and the OpenAI
//! Agents SDK's `OpenAIConversationsSession`, unmodified, pointed at this server's `base_url`.
//!
//! The server is a host app of persist: every request becomes typed requests through the
//! [`Pipeline`] it is given, so the layers stacked there (tracing, GenAI spans, encryption,
//! audit) see every call, and several instances share one PostgreSQL store.
//!
//! # The standard API
//!
//! | route | answers |
//! |---|---|
//! | `POST /v1/conversations` | a conversation, with up to 20 `items` and `metadata` |
//! | `GET /v1/conversations/{id}` | the conversation |
//! | `POST /v1/conversations/{id}` | the conversation with its `metadata` replaced |
//! | `DELETE /v1/conversations/{id}` | `{"id", "object": "conversation.deleted", "deleted": true}` |
//! | `POST /v1/conversations/{id}/items` | the items written, as a list |
//! | `GET /v1/conversations/{id}/items` | a page of items: `after`, `limit` (1–100, default 20), `order` (`asc`, `desc`: the default), `include` |
//! | `GET /v1/conversations/{id}/items/{item_id}` | the item |
//! | `DELETE /v1/conversations/{id}/items/{item_id}` | the conversation |
//!
//! A conversation is a persist thread (its id the thread's, `conv_…`), and each item a message
//! of it, written through the [Responses converter](persist_convert::openai_responses):
//! messages, function calls and their outputs, reasoning and the other tool items are typed
//! parts, and every field the API has is kept and read back as it was written. Items are made
//! whole as the API stores them: a message without `type` gets one, a `content` string
//! becomes one text part, `status` is `completed` where the SDKs need one, and an item without
//! an `id` gets one (`msg_…`, `fc_…`, `rs_…`, …). An `id` the client gives is kept, and is
//! unique in its conversation (a second item with it is 409, not retried). The items of a
//! request are written as one turn: all of them or none.
//!
//! The page's `last_id` is the cursor the SDKs send back as `after`, in the page's order, and
//! `has_more` is always a boolean, so both SDKs' auto-paging reads every item once. A
//! conversation's metadata is up to 16 string pairs (keys up to 64 characters, values up to
//! 512), replaced whole by an update. A deleted conversation is gone with its items: 404
//! afterwards, its id never used again.
//!
//! `items.create` takes up to [`Limits::max_items`] items (256 by default), not the API's
//! 20: `@openai/agents`'s session sends a whole run's items in one request, and the Python
//! session splits them in twenties. The create of a conversation takes 20, as the API does.
//!
//! # Beyond the API
//!
//! Under their own paths, so no standard response changes:
//!
//! - `GET /v1/persist/conversations?after=CURSOR&limit=N`: the caller's conversations, most
//!   recently changed first, with `next_cursor` (the API cannot list them).
//! - `POST /v1/persist/conversations/{id}/items/pop`: removes the newest item and answers it,
//!   atomically: concurrent callers each get a different item (the Agents SDK's `pop_item` lists
//!   the newest item and then deletes it, so two callers can be handed the same one; their
//!   second delete is a clean 404).
//! - `Idempotency-Key` on the `POST`s that write items (`conversations.create`,
//!   `items.create`): a request sent again with the same key (within the conversation for
//!   items, the tenant for a create) writes nothing twice and answers what the first one did,
//!   even once the items it wrote were deleted or popped (for the store's key retention, 24
//!   hours by default: see `persist::spent`); the same key with another body is 422. The SDKs
//!   send none unless told: pass one with `extra_headers` (Python) or `headers` (Node), or name
//!   the header on the client so that its own retries repeat one key (the README shows how). A
//!   key may carry an identifier: persist is handed a digest of it, and no answer or log line
//!   holds the key.
//! - `GET /v1/persist/search?q=WORDS&conversation=ID`: the caller's items whose text holds
//!   every word, newest first, with a snippet (not on a store sealed by an encryption layer);
//!   a query with no word (`q=🦀`) finds nothing (an empty page, not an error).
//! - `GET /v1/persist/conversations/{id}/compacted`: the latest summary a compaction wrote and
//!   the items after it: what a model is given of a long conversation.
//! - `GET /v1/persist/conversations/{id}/branches?item_id=ID` (an item's alternatives, or the
//!   end of every branch) and `POST /v1/persist/conversations/{id}/branches/switch` with
//!   `{"item_id"}`: the branches a host wrote (an edit, a regenerated reply). The standard
//!   listing shows the conversation's active branch.
//! - `GET /v1/persist/conversations/{id}/events`: the conversation's change feed as
//!   Server-Sent Events, resumed after `Last-Event-ID`, on any instance.
//! - `GET /v1/persist/conversations/{id}/items/{item_id}/stream` and `POST …/stop`: a reply a
//!   host is still writing into (a reservation it streams), followed as Server-Sent Events from
//!   any instance, resumed after `Last-Event-ID` (a character offset), and stopped on whichever
//!   instance generates it.
//! - `GET /health` (the process answers) and `GET /ready` (the store answers a ping in time),
//!   both outside the request limit: a busy instance still answers its load balancer.
//! - `GET /v1/persist/openapi.json`: the OpenAPI 3.1 document of every route above
//!   ([`Server::openapi`]), without a key (it holds no data), for a client generator.
//!
//! Every answer carries `x-request-id`: the client's, when it sent one, else a new `req_…`
//! (the `openai` SDKs read it as `_request_id`). It is on the request's access line (one per
//! request, at `INFO`, under the target `persist_serve::access`), every event of the request
//! (the store's trace spans included) is inside a `request` span that names it, and each store
//! call carries it as [`HttpRequestId`] in its context's extensions. Requests are counted by
//! route and status, and timed, through the `metrics` facade: see [`metrics`] for
//! `GET /metrics` in the Prometheus text format.
//!
//! A route asked with a method it does not take is 405 with `Allow`; the `Authorization`
//! scheme is case-insensitive; a query parameter an extension does not take is 400
//! (`unknown_parameter`), so a misspelt cursor never pages the first page forever.
//!
//! # Auth and tenancy
//!
//! [`Auth::Keys`]: `Authorization: Bearer KEY`, each key a tenant ([`ApiKeys`]); no key or an
//! unknown one is 401, compared in constant time, never logged. A conversation of another
//! tenant is 404, as one that does not exist. Behind a gateway that authenticates callers,
//! [`Auth::TenantHeader`] takes the tenant from a header the gateway sets; two of that header
//! (or a value with a comma) is 401, so a gateway that appends its header to the client's
//! cannot let the client pick its tenant. [`Auth::Open`] serves one tenant to whoever connects.
//!
//! # Host and Origin
//!
//! Without keys ([`Auth::Open`], [`Auth::TenantHeader`]) nothing proves who sends a request,
//! so a web page could: by DNS rebinding (its own host name resolving to the server's
//! address) or by posting to it from another site. Such a server answers only requests whose
//! `Host` is `localhost`, `127.0.0.1`, `[::1]` (any port), the address [`Server::serve`]
//! listens on, or a name given to [`Server::with_allowed_hosts`] (`*`: any); a request with an
//! `Origin` whose host is not one of those is refused too (`Origin: null` included). Both are
//! 403 `permission_error` with the code `host_not_allowed` and `x-should-retry: false`, before
//! anything is read or written. A server listening on `0.0.0.0` and reached by other names (a
//! container's, a balancer's) must be given them; so must a host that mounts
//! [`Server::router`] in its own app, which knows no listening address. With keys neither is
//! checked: a page cannot send a key to another site without a CORS preflight, which this
//! server never grants, and behind a balancer the hosts vary.
//!
//! # Errors
//!
//! As OpenAI's SDKs expect them ([`ApiError`]): `{"error": {"message", "type", "param",
//! "code"}}`, with the status each SDK raises its exception for. A body over
//! [`Limits::max_body_bytes`] is refused before it is read whole; a body not sent as
//! `Content-Type: application/json` (any case, parameters such as `; charset=utf-8` allowed)
//! is 415, which the SDKs never meet and a web page's `text/plain` post does (an empty body is
//! `{}`); a refused request stores nothing; a store that is down or slower than
//! [`Limits::store_timeout`] answers 503 with `retry-after`, never a hang (a 5xx says what to
//! do, the cause is logged).
//!
//! # Serving
//!
//! [`Server::serve`] holds each connection to [`Limits`]: a request's headers arrive within
//! [`Limits::header_timeout`] (else the connection is closed, an idle keep-alive one too), its
//! body within [`Limits::body_timeout`] (else 408), and only then does it take one of the
//! [`Limits::max_concurrent_requests`] slots: clients that send slowly, or not at all, hold no
//! slot and cannot starve the others. At most [`Limits::max_connections`] connections are open;
//! more wait in the listener's backlog. On shutdown the event streams end (clients resume after
//! `Last-Event-ID`), the requests in flight have [`Limits::shutdown_timeout`], and the
//! connections still open are closed. [`Server::reload_keys`] replaces the keys while it serves.
//!
//! # Example
//!
//! ```no_run
//! use persist::{Pipeline, TenantId};
//! use persist::sqlite::SqliteBackend;
//! use persist_serve::{ApiKeys, Auth, Server};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let backend = SqliteBackend::open("chat.db").await?;
//! let keys = ApiKeys::new().with_key(TenantId::new("acme")?, "sk-acme-0123456789abcdef")?;
//! let server = Server::new(Pipeline::new(backend), Auth::Keys(keys));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! // Until Ctrl-C; requests in flight then have `Limits::shutdown_timeout` to finish.
//! server.serve(listener, async { tokio::signal::ctrl_c().await.ok(); }).await?;
//! # Ok(())
//! # }
//! ```
//!
//! A host with its own axum app mounts [`Server::router`] instead.

#![forbid(unsafe_code)]

mod admit;
mod auth;
mod conversations;
mod cursor;
mod error;
mod extensions;
mod hosts;
mod idempotency;
mod items;
mod limits;
mod listen;
mod live;
pub mod metrics;
mod openapi;
mod params;
mod reload;
mod routes;
mod schemas;
pub mod ui;
mod views;

/// What the server puts before the digest of a client's `Idempotency-Key` when it hands it to
/// persist, keeping its keys apart from those of other writers of the same store.
const KEY_PREFIX: &str = "serve:";

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
pub(crate) use params::Params;
use persist_core::{Context, PersistError, Pipeline, Scoped, TenantId};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

pub use auth::{ApiKeys, Auth, MIN_KEY_BYTES};
pub use axum::http::HeaderName;
pub use conversations::{MAX_CREATE_ITEMS, METADATA_KEY};
pub use error::ApiError;
pub use idempotency::MAX_KEY_BYTES;
pub use items::MAX_STRING_BYTES;
pub use limits::Limits;

/// The Conversations API over a pipeline: [`router`](Self::router) to mount it,
/// [`serve`](Self::serve) to run it.
#[derive(Debug, Clone)]
pub struct Server {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    pipeline: Pipeline,
    /// Shared by every server rebuilt from this one: keys reloaded on one are every one's.
    auth: reload::SharedAuth,
    limits: Limits,
    hosts: hosts::Hosts,
    in_flight: Arc<Semaphore>,
    /// Ends the event streams (shared as `auth` is).
    closing: listen::Closing,
}

impl Server {
    /// A server of `pipeline`'s conversations, its callers known by `auth`, with the default
    /// [`Limits`].
    pub fn new(pipeline: Pipeline, auth: Auth) -> Self {
        let (auth, closing) = (reload::SharedAuth::new(auth), listen::Closing::new());
        let limits = Limits::default();
        let in_flight = Arc::new(Semaphore::new(limits.max_concurrent_requests));
        let shared = Shared { pipeline, auth, limits, hosts: hosts::Hosts::default(), in_flight, closing };
        Self { shared: Arc::new(shared) }
    }

    fn rebuilt(self, limits: Limits, hosts: hosts::Hosts) -> Self {
        let in_flight = Arc::new(Semaphore::new(limits.max_concurrent_requests));
        let (pipeline, auth, closing) =
            (self.shared.pipeline.clone(), self.shared.auth.clone(), self.shared.closing.clone());
        Self { shared: Arc::new(Shared { pipeline, auth, limits, hosts, in_flight, closing }) }
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
    /// [`openapi`](Self::openapi) documents, both made from one table.
    pub fn router(&self) -> Router {
        // Every route is the table's: the OpenAPI document describes the same table.
        let (mut api, mut probes) = (Router::new(), Router::new());
        for route in routes::table() {
            match route.access {
                routes::Access::Probe => probes = probes.route(route.path, route.handler()),
                _ => api = api.route(route.path, route.handler()),
            }
        }
        let api = api.fallback(no_route).method_not_allowed_fallback(not_allowed);
        // The probes are answered outside the request limit (and unlogged): a busy, healthy
        // instance is not ejected by its load balancer.
        let probes = probes.method_not_allowed_fallback(not_allowed);
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
        openapi::document()
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
    fn check_host(&self, request: &Request) -> Result<(), ApiError> {
        match self.shared.auth.takes_keys() {
            true => Ok(()),
            false => self.shared.hosts.check(request.headers(), request.uri()),
        }
    }
}

/// The header a request's id travels in, both ways (the `openai` SDKs read it as
/// `_request_id`).
const REQUEST_ID: &str = "x-request-id";

/// The id of the HTTP request a store call was made for (its `x-request-id`), in the call's
/// context extensions: each store call has a request id of its own
/// ([`Context::request_id`]), and a layer that logs or audits calls finds the HTTP request
/// they served here.
///
/// # Example
///
/// ```
/// use persist::PersistArgs;
/// use persist_serve::HttpRequestId;
///
/// fn http_request_of(args: &PersistArgs) -> Option<&str> {
///     args.context().extensions().get::<HttpRequestId>().map(|id| id.0.as_str())
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequestId(pub String);

/// The request's id: the client's `x-request-id` when it is one (1 to 200 printable ASCII
/// characters), else a new `req_…`.
fn request_id(headers: &HeaderMap) -> HttpRequestId {
    let given = headers
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|text| (1..=200).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic()));
    HttpRequestId(given.map_or_else(|| format!("req_{}", uuid::Uuid::now_v7().simple()), str::to_owned))
}

/// The tenant a response was for, for the log.
#[derive(Debug, Clone)]
struct Tenant(Option<TenantId>);

/// A request's caller: its tenant, and the pipeline scoped to it.
#[derive(Debug)]
pub(crate) struct Caller {
    pub(crate) tenant: Option<TenantId>,
    pub(crate) store: Scoped,
    timeout: Duration,
    limits: Limits,
    closing: listen::Closing,
}

impl FromRequestParts<Server> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, server: &Server) -> Result<Self, ApiError> {
        let tenant = server.shared.auth.tenant(&parts.headers)?;
        let mut context = Context::new().for_tenant(tenant.clone()).with_principal("persist-serve");
        if let Some(id) = parts.extensions.get::<HttpRequestId>() {
            context = context.with_extension(id.clone());
        }
        Ok(Self {
            store: server.shared.pipeline.scoped(context),
            tenant,
            timeout: server.shared.limits.store_timeout,
            limits: server.shared.limits.clone(),
            closing: server.shared.closing.clone(),
        })
    }
}

impl Caller {
    /// A call to the store, in at most the server's timeout (503 after it), its refusal as the
    /// API's error for a request on `conversation`.
    pub(crate) async fn run<T>(
        &self,
        conversation: Option<&str>,
        call: impl Future<Output = Result<T, PersistError>>,
    ) -> Result<T, ApiError> {
        self.within(call).await?.map_err(|error| ApiError::from_store(error, conversation))
    }

    /// A call to the store in at most the server's timeout (503 after it), its refusal left
    /// to the caller to read.
    pub(crate) async fn within<T>(
        &self,
        call: impl Future<Output = Result<T, PersistError>>,
    ) -> Result<Result<T, PersistError>, ApiError> {
        tokio::time::timeout(self.timeout, call).await.map_err(|_| {
            tracing::warn!(timeout_ms = self.timeout.as_millis() as u64, "the store did not answer in time");
            ApiError::unavailable(format!(
                "The store did not answer within {} ms; retry later.",
                self.timeout.as_millis()
            ))
        })
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Completes when the server shuts down: an event stream ends then.
    pub(crate) fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        self.closing.closed()
    }

    /// A JSON response, marked with the caller's tenant for the log.
    pub(crate) fn answer(&self, status: StatusCode, body: &Value) -> Response {
        let mut response =
            (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], json_body(body))
                .into_response();
        response.extensions_mut().insert(Tenant(self.tenant.clone()));
        response
    }
}

/// A value's JSON text.
pub(crate) fn json_body(value: &Value) -> String {
    value.to_string()
}

/// A request's body as a JSON object: an empty body is `{}`. Over `limit` bytes it is 413,
/// refused by its `Content-Length` before any of it is read, else as soon as the bytes read
/// pass the limit. A body not sent as `application/json` is 415: a web page can send a
/// `text/plain` one to any server without asking, a JSON one only to its own.
pub(crate) async fn read_object(headers: &HeaderMap, body: Body, limit: usize) -> Result<Map<String, Value>, ApiError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    let json = is_json(headers);
    if !json && declared.is_some_and(|length| length > 0) {
        return Err(ApiError::not_json());
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|error| admit::unreadable(&error, limit))?;
    if bytes.is_empty() {
        return Ok(Map::new());
    }
    if !json {
        return Err(ApiError::not_json());
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(ApiError::invalid("body", "The request body is a JSON object.")),
        Err(error) => {
            Err(ApiError::invalid("body", format!("We could not parse the JSON body of your request ({error}).")))
        }
    }
}

/// Whether the request says its body is JSON: `application/json`, any case, parameters
/// (`; charset=utf-8`) allowed.
fn is_json(headers: &HeaderMap) -> bool {
    let value = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or_default();
    let media_type = value.split(';').next().unwrap_or_default().trim();
    media_type.eq_ignore_ascii_case("application/json")
}

/// A request's body as a JSON object (an empty body is `{}`), read within the server's
/// [`Limits::max_body_bytes`]: see [`read_object`].
#[derive(Debug)]
pub(crate) struct JsonObject(pub(crate) Map<String, Value>);

impl FromRequest<Server> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(request: Request, server: &Server) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        read_object(&parts.headers, body, server.shared.limits.max_body_bytes).await.map(Self)
    }
}

async fn no_route(request: Request) -> ApiError {
    ApiError::no_route(request.method().as_str(), request.uri().path())
}

/// A route that exists, asked with a method it does not take: 405 (axum adds `Allow`).
async fn not_allowed(request: Request) -> ApiError {
    ApiError::not_allowed(request.method().as_str(), request.uri().path())
}
