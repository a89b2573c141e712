//! `persist mcp`: the store's threads, search, recall and working memory as MCP tools, over
//! standard input and output (see `persist::mcp`).

use persist::encrypt::EncryptLayer;
use persist::layer::TraceLayer;
use persist::mcp::McpServer;
use persist::{Pipeline, TenantId};
use tracing_subscriber::filter::Targets;

use crate::commands::embeddings::{EmbeddingsArgs, embedding};
use crate::commands::serve::init_logs;
use crate::error::{CliError, CliResult};
use crate::store::{Mode, Store};

/// Serves one MCP client over stdio until it closes standard input; the log (text lines, at
/// `log_filter`) goes to standard error, standard output being the protocol's.
pub(crate) async fn mcp(
    url: &str,
    encrypt: Option<EncryptLayer>,
    tenant: Option<TenantId>,
    embeddings: &EmbeddingsArgs,
    log_filter: Targets,
) -> CliResult {
    init_logs(false, log_filter);
    let embedder = embeddings.embedder()?;
    let index = embeddings.vector_index();
    let store = Store::open(url, Mode::CreateIfMissing).await?.with_keys(encrypt.as_ref());
    let pipeline = Pipeline::builder().layer(TraceLayer::new()).build(embedding(
        store.keyed().clone(),
        embedder.as_ref(),
        index.as_ref(),
    ));
    let mut server = McpServer::new(pipeline).with_tenant(tenant);
    if let Some(embedder) = embedder {
        server = server.with_embedder(embedder);
    }
    tracing::info!(store = %store.label, "serving MCP on stdio");
    let served = server.serve_stdio().await;
    store.close().await;
    served.map_err(|e| CliError::context("serving MCP on stdio", &e))
}
