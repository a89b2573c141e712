//! persist-recall's `VectorIndex` over the backend (gated on `vectors` and `feed`): it answers
//! every `nearest` exactly as the store's scan does (the same hits, scores, messages and order),
//! on random stores with random filters, after every write that moves vectors (deletes,
//! truncations, clears, purges, thread deletes, changes of content, role and metadata, new
//! embeddings), for writes through another handle on the same storage, and over its budget.

use std::sync::Arc;

use persist_core::args::{Add, Delete, Reserve, Update, UpdateContent};
use persist_core::vector::{Embed, Embedding, Nearest};
use persist_core::{Content, Context, Message, Metadata, Pipeline, Role, TenantId, Timestamp};
use persist_ops::PipelineExt;
use persist_ops::lifecycle::Prune;
use persist_recall::VectorIndex;
use serde_json::json;

use crate::fixture::{ctx, gate, t, tenant};
use crate::{Factory, Outcome};

const DIMS: usize = 6;

/// A small deterministic generator (xorshift), so a failure repeats.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A vector of small whole numbers, so that equal scores (ties) are common.
    fn vector(&mut self) -> Vec<f32> {
        loop {
            let v: Vec<f32> = (0..DIMS).map(|_| self.below(3) as f32 - 1.0).collect();
            if v.iter().any(|x| *x != 0.0) {
                return v;
            }
        }
    }
}

fn user(n: usize) -> Metadata {
    Metadata::new().with("user_id", json!(format!("u{n}")))
}

/// What the check wrote, to pick messages and times from.
struct Written {
    messages: Vec<(Option<TenantId>, Message)>,
}

async fn fill(pipeline: &Pipeline, rng: &mut Rng, tenants: &[Option<TenantId>], prefix: &str) -> Written {
    let mut messages = Vec::new();
    for tenant in tenants {
        let scoped = pipeline.scoped(ctx(tenant.as_ref()));
        for n in 0..5 {
            let thread = t(&format!("{prefix}-{n}"));
            for i in 0..3 + rng.below(8) {
                let role = [Role::User, Role::Assistant, Role::Tool][rng.below(3)].clone();
                let text = Content::text(format!("{prefix} {n} {i}"));
                let message = if rng.below(5) == 0 {
                    // An interrupted reply, embedded after.
                    let reserved = scoped.reserve(Reserve::new(thread.clone(), role)).await.expect("reserve").message;
                    let partial = UpdateContent::partial(thread.clone(), reserved.id.clone(), text);
                    scoped.update_content(partial).await.expect("partial");
                    let stop = UpdateContent::interrupted(thread.clone(), reserved.id.clone());
                    let stopped = scoped.update_content(stop).await.expect("interrupt").message;
                    let embed = Embed::new(thread.clone(), stopped.id.clone(), Embedding::new("m", rng.vector()));
                    scoped.embed(embed).await.expect("embed");
                    stopped
                } else if rng.below(6) == 0 {
                    // No vector at all.
                    scoped.add(Add::new(thread.clone(), role, text)).await.expect("add").message
                } else {
                    let add = Add::new(thread.clone(), role, text).with_embedding(Embedding::new("m", rng.vector()));
                    scoped.add(add).await.expect("add").message
                };
                messages.push((tenant.clone(), message));
            }
            let tag = Update::thread(thread.clone()).with_metadata(user(rng.below(3)));
            scoped.update(tag).await.expect("tag the thread");
        }
    }
    Written { messages }
}

