//! `--embeddings-url` and its flags: the OpenAI-compatible embeddings endpoint `persist serve`
//! and `persist mcp` embed with, for recall.

use std::time::Duration;

use clap::Args;
use persist::Pipeline;
use persist::recall::{AutoEmbedLayer, OpenAiEmbedder, VectorIndex};

use crate::error::{CliError, CliResult};
use crate::text::parse_duration;

/// The variable holding the endpoint's key (never a flag: it would show in the process list).
pub(crate) const KEY_VAR: &str = "PERSIST_EMBEDDINGS_KEY";

/// The embeddings endpoint's flags.
#[derive(Debug, Clone, Args)]
pub(crate) struct EmbeddingsArgs {
    /// An OpenAI-compatible embeddings endpoint, as an SDK's base URL (persist POSTs to
    /// URL/embeddings): new messages are embedded as they are written, and recall is served.
    /// Its key, if it takes one, is read from $PERSIST_EMBEDDINGS_KEY.
    #[arg(long, env = "PERSIST_EMBEDDINGS_URL", value_name = "URL")]
    embeddings_url: Option<String>,
    /// The embedding model, stored with every vector (vectors of one model are compared with
    /// each other only).
    #[arg(
        long,
        env = "PERSIST_EMBEDDINGS_MODEL",
        value_name = "NAME",
        default_value = "text-embedding-3-small",
        requires = "embeddings_url"
    )]
    embeddings_model: String,
    /// The vectors' length, asked of the endpoint (models that take `dimensions`) and checked on
    /// every answer.
    #[arg(long, env = "PERSIST_EMBEDDINGS_DIMENSIONS", value_name = "N", requires = "embeddings_url",
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    embeddings_dimensions: Option<u32>,
    /// How long one call to the endpoint may take; a message whose embedding failed is stored
    /// without its vector (and logged).
    #[arg(long, env = "PERSIST_EMBEDDINGS_TIMEOUT", value_name = "DURATION", default_value = "30s",
          value_parser = parse_duration, requires = "embeddings_url")]
    embeddings_timeout: Duration,
    /// The memory recall's vector index may hold, in MiB: each tenant's vectors are kept in
    /// memory once asked for, kept current from the change feed, and `nearest` answers from them
    /// exactly as the store's scan would; past the budget the tenants asked least recently are
    /// dropped. 0 keeps no index (every query scans the store).
    #[arg(
        long,
        env = "PERSIST_VECTOR_INDEX_MIB",
        value_name = "MIB",
        default_value_t = 1024,
        requires = "embeddings_url"
    )]
    vector_index_mib: u64,
    /// A folder where the vector index writes each tenant's index to a file and reads it back
    /// when started again (a restart then reads the file and the changes since, not every
    /// vector). Without it, each tenant's index is built from the rows at its first query.
    #[arg(long, env = "PERSIST_VECTOR_INDEX_DIR", value_name = "DIR", requires = "embeddings_url")]
    vector_index_dir: Option<std::path::PathBuf>,
}

impl EmbeddingsArgs {
    /// The embedder these flags name, when `--embeddings-url` is given.
    pub(crate) fn embedder(&self) -> CliResult<Option<OpenAiEmbedder>> {
        let Some(url) = &self.embeddings_url else { return Ok(None) };
        let refused = |error: persist::PersistError| match error {
            persist::PersistError::InvalidInput { field: "model", reason } => {
                CliError::usage(format!("--embeddings-model: {reason}"))
            }
            persist::PersistError::InvalidInput { reason, .. } => {
                CliError::usage(format!("--embeddings-url: {reason}"))
            }
            other => CliError::failed(other.to_string()),
        };
        let mut embedder = OpenAiEmbedder::new(url.as_str(), self.embeddings_model.as_str())
            .map_err(refused)?
            .with_timeout(self.embeddings_timeout);
        match std::env::var(KEY_VAR) {
            Ok(key) if !key.trim().is_empty() => embedder = embedder.with_api_key(key.trim()),
            Ok(_) | Err(std::env::VarError::NotPresent) => {}
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(CliError::usage(format!("{KEY_VAR} is not UTF-8 text")));
            }
        }
        if let Some(dimensions) = self.embeddings_dimensions {
            embedder = embedder.with_dimensions(dimensions as usize);
        }
        Ok(Some(embedder))
    }

    /// The vector index these flags ask for, when recall is served and the budget is not 0.
    pub(crate) fn vector_index(&self) -> Option<VectorIndex> {
        let budget = usize::try_from(self.vector_index_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        (self.embeddings_url.is_some() && budget > 0).then(|| {
            let index = VectorIndex::new().with_budget(budget);
            match &self.vector_index_dir {
                Some(dir) => index.with_snapshots(dir),
                None => index,
            }
        })
    }
}

/// `pipeline` embedding what is written with `embedder`, when there is one, and answering
/// `nearest` from `index`, when there is one.
pub(crate) fn embedding(
    pipeline: Pipeline,
    embedder: Option<&OpenAiEmbedder>,
    index: Option<&VectorIndex>,
) -> Pipeline {
    let pipeline = match embedder {
        Some(embedder) => Pipeline::builder().layer(AutoEmbedLayer::new(embedder.clone())).build(pipeline),
        None => pipeline,
    };
    match index {
        Some(index) => Pipeline::builder().layer(index.layer()).build(pipeline),
        None => pipeline,
    }
}
