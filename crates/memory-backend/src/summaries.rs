//! Summaries and leases in memory: a thread's summaries by the seq of their last message, the
//! compacted read, retention of what a summary covers, and leases per thread and name.

use std::collections::BTreeSet;

use persist_core::args::Delete;
use persist_core::branch::{Branch, unknown_message};
use persist_core::feed::Change;
use persist_core::lease::{Lease, Leased};
use persist_core::summary::{Compacted, ReadCompacted, Summarize, Summarized, Summary};
use persist_core::{Deleted, MessageId, PersistError, PersistOp, Result, Status, TenantId, Timestamp};

use crate::messages::Record;
use crate::state::{State, ThreadKey, ThreadState, key};

/// The branch ending at a leaf: its seqs, and the seq its oldest message follows when that was
/// removed by `Delete::covered` (every seq up to it is then on the branch, as history).
pub(crate) struct BranchSeqs {
    seqs: BTreeSet<u64>,
    history_through: Option<u64>,
}

impl BranchSeqs {
    fn of(ts: &ThreadState, leaf: Option<u64>) -> Self {
        let Some(leaf) = leaf else { return Self { seqs: BTreeSet::new(), history_through: None } };
        let tree = ts.messages.tree();
        let path = tree.path(leaf);
        // The walk ends at a parent the thread no longer has: the history before its oldest
        // message.
        let history_through = path.first().copied().filter(|&first| !tree.contains(first));
        Self { seqs: path.into_iter().collect(), history_through }
    }

    /// Whether a summary ending at `seq` is read on this branch.
    fn reads(&self, seq: u64) -> bool {
        self.seqs.contains(&seq) || self.history_through.is_some_and(|through| seq <= through)
    }
}

impl ThreadState {
    /// The latest summary of the branch.
    fn latest_summary(&self, branch: &BranchSeqs) -> Option<&Summary> {
        self.summaries.values().rev().find(|summary| branch.reads(summary.through_seq))
    }
}

impl State {
    pub(crate) fn summarize(&mut self, args: &Summarize, now: Timestamp) -> Result<Summarized> {
        let tenant = args.context.tenant();
        let ts = match self.threads.get_mut(&key(tenant, &args.thread_id)) {
            Some(ts) if ts.thread.is_deleted() => {
                return Err(PersistError::ThreadDeleted { thread_id: args.thread_id.clone() });
            }
            Some(ts) => ts,
            None => return Err(args.no_such_message()),
        };
        if let Some(stored) = ts.summaries.get(&args.through_seq) {
            let answer = args.against_stored(stored.clone())?;
            if !answer.deduplicated {
                ts.summaries.insert(args.through_seq, answer.summary.clone());
            }
            return Ok(answer);
        }
        if args.replace {
            return Err(args.no_summary_to_replace());
        }
        // A message of the thread, or history before its oldest (what `Delete::covered` left).
        let oldest = ts.messages.iter().next().map_or(0, |r| r.seq);
        if ts.messages.get(args.through_seq).is_none() && args.through_seq >= oldest {
            return Err(args.no_such_message());
        }
        let tree = ts.messages.tree();
        let reserved = tree
            .path(args.through_seq)
            .into_iter()
            .filter(|&seq| seq >= args.from_seq)
            .filter_map(|seq| ts.messages.get(seq))
            .find(|record| record.status == Status::Reserved);
        if let Some(record) = reserved {
            return Err(args.reserved_in_range(record.seq));
        }
        let summary = args.to_summary(now);
        ts.summaries.insert(args.through_seq, summary.clone());
        self.changed(|| Change::summary(tenant.cloned(), args.thread_id.clone(), args.through_seq));
        Ok(Summarized::new(summary, false))
    }

    /// `Delete::covered` of a live thread: every message up to the latest summary of the active
    /// branch (its active leaf kept), no parent changed, the older summaries gone; the thread's
    /// counts, version and time moved when anything went.
    pub(crate) fn delete_covered(&mut self, args: &Delete, now: Timestamp) -> Result<Deleted> {
        let tenant = args.context.tenant();
        let removed = self.covered_ids(args, tenant, now)?;
        if let Some(ts) = self.threads.get_mut(&key(tenant, &args.thread_id))
            && !removed.is_empty()
        {
            ts.thread.message_count = ts.messages.len() as u64;
            ts.thread.updated_at = now;
        }
        Ok(Deleted::new(args.thread_id.clone(), removed))
    }

