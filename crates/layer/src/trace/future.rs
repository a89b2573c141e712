use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use pin_project_lite::pin_project;
use tracing::field::display;
use tracing::{Level, Span};

use persist_core::{PersistError, PersistResult};

use super::Label;

pin_project! {
    /// Response future of [`Trace`](super::Trace): polls the inner future inside the span.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        // The span, the call's start, the level of its success and what its events say (a read
        // or a write), when a subscriber records the span; `None` costs nothing to carry or drop.
        traced: Option<(Span, Instant, Level, Label)>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, traced: Option<(Span, Instant, Level, Label)>) -> Self {
        Self { inner, traced }
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<PersistResult, PersistError>>,
{
    type Output = Result<PersistResult, PersistError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // Untraced, the inner answer is returned as it is; traced, it is returned as polled,
        // not rebuilt: either way it is not copied on its way up.
        let Some((span, start, level, label)) = this.traced.as_ref() else {
            return this.inner.poll(cx);
        };
        let poll = {
            let _entered = span.enter();
            this.inner.poll(cx)
        };
        let Poll::Ready(output) = &poll else { return poll };
        let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        span.record("duration_us", micros);
        match output {
            Ok(result) => {
                let outcome = if result.is_deduplicated() { "deduplicated" } else { "ok" };
                span.record("outcome", outcome);
                if let Some(rows) = result.rows() {
                    span.record("rows", rows);
                }
                if let Some(message) = result.message() {
                    span.record("message_id", display(&message.id));
                    span.record("seq", message.seq);
                    span.record("version", message.version);
                }
                let done = label.done();
                if *level == Level::DEBUG {
                    tracing::debug!(parent: span, outcome, duration_us = micros, "{done}");
                } else {
                    tracing::info!(parent: span, outcome, duration_us = micros, "{done}");
                }
            }
            Err(error) => {
                span.record("outcome", error.code());
                let failed = label.failed();
                tracing::warn!(parent: span, outcome = error.code(), duration_us = micros, %error, "{failed}");
            }
        }
        // The span closes with the call.
        *this.traced = None;
        poll
    }
}
