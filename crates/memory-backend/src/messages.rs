//! How a thread's messages are kept: compact records in `seq` order, and indexes by id and by
//! idempotency key that hold `seq`s.
//!
//! A stored message is a [`Record`], not a [`Message`]: it leaves out what the thread already
//! knows (its id), keeps an id that is a UUID in its canonical text form (what
//! [`MessageId::generate`] makes) as its 16 bytes, and moves what most messages do not have
//! (metadata, an idempotency key, a custom role, an id that is not a UUID) behind one optional
//! box. Reads build the [`Message`] back; content is shared, never copied.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use persist_core::branch::Tree;
use persist_core::spent::SpentKey;
use persist_core::{Content, IdempotencyKey, Message, MessageId, Metadata, Result, Role, Status, ThreadId, Timestamp};

/// One stored message.
pub(crate) struct Record {
    pub(crate) seq: u64,
    /// The parent's seq, `0` for a root (no message has seq 0).
    parent: u64,
    pub(crate) version: u64,
    pub(crate) created_at: Timestamp,
    pub(crate) updated_at: Timestamp,
    pub(crate) content: Content,
    /// The id, when it is a canonical UUID (see [`IdKey::of`]); unused when `extra.id` is set.
    uuid: [u8; 16],
    extra: Option<Box<Extra>>,
    role: RoleCode,
    pub(crate) status: Status,
}

/// The parts of a message most messages do not have.
#[derive(Default)]
struct Extra {
    /// An id that is not a canonical UUID.
    id: Option<MessageId>,
    /// A role other than the four common ones.
    role: Option<Role>,
    metadata: Metadata,
    idempotency_key: Option<IdempotencyKey>,
    /// The message's embeddings, one per model: unit vectors.
    embeddings: Vec<(String, Arc<[f32]>)>,
}

/// One of the four common roles; a custom role is in `extra.role` and overrides this.
impl Extra {
    fn is_empty(&self) -> bool {
        self.id.is_none()
            && self.role.is_none()
            && self.metadata.is_empty()
            && self.idempotency_key.is_none()
            && self.embeddings.is_empty()
    }
}

#[derive(Clone, Copy)]
enum RoleCode {
    User,
    Assistant,
    System,
    Tool,
}

impl RoleCode {
    /// The code of `role`, and the role itself when it is a custom one (the code is then unused).
    fn of(role: &Role) -> (Self, Option<Role>) {
        match role {
            Role::User => (Self::User, None),
            Role::Assistant => (Self::Assistant, None),
            Role::System => (Self::System, None),
            Role::Tool => (Self::Tool, None),
            other => (Self::User, Some(other.clone())),
        }
    }
}

/// A message id as the indexes see it: the 16 bytes of a canonical UUID, or the text.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum IdKey<'a> {
    Uuid([u8; 16]),
    Text(&'a str),
}

impl<'a> IdKey<'a> {
    /// A lower-case hyphenated UUID (36 characters) is kept as its bytes: formatting them back
    /// gives the same text, so the id round-trips exactly. Anything else is kept as text.
    fn of(id: &'a MessageId) -> Self {
        let text = id.as_str();
        let canonical = text.len() == 36 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'-'));
        match canonical.then(|| uuid::Uuid::try_parse(text)) {
            Some(Ok(uuid)) => Self::Uuid(uuid.into_bytes()),
            _ => Self::Text(text),
        }
    }
}

impl Record {
    /// The record of a message about to be stored.
    pub(crate) fn new(message: &Message) -> Self {
        let (uuid, text_id) = match IdKey::of(&message.id) {
            IdKey::Uuid(bytes) => (bytes, None),
            IdKey::Text(_) => ([0; 16], Some(message.id.clone())),
        };
        let (role, custom_role) = RoleCode::of(&message.role);
        let extra = Extra {
            id: text_id,
            role: custom_role,
            metadata: message.metadata.clone(),
            idempotency_key: message.idempotency_key.clone(),
            embeddings: Vec::new(),
        };
        Self {
            seq: message.seq,
            parent: message.parent_seq.unwrap_or(0),
            version: message.version,
            created_at: message.created_at,
            updated_at: message.updated_at,
            content: message.content.clone(),
            uuid,
            extra: (!extra.is_empty()).then(|| Box::new(extra)),
            role,
            status: message.status,
        }
    }

