//! MirrorLayer: generated ids, writes shadowed (committed ones only), failures observed not surfaced.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use persist::args::{Add, UpdateContent};
use persist::layer::{InterceptLayer, MirrorLayer, ObserveLayer};
use persist::memory::MemoryBackend;
use persist::read::{GetMessage, GetThread, ListMessages};
use persist::{Content, MessageId, PersistArgs, PersistError, PersistOp, Pipeline, Role};

use super::{keyed_add, thread};

#[tokio::test]
async fn mirror_stores_a_generated_id_under_the_primarys_id() {
    let shadow = MemoryBackend::new();
    let mirror = MirrorLayer::new(Pipeline::new(shadow.clone()));
    let pipeline = Pipeline::builder().layer(mirror.clone()).build(MemoryBackend::new());
    let added = pipeline.add(Add::new(thread("t"), Role::User, Content::text("x"))).await.unwrap().message;
    mirror.flushed().await;
    let copy = Pipeline::new(shadow).get(GetMessage::new(thread("t"), added.id.clone())).await.unwrap();
    assert_eq!(copy.map(|m| m.id), Some(added.id));
}

#[tokio::test]
async fn a_mirror_shadows_writes_but_not_reads() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let target = Pipeline::builder()
        .layer(ObserveLayer::new().on_args(move |args: &PersistArgs| log.lock().unwrap().push(args.op())))
        .build(MemoryBackend::new());
    let mirror = MirrorLayer::new(target);
    let pipeline = Pipeline::builder().layer(mirror.clone()).build(MemoryBackend::new());
    pipeline.add(keyed_add("m", "x")).await.unwrap();
    pipeline.list(ListMessages::new(thread("m"))).await.unwrap();
    pipeline.get_thread(GetThread::new(thread("m"))).await.unwrap();
    mirror.flushed().await;
    assert_eq!(*seen.lock().unwrap(), [PersistOp::Add], "reads are answered by the primary alone");
}

#[tokio::test]
async fn mirror_failures_are_observed_never_surfaced_and_the_primary_wins() {
    let failed = Arc::new(AtomicU64::new(0));
    let seen = failed.clone();
    let broken = Pipeline::builder()
        .layer(InterceptLayer::new(|_: PersistArgs| -> persist::layer::Decision {
            std::ops::ControlFlow::Break(Err(PersistError::rejected("mirror is down")))
        }))
        .build(MemoryBackend::new());
    let mirror = MirrorLayer::new(broken).on_error(move |_, _| {
        seen.fetch_add(1, Ordering::SeqCst);
    });
    let primary = MemoryBackend::new();
    let pipeline = Pipeline::builder().layer(mirror.clone()).build(primary.clone());
    for i in 0..3 {
        pipeline.add(keyed_add("t", &format!("k{i}"))).await.expect("the primary's answer wins");
    }
    mirror.flushed().await;
    assert_eq!((mirror.failures(), failed.load(Ordering::SeqCst)), (3, 3));
    assert_eq!(primary.message_count(), 3);
}

#[tokio::test]
async fn mirror_shadows_only_committed_writes() {
    let shadow = MemoryBackend::new();
    let mirror = MirrorLayer::new(Pipeline::new(shadow.clone()));
    let pipeline = Pipeline::builder().layer(mirror.clone()).build(MemoryBackend::new());
    let id = MessageId::new("m1").unwrap();
    pipeline.add(keyed_add("t", "k").with_id(id.clone())).await.unwrap();
    let refused = UpdateContent::new(thread("t"), id.clone(), Content::text("x")).with_expected_version(9);
    assert!(pipeline.update_content(refused).await.is_err());
    pipeline.update_content(UpdateContent::new(thread("t"), id.clone(), Content::text("v2"))).await.unwrap();
    mirror.flushed().await;
    let copy = Pipeline::new(shadow).get(GetMessage::new(thread("t"), id)).await.unwrap().unwrap();
    assert_eq!((copy.content.to_text().as_str(), copy.version), ("v2", 2));
}
