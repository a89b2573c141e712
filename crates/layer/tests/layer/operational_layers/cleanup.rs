//! Stranded-reservation cleanup and lifecycle steps, through the pipeline and its layers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use persist::args::{Reserve, UpdateContent};
use persist::layer::ObserveLayer;
use persist::layer::route::{self, RouteLayer};
use persist::maintenance::{CleanupStranded, Maintenance};
use persist::memory::MemoryBackend;
use persist::prelude::*;
use persist::read::{GetMessage, GetThread};
use persist::{
    Content, Context, PersistArgs, PersistError, PersistOp, PersistResult, Pipeline, Role, Status, TenantId,
};

use super::{keyed_add, thread};

#[tokio::test]
async fn cleanup_of_stranded_reservations_runs_through_the_pipeline_and_its_routes() {
    let scratch_store = MemoryBackend::new();
    let scratch = Pipeline::new(scratch_store.clone());
    let main_store = MemoryBackend::new();
    let observed = Arc::new(Mutex::new(Vec::new()));
    let log = observed.clone();
    let pipeline = Pipeline::builder()
        .layer(ObserveLayer::new().on_args(move |args: &PersistArgs| {
            if args.op() == PersistOp::UpdateContent {
                let maintenance = args.context().extensions().get::<Maintenance>().is_some();
                log.lock().unwrap().push((args.thread_id().map(ToString::to_string).unwrap_or_default(), maintenance));
            }
        }))
        .layer(
            RouteLayer::builder().route("scratch", route::thread_prefix("scratch:"), scratch.clone()).build().unwrap(),
        )
        .build(main_store.clone());

    let routed = pipeline.reserve(Reserve::new(thread("scratch:1"), Role::Assistant)).await.unwrap().message;
    let local = pipeline.reserve(Reserve::new(thread("main"), Role::Assistant)).await.unwrap().message;
    // Their streams wrote a token each (a blank reservation is deleted, not marked).
    for reply in [&routed, &local] {
        let token = UpdateContent::appending(reply.thread_id.clone(), reply.id.clone(), Content::text("Hal"));
        pipeline.update_content(token).await.unwrap();
    }
    observed.lock().unwrap().clear();
    let kept = pipeline.add(keyed_add("main", "complete")).await.unwrap().message;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let young = pipeline.reserve(Reserve::new(thread("main"), Role::Assistant)).await.unwrap().message;

    let report = pipeline.cleanup_stranded(CleanupStranded::new(Duration::from_millis(10))).await.unwrap();
    let mut interrupted: Vec<_> =
        report.interrupted.iter().map(|s| (s.message.thread_id.clone(), s.message.id.clone())).collect();
    interrupted.sort();
    assert_eq!(interrupted, [(thread("main"), local.id.clone()), (thread("scratch:1"), routed.id.clone())]);
    assert_eq!((report.deleted.len(), report.skipped), (0, 0));
    // The routed reservation was marked in the store the reserve went to; main kept the rest.
    let marked = scratch.get(GetMessage::new(thread("scratch:1"), routed.id)).await.unwrap().unwrap();
    assert_eq!(marked.status, Status::Interrupted);
    let main = Pipeline::new(main_store);
    assert!(main.get(GetMessage::new(thread("main"), kept.id)).await.unwrap().is_some());
    let young = main.get(GetMessage::new(thread("main"), young.id)).await.unwrap().unwrap();
    assert_eq!(young.status, Status::Reserved, "young reservations stay as they are");
    assert!(main.get_thread(GetThread::new(thread("scratch:1"))).await.unwrap().is_none(), "main never saw scratch");
    assert_eq!(scratch_store.message_count(), 1);
    // Every write went through the stack, marked as maintenance.
    let mut seen = observed.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, [("main".to_owned(), true), ("scratch:1".to_owned(), true)]);
}

#[tokio::test]
async fn lifecycle_steps_go_through_the_layers_so_an_indexer_follows_them() {
    let index = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
    let sink = index.clone();
    let pipeline = Pipeline::builder()
        .layer(ObserveLayer::new().on_result(move |result: &PersistResult| {
            let mut index = sink.lock().unwrap();
            match result {
                PersistResult::Deleted(deleted) => {
                    for id in &deleted.message_ids {
                        index.remove(&(deleted.thread_id.to_string(), id.to_string()));
                    }
                }
                other => {
                    if let Some(m) = other.message().filter(|m| m.status == Status::Complete) {
                        index.insert((m.thread_id.to_string(), m.id.to_string()));
                    }
                }
            }
        }))
        .build(MemoryBackend::new());
    for i in 0..4 {
        pipeline.add(keyed_add("main", &format!("k{i}"))).await.unwrap();
    }
    let fork = persist::lifecycle::Fork::new(thread("main"), thread("branch"));
    assert_eq!(pipeline.fork(fork).await.unwrap().copied, 4);
    let count = |name: &str| index.lock().unwrap().iter().filter(|(t, _)| t == name).count();
    assert_eq!(count("branch"), 4, "the indexer saw every forked message");
    pipeline.delete(persist::args::Delete::after(thread("branch"), 2)).await.unwrap();
    assert_eq!(count("branch"), 2, "and every truncated one go");
    pipeline.prune(persist::lifecycle::Prune::new().with_keep_latest(1)).await.unwrap();
    assert_eq!((count("main"), count("branch")), (1, 1), "and what retention removed");
    pipeline.delete(persist::args::Delete::purge(thread("main"))).await.unwrap();
    assert_eq!(count("main"), 0, "and what a purge erased");
}

