//! `persist show` of a thread with branches (the active branch, alternatives marked), and a
//! branched thread's round trip through `export` and `import`: parents and the active leaf
//! exactly.

use std::path::Path;

use persist::args::{Add, Update};
use persist::branch::Switch;
use persist::read::{GetThread, ListMessages};
use persist::sqlite::SqliteBackend;
use persist::{Content, Message, PersistError, Pipeline, Role, Thread, ThreadId};

use crate::support::{block_on, ok, path_str};

/// `trip`: a question, two answers (the first followed by a follow-up), the active branch
/// switched back to the first answer.
async fn seed(path: &Path) -> Result<(), PersistError> {
    let backend = SqliteBackend::open(path).await?;
    let store = Pipeline::new(backend.clone());
    let thread = ThreadId::new("trip")?;
    let say = |role: Role, text: &str| Add::new(thread.clone(), role, Content::text(text));
    let question = store.add(say(Role::User, "Plan a day in Lisbon.")).await?.message;
    let first = store.add(say(Role::Assistant, "Alfama, then Baixa.")).await?.message;
    store.add(say(Role::User, "And the evening?")).await?;
    store.add(say(Role::Assistant, "Belém, then the LX Factory.").with_parent(question.id)).await?;
    store.update(Update::thread(thread).with_switch(Switch::Through(first.id))).await?;
    backend.close().await;
    Ok(())
}

async fn stored(path: &Path) -> Result<(Thread, Vec<Message>), PersistError> {
    let backend = SqliteBackend::open(path).await?;
    let thread = ThreadId::new("trip")?;
    let found = backend_thread(&backend, &thread).await?;
    let messages = persist::Backend::list(&backend, ListMessages::new(thread).include_reserved(true)).await?.items;
    backend.close().await;
    Ok((found, messages))
}

async fn backend_thread(backend: &SqliteBackend, thread: &ThreadId) -> Result<Thread, PersistError> {
    Ok(persist::Backend::get_thread(backend, GetThread::new(thread.clone())).await?.expect("the thread"))
}

#[test]
fn show_prints_the_active_branch_and_marks_alternatives() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("chat.db");
    block_on(seed(&store)).unwrap();

    let shown = ok(&["--url", path_str(&store), "show", "trip"]);
    let lines: Vec<&str> = shown.lines().collect();
    assert!(lines[0].contains("active branch ends at #3"), "{shown}");
    assert_eq!(
        &lines[1..],
        [
            "#1 user [complete] Plan a day in Lisbon.",
            "#2 assistant [complete] (1/2) Alfama, then Baixa.",
            "#3 user [complete] And the evening?",
        ],
        "{shown}"
    );
    let all = ok(&["--url", path_str(&store), "show", "trip", "--all"]);
    assert!(all.contains("#4 assistant [complete] (after #1) Belém"), "{all}");
    assert!(all.contains("#1 user [complete] (root) Plan"), "{all}");
}

#[test]
fn export_and_import_keep_parents_and_the_active_leaf() {
    let dir = tempfile::tempdir().unwrap();
    let (source, target, export) = (dir.path().join("a.db"), dir.path().join("b.db"), dir.path().join("trip.jsonl"));
    block_on(seed(&source)).unwrap();
    ok(&["--url", path_str(&source), "export", "trip", "-o", path_str(&export)]);
    let lines = std::fs::read_to_string(&export).unwrap();
    assert!(lines.contains("\"schema_version\":3") && lines.contains("\"parent_seq\":1"), "{lines}");
    ok(&["--url", path_str(&target), "import", path_str(&export)]);

    let (thread, messages) = block_on(stored(&source)).unwrap();
    let (copy, copied) = block_on(stored(&target)).unwrap();
    assert_eq!(copy.active_leaf, thread.active_leaf);
    assert_eq!(copy.active_leaf, Some(3));
    let parents = |messages: &[Message]| messages.iter().map(|m| (m.seq, m.parent_seq)).collect::<Vec<_>>();
    assert_eq!(parents(&copied), parents(&messages));
    assert_eq!(parents(&copied), [(1, None), (2, Some(1)), (3, Some(2)), (4, Some(1))]);
}
