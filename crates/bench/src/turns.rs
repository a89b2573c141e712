//! A 4-message turn written at once (`AppendTurn`) against the same four messages as single adds:
//! SQLite, 64 callers as tasks, in interleaved rounds on one database.

use std::time::Instant;

use persist::args::{AppendTurn, TurnMessage};
use persist::sqlite::SqliteBackend;
use persist::{Backend, Content, MessageId, Role, ThreadId};

use crate::Options;
use crate::measure::{median, rate};
use crate::report::{Row, Target};
use crate::workload::{TEXT, add};

const CALLERS: usize = 64;
const TURN: usize = 4;

/// The turn a caller writes: user, assistant, tool, assistant, with explicit ids (as the adds).
fn turn(thread: &ThreadId, prefix: &str) -> AppendTurn {
    let roles = [Role::User, Role::Assistant, Role::Tool, Role::Assistant];
    AppendTurn::of(
        thread.clone(),
        roles.into_iter().enumerate().map(|(i, role)| {
            TurnMessage::new(role, Content::text(TEXT)).with_id(MessageId::new(format!("{prefix}-{i}")).unwrap())
        }),
    )
}

/// Messages/s of `CALLERS` tasks each writing `per_caller` turns, as turns or as four adds.
async fn messages_per_sec(backend: &SqliteBackend, as_turns: bool, per_caller: usize, round: usize) -> f64 {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..CALLERS {
        let backend = backend.clone();
        tasks.spawn(async move {
            let kind = if as_turns { "turn" } else { "adds" };
            let thread = ThreadId::new(format!("{kind}-{caller}")).unwrap();
            for i in 0..per_caller {
                let prefix = format!("{round}-{i}");
                if as_turns {
                    backend.apply(turn(&thread, &prefix).into()).await.expect("turn");
                } else {
                    for m in 0..TURN {
                        backend.apply(add(&thread, format!("{prefix}-{m}")).into()).await.expect("add");
                    }
                }
            }
        });
    }
    tasks.join_all().await;
    rate(CALLERS * per_caller * TURN, start.elapsed())
}

pub(crate) fn run(options: &Options) -> Vec<Row> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let backend = rt.block_on(SqliteBackend::open(dir.path().join("turns.db"))).expect("open");
    let per_caller = options.scale(50, 5);
    let (mut turns, mut adds, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..options.scale(5, 2) {
        // The first of each pair alternates, so drift hits both alike.
        let (t, a) = if round % 2 == 0 {
            let t = rt.block_on(messages_per_sec(&backend, true, per_caller, round));
            (t, rt.block_on(messages_per_sec(&backend, false, per_caller, round)))
        } else {
            let a = rt.block_on(messages_per_sec(&backend, false, per_caller, round));
            (rt.block_on(messages_per_sec(&backend, true, per_caller, round)), a)
        };
        turns.push(t);
        adds.push(a);
        ratios.push(t / a);
    }
    let messages = (turns.len() * CALLERS * per_caller * TURN) as u64;
    vec![
        Row::new("sqlite: 64 callers, 4-message turns as one append_turn (messages/s)", messages, median(&mut turns))
            .ratio(median(&mut ratios), "messages/s, turns / the same messages as 4 adds")
            .target(Target::RatioAtLeast(1.0)),
        Row::new("sqlite: 64 callers, the same turns as 4 single adds (messages/s)", messages, median(&mut adds)),
    ]
}
