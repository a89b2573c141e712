//! A `tracing` span per call (writes, reads, session requests, pings): op, thread, tenant,
//! message id, seq, version, rows read, outcome and duration.
//!
//! Each call runs inside an `INFO` span named `persist` and ends with one event (`INFO` on
//! success, `WARN` on error) carrying the same fields, whose text says what the call was: `persist
//! read` for a read ([`PersistOp::is_read`](persist_core::PersistOp::is_read)), `persist write`
//! for anything else, `persist read failed` and `persist write failed` for their errors. A
//! content update that does not finalize (one step of a streamed reply, many per reply) is traced
//! at `DEBUG` instead, its failures still at `WARN`. The message's id is the field `message_id`
//! (`message` is the event's own text in `tracing`). Content is **not** recorded by default (it is
//! the users' conversation); [`TraceLayer::with_content`] opts in.
//!
//! Spans and events are under the target `persist_layer::trace` (events under
//! `persist_layer::trace::future`), so a subscriber's filter can keep or drop them apart from the
//! host's own events: `persist_layer::trace=warn` keeps the failures only.
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
use persist_core::{PersistArgs, PersistError, PersistOp, PersistResult};

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
        let Some((span, level, label)) = self.span(&args) else {
            return ResponseFuture::new(self.inner.call(args), None);
        };
        let start = Instant::now();
        let future = span.in_scope(|| self.inner.call(args));
        ResponseFuture::new(future, Some((span, start, level, label)))
    }
}

impl<S> Trace<S> {
    /// The span of a call and what its events say, or `None` when no subscriber wants it: such
    /// a span is neither entered nor kept, which would only cost (and, with `tracing`'s `log`
    /// feature, format activity lines for a logger that is not there).
    fn span(&self, args: &PersistArgs) -> Option<(Span, Level, Label)> {
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
        Some((span, level, Label::of(args.op())))
    }
}

/// What a call's events say it was: a read or a write (anything that is not a read: a write, a
/// session change, a lease).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Read,
    Write,
}

impl Label {
    fn of(op: PersistOp) -> Self {
        if op.is_read() { Self::Read } else { Self::Write }
    }

    /// The text of the event of a call that succeeded.
    fn done(self) -> &'static str {
        match self {
            Self::Read => "persist read",
            Self::Write => "persist write",
        }
    }

    /// The text of the event of a call that failed.
    fn failed(self) -> &'static str {
        match self {
            Self::Read => "persist read failed",
            Self::Write => "persist write failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Debug;
    use std::sync::{Arc, Mutex};

    use persist::args::{Add, UpdateContent};
    use persist::memory::MemoryBackend;
    use persist::read::{GetThread, ListMessages};
    use persist::{Content, MessageId, Pipeline, Role, ThreadId};
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Level, Metadata, Subscriber};

    use super::TraceLayer;

    /// Every event's level and text.
    #[derive(Clone, Default)]
    struct Events(Arc<Mutex<Vec<(Level, String)>>>);

    struct Text(String);

    impl Visit for Text {
        fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
            if field.name() == "message" {
                self.0 = format!("{value:?}");
            }
        }
    }

    impl Subscriber for Events {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut text = Text(String::new());
            event.record(&mut text);
            self.0.lock().unwrap().push((*event.metadata().level(), text.0));
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    #[tokio::test]
    async fn reads_and_writes_are_each_labelled_as_what_they_are() {
        let events = Events::default();
        let _guard = tracing::subscriber::set_default(events.clone());
        let pipeline = Pipeline::builder().layer(TraceLayer::new()).build(MemoryBackend::new());
        let thread = ThreadId::new("labelled").unwrap();
        pipeline.add(Add::new(thread.clone(), Role::User, Content::text("hi"))).await.unwrap();
        pipeline.list(ListMessages::new(thread.clone())).await.unwrap();
        pipeline.get_thread(GetThread::new(thread.clone())).await.unwrap();
        pipeline.list(ListMessages::new(thread.clone()).with_limit(0)).await.unwrap_err();
        let missing = UpdateContent::new(thread, MessageId::new("msg_missing").unwrap(), Content::text("x"));
        pipeline.update_content(missing).await.unwrap_err();
        let seen = events.0.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                (Level::INFO, "persist write".to_owned()),
                (Level::INFO, "persist read".to_owned()),
                (Level::INFO, "persist read".to_owned()),
                (Level::WARN, "persist read failed".to_owned()),
                (Level::WARN, "persist write failed".to_owned()),
            ]
        );
    }
}
