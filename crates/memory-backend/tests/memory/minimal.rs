//! The whole conformance suite against a backend that implements only the required `Backend`
//! methods and declares no optional capability, as a host's own backend written before any of
//! them existed would: every composed operation works on it or refuses clearly, and every check
//! of an optional capability is skipped, never failed.

use persist_conformance::{BoxError, Factory};
use persist_core::read::{GetMessage, GetThread, ListMessages, ListThreads, ThreadCursor};
use persist_core::{Backend, Capabilities, Message, Page, PersistArgs, PersistError, PersistResult, Result, Thread};
use persist_memory::MemoryBackend;

/// The required methods alone, over the memory backend; what it was not written for is
/// `Unsupported`, as the pipeline's terminal answers it for requests it sends.
#[derive(Debug, Clone)]
struct Minimal(MemoryBackend);

impl Backend for Minimal {
    async fn apply(&self, args: PersistArgs) -> Result<PersistResult> {
        let optional = args.uses_branches()
            || args.uses_summaries()
            || args.uses_vectors()
            || args.uses_working_memory()
            || matches!(args, PersistArgs::Restore(_));
        if optional {
            return Err(PersistError::Unsupported { what: format!("`{}` on a minimal backend", args.op()).into() });
        }
        self.0.apply(args).await
    }

    async fn get(&self, query: GetMessage) -> Result<Option<Message>> {
        self.0.get(query).await
    }

    async fn get_thread(&self, query: GetThread) -> Result<Option<Thread>> {
        self.0.get_thread(query).await
    }

    async fn list(&self, query: ListMessages) -> Result<Page<Message>> {
        self.0.list(query).await
    }

    async fn threads(&self, query: ListThreads) -> Result<Page<Thread, ThreadCursor>> {
        self.0.threads(query).await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
    }
}

struct MinimalFactory;

impl Factory for MinimalFactory {
    type Backend = Minimal;
    type Storage = MemoryBackend;

    async fn create(&self) -> std::result::Result<MemoryBackend, BoxError> {
        Ok(MemoryBackend::new())
    }

    async fn open(&self, storage: &MemoryBackend) -> std::result::Result<Minimal, BoxError> {
        Ok(Minimal(storage.clone()))
    }
}

persist_conformance::conformance_tests!(MinimalFactory);
