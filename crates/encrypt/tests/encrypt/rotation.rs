//! Key rotation: a new ring key re-seals, through the pipeline, everything older keys sealed,
//! while writers go on writing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use persist::args::{Add, Update, UpdateContent};
use persist::encrypt::{EncryptLayer, KeyId, KeyRing, RotateKeys, RotationReport, SecretKey};
use persist::read::{GetMessage, GetThread, ListMessages, ListThreads};
use persist::sqlite::SqliteBackend;
use persist::{Content, Context, Metadata, Pipeline, Role, TenantId, ThreadId};
use serde_json::json;

use crate::support;

fn thread(id: &str) -> ThreadId {
    ThreadId::new(id).unwrap()
}

fn tenant(name: &str) -> Context {
    Context::new().with_tenant(TenantId::new(name).unwrap())
}

/// The key id of every envelope (content, sealed metadata, titles) in the store.
async fn key_ids(raw: &Pipeline) -> Vec<String> {
    let mut ids = Vec::new();
    let threads = raw.threads(ListThreads::new().across_tenants(true).with_limit(1000)).await.unwrap();
    let id_of = |text: &str| text.split('.').nth(1).unwrap_or("clear").to_owned();
    for th in &threads.items {
        if let Some(title) = &th.title {
            ids.push(id_of(title.strip_prefix("persist:sealed:").unwrap_or("clear")));
        }
        let context = Context::new().for_tenant(th.tenant.clone());
        let listing = ListMessages::new(th.id.clone()).include_reserved(true).with_limit(1000).with_context(context);
        for message in raw.list(listing).await.unwrap().items {
            if !message.content.is_placeholder() {
                let value = message.content.to_value();
                ids.push(id_of(value["persist:sealed"].as_str().unwrap_or("clear")));
            }
            if let Some(secret) = message.metadata.get("secret") {
                ids.push(id_of(secret["persist:sealed"].as_str().unwrap_or("clear")));
            }
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_reseals_everything_through_the_pipeline_while_writers_write() {
    let ring = support::ring();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteBackend::open(dir.path().join("rotate.db")).await.unwrap();
    let encryption = support::layer(ring.clone());
    let pipeline = Pipeline::builder().layer(encryption.clone()).build(store.clone());
    let raw = Pipeline::new(store.clone());
    let mut written = Vec::new();
    for (n, context) in [Context::new(), tenant("acme"), tenant("globex")].into_iter().enumerate() {
        for t in 0..4 {
            let id = thread(&format!("t{t}"));
            let title = Update::thread(id.clone()).with_title(Some(format!("title {n}/{t}")));
            for i in 0..6 {
                let metadata = Metadata::new().with("secret", json!(format!("s{i}")));
                let add =
                    Add::new(id.clone(), Role::User, Content::text(format!("{n}/{t}/{i}"))).with_metadata(metadata);
                written.push((context.clone(), pipeline.add(add.with_context(context.clone())).await.unwrap().message));
            }
            pipeline.update(title.with_context(context.clone())).await.unwrap();
        }
    }
    assert!(key_ids(&raw).await.iter().all(|id| id == "k1"));

    ring.add_key(KeyId::new("k2").unwrap(), SecretKey::new([22; 32])).unwrap();
    // Writers keep rewriting messages while the rotation runs.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (pipeline, stop, written) = (pipeline.clone(), stop.clone(), written.clone());
            tokio::spawn(async move {
                let mut rewrites = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (context, message) = &written[(rewrites * 7 + w * 13) % written.len()];
                    let text = format!("rewritten {w}-{rewrites}");
                    let update = UpdateContent::new(message.thread_id.clone(), message.id.clone(), Content::text(text))
                        .with_context(context.clone());
                    pipeline.update_content(update).await.unwrap();
                    rewrites += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                rewrites
            })
        })
        .collect();
    // Passes of batches of 2 threads, the first while the writers write, then until a pass
    // re-seals nothing.
    let mut passes = Vec::new();
    for pass in 0..10 {
        if pass == 1 {
            stop.store(true, Ordering::Relaxed);
        }
        let (mut batch, mut total) = (RotateKeys::new().with_threads(2), RotationReport::default());
        loop {
            let report = encryption.rotate(&pipeline, batch.clone()).await.unwrap();
            assert_eq!(report.unreadable, 0);
            (total.threads, total.messages) = (total.threads + report.threads, total.messages + report.messages);
            (total.resealed, total.skipped) = (total.resealed + report.resealed, total.skipped + report.skipped);
            if report.done {
                break;
            }
            batch = batch.with_cursor(report.next_cursor);
        }
        passes.push((total.threads, total.messages, total.resealed, total.skipped));
        if pass > 0 && total.resealed == 0 && total.skipped == 0 {
            break;
        }
    }
    let rewrites: usize = futures_sum(writers).await;
    assert!(rewrites > 0, "the writers wrote while the first pass ran");
    assert!(passes[0].2 > 0, "the first pass re-sealed: {passes:?}");
    assert_eq!(
        passes.last().copied(),
        Some((12, 72, 0, 0)),
        "a last pass visits everything and finds nothing: {passes:?}"
    );
    assert!(key_ids(&raw).await.iter().all(|id| id == "k2"), "every envelope is the new key's");
    // Every value still opens, and the titles and metadata are what was written.
    for (context, message) in &written {
        let get = GetMessage::new(message.thread_id.clone(), message.id.clone()).with_context(context.clone());
        let now = pipeline.get(get).await.unwrap().unwrap();
        assert_eq!(now.metadata, message.metadata);
        let text = now.content.to_text();
        assert!(text == message.content.to_text() || text.starts_with("rewritten"), "{text}");
    }
    let th = pipeline.get_thread(GetThread::new(thread("t3")).with_context(tenant("globex"))).await.unwrap().unwrap();
    assert_eq!(th.title.as_deref(), Some("title 2/3"));
    // The old key can go: nothing needs it any more.
    let only_new = KeyRing::new().with_key(KeyId::new("k2").unwrap(), SecretKey::new([22; 32])).unwrap();
    let fresh =
        Pipeline::builder().layer(EncryptLayer::new(only_new).seal_metadata(["secret"]).seal_titles(true)).build(store);
    assert_eq!(fresh.list(ListMessages::new(thread("t0")).with_context(tenant("acme"))).await.unwrap().items.len(), 6);
}

async fn futures_sum(tasks: Vec<tokio::task::JoinHandle<usize>>) -> usize {
    let mut sum = 0;
    for task in tasks {
        sum += task.await.unwrap();
    }
    sum
}
