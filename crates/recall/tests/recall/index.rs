//! `VectorIndex`'s approximate answers on vectors that do not quantize exactly: every hit
//! carries its exact score, in the exact order, and the exact top 10 is found at least 95% of
//! the time. (Its exact answers are checked against every backend's scan by the conformance
//! suite, `vector_index`.)

use persist::args::{Add, Delete};
use persist::memory::MemoryBackend;
use persist::recall::VectorIndex;
use persist::vector::{Embedding, Nearest};
use persist::{Content, Pipeline, Role, ThreadId};

/// Message `n` on thread `t{n % threads}`, with `vector(n, dims)` under model `m`.
fn numbered(n: u64, threads: u64, dims: usize) -> Add {
    Add::new(ThreadId::new(format!("t{}", n % threads)).unwrap(), Role::User, Content::text(format!("m{n}")))
        .with_embedding(Embedding::new("m", vector(n, dims)))
}

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

/// A unit vector near topic `topic`'s centre: the centre plus noise of half its length, as
/// embeddings of texts on one subject sit near each other.
fn on_topic(topic: u64, n: u64, dims: usize) -> Vec<f32> {
    let unit = |mut v: Vec<f32>| {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        v
    };
    let (centre, noise) = (unit(vector(topic, dims)), unit(vector(5_000_000 + n, dims)));
    unit(centre.iter().zip(&noise).map(|(c, e)| c + 0.5 * e).collect())
}

