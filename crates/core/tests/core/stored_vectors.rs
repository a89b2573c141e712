//! `ListEmbeddings`: pages of stored vectors.

use persist_core::vector::{Embedding, ListEmbeddings, StoredEmbedding};
use persist_core::{MessageId, Role, Status, ThreadId, Timestamp};

fn stored(seq: u64, model: &str) -> StoredEmbedding {
    let id = MessageId::new(format!("m{seq}")).unwrap();
    StoredEmbedding::new(
        id,
        seq,
        Embedding::new(model, vec![1.0]),
        Role::User,
        Status::Complete,
        Timestamp::from_micros(0),
    )
}

#[test]
fn pages_by_seq_then_model_bytewise() {
    let query = ListEmbeddings::new(ThreadId::new("t").unwrap()).with_limit(2);
    let page = query.page(vec![stored(2, "a"), stored(1, "b"), stored(1, "B")]);
    let order: Vec<_> = page.items.iter().map(|s| (s.seq, s.embedding.model().to_owned())).collect();
    assert_eq!(order, [(1, "B".to_owned()), (1, "b".to_owned())]);
    assert!(page.has_more);
    let next = query.next_page(&page).expect("more follow");
    assert!(!next.admits(1, "a") && !next.admits(1, "b") && next.admits(1, "c") && next.admits(2, "A"));
    assert!(query.clone().with_limit(0).validate().is_err());
}
