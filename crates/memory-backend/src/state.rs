//! The store behind the lock: threads by `(tenant, thread_id)`, their messages, bindings, the
//! feed and values set once, and every operation on them.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

use hashbrown::{Equivalent, HashMap};
use persist_core::args::{Delete, Restore, Update, UpdateContent};
use persist_core::branch::{Switch, check_parents, unknown_message};
use persist_core::feed::{Change, MemoryFeed};
use persist_core::restore::{Verdict, merged_thread};
use persist_core::session::{BindingState, SessionBinding, StoredBinding};
use persist_core::{
    Added, AgentId, ContentUpdated, Deleted, Message, MessageId, PersistArgs, PersistError, PersistOp, PersistResult,
    Reserved, Restored, Result, Status, Target, TenantId, Thread, ThreadId, Timestamp, Updated,
};

use crate::messages::{Messages, Record};

/// The in-memory backend; see the [crate docs](crate).
///
/// Every operation runs under one lock, held only for the few microseconds of the write and
/// never across an `.await`, so each operation is atomic and per-thread `seq`s are assigned
/// in commit order.

#[derive(Default)]
pub(crate) struct State {
    pub(crate) threads: HashMap<ThreadKey, ThreadState>,
    pub(crate) bindings: HashMap<(ThreadKey, AgentId), (SessionBinding, BindingState)>,
    /// The change feed; `None` when turned off.
    pub(crate) feed: Option<MemoryFeed>,
    /// What the write under way changed, in order, for the feed.
    pub(crate) changes: Vec<Change>,
    /// What `set_once` stored, per tenant and name.
    pub(crate) values: HashMap<(Option<TenantId>, String), String>,
    /// The leases held, per thread and name.
    pub(crate) leases: HashMap<(ThreadKey, String), persist_core::lease::Leased>,
    /// Each model's dimensions, per tenant (fixed by its first vector).
    pub(crate) models: HashMap<(Option<TenantId>, String), usize>,
    /// Working memory documents, per tenant and resource.
    pub(crate) memories: HashMap<(Option<TenantId>, persist_core::ResourceId), persist_core::working::WorkingMemory>,
    /// Records, by tenant key, space and key.
    pub(crate) records: std::collections::BTreeMap<(String, String, String), persist_core::records::Record>,
    /// How long a removed message's key is remembered (`None`: the default, see
    /// `persist::spent`).
    pub(crate) key_retention: Option<std::time::Duration>,
}

impl State {
    pub(crate) fn key_retention(&self) -> std::time::Duration {
        self.key_retention.unwrap_or(persist_core::spent::DEFAULT_KEY_RETENTION)
    }
}

/// A thread's identity, `(tenant, thread_id)`, as the map keeps it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ThreadKey {
    pub(crate) tenant: Option<TenantId>,
    pub(crate) id: ThreadId,
}

impl ThreadKey {
    pub(crate) fn new(tenant: Option<&TenantId>, id: &ThreadId) -> Self {
        Self { tenant: tenant.cloned(), id: id.clone() }
    }
}

/// A borrowed [`ThreadKey`], to look a thread up without cloning its ids.
#[derive(Clone, Copy)]
pub(crate) struct ThreadRef<'a> {
    pub(crate) tenant: Option<&'a TenantId>,
    pub(crate) id: &'a ThreadId,
}

// One hash for the owned and the borrowed key: the id, then the tenant's text ("" for none,
// which no tenant is).
impl Hash for ThreadKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        ThreadRef { tenant: self.tenant.as_ref(), id: &self.id }.hash(state);
    }
}

impl Hash for ThreadRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.as_str().hash(state);
        persist_core::raw::tenant_key(self.tenant).hash(state);
    }
}

impl Equivalent<ThreadKey> for ThreadRef<'_> {
    fn equivalent(&self, key: &ThreadKey) -> bool {
        self.id == &key.id && self.tenant == key.tenant.as_ref()
    }
}

impl From<&ThreadRef<'_>> for ThreadKey {
    fn from(key: &ThreadRef<'_>) -> Self {
        Self::new(key.tenant, key.id)
    }
}

pub(crate) fn key<'a>(tenant: Option<&'a TenantId>, id: &'a ThreadId) -> ThreadRef<'a> {
    ThreadRef { tenant, id }
}

pub(crate) struct ThreadState {
    pub(crate) thread: Thread,
    pub(crate) messages: Messages,
    /// The thread's summaries, by the seq of their last message.
    pub(crate) summaries: BTreeMap<u64, persist_core::summary::Summary>,
}

