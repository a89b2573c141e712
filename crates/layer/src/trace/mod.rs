//! A `tracing` span per call (writes, reads, session requests, pings): op, thread, tenant,
//! message id, seq, version, rows read, outcome and duration.
//!
//! Each write runs inside an `INFO` span named `persist` and ends with one event (`INFO` on
//! success, `WARN` on error) carrying the same fields. A content update that does not finalize
//! (one step of a streamed reply, many per reply) is traced at `DEBUG` instead, its failures
//! still at `WARN`. The message's id is the field `message_id` (`message` is the event's own
//! text in `tracing`). Content is **not** recorded by default (it is the users' conversation);
//! [`TraceLayer::with_content`] opts in.
//!
//! Spans and events go to `tracing` subscribers only. When no subscriber is installed, or none
//! enables `INFO`, the layer creates no span at all and costs one atomic load, even when
//! `tracing`'s `log` feature is on (some dependencies, sqlx among them, turn it on): nothing of
//! this layer is forwarded to the `log` crate.
//!
//! # Example
//!
//! ```
//! use persist::{args::Add, layer::TraceLayer, Content, Pipeline, Role, ThreadId};
//! use persist::memory::MemoryBackend;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pipeline = Pipeline::builder().layer(TraceLayer::new()).build(MemoryBackend::new());
//! pipeline.add(Add::new(ThreadId::new("t1")?, Role::User, Content::text("hi"))).await?;
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

mod future;
mod layer;

use std::task::{Context, Poll};
use std::time::Instant;

use tower::Service;
use tracing::field::{Empty, display};
use tracing::level_filters::{LevelFilter, STATIC_MAX_LEVEL};
use tracing::{Level, Span};

pub use self::future::ResponseFuture;
pub use self::layer::TraceLayer;
use persist_core::{PersistArgs, PersistError, PersistResult};

/// The service of [`TraceLayer`].
#[derive(Debug, Clone)]
pub struct Trace<S> {
    inner: S,
    record_content: bool,
}

impl<S> Service<PersistArgs> for Trace<S>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
{
    type Response = PersistResult;
    type Error = PersistError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PersistError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, args: PersistArgs) -> Self::Future {
        let Some((span, level)) = self.span(&args) else {
            return ResponseFuture::new(self.inner.call(args), None);
        };
        let start = Instant::now();
        let future = span.in_scope(|| self.inner.call(args));
        ResponseFuture::new(future, Some((span, start, level)))
    }
}

impl<S> Trace<S> {
    /// The span of a write, or `None` when no subscriber wants it: such a span is neither
    /// entered nor kept, which would only cost (and, with `tracing`'s `log` feature, format
    /// activity lines for a logger that is not there).
    fn span(&self, args: &PersistArgs) -> Option<(Span, Level)> {
        // One step of a streamed reply: there are many per reply.
        let level = match args {
            PersistArgs::UpdateContent(update) if !update.is_final() => Level::DEBUG,
            _ => Level::INFO,
        };
        if !(level <= STATIC_MAX_LEVEL && level <= LevelFilter::current()) {
            return None;
        }
        macro_rules! span {
            ($level:expr) => {
                tracing::span!(
                    $level,
                    "persist",
                    op = %args.op(),
                    thread = Empty,
                    tenant = Empty,
                    request_id = Empty,
                    message_id = Empty,
                    seq = Empty,
                    version = Empty,
                    outcome = Empty,
                    duration_us = Empty,
                    rows = Empty,
                    content = Empty,
                )
            };
        }
        let span = if level == Level::DEBUG { span!(Level::DEBUG) } else { span!(Level::INFO) };
        if span.is_disabled() {
            return None;
        }
        span.record("request_id", display(args.context().request_id()));
        if let Some(thread) = args.thread_id() {
            span.record("thread", display(thread));
        }
        if let Some(tenant) = args.context().tenant() {
            span.record("tenant", display(tenant));
        }
        if let Some(id) = args.message_id() {
            span.record("message_id", display(id));
        }
        if let (true, Some(content)) = (self.record_content, args.content()) {
            span.record("content", display(content.as_json()));
        }
        Some((span, level))
    }
}
