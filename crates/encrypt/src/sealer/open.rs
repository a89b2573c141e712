//! What the layer opens on the way up: the messages, threads and feed deltas a result carries,
//! and the items of a page that do not open.

use persist_core::feed::FeedPage;
use persist_core::read::{Stranded, UnreadableItem};
use persist_core::{
    Added, Content, ContentUpdated, Message, Metadata, PersistResult, Reserved, Restored, Result, Status, TenantId,
    Thread, TurnAppended, Updated,
};
use serde_json::Value;

use super::{MetadataOf, Plan, Sealer, TITLE_PREFIX, sealed_text, sealed_text_in};
use crate::envelope::{self, Field, Place};

impl Sealer {
    /// `page` with each event's delta opened. A delta that does not open (another key, a
    /// tampered value, clear where sealed values are required) is dropped, never shown: its
    /// event then tells a follower to read the message, which says what is wrong.
    fn open_feed(&self, mut page: FeedPage) -> FeedPage {
        for event in &mut page.events {
            let change = &mut event.change;
            let (Some(delta), Some(message), Some(thread)) =
                (change.delta.take(), change.message_id.as_ref(), change.thread_id.as_ref())
            else {
                continue;
            };
            let version = change.version.to_string();
            let tenant = change.tenant.as_ref();
            let place = Place { tenant, thread, message: Some(message), field: Field::Delta(&version) };
            change.delta = match sealed_text_in(&delta.as_json()) {
                Some(text) => envelope::open(&*self.keys, &place, text)
                    .ok()
                    .and_then(|plain| String::from_utf8(plain.to_vec()).ok())
                    .and_then(|text| Content::from_json(text).ok()),
                None => self.allow_clear.then_some(delta),
            };
        }
        page
    }

    /// Opens what `result` carries (unless the request asked for values as stored).
    pub(crate) fn open_result(&self, result: PersistResult, plan: &Plan) -> Result<PersistResult> {
        if plan.raw {
            return Ok(result);
        }
        let tenant = plan.tenant.as_ref();
        Ok(match result {
            PersistResult::Added(r) => Added::new(self.open_message(tenant, r.message)?, r.deduplicated).into(),
            PersistResult::Reserved(r) => Reserved::new(self.open_message(tenant, r.message)?, r.deduplicated).into(),
            PersistResult::TurnAppended(r) => {
                let opened = r.messages.into_iter().map(|m| self.open_message(tenant, m)).collect::<Result<_>>()?;
                TurnAppended::new(r.thread_id, opened, r.deduplicated).into()
            }
            PersistResult::ContentUpdated(r) => ContentUpdated::new(self.open_message(tenant, r.message)?).into(),
            PersistResult::Updated(Updated::Message(m)) => Updated::Message(self.open_message(tenant, m)?).into(),
            PersistResult::Updated(Updated::Thread(t)) => Updated::Thread(self.open_thread(t)?).into(),
            PersistResult::Restored(r) => {
                Restored::new(self.open_thread(r.thread)?, r.restored, r.present).with_bindings(r.bindings).into()
            }
            PersistResult::Message(m) => PersistResult::Message(m.map(|m| self.open_message(tenant, m)).transpose()?),
            PersistResult::Thread(t) => PersistResult::Thread(t.map(|t| self.open_thread(t)).transpose()?),
            PersistResult::Messages(mut page) => {
                let opened = page.items.into_iter().map(|m| self.open_message(tenant, m));
                (page.items, page.unreadable) = sort_unreadable(opened, page.unreadable)?;
                PersistResult::Messages(page)
            }
            PersistResult::Threads(mut page) => {
                let opened = page.items.into_iter().map(|t| self.open_thread(t));
                (page.items, page.unreadable) = sort_unreadable(opened, page.unreadable)?;
                PersistResult::Threads(page)
            }
            PersistResult::Stranded(found) => PersistResult::Stranded(
                found
                    .into_iter()
                    .map(|s| Ok(Stranded::new(s.tenant.clone(), self.open_message(s.tenant.as_ref(), s.message)?)))
                    .collect::<Result<_>>()?,
            ),
            PersistResult::Feed(page) => PersistResult::Feed(self.open_feed(page)),
            PersistResult::Branches(found) => {
                let opened = found.items.into_iter().map(|m| self.open_message(tenant, m)).collect::<Result<_>>()?;
                PersistResult::Branches(persist_core::branch::Branches::new(opened, found.active))
            }
            PersistResult::Summarized(r) => PersistResult::Summarized(persist_core::summary::Summarized::new(
                self.open_summary(tenant, r.summary)?,
                r.deduplicated,
            )),
            PersistResult::Summaries(mut page) => {
                let opened = page.items.into_iter().map(|s| self.open_summary(tenant, s));
                (page.items, page.unreadable) = sort_unreadable(opened, page.unreadable)?;
                PersistResult::Summaries(page)
            }
            PersistResult::Compacted(found) => PersistResult::Compacted(self.open_compacted(tenant, found)?),
            PersistResult::Nearest(found) => PersistResult::Nearest(
                found
                    .into_iter()
                    .map(|mut hit| {
                        hit.message = self.open_message(hit.tenant.as_ref(), hit.message)?;
                        Ok(hit)
                    })
                    .collect::<Result<_>>()?,
            ),
            other => other,
        })
    }

