//! What an index holds of one tenant: its threads (id, metadata, live) and, per model, an
//! [`Arena`] of vectors in one contiguous buffer with the fields the filters read; and the exact
//! scan over it.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};

use persist_core::vector::{Nearest, StoredEmbedding, similarity};
use persist_core::{MessageId, Metadata, Role, Status, ThreadId, Timestamp};

use super::clusters::{Change, Clusters, sample_of};
use super::quant::{dot, quantize};

/// A thread as the index knows it.
#[derive(Debug)]
pub(super) struct ThreadEntry {
    pub(super) id: ThreadId,
    pub(super) metadata: Metadata,
    /// Not deleted: a tombstone's vectors are gone (its entry stays, its slots do not).
    pub(super) live: bool,
}

/// What the filters read of a vector's message, beside the vector.
#[derive(Debug, Clone)]
pub(super) struct Slot {
    pub(super) thread: u32,
    pub(super) seq: u64,
    pub(super) message_id: MessageId,
    pub(super) role: Role,
    pub(super) status: Status,
    pub(super) created_at: Timestamp,
}

/// The vectors of one model: slot `i`'s vector is `vectors[i * dims..(i + 1) * dims]`, and its
/// quantized copy (for approximate answers) `codes[i * dims..(i + 1) * dims]` times `scales[i]`.
#[derive(Debug)]
pub(super) struct Arena {
    pub(super) dims: usize,
    pub(super) vectors: Vec<f32>,
    codes: Vec<i8>,
    scales: Vec<f32>,
    pub(super) slots: Vec<Slot>,
    by_key: HashMap<(u32, u64), u32>,
    /// The lists an approximate query over many vectors reads instead of every vector, once
    /// learnt (they follow every write).
    clusters: Option<Clusters>,
    /// Lists being learnt apart (on a thread of their own): where they are left once learnt.
    learning: Option<Arc<Mutex<Option<Clusters>>>>,
    /// The changes of the slots since that learning began, replayed on its lists.
    changes: Vec<Change>,
}

impl Arena {
    fn new(dims: usize) -> Self {
        Self {
            dims,
            vectors: Vec::new(),
            codes: Vec::new(),
            scales: Vec::new(),
            slots: Vec::new(),
            by_key: HashMap::new(),
            clusters: None,
            learning: None,
            changes: Vec::new(),
        }
    }

