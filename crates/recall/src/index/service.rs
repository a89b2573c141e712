//! [`VectorIndexLayer`] and its service: `nearest` answered from the index (caught up, built or
//! restored first), every other request passed through.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context as TaskContext, Poll};

use persist_core::raw::{BoxFuture, take_ready};
use persist_core::read::GetMessage;
use persist_core::vector::{Nearest, Neighbour};
use persist_core::{Context, MessageId, PersistArgs, PersistError, PersistResult, TenantId, ThreadId};
use tokio::sync::OwnedRwLockWriteGuard;
use tower::{Layer, Service};

use super::arena::{self, TenantIndex};
use super::snapshot;
use super::sync::{self, ask};
use super::{Entry, INLINE_SCAN, Shared};

/// Puts a [`VectorIndex`](super::VectorIndex) in a pipeline: it answers `nearest` from the index and passes every
/// other request through. Made by [`VectorIndex::layer`](super::VectorIndex::layer).
///
/// Place it just above the store, **below** (inside) an encryption layer: it then holds what the
/// store holds (sealed metadata values as sealed, so a filter compares what the store's scan
/// compares), the layer above refuses what it refuses (a filter on a sealed key), and the hits'
/// messages are opened on their way up through it. The layer must allow clear vectors, as for
/// the store's own scan. Above a layer that keeps vectors out, the index cannot read them and the
/// caller gets that layer's refusal. What the index reads to build and follow itself (the feed,
/// threads, vectors, the hits' messages) goes through the layers below it.
#[derive(Clone)]
pub struct VectorIndexLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for VectorIndexLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VectorIndexLayer").finish_non_exhaustive()
    }
}

impl VectorIndexLayer {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl<S> Layer<S> for VectorIndexLayer {
    type Service = VectorIndexService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        VectorIndexService { inner, shared: Arc::clone(&self.shared) }
    }
}

/// The service of [`VectorIndexLayer`].
#[derive(Clone)]
pub struct VectorIndexService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> fmt::Debug for VectorIndexService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VectorIndexService").finish_non_exhaustive()
    }
}

impl<S> Service<PersistArgs> for VectorIndexService<S>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = PersistResult;
    type Error = PersistError;
    type Future = BoxFuture<'static, Result<PersistResult, PersistError>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, args: PersistArgs) -> Self::Future {
        let mut inner = take_ready(&mut self.inner);
        match args {
            PersistArgs::Nearest(query) => Box::pin(nearest(Arc::clone(&self.shared), inner, query)),
            other => Box::pin(inner.call(other)),
        }
    }
}

/// After how many events read since a tenant's file was written it is written again: a tenth
/// of its vectors, and at least 1,000 (what a restart then catches up from the feed).
fn save_after(vectors: usize) -> u64 {
    (vectors as u64 / 10).max(1000)
}

/// Runs `work` on tokio's blocking threads (inline outside a runtime).
async fn off_runtime<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, PersistError> {
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::task::spawn_blocking(work).await.map_err(|e| PersistError::backend(what, e.to_string()))
    } else {
        Ok(work())
    }
}

/// The index of `tenant` read back from its file in `dir` and caught up from the feed; `None`
/// (logged) when there is no file, it is not whole, exceeds `budget`, is not of this store as it
/// is now, or the feed could not be read.
async fn restore<S>(
    dir: &Path,
    inner: &mut S,
    context: &Context,
    tenant: Option<&TenantId>,
    budget: usize,
) -> Option<TenantIndex>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError> + Clone + Send,
    S::Future: Send,
{
    let (path, owned, started) = (snapshot::path(dir, tenant), tenant.cloned(), std::time::Instant::now());
    let read = off_runtime("reading the vector index's file", move || {
        match std::fs::metadata(&path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Ok(found) if found.len() > budget as u64 => {
                return Err(snapshot::Unreadable("larger than the index's budget".to_owned()));
            }
            _ => {}
        }
        snapshot::read(&path, owned.as_ref()).map(Some)
    })
    .await;
    let mut index = match read {
        Ok(Ok(Some(index))) => index,
        Ok(Ok(None)) => return None,
        Ok(Err(unreadable)) => {
            tracing::info!(target: "persist::recall", tenant = ?tenant, %unreadable, "the vector index's file is not used; built from the rows");
            return None;
        }
        Err(error) => {
            tracing::info!(target: "persist::recall", tenant = ?tenant, %error, "the vector index's file is not used; built from the rows");
            return None;
        }
    };
    match sync::restore(inner, context, &mut index).await {
        Ok(true) => {
            let (vectors, took) = (index.vectors(), started.elapsed());
            tracing::debug!(target: "persist::recall", tenant = ?tenant, vectors, ?took, "the vector index read back from its file and the feed");
            Some(index)
        }
        Ok(false) => {
            tracing::info!(target: "persist::recall", tenant = ?tenant, "the vector index's file is not of the store as it is now; built from the rows");
            None
        }
        Err(error) => {
            tracing::info!(target: "persist::recall", tenant = ?tenant, %error, "the vector index's file could not be caught up; built from the rows");
            None
        }
    }
}

