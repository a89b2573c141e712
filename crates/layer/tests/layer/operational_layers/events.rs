//! Events: committed writes published per thread and tenant, and lagging subscribers.

use persist::args::{Reserve, UpdateContent};
use persist::layer::Events;
use persist::memory::MemoryBackend;
use persist::{Content, Context, MessageId, PersistOp, Pipeline, Role, Status, TenantId};

use super::{keyed_add, thread};

#[tokio::test]
async fn events_publish_committed_writes_per_thread_reservation_first() {
    let events = Events::new(64);
    let pipeline = Pipeline::builder().layer(events.layer()).build(MemoryBackend::new());
    let mut mine = events.subscribe_thread(None, thread("mine"));
    let mut all = events.subscribe();
    pipeline.add(keyed_add("other", "noise")).await.unwrap();
    let slot = pipeline.reserve(Reserve::new(thread("mine"), Role::Assistant)).await.unwrap().message;
    let missing = UpdateContent::new(thread("mine"), MessageId::new("nope").unwrap(), Content::text("x"));
    assert!(pipeline.update_content(missing).await.is_err(), "refused writes are not published");
    let partial = UpdateContent::partial(thread("mine"), slot.id.clone(), Content::text("Hel"));
    pipeline.update_content(partial).await.unwrap();
    pipeline.update_content(UpdateContent::new(thread("mine"), slot.id.clone(), Content::text("Hello"))).await.unwrap();

    let first = mine.recv().await.unwrap();
    let reserved = first.result.message().unwrap();
    assert_eq!((first.result.op(), &reserved.id, reserved.status), (PersistOp::Reserve, &slot.id, Status::Reserved));
    assert!(reserved.content.is_placeholder(), "the id arrives before any content");
    assert_eq!(mine.recv().await.unwrap().result.message().unwrap().content.to_text(), "Hel");
    assert_eq!(mine.recv().await.unwrap().result.message().unwrap().status, Status::Complete);
    let mut seen = Vec::new();
    while let Ok(event) = all.try_recv() {
        seen.push((event.result.op(), event.result.thread_id().map(ToString::to_string).unwrap_or_default()));
    }
    assert_eq!(seen.len(), 4, "four committed writes: {seen:?}");
}

#[tokio::test]
async fn events_name_their_tenant_and_a_thread_subscription_follows_one_tenants_thread() {
    let events = Events::new(64);
    let pipeline = Pipeline::builder().layer(events.layer()).build(MemoryBackend::new());
    let acme = TenantId::new("acme").unwrap();
    let mut acme_general = events.subscribe_thread(Some(acme.clone()), thread("general"));
    let mut all = events.subscribe();
    let globex = pipeline.scoped(Context::new().with_tenant(TenantId::new("globex").unwrap()));
    globex.add(keyed_add("general", "globex's")).await.unwrap();
    pipeline.add(keyed_add("general", "no tenant's")).await.unwrap();
    pipeline.scoped(Context::new().with_tenant(acme.clone())).add(keyed_add("general", "acme's")).await.unwrap();

    let event = acme_general.recv().await.unwrap();
    assert_eq!(event.tenant.as_ref(), Some(&acme));
    assert_eq!(event.result.message().unwrap().content.to_text(), "acme's", "only acme's general");
    let tenants: Vec<_> = std::iter::from_fn(|| all.try_recv().ok())
        .map(|event| event.tenant.as_ref().map(|t| t.as_str().to_owned()))
        .collect();
    assert_eq!(tenants, [Some("globex".to_owned()), None, Some("acme".to_owned())]);
}

#[tokio::test]
async fn a_lagging_subscriber_never_blocks_writers() {
    let events = Events::new(4);
    let pipeline = Pipeline::builder().layer(events.layer()).build(MemoryBackend::new());
    let mut slow = events.subscribe();
    for i in 0..100 {
        pipeline.add(keyed_add("t", &format!("k{i}"))).await.unwrap();
    }
    assert!(matches!(slow.recv().await, Err(tokio::sync::broadcast::error::RecvError::Lagged(96))));
    assert_eq!(slow.recv().await.unwrap().result.message().unwrap().seq, 97, "then the newest events");
}
