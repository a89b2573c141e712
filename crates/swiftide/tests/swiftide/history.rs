//! `PersistHistory`'s contract, on memory, SQLite and PostgreSQL: a write sent again after its
//! answer was lost writes nothing twice, and the same words said again are new messages;
//! `extend` is all or none; an overwrite keeps what it shares, moves the branch's end back or
//! writes a new branch, and keeps what it replaces; swiftide's `redrive` works on it; tenants
//! are apart; a deleted thread is not written again.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;

use persist::args::Delete;
use persist::read::{GetThread, ListMessages};
use persist::{Context, PersistArgs, PersistError, PersistResult, Pipeline, TenantId, ThreadId};
use persist_swiftide::{PersistHistory, View};
use persist_testkit::stores;
use swiftide_agents::DefaultContext;
use swiftide_core::chat_completion::{ChatMessage, ToolCall, ToolOutput};
use swiftide_core::{AgentContext, MessageHistory};
use tower::{Layer, Service};

/// The pipelines a test runs on: memory, then SQLite and PostgreSQL.
async fn pipelines(dir: &tempfile::TempDir, name: &str) -> Vec<(String, Pipeline)> {
    let mut all = vec![("memory".to_owned(), Pipeline::new(persist_memory::MemoryBackend::new()))];
    for store in stores(dir, name).await {
        all.push((format!("{store:?}"), store.open().await));
    }
    all
}

fn history(pipeline: &Pipeline, thread: &str) -> PersistHistory {
    PersistHistory::new(pipeline, ThreadId::new(thread).unwrap()).with_view(View::Transcript)
}

fn user(text: &str) -> ChatMessage {
    ChatMessage::User(text.into())
}

fn said(text: &str) -> ChatMessage {
    ChatMessage::Assistant(Some(text.into()), None)
}

/// Every message the thread holds, on any branch.
async fn stored(pipeline: &Pipeline, thread: &str) -> usize {
    let query = ListMessages::new(ThreadId::new(thread).unwrap()).with_limit(1000);
    pipeline.list(query).await.map_or(0, |page| page.items.len())
}

async fn version(pipeline: &Pipeline, thread: &str) -> u64 {
    let thread = pipeline.get_thread(GetThread::new(ThreadId::new(thread).unwrap())).await.unwrap();
    thread.expect("the thread").version
}

/// Loses the answer of the next `lose` turn writes: the write is applied, and its caller told
/// it failed (a connection cut as the commit's answer came back).
#[derive(Clone)]
struct LosesAnswers {
    lose: Arc<AtomicUsize>,
}

impl<S> Layer<S> for LosesAnswers {
    type Service = LosingAnswers<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LosingAnswers { inner, lose: self.lose.clone() }
    }
}

#[derive(Clone)]
struct LosingAnswers<S> {
    inner: S,
    lose: Arc<AtomicUsize>,
}

