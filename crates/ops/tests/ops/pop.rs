//! The one pop's rule, across handles of one store (as across processes): two pops never answer
//! the same message. A pop whose message another pop took between its read and its delete
//! (the delete found it gone) reads again and takes the next one; it used to answer the message
//! the other pop had answered already. And branch-from-turn, which Python's sessions call.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use persist::args::Add;
use persist::layer::from_fn;
use persist::lifecycle::{BranchFromTurn, Pop};
use persist::memory::MemoryBackend;
use persist::read::ListMessages;
use persist::sqlite::SqliteBackend;
use persist::{Backend, Content, Message, PersistArgs, PersistError, PersistOp, Pipeline, PipelineExt, Role, ThreadId};

fn id(text: &str) -> ThreadId {
    ThreadId::new(text).unwrap()
}

fn texts(messages: &[Message]) -> Vec<String> {
    messages.iter().map(|message| message.content.to_text()).collect()
}

async fn say(pipeline: &Pipeline, thread: &ThreadId, texts: &[&str]) {
    for text in texts {
        pipeline.add(Add::new(thread.clone(), Role::User, Content::text(*text))).await.unwrap();
    }
}

/// A pop through `ours` whose read is raced by a whole pop through `theirs` (another handle of
/// the same store): both read the same newest message, and only one may answer it.
async fn raced_pop<B: Backend + Clone>(ours: B, theirs: B) {
    let thread = id("raced");
    let other = Pipeline::new(theirs);
    say(&other, &thread, &["one", "two", "three"]).await;
    let (raced, answered) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(None)));
    let layer = {
        let (other, raced, answered, thread) = (other.clone(), raced.clone(), answered.clone(), thread.clone());
        from_fn(move |args: PersistArgs, next| {
            let (other, raced, answered, thread) = (other.clone(), raced.clone(), answered.clone(), thread.clone());
            async move {
                let op = args.op();
                let answer = next.run(args).await;
                // After this pop's first read, before its delete: another pop takes the newest.
                if op == PersistOp::List && !raced.swap(true, Ordering::SeqCst) {
                    let theirs = other.pop(Pop::new(thread)).await;
                    *answered.lock().unwrap() = Some(theirs.map(|popped| texts(&popped.messages)));
                }
                answer
            }
        })
    };
    let pipeline = Pipeline::builder().layer(layer).build(ours);
    let popped = pipeline.pop(Pop::new(thread.clone())).await.unwrap();
    let theirs = answered.lock().unwrap().take().expect("the other pop ran").unwrap();
    assert_eq!(theirs, ["three"], "the other pop took the newest");
    assert_eq!(texts(&popped.messages), ["two"], "the next one, not the one the other pop answered");
    let left = other.list(ListMessages::new(thread)).await.unwrap().items;
    assert_eq!(texts(&left), ["one"]);
}

#[tokio::test]
async fn a_pop_raced_by_another_answers_another_message_in_memory() {
    let store = MemoryBackend::new();
    raced_pop(store.clone(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pop_raced_by_another_handle_answers_another_message_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pops.db");
    let (ours, theirs) = (SqliteBackend::open(&path).await.unwrap(), SqliteBackend::open(&path).await.unwrap());
    raced_pop(ours, theirs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pops_of_several_each_answer_other_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.db");
    let handles = [SqliteBackend::open(&path).await.unwrap(), SqliteBackend::open(&path).await.unwrap()];
    let pipelines = handles.map(Pipeline::new);
    let thread = id("many");
    let written: Vec<String> = (0..45).map(|n| format!("m{n}")).collect();
    say(&pipelines[0], &thread, &written.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let mut pops = tokio::task::JoinSet::new();
    for n in 0..20 {
        let (pipeline, thread) = (pipelines[n % 2].clone(), thread.clone());
        pops.spawn(async move { pipeline.pop(Pop::new(thread).with_count(2)).await.unwrap() });
    }
    let mut popped = Vec::new();
    for answer in pops.join_all().await {
        assert_eq!(answer.messages.len(), 2, "each pop takes two");
        popped.extend(texts(&answer.messages));
    }
    let distinct: HashSet<&String> = popped.iter().collect();
    assert_eq!(distinct.len(), 40, "no message answered twice");
    assert_eq!(distinct, written[5..].iter().collect(), "the 40 newest");
    let left = pipelines[1].list(ListMessages::new(thread)).await.unwrap().items;
    assert_eq!(texts(&left), written[..5], "a prefix is left");
}

#[tokio::test]
async fn branch_from_turn_ends_the_active_branch_before_that_user_turn() {
    let pipeline = Pipeline::new(MemoryBackend::new());
    let thread = id("turns");
    let mut added = Vec::new();
    for (role, text) in [(Role::User, "hi"), (Role::Assistant, "hello"), (Role::User, "weather?")] {
        added.push(pipeline.add(Add::new(thread.clone(), role, Content::text(text))).await.unwrap().message);
    }
    for turn in [0, 3] {
        let refused = pipeline.branch_from_turn(BranchFromTurn::new(thread.clone(), turn)).await;
        assert!(matches!(refused, Err(PersistError::InvalidInput { field: "turn", .. })), "{turn}: {refused:?}");
    }
    let end = pipeline.branch_from_turn(BranchFromTurn::new(thread.clone(), 2)).await.unwrap();
    assert_eq!(end, Some(added[1].id.clone()));
    say(&pipeline, &thread, &["news?"]).await;
    let active = pipeline.list(ListMessages::new(thread.clone()).on_branch(persist::branch::Branch::Active)).await;
    assert_eq!(texts(&active.unwrap().items), ["hi", "hello", "news?"]);
    // Before the first turn: the branch is empty, and the next message starts a root.
    assert_eq!(pipeline.branch_from_turn(BranchFromTurn::new(thread.clone(), 1)).await.unwrap(), None);
    say(&pipeline, &thread, &["start over"]).await;
    let active = pipeline.list(ListMessages::new(thread).on_branch(persist::branch::Branch::Active)).await;
    assert_eq!(texts(&active.unwrap().items), ["start over"]);
}