/// Approximate queries until the index holds its lists (learnt on a thread of their own while
/// queries go on), each answered meanwhile.
async fn until_learnt(pipeline: &Pipeline, index: &VectorIndex, query: Nearest) {
    for _ in 0..3_000 {
        let rough = pipeline.nearest(query.clone().approximate()).await.unwrap();
        assert_eq!(rough.len(), query.limit as usize, "answered while the lists are learnt");
        if index.stats().clustered > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the lists were not learnt: {:?}", index.stats());
}

#[tokio::test]
async fn over_many_vectors_approximate_queries_read_the_nearest_lists() {
    const DIMS: usize = 48;
    let index = VectorIndex::new().with_clusters_from(1_000);
    let pipeline = Pipeline::builder().layer(index.layer()).build(MemoryBackend::new());
    let thread = |n: u64| ThreadId::new(format!("t{}", n % 40)).unwrap();
    for n in 0..6_000u64 {
        let add = Add::new(thread(n), Role::User, Content::text(format!("m{n}")))
            .with_embedding(Embedding::new("m", on_topic(n % 60, n, DIMS)));
        pipeline.add(add).await.unwrap();
    }
    let query = |q: u64| Nearest::new(Embedding::new("m", on_topic(q % 60, 9_000_000 + q, DIMS))).with_limit(10);
    // Exact queries read every vector: no lists learnt.
    pipeline.nearest(query(0)).await.unwrap();
    assert_eq!(index.stats().clustered, 0);
    until_learnt(&pipeline, &index, query(0)).await;
    let (mut found, mut found_in_thread, queries) = (0, 0, 60);
    for q in 0..queries {
        let exact = pipeline.nearest(query(q)).await.unwrap();
        let rough = pipeline.nearest(query(q).approximate()).await.unwrap();
        assert_eq!(rough.len(), 10);
        for pair in rough.windows(2) {
            assert!(pair[0].score >= pair[1].score, "best first");
        }
        found += exact.iter().filter(|e| rough.iter().any(|r| r.message.id == e.message.id)).count();
        // A filter that passes one vector in forty: the lists are read until enough pass it.
        let only = thread(q);
        let exact = pipeline.nearest(query(q).in_thread(only.clone())).await.unwrap();
        let rough = pipeline.nearest(query(q).in_thread(only.clone()).approximate()).await.unwrap();
        assert_eq!(rough.len(), 10);
        assert!(rough.iter().all(|hit| hit.message.thread_id == only), "only the thread's");
        found_in_thread += exact.iter().filter(|e| rough.iter().any(|r| r.message.id == e.message.id)).count();
    }
    assert_eq!(index.stats().clustered, 6_000, "{:?}", index.stats());
    let recall = found as f64 / (10 * queries) as f64;
    assert!(recall >= 0.95, "recall@10 {recall}");
    let recall = found_in_thread as f64 / (10 * queries) as f64;
    assert!(recall >= 0.95, "recall@10 in one thread {recall}");

    // The lists follow the writes: a vector written now is found, a thread deleted is not.
    let target = on_topic(7, 77_777, DIMS);
    let add =
        Add::new(thread(5), Role::User, Content::text("late")).with_embedding(Embedding::new("m", target.clone()));
    pipeline.add(add).await.unwrap();
    let best = pipeline.nearest(Nearest::new(Embedding::new("m", target)).with_limit(1).approximate()).await.unwrap();
    assert_eq!(best[0].message.content, Content::text("late"));
    pipeline.delete(Delete::thread(thread(3))).await.unwrap();
    for q in 0..20 {
        let rough = pipeline.nearest(query(q).with_limit(50).approximate()).await.unwrap();
        assert_eq!(rough.len(), 50);
        assert!(rough.iter().all(|hit| hit.message.thread_id != thread(3)), "a deleted thread's vectors are gone");
    }
    let stats = index.stats();
    assert_eq!(stats.clustered, 6_001 - 150, "{stats:?}");
    assert_eq!(stats.fallbacks, 0, "{stats:?}");
}

/// A feed that retention trimmed past the index's position: the index builds again from the
/// rows and answers as the store.
#[tokio::test]
async fn a_feed_trimmed_past_the_index_makes_it_build_again() {
    use persist::feed::FeedRetention;
    let store = MemoryBackend::new().with_feed(Some(FeedRetention::forever().with_max_events(Some(8))));
    let index = VectorIndex::new();
    let pipeline = Pipeline::builder().layer(index.layer()).build(store.clone());
    let add = |n: u64| numbered(n, 3, 8);
    pipeline.add(add(0)).await.unwrap();
    let query = Nearest::new(Embedding::new("m", vector(99, 8))).with_limit(5);
    pipeline.nearest(query.clone()).await.unwrap();
    assert_eq!(index.stats().builds, 1);
    // Thirty events: the feed keeps the last eight, far past the index's position.
    for n in 1..=30 {
        pipeline.add(add(n)).await.unwrap();
    }
    let found = pipeline.nearest(query.clone()).await.unwrap();
    assert_eq!(found, Pipeline::builder().build(store).nearest(query).await.unwrap());
    let stats = index.stats();
    assert_eq!((stats.builds, stats.vectors, stats.fallbacks), (2, 31, 0), "{stats:?}");
}

/// Approximate queries over lists with the filters an index applies beside each vector (role,
/// time, status): every hit passes them, and the exact filtered top 10 is found as often as
/// without a filter. The lists are read until enough vectors pass, however few do.
#[tokio::test]
async fn over_lists_approximate_queries_keep_the_role_time_and_status_filters() {
    use persist::args::{Reserve, UpdateContent};
    use persist::vector::Embed;
    use persist::{Status, Timestamp};
    const DIMS: usize = 32;
    let index = VectorIndex::new().with_clusters_from(1_000);
    let pipeline = Pipeline::builder().layer(index.layer()).build(MemoryBackend::new());
    let thread = |n: u64| ThreadId::new(format!("t{}", n % 20)).unwrap();
    let mut times = Vec::new();
    for n in 0..3_000u64 {
        let (role, vector) = (if n % 3 == 0 { Role::Assistant } else { Role::User }, on_topic(n % 40, n, DIMS));
        let message = if n % 10 == 7 {
            // A reply cut short, embedded after.
            let reserved = pipeline.reserve(Reserve::new(thread(n), Role::Assistant)).await.unwrap().message;
            let partial = UpdateContent::partial(thread(n), reserved.id.clone(), Content::text(format!("m{n}")));
            pipeline.update_content(partial).await.unwrap();
            let stop = UpdateContent::interrupted(thread(n), reserved.id.clone());
            let stopped = pipeline.update_content(stop).await.unwrap().message;
            pipeline.embed(Embed::new(thread(n), stopped.id.clone(), Embedding::new("m", vector))).await.unwrap();
            stopped
        } else {
            let add =
                Add::new(thread(n), role, Content::text(format!("m{n}"))).with_embedding(Embedding::new("m", vector));
            pipeline.add(add).await.unwrap().message
        };
        times.push(message.created_at);
    }
    let since: Timestamp = times[2_000];
    let query = |q: u64| Nearest::new(Embedding::new("m", on_topic(q % 40, 9_000_000 + q, DIMS))).with_limit(10);
    type Filter = fn(Nearest, Timestamp) -> Nearest;
    let filters: [(&str, Filter); 4] = [
        ("assistant", |query, _| query.with_roles([Role::Assistant])),
        ("since", |query, since| query.since(since)),
        ("interrupted", |query, _| query.only_interrupted(true)),
        ("user, until, complete", |query, since| query.with_roles([Role::User]).until(since).only_interrupted(false)),
    ];
    until_learnt(&pipeline, &index, query(0)).await;
    for (name, filter) in filters {
        let (mut found, queries) = (0, 30);
        for q in 0..queries {
            let exact = pipeline.nearest(filter(query(q), since)).await.unwrap();
            let rough = pipeline.nearest(filter(query(q), since).approximate()).await.unwrap();
            assert_eq!(rough.len(), 10, "{name}");
            for hit in &rough {
                let asked = filter(query(q), since);
                assert!(asked.admits(&hit.message), "{name}: {:?} passes the filter", hit.message);
            }
            if name == "interrupted" {
                assert!(rough.iter().all(|hit| hit.message.status == Status::Interrupted), "{name}");
            }
            found += exact.iter().filter(|e| rough.iter().any(|r| r.message.id == e.message.id)).count();
        }
        let recall = found as f64 / (10 * queries) as f64;
        assert!(recall >= 0.95, "{name}: recall@10 {recall}");
    }
    let stats = index.stats();
    assert_eq!(stats.clustered, 3_000, "{stats:?}");
    assert_eq!(stats.fallbacks, 0, "{stats:?}");
}

/// A tenant the index cannot hold (over its budget alone) is answered by the store, and the
/// index does not try again for a minute: then it does, and holds it once it fits.
#[tokio::test(start_paused = true)]
async fn a_tenant_the_index_could_not_hold_is_tried_again_after_a_minute() {
    use std::time::Duration;
    let store = MemoryBackend::new();
    let add = |n: u64| numbered(n, 2, 64);
    let plain = Pipeline::builder().build(store.clone());
    let query = Nearest::new(Embedding::new("m", vector(99, 64))).with_limit(5);
    // Room for one thread's twenty vectors (what an index of them holds, and half again), not
    // for forty.
    for n in (0..40).step_by(2) {
        plain.add(add(n)).await.unwrap();
    }
    let probe = VectorIndex::new();
    Pipeline::builder().layer(probe.layer()).build(store.clone()).nearest(query.clone()).await.unwrap();
    let one_thread = probe.stats().resident_bytes;
    for n in (1..40).step_by(2) {
        plain.add(add(n)).await.unwrap();
    }
    let index = VectorIndex::new().with_budget(one_thread * 3 / 2);
    let pipeline = Pipeline::builder().layer(index.layer()).build(store);
    let exact = plain.nearest(query.clone()).await.unwrap();
    assert_eq!(pipeline.nearest(query.clone()).await.unwrap(), exact);
    let stats = index.stats();
    assert_eq!((stats.builds, stats.answered, stats.fallbacks), (1, 0, 1), "over the budget: {stats:?}");
    // Within the minute the store answers, without another build.
    tokio::time::advance(Duration::from_secs(59)).await;
    plain.delete(Delete::thread(ThreadId::new("t1").unwrap())).await.unwrap();
    let exact = plain.nearest(query.clone()).await.unwrap();
    assert_eq!(pipeline.nearest(query.clone()).await.unwrap(), exact);
    let stats = index.stats();
    assert_eq!((stats.builds, stats.answered, stats.fallbacks), (1, 0, 2), "held off: {stats:?}");
    // After it, the index builds again, and now holds the tenant.
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(pipeline.nearest(query.clone()).await.unwrap(), exact);
    let stats = index.stats();
    assert_eq!((stats.builds, stats.answered, stats.fallbacks, stats.vectors), (2, 1, 2, 20), "{stats:?}");
}

/// An index started again with a file that is not whole (a bit changed, cut short, empty, of
/// another format) or whose events retention has trimmed since sets it aside: it builds from
/// the rows and answers as the store, and writes a whole file in its place.
#[tokio::test]
async fn a_file_not_whole_or_behind_a_trimmed_feed_is_set_aside() {
    use persist::feed::FeedRetention;
    let store = MemoryBackend::new().with_feed(Some(FeedRetention::forever().with_max_events(Some(50))));
    let plain = Pipeline::builder().build(store.clone());
    let add = |n: u64| numbered(n, 3, 8);
    for n in 0..20 {
        plain.add(add(n)).await.unwrap();
    }
    let query = Nearest::new(Embedding::new("m", vector(99, 8))).with_limit(5);
    let files = tempfile::tempdir().unwrap();
    let file = |dir: &std::path::Path| dir.join("default.vectors");
    let started = |dir: &std::path::Path| {
        let index = VectorIndex::new().with_snapshots(dir);
        (Pipeline::builder().layer(index.layer()).build(store.clone()), index)
    };
    let written = |dir: std::path::PathBuf| async move {
        for _ in 0..600 {
            if let Ok(bytes) = std::fs::read(dir.join("default.vectors")) {
                return bytes;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("no file written");
    };
    let (pipeline, index) = started(files.path());
    let expected = plain.nearest(query.clone()).await.unwrap();
    assert_eq!(pipeline.nearest(query.clone()).await.unwrap(), expected);
    assert_eq!(index.stats().builds, 1);
    let whole = written(files.path().to_owned()).await;

    let (again, index) = started(files.path());
    assert_eq!(again.nearest(query.clone()).await.unwrap(), expected);
    assert_eq!((index.stats().restored, index.stats().builds), (1, 0), "a whole file is read back");

    let mut flipped = whole.clone();
    flipped[whole.len() / 2] ^= 0x10;
    let mut other_version = whole.clone();
    other_version[16] = 9;
    for (case, bytes) in [
        ("a bit changed", flipped),
        ("cut short", whole[..whole.len() - 9].to_vec()),
        ("its header alone", whole[..20].to_vec()),
        ("empty", Vec::new()),
        ("its header changed", other_version),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(file(dir.path()), &bytes).unwrap();
        let (pipeline, index) = started(dir.path());
        assert_eq!(pipeline.nearest(query.clone()).await.unwrap(), expected, "{case}");
        let stats = index.stats();
        assert_eq!((stats.restored, stats.builds, stats.fallbacks), (0, 1, 0), "{case}: {stats:?}");
        // Written again, whole, in its place: the same bytes (nothing changed since).
        for _ in 0..600 {
            if std::fs::read(file(dir.path())).is_ok_and(|now| now == whole) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(std::fs::read(file(dir.path())).is_ok_and(|now| now == whole), "{case}: written again");
        let (pipeline, index) = started(dir.path());
        assert_eq!(pipeline.nearest(query.clone()).await.unwrap(), expected, "{case}, read back");
        assert_eq!(index.stats().restored, 1, "{case}: the file written in its place is read back");
    }

    // Sixty events while no index runs: the feed keeps fifty, past the file's position.
    for n in 20..80 {
        plain.add(add(n)).await.unwrap();
    }
    let (pipeline, index) = started(files.path());
    assert_eq!(pipeline.nearest(query.clone()).await.unwrap(), plain.nearest(query).await.unwrap());
    let stats = index.stats();
    assert_eq!((stats.restored, stats.builds, stats.vectors), (0, 1, 80), "{stats:?}");
}

/// A file is written again after a tenth of the index's vectors' worth of changes (at least
/// 1,000), so a restart catches up from there; the first write also removes the partial files
/// that writers which died left in the folder, and not a living process's.
#[tokio::test]
async fn a_file_is_written_again_after_enough_changes_and_left_partial_files_are_removed() {
    use persist::feed::FeedRetention;
    let store = MemoryBackend::new().with_feed(Some(FeedRetention::forever()));
    let plain = Pipeline::builder().build(store.clone());
    let add = |n: u64| numbered(n, 5, 8);
    for n in 0..20 {
        plain.add(add(n)).await.unwrap();
    }
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("default.vectors");
    // A dead writer's partial file (no process has that id) and a living one's (init's).
    let dead = files.path().join("default.partial-4294967295");
    let living = files.path().join("tenant-61636d65.partial-1");
    std::fs::write(&dead, b"cut short").unwrap();
    std::fs::write(&living, b"being written").unwrap();
    let started = || {
        let index = VectorIndex::new().with_snapshots(files.path());
        (Pipeline::builder().layer(index.layer()).build(store.clone()), index)
    };
    let query = Nearest::new(Embedding::new("m", vector(99, 8))).with_limit(5);
    let changed = |from: Option<Vec<u8>>| {
        let file = file.clone();
        async move {
            for _ in 0..600 {
                if let Ok(bytes) = std::fs::read(&file)
                    && Some(&bytes) != from.as_ref()
                {
                    return bytes;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            panic!("the file was not written");
        }
    };

    let (pipeline, index) = started();
    assert_eq!(pipeline.nearest(query.clone()).await.unwrap(), plain.nearest(query.clone()).await.unwrap());
    let first = changed(None).await;
    assert_eq!(index.stats().saves, 1, "written once, after the build");
    assert!(!dead.exists(), "a dead writer's partial file is removed");
    assert!(living.exists(), "a living process's is left");

    // 999 changes behind the index's back, then a query reads them: not yet written again.
    for n in 20..1_019 {
        plain.add(add(n)).await.unwrap();
    }
    assert_eq!(pipeline.nearest(query.clone()).await.unwrap(), plain.nearest(query.clone()).await.unwrap());
    assert_eq!(index.stats().saves, 1, "written again after 1,000 changes, not before");
    assert_eq!(std::fs::read(&file).unwrap(), first);
    // The thousandth: written again, as the index now is.
    plain.add(add(1_019)).await.unwrap();
    assert_eq!(pipeline.nearest(query.clone()).await.unwrap(), plain.nearest(query.clone()).await.unwrap());
    assert_eq!(index.stats().saves, 2);
    changed(Some(first)).await;
    assert_eq!(index.stats().builds, 1);

    // Started again: read back from the second file, nothing left to catch up.
    let (again, index) = started();
    assert_eq!(again.nearest(query.clone()).await.unwrap(), plain.nearest(query).await.unwrap());
    let stats = index.stats();
    assert_eq!((stats.restored, stats.builds, stats.vectors), (1, 0, 1_020), "{stats:?}");
}
