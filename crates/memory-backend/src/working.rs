//! Working memory documents, per tenant and resource, changed under the store's lock.

use persist_core::working::{ListMemories, MemoryCursor, ReadMemory, WorkingMemory, WriteMemory};
use persist_core::{Page, Result, Timestamp};

use crate::state::State;

impl State {
    pub(crate) fn write_memory(&mut self, write: &WriteMemory, now: Timestamp) -> Result<WorkingMemory> {
        let key = (write.tenant().cloned(), write.resource.clone());
        let stored = self.memories.get(&key);
        let version = stored.map_or(0, |m| m.version);
        let (document, version) = write.apply(stored.map(|m| &m.document), version)?;
        let created_at = stored.map_or(now, |m| m.created_at);
        let written = WorkingMemory::new(key.0.clone(), key.1.clone(), document, version, created_at, now);
        self.memories.insert(key, written.clone());
        Ok(written)
    }

    pub(crate) fn read_memory(&self, query: &ReadMemory) -> Option<WorkingMemory> {
        self.memories.get(&(query.tenant().cloned(), query.resource.clone())).cloned()
    }

    pub(crate) fn memories(&self, query: &ListMemories) -> Result<Page<WorkingMemory, MemoryCursor>> {
        query.validate()?;
        let mut found: Vec<&WorkingMemory> =
            self.memories.values().filter(|m| query.admits(m.tenant.as_ref(), &m.resource)).collect();
        found.sort_by(|a, b| {
            let key =
                |m: &WorkingMemory| (persist_core::raw::tenant_key(m.tenant.as_ref()).to_owned(), m.resource.clone());
            key(a).cmp(&key(b))
        });
        Ok(query.page(found.into_iter().take(query.limit as usize + 1).cloned().collect()))
    }
}
