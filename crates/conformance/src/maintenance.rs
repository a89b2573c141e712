//! Reservations stranded by streams that never finished: finding them, and cleaning them up
//! through a pipeline (marked interrupted, or deleted).

use std::time::Duration;

use std::sync::Arc;

use persist_core::args::{Reserve, UpdateContent};
use persist_core::read::{FindStranded, ListMessages};
use persist_core::{Backend, Content, Pipeline, Role, Status, Timestamp};
use persist_ops::PipelineExt;
use persist_ops::maintenance::CleanupStranded;

use crate::fixture::{add_text, get, t, written};
use crate::{Factory, Outcome};

/// `stranded` finds exactly the reservations inactive since the cutoff, least recently active
/// first, across threads, and respects its limit.
pub async fn check_stranded_finds_only_old_reservations<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b().as_ref();
    let old_a = written(b, Reserve::new(t("stranded-a"), Role::Assistant)).await;
    tokio::time::sleep(Duration::from_millis(2)).await;
    let old_b = written(b, Reserve::new(t("stranded-b"), Role::Assistant)).await;
    let filled = written(b, Reserve::new(t("stranded-a"), Role::Assistant)).await;
    written(b, UpdateContent::new(t("stranded-a"), filled.id.clone(), Content::text("done"))).await;
    add_text(b, &t("stranded-b"), "complete").await;
    tokio::time::sleep(Duration::from_millis(3)).await;
    let cutoff = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(3)).await;
    written(b, Reserve::new(t("stranded-a"), Role::Assistant)).await; // still streaming: young

    let found = b.stranded(FindStranded::new(cutoff)).await.expect("stranded");
    let ids: Vec<_> = found.iter().map(|s| (s.message.thread_id.clone(), s.message.id.clone())).collect();
    assert_eq!(ids, [(old_a.thread_id.clone(), old_a.id.clone()), (old_b.thread_id.clone(), old_b.id.clone())]);
    let first = b.stranded(FindStranded::new(cutoff).with_limit(1)).await.expect("stranded");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].message.id, old_a.id);
    store.finish().await
}

/// `ping` answers `Ok` while the store serves, and writes nothing.
pub async fn check_ping_answers_while_serving<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b().as_ref();
    b.ping().await.expect("a store that serves answers its ping");
    add_text(b, &t("pinged"), "x").await;
    b.ping().await.expect("and again after a write");
    let probe = persist_core::read::GetThread::new(t("persist:ping"));
    assert!(b.get_thread(probe).await.expect("read").is_none(), "a ping writes nothing");
    store.finish().await
}

/// A reply that streams slowly is not stranded, however long ago it was reserved: what counts
/// is its last write. Only the reservation nobody wrote to since the cutoff is found.
pub async fn check_a_slow_stream_is_not_stranded<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b().as_ref();
    let streaming = written(b, Reserve::new(t("slow-stream"), Role::Assistant)).await;
    let idle = written(b, Reserve::new(t("slow-idle"), Role::Assistant)).await;
    tokio::time::sleep(Duration::from_millis(3)).await;
    let cutoff = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(3)).await;
    // Still streaming after the cutoff: a partial content update is activity.
    let partial = UpdateContent::partial(t("slow-stream"), streaming.id.clone(), Content::text("still going"));
    let partial = written(b, partial).await;
    assert!(partial.updated_at > cutoff && partial.created_at < cutoff);

    let found = b.stranded(FindStranded::new(cutoff)).await.expect("stranded");
    let ids: Vec<_> = found.iter().map(|s| (s.message.thread_id.clone(), s.message.id.clone())).collect();
    assert_eq!(ids, [(idle.thread_id.clone(), idle.id.clone())], "only the idle reservation is stranded");
    store.finish().await
}

/// `cleanup_stranded` marks each stranded reservation interrupted by default, keeping the text
/// its stream wrote, deletes one its stream wrote nothing to (a provider would refuse the empty
/// reply, and nothing the user saw goes), and leaves a reply still streaming alone; with
/// `deleting`, it deletes them all. Run again, it finds nothing more to do.
pub async fn check_cleanup_marks_stranded_replies_interrupted<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let pipeline = Pipeline::new(Arc::clone(b));
    let (kept, gone, live) = (t("cleanup-kept"), t("cleanup-gone"), t("cleanup-live"));
    let half = written(b.as_ref(), Reserve::new(kept.clone(), Role::Assistant)).await;
    let half = written(b.as_ref(), UpdateContent::appending(kept.clone(), half.id, Content::text("Half an"))).await;
    let doomed = written(b.as_ref(), Reserve::new(gone.clone(), Role::Assistant)).await;
    let streaming = written(b.as_ref(), Reserve::new(live.clone(), Role::Assistant)).await;
    // Stranded: nothing written for longer than `age`; the live stream wrote just now (and
    // stays younger than `age` however slow the machine is up to the cleanup's find).
    let age = Duration::from_millis(250);
    tokio::time::sleep(age + Duration::from_millis(50)).await;
    let token = UpdateContent::appending(live.clone(), streaming.id.clone(), Content::text("still going"));
    let streaming = written(b.as_ref(), token).await;

    let report = pipeline.cleanup_stranded(CleanupStranded::new(age).with_limit(1000)).await.expect("cleanup");
    let marked: Vec<_> = report.interrupted.iter().map(|s| s.message.id.clone()).collect();
    let blank: Vec<_> = report.deleted.iter().map(|s| s.message.id.clone()).collect();
    assert_eq!((marked, blank, report.skipped), (vec![half.id.clone()], vec![doomed.id.clone()], 0));
    assert!(get(b.as_ref(), &gone, &doomed.id).await.is_none(), "the blank reservation is deleted");
    let cut = get(b.as_ref(), &kept, &half.id).await.unwrap();
    assert_eq!((cut.status, cut.content.clone(), cut.version), (Status::Interrupted, Content::text("Half an"), 3));
    let listed = b.list(ListMessages::new(kept.clone())).await.expect("list").items;
    assert_eq!(listed, [cut], "the default listing shows it");
    assert_eq!(get(b.as_ref(), &live, &streaming.id).await.unwrap(), streaming, "a live stream is left alone");
    let again = pipeline.cleanup_stranded(CleanupStranded::new(age)).await.expect("cleanup");
    let cleaned_again = again.interrupted.iter().chain(&again.deleted).map(|s| &s.message.id).collect::<Vec<_>>();
    assert!(!cleaned_again.contains(&&half.id) && !cleaned_again.contains(&&doomed.id), "{again:?}");

    let dropped = written(b.as_ref(), Reserve::new(gone.clone(), Role::Assistant)).await;
    let token = UpdateContent::appending(gone.clone(), dropped.id.clone(), Content::text("Some text"));
    let dropped = written(b.as_ref(), token).await;
    tokio::time::sleep(age + Duration::from_millis(50)).await;
    let deleting = CleanupStranded::new(age).with_limit(1000).deleting();
    let report = pipeline.cleanup_stranded(deleting).await.expect("cleanup");
    let deleted: Vec<_> = report.deleted.iter().map(|s| s.message.id.clone()).collect();
    assert!(deleted.contains(&dropped.id) && report.interrupted.is_empty(), "{report:?}");
    assert!(get(b.as_ref(), &gone, &dropped.id).await.is_none(), "deleted, text and all");
    store.finish().await
}
