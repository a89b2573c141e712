//! Group commit for inserts: adds and reserves that arrive while others are being written are
//! written together, in one statement.
//!
//! Each statement costs the server a plan, a commit and a round trip whatever it writes, and
//! with many callers those costs, not the rows, are what the server spends its CPU on (planning
//! alone was 40% of it with 64 callers). So at most [`max_insert_groups`] groups are written at
//! once; a caller that finds them all busy queues its insert, and whichever caller gets the next
//! turn takes every queued insert as one group ([`ops::insert_group`]), on a task of its own so
//! that no caller's cancellation stops the others' writes.
//!
//! A lone caller finds a turn free and nothing queued: its insert runs at once, alone, in the
//! caller's own task, exactly as without grouping. Whatever a group did not write (a thread that refuses
//! the write, an id or key already taken, a thread already in the group, or a group that failed
//! as a whole) runs again alone, which writes it or says why not: a group only ever writes what
//! the insert alone would have written.
//!
//! [`max_insert_groups`]: crate::PostgresBackendBuilder::max_insert_groups

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use persist_core::{Added, MessageId, PersistArgs, PersistError, PersistResult, Reserved, Result};
use tokio::sync::{Semaphore, oneshot};

use crate::{PostgresBackend, ops};

/// Most inserts in one group.
const MAX_GROUP: usize = 256;

/// The insert queue of one backend (shared by its clones).
pub(crate) struct Inserts {
    queue: Mutex<Vec<Queued>>,
    turns: Arc<Semaphore>,
}

/// A queued insert and where its answer goes.
struct Queued {
    args: PersistArgs,
    reply: oneshot::Sender<Result<PersistResult>>,
}

impl Inserts {
    /// At most `groups` groups written at once.
    pub(crate) fn new(groups: usize) -> Self {
        Self { queue: Mutex::new(Vec::new()), turns: Arc::new(Semaphore::new(groups.max(1))) }
    }

    fn queue(&self) -> MutexGuard<'_, Vec<Queued>> {
        // A panic cannot leave the vector half-changed (push, drain): keep using it.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl PostgresBackend {
    /// Writes an add or a reserve, alone when nothing else is being written, grouped otherwise.
    pub(crate) async fn insert(&self, args: PersistArgs) -> Result<PersistResult> {
        let inserts = &self.inserts;
        if let Ok(turn) = inserts.turns.try_acquire()
            && inserts.queue().is_empty()
        {
            let answer = self.with(async |conn| ops::apply(conn, args).await).await;
            drop(turn);
            return answer;
        }
        let (reply, mut answer) = oneshot::channel();
        inserts.queue().push(Queued { args, reply });
        loop {
            tokio::select! {
                biased;
                answer = &mut answer => {
                    return answer.unwrap_or_else(|_| Err(PersistError::Backend {
                        message: "a grouped insert lost its answer".into(),
                        source: None,
                    }));
                }
                turn = inserts.turns.clone().acquire_owned() => {
                    let Ok(turn) = turn else { continue };
                    let group: Vec<Queued> = {
                        let mut queue = inserts.queue();
                        let take = queue.len().min(MAX_GROUP);
                        queue.drain(..take).collect()
                    };
                    // Empty: another caller's turn took this insert; its answer is coming.
                    if !group.is_empty() {
                        let backend = self.clone();
                        tokio::spawn(async move {
                            backend.write_group(group).await;
                            drop(turn);
                        });
                    }
                }
            }
        }
    }

    /// Writes `group` and answers each of its callers.
    async fn write_group(&self, group: Vec<Queued>) {
        let mut grouped: Vec<Queued> = Vec::with_capacity(group.len());
        let mut alone: Vec<Queued> = Vec::new();
        let mut threads = HashSet::with_capacity(group.len());
        for mut queued in group {
            // A caller that stopped waiting before its write started: nothing is written.
            if queued.reply.is_closed() {
                continue;
            }
            if let Err(refused) = ops::check(&queued.args) {
                let _ = queued.reply.send(Err(refused));
                continue;
            }
            // The id is fixed now, so an insert run again alone writes the same message.
            match &mut queued.args {
                PersistArgs::Add(add) => {
                    add.message_id.get_or_insert_with(MessageId::generate);
                }
                PersistArgs::Reserve(reserve) => {
                    reserve.message_id.get_or_insert_with(MessageId::generate);
                }
                _ => {}
            }
            // One insert per thread in a group: a thread's row is updated once per statement.
            if threads.insert(queued.args.thread_id().clone()) {
                grouped.push(queued);
            } else {
                alone.push(queued);
            }
        }
        if grouped.len() > 1 {
            let args: Vec<&PersistArgs> = grouped.iter().map(|queued| &queued.args).collect();
            let written = self.with(async |conn| ops::insert_group(conn, &args).await).await;
            let mut written: HashMap<_, _> = written.map(|rows| rows.into_iter().collect()).unwrap_or_default();
            for queued in grouped {
                match written.remove(queued.args.thread_id()) {
                    Some(message) => {
                        let answer = match queued.args {
                            PersistArgs::Reserve(_) => Reserved::new(message, false).into(),
                            _ => Added::new(message, false).into(),
                        };
                        let _ = queued.reply.send(Ok(answer));
                    }
                    None => alone.push(queued),
                }
            }
        } else {
            alone.extend(grouped);
        }
        for queued in alone {
            let answer = self.with(async |conn| ops::apply(conn, queued.args).await).await;
            let _ = queued.reply.send(answer);
        }
    }
}