/// The change `op` made to `message`, leaving it as it is.
fn change_of(op: PersistOp, context: &persist_core::Context, message: &Message) -> Change {
    let (thread, id) = (message.thread_id.clone(), message.id.clone());
    let change = Change::message(context.tenant().cloned(), thread, op, id, message.seq, message.version);
    let parent = matches!(op, PersistOp::Add | PersistOp::Reserve).then_some(message.parent_seq).flatten();
    change.with_status(message.status).with_parent(parent)
}

impl State {
    /// Notes a change for the feed, if there is one.
    pub(crate) fn changed(&mut self, change: impl FnOnce() -> Change) {
        if self.feed.is_some() {
            self.changes.push(change());
        }
    }

    /// Notes a change of `message` made by `op`.
    pub(crate) fn message_changed(&mut self, op: PersistOp, context: &persist_core::Context, message: &Message) {
        self.changed(|| change_of(op, context, message));
    }

    pub(crate) fn apply(&mut self, args: &PersistArgs, now: Timestamp) -> Result<PersistResult> {
        let state = self;
        match args {
            PersistArgs::Add(_) | PersistArgs::Reserve(_) => {
                let (message, dedup) = state.insert_write(args, now)?;
                if !dedup {
                    state.message_changed(args.op(), args.context(), &message);
                }
                // Answered by the request's kind, as the SQL stores do: a reserve repeated after
                // its reply finished (or was interrupted) is still a reserve's answer.
                Ok(match args {
                    PersistArgs::Reserve(_) => Reserved::new(message, dedup).into(),
                    _ => Added::new(message, dedup).into(),
                })
            }
            PersistArgs::AppendTurn(turn) => Ok(state.append_turn(turn, now)?.into()),
            PersistArgs::UpdateContent(update) => {
                let (message, changed) = state.update_content(update, now)?;
                // A write that says what it added is an `update_content` even when it added
                // nothing (a heartbeat, a stream's end), as the SQL stores' triggers record it.
                let delta = update.feed_delta();
                let op = if changed || delta.is_some() { PersistOp::UpdateContent } else { PersistOp::Update };
                let delta = delta.cloned().filter(|_| op == PersistOp::UpdateContent);
                state.changed(|| change_of(op, &update.context, &message).with_delta(delta));
                Ok(ContentUpdated::new(message).into())
            }
            PersistArgs::Update(update) => {
                let updated = state.update(update, now)?;
                match &updated {
                    Updated::Message(message) => state.message_changed(PersistOp::Update, &update.context, message),
                    Updated::Thread(thread) => state.changed(|| {
                        Change::thread(thread.tenant.clone(), thread.id.clone(), PersistOp::Update, thread.version)
                    }),
                    _ => {}
                }
                Ok(updated.into())
            }
            PersistArgs::Delete(delete) => Ok(state.delete(delete, now)?.into()),
            PersistArgs::Restore(restore) => Ok(state.restore(restore)?.into()),
            PersistArgs::Summarize(summarize) => Ok(PersistResult::Summarized(state.summarize(summarize, now)?)),
            PersistArgs::Embed(embed) => Ok(PersistResult::Embedded(state.embed(embed)?)),
            PersistArgs::WriteMemory(write) => {
                let written = state.write_memory(write, now)?;
                state.changed(|| Change::memory(written.tenant.clone(), written.resource.clone(), written.version));
                Ok(PersistResult::MemoryWritten(written))
            }
            PersistArgs::WriteRecords(write) => {
                write.validate()?;
                let changed =
                    persist_core::records::apply_to_map(&mut state.records, write.tenant(), &write.writes, now);
                Ok(PersistResult::RecordsWritten(persist_core::records::RecordsWritten::new(changed)))
            }
            PersistArgs::SetOnce(request) => {
                request.validate()?;
                let key = (request.context.tenant().cloned(), request.name.clone());
                Ok(PersistResult::Value(state.values.entry(key).or_insert_with(|| request.value.clone()).clone()))
            }
            other => Err(PersistError::Unsupported { what: format!("operation `{}`", other.op()).into() }),
        }
    }
}

