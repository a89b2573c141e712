//! Clusters: a second structure over an arena's vectors, for [approximate] queries over more
//! vectors than a scan serves. The vectors are split into lists by the nearest of a few hundred
//! centroids (an inverted file, as faiss's IVF and pgvector's `ivfflat`); a query reads the lists
//! whose centroids are nearest its own vector, not every vector.
//!
//! The centroids are learnt from a sample of the vectors by spherical k-means, and every
//! vector is placed in the list of its nearest centroid by the int8 copies' dot products (the
//! arena's codes; on every core). The lists follow the arena slot for slot (a vector written
//! joins its list, one removed leaves it, the arena's last slot moving into a removed one's
//! place moves here too), so they never miss a vector the arena holds; as the arena grows or
//! shrinks past twice or half the size they were learnt at, the centroids no longer fit it and
//! are learnt again.
//!
//! [approximate]: persist_core::vector::Nearest::approximate

use super::quant::{dot, dot_f32, quantize};

/// The lists of `n` vectors: `√n / 4` (250 for a million, of 4,000 vectors each), so a query
/// scores a few hundred centroids and reads the lists it needs.
fn lists_for(vectors: usize) -> usize {
    ((vectors as f64).sqrt() / 4.0).round().clamp(4.0, 4096.0) as usize
}

/// The sample the centroids are learnt from: this many vectors per list.
const SAMPLE_PER_LIST: usize = 48;

/// The rounds of k-means.
const ROUNDS: usize = 8;

/// The lists a query reads at least: one in `one_in` of them, and at least four. It reads more
/// while it has fewer candidates that pass its filters than it scores exactly.
fn least_probes(lists: usize, one_in: usize) -> usize {
    lists.div_ceil(one_in.max(1)).max(4).min(lists)
}

/// The vectors the centroids of `vectors` (each `dims` long) are learnt from: [`SAMPLE_PER_LIST`]
/// per list, spread through them.
pub(super) fn sample_of(vectors: &[f32], dims: usize) -> Vec<f32> {
    let count = vectors.len() / dims.max(1);
    let size = (lists_for(count) * SAMPLE_PER_LIST).min(count);
    (0..size).flat_map(|i| &vectors[(i * count / size) * dims..][..dims]).copied().collect()
}

/// A change of an arena's slots made while its lists were learnt apart from it, replayed on
/// the lists once learnt (each with its int8 copy as it was then).
#[derive(Debug)]
pub(super) enum Change {
    /// A new last slot.
    Push { thread: u32, codes: Vec<i8>, scale: f32 },
    /// `slot`'s vector replaced.
    Replace { slot: u32, thread: u32, codes: Vec<i8>, scale: f32 },
    /// `slot` removed, the last slot moved into its place.
    SwapRemove { slot: u32 },
}

/// The index of the centroid of `centroids` (each `dims` long) nearest `vector` by dot product.
fn nearest(centroids: &[f32], dims: usize, vector: &[f32]) -> usize {
    let mut best = (f32::NEG_INFINITY, 0);
    for (at, centroid) in centroids.chunks_exact(dims).enumerate() {
        let score = dot_f32(centroid, vector);
        if score > best.0 {
            best = (score, at);
        }
    }
    best.1
}

/// Makes `vector` of length 1 (a zero vector stays zero).
fn normalize(vector: &mut [f32]) {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|x| *x /= norm);
    }
}

/// `k` centroids (unit vectors) of `points` by spherical k-means: started from points spread
/// through the sample, [`ROUNDS`] rounds of assigning each point to its nearest centroid and
/// moving each centroid to its points' normalized mean (a centroid no point chose stays).
fn kmeans(points: &[&[f32]], dims: usize, k: usize) -> Vec<f32> {
    let k = k.min(points.len()).max(1);
    let mut centroids: Vec<f32> =
        (0..k).flat_map(|i| points.get(i * points.len() / k).copied().unwrap_or(&[]).iter().copied()).collect();
    centroids.resize(k * dims, 0.0);
    let mut sums = vec![0.0_f32; k * dims];
    let mut counts = vec![0_usize; k];
    for _ in 0..ROUNDS {
        sums.iter_mut().for_each(|s| *s = 0.0);
        counts.iter_mut().for_each(|c| *c = 0);
        for point in points {
            let at = nearest(&centroids, dims, point);
            counts[at] += 1;
            for (sum, x) in sums[at * dims..(at + 1) * dims].iter_mut().zip(point.iter()) {
                *sum += x;
            }
        }
        for (at, &count) in counts.iter().enumerate() {
            if count > 0 {
                let centroid = &mut centroids[at * dims..(at + 1) * dims];
                centroid.copy_from_slice(&sums[at * dims..(at + 1) * dims]);
                normalize(centroid);
            }
        }
    }
    centroids
}