/// Random queries of each tenant, the index's answer against the store's.
async fn compare(plain: &Pipeline, indexed: &Pipeline, rng: &mut Rng, written: &Written, round: &str) {
    let times: Vec<Timestamp> = written.messages.iter().map(|(_, m)| m.created_at).collect();
    let tenants: Vec<Option<TenantId>> = vec![None, Some(tenant("acme"))];
    for q in 0..24 {
        let tenant = &tenants[q % tenants.len()];
        let mut query = Nearest::new(Embedding::new("m", rng.vector())).with_limit(1 + rng.below(12) as u32);
        match rng.below(5) {
            0 => query = query.for_resource("user_id", format!("u{}", rng.below(3))),
            1 => query = query.in_thread(t(&format!("ix-{}", rng.below(6)))),
            _ => {}
        }
        if rng.below(3) == 0 {
            query = query.with_roles([[Role::User, Role::Assistant, Role::Tool][rng.below(3)].clone()]);
        }
        if rng.below(4) == 0 {
            query = query.since(times[rng.below(times.len())]);
        }
        if rng.below(4) == 0 {
            query = query.only_interrupted(rng.below(2) == 0);
        }
        let query = query.with_context(ctx(tenant.as_ref()));
        let scanned = plain.nearest(query.clone()).await.map_err(|e| e.to_string());
        let answered = indexed.nearest(query.clone()).await.map_err(|e| e.to_string());
        assert_eq!(answered, scanned, "{round}: query {q} ({query:?}): the index against the store's scan");
        // Vectors of -1, 0 and 1 quantize without loss: the approximate answer is the exact one
        // here (and a store without an index answers an approximate query exactly).
        let rough = indexed.nearest(query.clone().approximate()).await.map_err(|e| e.to_string());
        assert_eq!(rough, scanned, "{round}: query {q} ({query:?}), approximate");
    }
}

/// The index answers exactly what the store's scan answers: random stores (two tenants, ties,
/// interrupted messages, messages without vectors), random filters (a user's threads, a thread,
/// roles, time, status, limits), after every write that moves vectors, for writes through
/// another handle, and over its budget (the store answers, as exactly).
pub async fn check_the_vector_index_answers_as_the_scan<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, vectors, feed);
    let b = Arc::clone(store.b());
    let plain = Pipeline::new(Arc::clone(&b));
    let index = VectorIndex::new();
    let indexed = Pipeline::builder().layer(index.layer()).build(Arc::clone(&b));
    let tenants = [None, Some(tenant("acme"))];
    let mut rng = Rng(0x5EED_1DE5);
    let mut written = fill(&plain, &mut rng, &tenants, "ix").await;
    compare(&plain, &indexed, &mut rng, &written, "built").await;
    let stats = index.stats();
    assert!(stats.answered > 0 && stats.builds == 2 && stats.tenants == 2, "{stats:?}");

    // Writes after the build: through the plain pipeline (another writer, as the index sees it).
    let scoped = plain.scoped(ctx(None));
    let pick = |rng: &mut Rng, written: &Written| {
        let mine: Vec<&Message> = written.messages.iter().filter(|(t, _)| t.is_none()).map(|(_, m)| m).collect();
        mine[rng.below(mine.len())].clone()
    };
    for _ in 0..3 {
        let gone = pick(&mut rng, &written);
        // Deleted before (a repeat of a pick): nothing to do.
        let _ = scoped.delete(Delete::message(gone.thread_id.clone(), gone.id.clone())).await;
    }
    let changed = pick(&mut rng, &written);
    let _ = scoped.update(Update::message(changed.thread_id.clone(), changed.id.clone()).with_role(Role::System)).await;
    let rewritten = pick(&mut rng, &written);
    let _ = scoped
        .update_content(UpdateContent::new(rewritten.thread_id.clone(), rewritten.id.clone(), Content::text("new")))
        .await;
    let again = pick(&mut rng, &written);
    let _ =
        scoped.embed(Embed::new(again.thread_id.clone(), again.id.clone(), Embedding::new("m", rng.vector()))).await;
    scoped.update(Update::thread(t("ix-0")).with_metadata(user(1))).await.expect("move a thread to u1");
    scoped.delete(Delete::after(t("ix-1"), 2)).await.expect("truncate");
    scoped.delete(Delete::clear(t("ix-2"))).await.expect("clear");
    scoped.delete(Delete::thread(t("ix-3"))).await.expect("delete a thread");
    scoped.delete(Delete::purge(t("ix-3"))).await.expect("purge it");
    compare(&plain, &indexed, &mut rng, &written, "after deletes and changes").await;

    // Retention (persist-ops' prune: each thread's latest three messages kept, every tenant's),
    // whose deletes go through the pipeline as any caller's.
    let report = plain.prune(Prune::new().with_keep_latest(3)).await.expect("prune");
    assert!(report.done && report.deleted_messages > 0, "one batch holds every thread here: {report:?}");
    compare(&plain, &indexed, &mut rng, &written, "after retention").await;

    // A message without a vector, seen by the index, then embedded: the embed's own event.
    let fresh = scoped.add(Add::new(t("ix-0"), Role::User, Content::text("fresh"))).await.expect("add").message;
    let alone = vec![0.25, -0.5, 0.125, 0.75, -0.375, 0.0625];
    let query =
        Nearest::new(Embedding::new("m", alone.clone())).in_thread(t("ix-0")).with_limit(1).with_context(ctx(None));
    let before = indexed.nearest(query.clone()).await.expect("nearest");
    assert!(before.iter().all(|n| n.message.id != fresh.id));
    scoped.embed(Embed::new(t("ix-0"), fresh.id.clone(), Embedding::new("m", alone))).await.expect("embed");
    let after = indexed.nearest(query).await.expect("nearest");
    assert_eq!(after.first().map(|n| &n.message.id), Some(&fresh.id), "an embed is in the next answer");
    written.messages.push((None, fresh));

    // A thread deleted, purged and made again under its id: only the new messages' vectors.
    scoped.delete(Delete::thread(t("ix-4"))).await.expect("delete");
    scoped.delete(Delete::purge(t("ix-4")).freeing_id(true)).await.expect("purge");
    let add = Add::new(t("ix-4"), Role::User, Content::text("again")).with_embedding(Embedding::new("m", rng.vector()));
    let again = scoped.add(add).await.expect("add again").message;
    written.messages.push((None, again));
    compare(&plain, &indexed, &mut rng, &written, "a thread made again").await;

    // Another handle's writes (another process, another instance) are in the next answer.
    let other = Pipeline::new(store.second_handle().await);
    let more = fill(&other, &mut rng, &tenants, "ix-other").await;
    written.messages.extend(more.messages);
    compare(&plain, &indexed, &mut rng, &written, "another handle's writes").await;

    // Over its budget the store answers, exactly as before.
    let small = VectorIndex::new().with_budget(1);
    let capped = Pipeline::builder().layer(small.layer()).build(Arc::clone(&b));
    compare(&plain, &capped, &mut rng, &written, "over the budget").await;
    let stats = small.stats();
    assert!(stats.answered == 0 && stats.fallbacks > 0 && stats.resident_bytes == 0, "{stats:?}");

    drop((plain, indexed, capped, other, scoped, b));
    store.finish().await
}

