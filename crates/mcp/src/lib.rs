//! persist over the **Model Context Protocol**: an agent's memory (a tenant's threads, search
//! by words, recall by meaning, working memory) as MCP tools and resources, on the official
//! Rust SDK (`rmcp`), for any MCP client: desktop and coding agents, and the agent SDKs that
//! take an MCP server as a set of tools.
//!
//! [`McpServer`] answers MCP over a [`Pipeline`]: every tool call becomes typed requests through
//! it, so the layers a host stacked there (tracing, encryption, audit, an embedding layer) see
//! them, and several servers share one PostgreSQL store.
//!
//! # Tools
//!
//! | tool | does |
//! |---|---|
//! | `list_threads` | the tenant's threads, most recently written first, a page at a time |
//! | `read_thread` | a thread: the compacted view (its latest summary and the messages after it) by default, or every message of its active branch; paged |
//! | `search_messages` | messages holding every word of a query (`"a phrase"`, `pref*`), newest first, in the tenant or one thread; paged |
//! | `recall` | the messages most like a text, by their embeddings (needs an [`Embedder`]) |
//! | `read_memory` | a resource's working memory (a JSON document and its version) |
//! | `update_memory` | a JSON merge patch applied in the store (two patches at once both survive), or a replacement, compare-and-set with the version read |
//! | `append_message` | a message added to a thread (created if new), with the thread's metadata merged, idempotent with a key |
//!
//! Each answer is JSON, as `structuredContent` and as the one text content. Pages are at most
//! [`MAX_PAGE`] items (and a thread's page at most [`MAX_PAGE_BYTES`] of text), and a page that
//! has more carries `next_cursor`, an opaque string to pass back as `cursor`; a message's text
//! longer than [`MAX_TEXT_CHARS`] is cut and marked `truncated`: no answer is unbounded. Bad input (a missing or mistyped argument, a limit out of
//! range, a thread that is not there) is a tool result with `isError: true` and a sentence the
//! model can act on, never a failure of the server; so is a version conflict of the working
//! memory (it names the version to read again), and a store that is down (the cause is logged).
//!
//! # Resources
//!
//! Each thread is a resource, `persist://threads/{thread_id}` (listed, a page at a time, and
//! given as a template): reading it answers the `read_thread` tool's compacted view as JSON.
//!
//! # Tenancy
//!
//! Every call is confined to one tenant, as in `persist serve`'s HTTP API: another tenant's
//! thread is not found. Over stdio it is the tenant the server was given
//! ([`McpServer::with_tenant`]). Over HTTP ([`McpServer::http_service`]) it is the caller's: the
//! host that mounts the service authenticates each request and puts the caller's
//! [`Context`] in the request's extensions (`persist serve` does, its API
//! keys naming tenants); a request without one is served with the server's own tenant.
//!
//! # Recall
//!
//! `recall` embeds its text with the [`Embedder`] given to [`McpServer::with_embedder`] and
//! reads the messages whose stored vectors are nearest (through
//! [`RecallExt`](persist_recall::RecallExt)). The vectors are written by an
//! [`AutoEmbedLayer`](persist_recall::AutoEmbedLayer) of the same embedder in the pipeline
//! (`persist mcp --embeddings-url` stacks one). Without an embedder, `recall` answers a tool error
//! saying so.
//!
//! # Example
//!
//! ```no_run
//! use persist::{Pipeline, TenantId};
//! use persist::sqlite::SqliteBackend;
//! use persist_mcp::McpServer;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let pipeline = Pipeline::new(SqliteBackend::open("memory.db").await?);
//! // Until the client closes standard input.
//! McpServer::new(pipeline).with_tenant(Some(TenantId::new("acme")?)).serve_stdio().await?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod args;
mod handler;
#[cfg(feature = "http")]
mod http;
mod render;
mod tools;

#[cfg(feature = "http")]
pub use self::http::McpHttpService;

use std::fmt;
use std::sync::Arc;

use persist_core::{Context, Pipeline, TenantId};
use persist_recall::Embedder;

pub use self::render::MAX_TEXT_CHARS;
pub use self::tools::{MAX_PAGE, MAX_PAGE_BYTES, TOOLS};

/// The MCP server of a [`Pipeline`]: its tools and resources (see the [crate docs](crate)),
/// served over stdio ([`serve_stdio`](Self::serve_stdio)), any transport rmcp takes
/// ([`rmcp::ServiceExt::serve`]), or streamable HTTP ([`http_service`](Self::http_service)).
#[derive(Clone)]
pub struct McpServer {
    pipeline: Pipeline,
    tenant: Option<TenantId>,
    embedder: Option<Arc<dyn Embedder>>,
}

impl fmt::Debug for McpServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpServer")
            .field("tenant", &self.tenant)
            .field("embedder", &self.embedder.as_ref().map(|embedder| embedder.model().to_owned()))
            .finish_non_exhaustive()
    }
}

impl McpServer {
    /// A server of `pipeline`'s threads without a tenant, without recall.
    pub fn new(pipeline: Pipeline) -> Self {
        Self { pipeline, tenant: None, embedder: None }
    }

    /// The tenant its calls are for when no caller's context says otherwise (stdio: every call).
    pub fn with_tenant(mut self, tenant: Option<TenantId>) -> Self {
        self.tenant = tenant;
        self
    }

    /// Recall by `embedder`, the model that embedded the stored vectors (its
    /// [`model`](Embedder::model) picks them).
    pub fn with_embedder(mut self, embedder: impl Embedder) -> Self {
        self.embedder = Some(Arc::new(embedder));
        self
    }

    /// The context of a call without a caller's: the server's tenant.
    fn own_context(&self) -> Context {
        Context::new().for_tenant(self.tenant.clone()).with_principal("persist-mcp")
    }

    /// Serves one client over this process's standard input and output until it closes them
    /// (what a desktop agent's configuration launches). Nothing else may write to standard
    /// output: logs go to standard error.
    ///
    /// # Errors
    ///
    /// The transport's, when the client's first message is not an MCP initialization or the
    /// streams fail.
    #[cfg(feature = "stdio")]
    pub async fn serve_stdio(self) -> std::io::Result<()> {
        use rmcp::ServiceExt as _;
        let running = self.serve(rmcp::transport::stdio_pipes()).await.map_err(std::io::Error::other)?;
        running.waiting().await.map_err(std::io::Error::other)?;
        Ok(())
    }
}
