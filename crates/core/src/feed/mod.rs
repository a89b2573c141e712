//! The change feed: every committed write, in order, from a position a subscriber resumes at.
//!
//! A backend that keeps a feed ([`Capabilities::feed`](crate::Capabilities::feed)) records a
//! [`FeedEvent`] for each message inserted, changed or removed, for each vector a standalone
//! [`Embed`](crate::vector::Embed) wrote ([`PersistOp::Embed`](crate::PersistOp::Embed), of its
//! message), for each change of a thread's version or tombstone, and for each working memory
//! document written (of its resource, not of
//! a thread: [`FeedScope::Memory`], [`Change::resource`]), **in the same transaction as the write**: a write that rolled
//! back has no event, a committed write always has one. Events are numbered by a store-wide
//! `position` (1, 2, 3…, in commit order, never reused) that a subscriber keeps and resumes
//! from, as SSE's `Last-Event-ID`.
//!
//! - [`ReadFeed`] reads the events after a position: of one thread, of one working memory
//!   document, of the context's tenant, or of the whole store ([`across_tenants`](ReadFeed::across_tenants)). It goes through the
//!   pipeline like any read, so layers see it and the context's tenant scopes it.
//! - [`Pipeline::subscribe`](crate::Pipeline::subscribe) follows a scope: it reads through the
//!   pipeline whenever the backend's [`FeedHub`] says that scope has new events, so a
//!   subscriber to one thread is woken by that thread's writes only, and a slow subscriber
//!   holds up nothing but itself (it reads at its own pace from the stored feed).
//! - The feed keeps events for a bounded time and number ([`FeedRetention`]). Resuming from a
//!   position the feed no longer holds answers [`PersistError::FeedGap`](crate::PersistError::FeedGap): the client reloads
//!   instead of silently missing writes.
//!
//! Events say what changed, not the content: a UI that sees `update_content` of a message
//! reads it (through the pipeline, so a decrypting layer opens it). The exception is an
//! update that added to the end of the content (a streamed token): its event carries the
//! content added ([`Change::delta`]), so a follower of a reply streams tokens without reading
//! the message (live replies, in persist-ops, build on it).
//!
//! # Example
//!
//! ```
//! use persist::{args::Add, feed::ReadFeed, Content, Pipeline, PersistOp, Role, ThreadId};
//! use persist::memory::MemoryBackend;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pipeline = Pipeline::new(MemoryBackend::new());
//! let thread = ThreadId::new("t1")?;
//! let mut updates = pipeline.subscribe(ReadFeed::thread(thread.clone())).await?;
//! pipeline.add(Add::new(thread.clone(), Role::User, Content::text("hi"))).await?;
//! let event = updates.next().await?;
//! assert_eq!((event.change.op, event.change.seq), (PersistOp::Add, Some(1)));
//!
//! // A client that saw nothing after position 0 reads it again, exactly once.
//! let missed = pipeline.read_feed(ReadFeed::thread(thread).after(0)).await?;
//! assert_eq!(missed.events, [event]);
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

mod event;
mod hub;
mod memory;
mod read;
mod retention;
pub(crate) mod subscription;

pub use self::event::{Change, FeedEvent, FeedScope, Removed, StoredEvent, Subject};
pub use self::hub::FeedHub;
pub use self::memory::MemoryFeed;
pub use self::read::{FeedPage, ReadFeed};
pub use self::retention::FeedRetention;
pub use self::subscription::Subscription;