/// A budget holding one tenant of two: the tenant asked least recently is dropped (and built
/// again when asked), every answer still the store's.
pub async fn check_the_vector_index_keeps_to_its_budget<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, vectors, feed);
    let b = Arc::clone(store.b());
    let plain = Pipeline::new(Arc::clone(&b));
    let tenants = [None, Some(tenant("acme"))];
    let mut rng = Rng(0x00B0_D6E7);
    let written = fill(&plain, &mut rng, &tenants, "ix").await;
    // Room for the larger of the two, not both.
    let probe = VectorIndex::new();
    let probing = Pipeline::builder().layer(probe.layer()).build(Arc::clone(&b));
    let mut sizes = Vec::new();
    for tenant in &tenants {
        let query =
            Nearest::new(Embedding::new("m", rng.vector())).with_context(Context::new().for_tenant(tenant.clone()));
        let before = probe.stats().resident_bytes;
        probing.nearest(query).await.expect("nearest");
        sizes.push(probe.stats().resident_bytes - before);
    }
    let budget = sizes.iter().copied().max().unwrap_or_default() + sizes.iter().copied().min().unwrap_or_default() / 2;
    let index = VectorIndex::new().with_budget(budget);
    let indexed = Pipeline::builder().layer(index.layer()).build(Arc::clone(&b));
    compare(&plain, &indexed, &mut rng, &written, "within a budget of one tenant").await;
    let stats = index.stats();
    assert!(stats.resident_bytes <= budget, "{stats:?}");
    assert!(stats.evictions > 0 && stats.builds > 2 && stats.tenants == 1, "{stats:?}");
    drop((plain, probing, indexed, b));
    store.finish().await
}

