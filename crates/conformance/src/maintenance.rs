//! The maintenance read: finding reservations stranded by streams that never finished.

use std::time::Duration;

use persist_core::args::{Reserve, UpdateContent};
use persist_core::read::FindStranded;
use persist_core::{Backend, Content, Role, Timestamp};

use crate::fixture::{add_text, t, written};
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