    /// An arena of these parts (read back from a file), `None` when two slots name one
    /// message or the buffers' lengths do not fit the slots.
    pub(super) fn from_parts(
        dims: usize,
        vectors: Vec<f32>,
        codes: Vec<i8>,
        scales: Vec<f32>,
        slots: Vec<Slot>,
    ) -> Option<Self> {
        let n = slots.len();
        if vectors.len() != n * dims || codes.len() != n * dims || scales.len() != n {
            return None;
        }
        let mut by_key = HashMap::with_capacity(n);
        for (at, slot) in slots.iter().enumerate() {
            if by_key.insert((slot.thread, slot.seq), u32::try_from(at).ok()?).is_some() {
                return None;
            }
        }
        Some(Self { dims, vectors, codes, scales, slots, by_key, clusters: None, learning: None, changes: Vec::new() })
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The int8 copies of the vectors, slot by slot.
    pub(super) fn codes(&self) -> &[i8] {
        &self.codes
    }

    /// The scales of the int8 copies, slot by slot.
    pub(super) fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// Writes the vector of `(thread, stored.seq)`, replacing the one there.
    fn put(&mut self, thread: u32, stored: &StoredEmbedding, vector: &[f32]) {
        let slot = Slot {
            thread,
            seq: stored.seq,
            message_id: stored.message_id.clone(),
            role: stored.role.clone(),
            status: stored.status,
            created_at: stored.created_at,
        };
        let dims = self.dims;
        let (at, new) = match self.by_key.get(&(thread, stored.seq)) {
            Some(&at) => {
                let at = at as usize;
                self.vectors[at * dims..(at + 1) * dims].copy_from_slice(vector);
                self.slots[at] = slot;
                (at, false)
            }
            None => {
                let at = self.slots.len();
                self.by_key.insert((thread, stored.seq), u32::try_from(at).unwrap_or(u32::MAX));
                self.vectors.extend_from_slice(vector);
                self.codes.resize(self.codes.len() + dims, 0);
                self.scales.push(1.0);
                self.slots.push(slot);
                (at, true)
            }
        };
        self.scales[at] = quantize(vector, &mut self.codes[at * dims..(at + 1) * dims]);
        let (codes, scale) = (&self.codes[at * dims..(at + 1) * dims], self.scales[at]);
        if let Some(clusters) = &mut self.clusters {
            if clusters.len() == at {
                clusters.push(thread, codes, scale);
            } else {
                clusters.replace(at as u32, thread, codes, scale);
            }
        }
        if self.learning.is_some() {
            self.changes.push(match new {
                true => Change::Push { thread, codes: codes.to_vec(), scale },
                false => Change::Replace { slot: at as u32, thread, codes: codes.to_vec(), scale },
            });
        }
    }

    /// Removes the vector of `(thread, seq)`, if any: the last one moves into its place.
    fn remove(&mut self, thread: u32, seq: u64) {
        let Some(at) = self.by_key.remove(&(thread, seq)) else { return };
        let (at, last) = (at as usize, self.slots.len() - 1);
        if let Some(clusters) = &mut self.clusters {
            clusters.swap_remove(at as u32);
        }
        if self.learning.is_some() {
            self.changes.push(Change::SwapRemove { slot: at as u32 });
        }
        if at != last {
            let moved = (self.slots[last].thread, self.slots[last].seq);
            self.vectors.copy_within(last * self.dims..(last + 1) * self.dims, at * self.dims);
            self.codes.copy_within(last * self.dims..(last + 1) * self.dims, at * self.dims);
            self.scales.swap(at, last);
            self.slots.swap(at, last);
            self.by_key.insert(moved, at as u32);
        }
        self.slots.pop();
        self.scales.pop();
        self.vectors.truncate(last * self.dims);
        self.codes.truncate(last * self.dims);
    }

    /// Removes every vector of `thread`.
    fn remove_thread(&mut self, thread: u32) {
        let seqs: Vec<u64> = self.slots.iter().filter(|s| s.thread == thread).map(|s| s.seq).collect();
        for seq in seqs {
            self.remove(thread, seq);
        }
    }

    /// The bytes it holds (its buffers' capacity, the message ids, the map).
    fn bytes(&self) -> usize {
        self.vectors.capacity() * 4
            + self.codes.capacity()
            + self.scales.capacity() * 4
            + self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.slots.iter().map(|s| s.message_id.as_str().len()).sum::<usize>()
            + self.by_key.capacity() * (std::mem::size_of::<((u32, u64), u32)>() + 1)
            + self.clusters.as_ref().map_or(0, Clusters::bytes)
            + self.changes.capacity() * (std::mem::size_of::<Change>() + self.dims)
    }

    /// Whether an approximate query should have lists learnt: `from` vectors or more, no
    /// learning under way, and no lists or lists that no longer fit (see [`Clusters::stale`]:
    /// kept, and read, until the new ones are learnt; the caller puts lists learnt since in
    /// place first, [`finish_learning`](Self::finish_learning)). An arena now under `from` drops
    /// its lists.
    pub(super) fn wants_clusters(&mut self, from: usize) -> bool {
        let len = self.len();
        if len < from {
            (self.clusters, self.learning) = (None, None);
            self.changes = Vec::new();
            return false;
        }
        self.learning.is_none() && self.clusters.as_ref().is_none_or(|c| c.stale(len))
    }

    /// Begins learning lists apart from the arena: the work to run (on a thread of its own) over
    /// copies of what it learns from (a sample of the vectors, the int8 copies, the scales and
    /// threads); the arena notes its changes meanwhile, and [`finish_learning`](Self::finish_learning)
    /// puts the lists in place once learnt.
    pub(super) fn begin_learning(&mut self) -> impl FnOnce() + Send + 'static {
        let (dims, done) = (self.dims, Arc::new(Mutex::new(None)));
        let sample = sample_of(&self.vectors, dims);
        let (codes, scales) = (self.codes.clone(), self.scales.clone());
        let threads: Vec<u32> = self.slots.iter().map(|s| s.thread).collect();
        self.learning = Some(Arc::clone(&done));
        self.changes = Vec::new();
        move || {
            let learnt = Clusters::learn_from(&sample, &codes, &scales, &threads, dims);
            *done.lock().unwrap_or_else(|e| e.into_inner()) = Some(learnt);
        }
    }

