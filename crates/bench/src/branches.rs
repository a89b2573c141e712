//! Reading a branch: the active branch of 1,000 messages out of a thread of 10,000 (ten branches
//! of 1,000), against listing the 1,000 messages of a thread that is one line, through our
//! backends, side by side in interleaved rounds (median per round).
//!
//! Two shapes of tree. **Interleaved**: the ten branches written a message each in turn, so
//! every message follows one ten seqs back and starts a run of its own (the worst case of the
//! run-based walk: a step per message). **One after another**: each branch written whole (an
//! edit of the first message starting each), one run per branch (the common case: writes follow
//! the active branch).

use std::time::Instant;

use persist::args::Restore;
use persist::branch::Branch;
use persist::read::ListMessages;
use persist::{Backend, Content, Message, MessageId, Role, Thread, ThreadId, Timestamp};

use crate::Options;
use crate::measure::median;
use crate::report::{Row, Target};

const BRANCHES: u64 = 10;
const DEPTH: u64 = 1000;

/// How the tree's branches were written.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// A message of each branch in turn.
    Interleaved,
    /// Each branch whole, one after another.
    OneAfterAnother,
    /// One branch: the linear thread.
    Line,
}

impl Shape {
    /// The parent of the message at `seq` (1-based).
    fn parent(self, seq: u64) -> Option<u64> {
        match self {
            Self::Interleaved => seq.checked_sub(BRANCHES).filter(|&parent| parent > 0),
            Self::OneAfterAnother => Some(seq - 1).filter(|_| !(seq - 1).is_multiple_of(DEPTH)),
            Self::Line => seq.checked_sub(1).filter(|&parent| parent > 0),
        }
    }

    fn count(self) -> u64 {
        match self {
            Self::Line => DEPTH,
            _ => BRANCHES * DEPTH,
        }
    }
}

/// Writes thread `id` of `shape` (300-byte texts) through restores of 1,000 messages, its
/// active leaf its last message.
async fn load(backend: &impl Backend, id: &ThreadId, shape: Shape) {
    restore_thread(backend, id, shape.count(), |seq| shape.parent(seq)).await;
}

/// Writes thread `id` of `count` messages of 300-byte texts, each following `parent(seq)`,
/// through restores of 1,000 messages; its active leaf is its last message.
pub(crate) async fn restore_thread(
    backend: &impl Backend,
    id: &ThreadId,
    count: u64,
    parent: impl Fn(u64) -> Option<u64>,
) {
    let at = Timestamp::now();
    let thread = Thread::stored(id.clone(), count, at);
    let text = "x".repeat(300);
    for first in (1..=count).step_by(1000) {
        let messages = (first..(first + 1000).min(count + 1))
            .map(|seq| {
                let role = if seq % 2 == 0 { Role::Assistant } else { Role::User };
                let message_id = MessageId::new(format!("m{seq}")).unwrap();
                let content = Content::text(text.clone());
                Message { parent_seq: parent(seq), ..Message::stored(id.clone(), message_id, seq, role, content, at) }
            })
            .collect();
        backend.apply(Restore::new(thread.clone(), messages).into()).await.expect("restore");
    }
}

/// One timed pass of `reads` reads of `query`, answering reads/s; each read must answer 1,000.
async fn pass(backend: &impl Backend, query: &ListMessages, reads: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..reads {
        let page = backend.list(query.clone()).await.expect("list");
        assert_eq!(page.items.len() as u64, DEPTH, "a page of the whole branch");
    }
    reads as f64 / start.elapsed().as_secs_f64()
}

/// The rows of one backend: each tree's active branch against the line, interleaved rounds.
async fn measure(backend: &impl Backend, store: &str, rounds: usize, reads: usize) -> Vec<Row> {
    let shapes = [(Shape::Interleaved, "interleaved"), (Shape::OneAfterAnother, "one after another")];
    let line = ThreadId::new("line").unwrap();
    load(backend, &line, Shape::Line).await;
    for (shape, name) in shapes {
        load(backend, &ThreadId::new(name.replace(' ', "-")).unwrap(), shape).await;
    }
    let linear = ListMessages::new(line).with_limit(DEPTH as u32);
    let mut rows = Vec::new();
    for (_, name) in shapes {
        let tree = ListMessages::new(ThreadId::new(name.replace(' ', "-")).unwrap())
            .on_branch(Branch::Active)
            .with_limit(DEPTH as u32);
        // Warm both, then alternate which goes first.
        pass(backend, &tree, 2).await;
        pass(backend, &linear, 2).await;
        let (mut on_branch, mut on_line, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let (branch_rate, line_rate) = if round % 2 == 0 {
                let b = pass(backend, &tree, reads).await;
                (b, pass(backend, &linear, reads).await)
            } else {
                let l = pass(backend, &linear, reads).await;
                (pass(backend, &tree, reads).await, l)
            };
            ratios.push(line_rate / branch_rate);
            on_branch.push(branch_rate);
            on_line.push(line_rate);
        }
        let (branch_rate, line_rate, ratio) = (median(&mut on_branch), median(&mut on_line), median(&mut ratios));
        rows.push(
            Row::new(
                format!("branches: read the active branch, 1,000 of 10,000 ({store}, {name})"),
                (rounds * reads) as u64,
                branch_rate,
            )
            .ratio(ratio, "the time of a branch read per the time of listing 1,000 of a linear thread")
            .target(Target::RatioAtMost(1.5))
            .note(format!("list 1,000 of a linear thread: {line_rate:.0} reads/s")),
        );
    }
    rows
}

pub(crate) fn run(options: &Options) -> Vec<Row> {
    let (rounds, reads) = (options.scale(7, 3), options.scale(40, 10));
    crate::postgres::on_sqlite_and_postgres!("branches", |backend, store| measure(backend, store, rounds, reads))
}
