//! Branches: a thread is a tree of messages, and one path through it is active.
//!
//! Each message may name its parent, the message it answers or follows
//! ([`Message::parent_seq`]). A write that names none follows the active branch's last message
//! ([`Thread::active_leaf`]) and becomes it, so an app that never thinks about branches writes
//! a plain line of messages. A write whose parent is an earlier message ([`Parent::Message`])
//! starts a new branch there and makes it active: that is how an edited message or a
//! regenerated reply is written, and the branch it replaces stays, readable and able to be made
//! active again ([`Switch`]). `seq` stays the thread's arrival order.
//!
//! The reads: a branch's path from its root to its last message, paged like any listing
//! ([`ListMessages::on_branch`](crate::read::ListMessages::on_branch)); and
//! [`ListBranches`], the alternatives at one point of the tree (a message's siblings) or the
//! ends of every branch (the leaves), each answer saying which one is on the active branch.
//!
//! Deleting a message takes it out of its branch: its children follow its parent, and an
//! active branch that ended at it ends at its parent (at the thread's last message when that
//! parent is not a message of the thread). Deleting the thread's **oldest** message
//! (and so retention of the oldest messages) leaves its children following it: a parent before
//! the thread's oldest message is history, which a branch passes through (see
//! [`summary`](crate::summary): a summary of it is still read). `Delete::after` (truncate)
//! stays the destructive choice: it removes every message after a `seq`, on every branch.
//!
//! [`Message::parent_seq`]: crate::Message::parent_seq
//! [`Thread::active_leaf`]: crate::Thread::active_leaf

pub use crate::model::message::{parent_from_stored, stored_parent};
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::context::{Context, context_setter};
use crate::model::Message;
use crate::model::error::{PersistError, Result};
use crate::model::id::{MessageId, ThreadId};

/// Where a new message goes in its thread's tree.
///
/// # Example
///
/// ```
/// use persist::{args::Add, branch::Parent, Content, MessageId, Role, ThreadId};
///
/// let question = MessageId::new("q1")?;
/// // Regenerate the answer to `q1`: a sibling of the answer written before.
/// let again = Add::new(ThreadId::new("t1")?, Role::Assistant, Content::text("Another answer"))
///     .with_parent(question.clone());
/// assert_eq!(again.parent, Parent::Message(question));
/// # Ok::<_, persist::PersistError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Parent {
    /// After the active branch's last message (the default): the thread grows as a line.
    #[default]
    Active,
    /// After this message of the thread: when it already has a child, a new branch starts
    /// there. Either way the new message ends the active branch.
    Message(MessageId),
    /// A root of its own (an edit of the thread's first message), ending the active branch.
    Root,
}

impl Parent {
    /// Whether this is [`Parent::Active`], the default.
    pub fn is_active(&self) -> bool {
        matches!(self, Self::Active)
    }
}

impl From<MessageId> for Parent {
    fn from(id: MessageId) -> Self {
        Self::Message(id)
    }
}

/// Which branch a thread update makes active
/// ([`Update::with_switch`](crate::args::Update::with_switch)).
///
/// # Example
///
/// ```
/// use persist::{args::Update, branch::Switch, MessageId, ThreadId};
///
/// // Back to the first answer, and to whatever was written after it.
/// let back = Update::thread(ThreadId::new("t1")?)
///     .with_switch(Switch::Through(MessageId::new("answer-1")?))
///     .with_expected_version(3);
/// assert!(back.switch.is_some());
/// # Ok::<_, persist::PersistError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Switch {
    /// The active branch passes through this message and ends at the most recent message
    /// under it (the highest `seq` among it and its descendants, which is always a leaf):
    /// what a "< 2/3 >" control does when the user picks an alternative.
    Through(MessageId),
    /// The active branch ends exactly at this message; the next message written without a
    /// parent follows it (starting a new branch when it already has children).
    To(MessageId),
    /// The active branch is empty: a read of it finds no message, and the next message written
    /// without a parent starts a root of its own (a branch before the thread's first message,
    /// as an edit of the first turn makes). The branches left stay, to be switched back to.
    Empty,
}

impl Switch {
    /// The message named; `None` for [`Empty`](Self::Empty).
    pub fn message_id(&self) -> Option<&MessageId> {
        match self {
            Self::Through(id) | Self::To(id) => Some(id),
            Self::Empty => None,
        }
    }
}

/// Which branch a listing follows
/// ([`ListMessages::on_branch`](crate::read::ListMessages::on_branch)).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Branch {
    /// The thread's active branch (empty for a thread without messages).
    Active,
    /// The path from the root to this message.
    EndingAt(MessageId),
}

/// What a [`ListBranches`] lists.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BranchesOf {
    /// The messages that share this message's parent (the alternatives at that point), this
    /// one included: one message when nothing was edited or regenerated there.
    Siblings(MessageId),
    /// The last message of every branch (the messages without children).
    Leaves,
}