impl<S> Service<PersistArgs> for LosingAnswers<S>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
    S::Future: Send + 'static,
{
    type Response = PersistResult;
    type Error = PersistError;
    type Future = Pin<Box<dyn Future<Output = Result<PersistResult, PersistError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), PersistError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, args: PersistArgs) -> Self::Future {
        let lose = matches!(args, PersistArgs::AppendTurn(_))
            && self.lose.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1)).is_ok();
        let answer = self.inner.call(args);
        Box::pin(async move {
            match answer.await {
                Ok(_) if lose => Err(PersistError::temporary("the answer was lost")),
                other => other,
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_sent_again_after_its_answer_was_lost_writes_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = persist::sqlite::SqliteBackend::open(dir.path().join("lost.db")).await.unwrap();
    let layer = LosesAnswers { lose: Arc::default() };
    let over_memory = Pipeline::builder().layer(layer.clone()).build(persist_memory::MemoryBackend::new());
    let over_sqlite = Pipeline::builder().layer(layer.clone()).build(sqlite);
    for (name, pipeline) in [("memory", over_memory), ("SQLite", over_sqlite)] {
        let history = history(&pipeline, "lost");
        // The first write of this history, and a later one: each answer lost, each sent again.
        for batch in [vec![user("hello"), said("hi")], vec![user("how are you?")]] {
            layer.lose.store(1, Ordering::SeqCst);
            let lost = history.extend_owned(batch.clone()).await.expect_err("the answer was lost");
            assert!(matches!(lost.downcast_ref(), Some(PersistError::Temporary { .. })), "{name}: {lost}");
            history.extend_owned(batch).await.expect("sent again");
        }
        assert_eq!(history.history().await.unwrap(), [user("hello"), said("hi"), user("how are you?")], "{name}");
        assert_eq!(stored(&pipeline, "lost").await, 3, "{name}: written once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_words_said_again_are_new_messages() {
    let dir = tempfile::tempdir().unwrap();
    for (name, pipeline) in pipelines(&dir, "swiftide_again").await {
        let (first, second) = (history(&pipeline, "again"), history(&pipeline, "again"));
        first.push_owned(user("how are you?")).await.unwrap();
        first.push_owned(user("how are you?")).await.unwrap();
        // Another history of the thread (another process) writing the same words at the same
        // place: its own message, as is the first history's next one.
        second.push_owned(user("how are you?")).await.unwrap();
        first.push_owned(user("how are you?")).await.unwrap();
        let third = history(&pipeline, "again");
        third.push_owned(user("how are you?")).await.unwrap();
        assert_eq!(first.history().await.unwrap(), vec![user("how are you?"); 5], "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extend_is_all_or_none_and_a_long_one_is_written_whole_in_order() {
    let dir = tempfile::tempdir().unwrap();
    for (name, pipeline) in pipelines(&dir, "swiftide_extend").await {
        let history = history(&pipeline, "extend");
        history.push_owned(user("start")).await.unwrap();
        // More than a turn may hold in bytes: refused whole, nothing of it written.
        let huge = "x".repeat(17 * 1024 * 1024);
        let refused = history.extend_owned(vec![user("a"), user(&huge)]).await;
        let error = refused.expect_err("too large");
        assert!(error.downcast_ref::<persist::PersistError>().is_some(), "{name}: persist's error: {error}");
        assert_eq!(history.history().await.unwrap(), [user("start")], "{name}: nothing of the refused write");
        // 600 messages: past one turn's 256, written in order.
        let many: Vec<ChatMessage> = (0..600).map(|n| user(&n.to_string())).collect();
        history.extend_owned(many.clone()).await.unwrap();
        let read = history.history().await.unwrap();
        assert_eq!(read.len(), 601, "{name}");
        assert_eq!(read[1..], many[..], "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overwrite_keeps_what_it_shares_and_what_it_replaces() {
    let dir = tempfile::tempdir().unwrap();
    for (name, pipeline) in pipelines(&dir, "swiftide_overwrite").await {
        let history = history(&pipeline, "over");
        let start = vec![ChatMessage::System("Be brief.".into()), user("one"), said("1"), user("two"), said("2")];
        // On a thread not written yet: the messages, once.
        history.overwrite(start.clone()).await.unwrap();
        assert_eq!(history.history().await.unwrap(), start, "{name}");
        let unchanged = version(&pipeline, "over").await;
        history.overwrite(start.clone()).await.unwrap();
        assert_eq!(version(&pipeline, "over").await, unchanged, "{name}: the same history writes nothing");

        // Cut short (as `redrive` does): the branch ends earlier, the rest stays stored.
        history.overwrite(start[..3].to_vec()).await.unwrap();
        assert_eq!(history.history().await.unwrap(), start[..3], "{name}");
        assert_eq!(stored(&pipeline, "over").await, 5, "{name}: nothing removed");
        history.push_owned(user("three")).await.unwrap();
        assert_eq!(history.history().await.unwrap()[3..], [user("three")], "{name}: written after the cut");

        // Diverging: a new branch from what is shared.
        let other = vec![start[0].clone(), user("one"), said("uno")];
        history.overwrite(other.clone()).await.unwrap();
        assert_eq!(history.history().await.unwrap(), other, "{name}");
        // Nothing shared: a root of its own.
        let fresh = vec![user("from scratch")];
        history.overwrite(fresh.clone()).await.unwrap();
        assert_eq!(history.history().await.unwrap(), fresh, "{name}");
        assert_eq!(stored(&pipeline, "over").await, 8, "{name}: every replaced message kept");

        // Nothing: the thread emptied; what comes next never reuses a number.
        history.overwrite(Vec::new()).await.unwrap();
        assert!(history.history().await.unwrap().is_empty(), "{name}");
        history.overwrite(start.clone()).await.unwrap();
        assert_eq!(history.history().await.unwrap(), start, "{name}: the first messages again, written again");
        let page = pipeline.list(ListMessages::new(ThreadId::new("over").unwrap())).await.unwrap();
        assert!(page.items[0].seq > 8, "{name}: new numbers");
        history.overwrite(Vec::new()).await.unwrap();
        history.push_owned(start[0].clone()).await.unwrap();
        assert_eq!(history.history().await.unwrap(), start[..1], "{name}: a push after a clear is written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swiftide_redrive_drops_the_last_completion_from_the_branch() {
    let dir = tempfile::tempdir().unwrap();
    for (name, pipeline) in pipelines(&dir, "swiftide_redrive").await {
        let mut context = DefaultContext::default();
        context.with_message_history(history(&pipeline, "redrive"));
        context.add_messages(vec![ChatMessage::System("Be brief.".into()), user("hi")]).await.unwrap();
        assert_eq!(context.next_completion().await.unwrap().map(|m| m.len()), Some(2), "{name}");
        let call = ToolCall::builder().id("c1").name("lookup").build().unwrap();
        context.add_message(ChatMessage::Assistant(None, Some(vec![call.clone()]))).await.unwrap();
        context.add_message(ChatMessage::ToolOutput(call.clone(), ToolOutput::fail("flaky"))).await.unwrap();
        assert_eq!(context.next_completion().await.unwrap().map(|m| m.len()), Some(4), "{name}");
        // The completion's answer is unusable; swiftide drives it again from before the answer.
        context.add_message(said("garbled")).await.unwrap();
        context.redrive().await.unwrap();
        let before = vec![
            ChatMessage::System("Be brief.".into()),
            user("hi"),
            ChatMessage::Assistant(None, Some(vec![call.clone()])),
            ChatMessage::ToolOutput(call, ToolOutput::fail("flaky")),
        ];
        assert_eq!(context.history().await.unwrap(), before, "{name}");
        assert_eq!(context.next_completion().await.unwrap(), Some(before.clone()), "{name}: the completion again");
        assert_eq!(stored(&pipeline, "redrive").await, 5, "{name}: the dropped answer stays on its branch");
        // The model answers the same again: a new message, not the dropped one found again.
        context.add_message(said("garbled")).await.unwrap();
        let again = [before, vec![said("garbled")]].concat();
        assert_eq!(context.history().await.unwrap(), again, "{name}");
        assert_eq!(stored(&pipeline, "redrive").await, 6, "{name}");
        // So does a history of another process, which never wrote here.
        let other = history(&pipeline, "redrive");
        other.overwrite(again[..4].to_vec()).await.unwrap();
        other.push_owned(said("garbled")).await.unwrap();
        assert_eq!(other.history().await.unwrap(), again, "{name}");
        assert_eq!(stored(&pipeline, "redrive").await, 7, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_apart_and_a_deleted_thread_reads_empty_and_is_not_written_again() {
    let dir = tempfile::tempdir().unwrap();
    for (name, pipeline) in pipelines(&dir, "swiftide_tenants").await {
        let thread = ThreadId::new("shared-id").unwrap();
        let of = |tenant: &str| {
            let scoped = pipeline.scoped(Context::new().with_tenant(TenantId::new(tenant).unwrap()));
            PersistHistory::scoped(scoped, thread.clone())
        };
        of("acme").push_owned(user("acme's")).await.unwrap();
        of("globex").push_owned(user("globex's")).await.unwrap();
        assert_eq!(of("acme").history().await.unwrap(), [user("acme's")], "{name}");
        assert_eq!(of("globex").history().await.unwrap(), [user("globex's")], "{name}");
        assert!(PersistHistory::new(&pipeline, thread.clone()).history().await.unwrap().is_empty(), "{name}");
        // A thread deleted under it reads as empty, and is not written again (persist never
        // resurrects a deleted thread): the write fails with persist's typed error.
        let acme = pipeline.scoped(Context::new().with_tenant(TenantId::new("acme").unwrap()));
        acme.delete(Delete::thread(thread.clone())).await.unwrap();
        assert!(of("acme").history().await.unwrap().is_empty(), "{name}");
        let refused = of("acme").push_owned(user("back")).await.expect_err("a deleted thread");
        let error = refused.downcast_ref::<PersistError>();
        assert!(matches!(error, Some(PersistError::ThreadDeleted { .. })), "{name}: {refused:?}");
        assert_eq!(of("globex").history().await.unwrap(), [user("globex's")], "{name}: the other tenant's stays");
    }
}
