//! Store AI-agent conversations through a tower middleware pipeline.
//!
//! Every write is a typed [`PersistArgs`] (`add`, `reserve`, `update_content`, `update`,
//! `delete`) that flows through the layers a host app stacked, down to a [`Terminal`] that
//! applies it to a [`Backend`] and answers a typed [`PersistResult`]:
//!
//! ```text
//!              Pipeline (first layer added sees the request first)
//!   PersistArgs ─▶ [ layer 1 ] ─▶ [ layer 2 ] ─▶ … ─▶ Terminal ─▶ Backend
//!   PersistResult ◀───────────────────────────────────────┘   (memory, SQLite, PostgreSQL)
//! ```
//!
//! Layers observe (indexing, audit), rewrite, redirect (`layer::route`) or short-circuit
//! (`layer::intercept`) any request. **Every call goes through the layers**: reads
//! ([`Pipeline::get`], [`Pipeline::list`], [`Pipeline::threads`], …), session requests
//! ([`Pipeline::bind`], [`Pipeline::resolve`], …) and [`Pipeline::ping`] are `PersistArgs`
//! variants too, answered by `PersistResult` variants.
//!
//! A thread's identity is `(tenant, thread_id)`: the tenant of a request's [`Context`] names
//! its namespace (see [`Context`]). A thread's lifecycle goes through the layers too:
//! truncation and purge are deletes ([`args::Delete::after`], [`args::Delete::purge`]), fork
//! and retention are composed of ordinary requests ([`lifecycle`]), called as methods of
//! [`PipelineExt`] (`use persist::prelude::*`).
//!
//! # The crates behind this facade
//!
//! | path | crate | feature | default |
//! |---|---|---|---|
//! | the root, `args`, `read`, `feed`, `session`, `summary`, … | `persist-core`: the contract | | always |
//! | [`lifecycle`], [`maintenance`], [`compaction`], [`live`], [`PipelineExt`] | `persist-ops` | | always |
//! | `convert` | `persist-convert` | `convert` | yes |
//! | `layer` | `persist-layer` | `layers` | yes |
//! | `shard` | `persist-shard` | `shards` | yes |
//! | `memory::MemoryBackend`: in-process, for tests and ephemeral stores | `persist-memory` | `memory` | yes |
//! | `sqlite::SqliteBackend`: the embedded default, one file | `persist-sqlite` | `sqlite` | yes |
//! | `postgres::PostgresBackend`: many app instances sharing one database | `persist-postgres` | `postgres` | no |
//! | `encrypt::EncryptLayer`: content and chosen metadata sealed at rest | `persist-encrypt` | `encryption` | no |
//!
//! [`open`] opens a store from its URL (`sqlite:chat.db`, `postgres://…?schema=chat`, `memory:`),
//! as the `persist` command line does; see [`store_url`].
//!
//! # Writing a plugin
//!
//! 1. `layer::from_fn()`: an async closure, like axum's `from_fn`;
//! 2. `layer::ObserveLayer`: hook closures that only watch;
//! 3. a `tower::Layer` + `Service` + pin-projected future, for layers that must cost nothing.
//!
//! A plugin crate needs only the contract (`persist-core`), as the backends do.
//!
//! # Example
//!
//! ```
//! use persist::{args::{Add, Reserve, UpdateContent}, layer::ObserveLayer, read::ListMessages};
//! use persist::{Content, PersistArgs, Pipeline, Role, ThreadId};
//! use persist::memory::MemoryBackend;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pipeline = Pipeline::builder()
//!     .layer(ObserveLayer::new().on_args(|args: &PersistArgs| println!("{} {:?}", args.op(), args.thread_id())))
//!     .build(MemoryBackend::new());
//!
//! let thread = ThreadId::new("chat-1")?;
//! pipeline.add(Add::new(thread.clone(), Role::User, Content::text("Hello"))).await?;
//! let reply = pipeline.reserve(Reserve::new(thread.clone(), Role::Assistant)).await?.message;
//! pipeline.update_content(UpdateContent::new(thread.clone(), reply.id, Content::text("Hi!"))).await?;
//!
//! let page = pipeline.list(ListMessages::new(thread)).await?;
//! assert_eq!(page.items.iter().map(|m| m.content.to_text()).collect::<Vec<_>>(), ["Hello", "Hi!"]);
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub use persist_core::*;

pub use persist_ops::{PipelineExt, compaction, lifecycle, live, maintenance};

/// Converters between messages and the formats apps already hold (feature `convert`).
#[cfg(feature = "convert")]
pub mod convert {
    pub use persist_convert::*;
}

/// The ready-made layers (feature `layers`).
#[cfg(feature = "layers")]
pub mod layer {
    pub use persist_layer::*;
    /// Compaction in the background (in `persist-ops`, beside the compaction it runs; also
    /// [`compaction::CompactLayer`](crate::compaction::CompactLayer)).
    pub use persist_ops::compaction::layer as compact;
    pub use persist_ops::compaction::{CompactLayer, CompactWorker};
}

/// Tenants placed on several stores (feature `shards`).
#[cfg(feature = "shards")]
pub mod shard {
    pub use persist_shard::*;
}

/// Semantic recall (feature `recall`): the app's embedder, a layer that embeds what is
/// written, recall by vectors and full text with neighbours; see [`vector`] for what the stores
/// keep. With the feature `recall-openai`, `OpenAiEmbedder`: an OpenAI-compatible embeddings
/// endpoint as the embedder.
#[cfg(feature = "recall")]
pub mod recall {
    pub use persist_recall::*;
}

/// What an app using persist imports: `use persist::prelude::*;` brings in the traits whose
/// methods it calls ([`PipelineExt`]: fork, prune, pop, cleanup, compaction, live replies).
pub mod prelude {
    pub use persist_ops::PipelineExt;
    #[cfg(feature = "recall")]
    pub use persist_recall::RecallExt;
}

pub mod store_url;
pub use self::store_url::{OpenStore, StoreUrl, open};

/// The in-memory backend (feature `memory`).
#[cfg(feature = "memory")]
pub mod memory {
    pub use persist_memory::*;
}

/// The PostgreSQL backend (feature `postgres`).
#[cfg(feature = "postgres")]
pub mod postgres {
    pub use persist_postgres::*;
}

/// Encryption at rest as a layer (feature `encryption`).
#[cfg(feature = "encryption")]
pub mod encrypt {
    pub use persist_encrypt::*;
}

/// OpenAI's Conversations API served on a pipeline (feature `serve`): what `persist serve`
/// runs, for a host to mount in its own axum app.
#[cfg(feature = "serve")]
pub mod serve {
    pub use persist_serve::*;
}

/// persist over the Model Context Protocol (feature `mcp`): a tenant's threads, search, recall
/// and working memory as MCP tools and resources, over stdio or streamable HTTP; what
/// `persist mcp` runs.
#[cfg(feature = "mcp")]
pub mod mcp {
    pub use persist_mcp::*;
}

/// The SQLite backend (feature `sqlite`).
#[cfg(feature = "sqlite")]
pub mod sqlite {
    pub use persist_sqlite::*;
}
