//! persist's spans in OpenTelemetry's GenAI conventions, exported through the OpenTelemetry
//! SDK: [`subscriber`] stacks `tracing-opentelemetry` over a tracer, so that the spans of
//! `persist::layer::GenAiTraceLayer` reach any exporter (OTLP in `examples/otel_export.rs`, the
//! SDK's in-memory exporter in this package's test).

#![forbid(unsafe_code)]

use opentelemetry_sdk::trace::Tracer;
use tracing_subscriber::Registry;
use tracing_subscriber::layer::{Layered, SubscriberExt};

/// A `tracing` subscriber that hands every span to `tracer`, its `otel.name`, `otel.kind` and
/// `otel.status_code` fields read as the span's name, kind and status, every other field an
/// attribute.
pub fn subscriber(tracer: Tracer) -> Layered<tracing_opentelemetry::OpenTelemetryLayer<Registry, Tracer>, Registry> {
    tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer))
}