impl State {
    /// The thread a write to an existing thread may change: absent is `NotFound`, a tombstone
    /// is `ThreadDeleted`.
    pub(crate) fn writable(
        &mut self,
        thread_id: &ThreadId,
        tenant: Option<&TenantId>,
        message_id: Option<&MessageId>,
    ) -> Result<&mut ThreadState> {
        match self.threads.get_mut(&key(tenant, thread_id)) {
            Some(ts) if ts.thread.is_deleted() => Err(PersistError::ThreadDeleted { thread_id: thread_id.clone() }),
            Some(ts) => Ok(ts),
            None => Err(PersistError::not_found(thread_id, message_id)),
        }
    }

    /// The message written, and whether its content or status changed (the feed tells a write
    /// that changed neither as an `update`, as the SQL stores' triggers do).
    pub(crate) fn update_content(&mut self, args: &UpdateContent, now: Timestamp) -> Result<(Message, bool)> {
        if args.append {
            // Joined to the stored content, then written as a replacement expecting its version.
            let ts = self.writable(&args.thread_id, args.context.tenant(), Some(&args.message_id))?;
            let stored = ts
                .messages
                .by_id(&args.message_id)
                .ok_or_else(|| PersistError::not_found(&args.thread_id, Some(&args.message_id)))?
                .to_message(&args.thread_id)?;
            return self.update_content(&args.resolved(&stored)?, now);
        }
        let ts = self.writable(&args.thread_id, args.context.tenant(), Some(&args.message_id))?;
        let record = ts
            .messages
            .by_id_mut(&args.message_id)
            .ok_or_else(|| PersistError::not_found(&args.thread_id, Some(&args.message_id)))?;
        check_version(args.expected_version, record.version, &args.thread_id, Some(&args.message_id))?;
        if let Some(refusal) = args.status_conflict(record.status) {
            return Err(refusal);
        }
        let status = args.status_after().unwrap_or(record.status);
        let changed = record.content != args.content || record.status != status;
        if record.content != args.content {
            // The vectors described the content it held.
            record.clear_embeddings();
        }
        record.content = args.content.clone();
        record.status = status;
        record.version += 1;
        record.updated_at = now;
        let message = record.to_message(&args.thread_id)?;
        ts.thread.updated_at = now;
        Ok((message, changed))
    }

    pub(crate) fn update(&mut self, args: &Update, now: Timestamp) -> Result<Updated> {
        let ts = self.writable(&args.thread_id, args.context.tenant(), args.target.message_id())?;
        match &args.target {
            Target::Message(id) => {
                let record =
                    ts.messages.by_id_mut(id).ok_or_else(|| PersistError::not_found(&args.thread_id, Some(id)))?;
                check_version(args.expected_version, record.version, &args.thread_id, Some(id))?;
                if let Some(patch) = &args.metadata {
                    record.merge_metadata(patch);
                }
                if let Some(role) = &args.role {
                    record.set_role(role);
                }
                record.version += 1;
                record.updated_at = now;
                let message = record.to_message(&args.thread_id)?;
                ts.thread.updated_at = now;
                Ok(Updated::Message(message))
            }
            Target::Thread => {
                check_version(args.expected_version, ts.thread.version, &args.thread_id, None)?;
                if let Some(switch) = &args.switch {
                    ts.thread.active_leaf = match switch.message_id() {
                        // An empty branch: the next message without a parent is a root.
                        None => None,
                        Some(id) => {
                            let seq = ts.messages.by_id(id).ok_or_else(|| unknown_message(&args.thread_id, id))?.seq;
                            Some(match switch {
                                Switch::Through(_) => ts.messages.tree().latest_under(seq),
                                _ => seq,
                            })
                        }
                    };
                }
                let thread = &mut ts.thread;
                if let Some(patch) = &args.metadata {
                    thread.metadata.merge(patch);
                }
                if let Some(title) = &args.title {
                    thread.title = title.clone();
                }
                thread.version += 1;
                thread.updated_at = now;
                Ok(Updated::Thread(thread.clone()))
            }
            // Refused by `validate` before the lock is taken.
            Target::MessagesAfter(_) | Target::Covered => {
                Err(PersistError::invalid("target", "an update applies to a message or a thread"))
            }
        }
    }

