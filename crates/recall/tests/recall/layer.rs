//! `AutoEmbedLayer` on the embedded default (SQLite): what it embeds and what it leaves, a
//! repeat, a streamed reply, a failing embedder, tenants; recall through a `Scoped` handle.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use persist::args::{Add, AppendTurn, Reserve, TurnMessage, UpdateContent};
use persist::raw::BoxFuture;
use persist::recall::{AutoEmbedLayer, Embedder, HashEmbedder, Recall, RecallExt};
use persist::sqlite::SqliteBackend;
use persist::vector::{Embedding, Nearest};
use persist::{Content, Context, IdempotencyKey, Part, PersistError, Pipeline, Role, TenantId, ThreadId};
use persist_testkit::FlakyEmbedder;

fn thread(id: &str) -> ThreadId {
    ThreadId::new(id).unwrap()
}

async fn embedded(pipeline: &Pipeline, embedder: &HashEmbedder, thread: &ThreadId) -> Vec<String> {
    let query = Embedding::new(embedder.model(), embedder.vector("anything at all").unwrap());
    let found = pipeline.nearest(Nearest::new(query).in_thread(thread.clone()).with_limit(100)).await.unwrap();
    let mut texts: Vec<String> =
        found.into_iter().map(|n| persist::search::indexed_text(&n.message.content).unwrap_or_default()).collect();
    texts.sort();
    texts
}

#[tokio::test]
async fn the_layer_embeds_what_is_finished_and_written_once_it_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteBackend::open(dir.path().join("recall.db")).await.unwrap();
    let embedder = HashEmbedder::new(64);
    let flaky = FlakyEmbedder::new(embedder.clone());
    let pipeline = Pipeline::builder().layer(AutoEmbedLayer::new(flaky.clone())).build(store.clone());
    let t = thread("t");

    pipeline.add(Add::new(t.clone(), Role::User, Content::text("plain add"))).await.unwrap();
    let turn = AppendTurn::of(
        t.clone(),
        [
            TurnMessage::new(Role::User, Content::text("turn question")),
            TurnMessage::new(Role::Assistant, Content::from_parts([Part::reasoning("thinking only")])),
            TurnMessage::new(
                Role::Tool,
                Content::from_parts([Part::tool_result("c1", serde_json::json!("tool output"))]),
            ),
        ],
    );
    pipeline.append_turn(turn).await.unwrap();
    let reply = pipeline.reserve(Reserve::new(t.clone(), Role::Assistant)).await.unwrap().message;
    let token = UpdateContent::appending(t.clone(), reply.id.clone(), Content::text("streamed "));
    pipeline.update_content(token).await.unwrap();
    assert_eq!(
        embedded(&pipeline, &embedder, &t).await,
        ["plain add", "tool output", "turn question"],
        "no text, or not finished: none"
    );
    let last = UpdateContent::new(t.clone(), reply.id.clone(), Content::text("streamed answer"));
    pipeline.update_content(last).await.unwrap();
    assert_eq!(embedded(&pipeline, &embedder, &t).await.len(), 4, "the reply once final");

    // The embedder fails: the write stands, without a vector; its repeat (a retry whose first
    // answer was lost) embeds it.
    flaky.set_down(true);
    let key = IdempotencyKey::new("k1").unwrap();
    let add = Add::new(t.clone(), Role::User, Content::text("written while down")).with_idempotency_key(key);
    let first = pipeline.add(add.clone()).await.unwrap();
    assert!(!first.deduplicated);
    assert_eq!(embedded(&pipeline, &embedder, &t).await.len(), 4);
    flaky.set_down(false);
    let again = pipeline.add(add).await.unwrap();
    assert!(again.deduplicated);
    assert_eq!(embedded(&pipeline, &embedder, &t).await.len(), 5, "a repeat is embedded too");
    store.close().await;
}

