//! The whole conformance suite against the memory backend.

use persist_conformance::{BoxError, Factory};
use persist_memory::MemoryBackend;

struct MemoryFactory;

impl Factory for MemoryFactory {
    type Backend = MemoryBackend;
    type Storage = MemoryBackend;

    async fn create(&self) -> Result<MemoryBackend, BoxError> {
        Ok(MemoryBackend::new())
    }

    async fn open(&self, storage: &MemoryBackend) -> Result<MemoryBackend, BoxError> {
        Ok(storage.clone())
    }
}

persist_conformance::conformance_tests!(MemoryFactory);