    /// Puts lists learnt apart in place, the changes since they began replayed on them. A
    /// learning whose work ended without lists (it was never run) is given up.
    pub(super) fn finish_learning(&mut self) {
        let Some(done) = &self.learning else { return };
        let learnt = done.lock().unwrap_or_else(|e| e.into_inner()).take();
        match learnt {
            Some(mut clusters) => {
                for change in &self.changes {
                    clusters.replay(change);
                }
                self.clusters = Some(clusters);
            }
            // The work still holds its end: under way.
            None if Arc::strong_count(done) > 1 => return,
            None => {}
        }
        self.learning = None;
        self.changes = Vec::new();
    }

    /// Whether the lists are learnt.
    pub(super) fn clustered(&self) -> bool {
        self.clusters.is_some()
    }
}

/// One tenant's index: its threads and an arena per model, current up to the feed's
/// [`position`](Self::position).
#[derive(Debug, Default)]
pub(super) struct TenantIndex {
    /// The feed position whose writes (and every one before) the index holds.
    pub(super) position: u64,
    /// The last event of the tenant it read from the feed (its position and
    /// [fingerprint](super::snapshot::fingerprint)), if it read one: what a file of it is
    /// checked by.
    pub(super) last_event: Option<(u64, u64)>,
    /// The events it read since it was last written to a file (or built).
    pub(super) unsaved: u64,
    pub(super) threads: Vec<ThreadEntry>,
    by_thread: HashMap<ThreadId, u32>,
    pub(super) arenas: HashMap<String, Arena>,
}

impl TenantIndex {
    pub(super) fn new(position: u64) -> Self {
        Self { position, ..Self::default() }
    }

    /// An index of these parts (read back from a file).
    pub(super) fn from_parts(
        position: u64,
        last_event: Option<(u64, u64)>,
        threads: Vec<ThreadEntry>,
        arenas: Vec<(String, Arena)>,
    ) -> Self {
        let by_thread = threads.iter().enumerate().map(|(at, t)| (t.id.clone(), at as u32)).collect();
        Self { position, last_event, unsaved: 0, threads, by_thread, arenas: arenas.into_iter().collect() }
    }

    /// The thread's number, once known.
    pub(super) fn thread(&self, id: &ThreadId) -> Option<u32> {
        self.by_thread.get(id).copied()
    }

    /// Records `id` with `metadata` (live), or updates it.
    pub(super) fn set_thread(&mut self, id: &ThreadId, metadata: Metadata) -> u32 {
        if let Some(&at) = self.by_thread.get(id) {
            let entry = &mut self.threads[at as usize];
            entry.metadata = metadata;
            entry.live = true;
            return at;
        }
        let at = u32::try_from(self.threads.len()).unwrap_or(u32::MAX);
        self.threads.push(ThreadEntry { id: id.clone(), metadata, live: true });
        self.by_thread.insert(id.clone(), at);
        at
    }

    /// The thread is deleted (or gone): its vectors leave every arena.
    pub(super) fn drop_thread(&mut self, id: &ThreadId) {
        let Some(&at) = self.by_thread.get(id) else { return };
        self.threads[at as usize].live = false;
        self.threads[at as usize].metadata = Metadata::new();
        for arena in self.arenas.values_mut() {
            arena.remove_thread(at);
        }
    }

    /// Replaces what the index holds of `thread`'s messages at `seqs` by `stored` (their
    /// vectors as the rows hold them now, of every model; a seq without one has none left).
    pub(super) fn refresh(&mut self, thread: u32, seqs: &[u64], stored: &[StoredEmbedding]) {
        for arena in self.arenas.values_mut() {
            for &seq in seqs {
                arena.remove(thread, seq);
            }
        }
        for found in stored {
            self.put(thread, found);
        }
    }

