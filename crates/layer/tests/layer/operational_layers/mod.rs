//! The operational layers (retry, timeout, detach, trace, metrics, events, validate, chaos,
//! mirror) and stranded-reservation cleanup, over real backends.

mod cleanup;
mod events;
mod mirror;
mod observability;
mod retry;
mod timeout;
mod validate;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use persist::args::Add;
use persist::layer::{RetryLayer, RetryPolicy};
use persist::memory::MemoryBackend;
use persist::read::{GetMessage, GetThread, ListMessages};
use persist::{
    Backend, Capabilities, Content, IdempotencyKey, Message, Page, PersistArgs, PersistError, PersistResult, Role,
    Thread, ThreadId,
};

fn thread(id: &str) -> ThreadId {
    ThreadId::new(id).unwrap()
}

fn keyed_add(thread_id: &str, key: &str) -> Add {
    Add::new(thread(thread_id), Role::User, Content::text(key)).with_idempotency_key(IdempotencyKey::new(key).unwrap())
}

fn fast_retry(attempts: u32) -> RetryLayer {
    RetryLayer::new(
        RetryPolicy::new()
            .max_attempts(attempts)
            .backoff(Duration::from_micros(100), Duration::from_millis(2))
            .unwrap(),
    )
}

type MakeError = fn() -> PersistError;

/// A backend over memory that misbehaves on purpose: counts calls, can fail after committing,
/// can answer a fixed error, can be slow.
#[derive(Clone, Default)]
struct Faulty {
    store: MemoryBackend,
    calls: Arc<AtomicUsize>,
    fail_after_commit: Arc<AtomicUsize>,
    answer: Arc<Mutex<Option<MakeError>>>,
    delay: Duration,
}

impl Backend for Faulty {
    async fn apply(&self, args: PersistArgs) -> persist::Result<PersistResult> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(error) = *self.answer.lock().unwrap() {
            return Err(error());
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let result = self.store.apply(args).await?;
        let pending = self.fail_after_commit.load(Ordering::SeqCst);
        if pending > 0 {
            self.fail_after_commit.store(pending - 1, Ordering::SeqCst);
            return Err(PersistError::temporary("connection lost after commit"));
        }
        Ok(result)
    }
    async fn get(&self, q: GetMessage) -> persist::Result<Option<Message>> {
        self.store.get(q).await
    }
    async fn get_thread(&self, q: GetThread) -> persist::Result<Option<Thread>> {
        self.store.get_thread(q).await
    }
    async fn list(&self, q: ListMessages) -> persist::Result<Page<Message>> {
        self.store.list(q).await
    }
    async fn threads(
        &self,
        q: persist::read::ListThreads,
    ) -> persist::Result<Page<Thread, persist::read::ThreadCursor>> {
        self.store.threads(q).await
    }
    fn capabilities(&self) -> Capabilities {
        self.store.capabilities()
    }
}
