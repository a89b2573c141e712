//! Compaction in the background, triggered by writes: [`CompactLayer`] notes each thread a
//! committed write added to (an `add`, a turn, the end of a streamed reply), and its
//! [`CompactWorker`] (a task you spawn, holding the pipeline)
//! runs a [`Compaction`] for it, one thread after another, off the writes' path.
//!
//! A write is never slowed or failed by compaction: the layer only hands the thread's name to
//! the worker (a bounded queue; a thread already queued is not queued twice; a full queue drops
//! the note, and the thread's next write notes it again). The worker reads and writes through
//! the whole pipeline it is given, so `EncryptLayer` below opens what the compactor reads and
//! seals the summary it writes, and the summary's own write triggers nothing. Across instances,
//! each run takes the thread's lease (see [`compaction`](super)): one compacts, the others
//! find it busy.
//!
//! Here beside the compaction it runs (`persist::compaction::CompactLayer`), and at
//! `persist::layer::CompactLayer` with the other ready-made layers.
//!
//! # Example
//!
//! ```
//! use persist::compaction::{Budget, Compaction, KeepLastText};
//! use persist::compaction::CompactLayer;
//! use persist::{args::Add, summary::ReadCompacted, Content, Pipeline, Role, ThreadId};
//! use persist::memory::MemoryBackend;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let compaction = Compaction::new(KeepLastText::new(5), Budget::messages(8)).keep_recent(2);
//! let (layer, worker) = CompactLayer::new(compaction);
//! let store = Pipeline::builder().layer(layer).build(MemoryBackend::new());
//! let running = tokio::spawn(worker.run(store.clone()));
//!
//! let thread = ThreadId::new("chat")?;
//! for i in 1..=9 {
//!     store.add(Add::new(thread.clone(), Role::User, Content::text(format!("m{i}")))).await?;
//! }
//! # let mut read = store.compacted(ReadCompacted::new(thread.clone())).await?;
//! # while read.summary.is_none() {
//! #     tokio::task::yield_now().await;
//! #     read = store.compacted(ReadCompacted::new(thread.clone())).await?;
//! # }
//! // Soon after the ninth message: a summary through seq 7, the two most recent kept.
//! let read = store.compacted(ReadCompacted::new(thread)).await?;
//! assert_eq!((read.summary.unwrap().through_seq, read.messages.len()), (7, 2));
//! running.abort(); // at shutdown
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context as TaskContext, Poll};

use pin_project_lite::pin_project;
use tokio::sync::mpsc;
use tower::{Layer, Service};

use super::{Compaction, Compactor, Outcome};
use persist_core::{Context, PersistArgs, PersistError, PersistOp, PersistResult, Pipeline, TenantId, ThreadId};

/// Threads a worker has queued, at most, by default.
pub const DEFAULT_QUEUE: usize = 1024;

type Key = (Option<TenantId>, ThreadId);

/// What the layer and its worker share: the queue and the threads on it.
struct Queue {
    sender: mpsc::Sender<Key>,
    queued: Mutex<HashSet<Key>>,
}

impl Queue {
    /// Queues the thread unless it is already queued (or the queue is full: dropped).
    fn note(&self, key: Key) {
        let mut queued = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
        if queued.contains(&key) {
            return;
        }
        if self.sender.try_send(key.clone()).is_ok() {
            queued.insert(key);
        }
    }

    fn taken(&self, key: &Key) {
        self.queued.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
    }
}

/// Notes the threads committed writes added to, for a [`CompactWorker`]; see the
/// [module docs](self).
#[derive(Clone)]
pub struct CompactLayer {
    queue: Arc<Queue>,
}

impl fmt::Debug for CompactLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompactLayer").finish_non_exhaustive()
    }
}

/// Runs the compactions a [`CompactLayer`] asks for; see the [module docs](self).
pub struct CompactWorker<C> {
    receiver: mpsc::Receiver<Key>,
    queue: Arc<Queue>,
    compaction: Compaction<C>,
}

impl<C> fmt::Debug for CompactWorker<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompactWorker").field("compaction", &self.compaction).finish_non_exhaustive()
    }
}

impl CompactLayer {
    /// The layer and the worker that runs `compaction`, with a queue of [`DEFAULT_QUEUE`].
    pub fn new<C: Compactor>(compaction: Compaction<C>) -> (Self, CompactWorker<C>) {
        Self::with_queue(compaction, DEFAULT_QUEUE)
    }