/// One list: its vectors' slots, threads, int8 copies and scales side by side, so a query reads
/// a list as one run of memory (reading the arena's copies slot by slot, scattered, cost eight
/// times as much per vector as the scan of every vector, measured).
#[derive(Debug, Default, Clone)]
pub(super) struct List {
    pub(super) slots: Vec<u32>,
    pub(super) threads: Vec<u32>,
    pub(super) codes: Vec<i8>,
    pub(super) scales: Vec<f32>,
}

impl List {
    fn push(&mut self, slot: u32, thread: u32, codes: &[i8], scale: f32) {
        self.slots.push(slot);
        self.threads.push(thread);
        self.codes.extend_from_slice(codes);
        self.scales.push(scale);
    }

    /// Removes entry `at` (the last moves into its place); the slot moved, if any.
    fn swap_remove(&mut self, at: usize, dims: usize) -> Option<u32> {
        let last = self.slots.len() - 1;
        self.slots.swap_remove(at);
        self.threads.swap_remove(at);
        self.scales.swap_remove(at);
        self.codes.copy_within(last * dims..(last + 1) * dims, at * dims);
        self.codes.truncate(last * dims);
        self.slots.get(at).copied()
    }

    fn bytes(&self) -> usize {
        self.slots.capacity() * 4 + self.threads.capacity() * 4 + self.codes.capacity() + self.scales.capacity() * 4
    }
}

/// The lists of one arena's vectors (see the module's docs).
#[derive(Debug)]
pub(super) struct Clusters {
    dims: usize,
    /// The lists' centroids, each `dims` long, unit vectors: a query orders the lists by them.
    centroids: Vec<f32>,
    /// Their int8 copies and scales: a vector is placed by them.
    codes: Vec<i8>,
    scales: Vec<f32>,
    lists: Vec<List>,
    /// Each slot's list and its place in that list.
    place: Vec<(u32, u32)>,
    /// The arena's size when the centroids were learnt.
    learnt_at: usize,
}

impl Clusters {
    /// Learns the centroids from `vectors` (the arena's, each `dims` long, slot by slot) and
    /// places every one of them by its int8 copy (`codes`, `scales`), with its thread.
    #[cfg(test)]
    pub(super) fn learn(vectors: &[f32], codes: &[i8], scales: &[f32], threads: &[u32], dims: usize) -> Self {
        Self::learn_from(&sample_of(vectors, dims), codes, scales, threads, dims)
    }