/// A folder of its own under the system's temporary folder, removed when dropped.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nth = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let unique = format!("persist-conformance-{name}-{}-{nanos}-{nth}", std::process::id());
        Self(std::env::temp_dir().join(unique))
    }

    /// Until every file of `names` is in the folder (they are written in the background): a
    /// minute at most.
    async fn wait_for(&self, names: &[&str]) {
        for _ in 0..600 {
            if names.iter().all(|name| self.0.join(name).exists()) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the index's files {names:?} were not written in {}", self.0.display());
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// With files (`with_snapshots`): an index started again over the storage reads each tenant's
/// file back and catches up from the feed (nothing built), answering as the scan after the writes
/// made while no index ran (deletes among its newest messages, a thread deleted, embeds, new
/// messages); the same files over another store are set aside and its index built from its own
/// rows; a forgotten tenant's file is removed.
pub async fn check_the_vector_index_reads_its_files_after_a_restart<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, vectors, feed);
    let files = Scratch::new("vector-index");
    let (default_file, acme_file) = ("default.vectors", "tenant-61636d65.vectors");
    let b = Arc::clone(store.b());
    let plain = Pipeline::new(Arc::clone(&b));
    let tenants = [None, Some(tenant("acme"))];
    let mut rng = Rng(0x0F11_E5ED);
    let mut written = fill(&plain, &mut rng, &tenants, "ix").await;
    let first = VectorIndex::new().with_snapshots(&files.0);
    let indexed = Pipeline::builder().layer(first.layer()).build(Arc::clone(&b));
    compare(&plain, &indexed, &mut rng, &written, "built, its files written").await;
    files.wait_for(&[default_file, acme_file]).await;
    drop((indexed, first));

    // While no index runs: the newest messages deleted, a thread deleted, an embed, more messages.
    let scoped = plain.scoped(ctx(None));
    let mine: Vec<Message> = written.messages.iter().filter(|(t, _)| t.is_none()).map(|(_, m)| m.clone()).collect();
    for gone in mine.iter().rev().take(3) {
        scoped.delete(Delete::message(gone.thread_id.clone(), gone.id.clone())).await.expect("delete");
    }
    scoped.delete(Delete::thread(t("ix-3"))).await.expect("delete a thread");
    let again = &mine[0];
    let embed = Embed::new(again.thread_id.clone(), again.id.clone(), Embedding::new("m", rng.vector()));
    scoped.embed(embed).await.expect("embed");
    written.messages.extend(fill(&plain, &mut rng, &tenants, "ix-late").await.messages);

    // Started again, over another handle: from the files and the feed, nothing built.
    let restarted = VectorIndex::new().with_snapshots(&files.0);
    let indexed = Pipeline::builder().layer(restarted.layer()).build(store.second_handle().await);
    compare(&plain, &indexed, &mut rng, &written, "started again from its files").await;
    let stats = restarted.stats();
    assert!(stats.restored == 2 && stats.builds == 0 && stats.fallbacks == 0, "{stats:?}");
    restarted.forget(Some(&tenant("acme")));
    assert!(!files.0.join(acme_file).exists(), "a forgotten tenant's file is removed");
    drop(indexed);

    // Another store, written as this one was (the same threads, more events): this store's file
    // is not its own.
    let other = crate::fixture::open!(factory);
    let theirs = Pipeline::new(Arc::clone(other.b()));
    let mut their_messages = fill(&theirs, &mut Rng(0x07E5_7042), &tenants, "ix").await;
    their_messages.messages.extend(fill(&theirs, &mut Rng(0x07E5_7043), &tenants, "ix-late").await.messages);
    let stranger = VectorIndex::new().with_snapshots(&files.0);
    let indexed = Pipeline::builder().layer(stranger.layer()).build(Arc::clone(other.b()));
    compare(&theirs, &indexed, &mut rng, &their_messages, "another store's file").await;
    let stats = stranger.stats();
    assert!(stats.restored == 0 && stats.builds == 2, "{stats:?}");

    drop((plain, scoped, indexed, theirs, b));
    let _ = other.finish().await;
    store.finish().await
}
