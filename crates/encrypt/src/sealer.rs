//! What the layer seals on the way down and opens on the way up.

use std::collections::BTreeSet;
use std::sync::Arc;

use persist_core::args::{Add, MAX_TITLE_BYTES, Reserve, Target, Update, UpdateContent};
use persist_core::{
    Content, Message, MessageId, Metadata, PersistArgs, PersistError, Result, Status, TenantId, Thread, ThreadId,
};
use serde_json::{Map, Value};

use crate::envelope::{self, Field, Nonce, Place};
use crate::keys::{KeyId, Keys};

mod open;

use self::open::is_open_placeholder;
pub(crate) use self::open::sort_unreadable;

/// The object key of a sealed JSON value (content, a metadata value): `{"persist:sealed": "v1.…"}`.
pub(crate) const MARK: &str = "persist:sealed";
/// The prefix of a sealed title.
pub(crate) const TITLE_PREFIX: &str = "persist:sealed:";

/// The layer's configuration and keys, shared by every clone of the stack.
#[derive(Clone)]
pub(crate) struct Sealer {
    pub(crate) keys: Arc<dyn Keys>,
    pub(crate) metadata_keys: BTreeSet<String>,
    pub(crate) titles: bool,
    pub(crate) allow_clear: bool,
    /// Embeddings may be written and compared in the clear (see `EncryptLayer::clear_vectors`).
    pub(crate) clear_vectors: bool,
    /// The keys whose check value this instance verified (see `check`).
    pub(crate) checked: Arc<crate::check::Checked>,
}

/// The envelope text in the JSON text of a sealed value (`{"persist:sealed": "…"}`, with any
/// whitespace a store's JSON type adds), read without parsing: an envelope's text holds no
/// character JSON escapes.
pub(crate) fn sealed_text_in(json: &str) -> Option<&str> {
    let rest = json.trim().strip_prefix('{')?.trim_start();
    let rest = rest.strip_prefix('"')?.strip_prefix(MARK)?.strip_prefix('"')?.trim_start();
    let rest = rest.strip_prefix(':')?.trim_start().strip_prefix('"')?;
    let (text, rest) = rest.split_once('"')?;
    (rest.trim() == "}" && !text.contains('\\')).then_some(text)
}

/// The envelope text of a sealed JSON value, if it is one.
pub(crate) fn sealed_text(value: &Value) -> Option<&str> {
    match value {
        Value::Object(map) if map.len() == 1 => map.get(MARK)?.as_str(),
        _ => None,
    }
}

pub(crate) fn envelope_value(text: String) -> Value {
    let mut map = Map::with_capacity(1);
    map.insert(MARK.to_owned(), Value::String(text));
    Value::Object(map)
}

pub(crate) fn json_bytes(value: &Value) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| PersistError::backend("encoding JSON", e))
}

/// Whose metadata a value is: a message's, a thread's, or a summary's (of a range
/// `<from>..<through>`): what its envelope is bound to besides the key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum MetadataOf<'a> {
    Message,
    Thread,
    Summary(&'a str),
}

impl MetadataOf<'_> {
    /// The place of `key` of this metadata, `name` holding what the field borrows.
    fn field<'n>(self, key: &'n str, name: &'n mut String) -> Field<'n> {
        match self {
            Self::Message => Field::Metadata(key),
            Self::Thread => Field::ThreadMetadata(key),
            Self::Summary(range) => {
                *name = format!("{range}/{key}");
                Field::SummaryMetadata(name)
            }
        }
    }
}

/// The id the layer gives a message written without one (its envelopes are bound to it): for a
/// write sent with an idempotency key, derived from the key, so a retry of it seals exactly what
/// its first call sealed; else a new one.
fn minted_id(thread: &ThreadId, key: Option<&persist_core::IdempotencyKey>) -> MessageId {
    match key {
        Some(key) => MessageId::derive(thread, "persist-encrypt", key.as_str()),
        None => MessageId::generate(),
    }
}