    /// A clear value where a sealed one must be: kept when the layer allows clear values
    /// (written before it was added), refused otherwise.
    pub(crate) fn clear(&self, place: &Place<'_>) -> Result<()> {
        if self.allow_clear { Ok(()) } else { Err(place.unreadable("is not sealed")) }
    }

    pub(crate) fn open_message(&self, tenant: Option<&TenantId>, mut message: Message) -> Result<Message> {
        let place = Place { tenant, thread: &message.thread_id, message: Some(&message.id), field: Field::Content };
        if !is_open_placeholder(&message) {
            let opened = match sealed_text_in(&message.content.as_json()) {
                Some(text) => {
                    let plain = envelope::open(&*self.keys, &place, text)?;
                    let text = String::from_utf8(plain.to_vec()).map_err(|_| place.unreadable("is not text"))?;
                    Some(Content::from_json(text).map_err(|_| place.unreadable("is not JSON"))?)
                }
                None => None,
            };
            match opened {
                Some(content) => message.content = content,
                None => self.clear(&place)?,
            }
        }
        message.metadata = self.open_metadata(place, &message.metadata, MetadataOf::Message)?;
        Ok(message)
    }

    pub(crate) fn open_metadata(&self, place: Place<'_>, metadata: &Metadata, of: MetadataOf<'_>) -> Result<Metadata> {
        if self.metadata_keys.is_empty() || !metadata.as_map().keys().any(|k| self.metadata_keys.contains(k)) {
            return Ok(metadata.clone());
        }
        let mut map = metadata.as_map().clone();
        for (key, value) in map.iter_mut() {
            if !self.metadata_keys.contains(key) {
                continue;
            }
            let mut name = String::new();
            let field = of.field(key, &mut name);
            let place = Place { field, ..place };
            match sealed_text(value) {
                Some(text) => {
                    let plain = envelope::open(&*self.keys, &place, text)?;
                    *value = serde_json::from_slice(&plain).map_err(|_| place.unreadable("is not JSON"))?;
                }
                // `null`, `[]`, `{}`, a string…: whatever the shape, a clear value.
                None => self.clear(&place)?,
            }
        }
        Metadata::try_from(Value::Object(map))
    }

    pub(crate) fn open_thread(&self, mut thread: Thread) -> Result<Thread> {
        let tenant = thread.tenant.clone();
        let id = thread.id.clone();
        let place = Place { tenant: tenant.as_ref(), thread: &id, message: None, field: Field::Title };
        if self.titles
            && let Some(title) = &thread.title
        {
            match title.strip_prefix(TITLE_PREFIX) {
                Some(text) => {
                    let plain = envelope::open(&*self.keys, &place, text)?;
                    thread.title =
                        Some(String::from_utf8(plain.to_vec()).map_err(|_| place.unreadable("is not text"))?);
                }
                None => self.clear(&place)?,
            }
        }
        thread.metadata = self.open_metadata(place, &thread.metadata, MetadataOf::Thread)?;
        Ok(thread)
    }
}

/// The items of a page that opened, and those that did not (`Unreadable`), named beside the
/// ones a layer below named already: a page holding one message sealed with a lost or wrong
/// key still answers the others. Any other error fails the page.
pub(crate) fn sort_unreadable<T>(
    opened: impl Iterator<Item = Result<T>>,
    mut unreadable: Vec<UnreadableItem>,
) -> Result<(Vec<T>, Vec<UnreadableItem>)> {
    let mut items = Vec::new();
    for item in opened {
        match item {
            Ok(item) => items.push(item),
            Err(error) => unreadable.push(UnreadableItem::from_error(&error).ok_or(error)?),
        }
    }
    Ok((items, unreadable))
}

/// Whether `message` holds the placeholder `[]` the store wrote for a reservation, still
/// reserved or interrupted before any token (a cleanup sent through a stack without this layer
/// marks it so): the one content left clear, and it says nothing. A complete message's content
/// is always sealed, `[]` included.
pub(super) fn is_open_placeholder(message: &Message) -> bool {
    message.status != Status::Complete && message.content.is_placeholder()
}
