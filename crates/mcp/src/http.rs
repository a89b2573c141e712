//! [`McpServer::http_service`]: MCP over streamable HTTP, as a tower service a host mounts.

use std::sync::Arc;

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};

use crate::McpServer;

/// The tower service of [`McpServer::http_service`].
pub type McpHttpService = StreamableHttpService<McpServer, LocalSessionManager>;

impl McpServer {
    /// MCP over streamable HTTP: a tower service answering `POST` requests at the path a host
    /// mounts it on (`persist serve` mounts it at `/mcp`).
    ///
    /// It is **stateless**: each request is answered on its own, with a JSON body, and no MCP
    /// session is kept between requests, so a client may reach any of several instances behind
    /// a balancer (the store is what they share). It checks neither `Host` nor `Origin` and
    /// authenticates nobody: the host does both before the request reaches it, and puts the
    /// caller's [`Context`](persist_core::Context) in the request's extensions (its tenant is
    /// the one every call of the request is confined to); a request without one is served with
    /// the server's own tenant ([`with_tenant`](Self::with_tenant)), so never mount it
    /// unauthenticated on an address others reach.
    pub fn http_service(self) -> McpHttpService {
        let config = StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true)
            .with_sse_keep_alive(None)
            .disable_allowed_hosts();
        StreamableHttpService::new(move || Ok(self.clone()), Arc::new(LocalSessionManager::default()), config)
    }
}