#[tokio::test]
async fn cleanup_reaches_every_tenant_and_deletes_each_reservation_in_its_own_tenant() {
    let store = MemoryBackend::new();
    let tenants = Arc::new(Mutex::new(Vec::new()));
    let log = tenants.clone();
    let pipeline = Pipeline::builder()
        .layer(ObserveLayer::new().on_args(move |args: &PersistArgs| {
            if args.op() == PersistOp::Delete {
                log.lock().unwrap().push(args.context().tenant().map(|t| t.as_str().to_owned()));
            }
        }))
        .build(store.clone());
    let (acme, globex) = (TenantId::new("acme").unwrap(), TenantId::new("globex").unwrap());
    for tenant in [Some(&acme), Some(&globex), None] {
        let context = Context::new().for_tenant(tenant.cloned());
        pipeline.reserve(Reserve::new(thread("general"), Role::Assistant).with_context(context)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(20)).await;

    // Confined to one tenant: only acme's.
    let only_acme = CleanupStranded::new(Duration::from_millis(10)).only_tenant(Some(acme.clone())).deleting();
    let report = pipeline.cleanup_stranded(only_acme).await.unwrap();
    assert_eq!(report.deleted.iter().map(|s| s.tenant.clone()).collect::<Vec<_>>(), [Some(acme.clone())]);
    // Across tenants (the default): the two others, each deleted in its own tenant.
    let report = pipeline.cleanup_stranded(CleanupStranded::new(Duration::from_millis(10)).deleting()).await.unwrap();
    let mut cleaned: Vec<_> = report.deleted.iter().map(|s| s.tenant.clone()).collect();
    cleaned.sort();
    assert_eq!(cleaned, [None, Some(globex.clone())]);
    assert_eq!(store.message_count(), 0);
    let mut deletes = tenants.lock().unwrap().clone();
    deletes.sort();
    assert_eq!(deletes, [None, Some("acme".to_owned()), Some("globex".to_owned())]);
}

#[tokio::test]
async fn cleanup_keeps_a_reservation_filled_since_it_was_found() {
    // A stack whose cleanup write sees the reservation changed: the version precondition keeps
    // it, whether the cleanup marks (the default) or deletes.
    for deleting in [false, true] {
        let store = MemoryBackend::new();
        let pipeline = Pipeline::new(store.clone());
        let slot = pipeline.reserve(Reserve::new(thread("t"), Role::Assistant)).await.unwrap().message;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let filler = pipeline.clone();
        let racing = Pipeline::builder()
            .layer(persist::layer::from_fn(move |args: PersistArgs, next| {
                let filler = filler.clone();
                async move {
                    let target = match &args {
                        PersistArgs::Delete(delete) => delete.target.message_id().cloned(),
                        PersistArgs::UpdateContent(update) if update.interrupt => Some(update.message_id.clone()),
                        _ => None,
                    };
                    if let (Some(id), Some(thread_id)) = (target, args.thread_id()) {
                        let partial = UpdateContent::partial(thread_id.clone(), id, Content::text("late chunk"));
                        filler.update_content(partial).await?;
                    }
                    next.run(args).await
                }
            }))
            .build(store.clone());
        let mut cleanup = CleanupStranded::new(Duration::from_millis(1));
        if deleting {
            cleanup = cleanup.deleting();
        }
        let report = racing.cleanup_stranded(cleanup).await.unwrap();
        assert!(report.deleted.is_empty() && report.interrupted.is_empty(), "{report:?}");
        assert_eq!(report.skipped, 1);
        let kept = pipeline.get(GetMessage::new(thread("t"), slot.id)).await.unwrap().unwrap();
        assert_eq!((kept.content.to_text(), kept.status), ("late chunk".to_owned(), Status::Reserved));
    }
}

#[tokio::test]
async fn cleanup_goes_on_past_a_reservation_a_layer_refuses() {
    // A layer that refuses to write one thread (as EncryptLayer refuses a tenant whose keys were
    // destroyed): that reservation is reported and kept, the others are cleaned.
    let store = MemoryBackend::new();
    let pipeline = Pipeline::new(store.clone());
    let blocked = pipeline.reserve(Reserve::new(thread("blocked"), Role::Assistant)).await.unwrap().message;
    let free = pipeline.reserve(Reserve::new(thread("free"), Role::Assistant)).await.unwrap().message;
    for reply in [&blocked, &free] {
        let token = UpdateContent::appending(reply.thread_id.clone(), reply.id.clone(), Content::text("Hal"));
        pipeline.update_content(token).await.unwrap();
    }
    let blocked = pipeline.get(GetMessage::new(thread("blocked"), blocked.id)).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let guarded = Pipeline::builder()
        .layer(persist::layer::from_fn(|args: PersistArgs, next| async move {
            if args.thread_id().is_some_and(|id| id.as_str() == "blocked") && args.op() == PersistOp::UpdateContent {
                return Err(PersistError::rejected("the keys of this thread's tenant were destroyed"));
            }
            next.run(args).await
        }))
        .build(store.clone());
    let report = guarded.cleanup_stranded(CleanupStranded::new(Duration::from_millis(1))).await.unwrap();
    assert_eq!(report.interrupted.iter().map(|s| s.message.id.as_str()).collect::<Vec<_>>(), [free.id.as_str()]);
    assert_eq!(report.refused.len(), 1, "{report:?}");
    assert_eq!(report.refused[0].stranded.message.id, blocked.id);
    assert!(report.refused[0].reason.contains("destroyed"), "{report:?}");
    let kept = pipeline.get(GetMessage::new(thread("blocked"), blocked.id)).await.unwrap().unwrap();
    assert_eq!(kept.status, Status::Reserved, "kept as it is");
}
