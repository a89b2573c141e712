//! `BoxBackend` is the backend it holds: the methods with a default (`apply_now`, `feed_hub`)
//! are that backend's own, not the trait's default.

use persist::memory::MemoryBackend;
use persist::read::GetMessage;
use persist::{Backend, Content, Role, ThreadId, args::Add};
use persist_core::ApplyNow;
use persist_core::raw::BoxBackend;

#[tokio::test]
async fn a_boxed_backend_answers_with_the_backends_own_methods() {
    let memory = MemoryBackend::new();
    let boxed = BoxBackend::new(memory.clone());
    let thread = ThreadId::new("boxed").unwrap();
    // The memory backend answers a write at once; the trait's default hands it back.
    let ApplyNow::Done(written) = boxed.apply_now(Add::new(thread.clone(), Role::User, Content::text("hi")).into())
    else {
        panic!("apply_now handed the write back: the trait's default, not the backend's");
    };
    let message = written.unwrap().message().cloned().unwrap();
    let read = memory.get(GetMessage::new(thread, message.id.clone())).await.unwrap();
    assert_eq!(read, Some(message), "written to the backend it holds");
    assert_eq!(boxed.capabilities(), memory.capabilities());
    assert_eq!(boxed.feed_hub().is_some(), memory.feed_hub().is_some());
    assert!(boxed.feed_hub().is_some(), "the memory backend has a feed: its hub, not the default None");
    boxed.ping().await.unwrap();
}
