//! Inserts: `add` and `reserve` (with an add's embedding, stored in the message's record) and
//! whole turns, decided before anything is written.

use std::collections::BTreeMap;

use hashbrown::hash_map::EntryRef;
use persist_core::args::AppendTurn;
use persist_core::branch::{Parent, unknown_message};
use persist_core::{
    Content, IdempotencyKey, Message, MessageId, PersistArgs, PersistError, Result, Status, TenantId, Thread, ThreadId,
    Timestamp, TurnAppended,
};

use crate::messages::{Messages, Record};
use crate::state::{State, ThreadState, key};

/// The fields `add` and `reserve` share.
struct Insert {
    pub(crate) thread_id: ThreadId,
    pub(crate) message_id: Option<MessageId>,
    pub(crate) role: persist_core::Role,
    pub(crate) content: Content,
    pub(crate) metadata: persist_core::Metadata,
    pub(crate) status: Status,
    pub(crate) idempotency_key: Option<IdempotencyKey>,
    pub(crate) tenant: Option<TenantId>,
    pub(crate) parent: Parent,
    /// Written with the message.
    pub(crate) embedding: Option<persist_core::vector::Embedding>,
}

impl Insert {
    /// The insert of an `add` or a `reserve`.
    fn of(args: &PersistArgs) -> Result<Self> {
        Ok(match args {
            PersistArgs::Add(add) => Insert {
                thread_id: add.thread_id.clone(),
                message_id: add.message_id.clone(),
                role: add.role.clone(),
                content: add.content.clone(),
                metadata: add.metadata.clone(),
                status: Status::Complete,
                idempotency_key: add.idempotency_key.clone(),
                tenant: add.context.tenant().cloned(),
                parent: add.parent.clone(),
                embedding: add.embedding.clone(),
            },
            PersistArgs::Reserve(reserve) => Insert {
                thread_id: reserve.thread_id.clone(),
                message_id: reserve.message_id.clone(),
                role: reserve.role.clone(),
                content: Content::placeholder(),
                metadata: reserve.metadata.clone(),
                status: Status::Reserved,
                idempotency_key: reserve.idempotency_key.clone(),
                tenant: reserve.context.tenant().cloned(),
                parent: reserve.parent.clone(),
                embedding: None,
            },
            other => return Err(PersistError::Unsupported { what: format!("an insert of `{}`", other.op()).into() }),
        })
    }
}

impl State {
    /// Writes an `add` or a `reserve`: the message, and whether it repeats one stored.
    pub(crate) fn insert_write(&mut self, args: &PersistArgs, now: Timestamp) -> Result<(Message, bool)> {
        self.insert(Insert::of(args)?, args, now)
    }

    /// Writes a whole turn, or answers its repeat: decided before anything is written, so a
    /// refusal leaves the store as it was.
    pub(crate) fn append_turn(&mut self, turn: &AppendTurn, now: Timestamp) -> Result<TurnAppended> {
        let plan = turn.plan()?;
        // Refused before anything else, as every store does (see `Add::with_embedding`).
        let embeddings: Vec<_> = turn.messages.iter().filter_map(|m| m.embedding.as_ref()).collect();
        self.check_embeddings(turn.context.tenant(), &embeddings)?;
        let mut stored = Vec::new();
        if let Some(ts) = self.threads.get_mut(&key(turn.context.tenant(), &turn.thread_id)) {
            if ts.thread.is_deleted() {
                return Err(PersistError::ThreadDeleted { thread_id: turn.thread_id.clone() });
            }
            let by_key = plan.keys().iter().filter_map(|k| ts.messages.by_key(k));
            for record in by_key.chain(plan.ids().iter().filter_map(|id| ts.messages.by_id(id))) {
                stored.push(record.to_message(&turn.thread_id)?);
            }
            let live: Vec<IdempotencyKey> = stored.iter().filter_map(|m| m.idempotency_key.clone()).collect();
            let spent: Vec<_> = plan
                .keys()
                .iter()
                .filter(|k| !live.contains(k))
                .filter_map(|k| ts.messages.spent(k, now).cloned())
                .collect();
            stored.extend(plan.spent_repeats(&spent)?);
        }
        if let Some(repeat) = plan.decide(stored)? {
            return Ok(TurnAppended::new(turn.thread_id.clone(), repeat, true));
        }
        let mut written = Vec::with_capacity(plan.writes().len());
        for write in plan.writes() {
            // Cannot be refused now: the thread is writable, and no key or id is taken.
            let (message, _) = self.insert(Insert::of(write)?, write, now)?;
            self.message_changed(write.op(), &turn.context, &message);
            written.push(message);
        }
        Ok(TurnAppended::new(turn.thread_id.clone(), written, false))
    }

