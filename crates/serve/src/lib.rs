//! OpenAI's **Conversations API** served on any persist pipeline, so apps in Python and
//! TypeScript store their conversations in persist with the clients they already have: the
//! official `openai` SDKs (`client.conversations`, `client.conversations.items`) and the OpenAI
//! Agents SDK's `OpenAIConversationsSession`, unmodified, pointed at this server's `base_url`.
//!
//! The server is a host app of persist: every request becomes typed requests through the
//! [`Pipeline`](persist_core::Pipeline) it is given, so the layers stacked there (tracing,
//! GenAI spans, encryption, audit) see every call, and several instances share one PostgreSQL
//! store.
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
//!   the header on the client so that its own retries repeat one key (`docs/server.md` shows how). A
//!   key may carry an identifier: persist is handed a digest of it, and no answer or log line
//!   holds the key.
//! - `GET /v1/persist/search?q=WORDS&conversation=ID`: the caller's items whose text holds
//!   every word, newest first, with a snippet (not on a store sealed by an encryption layer);
//!   a query with no word (`q=🦀`) finds nothing (an empty page, not an error).
//! - `POST /v1/persist/recall` with `{"query", "conversation"?, "user_id"?, "limit"?,
//!   "keywords"?, "neighbours"?}`: the caller's items most like `query` by their embeddings
//!   (cosine similarity; with `keywords`, fused with full-text search by reciprocal rank
//!   fusion), best first, each with its `score` and the `neighbours` items around it (0 to 5,
//!   default 0); `limit` is 1 to 20 (default 5). `conversation` keeps one conversation's,
//!   `user_id` the conversations whose `metadata.user_id` is that value (copied to the
//!   thread's own metadata, [`USER_KEY`], where a Rust host or the MCP server marks a thread's
//!   user too, and where they find the API's). It needs the embedder the store's vectors were made with,
//!   given by [`Server::with_embedder`] (`persist serve --embeddings-url URL`); without one it is
//!   400 with the code `recall_unavailable`. A model that is down or slow is 503
//!   (`embedder_unavailable`).
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
//! Beside them, a host mounts another protocol on the same listener with
//! [`Server::with_service`] (`persist serve` mounts its MCP server so): a tower service at a
//! path and the paths below it, behind the same admission (host check, limits, request slot,
//! access line, `x-request-id`) and auth as the API, given the caller's
//! [`Context`](persist_core::Context) in the request's extensions. Its paths are not in the
//! OpenAPI document: what they answer is that protocol's.
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
//!
//! # How the crate is laid out
//!
//! In rooms, each a folder (or a file) that imports only from the rooms before it, never from
//! one after it nor from the crate's root (which only declares them and re-exports the public
//! items):
//!
//! 1. `http/`: the HTTP plumbing, importing nothing outside its folder: errors, JSON on the
//!    wire, auth and its reload, limits, hosts, admission, the access line and metrics, the
//!    accept loop, what a request carries (its id, tenant, query, body), mounted services.
//! 2. `ui/`: the AI SDK's UI message stream and chat routes ([`ui`]), on `http` only.
//! 3. `state.rs`: the request state, what the handlers are given: the pipeline, auth, limits,
//!    shutdown and embedder (`App`), a request's caller and scoped store (`Caller`), its body.
//! 4. `api/`: the Conversations API's routes, its items and the `Idempotency-Key`.
//! 5. `extensions/`: persist's extensions and the probes, one file each, on the API.
//! 6. `spec/`: the route table (which names the handlers), the OpenAPI document and its
//!    schemas.
//! 7. `server.rs`: [`Server`], the builder and entry point, on all of them.

#![forbid(unsafe_code)]

mod api;
mod extensions;
mod http;
mod server;
mod spec;
mod state;
pub mod ui;

pub use self::api::conversations::{MAX_CREATE_ITEMS, METADATA_KEY, MIRROR_PREFIX, USER_KEY};
pub use self::api::idempotency::MAX_KEY_BYTES;
pub use self::api::items::MAX_STRING_BYTES;
pub use self::http::auth::{ApiKeys, Auth, MIN_KEY_BYTES};
pub use self::http::error::ApiError;
pub use self::http::extract::HttpRequestId;
pub use self::http::limits::Limits;
pub use self::http::metrics;
pub use self::server::Server;
pub use axum::http::HeaderName;