/// Lists the alternatives at one point of a thread's tree, or the ends of its branches; see the
/// [module docs](self).
///
/// Reserved placeholders are listed too (a reply being regenerated is an alternative already).
/// A message that is not in the thread is `NotFound`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListBranches {
    /// The thread.
    pub thread_id: ThreadId,
    /// Siblings of a message, or the leaves.
    pub of: BranchesOf,
    /// Who is asking: its tenant names the thread's tenant.
    pub context: Context,
}

impl ListBranches {
    /// The messages sharing `message_id`'s parent, itself included.
    pub fn siblings(thread_id: ThreadId, message_id: MessageId) -> Self {
        Self { thread_id, of: BranchesOf::Siblings(message_id), context: Context::new() }
    }

    /// The last message of every branch of `thread_id`.
    pub fn leaves(thread_id: ThreadId) -> Self {
        Self { thread_id, of: BranchesOf::Leaves, context: Context::new() }
    }

    context_setter!(tenant);

    /// The message named, for siblings.
    pub fn message_id(&self) -> Option<&MessageId> {
        match &self.of {
            BranchesOf::Siblings(id) => Some(id),
            BranchesOf::Leaves => None,
        }
    }
}

/// The answer to a [`ListBranches`]: messages in `seq` order, and which of them is on the
/// active branch.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct Branches {
    /// The siblings or leaves, in `seq` order.
    pub items: Vec<Message>,
    /// The index in `items` of the one on the active branch, if any is.
    pub active: Option<usize>,
}

impl Branches {
    /// An answer of `items` (in `seq` order), the one at `active` on the active branch.
    pub fn new(items: Vec<Message>, active: Option<usize>) -> Self {
        Self { items, active }
    }

    /// The answer of `items` (in `seq` order) given the active branch's seqs, as
    /// [`Tree::path`] or a backend's walk finds them.
    pub fn on_path(items: Vec<Message>, path: &BTreeSet<u64>) -> Self {
        let active = items.iter().position(|m| path.contains(&m.seq));
        Self { items, active }
    }
}

/// A thread's tree by `seq`: each message's parent. What a backend that holds a thread's
/// messages in memory needs to answer branch reads and writes; the SQL backends do the same
/// walks in SQL.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    parents: BTreeMap<u64, Option<u64>>,
}

impl Tree {
    /// The tree of `(seq, parent_seq)` pairs.
    pub fn new(messages: impl IntoIterator<Item = (u64, Option<u64>)>) -> Self {
        Self { parents: messages.into_iter().collect() }
    }

    /// Whether `seq` is a message of the tree.
    pub fn contains(&self, seq: u64) -> bool {
        self.parents.contains_key(&seq)
    }

    /// The seqs from the root to `leaf`, in order (empty when `leaf` is not in the tree).
    pub fn path(&self, leaf: u64) -> Vec<u64> {
        let mut path = Vec::new();
        let mut at = Some(leaf).filter(|seq| self.contains(*seq));
        while let Some(seq) = at {
            path.push(seq);
            // A parent is always earlier: a loop (a corrupt store) ends here.
            at = self.parents.get(&seq).copied().flatten().filter(|parent| *parent < seq);
        }
        path.reverse();
        path
    }

    /// The children of `parent` (`None`: the roots), in `seq` order.
    pub fn children(&self, parent: Option<u64>) -> Vec<u64> {
        self.parents.iter().filter(|(_, p)| **p == parent).map(|(seq, _)| *seq).collect()
    }

    /// The messages without children, in `seq` order.
    pub fn leaves(&self) -> Vec<u64> {
        let parents: BTreeSet<u64> = self.parents.values().flatten().copied().collect();
        self.parents.keys().filter(|seq| !parents.contains(seq)).copied().collect()
    }

    /// The most recent message under `seq` (the highest seq among it and its descendants).
    pub fn latest_under(&self, seq: u64) -> u64 {
        let mut under = BTreeSet::from([seq]);
        let mut latest = seq;
        for (&child, parent) in self.parents.range(seq + 1..) {
            if parent.is_some_and(|parent| under.contains(&parent)) {
                under.insert(child);
                latest = child;
            }
        }
        latest
    }
}

/// A branch walked up from its last message through the messages that start its runs of
/// consecutive seqs (those that store a parent: see [`stored_parent`]), fetched by the backend
/// in chunks, newest first. For SQL backends: one chunk (one statement) walks as far as the
/// chunk's messages reach, so a branch is walked in one or a few statements, whatever its
/// length and however its thread's branches interleave.
///
/// # Example
///
/// ```
/// use persist::branch::RunWalk;
///
/// // Seqs 1..=6, the branch ending at 6 being 1, 2, 5, 6 (5 follows 2: it stores 2).
/// let mut walk = RunWalk::new(6);
/// assert_eq!(walk.wants(), Some(6)); // run starts with seq <= 6, newest first
/// walk.feed(&[(5, Some(2)), (3, Some(0))], true); // 3 is a root; every start was fetched
/// assert_eq!(walk.wants(), None);
/// assert_eq!(walk.runs(), [(1, 2), (5, 6)]);
/// ```
#[derive(Debug, Clone)]
pub struct RunWalk {
    /// Where the walk goes on: the run ending at this seq is not known yet.
    at: Option<u64>,
    /// The runs found, newest first.
    runs: Vec<(u64, u64)>,
}

