//! Requests across threads (`threads`, `search`, `nearest`, `find_stranded`, `ping`) through a route: every store
//! the route reaches answers, and the answers are merged into one.

use tower::ServiceExt;

use persist_core::BoxPersistService;
use persist_core::raw::merge;
use persist_core::vector::Nearest;
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
    if let PersistArgs::Nearest(query) = &args {
        return nearest(query, inner, targets).await;
    }
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

/// A `nearest` across the stores: a store that holds no vector of the query's model (while it
/// holds others: `InvalidInput` on `model`) has no hits; the read fails on it only when no store
/// holds the model, as one store alone would answer. A store answers nothing both when it holds
/// no vector at all and when its vectors of the model miss the query's filters: with no hit
/// anywhere, an unfiltered query tells the two apart (any vector of the model would be a hit),
/// and a filtered one answers no hits.
async fn nearest<F>(query: &Nearest, inner: F, targets: Vec<BoxPersistService>) -> Result<PersistResult, PersistError>
where
    F: Future<Output = Result<PersistResult, PersistError>>,
{
    let mut answers = Vec::with_capacity(targets.len() + 1);
    answers.push(inner.await);
    for target in targets {
        answers.push(target.oneshot(PersistArgs::Nearest(query.clone())).await);
    }
    let mut found = Vec::new();
    let (mut answered, mut unknown) = (false, None);
    for answer in answers {
        match answer {
            Ok(PersistResult::Nearest(hits)) => {
                answered = true;
                found.extend(hits);
            }
            Ok(other) => return Err(PersistError::MismatchedResult { op: PersistOp::Nearest, got: other.op() }),
            Err(error @ PersistError::InvalidInput { field: "model", .. }) => {
                unknown.get_or_insert(error);
            }
            Err(error) => return Err(error),
        }
    }
    match unknown {
        Some(error) if !answered || (found.is_empty() && !narrowed(query)) => Err(error),
        _ => Ok(PersistResult::Nearest(query.answer(found))),
    }
}

/// Whether `query` leaves out some of its tenant's vectors of its model.
fn narrowed(query: &Nearest) -> bool {
    query.thread_id.is_some() || !query.filter.is_empty() || query.interrupted.is_some()
}
