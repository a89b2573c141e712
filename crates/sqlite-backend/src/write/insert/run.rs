//! A run of writes applied in one inbox round trip: adds, reserves and whole turns, each
//! answering its slot of the group's answers.

use persist_core::{PersistError, ThreadId, TurnAppended};
use sqlx::SqliteConnection;

use super::{Insert, insert_many};
use crate::write::{Answer, Failure, OpResult, aborted};

/// The slot of an insert whose answer is filled in once its run is written.
pub(in crate::write) fn pending() -> Result<Answer, PersistError> {
    Err(PersistError::Backend { message: "the writer did not answer this write".into(), source: None })
}

/// Writes the group applies in one inbox round trip ([`insert_many`]), in queue order: adds and
/// reserves (one row each) and turns (their rows together, consecutive in the thread).
#[derive(Default)]
pub(in crate::write) struct Run<'a> {
    inserts: Vec<Insert<'a>>,
    members: Vec<Member<'a>>,
}

/// A write of a [`Run`]: its slot in the group's answers and which rows are its own.
enum Member<'a> {
    /// An `add` or `reserve`: the next row.
    Insert { slot: usize },
    /// A turn decided to be written whole: the next `rows` rows.
    Turn { slot: usize, thread_id: &'a ThreadId, rows: usize },
}

impl<'a> Run<'a> {
    /// Adds an `add` or `reserve`, answering slot `slot`.
    pub(in crate::write) fn push(&mut self, slot: usize, insert: Insert<'a>) {
        self.inserts.push(insert);
        self.members.push(Member::Insert { slot });
    }

    /// Adds a turn's rows, answering slot `slot` once every one is written.
    pub(in crate::write) fn push_turn(&mut self, slot: usize, thread_id: &'a ThreadId, inserts: Vec<Insert<'a>>) {
        self.members.push(Member::Turn { slot, thread_id, rows: inserts.len() });
        self.inserts.extend(inserts);
    }

    /// Writes the run, fills its writes' slots of `out` and empties it. A turn's row not
    /// written aborts the transaction: the turn was decided on a state that did not hold (the
    /// writer then runs each write of the group alone).
    pub(in crate::write) async fn flush(
        &mut self,
        conn: &mut SqliteConnection,
        out: &mut [Result<Answer, PersistError>],
    ) -> OpResult<()> {
        if self.inserts.is_empty() {
            return Ok(());
        }
        let mut rows = insert_many(conn, &self.inserts).await?.into_iter();
        let mut plans = self.inserts.iter();
        for member in self.members.drain(..) {
            match member {
                Member::Insert { slot } => {
                    let (Some(plan), Some(row)) = (plans.next(), rows.next()) else { return Err(lost_row()) };
                    out[slot] = match plan.answer(conn, row).await {
                        Ok(result) => Ok(Answer::Persist(result)),
                        Err(Failure::Refused(error)) => Err(error),
                        Err(aborted) => return Err(aborted),
                    };
                }
                Member::Turn { slot, thread_id, rows: count } => {
                    let mut written = Vec::with_capacity(count);
                    for _ in 0..count {
                        plans.next();
                        // Decided in this transaction: a row not written means the rules moved
                        // under it.
                        written.push(rows.next().flatten().ok_or_else(|| {
                            aborted(PersistError::Backend {
                                message: "a message of the turn was not written".into(),
                                source: None,
                            })
                        })?);
                    }
                    out[slot] = Ok(Answer::Persist(TurnAppended::new(thread_id.clone(), written, false).into()));
                }
            }
        }
        self.inserts.clear();
        Ok(())
    }
}

fn lost_row() -> Failure {
    aborted(PersistError::Backend { message: "the insert report lost a row".into(), source: None })
}