impl RunWalk {
    /// A walk of the branch ending at `leaf`.
    pub fn new(leaf: u64) -> Self {
        Self { at: Some(leaf), runs: Vec::new() }
    }

    /// The seq the next chunk starts at: the run starts with `seq <= wants()`, newest first.
    /// `None` once the walk reached the root.
    pub fn wants(&self) -> Option<u64> {
        self.at
    }

    /// Takes a chunk of run starts `(seq, stored parent)`, newest first, each at most
    /// [`wants`](Self::wants); `complete` when it holds every run start of the thread down from
    /// there (the backend's limit was not reached).
    pub fn feed(&mut self, chunk: &[(u64, Option<u64>)], complete: bool) {
        let mut starts = chunk.iter().peekable();
        while let Some(at) = self.at {
            while starts.next_if(|(seq, _)| *seq > at).is_some() {}
            match starts.peek() {
                Some(&&(seq, stored)) => {
                    self.runs.push((seq, at));
                    // A parent is always earlier; anything else is a corrupt store: stop.
                    self.at = parent_from_stored(seq, stored).filter(|&parent| parent < seq);
                }
                // No run starts at or below `at` in the thread: the run starts at seq 1.
                None if complete => {
                    self.runs.push((1, at));
                    self.at = None;
                }
                // The chunk ends above `at`: the next one goes on from there.
                None => return,
            }
        }
    }

    /// The runs, `(lo, hi)`, oldest first: every seq from `lo` to `hi` is on the branch.
    pub fn runs(self) -> Vec<(u64, u64)> {
        let mut runs = self.runs;
        runs.reverse();
        runs
    }
}

/// The part of a branch a listing has still to read, as runs of consecutive seqs, taken a page
/// at a time in the listing's order (see [`RunWalk`]). For SQL backends.
#[derive(Debug, Clone)]
pub struct BranchWindow {
    /// The runs left, ascending.
    left: Vec<(u64, u64)>,
    descending: bool,
}

impl BranchWindow {
    /// The runs of `runs` (ascending) within the cursor's window, `after < seq < before`, read
    /// descending or not.
    pub fn new(runs: Vec<(u64, u64)>, after: Option<u64>, before: Option<u64>, descending: bool) -> Self {
        let (after, before) = (after.unwrap_or(0), before.unwrap_or(u64::MAX));
        let left = runs
            .into_iter()
            .filter_map(|(lo, hi)| {
                let (lo, hi) = (lo.max(after.saturating_add(1)), hi.min(before.saturating_sub(1)));
                (lo <= hi).then_some((lo, hi))
            })
            .collect();
        Self { left, descending }
    }

    /// Whether every run was taken.
    pub fn is_empty(&self) -> bool {
        self.left.is_empty()
    }

    /// The runs (clipped) holding the next `wanted` seqs in the listing's order, taken out of
    /// the window: a run taken in part leaves its rest.
    pub fn take(&mut self, wanted: u64) -> Vec<(u64, u64)> {
        let mut picked = Vec::new();
        let mut count = 0;
        while count < wanted {
            let next =
                if self.descending { self.left.pop() } else { (!self.left.is_empty()).then(|| self.left.remove(0)) };
            let Some((lo, hi)) = next else { break };
            let room = wanted - count;
            let (taken, rest) = if hi - lo < room {
                ((lo, hi), None)
            } else if self.descending {
                ((hi + 1 - room, hi), Some((lo, hi - room)).filter(|_| hi - room >= lo))
            } else {
                ((lo, lo + room - 1), Some((lo + room, hi)).filter(|_| lo + room <= hi))
            };
            count += taken.1 - taken.0 + 1;
            picked.push(taken);
            if let Some(rest) = rest {
                if self.descending {
                    self.left.push(rest);
                } else {
                    self.left.insert(0, rest);
                }
            }
        }
        picked
    }
}

/// The refusal of a parent or switch that names a message the thread does not have.
pub fn unknown_message(thread_id: &ThreadId, message_id: &MessageId) -> PersistError {
    PersistError::not_found(thread_id, Some(message_id))
}

/// Checks that `messages` (a restore's or an import's, in `seq` order, with `stored`: the seqs
/// already in the thread) form a tree: each parent an earlier message of the thread, or a seq
/// before every message of it (history [`Delete::covered`](crate::args::Delete::covered)
/// removed, which a branch still passes through).
///
/// # Errors
///
/// [`PersistError::InvalidInput`] naming the first message whose parent is not.
pub fn check_parents(messages: &[Message], stored: &BTreeSet<u64>) -> Result<()> {
    let incoming: BTreeSet<u64> = messages.iter().map(|m| m.seq).collect();
    let oldest = incoming.first().into_iter().chain(stored.first()).min().copied().unwrap_or(u64::MAX);
    for message in messages {
        if let Some(parent) = message.parent_seq
            && (parent >= message.seq || !(parent < oldest || incoming.contains(&parent) || stored.contains(&parent)))
        {
            return Err(PersistError::invalid(
                "parent_seq",
                format!("message {} names parent {parent}, which is not an earlier message of the thread", message.seq),
            ));
        }
    }
    Ok(())
}