impl Sealer {
    /// `content` sealed, whatever it holds: an empty `[]` too, so that a complete message's
    /// content is never clear in the store and a `[]` put there reads as tampering, not as an
    /// empty message. (A reservation's placeholder is written by the store, not sealed.)
    pub(crate) fn seal_content(&self, place: &Place<'_>, content: &Content, nonce: Nonce) -> Result<Content> {
        let text = envelope::seal(&*self.keys, place, content.as_json().as_bytes(), nonce)?;
        Ok(Content::new(envelope_value(text)))
    }

    /// `metadata` with the value of every sealed key sealed. In a `patch`, a `null` removes its
    /// key and stays as it is; in whole metadata it is a value like any other, sealed, so that
    /// a `null` put in the store reads as tampering.
    pub(crate) fn seal_metadata(
        &self,
        place: Place<'_>,
        metadata: &Metadata,
        of: MetadataOf<'_>,
        patch: bool,
        nonce: Nonce,
    ) -> Result<Metadata> {
        if self.metadata_keys.is_empty() || !metadata.as_map().keys().any(|k| self.metadata_keys.contains(k)) {
            return Ok(metadata.clone());
        }
        let mut map = metadata.as_map().clone();
        for (key, value) in map.iter_mut() {
            if !self.metadata_keys.contains(key) || (patch && value.is_null()) {
                continue;
            }
            let mut name = String::new();
            let field = of.field(key, &mut name);
            let text = envelope::seal(&*self.keys, &Place { field, ..place }, &json_bytes(value)?, nonce)?;
            *value = envelope_value(text);
        }
        Metadata::try_from(Value::Object(map))
    }