#[tokio::test]
async fn recall_through_a_scoped_handle_stays_in_its_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteBackend::open(dir.path().join("tenants.db")).await.unwrap();
    let embedder = HashEmbedder::new(128);
    let pipeline = Pipeline::builder().layer(AutoEmbedLayer::new(embedder.clone())).build(store.clone());
    let scoped = |name: &str| pipeline.scoped(Context::new().with_tenant(TenantId::new(name).unwrap()));
    let (acme, globex) = (scoped("acme"), scoped("globex"));
    let t = thread("general");
    acme.add(Add::new(t.clone(), Role::User, Content::text("acme launches the rocket on Tuesday"))).await.unwrap();
    globex.add(Add::new(t.clone(), Role::User, Content::text("globex launches the rocket on Monday"))).await.unwrap();
    let found =
        acme.recall(&embedder, Recall::new("when is the rocket launch?").with_keywords("rocket")).await.unwrap();
    assert_eq!(found.hits.len(), 1);
    assert_eq!(found.hits[0].message.content.to_text(), "acme launches the rocket on Tuesday");
    assert!(found.hits[0].tenant.as_ref().is_some_and(|t| t.as_str() == "acme"));
    // A query of another model than the stored one is refused, never ranked.
    let other = HashEmbedder::new(32);
    let refused = acme.recall(&other, Recall::new("rocket")).await.unwrap_err();
    assert!(matches!(refused, PersistError::InvalidInput { field: "model", .. }), "{refused:?}");
    let empty = acme.recall(&embedder, Recall::new("  ")).await.unwrap_err();
    assert!(matches!(empty, PersistError::InvalidInput { field: "text", .. }));
    store.close().await;
}

/// Below the embedding layer: after each add commits, another writer changes the message's
/// metadata (its version moves, its content stays).
#[derive(Clone)]
struct Retag<S> {
    inner: S,
}

impl<S> tower::Service<persist::PersistArgs> for Retag<S>
where
    S: tower::Service<persist::PersistArgs, Response = persist::PersistResult, Error = PersistError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = persist::PersistResult;
    type Error = PersistError;
    type Future = persist::raw::BoxFuture<'static, persist::Result<persist::PersistResult>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<persist::Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, args: persist::PersistArgs) -> Self::Future {
        use tower::ServiceExt;
        let mut inner = self.inner.clone();
        let answer = self.inner.call(args);
        Box::pin(async move {
            let result = answer.await?;
            if let persist::PersistResult::Added(added) = &result {
                let tag = persist::Metadata::new().with("seen", serde_json::json!(true));
                let update = persist::args::Update::message(added.message.thread_id.clone(), added.message.id.clone())
                    .with_metadata(tag);
                inner.ready().await?.call(update.into()).await?;
            }
            Ok(result)
        })
    }
}

/// A change of metadata between a message's write and its embedding (its version moved, its
/// content did not): the vector is written at the new version, not dropped.
#[tokio::test]
async fn a_message_retagged_before_its_embedding_still_gets_its_vector() {
    let embedder = HashEmbedder::new(64);
    let pipeline = Pipeline::builder()
        .layer(AutoEmbedLayer::new(embedder.clone()))
        .layer(tower::layer::layer_fn(|inner| Retag { inner }))
        .build(persist::memory::MemoryBackend::new());
    let t = thread("retagged");
    let added = pipeline.add(Add::new(t.clone(), Role::User, Content::text("retagged right away"))).await.unwrap();
    assert_eq!(added.message.version, 1);
    let found = embedded(&pipeline, &embedder, &t).await;
    assert_eq!(found, ["retagged right away"]);
}

#[tokio::test]
async fn a_restore_is_embedded_once_written_and_a_repeat_embeds_nothing_more() {
    use persist::args::Restore;
    use persist::{Message, MessageId, Thread, Timestamp};

    let embedder = HashEmbedder::new(64);
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Counted { inner: embedder.clone(), calls: Arc::clone(&calls) };
    let pipeline = Pipeline::builder().layer(AutoEmbedLayer::new(counted)).build(persist::memory::MemoryBackend::new());
    let t = thread("restored");
    let at = Timestamp::from_micros(1_000);
    let message = |seq: u64, text: &str| {
        let id = MessageId::new(format!("m{seq}")).unwrap();
        Message::stored(t.clone(), id, seq, Role::User, Content::text(text), at)
    };
    let restore = || {
        Restore::new(
            Thread::stored(t.clone(), 2, at),
            vec![message(1, "first restored"), message(2, "second restored")],
        )
    };
    assert_eq!(pipeline.restore(restore()).await.unwrap().restored, 2);
    assert_eq!(embedded(&pipeline, &embedder, &t).await, ["first restored", "second restored"]);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one call for the restore's texts");
    assert_eq!(pipeline.restore(restore()).await.unwrap().restored, 0);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a repeat that wrote nothing embeds nothing");
}

/// A `HashEmbedder` that counts its calls.
#[derive(Clone)]
struct Counted {
    inner: HashEmbedder,
    calls: Arc<std::sync::atomic::AtomicUsize>,
}

impl Embedder for Counted {
    fn model(&self) -> &str {
        self.inner.model()
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, persist::Result<Vec<Vec<f32>>>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.embed(texts)
    }
}
