//! A move stopped before any of its requests finished (stores that stall past a budget) completes when run again.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use persist::args::Add;
use persist::memory::MemoryBackend;
use persist::{Content, PersistError, Pipeline, Role};

use super::{Stores, ctx, id, options, seed, snapshot, state, tenant};

/// How many more requests the mover's stores answer; past it, a request never ends (as if the
/// mover was killed before it sent it) and `stalled` is told.
#[derive(Clone, Default)]
struct Budget(Arc<(std::sync::atomic::AtomicI64, tokio::sync::Notify)>);

impl Budget {
    fn set(&self, requests: i64) {
        self.0.0.store(requests, Ordering::SeqCst);
    }

    async fn stalled(&self) {
        self.0.1.notified().await;
    }
}

#[derive(Clone)]
struct Stalling<S> {
    inner: S,
    budget: Budget,
}

impl<S> tower::Service<persist::PersistArgs> for Stalling<S>
where
    S: tower::Service<persist::PersistArgs, Response = persist::PersistResult, Error = PersistError>,
    S::Future: Send + 'static,
{
    type Response = persist::PersistResult;
    type Error = PersistError;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), PersistError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, args: persist::PersistArgs) -> Self::Future {
        if self.budget.0.0.fetch_sub(1, Ordering::SeqCst) <= 0 {
            self.budget.0.1.notify_one();
            return Box::pin(std::future::pending());
        }
        Box::pin(self.inner.call(args))
    }
}

#[tokio::test]
async fn a_move_stopped_before_any_of_its_requests_finishes_when_run_again() {
    let (directory, a, b) = (MemoryBackend::new(), MemoryBackend::new(), MemoryBackend::new());
    let plain = Stores {
        directory: Pipeline::new(directory.clone()),
        shards: vec![("a".to_owned(), Pipeline::new(a.clone())), ("b".to_owned(), Pipeline::new(b.clone()))],
    };
    // The mover's instance reaches the same stores through the budget.
    let budget = Budget::default();
    let stalling = |store: &MemoryBackend| {
        let budget = budget.clone();
        Pipeline::builder()
            .layer(tower::layer::layer_fn(move |inner| Stalling { inner, budget: budget.clone() }))
            .build(store.clone())
    };
    let mover = Stores {
        directory: stalling(&directory),
        shards: vec![("a".to_owned(), stalling(&a)), ("b".to_owned(), stalling(&b))],
    };
    let app = Pipeline::new(plain.instance());
    seed(&app, "acme", 3, 3).await;
    let shards = mover.instance();
    let acme = tenant("acme");
    budget.set(i64::MAX);
    let from = shards.placement(Some(&acme)).await.unwrap().shard;
    let to = plain.other_than(&shards, "acme").await;
    let expected = snapshot(plain.store(&from), "acme").await;
    // Stopped before its first request, then its second, and so on, until a run ends; an
    // app's message written between two runs (unless the switch refuses it).
    let options = options().claim_ttl(Duration::from_millis(200));
    let (mut stops, mut seen, mut written) = (0_i64, BTreeSet::new(), Vec::new());
    loop {
        budget.set(stops);
        tokio::select! {
            moved = shards.move_tenant(Some(&acme), &to, options.clone()) => {
                moved.unwrap();
                break;
            }
            () = budget.stalled() => stops += 1,
        }
        let state = state(&plain, "acme").await;
        seen.insert(format!("{state:?}").split([' ', '{', '(', ')']).nth(1).unwrap_or("None").to_owned());
        let text = format!("between runs {stops}");
        let add = Add::new(id(&format!("thread-{}", stops % 3)), Role::User, Content::text(&text));
        match app.add(add.with_context(ctx("acme"))).await {
            Ok(_) => written.push(text),
            Err(PersistError::Temporary { .. }) => {}
            Err(error) => panic!("{error}"),
        }
    }
    assert!(stops > 50, "stopped {stops} times");
    for state in ["Copying", "Switching", "Cleaning"] {
        assert!(seen.contains(state), "never stopped while {state}: {seen:?}");
    }
    // Everything seeded, and each message written between runs, once, on the new shard.
    let held = snapshot(plain.store(&to), "acme").await;
    assert!(snapshot(plain.store(&from), "acme").await.is_empty());
    let texts: Vec<String> = held.values().flat_map(|(_, m, _, _)| m.iter().map(|m| m.content.to_text())).collect();
    for text in &written {
        assert_eq!(texts.iter().filter(|there| *there == text).count(), 1, "{text}");
    }
    for (thread, (_, messages, bindings, summaries)) in &expected {
        let (_, there, their_bindings, their_summaries) = &held[thread];
        assert_eq!(&there[..messages.len()], &messages[..], "{thread}");
        assert_eq!((their_bindings, their_summaries), (bindings, summaries));
    }
    assert!(state(&plain, "acme").await.is_none());
}
