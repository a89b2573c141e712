//! Group commit: adds and reserves that arrive while others are being written are written
//! together, in one statement, and so are content updates (a streamed reply's partial and
//! final updates), each kind in its own lane.
//!
//! Each statement costs the server a plan, a commit and a round trip whatever it writes, and
//! with many callers those costs, not the rows, are what the server spends its CPU on (planning
//! alone was 40% of it with 64 callers). So at most [`max_insert_groups`] groups are written at
//! once; a caller that finds them all busy queues its insert, and whichever waiting caller gets
//! the next turn takes the queued inserts as one group ([`write::insert_group`]), on a task of its
//! own so that no caller's cancellation stops the others' writes. A caller whose insert was
//! taken stops asking for turns and waits for its answer.
//!
//! A lone caller finds a turn free and nothing queued: its insert runs at once, alone, in the
//! caller's own task, exactly as without grouping. Whatever a group did not write (a thread that
//! refuses the write, an id or key already taken, a second insert to a thread already in the
//! group, or a statement the server refused as a whole) runs again alone, in queue order, which
//! writes it or says why not. If the connection fails, every insert of the group gets that
//! error, as each would have alone. A group waits for its threads' row locks: a thread held by
//! a long delete or another instance's write holds up the group (and its turn) with it.
//!
//! [`max_insert_groups`]: crate::PostgresBackendBuilder::max_insert_groups

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use persist_core::{Added, Message, MessageId, PersistArgs, PersistError, PersistResult, Reserved, Result};
use tokio::sync::{Semaphore, oneshot};

use crate::{PostgresBackend, write};

/// Most inserts in one group.
const MAX_GROUP: usize = 256;

/// What a lane groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Adds and reserves.
    Inserts,
    /// Updates of a message: content replacements (an append is joined to what it reads,
    /// alone) and metadata or role patches.
    MessageUpdates,
}

/// The queue of one kind of write of one backend (shared by its clones).
pub(crate) struct Inserts {
    queue: Mutex<Queue>,
    turns: Arc<Semaphore>,
}

/// Queued inserts, numbered: the `n`th insert ever queued has left the queue once `taken > n`.
#[derive(Default)]
struct Queue {
    waiting: Vec<Queued>,
    taken: u64,
}

/// A queued insert and where its answer goes.
struct Queued {
    args: PersistArgs,
    reply: oneshot::Sender<Result<PersistResult>>,
}

