//! [`AutoEmbedLayer`]: embeds what is written, as it is written.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use persist_core::raw::{BoxFuture, take_ready};
use persist_core::read::GetMessage;
use persist_core::search::indexed_text;
use persist_core::vector::{Embed, Embedding};
use persist_core::{Message, PersistArgs, PersistError, PersistResult, Status};
use tower::{Layer, Service, ServiceExt};

use crate::embedder::Embedder;

/// Embeds every message written through it with the app's [`Embedder`]: an `add` and each
/// message of a turn before they are written, their vectors then stored **in the message's own
/// transaction** ([`Add::with_embedding`](persist_core::args::Add::with_embedding)); a reply
/// streamed into a reservation once its content is final, after that write, as an [`Embed`]
/// expecting the version it embedded (a message whose content changed meanwhile is left to the
/// write that changed it; one whose metadata or role changed is embedded at its new version);
/// the messages of a [`Restore`](persist_core::args::Restore) that wrote any (a restore carries
/// no vectors, and the Conversations API creates a conversation with its items as one) the
/// same way, once it is written.
///
/// A message is embedded by its [indexed text](persist_core::search::indexed_text) (text and
/// tool results); one without is skipped, as is one the caller gave an embedding already. A
/// repeat answered `deduplicated` writes nothing, so its vectors follow as [`Embed`]s: the
/// caller whose first answer was lost may be the one who wrote it.
///
/// The write's answer stands whatever happens to its embedding: an embedder that fails, or
/// vectors the rest of the stack refuses (`Unsupported`: a store without vectors, an encryption
/// layer that keeps them out; another length than the model's there), is logged (`warn`, target
/// `persist::recall`) and the write goes on without them. An app that must have every vector
/// re-embeds what recall misses with [`Embed`] (the same request a background job uses to move
/// to a new model).
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
        // The ready service takes this call; a clone writes the vectors later.
        let mut inner = take_ready(&mut self.inner);
        let later = self.inner.clone();
        let embedder = Arc::clone(&self.embedder);
        let context = args.context().renewed();
        Box::pin(async move {
            match args {
                PersistArgs::Add(_) | PersistArgs::AppendTurn(_) => {
                    let Embedded { args: with, plain, vectors } = with_vectors(&*embedder, args).await;
                    let result = match (inner.call(with).await, plain) {
                        // The stack refused the vectors (a store without them, an encryption
                        // layer that keeps them out, another length than the model's there):
                        // the messages are written without.
                        (
                            Err(
                                error @ (PersistError::Unsupported { .. }
                                | PersistError::InvalidInput { field: "embedding", .. }),
                            ),
                            Some(plain),
                        ) => {
                            tracing::warn!(target: "persist::recall", %error, "the vectors were refused; the messages are written without");
                            call(&mut later.clone(), plain).await?
                        }
                        (result, _) => result?,
                    };
                    // A repeat wrote nothing, its vectors neither: they follow, as computed.
                    if result.is_deduplicated() {
                        let wanted = finished(&result);
                        if !wanted.is_empty() {
                            write_vectors(later, &*embedder, &context, &wanted, vectors).await;
                        }
                    }
                    Ok(result)
                }
                // A restore carries no vectors: its messages are embedded once it is written.
                PersistArgs::Restore(restore) => {
                    let messages = restore.messages.clone();
                    let result = inner.call(PersistArgs::Restore(restore)).await?;
                    let restored = matches!(&result, PersistResult::Restored(r) if r.restored > 0);
                    let wanted: Vec<(&Message, String)> = messages
                        .iter()
                        .filter(|m| restored && m.status != Status::Reserved)
                        .filter_map(|m| indexed_text(&m.content).map(|text| (m, text)))
                        .collect();
                    if !wanted.is_empty() {
                        write_vectors(later, &*embedder, &context, &wanted, HashMap::new()).await;
                    }
                    Ok(result)
                }
                PersistArgs::UpdateContent(_) => {
                    let result = inner.call(args).await?;
                    let wanted = finished(&result);
                    if !wanted.is_empty() {
                        write_vectors(later, &*embedder, &context, &wanted, HashMap::new()).await;
                    }
                    Ok(result)
                }
                other => inner.call(other).await,
            }
        })
    }
}

/// An `add` or a turn with its messages' vectors: see [`with_vectors`].
struct Embedded {
    /// The write, each message that has text to embed and no embedding yet given one.
    args: PersistArgs,
    /// The write as it came, when any vector was added (to write without them if they are
    /// refused).
    plain: Option<PersistArgs>,
    /// Each text embedded, with its vector.
    vectors: HashMap<String, Vec<f32>>,
}

/// `args` (an `add` or a turn) with the embedding of each message that has text to embed and
/// none yet. An embedder that fails leaves them out, logged.
async fn with_vectors(embedder: &dyn Embedder, mut args: PersistArgs) -> Embedded {
    let texts: Vec<String> = match &args {
        PersistArgs::Add(add) if add.embedding.is_none() => indexed_text(&add.content).into_iter().collect(),
        PersistArgs::AppendTurn(turn) => turn
            .messages
            .iter()
            .filter(|m| m.status == Status::Complete && m.embedding.is_none())
            .filter_map(|m| indexed_text(&m.content))
            .collect(),
        _ => Vec::new(),
    };
    let unchanged = |args| Embedded { args, plain: None, vectors: HashMap::new() };
    if texts.is_empty() {
        return unchanged(args);
    }
    let vectors = match embedder.embed(&texts).await {
        Ok(vectors) if vectors.len() == texts.len() => vectors,
        Ok(vectors) => {
            tracing::warn!(target: "persist::recall", asked = texts.len(), got = vectors.len(), "the embedder answered another number of vectors; the messages are written without");
            return unchanged(args);
        }
        Err(error) => {
            tracing::warn!(target: "persist::recall", %error, "embedding messages failed; they are written without a vector");
            return unchanged(args);
        }
    };
    let plain = args.clone();
    let mut given = vectors.iter().map(|vector| Embedding::new(embedder.model(), vector.clone()));
    match &mut args {
        PersistArgs::Add(add) => add.embedding = given.next(),
        PersistArgs::AppendTurn(turn) => {
            for message in turn.messages.iter_mut() {
                if message.status == Status::Complete
                    && message.embedding.is_none()
                    && indexed_text(&message.content).is_some()
                {
                    message.embedding = given.next();
                }
            }
        }
        _ => {}
    }
    Embedded { args, plain: Some(plain), vectors: texts.into_iter().zip(vectors).collect() }
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

/// Embeds `wanted` (but the texts `known` holds the vectors of) and writes each vector; failures
/// are logged, never answered.
async fn write_vectors<S>(
    mut inner: S,
    embedder: &dyn Embedder,
    context: &persist_core::Context,
    wanted: &[(&Message, String)],
    mut known: HashMap<String, Vec<f32>>,
) where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
{
    let texts: Vec<String> = wanted.iter().map(|(_, text)| text.clone()).filter(|t| !known.contains_key(t)).collect();
    if !texts.is_empty() {
        match embedder.embed(&texts).await {
            Ok(vectors) if vectors.len() == texts.len() => known.extend(texts.into_iter().zip(vectors)),
            Ok(vectors) => {
                tracing::warn!(target: "persist::recall", asked = texts.len(), got = vectors.len(), "the embedder answered another number of vectors; none written");
                return;
            }
            Err(error) => {
                tracing::warn!(target: "persist::recall", %error, "embedding written messages failed; they have no vector");
                return;
            }
        }
    }
    for (message, text) in wanted {
        let Some(vector) = known.get(text).cloned() else { continue };
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
