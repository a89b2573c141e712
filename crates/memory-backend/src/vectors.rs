//! Embeddings and nearest reads: vectors kept in their messages' records (so whatever removes a
//! message removes them), each model's dimensions per tenant, an exact scan. An embed records an
//! `embed` event in the feed.

use std::sync::Arc;

use persist_core::feed::Change;
use persist_core::vector::{
    Embed, Embedded, Embedding, EmbeddingCursor, ListEmbeddings, Nearest, Neighbour, StoredEmbedding,
    dimensions_mismatch, similarity, unknown_model,
};
use persist_core::{Page, PersistError, PersistOp, Result, Status, TenantId};

use crate::state::State;

impl State {
    /// `embedding` scaled to length 1, once it is known to agree with its model's dimensions in
    /// `tenant`.
    pub(crate) fn checked_unit(&self, tenant: Option<&TenantId>, embedding: &Embedding) -> Result<Arc<[f32]>> {
        let unit: Arc<[f32]> = embedding.unit()?.into();
        let model = embedding.model();
        match self.models.get(&(tenant.cloned(), model.to_owned())) {
            Some(&stored) if stored != unit.len() => Err(dimensions_mismatch(model, stored, unit.len())),
            _ => Ok(unit),
        }
    }

    /// Refuses the embeddings of a turn the store would refuse (see [`checked_unit`](Self::checked_unit)).
    pub(crate) fn check_embeddings(&self, tenant: Option<&TenantId>, embeddings: &[&Embedding]) -> Result<()> {
        embeddings.iter().try_for_each(|embedding| self.checked_unit(tenant, embedding).map(drop))
    }

    pub(crate) fn embed(&mut self, embed: &Embed) -> Result<Embedded> {
        let tenant = embed.context.tenant();
        let model = embed.embedding.model();
        let unit = self.checked_unit(tenant, &embed.embedding)?;
        let missing = || PersistError::not_found(&embed.thread_id, Some(&embed.message_id));
        let ts = self.writable(&embed.thread_id, tenant, Some(&embed.message_id)).map_err(|error| match error {
            // The thread's messages are gone with it.
            PersistError::ThreadDeleted { .. } => missing(),
            other => other,
        })?;
        let record = ts.messages.by_id_mut(&embed.message_id).ok_or_else(missing)?;
        if record.status == Status::Reserved {
            return Err(embed.reserved());
        }
        if embed.expected_version.is_some_and(|expected| expected != record.version) {
            return Err(embed.conflict(record.version));
        }
        let dims = unit.len();
        record.set_embedding(model, unit);
        let (seq, version) = (record.seq, record.version);
        self.models.entry((tenant.cloned(), model.to_owned())).or_insert(dims);
        // An event of its own, so an index that follows the feed learns of the vector.
        self.changed(|| {
            let (thread, id) = (embed.thread_id.clone(), embed.message_id.clone());
            Change::message(tenant.cloned(), thread, PersistOp::Embed, id, seq, version)
        });
        Ok(Embedded::new(embed.thread_id.clone(), embed.message_id.clone(), version))
    }

    pub(crate) fn embeddings(&self, query: &ListEmbeddings) -> Result<Page<StoredEmbedding, EmbeddingCursor>> {
        query.validate()?;
        let Some(ts) = self.visible(&query.thread_id, query.tenant()).filter(|ts| !ts.thread.is_deleted()) else {
            return Ok(query.page(Vec::new()));
        };
        let from = query.after.as_ref().map_or(0, |after| after.seq);
        let mut found = Vec::new();
        // In seq order: a page's worth and one more is enough.
        for record in ts.messages.range(from, u64::MAX) {
            for (model, vector) in record.embeddings().filter(|(model, _)| query.admits(record.seq, model)) {
                let embedding = Embedding::new(model, Arc::clone(vector));
                let (role, status, created_at) = (record.role(), record.status, record.created_at);
                found.push(StoredEmbedding::new(record.id()?, record.seq, embedding, role, status, created_at));
            }
            if found.len() > query.limit as usize {
                break;
            }
        }
        Ok(query.page(found))
    }

    pub(crate) fn nearest(&self, query: &Nearest) -> Result<Vec<Neighbour>> {
        query.validate()?;
        let tenant = query.tenant();
        let model = query.query.model();
        match self.models.get(&(tenant.cloned(), model.to_owned())) {
            Some(&stored) if stored != query.query.dimensions() => {
                return Err(dimensions_mismatch(model, stored, query.query.dimensions()));
            }
            Some(_) => {}
            None => {
                let mut others: Vec<String> =
                    self.models.keys().filter(|(t, _)| t.as_ref() == tenant).map(|(_, m)| m.clone()).collect();
                if others.is_empty() {
                    return Ok(Vec::new());
                }
                others.sort();
                return Err(unknown_model(model, &others));
            }
        }
        let unit = query.query.unit()?;
        let threads = self.threads.values().filter(|ts| {
            ts.thread.tenant.as_ref() == tenant
                && !ts.thread.is_deleted()
                && query.thread_id.as_ref().is_none_or(|id| id == &ts.thread.id)
                && query.filter.admits_thread(&ts.thread.metadata)
        });
        let mut scored = Vec::new();
        for ts in threads {
            for record in ts.messages.iter() {
                let Some(vector) = record.embedding(model) else { continue };
                let message = record.to_message(&ts.thread.id)?;
                if query.admits(&message) {
                    scored.push(Neighbour::new(tenant.cloned(), message, similarity(&unit, vector)));
                }
            }
        }
        Ok(query.answer(scored))
    }
}
