//! Requests across threads (`threads`, `search`, `nearest`, `find_stranded`, `ping`) through a route: every store
//! the route reaches answers, and the answers are merged into one.

use tower::ServiceExt;

use persist_core::BoxPersistService;
use persist_core::raw::merge;
use persist_core::{PersistArgs, PersistError, PersistOp, PersistResult};

/// Whether a request of `op` that names no thread goes to every store and the answers are
/// merged: not a change-feed read, whose positions are each store's own.
pub(super) fn merges(op: PersistOp) -> bool {
    matches!(
        op,
        PersistOp::Threads | PersistOp::Search | PersistOp::Nearest | PersistOp::FindStranded | PersistOp::Ping
    )
}

/// Sends `args` to every store (the inner stack's answer first, then each target's, in route
/// order) and merges the answers.
pub(super) async fn fan_out<F>(
    args: PersistArgs,
    inner: F,
    targets: Vec<BoxPersistService>,
) -> Result<PersistResult, PersistError>
where
    F: Future<Output = Result<PersistResult, PersistError>>,
{
    let mut answers = Vec::with_capacity(targets.len() + 1);
    answers.push(inner.await?);
    for target in targets {
        answers.push(target.oneshot(args.clone()).await?);
    }
    let mismatched = |op, got: &PersistResult| PersistError::MismatchedResult { op, got: got.op() };
    match args {
        PersistArgs::Threads(query) => {
            let pages = answers.into_iter().map(|answer| match answer {
                PersistResult::Threads(page) => Ok(page),
                other => Err(mismatched(PersistOp::Threads, &other)),
            });
            Ok(PersistResult::Threads(merge::threads(&query, pages.collect::<Result<_, _>>()?, None)))
        }
        PersistArgs::Search(query) => {
            let pages = answers.into_iter().map(|answer| match answer {
                PersistResult::Search(page) => Ok(page),
                other => Err(mismatched(PersistOp::Search, &other)),
            });
            Ok(PersistResult::Search(merge::search(&query, pages.collect::<Result<_, _>>()?, None)))
        }
        PersistArgs::Nearest(query) => {
            let mut found = Vec::new();
            for answer in answers {
                match answer {
                    PersistResult::Nearest(hits) => found.extend(hits),
                    other => return Err(mismatched(PersistOp::Nearest, &other)),
                }
            }
            Ok(PersistResult::Nearest(query.answer(found)))
        }
        PersistArgs::FindStranded(query) => {
            let lists = answers.into_iter().map(|answer| match answer {
                PersistResult::Stranded(found) => Ok(found),
                other => Err(mismatched(PersistOp::FindStranded, &other)),
            });
            Ok(PersistResult::Stranded(merge::stranded(&query, lists.collect::<Result<_, _>>()?, None)))
        }
        // A ping: every store answered.
        PersistArgs::Ping(_) => Ok(PersistResult::Pong),
        other => Err(PersistError::Unsupported { what: format!("merging `{}` across stores", other.op()).into() }),
    }
}
