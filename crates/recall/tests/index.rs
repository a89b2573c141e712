//! `VectorIndex`'s approximate answers on vectors that do not quantize exactly: every hit
//! carries its exact score, in the exact order, and the exact top 10 is found at least 95% of
//! the time. (Its exact answers are checked against every backend's scan by the conformance
//! suite, `vector_index`.)

use persist::args::Add;
use persist::memory::MemoryBackend;
use persist::recall::VectorIndex;
use persist::vector::{Embedding, Nearest};
use persist::{Content, Pipeline, Role, ThreadId};

/// The `n`th vector of `dims` numbers of a fixed sequence, spread over (-0.5, 0.5).
fn vector(n: u64, dims: usize) -> Vec<f32> {
    let mut state = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..dims)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

#[tokio::test]
async fn approximate_answers_carry_exact_scores_and_find_the_exact_top_ten() {
    const DIMS: usize = 64;
    let index = VectorIndex::new();
    let pipeline = Pipeline::builder().layer(index.layer()).build(MemoryBackend::new());
    for n in 0..4_000u64 {
        let thread = ThreadId::new(format!("t{}", n % 40)).unwrap();
        let add = Add::new(thread, Role::User, Content::text(format!("m{n}")))
            .with_embedding(Embedding::new("m", vector(n, DIMS)));
        pipeline.add(add).await.unwrap();
    }
    let (mut found, queries) = (0, 100);
    for q in 0..queries {
        let query = Nearest::new(Embedding::new("m", vector(1_000_000 + q, DIMS))).with_limit(10);
        let exact = pipeline.nearest(query.clone()).await.unwrap();
        let rough = pipeline.nearest(query.approximate()).await.unwrap();
        assert_eq!(rough.len(), 10);
        for pair in rough.windows(2) {
            assert!(pair[0].score >= pair[1].score, "best first");
        }
        for hit in &rough {
            // Its exact score: the one an exact query of its thread answers for it.
            let alone = Nearest::new(Embedding::new("m", vector(1_000_000 + q, DIMS)))
                .in_thread(hit.message.thread_id.clone())
                .with_limit(1000);
            let scored = pipeline.nearest(alone).await.unwrap();
            let same = scored.iter().find(|n| n.message.id == hit.message.id).expect("in its thread");
            assert_eq!(same.score, hit.score, "an approximate hit's score is exact");
        }
        found += exact.iter().filter(|e| rough.iter().any(|r| r.message.id == e.message.id)).count();
    }
    let recall = found as f64 / (10 * queries) as f64;
    assert!(recall >= 0.95, "recall@10 {recall}");
    let stats = index.stats();
    assert_eq!(stats.fallbacks, 0, "{stats:?}");
}
