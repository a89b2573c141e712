//! The mover's claim, renewed beside the move's steps: a step longer than the claim keeps it,
//! and renewals that come back too late stop the move where it is (a second run finishes it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use persist::memory::MemoryBackend;
use persist::{PersistArgs, PersistError, PersistOp, PersistResult, Pipeline};

use super::{Stores, options, seed, snapshot, tenant};

/// How long the mover's restores and leases are delayed, changed while they run (`0`: none).
#[derive(Default)]
struct Delays {
    restore_ms: AtomicU64,
    lease_ms: AtomicU64,
}

impl Delays {
    fn set(&self, restore: Duration, lease: Duration) {
        self.restore_ms.store(restore.as_millis() as u64, Ordering::SeqCst);
        self.lease_ms.store(lease.as_millis() as u64, Ordering::SeqCst);
    }
}

/// A store whose restores and leases are answered after their [`Delays`].
#[derive(Clone)]
struct Slow<S> {
    inner: S,
    delays: Arc<Delays>,
}

impl<S> tower::Service<PersistArgs> for Slow<S>
where
    S: tower::Service<PersistArgs, Response = PersistResult, Error = PersistError>,
    S::Future: Send + 'static,
{
    type Response = PersistResult;
    type Error = PersistError;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), PersistError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, args: PersistArgs) -> Self::Future {
        let delay = match args.op() {
            PersistOp::Restore => self.delays.restore_ms.load(Ordering::SeqCst),
            PersistOp::Lease => self.delays.lease_ms.load(Ordering::SeqCst),
            _ => 0,
        };
        let answer = self.inner.call(args);
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            answer.await
        })
    }
}

/// Three memory stores, which the mover reaches through [`Slow`].
fn stores(delays: &Arc<Delays>) -> (Stores, Stores) {
    let (directory, a, b) = (MemoryBackend::new(), MemoryBackend::new(), MemoryBackend::new());
    let plain = Stores {
        directory: Pipeline::new(directory.clone()),
        shards: vec![("a".to_owned(), Pipeline::new(a.clone())), ("b".to_owned(), Pipeline::new(b.clone()))],
    };
    let slowed = |store: &MemoryBackend| {
        let delays = delays.clone();
        Pipeline::builder()
            .layer(tower::layer::layer_fn(move |inner| Slow { inner, delays: delays.clone() }))
            .build(store.clone())
    };
    let mover = Stores {
        directory: slowed(&directory),
        shards: vec![("a".to_owned(), slowed(&a)), ("b".to_owned(), slowed(&b))],
    };
    (plain, mover)
}

const CLAIM: Duration = Duration::from_millis(300);

/// A tenant of `threads` threads seeded through the plain stores; the mover's instance, the
/// shard it moves to, and what the tenant held before.
async fn seeded(plain: &Stores, mover: &Stores, threads: usize) -> (persist::shard::Shards, String, super::Snapshot) {
    seed(&Pipeline::new(plain.instance()), "acme", threads, 2).await;
    let shards = mover.instance();
    let from = shards.placement(Some(&tenant("acme"))).await.unwrap().shard;
    let to = plain.other_than(&shards, "acme").await;
    let expected = snapshot(plain.store(&from), "acme").await;
    (shards, to, expected)
}

/// Each restore into the new shard takes three claims: renewed beside it, the claim holds, and
/// the move ends with everything on the new shard.
#[tokio::test]
async fn a_step_three_claims_long_keeps_the_claim() {
    let delays = Arc::new(Delays::default());
    let (plain, mover) = stores(&delays);
    let (shards, to, expected) = seeded(&plain, &mover, 1).await;
    delays.set(CLAIM * 3, Duration::ZERO);
    let moved = shards.move_tenant(Some(&tenant("acme")), &to, options().claim_ttl(CLAIM)).await.unwrap();
    assert!(moved.copied > 0, "{moved:?}");
    assert_eq!(snapshot(plain.store(&to), "acme").await, expected);
}

/// Renewals answered later than the claim lasts, while a slow restore is under way: the move
/// stops at the first such answer (a temporary error saying the claim ran out), where it is;
/// run again with the stores answering at once, it finishes.
#[tokio::test]
async fn renewals_slower_than_the_claim_stop_the_move_and_a_second_run_finishes_it() {
    let delays = Arc::new(Delays::default());
    let (plain, mover) = stores(&delays);
    let (shards, to, expected) = seeded(&plain, &mover, 3).await;
    let from = shards.placement(Some(&tenant("acme"))).await.unwrap().shard;
    // Slowed once the claim is taken: its first renewal comes back after the claim ran out.
    delays.set(CLAIM, Duration::ZERO);
    let slowing = async {
        tokio::time::sleep(CLAIM / 10).await;
        delays.set(CLAIM, CLAIM * 2);
    };
    let (options, acme) = (options().claim_ttl(CLAIM), tenant("acme"));
    let (stopped, ()) = tokio::join!(shards.move_tenant(Some(&acme), &to, options.clone()), slowing);
    match stopped {
        Err(PersistError::Temporary { message, .. }) => assert!(message.contains("claim ran out"), "{message}"),
        other => panic!("expected the move to stop on its claim, got {other:?}"),
    }
    delays.set(Duration::ZERO, Duration::ZERO);
    let moved = shards.move_tenant(Some(&acme), &to, options).await.unwrap();
    assert!(!moved.already, "{moved:?}");
    assert_eq!(snapshot(plain.store(&to), "acme").await, expected);
    assert!(snapshot(plain.store(&from), "acme").await.is_empty());
}