    /// Learns the centroids from `sample` (vectors of the arena's, see [`sample_of`]) and places
    /// every vector of the arena by its int8 copy (`codes`, `scales`, slot by slot), with its
    /// thread.
    pub(super) fn learn_from(sample: &[f32], codes: &[i8], scales: &[f32], threads: &[u32], dims: usize) -> Self {
        let count = codes.len() / dims;
        let lists = lists_for(count);
        let sample: Vec<&[f32]> = sample.chunks_exact(dims).collect();
        let centroids = kmeans(&sample, dims, lists);
        let lists = centroids.len() / dims;
        let mut centroid_codes = vec![0_i8; centroids.len()];
        let centroid_scales: Vec<f32> = centroids
            .chunks_exact(dims)
            .zip(centroid_codes.chunks_exact_mut(dims))
            .map(|(centroid, codes)| quantize(centroid, codes))
            .collect();
        let mut clusters = Self {
            dims,
            centroids,
            codes: centroid_codes,
            scales: centroid_scales,
            lists: vec![List::default(); lists],
            place: Vec::with_capacity(count),
            learnt_at: count,
        };
        // Each vector's list, on every core (a list per vector is most of the learning).
        let workers = std::thread::available_parallelism().map_or(1, usize::from).clamp(1, 8);
        let chunk = count.div_ceil(workers).max(1) * dims;
        let found: Vec<Vec<u32>> = std::thread::scope(|scope| {
            let clusters = &clusters;
            let handles: Vec<_> = codes
                .chunks(chunk)
                .map(|part| scope.spawn(move || part.chunks_exact(dims).map(|v| clusters.list_of(v) as u32).collect()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
        });
        let mut found = found.into_iter().flatten();
        for slot in 0..count {
            let code = &codes[slot * dims..(slot + 1) * dims];
            // A worker that failed (it cannot: no panics in its arithmetic) leaves the rest here.
            let list = found.next().map_or_else(|| clusters.list_of(code), |list| list as usize);
            clusters.push_to(list, threads[slot], code, scales[slot]);
        }
        clusters
    }

    /// The list of the vector whose int8 copy is `codes`: its nearest centroid's.
    fn list_of(&self, codes: &[i8]) -> usize {
        let mut best = (f32::NEG_INFINITY, 0);
        for (at, (centroid, &scale)) in self.codes.chunks_exact(self.dims).zip(&self.scales).enumerate() {
            let score = dot(centroid, codes) as f32 * scale;
            if score > best.0 {
                best = (score, at);
            }
        }
        best.1
    }

    /// Adds the arena's new last slot to `list`.
    fn push_to(&mut self, list: usize, thread: u32, codes: &[i8], scale: f32) {
        let slot = self.place.len() as u32;
        self.place.push((list as u32, self.lists[list].slots.len() as u32));
        self.lists[list].push(slot, thread, codes, scale);
    }

    /// Places the arena's new last slot, of `thread`, whose vector's int8 copy is `codes`.
    pub(super) fn push(&mut self, thread: u32, codes: &[i8], scale: f32) {
        let list = self.list_of(codes);
        self.push_to(list, thread, codes, scale);
    }

    /// Takes `slot` out of its list (its place stays until it is reused or removed).
    fn unlist(&mut self, slot: u32) {
        let (list, at) = self.place[slot as usize];
        if let Some(moved) = self.lists[list as usize].swap_remove(at as usize, self.dims) {
            self.place[moved as usize].1 = at;
        }
    }

    /// `slot`'s vector was replaced by one whose int8 copy is `codes`: it moves to the list
    /// that fits it now.
    pub(super) fn replace(&mut self, slot: u32, thread: u32, codes: &[i8], scale: f32) {
        self.unlist(slot);
        let list = self.list_of(codes);
        self.place[slot as usize] = (list as u32, self.lists[list].slots.len() as u32);
        self.lists[list].push(slot, thread, codes, scale);
    }

    /// The arena removed `slot` and moved its last slot into its place (as `Vec::swap_remove`).
    pub(super) fn swap_remove(&mut self, slot: u32) {
        self.unlist(slot);
        let last = (self.place.len() - 1) as u32;
        if slot != last {
            let (list, at) = self.place[last as usize];
            self.lists[list as usize].slots[at as usize] = slot;
            self.place[slot as usize] = (list, at);
        }
        self.place.pop();
    }

    /// Makes `change` (made to the arena while these lists were learnt) here too.
    pub(super) fn replay(&mut self, change: &Change) {
        match change {
            Change::Push { thread, codes, scale } => self.push(*thread, codes, *scale),
            Change::Replace { slot, thread, codes, scale } => self.replace(*slot, *thread, codes, *scale),
            Change::SwapRemove { slot } => self.swap_remove(*slot),
        }
    }

    /// The centroids no longer fit an arena of `len` vectors: it grew past twice or shrank
    /// below half the size they were learnt at.
    pub(super) fn stale(&self, len: usize) -> bool {
        len > self.learnt_at.saturating_mul(2) || len < self.learnt_at / 2
    }

    /// The lists, those whose centroid is nearest `unit` first.
    pub(super) fn order(&self, unit: &[f32]) -> Vec<usize> {
        let scores: Vec<f32> = self.centroids.chunks_exact(self.dims).map(|c| dot_f32(c, unit)).collect();
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_unstable_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        order
    }

    /// The fewest lists a query reads when it reads one in `one_in` (see [`least_probes`]).
    pub(super) fn least_probes(&self, one_in: usize) -> usize {
        least_probes(self.lists.len(), one_in)
    }

    /// List `list`.
    pub(super) fn list(&self, list: usize) -> &List {
        &self.lists[list]
    }

    /// How many slots it holds.
    pub(super) fn len(&self) -> usize {
        self.place.len()
    }

    /// How many lists there are.
    #[cfg(test)]
    pub(super) fn lists(&self) -> usize {
        self.lists.len()
    }

    /// The bytes it holds.
    pub(super) fn bytes(&self) -> usize {
        self.centroids.capacity() * 4
            + self.codes.capacity()
            + self.scales.capacity() * 4
            + self.lists.iter().map(|l| l.bytes() + 96).sum::<usize>()
            + self.place.capacity() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(n: u64, dims: usize) -> Vec<f32> {
        let mut state = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut v: Vec<f32> = (0..dims)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect();
        normalize(&mut v);
        v
    }

    fn codes_of(vector: &[f32]) -> Vec<i8> {
        let mut codes = vec![0; vector.len()];
        quantize(vector, &mut codes);
        codes
    }

    /// Every slot in exactly one list, at the place it records, with its thread and its codes,
    /// and no slot beyond `codes`' (each of `dims`).
    fn check(clusters: &Clusters, codes: &[i8], dims: usize) {
        let len = codes.len() / dims;
        assert_eq!(clusters.place.len(), len);
        let mut seen = vec![false; len];
        for (list, entries) in clusters.lists.iter().enumerate() {
            for (at, &slot) in entries.slots.iter().enumerate() {
                assert!(!seen[slot as usize], "slot {slot} listed twice");
                seen[slot as usize] = true;
                assert_eq!(clusters.place[slot as usize], (list as u32, at as u32));
                assert_eq!(entries.threads[at], thread_of(slot as usize, codes, dims));
                assert_eq!(&entries.codes[at * dims..(at + 1) * dims], &codes[slot as usize * dims..][..dims]);
            }
        }
        assert!(seen.iter().all(|&s| s), "every slot listed");
    }

    /// A thread the test gives each vector: its first code's remainder.
    fn thread_of(slot: usize, codes: &[i8], dims: usize) -> u32 {
        u32::from(codes[slot * dims] as u8 % 7)
    }

    /// An arena's `n` vectors of `dims`, their int8 copies and their threads.
    fn arena_of(n: u64, dims: usize) -> (Vec<f32>, Vec<i8>, Vec<u32>) {
        let vectors: Vec<f32> = (0..n).flat_map(|n| vector(n, dims)).collect();
        let codes: Vec<i8> = vectors.chunks_exact(dims).flat_map(codes_of).collect();
        let threads: Vec<u32> = (0..n as usize).map(|slot| thread_of(slot, &codes, dims)).collect();
        (vectors, codes, threads)
    }

    /// A generator of the numbers the tests' random changes are drawn by.
    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    /// One random change of an arena's int8 copies `codes` (a vector added, replaced or removed
    /// as the arena removes one), made to `codes` and returned.
    fn change_codes(codes: &mut Vec<i8>, dims: usize, round: u64, next: &mut impl FnMut() -> u64) -> Option<Change> {
        let len = codes.len() / dims;
        match next() % 3 {
            0 => {
                let v = codes_of(&vector(10_000 + round, dims));
                codes.extend_from_slice(&v);
                Some(Change::Push { thread: thread_of(len, codes, dims), codes: v, scale: 1.0 })
            }
            1 if len > 1 => {
                let at = (next() % len as u64) as usize;
                let v = codes_of(&vector(20_000 + round, dims));
                codes[at * dims..(at + 1) * dims].copy_from_slice(&v);
                Some(Change::Replace { slot: at as u32, thread: thread_of(at, codes, dims), codes: v, scale: 1.0 })
            }
            _ if len > 1 => {
                let at = (next() % len as u64) as usize;
                codes.copy_within((len - 1) * dims..len * dims, at * dims);
                codes.truncate((len - 1) * dims);
                Some(Change::SwapRemove { slot: at as u32 })
            }
            _ => None,
        }
    }

    #[test]
    fn the_lists_follow_the_arena_slot_for_slot() {
        let dims = 24;
        let (vectors, mut codes, threads) = arena_of(2_000, dims);
        let mut clusters = Clusters::learn(&vectors, &codes, &vec![1.0; 2_000], &threads, dims);
        assert_eq!(clusters.lists(), lists_for(2_000));
        check(&clusters, &codes, dims);
        let mut next = xorshift(7);
        for round in 0..3_000_u64 {
            if let Some(change) = change_codes(&mut codes, dims, round, &mut next) {
                clusters.replay(&change);
            }
            check(&clusters, &codes, dims);
        }
        // Each slot sits in the list its vector belongs to now.
        for (slot, v) in codes.chunks_exact(dims).enumerate() {
            assert_eq!(clusters.place[slot].0 as usize, clusters.list_of(v));
        }
    }

    #[test]
    fn lists_learnt_apart_take_the_changes_made_meanwhile() {
        let dims = 16;
        let (vectors, mut codes, threads) = arena_of(1_500, dims);
        // What the learning copies when it begins.
        let (sample, at_start) = (sample_of(&vectors, dims), codes.clone());
        let mut next = xorshift(11);
        let changes: Vec<Change> =
            (0..2_000_u64).filter_map(|round| change_codes(&mut codes, dims, round, &mut next)).collect();
        let mut clusters = Clusters::learn_from(&sample, &at_start, &vec![1.0; 1_500], &threads, dims);
        for change in &changes {
            clusters.replay(change);
        }
        check(&clusters, &codes, dims);
    }

    #[test]
    fn a_handful_of_vectors_still_makes_lists() {
        let dims = 3;
        let vectors: Vec<f32> = (0..5).flat_map(|n| vector(n, dims)).collect();
        let codes: Vec<i8> = vectors.chunks_exact(dims).flat_map(codes_of).collect();
        let threads: Vec<u32> = (0..5).map(|slot| thread_of(slot, &codes, dims)).collect();
        let clusters = Clusters::learn(&vectors, &codes, &[1.0; 5], &threads, dims);
        check(&clusters, &codes, dims);
        assert!(clusters.least_probes(16) <= clusters.lists());
        assert_eq!(clusters.least_probes(1), clusters.lists());
    }
}
