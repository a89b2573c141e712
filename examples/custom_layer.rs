//! The third way to write a plugin: a full `tower::Layer` + `Service` + pin-projected future,
//! the shape every always-on layer in persist has (no allocation per request).
//!
//! `StampLayer` rewrites every `add`/`reserve` to carry `metadata.app`, and counts the writes
//! the backend acknowledged, in its own response future.
//!
//! Run: `cargo run --example custom_layer` (its tests run with `cargo test`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use persist::args::{Add, Reserve};
use persist::memory::MemoryBackend;
use persist::{Content, PersistArgs, PersistError, PersistResult, Pipeline, Role, ThreadId};
use pin_project_lite::pin_project;
use serde_json::json;
use tower::{Layer, Service};

/// Stamps `metadata.app` on new messages and counts acknowledged writes.
#[derive(Debug, Clone)]
pub struct StampLayer {
    app: &'static str,
    acknowledged: Arc<AtomicU64>,
}

impl StampLayer {
    /// A layer stamping `app`.
    pub fn new(app: &'static str) -> Self {
        Self { app, acknowledged: Arc::default() }
    }

    /// Writes the backend acknowledged so far.
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged.load(Ordering::Relaxed)
    }
}

impl<S> Layer<S> for StampLayer {
    type Service = Stamp<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Stamp { inner, app: self.app, acknowledged: self.acknowledged.clone() }
    }
}

/// The service of [`StampLayer`].
#[derive(Debug, Clone)]
pub struct Stamp<S> {
    inner: S,
    app: &'static str,
    acknowledged: Arc<AtomicU64>,
}

impl<S> Service<PersistArgs> for Stamp<S>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
{
    type Response = PersistResult;
    type Error = PersistError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PersistError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut args: PersistArgs) -> Self::Future {
        let stamp = |metadata: &mut persist::Metadata| *metadata = metadata.clone().with("app", json!(self.app));
        match &mut args {
            PersistArgs::Add(add) => stamp(&mut add.metadata),
            PersistArgs::Reserve(reserve) => stamp(&mut reserve.metadata),
            _ => {}
        }
        ResponseFuture { inner: self.inner.call(args), acknowledged: self.acknowledged.clone() }
    }
}

pin_project! {
    /// Response future of [`Stamp`]: counts successes as they complete.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        acknowledged: Arc<AtomicU64>,
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<PersistResult, PersistError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = ready!(this.inner.poll(cx));
        if output.is_ok() {
            this.acknowledged.fetch_add(1, Ordering::Relaxed);
        }
        Poll::Ready(output)
    }
}

#[tokio::main]
async fn main() -> Result<(), PersistError> {
    let stamp = StampLayer::new("quickstart-bot");
    let pipeline = Pipeline::builder().layer(stamp.clone()).build(MemoryBackend::new());
    let thread = ThreadId::new("custom-layer")?;
    let added = pipeline.add(Add::new(thread.clone(), Role::User, Content::text("hi"))).await?;
    let reserved = pipeline.reserve(Reserve::new(thread, Role::Assistant)).await?;
    println!("add stamped:     {}", added.message.metadata.get("app").unwrap());
    println!("reserve stamped: {}", reserved.message.metadata.get("app").unwrap());
    println!("acknowledged:    {}", stamp.acknowledged());
    Ok(())
}

#[cfg(test)]
mod tests {
    use persist::args::UpdateContent;
    use persist::{MessageId, Terminal};
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn stamps_new_messages_and_counts_only_acknowledged_writes() {
        let stamp = StampLayer::new("test-app");
        let pipeline = Pipeline::builder().layer(stamp.clone()).build(MemoryBackend::new());
        let thread = ThreadId::new("t").unwrap();
        let added = pipeline.add(Add::new(thread.clone(), Role::User, Content::text("x"))).await.unwrap();
        assert_eq!(added.message.metadata.get("app"), Some(&json!("test-app")));
        let missing = UpdateContent::new(thread, MessageId::new("nope").unwrap(), Content::text("y"));
        assert!(pipeline.update_content(missing).await.is_err());
        assert_eq!(stamp.acknowledged(), 1, "the failed write is not counted");
    }

    #[tokio::test]
    async fn works_directly_over_a_terminal_with_oneshot() {
        let service = StampLayer::new("direct").layer(Terminal::new(MemoryBackend::new()));
        let args = Reserve::new(ThreadId::new("t").unwrap(), Role::Assistant);
        let result = service.oneshot(args.into()).await.unwrap();
        assert_eq!(result.message().unwrap().metadata.get("app"), Some(&json!("direct")));
    }
}
