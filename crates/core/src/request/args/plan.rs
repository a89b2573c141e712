//! A turn as a backend applies it: each message as its single write, checked, and the plan of
//! keys and ids that decides whether the turn is new, a repeat, or refused ([`TurnPlan`]).
//! Here, with the requests' enum, because a turn's writes are requests.

use super::PersistArgs;
use crate::context::Context;
use crate::model::error::{PersistError, Result};
use crate::model::id::{IdempotencyKey, MessageId, ThreadId};
use crate::model::{Content, Status};
use crate::request::turn::{AppendTurn, MAX_TURN_BYTES, MAX_TURN_MESSAGES, TurnMessage};
use crate::request::write::{Add, Reserve};

impl AppendTurn {
    /// Each message as the single write it would be (an [`Add`], or a [`Reserve`] for the
    /// reply), with the turn's thread and context and the key of [`key_of`](Self::key_of): what a
    /// backend checks repeats against, message by message ([`Message::is_repeat_of`](crate::Message::is_repeat_of),
    /// [`Message::keyed_repeat`](crate::Message::keyed_repeat)).
    ///
    /// # Errors
    ///
    /// As [`validate`](Self::validate).
    pub fn writes(&self) -> Result<Vec<PersistArgs>> {
        self.validate()?;
        self.messages
            .iter()
            .enumerate()
            .map(|(index, message)| {
                let key = self.key_of(index)?;
                let mut write = message.to_write(self.thread_id.clone(), key, self.context.clone());
                if index == 0 {
                    write.set_parent(self.parent.clone());
                }
                Ok(write)
            })
            .collect()
    }

    /// What a backend needs to apply the turn: each message as its single write
    /// ([`writes`](Self::writes)), and the keys and ids whose stored messages decide whether the
    /// turn is new, a repeat, or refused ([`TurnPlan::decide`]).
    ///
    /// # Errors
    ///
    /// As [`validate`](Self::validate).
    pub fn plan(&self) -> Result<TurnPlan> {
        let writes = self.writes()?;
        let mut keys: Vec<IdempotencyKey> = writes.iter().filter_map(write_key).cloned().collect();
        // One key past the last message's: found, the turn key was first used by a longer turn.
        let beyond = match &self.idempotency_key {
            Some(turn) => IdempotencyKey::new(format!("{turn}#{}", self.messages.len())).ok(),
            None => None,
        };
        keys.extend(beyond.clone());
        let ids = self.messages.iter().filter_map(|m| m.message_id.clone()).collect();
        let keyed = (0..self.messages.len()).map(|index| self.key_of(index)).collect::<Result<_>>()?;
        Ok(TurnPlan {
            thread_id: self.thread_id.clone(),
            messages: self.messages.clone(),
            keyed,
            writes,
            keys,
            ids,
            beyond,
            turn_key: self.idempotency_key.clone(),
        })
    }

