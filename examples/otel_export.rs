//! persist's spans, in OpenTelemetry's GenAI conventions, exported over OTLP/HTTP.
//!
//! ```text
//! cargo run -p persist-example-otel --example otel_export
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 cargo run -p persist-example-otel --example otel_export
//! ```
//!
//! A conversation is written and searched through a pipeline with `GenAiTraceLayer`; its spans
//! (`update_memory chat-history`, `search_memory chat-history`, …, with `gen_ai.conversation.id`
//! and the memory attributes) go to the collector at `$OTEL_EXPORTER_OTLP_ENDPOINT` (default
//! `http://localhost:4318`), through the SDK's batch processor. Without a collector the example
//! still runs to its end: the export fails, and it says so.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData};
use persist::args::{Add, Reserve, UpdateContent};
use persist::layer::GenAiTraceLayer;
use persist::memory::MemoryBackend;
use persist::search::Search;
use persist::{Content, Context, Pipeline, Role, TenantId, ThreadId};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_else(|_| "http://localhost:4318".to_owned());
    // The exporter's blocking HTTP client is made (and later dropped) outside any async runtime.
    let exporter = SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .with_timeout(Duration::from_secs(2))
        .build()?;
    let delivery = Delivery::default();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(Counted { inner: exporter, delivery: delivery.clone() })
        .with_resource(Resource::builder().with_service_name("persist-example").build())
        .build();
    let subscriber = persist_example_otel::subscriber(provider.tracer("persist"));

    tracing::subscriber::with_default(subscriber, || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(converse())
    })?;

    // Shutting down flushes the batch; the processor keeps an export's failure to itself, so
    // the exporter's own count says what reached the collector.
    let shutdown = provider.shutdown();
    let (sent, failed) = delivery.counts();
    match failed.or_else(|| shutdown.err().map(|e| e.to_string())) {
        None => println!("{sent} spans exported to {endpoint}"),
        Some(error) => println!("no collector took the spans at {endpoint} ({error}); the example ran to its end"),
    }
    Ok(())
}

/// What the exporter delivered: spans sent, and the last failure.
#[derive(Debug, Clone, Default)]
struct Delivery(Arc<Mutex<(usize, Option<String>)>>);

impl Delivery {
    fn counts(&self) -> (usize, Option<String>) {
        self.0.lock().map(|counts| counts.clone()).unwrap_or_default()
    }
}

/// The OTLP exporter, counting what it delivers.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    delivery: Delivery,
}

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        if let Ok(mut counts) = self.delivery.0.lock() {
            match &result {
                Ok(()) => counts.0 += spans,
                Err(error) => counts.1 = Some(error.to_string()),
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// A question, a streamed reply, a search: the calls whose spans are exported.
async fn converse() -> Result<(), Box<dyn std::error::Error>> {
    let layer = GenAiTraceLayer::new().with_store_id("chat-history");
    let pipeline = Pipeline::builder().layer(layer).build(MemoryBackend::new());
    let me = pipeline.scoped(Context::new().with_tenant(TenantId::new("acme")?));
    let trip = ThreadId::new("trip")?;
    me.add(Add::new(trip.clone(), Role::User, Content::text("Will it be sunny in Lisbon on Friday?"))).await?;
    let reply = me.reserve(Reserve::new(trip.clone(), Role::Assistant)).await?.message;
    for token in ["Lisbon will be ", "sunny on Friday."] {
        me.update_content(UpdateContent::appending(trip.clone(), reply.id.clone(), Content::text(token))).await?;
    }
    me.update_content(UpdateContent::finishing(trip.clone(), reply.id.clone())).await?;
    let found = me.search(Search::new("sunny lisbon")).await?;
    println!("{} messages found; spans: update_memory, search_memory (chat-history)", found.items.len());
    Ok(())
}