/// Writes `state` to its tenant's file in `dir`: its bytes made off the runtime's threads (the
/// lock held: they are the index as of now), written and renamed in the background. One write of
/// a tenant at a time; a file written after the tenant was [forgotten](super::VectorIndex::forget) is
/// removed. The first write of the process into `dir` (`shared.swept` not yet set) removes the
/// partial files of writers that died from it too.
async fn write_file(
    dir: Arc<Path>,
    entry: &Arc<Entry>,
    tenant: Option<&TenantId>,
    state: OwnedRwLockWriteGuard<Option<TenantIndex>>,
    shared: &Shared,
) -> Result<OwnedRwLockWriteGuard<Option<TenantIndex>>, PersistError> {
    if entry.saving.swap(true, Ordering::SeqCst) {
        return Ok(state);
    }
    shared.saves.fetch_add(1, Ordering::Relaxed);
    // The folder's first write of the process removes what dead writers left (once it writes).
    let sweep = !shared.swept.swap(true, Ordering::Relaxed);
    let owned = tenant.cloned();
    let (state, bytes) = off_runtime("writing the vector index's file", move || {
        let mut state = state;
        let bytes = state.as_mut().map(|index| {
            index.unsaved = 0;
            snapshot::encode(index, owned.as_ref())
        });
        (state, bytes)
    })
    .await?;
    let path = snapshot::path(&dir, tenant);
    let entry = Arc::clone(entry);
    let write = move || {
        if sweep {
            snapshot::sweep(&dir);
        }
        if let Some(bytes) = bytes {
            if let Err(error) = snapshot::write(&path, &bytes) {
                tracing::warn!(target: "persist::recall", path = %path.display(), %error, "the vector index's file was not written");
            } else if entry.forgotten.load(Ordering::SeqCst) {
                let _ = std::fs::remove_file(&path);
            }
        }
        entry.saving.store(false, Ordering::SeqCst);
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(write)),
        Err(_) => write(),
    }
    Ok(state)
}

/// A hit, owned (out of the scan's borrow of the index).
struct Found {
    score: f32,
    thread_id: ThreadId,
    message_id: MessageId,
}

/// Answers `query` from the index, or by the store when the index cannot (see
/// [`VectorIndex`](super::VectorIndex)'s docs).
async fn nearest<S>(shared: Arc<Shared>, mut inner: S, query: Nearest) -> Result<PersistResult, PersistError>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let unit = match query.validate().and_then(|()| query.query.unit()) {
        Ok(unit) => unit,
        // The store's own refusal, word for word.
        Err(_) => return ask(&mut inner, query).await,
    };
    let entry = shared.entry(query.tenant());
    if !entry.usable() {
        shared.fallbacks.fetch_add(1, Ordering::Relaxed);
        return ask(&mut inner, query).await;
    }
    match from_index(&shared, &entry, &mut inner, &query, unit).await {
        Ok(Some(found)) => {
            shared.answered.fetch_add(1, Ordering::Relaxed);
            Ok(PersistResult::Nearest(found))
        }
        Ok(None) => {
            shared.fallbacks.fetch_add(1, Ordering::Relaxed);
            ask(&mut inner, query).await
        }
        Err(error) => {
            tracing::debug!(target: "persist::recall", %error, "the vector index could not answer; the store does");
            if matches!(error, PersistError::Unsupported { .. }) {
                entry.hold_off();
            }
            shared.fallbacks.fetch_add(1, Ordering::Relaxed);
            ask(&mut inner, query).await
        }
    }
}

