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
//! Layers observe (indexing, audit), rewrite, redirect ([`layer::route`]) or short-circuit
//! ([`layer::intercept`]) any request. **Every call goes through the layers**: reads
//! ([`Pipeline::get`], [`Pipeline::list`], [`Pipeline::threads`], …), session requests
//! ([`Pipeline::bind`], [`Pipeline::resolve`], …) and [`Pipeline::ping`] are `PersistArgs`
//! variants too, answered by `PersistResult` variants. One request type is the shape in which
//! a layer written for writes only (a `from_fn` closure, a `Service<PersistArgs>`) still
//! composes: what it does not match it passes on to the next layer, with no code for reads.
//!
//! A thread's identity is `(tenant, thread_id)`: the tenant of a request's [`Context`] names
//! its namespace (see [`Context`]). A thread's lifecycle goes through the layers too:
//! truncation and purge are deletes ([`args::Delete::after`], [`args::Delete::purge`]), fork
//! and retention are composed of ordinary requests ([`lifecycle`]).
//!
//! # Writing a plugin
//!
//! 1. [`layer::from_fn()`]: an async closure, like axum's `from_fn`;
//! 2. [`layer::ObserveLayer`]: hook closures that only watch;
//! 3. a `tower::Layer` + `Service` + pin-projected future, for layers that must cost nothing.
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
//   `once`, the requests of `lifecycle` and `maintenance`), the `PersistArgs` enum that carries
//   any of them (`args`), the rules of repeats, and the answers (`result`).
// - `convert/`: converters between messages and the formats apps already hold (OpenAI
//   Responses and Chat, Anthropic, Vercel UI), keeping what a format carries beyond the parts.
// - `pipeline/`: the `Backend` trait, the `Terminal` over it, the `PipelineBuilder` that stacks
//   layers, the `Pipeline` handle and its typed calls, the tenant-bound `Scoped` handle.
// - `ops/`: operations composed of several requests (fork, prune, cleanup), as `Pipeline`
//   methods.
// - `live/`: live replies, composed on the feed like `ops/`: a reply followed as a stream of
//   text, a stop asked by any client and awaited by the generator.
// - `shard/`: tenants placed on several stores, a backend over them (placement directory,
//   answers across tenants merged).
// - `layer/`: the ready-made layers, one folder or file each.
mod model;

mod consistency;
mod context;

pub mod feed;
mod request;

pub mod convert;

mod pipeline;

mod ops;
pub use self::ops::compaction;

pub mod live;

pub mod shard;

pub mod layer;

pub use self::consistency::{CommitPosition, Consistency};
pub use self::context::Context;
pub use self::model::error::{BoxError, PersistError, Result};
pub use self::model::id::{
    AgentId, IdempotencyKey, MAX_ID_BYTES, MessageId, ProviderId, RequestId, RuntimeId, SessionId, TenantId, ThreadId,
};
pub use self::model::op::PersistOp;
pub use self::model::{
    Content, MAX_JSON_DEPTH, MAX_ROLE_BYTES, Message, Metadata, Part, Role, Status, Thread, Timestamp, ToolCallRef,
    ToolResultRef,
};
pub use self::pipeline::{
    ApplyNow, Backend, BoxPersistService, Capabilities, Pipeline, PipelineBuilder, Scoped, Terminal, TerminalFuture,
};
pub use self::read::{Order, Page};
pub use self::request::args::{PersistArgs, Target};
pub use self::request::result::{
    Added, ContentUpdated, Deleted, PersistResult, Reserved, Restored, TurnAppended, Updated,
};
pub use self::request::{args, branch, lease, lifecycle, maintenance, once, read, restore, search, session, summary};
