//! [`AutoEmbedLayer`]: embeds what is written, as it is written.

use std::fmt;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use persist_core::raw::BoxFuture;
use persist_core::read::GetMessage;
use persist_core::search::indexed_text;
use persist_core::vector::{Embed, Embedding};
use persist_core::{Message, PersistArgs, PersistError, PersistResult, Status};
use tower::{Layer, Service, ServiceExt};

use crate::embedder::Embedder;

/// Embeds every message written through it (an `add`, each message of a turn, a reply once its
/// content is final) with the app's [`Embedder`], and writes the vectors through the rest of the
/// stack as [`Embed`] requests, each expecting the version it embedded (a message whose content
/// changed meanwhile is left to the write that changed it; one whose metadata or role changed is
/// embedded at its new version).
///
/// A message is embedded by its [indexed text](persist_core::search::indexed_text) (text and
/// tool results); one without is skipped. A repeat answered `deduplicated` is embedded too: the
/// caller whose first answer was lost may be the one who wrote it.
///
/// The write's answer stands whatever happens to its embedding: the vectors are written after
/// the message commits, in writes of their own, so an embedder that fails (or a process that
/// stops in between) leaves the message without one, and the failure is logged (`warn`,
/// target `persist::recall`). An app that must have every vector re-embeds what recall misses
/// with [`Embed`] (the same request a background job uses to move to a new model).
///
/// Place it **before** (outside) an `EncryptLayer`, which must allow
/// [`clear_vectors`](https://docs.rs/persist-encrypt): it embeds the clear text the caller wrote.
///
/// # Example
///
/// ```
/// use persist::memory::MemoryBackend;
/// use persist::recall::{AutoEmbedLayer, HashEmbedder};
/// use persist::vector::{Embedding, Nearest};
/// use persist::{args::Add, Content, Pipeline, Role, ThreadId};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let embedder = HashEmbedder::new(64);
/// let pipeline = Pipeline::builder().layer(AutoEmbedLayer::new(embedder.clone())).build(MemoryBackend::new());
/// let thread = ThreadId::new("t1")?;
/// pipeline.add(Add::new(thread.clone(), Role::User, Content::text("Book a table in Lisbon"))).await?;
///
/// let query = Embedding::new("persist-hash-v1-64", embedder.vector("table in Lisbon")?);
/// let found = pipeline.nearest(Nearest::new(query)).await?;
/// assert_eq!(found.len(), 1);
/// # Ok::<_, persist::PersistError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct AutoEmbedLayer {
    embedder: Arc<dyn Embedder>,
}

impl fmt::Debug for AutoEmbedLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AutoEmbedLayer").field("model", &self.embedder.model()).finish()
    }
}

impl AutoEmbedLayer {
    /// Embeds with `embedder`.
    pub fn new(embedder: impl Embedder) -> Self {
        Self { embedder: Arc::new(embedder) }
    }
}

impl<S> Layer<S> for AutoEmbedLayer {
    type Service = AutoEmbed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AutoEmbed { inner, embedder: Arc::clone(&self.embedder) }
    }
}

/// The service of [`AutoEmbedLayer`].
#[derive(Clone)]
pub struct AutoEmbed<S> {
    inner: S,
    embedder: Arc<dyn Embedder>,
}

impl<S> fmt::Debug for AutoEmbed<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AutoEmbed").field("model", &self.embedder.model()).finish_non_exhaustive()
    }
}

/// The messages of `result` whose content is final and holds text, with that text.
fn finished(result: &PersistResult) -> Vec<(&Message, String)> {
    if let PersistResult::ContentUpdated(updated) = result
        && updated.coalesced
    {
        // Held back by a coalescing layer: its later write is the one to embed.
        return Vec::new();
    }
    result
        .messages()
        .iter()
        .filter(|m| m.status != Status::Reserved)
        .filter_map(|m| indexed_text(&m.content).map(|text| (m, text)))
        .collect()
}

impl<S> Service<PersistArgs> for AutoEmbed<S>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = PersistResult;
    type Error = PersistError;
    type Future = BoxFuture<'static, Result<PersistResult, PersistError>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, args: PersistArgs) -> Self::Future {
        let embeds = matches!(args, PersistArgs::Add(_) | PersistArgs::AppendTurn(_) | PersistArgs::UpdateContent(_));
        // The ready service takes this call; a clone writes the vectors later.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let later = self.inner.clone();
        let embedder = Arc::clone(&self.embedder);
        let context = args.context().renewed();
        Box::pin(async move {
            let result = inner.call(args).await?;
            if embeds {
                let wanted = finished(&result);
                if !wanted.is_empty() {
                    write_vectors(later, &*embedder, &context, &wanted).await;
                }
            }
            Ok(result)
        })
    }
}

/// Sends `args` through `inner` once it is ready.
async fn call<S>(inner: &mut S, args: PersistArgs) -> Result<PersistResult, PersistError>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
{
    match inner.ready().await {
        Ok(ready) => ready.call(args).await,
        Err(error) => Err(error),
    }
}

/// Embeds `wanted` and writes each vector; failures are logged, never answered.
async fn write_vectors<S>(
    mut inner: S,
    embedder: &dyn Embedder,
    context: &persist_core::Context,
    wanted: &[(&Message, String)],
) where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
{
    let texts: Vec<String> = wanted.iter().map(|(_, text)| text.clone()).collect();
    let vectors = match embedder.embed(&texts).await {
        Ok(vectors) if vectors.len() == texts.len() => vectors,
        Ok(vectors) => {
            tracing::warn!(target: "persist::recall", asked = texts.len(), got = vectors.len(), "the embedder answered another number of vectors; none written");
            return;
        }
        Err(error) => {
            tracing::warn!(target: "persist::recall", %error, "embedding written messages failed; they have no vector");
            return;
        }
    };
    for ((message, _), vector) in wanted.iter().zip(vectors) {
        let embedding = Embedding::new(embedder.model(), vector);
        if let Err(error) = write_vector(&mut inner, context, message, embedding).await {
            tracing::warn!(
                target: "persist::recall",
                %error,
                thread = %message.thread_id,
                message = %message.id,
                "writing a message's vector failed; it has none"
            );
        }
    }
}

/// Writes `embedding` of `message`, expecting its version. Changed since: a change of its
/// metadata or role kept what was embedded, so the vector is written at the new version (three
/// tries); a change of its content is embedded by the write that made it, and this one is done.
async fn write_vector<S>(
    inner: &mut S,
    context: &persist_core::Context,
    message: &Message,
    embedding: Embedding,
) -> Result<(), PersistError>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
{
    let (thread, id) = (&message.thread_id, &message.id);
    let mut version = message.version;
    for _ in 0..3 {
        let embed = Embed::new(thread.clone(), id.clone(), embedding.clone()).with_expected_version(version);
        match call(inner, embed.with_context(context.renewed()).into()).await {
            Err(PersistError::VersionConflict { .. }) => {}
            written => return written.map(drop),
        }
        let get = GetMessage::new(thread.clone(), id.clone()).with_context(context.renewed());
        match call(inner, get.into()).await? {
            PersistResult::Message(Some(now)) if now.content == message.content => version = now.version,
            _ => return Ok(()),
        }
    }
    Ok(())
}
