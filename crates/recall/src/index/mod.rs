//! [`VectorIndex`]: the vectors of a tenant held in memory, derived from the rows, so that a
//! [`Nearest`](persist_core::vector::Nearest) scans one contiguous buffer instead of reading and decoding rows.

mod arena;
mod clusters;
mod quant;
mod service;
mod snapshot;
mod sync;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use persist_core::TenantId;
use tokio::sync::RwLock;
// Tokio's clock (the system's outside a runtime), so a test can pass the hold-off's minute.
use tokio::time::Instant;

use self::arena::TenantIndex;
pub use self::service::{VectorIndexLayer, VectorIndexService};

/// The memory a [`VectorIndex`] holds at most unless told otherwise: 1 GiB (about 520,000
/// vectors of 384 dimensions, or 140,000 of 1,536).
pub const DEFAULT_INDEX_BUDGET: usize = 1 << 30;

/// The share of the lists an approximate query reads at least, unless told otherwise: one in
/// four (recall@10 0.94 at a million vectors in 10,000 small clusters, in 0.08 of the exact
/// scan's time; one in sixteen: 0.80 in 0.04).
pub const DEFAULT_PROBES_ONE_IN: usize = 4;

/// How long a tenant the index could not hold (over the budget alone, or a stack that refuses
/// what the index reads) is answered by the store before the index tries again.
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// Below this many numbers a scan runs where it is asked; above, on tokio's blocking threads.
const INLINE_SCAN: usize = 1 << 20;