    /// Seals what `args` writes; answers the request to send down and what the way up needs.
    pub(crate) fn seal_args(&self, mut args: PersistArgs) -> Result<(PersistArgs, Plan)> {
        let tenant = args.context().tenant().cloned();
        let raw = args.context().extensions().get::<crate::AsStored>().is_some();
        let mut plan = Plan { tenant, raw, original: None };
        if args.op().is_message_write() {
            // What a backend refuses must be refused as the request stands: sealed, a value
            // too deep or holding U+0000 would look fine.
            args.validate()?;
        }
        // An add's or a turn's embedding too.
        if args.uses_vectors() && !self.clear_vectors {
            return Err(PersistError::Unsupported {
                what: "embeddings through EncryptLayer: a vector tells what its message means, and the layer \
                       seals meaning; `EncryptLayer::clear_vectors(true)` stores them in the clear"
                    .into(),
            });
        }
        let tenant = plan.tenant.clone();
        let tenant = tenant.as_ref();
        match &mut args {
            PersistArgs::Add(add) => {
                plan.original = Some(PersistArgs::Add(add.clone()));
                let minted = minted_id(&add.thread_id, add.idempotency_key.as_ref());
                let id = add.message_id.get_or_insert(minted).clone();
                self.seal_add(tenant, &id, add)?;
            }
            PersistArgs::Reserve(reserve) => {
                plan.original = Some(PersistArgs::Reserve(reserve.clone()));
                let minted = minted_id(&reserve.thread_id, reserve.idempotency_key.as_ref());
                let id = reserve.message_id.get_or_insert(minted).clone();
                self.seal_reserve(tenant, &id, reserve)?;
            }
            PersistArgs::AppendTurn(turn) => {
                plan.original = Some(PersistArgs::AppendTurn(turn.clone()));
                // The turn's key names its messages by place: once sealed, each has an id (its
                // envelope is bound to it), and keeps the key its place gave it.
                for index in 0..turn.messages.len() {
                    let key = turn.key_of(index)?;
                    let message = &mut turn.messages[index];
                    let nonce = Nonce::for_key(key.as_ref());
                    let minted = minted_id(&turn.thread_id, key.as_ref());
                    message.idempotency_key = key;
                    let id = message.message_id.get_or_insert(minted).clone();
                    let place = Place { tenant, thread: &turn.thread_id, message: Some(&id), field: Field::Content };
                    if message.status == Status::Complete {
                        message.content = self.seal_content(&place, &message.content, nonce)?;
                    }
                    message.metadata =
                        self.seal_metadata(place, &message.metadata, MetadataOf::Message, false, nonce)?;
                }
            }
            PersistArgs::UpdateContent(update) => self.seal_update_content(tenant, update)?,
            PersistArgs::Update(update) => self.seal_update(tenant, update)?,
            PersistArgs::Summarize(summarize) => self.seal_summary(tenant, summarize)?,
            // The store holds sealed content, which no index can read: an empty answer would
            // say "not found" of messages that say exactly what was asked.
            PersistArgs::Search(_) => {
                return Err(PersistError::Unsupported {
                    what: "search through EncryptLayer: message content is sealed before it reaches the store, \
                           so the store's search index holds none of its text"
                        .into(),
                });
            }
            PersistArgs::Nearest(query)
                if self.clear_vectors
                    && query.filter.thread_filter.as_map().keys().any(|k| self.metadata_keys.contains(k)) =>
            {
                return Err(PersistError::invalid(
                    "thread_filter",
                    "names a sealed metadata key: a filter cannot compare it",
                ));
            }
            // A patch is applied by the store to the document it holds, which it could not read
            // sealed.
            PersistArgs::ReadMemory(_) | PersistArgs::WriteMemory(_) => {
                return Err(PersistError::Unsupported {
                    what: "working memory through EncryptLayer: its documents are patched by the store, which \
                           cannot read sealed values"
                        .into(),
                });
            }
            // Records are bytes of the app's own format, which this layer does not seal yet:
            // refused rather than stored in the clear.
            PersistArgs::WriteRecords(_) | PersistArgs::ReadRecords(_) => {
                return Err(PersistError::Unsupported {
                    what: "records through EncryptLayer: their values would be stored unsealed".into(),
                });
            }
            PersistArgs::Threads(query) => {
                if let Some(key) = query.filter.as_map().keys().find(|k| self.metadata_keys.contains(*k)) {
                    return Err(PersistError::invalid(
                        "filter",
                        format!("metadata key {key:?} is sealed: a filter cannot compare it"),
                    ));
                }
            }
            _ => {}
        }
        Ok((args, plan))
    }

    fn seal_add(&self, tenant: Option<&TenantId>, id: &MessageId, add: &mut Add) -> Result<()> {
        let place = Place { tenant, thread: &add.thread_id, message: Some(id), field: Field::Content };
        let nonce = Nonce::for_key(add.idempotency_key.as_ref());
        add.content = self.seal_content(&place, &add.content, nonce)?;
        add.metadata = self.seal_metadata(place, &add.metadata, MetadataOf::Message, false, nonce)?;
        Ok(())
    }

    fn seal_reserve(&self, tenant: Option<&TenantId>, id: &MessageId, reserve: &mut Reserve) -> Result<()> {
        let place = Place { tenant, thread: &reserve.thread_id, message: Some(id), field: Field::Content };
        let nonce = Nonce::for_key(reserve.idempotency_key.as_ref());
        reserve.metadata = self.seal_metadata(place, &reserve.metadata, MetadataOf::Message, false, nonce)?;
        Ok(())
    }

    fn seal_update_content(&self, tenant: Option<&TenantId>, update: &mut UpdateContent) -> Result<()> {
        let place =
            Place { tenant, thread: &update.thread_id, message: Some(&update.message_id), field: Field::Content };
        update.content = self.seal_content(&place, &update.content, Nonce::Random)?;
        // A delta is bound to the version it brings the message to: known only when the
        // update expects one (as every append joined in clear does). Without it, the event
        // goes without a delta and followers read the message.
        update.delta = match (update.delta.take(), update.expected_version) {
            (Some(delta), Some(expected)) => {
                let version = expected.saturating_add(1).to_string();
                Some(self.seal_content(&Place { field: Field::Delta(&version), ..place }, &delta, Nonce::Random)?)
            }
            _ => None,
        };
        Ok(())
    }

