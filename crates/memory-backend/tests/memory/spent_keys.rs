//! A removed message's key is remembered for the store's key retention, then forgotten.

use std::time::Duration;

use persist_core::args::{Add, Delete};
use persist_core::read::ListMessages;
use persist_core::{Content, IdempotencyKey, Pipeline, Role, ThreadId};
use persist_memory::MemoryBackend;

async fn retried_after_a_delete(backend: MemoryBackend) -> (bool, usize) {
    let pipeline = Pipeline::new(backend);
    let thread = ThreadId::new("t").unwrap();
    let add = Add::new(thread.clone(), Role::User, Content::text("hi"))
        .with_idempotency_key(IdempotencyKey::new("k").unwrap());
    let first = pipeline.add(add.clone()).await.unwrap();
    pipeline.delete(Delete::message(thread.clone(), first.message.id)).await.unwrap();
    let again = pipeline.add(add).await.unwrap();
    (again.deduplicated, pipeline.list(ListMessages::new(thread)).await.unwrap().items.len())
}

#[tokio::test]
async fn a_key_is_remembered_for_the_retention_then_forgotten() {
    assert_eq!(retried_after_a_delete(MemoryBackend::new()).await, (true, 0), "remembered by default");
    let forgetful = MemoryBackend::new().with_key_retention(Duration::ZERO);
    assert_eq!(retried_after_a_delete(forgetful).await, (false, 1), "forgotten at once: written again");
}