    pub(crate) fn delete(&mut self, args: &Delete, now: Timestamp) -> Result<Deleted> {
        let gone = || Ok(Deleted::new(args.thread_id.clone(), Vec::new()));
        let tenant = args.context.tenant();
        let feeding = self.feed.is_some();
        let retention = self.key_retention();
        let removal = |record: &Record| -> Result<Change> {
            let (thread, id) = (args.thread_id.clone(), record.id()?);
            Ok(Change::message(tenant.cloned(), thread, PersistOp::Delete, id, record.seq, record.version))
        };
        let Some(ts) = self.threads.get_mut(&key(tenant, &args.thread_id)) else {
            return gone();
        };
        if ts.thread.is_deleted() {
            // A purge of a tombstone erases what it still says, or frees its id.
            if args.purge {
                ts.thread.title = None;
                ts.thread.metadata = persist_core::Metadata::new();
                if args.free_id {
                    self.threads.remove(&key(tenant, &args.thread_id));
                }
            }
            return gone();
        }
        let removed = match &args.target {
            Target::Covered => return self.delete_covered(args, now),
            Target::Message(id) => {
                let Some(record) = ts.messages.by_id(id) else {
                    return gone();
                };
                check_version(args.expected_version, record.version, &args.thread_id, Some(id))?;
                if feeding {
                    self.changes.push(removal(record)?);
                }
                let removed = BTreeMap::from([(record.seq, record.parent())]);
                ts.messages.remove_spending(&args.thread_id, id, now, retention)?;
                ts.thread.active_leaf = ts.messages.splice(&removed, ts.thread.active_leaf);
                vec![id.clone()]
            }
            Target::Thread => {
                check_version(args.expected_version, ts.thread.version, &args.thread_id, None)?;
                if let Some(conflict) = args.updated_at_conflict(ts.thread.updated_at) {
                    return Err(conflict);
                }
                if args.expected_attached.is_some() {
                    let thread = key(tenant, &args.thread_id);
                    let bindings = self.bindings.iter().filter(|((bound, _), _)| thread.equivalent(bound));
                    let stored = persist_core::args::Attached::new(
                        ts.summaries.keys().copied(),
                        bindings.map(|((_, agent), (binding, _))| (agent.clone(), binding.updated_at)),
                    );
                    if let Some(conflict) = args.attached_conflict(&stored) {
                        return Err(conflict);
                    }
                }
                let ids = ts.messages.iter().map(Record::id).collect::<Result<Vec<_>>>()?;
                if feeding {
                    let (thread, version) = (args.thread_id.clone(), ts.thread.version);
                    self.changes.push(Change::thread(tenant.cloned(), thread, PersistOp::Delete, version));
                }
                ts.thread.deleted_at = Some(now);
                ts.thread.active_leaf = None;
                let thread = key(tenant, &args.thread_id);
                self.bindings.retain(|(bound, _), _| !thread.equivalent(bound));
                self.leases.retain(|(held, _), _| !thread.equivalent(held));
                ts.messages.clear();
                ts.summaries.clear();
                if args.purge {
                    ts.thread.title = None;
                    ts.thread.metadata = persist_core::Metadata::new();
                }
                if args.free_id {
                    self.threads.remove(&thread);
                    return Ok(Deleted::new(args.thread_id.clone(), ids));
                }
                ids
            }
            Target::MessagesAfter(seq) => {
                check_version(args.expected_version, ts.thread.version, &args.thread_id, None)?;
                let ids = ts.messages.range(seq.saturating_add(1), u64::MAX).iter().map(Record::id);
                let ids = ids.collect::<Result<Vec<_>>>()?;
                if ids.is_empty() {
                    return gone();
                }
                if feeding {
                    for record in ts.messages.range(seq.saturating_add(1), u64::MAX) {
                        self.changes.push(removal(record)?);
                    }
                }
                let removed: BTreeMap<u64, Option<u64>> =
                    ts.messages.range(seq.saturating_add(1), u64::MAX).iter().map(|r| (r.seq, r.parent())).collect();
                // Last first: each removal is then at the end of the thread's records.
                for id in ids.iter().rev() {
                    ts.messages.remove_spending(&args.thread_id, id, now, retention)?;
                }
                ts.thread.active_leaf = ts.messages.splice(&removed, ts.thread.active_leaf);
                // The summaries a truncation after `seq` leaves: those ending at or before it.
                ts.summaries.retain(|&through, _| through <= *seq);
                ts.thread.version += 1;
                if feeding {
                    let (thread, version) = (args.thread_id.clone(), ts.thread.version);
                    self.changes.push(Change::thread(tenant.cloned(), thread, PersistOp::Update, version));
                }
                ids
            }
        };
        ts.thread.message_count = ts.messages.len() as u64;
        ts.thread.updated_at = now;
        Ok(Deleted::new(args.thread_id.clone(), removed))
    }

