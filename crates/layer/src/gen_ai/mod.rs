//! Spans named and attributed as OpenTelemetry's GenAI semantic conventions say (conversations,
//! and the memory operations of `semantic-conventions-genai`), for tools that read them.
//!
//! [`GenAiTraceLayer`] opens a `tracing` span per call, as [`TraceLayer`](super::TraceLayer)
//! does, but with the conventions' names, for the `tracing-opentelemetry` bridge to export as
//! they are (it reads the fields `otel.name`, `otel.kind` and `otel.status_code` as the span's
//! name, kind and status):
//!
//! | persist request | `gen_ai.operation.name` | span name |
//! |---|---|---|
//! | `add`, `reserve`, `append_turn`, `update_content`, `update`, `restore`, `summarize` | `update_memory` | `update_memory {store}` |
//! | `delete` | `delete_memory` | `delete_memory {store}` |
//! | `get`, `get_thread`, `list`, `threads`, `branches`, `summaries`, `compacted`, `search`, `read_feed` | `search_memory` | `search_memory {store}` |
//! | anything else (sessions, leases, `set_once`, `ping`, `find_stranded`) | none | `persist {op}` |
//!
//! (`{store}` is the [store id](GenAiTraceLayer::with_store_id) when one is set; the name is the
//! operation alone otherwise.) Every span is of kind `client` and carries:
//!
//! - `gen_ai.provider.name` = `persist`, `gen_ai.operation.name` (memory operations);
//! - `gen_ai.conversation.id`: the thread; `gen_ai.memory.store.id`: the store id, if set;
//! - `gen_ai.memory.record.id`: the message (the one named, or the one written);
//!   `gen_ai.memory.record.count`: how many messages a write wrote or removed (0 for one that
//!   answered an earlier write's, 1 for a summary), or how many items a read answered;
//! - `persist.operation`, `persist.tenant.id`, `persist.request.id`, `persist.message.seq`;
//! - on failure `error.type` (the error's [code](persist_core::PersistError::code)) and
//!   `otel.status_code` = `ERROR`.
//!
//! **No content is recorded** unless [`with_content`](GenAiTraceLayer::with_content) opts in
//! (the conventions mark both opt-in, as they carry the users' words): then
//! `gen_ai.memory.query.text` holds a search's query and `gen_ai.memory.records` the written
//! message as the conventions' JSON (`[{"id": …, "content": …}]`).
//!
//! Spans are `INFO` (a content update that does not finalize, one of many per streamed reply,
//! `DEBUG`), under the target `persist::gen_ai`; with no subscriber enabling them, the layer
//! creates none.
//!
//! # Example
//!
//! ```
//! use persist::{args::Add, layer::GenAiTraceLayer, Content, Pipeline, Role, ThreadId};
//! use persist::memory::MemoryBackend;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let traced = GenAiTraceLayer::new().with_store_id("chat-history");
//! let pipeline = Pipeline::builder().layer(traced).build(MemoryBackend::new());
//! pipeline.add(Add::new(ThreadId::new("t1")?, Role::User, Content::text("hi"))).await?;
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

mod future;
mod layer;

use std::task::{Context, Poll};

use tower::Service;
use tracing::field::{Empty, display};
use tracing::level_filters::{LevelFilter, STATIC_MAX_LEVEL};
use tracing::{Level, Span};

pub use self::future::GenAiFuture;
pub use self::layer::GenAiTraceLayer;
use persist_core::{PersistArgs, PersistError, PersistOp, PersistResult};

/// The service of [`GenAiTraceLayer`].
#[derive(Debug, Clone)]
pub struct GenAiTrace<S> {
    inner: S,
    layer: GenAiTraceLayer,
}

/// The memory operation of the conventions a request is, if any.
pub fn memory_operation(op: PersistOp) -> Option<&'static str> {
    Some(match op {
        PersistOp::Add
        | PersistOp::Reserve
        | PersistOp::AppendTurn
        | PersistOp::UpdateContent
        | PersistOp::Update
        | PersistOp::Restore
        | PersistOp::Summarize
        | PersistOp::Embed
        | PersistOp::WriteMemory
        | PersistOp::WriteRecords => "update_memory",
        PersistOp::Delete => "delete_memory",
        PersistOp::Get
        | PersistOp::GetThread
        | PersistOp::List
        | PersistOp::Threads
        | PersistOp::Branches
        | PersistOp::Summaries
        | PersistOp::Compacted
        | PersistOp::Search
        | PersistOp::Nearest
        | PersistOp::ReadMemory
        | PersistOp::ReadRecords
        | PersistOp::ReadFeed => "search_memory",
        _ => return None,
    })
}

impl<S> Service<PersistArgs> for GenAiTrace<S>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
{
    type Response = PersistResult;
    type Error = PersistError;
    type Future = GenAiFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PersistError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, args: PersistArgs) -> Self::Future {
        let span = self.span(&args);
        let future = match &span {
            Some(span) => span.in_scope(|| self.inner.call(args)),
            None => self.inner.call(args),
        };
        GenAiFuture::new(future, span, self.layer.record_content)
    }
}

impl<S> GenAiTrace<S> {
    fn span(&self, args: &PersistArgs) -> Option<Span> {
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
                    target: "persist::gen_ai",
                    $level,
                    "persist",
                    otel.name = Empty,
                    otel.kind = "client",
                    otel.status_code = Empty,
                    gen_ai.provider.name = "persist",
                    gen_ai.operation.name = Empty,
                    gen_ai.conversation.id = Empty,
                    gen_ai.memory.store.id = Empty,
                    gen_ai.memory.record.id = Empty,
                    gen_ai.memory.record.count = Empty,
                    gen_ai.memory.query.text = Empty,
                    gen_ai.memory.records = Empty,
                    error.type = Empty,
                    persist.operation = %args.op(),
                    persist.tenant.id = Empty,
                    persist.request.id = %args.context().request_id(),
                    persist.message.seq = Empty,
                )
            };
        }
        let span = if level == Level::DEBUG { span!(Level::DEBUG) } else { span!(Level::INFO) };
        if span.is_disabled() {
            return None;
        }
        let operation = memory_operation(args.op());
        let name = match (operation, &self.layer.store_id) {
            (Some(operation), Some(store)) => format!("{operation} {store}"),
            (Some(operation), None) => operation.to_owned(),
            (None, _) => format!("persist {}", args.op()),
        };
        span.record("otel.name", name);
        if let Some(operation) = operation {
            span.record("gen_ai.operation.name", operation);
        }
        if let Some(store) = &self.layer.store_id {
            span.record("gen_ai.memory.store.id", &**store);
        }
        if let Some(thread) = args.thread_id() {
            span.record("gen_ai.conversation.id", display(thread));
        }
        if let Some(tenant) = args.context().tenant() {
            span.record("persist.tenant.id", display(tenant));
        }
        if let Some(id) = args.message_id() {
            span.record("gen_ai.memory.record.id", display(id));
        }
        if self.layer.record_content
            && let PersistArgs::Search(search) = args
        {
            span.record("gen_ai.memory.query.text", search.text.as_str());
        }
        Some(span)
    }
}
