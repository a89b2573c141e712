//! Branches: a conversation as a tree. The user edits a question and regenerates an answer;
//! nothing is lost. Every version stays readable, the "< 1/2 >" alternatives at each point are
//! listed, and switching back to an earlier answer brings back what followed it.
//!
//! Run: `cargo run --example branches`

use persist::args::{Add, Reserve, Update, UpdateContent};
use persist::branch::{Branch, ListBranches, Switch};
use persist::read::ListMessages;
use persist::sqlite::SqliteBackend;
use persist::{Content, Message, MessageId, Pipeline, Role, ThreadId};

/// The active branch, root first, as a chat screen shows it: each message with its place among
/// its alternatives when it has any.
async fn show(store: &Pipeline, thread: &ThreadId, title: &str) -> Result<Vec<Message>, persist::PersistError> {
    println!("-- {title}");
    let branch = store.list(ListMessages::new(thread.clone()).on_branch(Branch::Active)).await?.items;
    for message in &branch {
        let siblings = store.branches(ListBranches::siblings(thread.clone(), message.id.clone())).await?;
        let place = match (siblings.items.len(), siblings.active) {
            (n @ 2.., Some(at)) => format!(" < {}/{n} >", at + 1),
            _ => String::new(),
        };
        println!("#{} {:<9}{place} {}", message.seq, message.role.as_str(), message.content.to_text());
    }
    Ok(branch)
}

fn texts(messages: &[Message]) -> Vec<String> {
    messages.iter().map(|m| m.content.to_text()).collect()
}

#[tokio::main]
async fn main() -> Result<(), persist::PersistError> {
    let dir = std::env::temp_dir().join(format!("persist-branches-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| persist::PersistError::backend("creating the example's folder", e))?;
    let store = Pipeline::new(SqliteBackend::open(dir.join("branches.db")).await?);
    let thread = ThreadId::new("trip-planning")?;
    let say = |role: Role, text: &str| Add::new(thread.clone(), role, Content::text(text));

    // A plain conversation: each message follows the one before it, no parents named.
    let question = store.add(say(Role::User, "Plan a day in Lisbon.").with_id(MessageId::new("q1")?)).await?.message;
    let first = store.add(say(Role::Assistant, "Morning in Alfama, lunch in Baixa.")).await?.message;
    store.add(say(Role::User, "And the evening?")).await?;
    store.add(say(Role::Assistant, "Sunset at Miradouro da Graça.")).await?;
    show(&store, &thread, "a line of four messages").await?;

    // Regenerate the first answer: a reply whose parent is the question starts a new branch
    // there and makes it active. Streamed like any reply.
    let again = store.reserve(Reserve::new(thread.clone(), Role::Assistant).with_parent(question.id.clone())).await?;
    let again = again.message;
    let text = Content::text("Start at Belém, then the LX Factory.");
    store.update_content(UpdateContent::new(thread.clone(), again.id.clone(), text)).await?;
    let regenerated = show(&store, &thread, "the answer regenerated: a sibling of the first").await?;
    assert_eq!(texts(&regenerated), ["Plan a day in Lisbon.", "Start at Belém, then the LX Factory."]);

    // Edit the question: a root of its own (the question had no parent), answered on its branch.
    let edited = say(Role::User, "Plan a rainy day in Lisbon.").with_parent(persist::branch::Parent::Root);
    store.add(edited).await?;
    store.add(say(Role::Assistant, "The Gulbenkian, then the Oceanário.")).await?;
    show(&store, &thread, "the question edited: a second root").await?;

    // Nothing was lost: every leaf is the end of a branch, readable as a whole.
    let leaves = store.branches(ListBranches::leaves(thread.clone())).await?;
    println!(
        "-- {} branches end at seqs {:?}",
        leaves.items.len(),
        leaves.items.iter().map(|m| m.seq).collect::<Vec<_>>()
    );
    let first_branch = ListMessages::new(thread.clone()).on_branch(Branch::EndingAt(leaves.items[0].id.clone()));
    assert_eq!(store.list(first_branch).await?.items.len(), 4, "the original conversation, whole");

    // Switch back to the first answer: its branch is active again, with what followed it. A
    // switch is an update of the thread: it names the version it saw, so two tabs switching at
    // once do not overwrite each other unseen.
    let seen = store.get_thread(persist::read::GetThread::new(thread.clone())).await?.expect("the thread");
    let back = Update::thread(thread.clone()).with_switch(Switch::Through(first.id.clone()));
    store.update(back.with_expected_version(seen.version)).await?;
    let restored = show(&store, &thread, "switched back to the first answer").await?;
    assert_eq!(
        texts(&restored),
        [
            "Plan a day in Lisbon.",
            "Morning in Alfama, lunch in Baixa.",
            "And the evening?",
            "Sunset at Miradouro da Graça."
        ]
    );

    // And the conversation goes on from there.
    let next = store.add(say(Role::User, "Where should we have dinner?")).await?.message;
    assert_eq!(next.parent_seq, restored.last().map(|m| m.seq));
    println!("-- the next message follows #{}", next.parent_seq.unwrap_or_default());
    Ok(())
}