    fn seal_update(&self, tenant: Option<&TenantId>, update: &mut Update) -> Result<()> {
        let message = match &update.target {
            Target::Message(id) => Some(id.clone()),
            _ => None,
        };
        let place = Place { tenant, thread: &update.thread_id, message: message.as_ref(), field: Field::Content };
        if let Some(patch) = &update.metadata {
            update.metadata = Some(self.seal_metadata(
                place,
                patch,
                if message.is_none() { MetadataOf::Thread } else { MetadataOf::Message },
                true,
                Nonce::Random,
            )?);
        }
        if self.titles
            && let Some(Some(title)) = &update.title
        {
            update.title = Some(Some(self.seal_title(place, title)?));
        }
        Ok(())
    }

    /// A title sealed for the thread at `place`, within the store's limit.
    fn seal_title(&self, place: Place<'_>, title: &str) -> Result<String> {
        let text =
            envelope::seal(&*self.keys, &Place { field: Field::Title, ..place }, title.as_bytes(), Nonce::Random)?;
        let sealed = format!("{TITLE_PREFIX}{text}");
        // The store's limit holds for what it stores: say so in the title's own terms.
        if sealed.len() > MAX_TITLE_BYTES {
            return Err(PersistError::invalid(
                "title",
                format!(
                    "is {} bytes, {} once sealed, over the limit of {MAX_TITLE_BYTES}: a sealed title holds about 700 \
                     bytes",
                    title.len(),
                    sealed.len()
                ),
            ));
        }
        Ok(sealed)
    }

    /// Whether `message` holds an envelope where this layer seals (its content, a sealed
    /// metadata key): a message as a sealed store holds it.
    pub(crate) fn holds_envelopes(&self, message: &Message) -> bool {
        sealed_text_in(&message.content.as_json()).is_some() || self.metadata_holds_envelopes(&message.metadata)
    }

    /// Whether `thread` holds an envelope where this layer seals (a sealed metadata key, a
    /// sealed title).
    pub(crate) fn thread_holds_envelopes(&self, thread: &Thread) -> bool {
        let title = thread.title.as_deref().is_some_and(|title| title.starts_with(TITLE_PREFIX));
        title || self.metadata_holds_envelopes(&thread.metadata)
    }

    fn metadata_holds_envelopes(&self, metadata: &Metadata) -> bool {
        metadata.as_map().iter().any(|(key, value)| self.metadata_keys.contains(key) && sealed_text(value).is_some())
    }

    /// Seals a whole message as a restore writes it: its content and sealed metadata keys.
    pub(crate) fn seal_message(&self, tenant: Option<&TenantId>, message: &mut Message) -> Result<()> {
        let place = Place { tenant, thread: &message.thread_id, message: Some(&message.id), field: Field::Content };
        let content = self.seal_content(&place, &message.content, Nonce::Random)?;
        let metadata = self.seal_metadata(place, &message.metadata, MetadataOf::Message, false, Nonce::Random)?;
        (message.content, message.metadata) = (content, metadata);
        Ok(())
    }

    /// Seals a whole thread as a restore writes it: its sealed metadata keys and, when titles
    /// are sealed, its title.
    pub(crate) fn seal_thread(&self, tenant: Option<&TenantId>, thread: &mut Thread) -> Result<()> {
        let place = Place { tenant, thread: &thread.id, message: None, field: Field::Title };
        let metadata = self.seal_metadata(place, &thread.metadata, MetadataOf::Thread, false, Nonce::Random)?;
        let title = match &thread.title {
            Some(title) if self.titles => Some(self.seal_title(place, title)?),
            other => other.clone(),
        };
        (thread.metadata, thread.title) = (metadata, title);
        Ok(())
    }

