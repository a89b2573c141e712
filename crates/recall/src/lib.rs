//! Semantic recall for persist: the earlier messages most like a new one, by their embeddings,
//! in a thread, a tenant or a user's threads, with their neighbours, for a model's context.
//!
//! persist owns the data and the app owns the model: the stores keep each message's vector
//! ([`persist_core::vector`]: written by an `Embed` request, removed with its message, compared
//! exactly), and this crate adds what runs on top:
//!
//! - [`Embedder`]: the app's embedding model, which persist calls; [`HashEmbedder`], a
//!   deterministic one (feature hashing) for tests and examples; `OpenAiEmbedder` (feature
//!   `openai`), any OpenAI-compatible embeddings endpoint (OpenAI's, vLLM, Ollama, LiteLLM),
//!   over HTTPS with rustls;
//! - [`AutoEmbedLayer`]: embeds what is written, as it is written, through the pipeline;
//! - [`VectorIndex`]: the vectors held in memory, derived from the rows and kept current by the
//!   change feed, so `nearest` scans one buffer and answers exactly what the store's scan does;
//! - [`RecallExt::recall`]: a [`Recall`] read: nearest by vector, fused with full-text search by
//!   reciprocal rank fusion when given keywords, each hit with the messages around it.
//!
//! # Example
//!
//! ```
//! use persist::memory::MemoryBackend;
//! use persist::recall::{AutoEmbedLayer, HashEmbedder, Recall, RecallExt};
//! use persist::args::{Add, Update};
//! use persist::{Content, Context, Metadata, Pipeline, Role, TenantId, ThreadId};
//! use serde_json::json;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let embedder = HashEmbedder::new(384);
//! let pipeline = Pipeline::builder().layer(AutoEmbedLayer::new(embedder.clone())).build(MemoryBackend::new());
//! let acme = pipeline.scoped(Context::new().with_tenant(TenantId::new("acme")?));
//!
//! // Two threads of one user (the host marks a thread's user in its metadata).
//! for (thread, text) in [("monday", "My flight to Lisbon leaves at 9"), ("tuesday", "Remind me to water the plants")] {
//!     let thread = ThreadId::new(thread)?;
//!     acme.add(Add::new(thread.clone(), Role::User, Content::text(text))).await?;
//!     acme.update(Update::thread(thread).with_metadata(Metadata::new().with("user_id", json!("u1")))).await?;
//! }
//! let found = acme.recall(&embedder, Recall::new("when is my flight?").for_resource("user_id", "u1").with_limit(1)).await?;
//! assert_eq!(found.hits[0].message.thread_id.as_str(), "monday");
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod embedder;
mod index;
mod layer;
#[cfg(feature = "openai")]
mod openai;
mod recall;

pub use self::embedder::{Embedder, HashEmbedder};
pub use self::index::{
    DEFAULT_INDEX_BUDGET, DEFAULT_PROBES_ONE_IN, IndexStats, VectorIndex, VectorIndexLayer, VectorIndexService,
};
pub use self::layer::{AutoEmbed, AutoEmbedLayer};
#[cfg(feature = "openai")]
pub use self::openai::{MAX_INPUTS_PER_REQUEST, OpenAiEmbedder};
pub use self::recall::{MAX_MESSAGE_RANGE, MAX_RECALL, RRF_K, Recall, RecallExt, RecallHit, Recalled};