impl Inserts {
    /// At most `groups` groups written at once.
    pub(crate) fn new(groups: usize) -> Self {
        Self { queue: Mutex::new(Queue::default()), turns: Arc::new(Semaphore::new(groups.max(1))) }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // A panic cannot leave the queue half-changed (push, drain and counts move together
        // under the lock, none of them panics): keep using it.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl PostgresBackend {
    /// Writes an add or a reserve, alone when nothing else is being written, grouped otherwise.
    pub(crate) async fn insert(&self, args: PersistArgs) -> Result<PersistResult> {
        self.grouped(Kind::Inserts, args).await
    }

    /// Writes an update of a message (its content, or its metadata and role), alone when no
    /// other is being written, grouped otherwise.
    pub(crate) async fn update_message(&self, args: PersistArgs) -> Result<PersistResult> {
        self.grouped(Kind::MessageUpdates, args).await
    }

    async fn grouped(&self, kind: Kind, args: PersistArgs) -> Result<PersistResult> {
        let inserts = match kind {
            Kind::Inserts => &self.inserts,
            Kind::MessageUpdates => &self.updates,
        };
        if let Ok(turn) = inserts.turns.try_acquire()
            && inserts.queue().waiting.is_empty()
        {
            let answer = self.with(async |conn| write::apply(conn, args).await).await;
            drop(turn);
            return answer;
        }
        let (reply, mut answer) = oneshot::channel();
        let ticket = {
            let mut queue = inserts.queue();
            queue.waiting.push(Queued { args, reply });
            queue.taken + queue.waiting.len() as u64 - 1
        };
        let lost = || PersistError::Backend { message: "a grouped insert lost its answer".into(), source: None };
        // Ask for turns until some turn takes this insert, then wait for its answer.
        while inserts.queue().taken <= ticket {
            tokio::select! {
                biased;
                answer = &mut answer => return answer.unwrap_or_else(|_| Err(lost())),
                turn = inserts.turns.clone().acquire_owned() => {
                    // The turns are never closed; if they were, the answer is all there is.
                    let Ok(turn) = turn else { break };
                    let group: Vec<Queued> = {
                        let mut queue = inserts.queue();
                        let take = queue.waiting.len().min(MAX_GROUP);
                        queue.taken += take as u64;
                        queue.waiting.drain(..take).collect()
                    };
                    if !group.is_empty() {
                        let backend = self.clone();
                        tokio::spawn(async move {
                            match kind {
                                Kind::Inserts => backend.write_group(group).await,
                                Kind::MessageUpdates => backend.write_update_group(group).await,
                            }
                            drop(turn);
                        });
                    }
                }
            }
        }
        answer.await.unwrap_or_else(|_| Err(lost()))
    }

    /// Writes `group` and answers each of its callers.
    async fn write_group(&self, group: Vec<Queued>) {
        // Callers that stopped waiting before their write started: nothing is written.
        let group: Vec<Queued> = group.into_iter().filter(|queued| !queued.reply.is_closed()).collect();
        let mut pending: Vec<Option<Queued>> = Vec::with_capacity(group.len());
        // The id each insert writes, fixed now so that an insert run again alone writes the
        // same message; the request itself is left as it came (a refusal names only the id
        // the request named).
        let mut ids: Vec<MessageId> = Vec::with_capacity(group.len());
        let mut grouped: Vec<usize> = Vec::with_capacity(group.len());
        let mut threads = HashSet::with_capacity(group.len());
        for queued in group {
            if let Err(refused) = write::check(&queued.args) {
                let _ = queued.reply.send(Err(refused));
                continue;
            }
            ids.push(queued.args.message_id().cloned().unwrap_or_else(MessageId::generate));
            // One insert per thread in a group: a thread's row is updated once per statement. An
            // insert after a named message runs alone (it reads its parent under the lock).
            let named_parent = matches!(queued.args.parent(), persist_core::branch::Parent::Message(_));
            if !named_parent
                && threads.insert((queued.args.context().tenant().cloned(), queued.args.thread_id().cloned()))
            {
                grouped.push(pending.len());
            }
            pending.push(Some(queued));
        }
        if grouped.len() > 1 {
            let rows: Vec<(&PersistArgs, &MessageId)> =
                grouped.iter().filter_map(|&at| Some((&pending[at].as_ref()?.args, &ids[at]))).collect();
            match self.with(async |conn| write::insert_group(conn, &rows).await).await {
                Ok(Ok(written)) => {
                    let mut written: HashMap<_, Message> = written
                        .into_iter()
                        .map(|(tenant, message)| ((tenant, message.thread_id.clone()), message))
                        .collect();
                    for &at in &grouped {
                        // Not written: it stays pending and runs alone, below.
                        let Some(message) = pending[at].as_ref().and_then(|queued| {
                            let thread = (queued.args.context().tenant().cloned(), queued.args.thread_id()?.clone());
                            written.remove(&thread)
                        }) else {
                            continue;
                        };
                        let Some(queued) = pending[at].take() else { continue };
                        let answer = match queued.args {
                            PersistArgs::Reserve(_) => Reserved::new(message, false).into(),
                            _ => Added::new(message, false).into(),
                        };
                        let _ = queued.reply.send(Ok(answer));
                    }
                }
                // Nothing to answer from the statement: every insert runs alone, below.
                Ok(Err(_)) => {}
                Err(failed) => {
                    for queued in pending.iter_mut().filter_map(Option::take) {
                        let _ = queued.reply.send(Err(failed.replicate()));
                    }
                }
            }
        }
        for (queued, id) in pending.into_iter().zip(&ids).filter_map(|(queued, id)| Some((queued?, id))) {
            if queued.reply.is_closed() {
                continue;
            }
            let answer = self.with(async |conn| write::apply_insert(conn, &queued.args, Some(id)).await).await;
            let _ = queued.reply.send(answer);
        }
    }

    /// Writes a group of message updates in one statement (one per message; a second update
    /// of a message in the group, and any update the statement did not write, runs alone, in
    /// queue order, which writes it or says why not) and answers each of its callers.
    async fn write_update_group(&self, group: Vec<Queued>) {
        let group: Vec<Queued> = group.into_iter().filter(|queued| !queued.reply.is_closed()).collect();
        let mut pending: Vec<Option<Queued>> = Vec::with_capacity(group.len());
        let mut grouped: Vec<usize> = Vec::with_capacity(group.len());
        let mut messages = HashSet::with_capacity(group.len());
        for queued in group {
            if let Err(refused) = write::check(&queued.args) {
                let _ = queued.reply.send(Err(refused));
                continue;
            }
            let key = (
                queued.args.context().tenant().cloned(),
                queued.args.thread_id().cloned(),
                queued.args.message_id().cloned(),
            );
            if messages.insert(key) {
                grouped.push(pending.len());
            }
            pending.push(Some(queued));
        }
        if grouped.len() > 1 {
            let rows: Vec<&PersistArgs> = grouped.iter().filter_map(|&at| Some(&pending[at].as_ref()?.args)).collect();
            match self.with(async |conn| write::update_group(conn, &rows).await).await {
                Ok(Ok(written)) => {
                    let mut written: HashMap<_, Message> = written
                        .into_iter()
                        .map(|(tenant, message)| ((tenant, message.thread_id.clone(), message.id.clone()), message))
                        .collect();
                    for &at in &grouped {
                        let Some(message) = pending[at].as_ref().and_then(|queued| {
                            let key = (
                                queued.args.context().tenant().cloned(),
                                queued.args.thread_id()?.clone(),
                                queued.args.message_id()?.clone(),
                            );
                            written.remove(&key)
                        }) else {
                            continue;
                        };
                        let Some(queued) = pending[at].take() else { continue };
                        let answer = match queued.args {
                            PersistArgs::UpdateContent(_) => persist_core::ContentUpdated::new(message).into(),
                            _ => persist_core::Updated::Message(message).into(),
                        };
                        let _ = queued.reply.send(Ok(answer));
                    }
                }
                Ok(Err(_)) => {}
                Err(failed) => {
                    for queued in pending.iter_mut().filter_map(Option::take) {
                        let _ = queued.reply.send(Err(failed.replicate()));
                    }
                }
            }
        }
        for queued in pending.into_iter().flatten() {
            if queued.reply.is_closed() {
                continue;
            }
            let args = queued.args;
            let answer = self.with(async |conn| write::apply(conn, args).await).await;
            let _ = queued.reply.send(answer);
        }
    }
}
