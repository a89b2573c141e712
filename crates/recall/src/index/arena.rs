//! What an index holds of one tenant: its threads (id, metadata, live) and, per model, an
//! [`Arena`] of vectors in one contiguous buffer with the fields the filters read; and the exact
//! scan over it.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use persist_core::vector::{Nearest, StoredEmbedding, similarity};
use persist_core::{MessageId, Metadata, Role, Status, ThreadId, Timestamp};

use super::clusters::Clusters;
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
        }
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len()
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
        let at = match self.by_key.get(&(thread, stored.seq)) {
            Some(&at) => {
                let at = at as usize;
                self.vectors[at * dims..(at + 1) * dims].copy_from_slice(vector);
                self.slots[at] = slot;
                at
            }
            None => {
                let at = self.slots.len();
                self.by_key.insert((thread, stored.seq), u32::try_from(at).unwrap_or(u32::MAX));
                self.vectors.extend_from_slice(vector);
                self.codes.resize(self.codes.len() + dims, 0);
                self.scales.push(1.0);
                self.slots.push(slot);
                at
            }
        };
        self.scales[at] = quantize(vector, &mut self.codes[at * dims..(at + 1) * dims]);
        if let Some(clusters) = &mut self.clusters {
            let codes = &self.codes[at * dims..(at + 1) * dims];
            if clusters.len() == at {
                clusters.push(thread, codes, self.scales[at]);
            } else {
                clusters.replace(at as u32, thread, codes, self.scales[at]);
            }
        }
    }

    /// Removes the vector of `(thread, seq)`, if any: the last one moves into its place.
    fn remove(&mut self, thread: u32, seq: u64) {
        let Some(at) = self.by_key.remove(&(thread, seq)) else { return };
        let (at, last) = (at as usize, self.slots.len() - 1);
        if let Some(clusters) = &mut self.clusters {
            clusters.swap_remove(at as u32);
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
    }

    /// Whether an approximate query should have the lists learnt first: `from` vectors or more
    /// and no lists that fit them. Lists that no longer fit (see [`Clusters::stale`]), or an
    /// arena now under `from`, are dropped here.
    pub(super) fn wants_clusters(&mut self, from: usize) -> bool {
        let len = self.len();
        if self.clusters.as_ref().is_some_and(|c| len < from || c.stale(len)) {
            self.clusters = None;
        }
        self.clusters.is_none() && len >= from
    }

    /// Learns the lists from the vectors held (see [`Clusters::learn`]).
    pub(super) fn learn_clusters(&mut self) {
        let threads: Vec<u32> = self.slots.iter().map(|s| s.thread).collect();
        self.clusters = Some(Clusters::learn(&self.vectors, &self.codes, &self.scales, &threads, self.dims));
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
    pub(super) threads: Vec<ThreadEntry>,
    by_thread: HashMap<ThreadId, u32>,
    pub(super) arenas: HashMap<String, Arena>,
}

impl TenantIndex {
    pub(super) fn new(position: u64) -> Self {
        Self { position, ..Self::default() }
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