    fn covered_ids(&mut self, args: &Delete, tenant: Option<&TenantId>, now: Timestamp) -> Result<Vec<MessageId>> {
        let feeding = self.feed.is_some();
        let retention = self.key_retention();
        let Some(ts) = self.threads.get_mut(&key(tenant, &args.thread_id)) else { return Ok(Vec::new()) };
        crate::state::check_version(args.expected_version, ts.thread.version, &args.thread_id, None)?;
        let active = BranchSeqs::of(ts, ts.thread.active_leaf);
        let Some(through) = ts.latest_summary(&active).map(|s| s.through_seq) else { return Ok(Vec::new()) };
        let leaf = ts.thread.active_leaf;
        let doomed: Vec<&Record> =
            ts.messages.range(0, through.saturating_add(1)).iter().filter(|r| Some(r.seq) != leaf).collect();
        let ids = doomed.iter().map(|r| r.id()).collect::<Result<Vec<_>>>()?;
        if ids.is_empty() {
            return Ok(ids);
        }
        let mut changes = Vec::new();
        if feeding {
            for (record, id) in doomed.iter().zip(&ids) {
                let thread = args.thread_id.clone();
                changes.push(Change::message(
                    tenant.cloned(),
                    thread,
                    PersistOp::Delete,
                    id.clone(),
                    record.seq,
                    record.version,
                ));
            }
        }
        for id in &ids {
            ts.messages.remove_spending(&args.thread_id, id, now, retention)?;
        }
        // The older summaries went with what they covered (another branch's would be read as
        // history by the branches that follow it).
        ts.summaries.retain(|&end, _| end >= through);
        ts.thread.version += 1;
        if feeding {
            let (thread, version) = (args.thread_id.clone(), ts.thread.version);
            changes.push(Change::thread(tenant.cloned(), thread, PersistOp::Update, version));
        }
        self.changes.extend(changes);
        Ok(ids)
    }

    /// Takes, renews or gives up a lease (see [`Lease::decide`]).
    pub(crate) fn lease(&mut self, lease: &Lease, now: Timestamp) -> Option<Leased> {
        let name = (ThreadKey::new(lease.tenant(), &lease.thread_id), lease.name.clone());
        let (answer, write) = lease.decide(self.leases.get(&name).cloned(), now);
        if write {
            match &answer {
                Some(held) => self.leases.insert(name, held.clone()),
                None => self.leases.remove(&name),
            };
        }
        answer
    }

    /// The compacted read of a visible thread (`None`: absent, answering nothing).
    pub(crate) fn compacted(&self, query: &ReadCompacted) -> Result<Compacted> {
        let Some(ts) = self.visible(&query.thread_id, query.tenant()) else {
            return match &query.branch {
                Branch::EndingAt(id) => Err(unknown_message(&query.thread_id, id)),
                _ => Ok(Compacted::default()),
            };
        };
        let leaf = match &query.branch {
            Branch::EndingAt(id) => {
                Some(ts.messages.by_id(id).ok_or_else(|| unknown_message(&query.thread_id, id))?.seq)
            }
            _ => ts.thread.active_leaf,
        };
        let branch = BranchSeqs::of(ts, leaf);
        let summary = ts.latest_summary(&branch).cloned();
        let after = summary.as_ref().map_or(0, |s| s.through_seq);
        let messages = branch
            .seqs
            .range(after.saturating_add(1)..)
            .filter_map(|&seq| ts.messages.get(seq))
            .filter(|r| query.include_reserved || r.status != Status::Reserved)
            .map(|r| r.to_message(&ts.thread.id))
            .collect::<Result<Vec<_>>>()?;
        Ok(Compacted::new(summary, messages))
    }

    /// A thread's summaries ending after `after`, at most `take`, ascending.
    pub(crate) fn summaries(
        &self,
        thread: &persist_core::ThreadId,
        tenant: Option<&TenantId>,
        after: Option<u64>,
        take: usize,
    ) -> Vec<Summary> {
        let Some(ts) = self.visible(thread, tenant) else { return Vec::new() };
        let lower = after.map_or(0, |after| after.saturating_add(1));
        ts.summaries.range(lower..).map(|(_, s)| s.clone()).take(take).collect()
    }
}