/// The answer from the index, `None` when the store must answer.
async fn from_index<S>(
    shared: &Shared,
    entry: &Arc<Entry>,
    inner: &mut S,
    query: &Nearest,
    unit: Vec<f32>,
) -> Result<Option<Vec<Neighbour>>, PersistError>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError> + Clone + Send,
    S::Future: Send,
{
    let budget = shared.budget.load(Ordering::Relaxed);
    if budget == 0 {
        return Ok(None);
    }
    let context = query.context.renewed();
    let tenant = query.tenant();
    let mut state = Arc::clone(&entry.state).write_owned().await;
    let (current, behind) = match state.as_mut() {
        Some(index) => match sync::catch_up(inner, &context, index).await {
            Ok(()) => (true, false),
            Err(PersistError::FeedGap { .. }) => (false, true),
            Err(error) => return Err(error),
        },
        None => (false, false),
    };
    let mut save = false;
    if !current {
        *state = None;
        entry.record(None);
        // A file is no newer than what was held: behind the feed too after a gap.
        let restored = match shared.snapshots() {
            Some(dir) if !behind => restore(&dir, inner, &context, tenant, budget).await,
            _ => None,
        };
        if restored.is_some() {
            *state = restored;
            shared.restored.fetch_add(1, Ordering::Relaxed);
        } else {
            *state = sync::build(inner, &context, budget).await?;
            shared.builds.fetch_add(1, Ordering::Relaxed);
            save = true;
        }
    }
    entry.record(state.as_ref());
    entry.last_used.store(shared.clock.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
    if state.is_none() || entry.bytes.load(Ordering::Relaxed) > budget {
        *state = None;
        entry.record(None);
        entry.hold_off();
        return Ok(None);
    }
    if let Some(dir) = shared.snapshots() {
        save |= state.as_ref().is_some_and(|index| index.unsaved >= save_after(index.vectors()));
        if save {
            state = write_file(dir, entry, tenant, state, shared).await?;
        }
    }
    let model = query.query.model();
    let from = shared.clusters_from.load(Ordering::Relaxed);
    if let Some(arena) = state.as_mut().and_then(|index| index.arenas.get_mut(model)) {
        // Lists learnt since the last query are put in place (by any query: the changes noted
        // meanwhile are not kept longer than they must be).
        arena.finish_learning();
        if query.approximate && arena.wants_clusters(from) {
            // Learnt on a thread of its own (seconds per million vectors): queries go on meanwhile,
            // over the lists there were or the int8 copies of every vector.
            let learn = arena.begin_learning();
            let spawned = std::thread::Builder::new().name("persist-vector-lists".to_owned()).spawn(learn);
            if let Err(error) = spawned {
                tracing::warn!(target: "persist::recall", %error, "the vector index's lists could not be learnt");
                arena.finish_learning();
            }
        }
    }
    entry.record(state.as_ref());
    shared.make_room(entry);
    let state = state.downgrade();
    let size = match state.as_ref().and_then(|index| index.arenas.get(query.query.model())) {
        Some(arena) if arena.dims == unit.len() => arena.len() * arena.dims,
        // A model the tenant holds no vector of: the store knows its dimensions, or that it
        // has none.
        _ => return Ok(None),
    };
    let one_in = shared.probes_one_in.load(Ordering::Relaxed);
    let found = if size <= INLINE_SCAN {
        state.as_ref().map(|index| scan(index, query, &unit, one_in)).unwrap_or_default()
    } else {
        let query = query.clone();
        off_runtime("scanning the vector index", move || {
            state.as_ref().map(|index| scan(index, &query, &unit, one_in)).unwrap_or_default()
        })
        .await?
    };
    let tenant = query.tenant().cloned();
    // The hits' messages, read at once (over a pool, one round trip's time for all).
    let reads = found.iter().map(|hit| {
        let mut inner = inner.clone();
        let get = GetMessage::new(hit.thread_id.clone(), hit.message_id.clone()).with_context(context.renewed());
        Box::pin(async move { ask(&mut inner, get).await }) as BoxFuture<'_, _>
    });
    let read = join_all(reads.collect()).await;
    let mut neighbours = Vec::with_capacity(found.len());
    for (Found { score, .. }, message) in found.into_iter().zip(read) {
        match message {
            Ok(PersistResult::Message(Some(message))) => {
                neighbours.push(Neighbour::new(tenant.clone(), message, score));
            }
            // Gone since the index caught up: the store's answer is the exact one.
            Ok(PersistResult::Message(None))
            | Err(PersistError::NotFound { .. } | PersistError::ThreadDeleted { .. }) => {
                return Ok(None);
            }
            Ok(other) => {
                return Err(PersistError::MismatchedResult { op: persist_core::PersistOp::Get, got: other.op() });
            }
            Err(error) => return Err(error),
        }
    }
    Ok(Some(neighbours))
}

fn scan(index: &TenantIndex, query: &Nearest, unit: &[f32], one_in: usize) -> Vec<Found> {
    let Some(arena) = index.arenas.get(query.query.model()) else { return Vec::new() };
    arena::scan(index, arena, query, unit, one_in)
        .into_iter()
        .map(|hit| Found {
            score: hit.score,
            thread_id: index.threads[arena.slots[hit.slot as usize].thread as usize].id.clone(),
            message_id: arena.slots[hit.slot as usize].message_id.clone(),
        })
        .collect()
}

/// Every one of `futures`, polled together, their outputs in their order.
async fn join_all<T>(mut futures: Vec<BoxFuture<'_, T>>) -> Vec<T> {
    let mut outputs: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