    /// Checks the turn: between one and [`MAX_TURN_MESSAGES`] messages, at most
    /// [`MAX_TURN_BYTES`] of content and metadata, each message valid as its single write
    /// would be ([`PersistArgs::validate`]), a reservation only last and with no content, and
    /// ids and keys distinct within the turn. Backends call this before writing anything.
    ///
    /// # Errors
    ///
    /// [`PersistError::InvalidInput`] naming the field, its reason naming the message's index.
    pub fn validate(&self) -> Result<()> {
        let count = self.messages.len();
        if count == 0 {
            return Err(PersistError::invalid("messages", "a turn writes at least one message"));
        }
        if count > MAX_TURN_MESSAGES {
            return Err(PersistError::invalid(
                "messages",
                format!("a turn writes at most {MAX_TURN_MESSAGES} messages, this one has {count}"),
            ));
        }
        let bytes: usize = self.messages.iter().map(|m| m.content.json_len() + m.metadata.json_len()).sum();
        if bytes > MAX_TURN_BYTES {
            return Err(PersistError::invalid(
                "messages",
                format!("a turn writes at most {MAX_TURN_BYTES} bytes of content and metadata, this one {bytes}"),
            ));
        }
        let mut ids = std::collections::HashSet::new();
        let mut keys = std::collections::HashSet::new();
        // A model has one length, in the turn as in the store.
        let mut dimensions = std::collections::HashMap::new();
        for (index, message) in self.messages.iter().enumerate() {
            let at = |field: &'static str, why: String| {
                PersistError::invalid(field, format!("message {index} of the turn: {why}"))
            };
            match message.status {
                Status::Complete => {}
                Status::Reserved if index + 1 != count => {
                    return Err(at("status", "only the last message of a turn may be a reservation".into()));
                }
                Status::Reserved if message.embedding.is_some() => {
                    return Err(at("embedding", "a reservation has no content to embed yet".into()));
                }
                Status::Reserved if !message.content.is_placeholder() => {
                    return Err(at("content", "a reservation has no content yet (the placeholder `[]`)".into()));
                }
                Status::Reserved => {}
                other => {
                    return Err(at(
                        "status",
                        format!("a turn writes complete messages and reservations, not {other:?}"),
                    ));
                }
            }
            let write = message.to_write(self.thread_id.clone(), None, Context::new());
            if let Err(PersistError::InvalidInput { field, reason }) = write.validate() {
                return Err(at(field, reason.into_owned()));
            }
            if let Some(id) = &message.message_id
                && !ids.insert(id)
            {
                return Err(at("message_id", format!("{id} is given to two messages of the turn")));
            }
            if let Some(key) = self.key_of(index)?
                && !keys.insert(key.clone())
            {
                return Err(at("idempotency_key", format!("{key} is given to two messages of the turn")));
            }
            if let Some(embedding) = &message.embedding {
                match dimensions.insert(embedding.model(), embedding.dimensions()) {
                    Some(other) if other != embedding.dimensions() => {
                        return Err(at(
                            "embedding",
                            format!(
                                "model `{}` has {other} dimensions in an earlier message of the turn; this vector \
                                 has {}",
                                embedding.model(),
                                embedding.dimensions()
                            ),
                        ));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

impl TurnMessage {
    /// The single write this message would be in `thread_id`: an [`Add`], or a [`Reserve`] for
    /// a reservation, keyed `key` (see [`AppendTurn::key_of`]).
    pub fn to_write(&self, thread_id: ThreadId, key: Option<IdempotencyKey>, context: Context) -> PersistArgs {
        if self.status == Status::Reserved {
            let mut reserve = Reserve::new(thread_id, self.role.clone()).with_metadata(self.metadata.clone());
            reserve.message_id = self.message_id.clone();
            reserve.idempotency_key = key;
            reserve.context = context;
            return reserve.into();
        }
        let mut add = Add::new(thread_id, self.role.clone(), self.content.clone()).with_metadata(self.metadata.clone());
        add.message_id = self.message_id.clone();
        add.idempotency_key = key;
        add.embedding = self.embedding.clone();
        add.context = context;
        add.into()
    }
}

fn write_key(write: &PersistArgs) -> Option<&IdempotencyKey> {
    match write {
        PersistArgs::Add(add) => add.idempotency_key.as_ref(),
        PersistArgs::Reserve(reserve) => reserve.idempotency_key.as_ref(),
        _ => None,
    }
}

fn write_id(write: &PersistArgs) -> Option<&MessageId> {
    write.message_id()
}

/// A turn as a backend applies it (from [`AppendTurn::plan`]): look up the stored messages of
/// the thread holding one of [`keys`](Self::keys) or [`ids`](Self::ids), in the write's
/// transaction, then [`decide`](Self::decide).
///
/// # Example
///
/// ```
/// use persist::args::{AppendTurn, TurnMessage};
/// use persist::{Content, IdempotencyKey, Role, ThreadId};
///
/// let turn = AppendTurn::of(ThreadId::new("t1")?, [TurnMessage::new(Role::User, Content::text("hi"))])
///     .with_idempotency_key(IdempotencyKey::new("turn-1")?);
/// let plan = turn.plan()?;
/// let keys: Vec<&str> = plan.keys().iter().map(|k| k.as_str()).collect();
/// assert_eq!(keys, ["turn-1#0", "turn-1#1"]); // the message's key, and the one past the turn
/// assert!(plan.decide(Vec::new())?.is_none()); // nothing stored: write the turn
/// # Ok::<_, persist::PersistError>(())
/// ```
#[derive(Debug, Clone)]
pub struct TurnPlan {
    thread_id: ThreadId,
    messages: Vec<TurnMessage>,
    keyed: Vec<Option<IdempotencyKey>>,
    writes: Vec<PersistArgs>,
    keys: Vec<IdempotencyKey>,
    ids: Vec<MessageId>,
    beyond: Option<IdempotencyKey>,
    turn_key: Option<IdempotencyKey>,
}

impl TurnPlan {
    /// Each message as its single write ([`Add`] or [`Reserve`]), keyed, in the turn's order.
    pub fn writes(&self) -> &[PersistArgs] {
        &self.writes
    }

    /// The messages a new turn stores when the thread's `last_seq` is `last_seq`: seqs
    /// `last_seq + 1…`, version 1, written `now`, each with its given id or a generated one
    /// (UUIDv7), its key, and the placeholder for a reservation; the first with parent
    /// `parent` (the seq the turn's [`Parent`](crate::branch::Parent) resolved to), each next one after the one before.
    /// For backends that build the rows themselves (one multi-row insert).
    pub fn messages_after(&self, last_seq: u64, parent: Option<u64>, now: crate::Timestamp) -> Vec<crate::Message> {
        let rows = self.messages.iter().zip(&self.keyed).zip(last_seq + 1..);
        rows.map(|((message, key), seq)| crate::Message {
            parent_seq: if seq == last_seq + 1 { parent } else { Some(seq - 1) },
            thread_id: self.thread_id.clone(),
            id: message.message_id.clone().unwrap_or_else(MessageId::generate),
            role: message.role.clone(),
            content: if message.status == Status::Reserved { Content::placeholder() } else { message.content.clone() },
            metadata: message.metadata.clone(),
            status: message.status,
            seq,
            version: 1,
            idempotency_key: key.clone(),
            created_at: now,
            updated_at: now,
        })
        .collect()
    }

    /// The idempotency keys to look up in the thread.
    pub fn keys(&self) -> &[IdempotencyKey] {
        &self.keys
    }

    /// The explicit message ids to look up in the thread.
    pub fn ids(&self) -> &[MessageId] {
        &self.ids
    }

    /// Given the thread's stored messages that hold one of [`keys`](Self::keys) or
    /// [`ids`](Self::ids) (in any order; others are ignored): `Ok(None)` when none of the
    /// turn's messages is stored (write them all), `Ok(Some(messages))` when every one is, as
    /// the turn's repeat (answer them, `deduplicated: true`).
    ///
    /// Each message is matched as its single write would be: by its key first
    /// ([`Message::keyed_repeat`](crate::Message::keyed_repeat)), else by its explicit id
    /// ([`Message::is_repeat_of`](crate::Message::is_repeat_of)).
    ///
    /// # Errors
    ///
    /// [`PersistError::IdempotencyKeyReused`] when a key was used by another request (or the
    /// turn's key by a turn of other messages, or only some of the turn's messages are
    /// stored), [`PersistError::AlreadyExists`] when an explicit id is taken by another
    /// message. Nothing may be written then.
    pub fn decide(&self, stored: Vec<crate::Message>) -> Result<Option<Vec<crate::Message>>> {
        let by_key = |key: &IdempotencyKey| stored.iter().find(|m| m.idempotency_key.as_ref() == Some(key));
        if let Some(longer) = self.beyond.as_ref().and_then(by_key) {
            return Err(self.turn_key_reused(longer));
        }
        let mut repeats = Vec::with_capacity(self.writes.len());
        for write in &self.writes {
            let found = match write_key(write).and_then(by_key) {
                Some(message) => Some(message.clone().keyed_repeat(write)?),
                None => match write_id(write).and_then(|id| stored.iter().find(|m| &m.id == id)) {
                    Some(message) if message.is_repeat_of(write) => Some(message.clone()),
                    Some(message) => {
                        return Err(PersistError::AlreadyExists {
                            thread_id: message.thread_id.clone(),
                            message_id: message.id.clone(),
                        });
                    }
                    None => None,
                },
            };
            repeats.push(found);
        }
        let stored_count = repeats.iter().flatten().count();
        if stored_count == repeats.len() {
            return Ok(Some(repeats.into_iter().flatten().collect()));
        }
        // Partly stored: no retry of an atomic turn leaves that; another request wrote these.
        let Some(message) = repeats.into_iter().flatten().next() else {
            return Ok(None);
        };
        Err(match (&self.turn_key, &message.idempotency_key) {
            (Some(_), _) => self.turn_key_reused(&message),
            (None, Some(key)) => PersistError::IdempotencyKeyReused {
                thread_id: message.thread_id.clone(),
                idempotency_key: key.clone(),
                message_id: message.id.clone(),
            },
            (None, None) => PersistError::AlreadyExists { thread_id: message.thread_id, message_id: message.id },
        })
    }

    /// The messages the turn's keys that are [spent](crate::spent) wrote, answered to this
    /// turn's writes, to give [`decide`](Self::decide) with the stored ones: a turn retried
    /// after its messages were removed is still its repeat.
    ///
    /// # Errors
    ///
    /// [`PersistError::IdempotencyKeyReused`] when a spent key was used by another request (or
    /// the turn's key by a longer turn).
    pub fn spent_repeats(&self, spent: &[crate::spent::SpentKey]) -> Result<Vec<crate::Message>> {
        let mut repeats = Vec::with_capacity(spent.len());
        for key in spent {
            if self.beyond.as_ref() == Some(&key.key) {
                let turn = self.turn_key.clone().unwrap_or_else(|| key.key.clone());
                return Err(PersistError::IdempotencyKeyReused {
                    thread_id: self.thread_id.clone(),
                    idempotency_key: turn,
                    message_id: key.message_id.clone(),
                });
            }
            if let Some(write) = self.writes.iter().find(|write| write_key(write) == Some(&key.key)) {
                repeats.push(key.repeat(&self.thread_id, write)?);
            }
        }
        Ok(repeats)
    }

    fn turn_key_reused(&self, found: &crate::Message) -> PersistError {
        match &self.turn_key {
            Some(key) => PersistError::IdempotencyKeyReused {
                thread_id: found.thread_id.clone(),
                idempotency_key: key.clone(),
                message_id: found.id.clone(),
            },
            None => PersistError::AlreadyExists { thread_id: found.thread_id.clone(), message_id: found.id.clone() },
        }
    }
}
