//! The model's view of a compacted thread reads what it gives, not what the summary covers:
//! its system messages and one message (the summary's last, where an overwrite can end the
//! branch), then the tail. On memory, SQLite and PostgreSQL, counted by a layer under the
//! history.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use persist::layer::from_fn;
use persist::read::GetThread;
use persist::summary::Summarize;
use persist::{Content, PersistArgs, PersistResult, Pipeline, ThreadId};
use persist_swiftide::PersistHistory;
use persist_testkit::stores;
use swiftide_core::MessageHistory;
use swiftide_core::chat_completion::ChatMessage;

/// What the layer saw of `list` requests: how many, and how many messages they answered.
#[derive(Debug, Default)]
struct Lists {
    requests: AtomicUsize,
    messages: AtomicUsize,
}

impl Lists {
    /// `(requests, messages)` since the last take.
    fn take(&self) -> (usize, usize) {
        (self.requests.swap(0, Ordering::SeqCst), self.messages.swap(0, Ordering::SeqCst))
    }
}

/// `backend` under a layer counting the `list` requests and the messages they answer.
fn counted(backend: impl persist::Backend, lists: &Arc<Lists>) -> Pipeline {
    let seen = Arc::clone(lists);
    Pipeline::builder()
        .layer(from_fn(move |args, next| {
            let seen = Arc::clone(&seen);
            async move {
                let list = matches!(args, PersistArgs::List(_));
                let result = next.run(args).await;
                if let (true, Ok(PersistResult::Messages(page))) = (list, &result) {
                    seen.requests.fetch_add(1, Ordering::SeqCst);
                    seen.messages.fetch_add(page.items.len(), Ordering::SeqCst);
                }
                result
            }
        }))
        .build(backend)
}

fn user(text: &str) -> ChatMessage {
    ChatMessage::User(text.into())
}

fn said(text: &str) -> ChatMessage {
    ChatMessage::Assistant(Some(text.into()), None)
}

fn system(text: &str) -> ChatMessage {
    ChatMessage::System(text.into())
}

async fn summarize(pipeline: &Pipeline, thread: &ThreadId, through: u64, text: &str) {
    pipeline.summarize(Summarize::new(thread.clone(), through, Content::text(text))).await.expect("a summary");
}

async fn last_seq(pipeline: &Pipeline, thread: &ThreadId) -> u64 {
    pipeline.get_thread(GetThread::new(thread.clone())).await.unwrap().expect("the thread").last_seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_view_of_a_compacted_thread_reads_its_tail_not_what_the_summary_covers() {
    let dir = tempfile::tempdir().unwrap();
    let lists = Arc::new(Lists::default());
    let mut pipelines = vec![("memory".to_owned(), counted(persist_memory::MemoryBackend::new(), &lists))];
    for store in stores(&dir, "swiftide_compacted_read").await {
        pipelines.push((format!("{store:?}"), counted(store.open().await, &lists)));
    }
    for (name, pipeline) in pipelines {
        let thread = ThreadId::new("compacted").unwrap();
        let history = PersistHistory::new(&pipeline, thread.clone());
        // Two system prompts among 200 covered messages, the summary ending at an assistant's.
        let mut covered = vec![system("You add numbers.")];
        for n in 0..99 {
            covered.extend([user(&format!("add {n} and 1")), said(&(n + 1).to_string())]);
            if n == 50 {
                covered.push(system("Answer in digits."));
            }
        }
        assert_eq!(covered.len(), 200);
        history.extend_owned(covered).await.unwrap();
        summarize(&pipeline, &thread, 200, "They added numbers.").await;
        let tail = vec![user("and 2 and 2?"), said("4")];
        history.extend_owned(tail.clone()).await.unwrap();

        lists.take();
        let given = history.history().await.unwrap();
        let expected = [
            vec![
                system("You add numbers."),
                system("Answer in digits."),
                ChatMessage::Summary("They added numbers.".into()),
            ],
            tail.clone(),
        ]
        .concat();
        assert_eq!(given, expected, "{name}");
        let (requests, messages) = lists.take();
        assert!(messages <= 3, "{name}: the system messages and the summary's last, not the 200 it covers: {messages}");
        assert!(requests <= 2, "{name}: a page of system messages and one message: {requests} lists");

        // The summary's last message, found by that one read, is where an overwrite ends the
        // branch to keep the summary and what came before it.
        history.overwrite(expected[..3].to_vec()).await.unwrap();
        assert_eq!(history.history().await.unwrap(), expected[..3], "{name}");
        let active = pipeline.get_thread(GetThread::new(thread.clone())).await.unwrap().unwrap().active_leaf;
        assert_eq!(active, Some(200), "{name}: the branch ends at the summary's last message");

        // A summary ending at a system message: that message is its last, no other read.
        history.extend_owned(vec![user("and 3 and 3?"), said("6"), system("Be brief.")]).await.unwrap();
        summarize(&pipeline, &thread, last_seq(&pipeline, &thread).await, "They added more.").await;
        lists.take();
        let given = history.history().await.unwrap();
        let expected = vec![
            system("You add numbers."),
            system("Answer in digits."),
            system("Be brief."),
            ChatMessage::Summary("They added more.".into()),
        ];
        assert_eq!(given, expected, "{name}");
        assert_eq!(lists.take(), (1, 3), "{name}: one page, of the three system messages");
        history.overwrite(expected.clone()).await.unwrap();
        assert_eq!(history.history().await.unwrap(), expected, "{name}: nothing to change");
    }
}
