use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tracing::Span;
use tracing::field::display;

use persist_core::{PersistError, PersistResult};

pin_project! {
    /// Response future of [`GenAiTrace`](super::GenAiTrace): polls the inner future inside the
    /// span, and records the answer on it.
    #[derive(Debug)]
    pub struct GenAiFuture<F> {
        #[pin]
        inner: F,
        span: Option<Span>,
        record_content: bool,
    }
}

impl<F> GenAiFuture<F> {
    pub(super) fn new(inner: F, span: Option<Span>, record_content: bool) -> Self {
        Self { inner, span, record_content }
    }
}

impl<F> Future for GenAiFuture<F>
where
    F: Future<Output = Result<PersistResult, PersistError>>,
{
    type Output = Result<PersistResult, PersistError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(span) = this.span.as_ref() else {
            return this.inner.poll(cx);
        };
        let poll = {
            let _entered = span.enter();
            this.inner.poll(cx)
        };
        let Poll::Ready(output) = &poll else { return poll };
        match output {
            Ok(result) => record_result(span, result, *this.record_content),
            Err(error) => {
                span.record("error.type", error.code());
                span.record("otel.status_code", "ERROR");
            }
        }
        // The span closes with the call.
        *this.span = None;
        poll
    }
}

fn record_result(span: &Span, result: &PersistResult, record_content: bool) {
    let written = result.messages();
    // How many messages a write wrote or removed (none when it answered an earlier write's), or
    // how many items a read answered.
    let count = match result {
        _ if result.is_deduplicated() => Some(0),
        PersistResult::Deleted(deleted) => Some(deleted.message_ids.len()),
        PersistResult::Restored(restored) => Some(usize::try_from(restored.restored).unwrap_or(usize::MAX)),
        PersistResult::Summarized(_) => Some(1),
        _ if !written.is_empty() => Some(written.len()),
        _ => result.rows(),
    };
    if let Some(count) = count {
        span.record("gen_ai.memory.record.count", i64::try_from(count).unwrap_or(i64::MAX));
    }
    if let [message] = written {
        span.record("gen_ai.memory.record.id", display(&message.id));
        span.record("persist.message.seq", i64::try_from(message.seq).unwrap_or(i64::MAX));
    }
    if record_content && !written.is_empty() {
        let records: Vec<serde_json::Value> = written
            .iter()
            .map(|m| serde_json::json!({ "id": m.id.as_str(), "content": m.content.to_value() }))
            .collect();
        span.record("gen_ai.memory.records", serde_json::Value::Array(records).to_string());
    }
}