    /// The key ids of the sealed values of `message` (content and sealed metadata keys) that are
    /// not `current`, or clear where they should be sealed: what a rotation re-seals.
    pub(crate) fn stale_in_message(&self, message: &Message, current: &KeyId) -> Stale {
        let content = !is_open_placeholder(message) && stale(sealed_text_in(&message.content.as_json()), current);
        let metadata = self.stale_metadata(&message.metadata, current);
        Stale { content, metadata, title: false }
    }

    /// Whether a summary holds a value sealed with a key other than `current`, or clear where
    /// it should be sealed: what a rotation re-seals.
    pub(crate) fn stale_in_summary(&self, summary: &persist_core::summary::Summary, current: &KeyId) -> bool {
        stale(sealed_text_in(&summary.content.as_json()), current)
            || !self.stale_metadata(&summary.metadata, current).is_empty()
    }

    pub(crate) fn stale_in_thread(&self, thread: &Thread, current: &KeyId) -> Stale {
        let title =
            self.titles && thread.title.as_ref().is_some_and(|title| stale(title.strip_prefix(TITLE_PREFIX), current));
        Stale { content: false, metadata: self.stale_metadata(&thread.metadata, current), title }
    }

    fn stale_metadata(&self, metadata: &Metadata, current: &KeyId) -> Vec<String> {
        metadata
            .as_map()
            .iter()
            .filter(|(key, value)| {
                // A clear `null` cannot be re-sealed by a patch (it would remove the key).
                self.metadata_keys.contains(*key) && !value.is_null() && stale(sealed_text(value), current)
            })
            .map(|(key, _)| key.clone())
            .collect()
    }
}

/// Whether a value (its envelope text, `None` when clear) is not sealed by `current`.
fn stale(text: Option<&str>, current: &KeyId) -> bool {
    text.and_then(envelope::key_id).is_none_or(|id| &id != current)
}

/// What of a message or thread a rotation re-seals.
#[derive(Debug, Default)]
pub(crate) struct Stale {
    pub(crate) content: bool,
    pub(crate) metadata: Vec<String>,
    pub(crate) title: bool,
}

impl Stale {
    pub(crate) fn is_empty(&self) -> bool {
        !self.content && self.metadata.is_empty() && !self.title
    }
}

/// What the way up needs to know of the request.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The request's tenant: the tenant of the messages it answers.
    pub(crate) tenant: Option<TenantId>,
    /// The request asked for values as stored.
    pub(crate) raw: bool,
    /// An add or reserve as the caller sent it (clear, no minted id): a repeat is decided on it.
    pub(crate) original: Option<PersistArgs>,
}

/// The thread and message an `AlreadyExists` or `IdempotencyKeyReused` names.
pub(crate) fn conflicting(error: &PersistError) -> Option<(&ThreadId, &MessageId)> {
    match error {
        PersistError::AlreadyExists { thread_id, message_id }
        | PersistError::IdempotencyKeyReused { thread_id, message_id, .. } => Some((thread_id, message_id)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_is_found_in_the_json_text_as_any_store_writes_it() {
        let text = "v1.k1.AbC-_09";
        for json in [
            format!("{{\"{MARK}\":\"{text}\"}}"),
            format!("{{\"{MARK}\": \"{text}\"}}"),
            format!(" {{ \"{MARK}\" : \"{text}\" }} "),
        ] {
            assert_eq!(sealed_text_in(&json), Some(text), "{json}");
            assert_eq!(sealed_text(&serde_json::from_str(&json).unwrap()), Some(text));
        }
        let not = [
            "[]".to_owned(),
            format!("{{\"{MARK}\":\"{text}\",\"x\":1}}"),
            format!("{{\"x\":1,\"{MARK}\":\"{text}\"}}"),
            format!("{{\"{MARK}\":\"a\\\"b\"}}"),
            format!("{{\"{MARK}\":1}}"),
            format!("[{{\"{MARK}\":\"{text}\"}}]"),
        ];
        for json in not {
            assert_eq!(sealed_text_in(&json), None, "{json}");
        }
    }
}