    /// Writes one stored vector (a model's first makes its arena).
    pub(super) fn put(&mut self, thread: u32, stored: &StoredEmbedding) {
        let vector = stored.embedding.vector();
        let arena = self.arenas.entry(stored.embedding.model().to_owned()).or_insert_with(|| Arena::new(vector.len()));
        // A model has one length in a tenant (the store refuses others): a vector of another
        // is not one this index can compare, so it is left to the store's scan.
        if arena.dims == vector.len() {
            arena.put(thread, stored, vector);
        }
    }

    /// The bytes it holds.
    pub(super) fn bytes(&self) -> usize {
        self.arenas.values().map(Arena::bytes).sum::<usize>()
            + self.threads.capacity() * std::mem::size_of::<ThreadEntry>()
            + self.threads.iter().map(|t| t.id.as_str().len() * 2 + 64).sum::<usize>()
    }

    /// Gives back what its buffers hold beyond what they use (after a build: a buffer grown by
    /// doubling may hold twice its vectors).
    pub(super) fn shrink(&mut self) {
        for arena in self.arenas.values_mut() {
            arena.vectors.shrink_to_fit();
            arena.codes.shrink_to_fit();
            arena.scales.shrink_to_fit();
            arena.slots.shrink_to_fit();
            arena.by_key.shrink_to_fit();
        }
        self.threads.shrink_to_fit();
    }

    /// A lower bound of [`bytes`](Self::bytes), in constant time: the vectors and their slots.
    pub(super) fn least_bytes(&self) -> usize {
        self.arenas.values().map(|a| a.vectors.len() * 5 + a.slots.len() * std::mem::size_of::<Slot>()).sum()
    }

    /// The `n` messages of its vectors created last (thread, message, time), newest first.
    pub(super) fn newest(&self, n: usize) -> Vec<(&ThreadId, &MessageId, Timestamp)> {
        let mut slots: Vec<&Slot> = self.arenas.values().flat_map(|a| &a.slots).collect();
        let n = n.min(slots.len());
        if n > 0 && n < slots.len() {
            slots.select_nth_unstable_by(n - 1, |a, b| b.created_at.cmp(&a.created_at));
        }
        slots.truncate(n);
        slots.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        slots.iter().map(|s| (&self.threads[s.thread as usize].id, &s.message_id, s.created_at)).collect()
    }

    /// How many vectors it holds.
    pub(super) fn vectors(&self) -> usize {
        self.arenas.values().map(Arena::len).sum()
    }

    /// How many of its vectors are in lists (see [`Clusters`]).
    pub(super) fn clustered(&self) -> usize {
        self.arenas.values().filter(|a| a.clustered()).map(Arena::len).sum()
    }
}

/// A vector the scan keeps: its score and what breaks ties (thread id, then seq, ascending).
#[derive(Debug)]
pub(super) struct Hit<'a> {
    pub(super) score: f32,
    pub(super) thread_id: &'a str,
    pub(super) seq: u64,
    pub(super) slot: u32,
}

/// Better first: a higher score, then a smaller thread id and seq. The heap keeps the worst of
/// the best on top.
impl Ord for Hit<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then_with(|| self.thread_id.cmp(other.thread_id))
            .then(self.seq.cmp(&other.seq))
    }
}

impl PartialOrd for Hit<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Hit<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Hit<'_> {}

/// The most candidates an approximate scan scores exactly: this many times the limit, and at
/// least [`MIN_POOL`].
pub(super) const POOL_FACTOR: usize = 8;

/// The fewest candidates an approximate scan scores exactly.
pub(super) const MIN_POOL: usize = 100;

