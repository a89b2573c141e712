//! `PersistHistory`'s contract, on memory, SQLite and PostgreSQL: a write sent again writes
//! nothing twice; `extend` is all or none; an overwrite keeps what it shares, moves the
//! branch's end back or writes a new branch, and keeps what it replaces; swiftide's `redrive`
//! works on it; tenants are apart; a deleted thread is not written again.

use persist::args::Delete;
use persist::read::{GetThread, ListMessages};
use persist::{Context, PersistError, Pipeline, TenantId, ThreadId};
use persist_swiftide::{PersistHistory, View};
use persist_testkit::stores;
use swiftide_agents::DefaultContext;
use swiftide_core::chat_completion::{ChatMessage, ToolCall, ToolOutput};
use swiftide_core::{AgentContext, MessageHistory};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_sent_again_writes_nothing_twice_and_words_said_again_later_are_new() {
    let dir = tempfile::tempdir().unwrap();
    for (name, pipeline) in pipelines(&dir, "swiftide_retry").await {
        let first = history(&pipeline, "retry");
        first.push_owned(user("hello")).await.unwrap();
        // Two instances that read the same place; the second sends the same message (the first's
        // write retried after its acknowledgement was lost): written once.
        let (a, b) = (history(&pipeline, "retry"), history(&pipeline, "retry"));
        a.history().await.unwrap();
        b.history().await.unwrap();
        a.extend_owned(vec![said("hi"), user("how are you?")]).await.unwrap();
        b.extend_owned(vec![said("hi"), user("how are you?")]).await.unwrap();
        assert_eq!(a.history().await.unwrap(), [user("hello"), said("hi"), user("how are you?")], "{name}");
        // The same words again, after the place moved on: new messages.
        a.push_owned(user("how are you?")).await.unwrap();
        a.push_owned(user("how are you?")).await.unwrap();
        assert_eq!(stored(&pipeline, "retry").await, 5, "{name}");
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
        history.push_owned(user("again")).await.unwrap();
        let page = pipeline.list(ListMessages::new(ThreadId::new("over").unwrap())).await.unwrap();
        assert!(page.items[0].seq > 8, "{name}: a new number");
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
        assert_eq!(context.next_completion().await.unwrap(), Some(before), "{name}: the completion again");
        assert_eq!(stored(&pipeline, "redrive").await, 5, "{name}: the dropped answer stays on its branch");
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