/// An index of the stored vectors, derived from the rows, that answers [`Nearest`](persist_core::vector::Nearest) exactly as
/// the store's scan does (the same hits, scores and order) from memory; see the
/// [`VectorIndexLayer`] that puts it in a pipeline.
///
/// # What it holds
///
/// Per tenant, once a `nearest` of that tenant asks: the tenant's live threads (id, metadata)
/// and, per model, every vector in one contiguous buffer beside the fields the filters read
/// (thread, seq, role, status, time), built from the rows through the stack below the layer
/// (`ListThreads`, `ListEmbeddings`): the rows stay the truth, the index is derived.
///
/// # How it stays exact
///
/// Every write a store commits has a change-feed event in the same transaction (an `embed`
/// too). Before each answer the index reads the tenant's events after the position it holds
/// and reads again, from the rows, what they name: a message's vectors (written, replaced,
/// removed with the message or its content), a thread's metadata, a thread deleted. So writes of
/// this process, of other processes on one SQLite file and of other instances on one
/// PostgreSQL database are all in the next answer (read-your-writes), and deletes, clears,
/// truncations, retention and purges take the vectors out as they take them out of the rows.
/// A feed that no longer holds the events after the index's position (retention trimmed them)
/// makes it build again.
///
/// The store answers instead (the same answer, by its scan) when the index cannot: a backend
/// without a feed, a stack that refuses what the index reads (an encryption layer without clear
/// vectors refuses both), a query of a model the tenant holds no vector of (the store knows its
/// dimensions, or that it has none), a tenant whose vectors alone exceed the budget, or a hit
/// whose message is gone by the time it is read.
///
/// # Across restarts
///
/// Without more, the index lives in memory: a process started again builds each tenant's index
/// from the rows at its first query (6.5 s for 200,000 vectors of 384 dimensions on SQLite here).
/// Given a directory ([`with_snapshots`](Self::with_snapshots)), it writes each tenant's index to
/// a file there after a build and again after every tenth of its vectors' worth of changes
/// (written in the background; the lock held only while the bytes are made), and a tenant not
/// held reads its file back and catches up from the feed instead of reading the rows (0.24 s for
/// those 200,000, measured by persist-bench `--only recall`). A file is
/// used only when it is whole (a checksum), of this tenant and of this store as it is now: the
/// last event of the tenant it read is in the feed as it was, its position is not past the
/// feed's head, and its newest messages are in the rows with their times. Anything else (a file of
/// another store, of this store before it was restored from an older copy, one whose events
/// retention trimmed) is set aside and the index built from the rows. A file holds what the index
/// holds (vectors, the fields the filters read, the threads' metadata as stored), readable by its
/// owner alone; [`forget`](Self::forget) removes it. Lists (below) are not written; they are
/// learnt again when asked for.
///
/// # Approximate on request
///
/// A query marked [`approximate`](persist_core::vector::Nearest::approximate) is ranked by the
/// int8 copies' dot products first (a quarter of the bytes, whole-number arithmetic), and only
/// the best `8 × limit` (at least 100) are scored exactly and ordered: the hits carry their exact
/// scores, in the exact order. Measured (persist-bench `--only recall`): the exact top 10 was
/// found in every query (recall@10 1.000) at 10,000 and 100,000 vectors of 384 dimensions and
/// 10,000 of 1,536, in 0.14 to 0.16 of the exact scan's time on 100,000.
///
/// For scopes past what a scan of the int8 copies serves (it reads every vector: 40 to 80 ms
/// per million of 384 dimensions here), a host can ask for lists
/// ([`with_clusters_from`](Self::with_clusters_from)): the vectors of a model of a tenant that
/// holds that many are kept in lists, each of the vectors nearest one of about `√n / 4`
/// centroids (an inverted file, as faiss's IVF and pgvector's `ivfflat`), each list one run of
/// memory, and an approximate query reads the lists whose centroids are nearest its vector (one
/// in four at least, [`with_probes_one_in`](Self::with_probes_one_in); more until enough vectors
/// pass its filters), ranks those by their int8 copies and scores the best exactly as above. The
/// centroids are learnt from a sample of the vectors by the first approximate query that needs
/// them, on a thread of its own (10 s at a million vectors of 384 dimensions on 2 cores): that
/// query and those after it are answered meanwhile (by the int8 scan, or over the lists there
/// were), the writes meanwhile are replayed on the new lists when they are put in place, the lists
/// follow every write after, and the centroids are learnt again, the same way, once the vectors
/// have doubled or halved. Lists trade recall for time, and how much depends on the vectors. Measured
/// (persist-bench `--only recall-1m`) at a million vectors in 10,000 small unrelated clusters,
/// which is hard for lists (each holds dozens of clusters): one in four read, recall@10 0.94 in
/// 0.08 of the exact scan's time; one in sixteen, 0.80 in 0.04; the int8 scan of every vector,
/// 1.000 in 0.14 to 0.20. So they are off by default.
///
/// # Memory
///
/// A vector takes its dimensions × 5 bytes (its numbers and their int8 copy, which an
/// [approximate](persist_core::vector::Nearest::approximate) query ranks by), plus about 100
/// bytes beside it (the filters' fields, its message id, its place in a map): 100,000 vectors of
/// 384 dimensions hold about 200 MiB (measured: 196), of 1,536 about 750 MiB. The [budget](Self::with_budget) bounds the sum over tenants: past it, the tenants
/// asked least recently are dropped (built again when asked), and a tenant that alone exceeds it
/// is answered by the store's scan. [`stats`](Self::stats) says what is resident. Lists, once
/// learnt, hold a second int8 copy of each vector beside its slot, thread and scale (a list is
/// read as one run of memory): dimensions + 20 bytes per vector, about 40 MiB per 100,000 of
/// 384 dimensions; while they are learnt, the learning holds a copy of the int8 copies (not
/// counted in the budget). Writing a tenant's file makes its bytes first: for a moment, about
/// the tenant's size again.
///
/// # Example
///
/// ```
/// use persist::memory::MemoryBackend;
/// use persist::recall::VectorIndex;
/// use persist::vector::{Embedding, Nearest};
/// use persist::{args::Add, Content, Pipeline, Role, ThreadId};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let index = VectorIndex::new().with_budget(64 << 20);
/// let pipeline = Pipeline::builder().layer(index.layer()).build(MemoryBackend::new());
/// let thread = ThreadId::new("trip")?;
/// let add = Add::new(thread, Role::User, Content::text("Lisbon in May?"))
///     .with_embedding(Embedding::new("my-model", vec![0.9, 0.1, 0.0]));
/// pipeline.add(add).await?;
///
/// let found = pipeline.nearest(Nearest::new(Embedding::new("my-model", vec![1.0, 0.0, 0.0]))).await?;
/// assert_eq!(found.len(), 1);
/// assert_eq!(index.stats().vectors, 1);
/// # Ok::<_, persist::PersistError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct VectorIndex {
    shared: Arc<Shared>,
}

impl fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VectorIndex").field("stats", &self.stats()).finish()
    }
}

impl Default for VectorIndex {
    fn default() -> Self {
        Self::new()
    }
}

/// What a [`VectorIndex`] holds and has done, from [`VectorIndex::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct IndexStats {
    /// The most bytes it may hold.
    pub budget: usize,
    /// The bytes it holds now.
    pub resident_bytes: usize,
    /// The tenants it holds now.
    pub tenants: usize,
    /// The vectors it holds now.
    pub vectors: usize,
    /// Of those, the vectors in lists an approximate query reads a few of (see
    /// [`VectorIndex::with_clusters_from`]).
    pub clustered: usize,
    /// The queries it answered.
    pub answered: u64,
    /// The queries the store answered instead (see the type's docs for when).
    pub fallbacks: u64,
    /// The tenants' indexes built from the rows (first use without a file, after a feed gap, a
    /// file not of the store as it is now).
    pub builds: u64,
    /// The tenants' indexes read back from their files and caught up from the feed (see
    /// [`VectorIndex::with_snapshots`]).
    pub restored: u64,
    /// The tenants' index files begun (after a build, after enough changes; see
    /// [`VectorIndex::with_snapshots`]): written and renamed in place in the background.
    pub saves: u64,
    /// The tenants' indexes dropped to stay within the budget.
    pub evictions: u64,
}