    fn insert(&mut self, new: Insert, args: &PersistArgs, now: Timestamp) -> Result<(Message, bool)> {
        // Refused before anything else, as every store does (see `Add::with_embedding`).
        let unit =
            new.embedding.as_ref().map(|embedding| self.checked_unit(new.tenant.as_ref(), embedding)).transpose()?;
        let ts = match self.threads.entry_ref(&key(new.tenant.as_ref(), &new.thread_id)) {
            EntryRef::Occupied(entry) => {
                let ts = entry.into_mut();
                if ts.thread.is_deleted() {
                    return Err(PersistError::ThreadDeleted { thread_id: new.thread_id });
                }
                if let Some(record) = new.idempotency_key.as_ref().and_then(|key| ts.messages.by_key(key)) {
                    return Ok((record.to_message(&new.thread_id)?.keyed_repeat(args)?, true));
                }
                if let Some(spent) = new.idempotency_key.as_ref().and_then(|key| ts.messages.spent(key, now)) {
                    return Ok((spent.repeat(&new.thread_id, args)?, true));
                }
                if let Some(record) = new.message_id.as_ref().and_then(|id| ts.messages.by_id(id)) {
                    let existing = record.to_message(&new.thread_id)?;
                    if existing.is_repeat_of(args) {
                        return Ok((existing, true));
                    }
                    return Err(PersistError::AlreadyExists { thread_id: new.thread_id, message_id: existing.id });
                }
                ts
            }
            EntryRef::Vacant(entry) => {
                if let Parent::Message(parent) = &new.parent {
                    return Err(unknown_message(&new.thread_id, parent));
                }
                entry.insert(ThreadState {
                    thread: Thread {
                        id: new.thread_id.clone(),
                        tenant: new.tenant.clone(),
                        title: None,
                        metadata: persist_core::Metadata::new(),
                        version: 1,
                        created_at: now,
                        updated_at: now,
                        last_seq: 0,
                        message_count: 0,
                        active_leaf: None,
                        deleted_at: None,
                    },
                    messages: Messages::default(),
                    summaries: BTreeMap::new(),
                })
            }
        };
        let parent_seq = match &new.parent {
            Parent::Root => None,
            Parent::Message(parent) => {
                Some(ts.messages.by_id(parent).ok_or_else(|| unknown_message(&new.thread_id, parent))?.seq)
            }
            _ => ts.thread.active_leaf,
        };
        let seq = ts.thread.last_seq + 1;
        let message = Message {
            thread_id: new.thread_id,
            id: new.message_id.unwrap_or_else(MessageId::generate),
            role: new.role,
            content: new.content,
            metadata: new.metadata,
            status: new.status,
            seq,
            parent_seq,
            version: 1,
            idempotency_key: new.idempotency_key,
            created_at: now,
            updated_at: now,
        };
        ts.thread.last_seq = seq;
        ts.thread.active_leaf = Some(seq);
        ts.thread.message_count += 1;
        ts.thread.updated_at = now;
        let mut record = Record::new(&message);
        if let (Some(embedding), Some(unit)) = (&new.embedding, unit) {
            record.set_embedding(embedding.model(), unit);
            let model = (new.tenant.clone(), embedding.model().to_owned());
            self.models.entry(model).or_insert(embedding.dimensions());
        }
        ts.messages.insert(record);
        Ok((message, false))
    }
}