    /// Judges every message before changing anything, so a refusal writes nothing.
    pub(crate) fn restore(&mut self, args: &Restore) -> Result<Restored> {
        let tenant = args.context.tenant();
        let stored = self.threads.get(&key(tenant, &args.thread.id));
        if stored.is_some_and(|ts| ts.thread.is_deleted()) {
            return Err(PersistError::ThreadDeleted { thread_id: args.thread.id.clone() });
        }
        let mut inserts = Vec::new();
        for incoming in &args.messages {
            let verdict = match stored {
                None => Verdict::Insert,
                Some(ts) => {
                    let by_id = ts.messages.by_id(&incoming.id).map(|r| r.to_message(&args.thread.id)).transpose()?;
                    let at_seq = ts.messages.get(incoming.seq).map(Record::id).transpose()?;
                    let by_key = match &incoming.idempotency_key {
                        Some(k) => ts.messages.by_key(k).map(Record::id).transpose()?,
                        None => None,
                    };
                    Restore::verdict(incoming, by_id.as_ref(), at_seq.as_ref(), by_key.as_ref())?
                }
            };
            if verdict == Verdict::Insert {
                inserts.push(incoming);
            }
        }
        let stored_seqs: BTreeSet<u64> =
            stored.map(|ts| ts.messages.iter().map(|r| r.seq).collect()).unwrap_or_default();
        check_parents(&args.messages, &stored_seqs)?;
        let inserted = inserts.len() as u64;
        let present = args.messages.len() as u64 - inserted;
        let stored_version = stored.map(|ts| ts.thread.version);
        let stored_thread = stored.map(|ts| ts.thread.clone());
        let thread = merged_thread(stored.map(|ts| &ts.thread), &args.thread, inserted);
        let ts = self.threads.entry_ref(&key(tenant, &args.thread.id)).or_insert_with(|| ThreadState {
            thread: thread.clone(),
            messages: Messages::default(),
            summaries: BTreeMap::new(),
        });
        let moved = stored_version.is_some_and(|version| version != thread.version);
        ts.thread = thread.clone();
        for message in inserts {
            ts.messages.insert(Record::new(message));
            if self.feed.is_some() {
                let op = if message.status == Status::Reserved { PersistOp::Reserve } else { PersistOp::Add };
                let (id, thread) = (message.id.clone(), args.thread.id.clone());
                let change = Change::message(tenant.cloned(), thread, op, id, message.seq, message.version);
                self.changes.push(change.with_status(message.status).with_parent(message.parent_seq));
            }
        }
        // As the SQL stores: a restore that inserts nothing and moves nothing leaves the leaf.
        if inserted > 0 || stored_thread.as_ref().is_some_and(|stored| *stored != thread) {
            let leaf = args.thread.active_leaf.filter(|&leaf| ts.messages.get(leaf).is_some());
            ts.thread.active_leaf = leaf.or_else(|| ts.messages.iter().last().map(|r| r.seq));
        }
        let thread = ts.thread.clone();
        if moved && self.feed.is_some() {
            let change = Change::thread(tenant.cloned(), args.thread.id.clone(), PersistOp::Update, thread.version);
            self.changes.push(change);
        }
        let mut bindings = 0;
        for incoming in &args.bindings {
            let binding_key = (ThreadKey::new(tenant, &args.thread.id), incoming.binding.agent_id.clone());
            let stored = self.bindings.get(&binding_key).map(|(b, s)| StoredBinding::new(b.clone(), *s));
            if Restore::binding_wins(incoming, stored.as_ref()) {
                self.bindings.insert(binding_key, (incoming.binding.clone(), incoming.state));
                bindings += 1;
            }
        }
        Ok(Restored::new(thread, inserted, present).with_bindings(bindings))
    }

    pub(crate) fn visible(&self, thread_id: &ThreadId, tenant: Option<&TenantId>) -> Option<&ThreadState> {
        self.threads.get(&key(tenant, thread_id))
    }
}

pub(crate) fn check_version(
    expected: Option<u64>,
    actual: u64,
    thread_id: &ThreadId,
    message_id: Option<&MessageId>,
) -> Result<()> {
    match expected {
        Some(expected) if expected != actual => Err(PersistError::VersionConflict {
            thread_id: thread_id.clone(),
            message_id: message_id.cloned(),
            expected,
            actual,
        }),
        _ => Ok(()),
    }
}