impl VectorIndex {
    /// An empty index with a budget of [`DEFAULT_INDEX_BUDGET`].
    pub fn new() -> Self {
        let shared = Shared {
            budget: AtomicUsize::new(DEFAULT_INDEX_BUDGET),
            clusters_from: AtomicUsize::new(usize::MAX),
            probes_one_in: AtomicUsize::new(DEFAULT_PROBES_ONE_IN),
            tenants: Mutex::new(HashMap::new()),
            snapshots: Mutex::new(None),
            swept: AtomicBool::new(false),
            clock: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            builds: AtomicU64::new(0),
            restored: AtomicU64::new(0),
            saves: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        };
        Self { shared: Arc::new(shared) }
    }

    /// Holds at most `bytes` (see the type's docs, "Memory"); 0 holds nothing (every query is
    /// the store's).
    pub fn with_budget(self, bytes: usize) -> Self {
        self.shared.budget.store(bytes, Ordering::Relaxed);
        self
    }

    /// Approximate queries of a model of `vectors` vectors or more in a tenant read the lists
    /// nearest them rather than every vector (see the type's docs, "Approximate on request");
    /// `usize::MAX`, the default, never (lists already learnt are dropped at the next
    /// approximate query). Exact queries read every vector whatever this says.
    pub fn with_clusters_from(self, vectors: usize) -> Self {
        self.shared.clusters_from.store(vectors, Ordering::Relaxed);
        self
    }

    /// An approximate query over lists reads at least one list in `one_in` (more lists, more
    /// recall, more time; 1 reads them all); [`DEFAULT_PROBES_ONE_IN`] unless told.
    pub fn with_probes_one_in(self, one_in: usize) -> Self {
        self.shared.probes_one_in.store(one_in.max(1), Ordering::Relaxed);
        self
    }

    /// Writes each tenant's index to a file in `dir` (made if missing) and, when the tenant's
    /// index is not held (a restart, a drop for room), reads it back from there before reading
    /// the rows: the file then brings the index to where it was written, and the change feed from
    /// there to now, as it does between any two answers (see the type's docs, "Across restarts").
    pub fn with_snapshots(self, dir: impl Into<PathBuf>) -> Self {
        let dir: PathBuf = dir.into();
        *self.shared.snapshots.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::from(dir));
        self.shared.swept.store(false, Ordering::Relaxed);
        self
    }

    /// Drops what it holds of `tenant` (`None`: the default tenant), as the budget would: the
    /// tenant's next query builds it again from the rows. For a tenant whose keys were
    /// destroyed (crypto-shredding): a stack that refuses the tenant's requests never asks the
    /// index again, which would otherwise keep its copy of the tenant's vectors until dropped
    /// for room. Its file (see [`with_snapshots`](Self::with_snapshots)) is removed too.
    pub fn forget(&self, tenant: Option<&TenantId>) {
        let entry = {
            let mut tenants = self.shared.tenants.lock().unwrap_or_else(|e| e.into_inner());
            tenants.remove(&tenant.cloned())
        };
        if let Some(entry) = entry {
            entry.forgotten.store(true, std::sync::atomic::Ordering::SeqCst);
            // A query under way holds the state; it is dropped when that query ends.
            if let Ok(mut state) = Arc::clone(&entry.state).try_write_owned() {
                *state = None;
            }
        }
        if let Some(dir) = self.shared.snapshots() {
            let path = snapshot::path(&dir, tenant);
            match std::fs::remove_file(&path) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    tracing::warn!(target: "persist::recall", path = %path.display(), %error, "a forgotten tenant's vector index file was not removed");
                }
                _ => {}
            }
        }
    }

    /// The layer that answers `nearest` from this index (clones share it).
    pub fn layer(&self) -> VectorIndexLayer {
        VectorIndexLayer::new(Arc::clone(&self.shared))
    }

    /// What it holds and has done.
    pub fn stats(&self) -> IndexStats {
        let shared = &self.shared;
        let tenants = shared.tenants.lock().unwrap_or_else(|e| e.into_inner());
        let resident = tenants.values().filter(|e| e.bytes.load(Ordering::Relaxed) > 0);
        let (mut bytes, mut vectors, mut clustered, mut count) = (0, 0, 0, 0);
        for entry in resident {
            bytes += entry.bytes.load(Ordering::Relaxed);
            vectors += entry.vectors.load(Ordering::Relaxed);
            clustered += entry.clustered.load(Ordering::Relaxed);
            count += 1;
        }
        IndexStats {
            budget: shared.budget.load(Ordering::Relaxed),
            resident_bytes: bytes,
            tenants: count,
            vectors,
            clustered,
            answered: shared.answered.load(Ordering::Relaxed),
            fallbacks: shared.fallbacks.load(Ordering::Relaxed),
            builds: shared.builds.load(Ordering::Relaxed),
            restored: shared.restored.load(Ordering::Relaxed),
            saves: shared.saves.load(Ordering::Relaxed),
            evictions: shared.evictions.load(Ordering::Relaxed),
        }
    }
}