    /// The parent's seq; `None` for a root.
    pub(crate) fn parent(&self) -> Option<u64> {
        Some(self.parent).filter(|&parent| parent != 0)
    }

    fn id_key(&self) -> IdKey<'_> {
        match self.extra.as_ref().and_then(|extra| extra.id.as_ref()) {
            Some(id) => IdKey::Text(id.as_str()),
            None => IdKey::Uuid(self.uuid),
        }
    }

    /// The message's id (formatted back from its bytes when it is a UUID).
    pub(crate) fn id(&self) -> Result<MessageId> {
        match self.extra.as_ref().and_then(|extra| extra.id.as_ref()) {
            Some(id) => Ok(id.clone()),
            None => {
                let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
                MessageId::new(uuid::Uuid::from_bytes(self.uuid).hyphenated().encode_lower(&mut text))
            }
        }
    }

    pub(crate) fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        self.extra.as_ref().and_then(|extra| extra.idempotency_key.as_ref())
    }

    pub(crate) fn role(&self) -> Role {
        if let Some(role) = self.extra.as_ref().and_then(|extra| extra.role.as_ref()) {
            return role.clone();
        }
        match self.role {
            RoleCode::User => Role::User,
            RoleCode::Assistant => Role::Assistant,
            RoleCode::System => Role::System,
            RoleCode::Tool => Role::Tool,
        }
    }

    pub(crate) fn metadata(&self) -> Metadata {
        self.extra.as_ref().map(|extra| extra.metadata.clone()).unwrap_or_default()
    }

    pub(crate) fn set_role(&mut self, role: &Role) {
        let mut extra = self.take_extra();
        self.set_role_in(role, &mut extra);
        self.keep(extra);
    }

    /// Merges `patch` into the metadata.
    pub(crate) fn merge_metadata(&mut self, patch: &Metadata) {
        let mut extra = self.take_extra();
        extra.metadata.merge(patch);
        self.keep(extra);
    }

    /// The unit vector of `model`, if the message has one.
    pub(crate) fn embedding(&self, model: &str) -> Option<&[f32]> {
        let extra = self.extra.as_ref()?;
        extra.embeddings.iter().find(|(m, _)| m == model).map(|(_, vector)| &**vector)
    }

    /// Every vector of the message, with its model (unit vectors, shared, never copied).
    pub(crate) fn embeddings(&self) -> impl Iterator<Item = (&str, &Arc<[f32]>)> {
        self.extra.iter().flat_map(|extra| extra.embeddings.iter().map(|(model, vector)| (model.as_str(), vector)))
    }

    /// Stores `unit` as the message's vector of `model`, replacing the one it had.
    pub(crate) fn set_embedding(&mut self, model: &str, unit: Arc<[f32]>) {
        let mut extra = self.take_extra();
        extra.embeddings.retain(|(m, _)| m != model);
        extra.embeddings.push((model.to_owned(), unit));
        self.keep(extra);
    }

    /// Drops the message's embeddings (its content changed).
    pub(crate) fn clear_embeddings(&mut self) {
        if self.extra.as_ref().is_some_and(|extra| !extra.embeddings.is_empty()) {
            let mut extra = self.take_extra();
            extra.embeddings.clear();
            self.keep(extra);
        }
    }

    fn set_role_in(&mut self, role: &Role, extra: &mut Extra) {
        (self.role, extra.role) = RoleCode::of(role);
    }

    fn take_extra(&mut self) -> Extra {
        self.extra.take().map(|extra| *extra).unwrap_or_default()
    }

    /// Keeps `extra` only when it holds something.
    fn keep(&mut self, extra: Extra) {
        self.extra = (!extra.is_empty()).then(|| Box::new(extra));
    }

    /// The message this record stores, in `thread_id`.
    pub(crate) fn to_message(&self, thread_id: &ThreadId) -> Result<Message> {
        Ok(Message {
            thread_id: thread_id.clone(),
            id: self.id()?,
            role: self.role(),
            content: self.content.clone(),
            metadata: self.metadata(),
            status: self.status,
            seq: self.seq,
            parent_seq: self.parent(),
            version: self.version,
            idempotency_key: self.idempotency_key().cloned(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// A thread's messages in `seq` order, found by binary search (messages are appended with
/// growing `seq`s), with hash indexes from id and idempotency key to `seq`.
#[derive(Default)]
pub(crate) struct Messages {
    records: Vec<Record>,
    /// `seq`s, hashed by the message's [`IdKey`]: an index entry is 8 bytes, not a second
    /// copy of the id.
    by_id: HashTable<u64>,
    by_key: HashMap<IdempotencyKey, u64>,
    /// The keys of removed messages (see `persist::spent`).
    spent: HashMap<IdempotencyKey, SpentKey>,
    hasher: DefaultHashBuilder,
}

impl Messages {
    /// Where `seq` is (`Ok`) or would go (`Err`). Seqs are unique and increasing, so a
    /// record sits at most `seq - first seq` places in: one look there finds it while nothing
    /// has been deleted; a binary search below that place finds it otherwise.
    fn position(records: &[Record], seq: u64) -> std::result::Result<usize, usize> {
        let Some(first) = records.first() else {
            return Err(0);
        };
        let Some(offset) = seq.checked_sub(first.seq) else {
            return Err(0);
        };
        let guess = usize::try_from(offset).unwrap_or(usize::MAX).min(records.len() - 1);
        match records[guess].seq {
            found if found == seq => Ok(guess),
            found if found < seq => Err(guess + 1),
            _ => records[..guess].binary_search_by_key(&seq, |r| r.seq),
        }
    }

    fn hash(&self, key: IdKey<'_>) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The record with id `id`.
    pub(crate) fn by_id(&self, id: &MessageId) -> Option<&Record> {
        let key = IdKey::of(id);
        let records = &self.records;
        let seq = self
            .by_id
            .find(self.hash(key), |&seq| Self::position(records, seq).is_ok_and(|i| records[i].id_key() == key))?;
        self.get(*seq)
    }

    pub(crate) fn by_id_mut(&mut self, id: &MessageId) -> Option<&mut Record> {
        let seq = self.by_id(id)?.seq;
        self.get_mut(seq)
    }

    /// The record written with idempotency key `key`.
    pub(crate) fn by_key(&self, key: &IdempotencyKey) -> Option<&Record> {
        self.get(*self.by_key.get(key)?)
    }

    pub(crate) fn get(&self, seq: u64) -> Option<&Record> {
        Self::position(&self.records, seq).ok().map(|i| &self.records[i])
    }

    fn get_mut(&mut self, seq: u64) -> Option<&mut Record> {
        Self::position(&self.records, seq).ok().map(|i| &mut self.records[i])
    }

    /// Stores `record`, whose id and idempotency key are not stored yet.
    pub(crate) fn insert(&mut self, record: Record) {
        let hash = self.hash(record.id_key());
        let Self { records, by_id, by_key, hasher, .. } = self;
        by_id.insert_unique(hash, record.seq, |&seq| match Self::position(records, seq) {
            Ok(i) => hasher.hash_one(records[i].id_key()),
            // Every seq in the index is stored; this arm is never taken.
            Err(_) => 0,
        });
        if let Some(key) = record.idempotency_key() {
            by_key.insert(key.clone(), record.seq);
        }
        match Self::position(records, record.seq) {
            Ok(i) => records[i] = record,
            Err(i) => records.insert(i, record),
        }
    }

    /// Removes the record with id `id`.
    pub(crate) fn remove(&mut self, id: &MessageId) -> Option<Record> {
        let key = IdKey::of(id);
        let hash = self.hash(key);
        let Self { records, by_id, by_key, .. } = self;
        let entry = by_id
            .find_entry(hash, |&seq| Self::position(records, seq).is_ok_and(|i| records[i].id_key() == key))
            .ok()?;
        let (seq, _) = entry.remove();
        let record = records.remove(Self::position(records, seq).ok()?);
        if let Some(key) = record.idempotency_key() {
            by_key.remove(key);
        }
        Some(record)
    }

    /// Removes the record with id `id` of thread `thread_id`, keeping its key as spent at `now`
    /// for `retention`.
    pub(crate) fn remove_spending(
        &mut self,
        thread_id: &ThreadId,
        id: &MessageId,
        now: Timestamp,
        retention: Duration,
    ) -> Result<()> {
        if let Some(record) = self.remove(id)
            && let Some(spent) = SpentKey::of(&record.to_message(thread_id)?, now, retention)
        {
            self.spent.insert(spent.key.clone(), spent);
        }
        Ok(())
    }

    /// The spent key `key`, while it is remembered at `now`; one forgotten is dropped.
    pub(crate) fn spent(&mut self, key: &IdempotencyKey, now: Timestamp) -> Option<&SpentKey> {
        if self.spent.get(key).is_some_and(|spent| !spent.is_remembered(now)) {
            self.spent.remove(key);
        }
        self.spent.get(key)
    }

    /// Removes every record, and the keys of those removed before.
    pub(crate) fn clear(&mut self) -> Vec<Record> {
        self.spent.clear();
        self.by_id.clear();
        self.by_key.clear();
        std::mem::take(&mut self.records)
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// Records with `lower <= seq < upper`.
    pub(crate) fn range(&self, lower: u64, upper: u64) -> &[Record] {
        let start = Self::position(&self.records, lower).unwrap_or_else(|i| i);
        let end = Self::position(&self.records, upper).unwrap_or_else(|i| i).max(start);
        &self.records[start..end]
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Record> {
        self.records.iter()
    }

    /// The thread's tree.
    pub(crate) fn tree(&self) -> Tree {
        Tree::new(self.records.iter().map(|r| (r.seq, r.parent())))
    }

    /// After the messages of `removed` (seq → parent) went: each message whose parent went
    /// follows that parent's nearest ancestor still stored, unless the parent was older than
    /// every message left (it then follows it still, as history). Answers where `seq` (the
    /// active leaf) now is: its nearest ancestor still stored, or, when none is left, the last
    /// message (a thread with messages always has an active leaf).
    pub(crate) fn splice(&mut self, removed: &BTreeMap<u64, Option<u64>>, seq: Option<u64>) -> Option<u64> {
        let survivor = |mut at: Option<u64>| {
            while let Some(parent) = at.and_then(|seq| removed.get(&seq)) {
                at = *parent;
            }
            at
        };
        if removed.is_empty() {
            return seq;
        }
        let oldest = self.records.first().map_or(u64::MAX, |r| r.seq);
        for record in &mut self.records {
            if removed.contains_key(&record.parent) && record.parent > oldest {
                record.parent = survivor(record.parent()).unwrap_or(0);
            }
        }
        let stored = |seq: &u64| Self::position(&self.records, *seq).is_ok();
        survivor(seq).filter(stored).or_else(|| self.records.last().map(|r| r.seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str) -> Message {
        let (thread, id) = (ThreadId::new("t").unwrap(), MessageId::new(id).unwrap());
        Message::stored(thread, id, 1, Role::Assistant, Content::text("hi"), Timestamp::now())
    }

    #[test]
    fn ids_round_trip_exactly_whatever_their_form() {
        let generated = MessageId::generate();
        for id in [
            generated.as_str(),
            "0190c2f4-7d3a-7b4e-9c1d-2e3f4a5b6c7d",
            "0190C2F4-7D3A-7B4E-9C1D-2E3F4A5B6C7D", // upper case: kept as text
            "0190c2f47d3a7b4e9c1d2e3f4a5b6c7d",     // simple form: kept as text
            "{0190c2f4-7d3a-7b4e-9c1d-2e3f4a5b6c7d}",
            "m-1",
        ] {
            let m = message(id);
            let record = Record::new(&m);
            assert_eq!(record.id().unwrap().as_str(), id);
            assert_eq!(record.to_message(&m.thread_id).unwrap(), m);
        }
        assert!(Record::new(&message(generated.as_str())).extra.is_none(), "a generated id needs no extra storage");
    }

    #[test]
    fn the_extra_box_holds_what_is_set_and_goes_when_emptied() {
        let mut m = message("m-1");
        m.role = Role::new("critic").unwrap();
        m.metadata = Metadata::try_from(serde_json::json!({"a": 1})).unwrap();
        m.idempotency_key = Some(IdempotencyKey::new("k").unwrap());
        let mut record = Record::new(&m);
        assert_eq!(record.role(), m.role);
        assert_eq!(record.metadata(), m.metadata);
        assert_eq!(record.idempotency_key(), m.idempotency_key.as_ref());
        record.set_role(&Role::Tool);
        assert_eq!(record.role(), Role::Tool);

        let mut plain = Record::new(&message(MessageId::generate().as_str()));
        plain.merge_metadata(&Metadata::try_from(serde_json::json!({"a": 1})).unwrap());
        assert!(plain.extra.is_some());
        plain.merge_metadata(&Metadata::try_from(serde_json::json!({"a": null})).unwrap());
        assert!(plain.extra.is_none(), "metadata emptied by a patch frees the box");
    }

    #[test]
    fn position_agrees_with_a_binary_search_with_and_without_gaps() {
        for gaps in [&[][..], &[1, 2, 7, 20][..], &[5, 6, 7, 8, 9][..]] {
            let records: Vec<Record> = (1..=20u64)
                .filter(|seq| !gaps.contains(seq))
                .map(|seq| {
                    let mut m = message("m");
                    m.seq = seq;
                    Record::new(&m)
                })
                .collect();
            for seq in 0..=25 {
                assert_eq!(
                    Messages::position(&records, seq),
                    records.binary_search_by_key(&seq, |r| r.seq),
                    "seq {seq} with gaps {gaps:?}"
                );
            }
        }
        assert_eq!(Messages::position(&[], 3), Err(0));
    }

    #[test]
    fn indexes_find_insert_and_remove_by_id_and_key() {
        let mut messages = Messages::default();
        let ids: Vec<MessageId> = (0..200)
            .map(|i| if i % 2 == 0 { MessageId::generate() } else { MessageId::new(format!("m{i}")).unwrap() })
            .collect();
        for (i, id) in ids.iter().enumerate() {
            let mut m = message(id.as_str());
            m.seq = i as u64 + 1;
            m.idempotency_key = (i % 3 == 0).then(|| IdempotencyKey::new(format!("k{i}")).unwrap());
            messages.insert(Record::new(&m));
        }
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(messages.by_id(id).map(|r| r.seq), Some(i as u64 + 1));
        }
        assert_eq!(messages.by_key(&IdempotencyKey::new("k3").unwrap()).map(|r| r.seq), Some(4));
        assert!(messages.by_id(&MessageId::generate()).is_none());

        let removed = messages.remove(&ids[3]).unwrap();
        assert_eq!(removed.seq, 4);
        assert!(messages.by_id(&ids[3]).is_none());
        assert!(messages.by_key(&IdempotencyKey::new("k3").unwrap()).is_none());
        assert_eq!(messages.by_id(&ids[4]).map(|r| r.seq), Some(5));
        assert_eq!(messages.len(), 199);
        assert_eq!(messages.range(3, 6).iter().map(|r| r.seq).collect::<Vec<_>>(), [3, 5]);
        assert_eq!(messages.clear().len(), 199);
        assert!(messages.by_id(&ids[0]).is_none());
    }
}
