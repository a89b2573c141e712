//! Summaries through `EncryptLayer`: sealed at rest, bound to their thread and range (an
//! envelope moved to a message or another summary does not open), read compacted in clear.

use persist::args::{Add, UpdateContent};
use persist::read::GetMessage;
use persist::summary::{ListSummaries, ReadCompacted, Summarize};
use persist::{Content, Metadata, Role, ThreadId};
use serde_json::json;

use crate::support;
use crate::support::{assert_unreadable, sealed_text, stacks};

fn thread(id: &str) -> ThreadId {
    ThreadId::new(id).unwrap()
}

#[tokio::test]
async fn a_summary_is_sealed_bound_to_its_place_and_read_compacted_in_clear() {
    let (sealed, raw) = stacks(support::ring());
    let t = thread("t");
    let mut messages = Vec::new();
    for text in ["a", "b", "c"] {
        messages.push(sealed.add(Add::new(t.clone(), Role::User, Content::text(text))).await.unwrap().message);
    }
    let secret = Metadata::new().with("secret", json!("s")).with("lang", json!("en"));
    let summary = Summarize::new(t.clone(), 2, Content::text("a and b")).with_metadata(secret.clone());
    let written = sealed.summarize(summary).await.unwrap();
    assert_eq!((written.summary.content.to_text(), &written.summary.metadata), ("a and b".to_owned(), &secret));
    let found = sealed.compacted(ReadCompacted::new(t.clone())).await.unwrap();
    let summary = found.summary.expect("the summary");
    assert_eq!((summary.content.to_text(), summary.metadata), ("a and b".to_owned(), secret));
    assert_eq!(found.messages.iter().map(|m| m.content.to_text()).collect::<Vec<_>>(), ["c"]);

    let stored = raw.summaries(ListSummaries::new(t.clone())).await.unwrap().items.remove(0);
    assert!(sealed_text(&stored.content.to_value()), "sealed at rest: {stored:?}");
    assert!(sealed_text(stored.metadata.get("secret").unwrap()) && stored.metadata.get("lang") == Some(&json!("en")));
    // The summary's envelope as a message's content, and as another summary's, does not open.
    let moved = UpdateContent::new(t.clone(), messages[2].id.clone(), stored.content.clone());
    raw.update_content(moved).await.unwrap();
    assert_unreadable(sealed.get(GetMessage::new(t.clone(), messages[2].id.clone())).await, "a summary as content");
    raw.summarize(Summarize::new(t.clone(), 3, stored.content.clone())).await.unwrap();
    let found = sealed.compacted(ReadCompacted::new(t.clone())).await.unwrap();
    assert!(found.summary.is_none(), "the summary at 3 does not open: {found:?}");
    assert_eq!(found.unreadable.len(), 1, "it is named: {found:?}");
    let page = sealed.summaries(ListSummaries::new(t.clone())).await.unwrap();
    assert_eq!((page.items.len(), page.unreadable.len()), (1, 1), "the one at 2 opens, the one at 3 is named");
}

/// A key rotation re-seals summaries too: after it, the ring without the old key still reads
/// the compacted thread (before, summaries kept the old key's envelopes and no longer opened
/// once it was shredded). Range and time stay as they were.
#[tokio::test]
async fn a_rotation_reseals_summaries_and_the_old_key_can_go() {
    use persist::encrypt::{EncryptLayer, KeyId, KeyRing, RotateKeys, SecretKey};
    let ring = support::ring();
    let dir = tempfile::tempdir().unwrap();
    let store = persist::sqlite::SqliteBackend::open(dir.path().join("rotate.db")).await.unwrap();
    let encryption = support::layer(ring.clone());
    let sealed = persist::Pipeline::builder().layer(encryption.clone()).build(store.clone());
    let t = thread("t");
    for text in ["a", "b", "c"] {
        sealed.add(Add::new(t.clone(), Role::User, Content::text(text))).await.unwrap();
    }
    let secret = Metadata::new().with("secret", json!("s"));
    let summary = Summarize::new(t.clone(), 2, Content::text("a and b")).with_metadata(secret.clone());
    let before = sealed.summarize(summary).await.unwrap().summary;

    ring.add_key(KeyId::new("k2").unwrap(), SecretKey::new([22; 32])).unwrap();
    let mut batch = RotateKeys::new();
    let mut resealed = 0;
    loop {
        let report = encryption.rotate(&sealed, batch.clone()).await.unwrap();
        resealed += report.resealed;
        if report.done {
            break;
        }
        batch = batch.with_cursor(report.next_cursor);
    }
    assert_eq!(resealed, 4, "three messages and the summary");
    let again = encryption.rotate(&sealed, RotateKeys::new()).await.unwrap();
    assert_eq!(again.resealed, 0, "nothing left to re-seal");

    let only_new = KeyRing::new().with_key(KeyId::new("k2").unwrap(), SecretKey::new([22; 32])).unwrap();
    let fresh = persist::Pipeline::builder().layer(EncryptLayer::new(only_new).seal_metadata(["secret"])).build(store);
    let found = fresh.compacted(ReadCompacted::new(t.clone())).await.unwrap();
    assert!(found.unreadable.is_empty(), "{found:?}");
    let summary = found.summary.expect("the summary opens with the new key alone");
    assert_eq!((summary.content.to_text(), summary.metadata), ("a and b".to_owned(), secret));
    assert_eq!((summary.from_seq, summary.through_seq, summary.created_at), (1, 2, before.created_at));
}
