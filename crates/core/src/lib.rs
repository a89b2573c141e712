//! The contract of persist: what backends, layers and composed operations build on.
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
//! This crate holds that contract and nothing built on it: the model (ids, [`Content`] and its
//! [`Part`]s, [`Message`], [`Thread`], [`Metadata`], [`PersistError`]), the [`Context`] every
//! request carries and its [`Consistency`], the requests family by family ([`args`], [`read`],
//! [`session`], [`restore`], [`once`], [`lease`], [`summary`], [`branch`], [`search`]) and
//! their answers, the change [`feed`], the [`Backend`] trait with its [`Capabilities`], the
//! [`Terminal`], and the [`Pipeline`] (with its tenant-bound [`Scoped`] handle) that sends any
//! request through a stack of `tower` layers. [`schema`] is where a store's schema stands;
//! [`raw`] is what crates built on this one need and an app does not.
//!
//! **Every call goes through the layers**: reads ([`Pipeline::get`], [`Pipeline::list`],
//! [`Pipeline::threads`], …), session requests ([`Pipeline::bind`], [`Pipeline::resolve`], …) and
//! [`Pipeline::ping`] are `PersistArgs` variants too, answered by `PersistResult` variants. One
//! request type is the shape in which a layer written for writes only (a `Service<PersistArgs>`)
//! still composes: what it does not match it passes on to the next layer, with no code for
//! reads. A thread's identity is `(tenant, thread_id)`: the tenant of a request's [`Context`]
//! names its namespace.
//!
//! Who depends on it: each backend (`persist-memory`, `persist-sqlite`, `persist-postgres`),
//! encryption at rest (`persist-encrypt`), and the crates of features above it: converters
//! (`persist-convert`), composed operations and live replies (`persist-ops`), the ready-made
//! layers (`persist-layer`), shards (`persist-shard`). An app depends on the facade `persist`,
//! which re-exports all of them under one set of paths.
//!
//! # Writing a backend
//!
//! Implement [`Backend`] (its [`Capabilities`] say what it supports; what it does not is refused
//! with `Unsupported`), and run the conformance suite (`persist-conformance`) on it: the same
//! input must get the same answer on every backend.
//!
//! # Example
//!
//! ```
//! use persist::{args::{Add, Reserve, UpdateContent}, read::ListMessages};
//! use persist::{Content, Pipeline, Role, ThreadId};
//! use persist::memory::MemoryBackend;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pipeline = Pipeline::new(MemoryBackend::new());
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

// The code, by concept. Read top to bottom, the modules tell how a request flows; each imports
// only from those above it, and each folder's `mod.rs` tells its part of the story:
//
// - `model/`: the data every part names: ids, JSON rules, content, metadata, messages and
//   threads, pages, the error type, the operation labels.
// - `consistency.rs`: commit positions, and the consistency a request carries so that a read
//   from a lagging copy of the store still sees its caller's writes.
// - `context.rs`: the `Context` every request carries (request id, tenant, consistency,
//   extensions).
// - `feed/`: the change feed: its events, reads and pages, retention, the in-memory feed, the
//   hub that wakes subscribers, and subscriptions.
// - `request/`: what a caller asks, family by family (`write`, `read`, `session`, `restore`,
//   `once`, `lease`, `summary`, `branch`, `search`, `vector`), the `PersistArgs` enum that carries any of
//   them (`args`), the rules of repeats, and the answers (`result`).
// - `schema.rs`: where a store's schema stands against a backend build's migrations.
// - `pipeline/`: the `Backend` trait, the `Terminal` over it, the `PipelineBuilder` that stacks
//   layers, the `Pipeline` handle and its typed calls, the tenant-bound `Scoped` handle.
// - `raw.rs`: what crates built on this one (backends, layers, composed operations) need and an
//   app does not.
//
// Features built on the contract live in crates above it: converters (`persist-convert`),
// composed operations and live replies (`persist-ops`), layers (`persist-layer`), shards
// (`persist-shard`), recall (`persist-recall`).
#[macro_use]
mod requests;
#[macro_use]
mod model;

mod consistency;
mod context;

pub mod feed;
mod request;
pub mod schema;

mod pipeline;

pub mod raw;

pub use self::consistency::{CommitPosition, Consistency};
pub use self::context::{Context, Maintenance};
pub use self::model::error::{BoxError, PersistError, ReplyConflict, Result};
pub use self::model::id::{
    AgentId, IdempotencyKey, MAX_ID_BYTES, MessageId, ProviderId, RequestId, ResourceId, RuntimeId, SessionId,
    TenantId, ThreadId,
};
pub use self::model::op::PersistOp;
pub use self::model::{
    Content, MAX_JSON_DEPTH, MAX_ROLE_BYTES, Message, Metadata, Part, PartOffset, Role, Status, Thread, Timestamp,
    ToolCallRef, ToolNames, ToolResultRef,
};
pub use self::pipeline::{
    ApplyNow, Backend, BoxPersistService, Capabilities, Pipeline, PipelineBuilder, Scoped, Terminal, TerminalFuture,
};
pub use self::read::{Order, Page};
pub use self::request::args::{PersistArgs, Target};
pub use self::request::result::{
    Added, ContentUpdated, Deleted, PersistResult, Reserved, Restored, TurnAppended, Updated,
};
pub use self::request::{
    args, branch, lease, once, read, records, restore, search, session, spent, summary, vector, working,
};
