//! `GenAiTraceLayer`'s spans as the OpenTelemetry SDK receives them (its in-memory exporter,
//! through `tracing-opentelemetry`): names, kind, status and attributes as the GenAI
//! conventions define them, tenant and message ids as attributes, no content unless opted in.

use std::collections::HashMap;

use opentelemetry::trace::{SpanKind, Status, TracerProvider as _};
use opentelemetry::{Key, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use persist::args::{Add, Delete, Reserve, UpdateContent};
use persist::layer::GenAiTraceLayer;
use persist::memory::MemoryBackend;
use persist::read::GetMessage;
use persist::search::Search;
use persist::session::Resolve;
use persist::{AgentId, Content, Context, MessageId, Pipeline, ProviderId, Role, TenantId, ThreadId};

/// Runs `calls` on a pipeline with `layer` over a memory store, every span exported to memory;
/// answers the spans, in the order they ended.
fn spans_of(layer: GenAiTraceLayer, calls: impl AsyncFnOnce(Pipeline)) -> Vec<SpanData> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let subscriber = persist_example_otel::subscriber(provider.tracer("persist-test"));
    tracing::subscriber::with_default(subscriber, || {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let pipeline = Pipeline::builder().layer(layer).build(MemoryBackend::new());
        runtime.block_on(calls(pipeline));
    });
    provider.force_flush().unwrap();
    exporter.get_finished_spans().unwrap()
}

fn attributes(span: &SpanData) -> HashMap<String, Value> {
    span.attributes.iter().map(|kv| (kv.key.as_str().to_owned(), kv.value.clone())).collect()
}

fn text(span: &SpanData, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key == Key::from(key.to_owned())).map(|kv| kv.value.to_string())
}

fn acme() -> Context {
    Context::new().with_tenant(TenantId::new("acme").unwrap())
}

#[test]
fn memory_operations_are_named_and_attributed_as_the_conventions_say() {
    let thread = ThreadId::new("trip").unwrap();
    let id = MessageId::new("m-1").unwrap();
    let spans = spans_of(GenAiTraceLayer::new().with_store_id("chat-history"), async |pipeline| {
        let add = Add::new(thread.clone(), Role::User, Content::text("secret words about Lisbon"));
        pipeline.add(add.with_id(id.clone()).with_context(acme())).await.unwrap();
        pipeline.get(GetMessage::new(thread.clone(), id.clone()).with_context(acme())).await.unwrap();
        pipeline.search(Search::new("lisbon").with_context(acme())).await.unwrap();
        pipeline.delete(Delete::message(thread.clone(), id.clone()).with_context(acme())).await.unwrap();
        let resolve = Resolve::new(AgentId::new("a").unwrap(), thread.clone(), ProviderId::new("p").unwrap());
        pipeline.resolve(resolve.with_context(acme())).await.unwrap();
    });
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(
        names,
        [
            "update_memory chat-history",
            "search_memory chat-history",
            "search_memory chat-history",
            "delete_memory chat-history",
            "persist resolve",
        ]
    );
    for (i, span) in spans.iter().enumerate() {
        assert_eq!(span.span_kind, SpanKind::Client, "{}", span.name);
        assert_eq!(span.status, Status::Unset, "{}", span.name);
        let attributes = attributes(span);
        assert_eq!(attributes["gen_ai.provider.name"], Value::from("persist"));
        // The search spans the tenant's threads: no one conversation.
        let conversation = attributes.get("gen_ai.conversation.id");
        assert_eq!(conversation, (i != 2).then(|| Value::from("trip")).as_ref(), "{}", span.name);
        assert_eq!(attributes["persist.tenant.id"], Value::from("acme"));
        assert!(attributes.contains_key("persist.request.id"));
        for content in ["gen_ai.memory.query.text", "gen_ai.memory.records"] {
            assert!(!attributes.contains_key(content), "no content by default: {} has {content}", span.name);
        }
        let secret = span.attributes.iter().any(|kv| kv.value.to_string().contains("secret"));
        assert!(!secret, "{} records no words of the conversation", span.name);
    }
    let add = attributes(&spans[0]);
    assert_eq!(add["gen_ai.operation.name"], Value::from("update_memory"));
    assert_eq!(add["gen_ai.memory.store.id"], Value::from("chat-history"));
    assert_eq!(add["gen_ai.memory.record.id"], Value::from("m-1"));
    assert_eq!(add["gen_ai.memory.record.count"], Value::I64(1));
    assert_eq!(add["persist.message.seq"], Value::I64(1));
    assert_eq!(add["persist.operation"], Value::from("add"));
    let search = attributes(&spans[2]);
    assert_eq!(search["gen_ai.operation.name"], Value::from("search_memory"));
    assert_eq!(search["gen_ai.memory.record.count"], Value::I64(1), "one hit");
    assert_eq!(search["persist.operation"], Value::from("search"));
    assert_eq!(attributes(&spans[3])["gen_ai.memory.record.count"], Value::I64(1), "one message removed");
    assert!(!attributes(&spans[4]).contains_key("gen_ai.operation.name"), "a session request is no memory operation");
}

#[test]
fn content_only_when_opted_in() {
    let thread = ThreadId::new("t").unwrap();
    let spans = spans_of(GenAiTraceLayer::new().with_content(true), async |pipeline| {
        let add = Add::new(thread.clone(), Role::User, Content::text("the words"));
        pipeline.add(add.with_id(MessageId::new("m").unwrap())).await.unwrap();
        pipeline.search(Search::new("words")).await.unwrap();
    });
    assert_eq!(spans[0].name, "update_memory", "without a store id, the operation alone");
    let records: serde_json::Value = serde_json::from_str(&text(&spans[0], "gen_ai.memory.records").unwrap()).unwrap();
    assert_eq!(records, serde_json::json!([{"id": "m", "content": [{"type": "text", "text": "the words"}]}]));
    assert_eq!(text(&spans[1], "gen_ai.memory.query.text").as_deref(), Some("words"));
}

#[test]
fn failures_set_the_status_and_the_error_type() {
    let thread = ThreadId::new("t").unwrap();
    let spans = spans_of(GenAiTraceLayer::new(), async |pipeline| {
        let missing = UpdateContent::new(thread.clone(), MessageId::new("nope").unwrap(), Content::text("x"));
        assert!(pipeline.update_content(missing).await.is_err());
        // A streamed token is traced at DEBUG: seen here, where every level is.
        let reply = pipeline.reserve(Reserve::new(thread.clone(), Role::Assistant)).await.unwrap().message;
        let token = UpdateContent::appending(thread.clone(), reply.id.clone(), Content::text("tok"));
        pipeline.update_content(token).await.unwrap();
    });
    let failed = &spans[0];
    assert!(matches!(&failed.status, Status::Error { .. }), "{:?}", failed.status);
    assert_eq!(text(failed, "error.type").as_deref(), Some("not_found"));
    assert_eq!(text(failed, "gen_ai.memory.record.id").as_deref(), Some("nope"));
    assert_eq!(spans.len(), 3);
    assert_eq!(spans[2].name, "update_memory");
    assert_eq!(text(&spans[2], "persist.operation").as_deref(), Some("update_content"));
}