/// The scan: the `query.limit` best vectors of `arena` that pass the query's filters, best
/// first, scored with [`similarity`] (the stores' arithmetic) against `unit`. An
/// [approximate](Nearest::approximate) query ranks by the quantized copies first and scores
/// exactly the best `POOL_FACTOR × limit` of them; where the arena has lists, it ranks only the
/// vectors of the lists nearest `unit` (one in `one_in` at least, see [`Clusters`]).
pub(super) fn scan<'a>(
    index: &'a TenantIndex,
    arena: &Arena,
    query: &Nearest,
    unit: &[f32],
    one_in: usize,
) -> Vec<Hit<'a>> {
    let only = query.thread_id.as_ref().map(|id| index.thread(id));
    if only == Some(None) {
        return Vec::new();
    }
    let admitted: Vec<bool> = index
        .threads
        .iter()
        .enumerate()
        .map(|(at, t)| {
            t.live && only.is_none_or(|only| only == Some(at as u32)) && query.filter.admits_thread(&t.metadata)
        })
        .collect();
    let filters_messages = !query.filter.roles.is_empty()
        || query.filter.since.is_some()
        || query.filter.until.is_some()
        || query.interrupted.is_some();
    let admits = |slot: &Slot| {
        admitted[slot.thread as usize]
            && (!filters_messages || query.admits_fields(&slot.role, slot.status, slot.created_at))
    };
    let limit = query.limit as usize;
    let exact = |at: usize| similarity(unit, &arena.vectors[at * arena.dims..(at + 1) * arena.dims]);
    if !query.approximate {
        return best_of(index, arena, limit, (0..arena.slots.len()).filter(|&at| admits(&arena.slots[at])), exact);
    }
    let mut codes_q = vec![0_i8; arena.dims];
    let scale = quantize(unit, &mut codes_q);
    let rough = |at: usize| {
        dot(&codes_q, &arena.codes[at * arena.dims..(at + 1) * arena.dims]) as f32 * scale * arena.scales[at]
    };
    let pool = (limit * POOL_FACTOR).max(MIN_POOL);
    // The lists nearest the query, until at least one in `one_in` and enough candidates that
    // pass the filters to fill the pool.
    if let Some(clusters) = &arena.clusters {
        let mut listed: Vec<(f32, u32)> = Vec::new();
        for (read, list) in clusters.order(unit).into_iter().enumerate() {
            if read >= clusters.least_probes(one_in) && listed.len() >= pool {
                break;
            }
            let list = clusters.list(list);
            for (at, (&slot, &thread)) in list.slots.iter().zip(&list.threads).enumerate() {
                if !admitted[thread as usize] || (filters_messages && !admits(&arena.slots[slot as usize])) {
                    continue;
                }
                let codes = &list.codes[at * arena.dims..(at + 1) * arena.dims];
                listed.push((dot(&codes_q, codes) as f32 * scale * list.scales[at], slot));
            }
        }
        if listed.len() > pool {
            listed.select_nth_unstable_by(pool - 1, |a, b| b.0.total_cmp(&a.0));
            listed.truncate(pool);
        }
        return best_of(index, arena, limit, listed.into_iter().map(|(_, slot)| slot as usize), exact);
    }
    let candidates = best_of(index, arena, pool, (0..arena.slots.len()).filter(|&at| admits(&arena.slots[at])), rough);
    best_of(index, arena, limit, candidates.into_iter().map(|hit| hit.slot as usize), exact)
}

/// The `limit` best of the slots `candidates` of `arena` by `score`, best first (ties by thread
/// id, then seq).
fn best_of<'a>(
    index: &'a TenantIndex,
    arena: &Arena,
    limit: usize,
    candidates: impl Iterator<Item = usize>,
    score: impl Fn(usize) -> f32,
) -> Vec<Hit<'a>> {
    let mut best: BinaryHeap<Hit<'a>> = BinaryHeap::with_capacity(limit + 1);
    for at in candidates {
        let score = score(at);
        if best.len() == limit && best.peek().is_some_and(|worst| score < worst.score) {
            continue;
        }
        let slot = &arena.slots[at];
        let thread_id = index.threads[slot.thread as usize].id.as_str();
        best.push(Hit { score, thread_id, seq: slot.seq, slot: at as u32 });
        if best.len() > limit {
            best.pop();
        }
    }
    best.into_sorted_vec()
}