    /// The layer and its worker, at most `queue` threads waiting (at least 1).
    pub fn with_queue<C: Compactor>(compaction: Compaction<C>, queue: usize) -> (Self, CompactWorker<C>) {
        let (sender, receiver) = mpsc::channel(queue.max(1));
        let queue = Arc::new(Queue { sender, queued: Mutex::new(HashSet::new()) });
        (Self { queue: Arc::clone(&queue) }, CompactWorker { receiver, queue, compaction })
    }
}

impl<C: Compactor> CompactWorker<C> {
    /// Compacts each thread noted, one at a time, through `pipeline` (the stack the layer is
    /// in), for as long as the task runs: spawn it, and abort it (or let the runtime end it) at
    /// shutdown, or see [`run_until`](Self::run_until). A compaction's error is logged
    /// (`tracing`, warn) and the worker goes on; the thread's next write tries again. A run
    /// stopped midway leaves at most the thread's lease, which expires.
    pub async fn run(self, pipeline: Pipeline) {
        self.run_until(pipeline, std::future::pending()).await;
    }

    /// [`run`](Self::run), until `shutdown` resolves (a compaction under way is finished
    /// first).
    pub async fn run_until(mut self, pipeline: Pipeline, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let next = std::future::poll_fn(|cx| match shutdown.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(None),
                Poll::Pending => self.receiver.poll_recv(cx),
            })
            .await;
            let Some(key) = next else { return };
            self.queue.taken(&key);
            let (tenant, thread) = key;
            let context = Context::new().for_tenant(tenant);
            match self.compaction.compact(&pipeline, thread.clone(), context).await {
                Ok(Outcome::Summarized(summary)) => {
                    tracing::debug!(thread = %thread, through = summary.through_seq, "compacted");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(thread = %thread, %error, "compaction failed"),
            }
        }
    }

    /// Compacts the threads queued now, then answers (for tests and for a shutdown that
    /// finishes what was asked).
    pub async fn drain(&mut self, pipeline: &Pipeline) -> Vec<(ThreadId, Result<Outcome, PersistError>)> {
        let mut done = Vec::new();
        while let Ok(key) = self.receiver.try_recv() {
            self.queue.taken(&key);
            let (tenant, thread) = key;
            let outcome = self.compaction.compact(pipeline, thread.clone(), Context::new().for_tenant(tenant)).await;
            done.push((thread, outcome));
        }
        done
    }
}

impl<S> Layer<S> for CompactLayer {
    type Service = Compact<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Compact { inner, queue: Arc::clone(&self.queue) }
    }
}

/// The service of a [`CompactLayer`].
#[derive(Clone)]
pub struct Compact<S> {
    inner: S,
    queue: Arc<Queue>,
}

impl<S: fmt::Debug> fmt::Debug for Compact<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compact").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl<S> Service<PersistArgs> for Compact<S>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
{
    type Response = PersistResult;
    type Error = PersistError;
    type Future = CompactFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, args: PersistArgs) -> Self::Future {
        // What adds to a thread's tail: an insert, a turn, a reply's end (not each streamed
        // token: a reply being written is not folded in anyway). Not a summary's own write,
        // nor reads.
        let grows = match &args {
            PersistArgs::UpdateContent(update) => update.status_after().is_some(),
            other => matches!(other.op(), PersistOp::Add | PersistOp::AppendTurn),
        };
        let key = match (grows, args.thread_id()) {
            (true, Some(thread)) => Some((args.context().tenant().cloned(), thread.clone())),
            _ => None,
        };
        CompactFuture { inner: self.inner.call(args), note: key.map(|key| (key, Arc::clone(&self.queue))) }
    }
}

pin_project! {
    /// The response future of [`Compact`]: notes the thread once the write committed.
    pub struct CompactFuture<F> {
        #[pin]
        inner: F,
        note: Option<(Key, Arc<Queue>)>,
    }
}

impl<F> fmt::Debug for CompactFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompactFuture").finish_non_exhaustive()
    }
}

impl<F> Future for CompactFuture<F>
where
    F: Future<Output = Result<PersistResult, PersistError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let poll = this.inner.poll(cx);
        if let Poll::Ready(Ok(result)) = &poll
            && !result.is_deduplicated()
            && let Some((key, queue)) = this.note.take()
        {
            queue.note(key);
        }
        poll
    }
}