struct Shared {
    budget: AtomicUsize,
    clusters_from: AtomicUsize,
    probes_one_in: AtomicUsize,
    tenants: Mutex<HashMap<Option<TenantId>, Arc<Entry>>>,
    /// Ticks at each answer: an entry's last tick says how recently it was asked.
    clock: AtomicU64,
    answered: AtomicU64,
    fallbacks: AtomicU64,
    builds: AtomicU64,
    restored: AtomicU64,
    saves: AtomicU64,
    evictions: AtomicU64,
    /// Where tenants' indexes are written to files and read back from, if anywhere.
    snapshots: Mutex<Option<Arc<Path>>>,
    /// The partial files writers that died left in that folder have been looked for (at the
    /// first write).
    swept: AtomicBool,
}

/// One tenant's place in the index: its index when resident, and what the budget counts.
struct Entry {
    state: Arc<RwLock<Option<TenantIndex>>>,
    bytes: AtomicUsize,
    vectors: AtomicUsize,
    clustered: AtomicUsize,
    last_used: AtomicU64,
    /// Until when the store answers this tenant (the index could not hold it).
    not_before: Mutex<Option<Instant>>,
    /// A write of its file is under way.
    saving: AtomicBool,
    /// [Forgotten](VectorIndex::forget): a file written since is removed.
    forgotten: AtomicBool,
}

impl Entry {
    fn usable(&self) -> bool {
        let not_before = self.not_before.lock().unwrap_or_else(|e| e.into_inner());
        not_before.is_none_or(|until| Instant::now() >= until)
    }

    fn hold_off(&self) {
        *self.not_before.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + RETRY_AFTER);
    }

    fn record(&self, index: Option<&TenantIndex>) {
        self.bytes.store(index.map_or(0, TenantIndex::bytes), Ordering::Relaxed);
        self.vectors.store(index.map_or(0, TenantIndex::vectors), Ordering::Relaxed);
        self.clustered.store(index.map_or(0, TenantIndex::clustered), Ordering::Relaxed);
    }
}

impl Shared {
    fn snapshots(&self) -> Option<Arc<Path>> {
        self.snapshots.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn entry(&self, tenant: Option<&TenantId>) -> Arc<Entry> {
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(tenants.entry(tenant.cloned()).or_insert_with(|| {
            Arc::new(Entry {
                state: Arc::new(RwLock::new(None)),
                bytes: AtomicUsize::new(0),
                vectors: AtomicUsize::new(0),
                clustered: AtomicUsize::new(0),
                last_used: AtomicU64::new(0),
                not_before: Mutex::new(None),
                saving: AtomicBool::new(false),
                forgotten: AtomicBool::new(false),
            })
        }))
    }

    /// Drops the tenants asked least recently (but `keep`) until what is held fits the budget;
    /// one in use now stays (it is dropped by a later answer if still over).
    fn make_room(&self, keep: &Arc<Entry>) {
        let budget = self.budget.load(Ordering::Relaxed);
        let tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        let mut total: usize = tenants.values().map(|e| e.bytes.load(Ordering::Relaxed)).sum();
        if total <= budget {
            return;
        }
        let mut cold: Vec<&Arc<Entry>> =
            tenants.values().filter(|e| !Arc::ptr_eq(e, keep) && e.bytes.load(Ordering::Relaxed) > 0).collect();
        cold.sort_by_key(|e| e.last_used.load(Ordering::Relaxed));
        for entry in cold {
            if total <= budget {
                break;
            }
            if let Ok(mut state) = Arc::clone(&entry.state).try_write_owned() {
                total -= entry.bytes.load(Ordering::Relaxed);
                *state = None;
                entry.record(None);
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
