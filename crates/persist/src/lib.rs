//! Store AI-agent conversations through a tower middleware pipeline.
//!
//! This facade re-exports [`persist_core`] and, by feature, each backend and encryption at rest:
//!
//! | feature | default | what |
//! |---|---|---|
//! | `memory` | yes | [`memory::MemoryBackend`]: in-process, for tests and ephemeral stores |
//! | `sqlite` | yes | [`sqlite::SqliteBackend`]: the embedded default, one file |
//! | `postgres` | no | `postgres::PostgresBackend`: many app instances sharing one database |
//! | `encryption` | no | `encrypt::EncryptLayer`: content and chosen metadata sealed at rest |
//!
//! [`open`] opens a store from its URL (`sqlite:chat.db`, `postgres://…?schema=chat`, `memory:`),
//! as the `persist` command line does; see [`store_url`].
//!
//! See the [`persist_core`] docs for the pipeline, the layers and the backend contract.
//!
//! # Example
//!
//! ```
//! use persist::{args::Add, memory::MemoryBackend, Content, Pipeline, Role, ThreadId};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pipeline = Pipeline::new(MemoryBackend::new());
//! let added = pipeline.add(Add::new(ThreadId::new("t1")?, Role::User, Content::text("hi"))).await?;
//! assert_eq!(added.message.seq, 1);
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub use persist_core::*;

pub mod store_url;
pub use self::store_url::{StoreUrl, open};

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

/// The SQLite backend (feature `sqlite`).
#[cfg(feature = "sqlite")]
pub mod sqlite {
    pub use persist_sqlite::*;
}
