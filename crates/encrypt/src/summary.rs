//! Summaries through the layer: a summary's content is sealed like a message's, bound to its
//! thread and its range (`from..through`: so a summary's envelope is never taken for another's,
//! nor for a message's, and its range cannot be changed under it), and the metadata keys the
//! layer seals are sealed per summary the same way.

use persist_core::summary::{Compacted, Summarize, Summary};
use persist_core::{Content, Result, TenantId};

use crate::envelope::{self, Field, Nonce, Place};
use crate::sealer::{MetadataOf, Sealer, sealed_text_in, sort_unreadable};

/// A summary's place: `from..through`.
fn range(from: u64, through: u64) -> String {
    format!("{from}..{through}")
}

impl Sealer {
    /// Seals a summary being written: its content, and its metadata's sealed keys.
    pub(crate) fn seal_summary(&self, tenant: Option<&TenantId>, summarize: &mut Summarize) -> Result<()> {
        let seq = range(summarize.from_seq, summarize.through_seq);
        let place = Place { tenant, thread: &summarize.thread_id, message: None, field: Field::Summary(&seq) };
        summarize.content = self.seal_content(&place, &summarize.content, Nonce::Random)?;
        summarize.metadata =
            self.seal_metadata(place, &summarize.metadata, MetadataOf::Summary(&seq), false, Nonce::Random)?;
        Ok(())
    }

    /// A summary as stored, opened (an `Unreadable` error names what does not open).
    pub(crate) fn open_summary(&self, tenant: Option<&TenantId>, mut summary: Summary) -> Result<Summary> {
        let seq = range(summary.from_seq, summary.through_seq);
        let place = Place { tenant, thread: &summary.thread_id, message: None, field: Field::Summary(&seq) };
        match sealed_text_in(&summary.content.as_json()) {
            Some(text) => {
                let plain = envelope::open(&*self.keys, &place, text)?;
                let text = String::from_utf8(plain.to_vec()).map_err(|_| place.unreadable("is not text"))?;
                summary.content = Content::from_json(text).map_err(|_| place.unreadable("is not JSON"))?;
            }
            None => self.clear(&place)?,
        }
        summary.metadata = self.open_metadata(place, &summary.metadata, MetadataOf::Summary(&seq))?;
        Ok(summary)
    }

    /// A compacted read, opened: messages and a summary that do not open are named in
    /// `unreadable` instead (the summary then answers `None`).
    pub(crate) fn open_compacted(&self, tenant: Option<&TenantId>, found: Compacted) -> Result<Compacted> {
        let Compacted { summary, messages, unreadable, .. } = found;
        let opened = messages.into_iter().map(|m| self.open_message(tenant, m));
        let (messages, mut unreadable) = sort_unreadable(opened, unreadable)?;
        let summary = match summary.map(|s| self.open_summary(tenant, s)).transpose() {
            Ok(summary) => summary,
            Err(error) => {
                unreadable.push(persist_core::read::UnreadableItem::from_error(&error).ok_or(error)?);
                None
            }
        };
        let mut opened = Compacted::new(summary, messages);
        opened.unreadable = unreadable;
        Ok(opened)
    }
}
