//! The ready-made layers and the plugin APIs, over the real memory backend.

use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use persist::args::{Add, Delete, Reserve, Update, UpdateContent};
use persist::layer::route::{self, RouteLayer};
use persist::layer::{Decision, InterceptLayer, Next, ObserveLayer, from_fn};
use persist::memory::MemoryBackend;
use persist::read::{GetThread, ListMessages};
use persist::{
    Added, Content, Message, MessageId, Metadata, PersistArgs, PersistError, PersistOp, PersistResult, Pipeline, Role,
    Status, Terminal, ThreadId, Timestamp,
};
use tower::{Layer, ServiceExt};

fn thread(id: &str) -> ThreadId {
    ThreadId::new(id).unwrap()
}

fn add(thread_id: &str) -> Add {
    Add::new(thread(thread_id), Role::User, Content::text(thread_id))
}

async fn thread_exists(store: &MemoryBackend, id: &str) -> bool {
    Pipeline::new(store.clone()).get_thread(GetThread::new(thread(id))).await.unwrap().is_some()
}

type Log = Arc<Mutex<Vec<String>>>;

#[tokio::test]
async fn observe_sees_every_op_its_result_and_errors() {
    let log = Log::default();
    let (a, r, e) = (log.clone(), log.clone(), log.clone());
    let pipeline = Pipeline::builder()
        .layer(
            ObserveLayer::new()
                .on_args(move |args: &PersistArgs| a.lock().unwrap().push(format!("args {}", args.op())))
                .on_result(move |res: &PersistResult| r.lock().unwrap().push(format!("ok {}", res.op())))
                .on_error(move |op: PersistOp, err: &PersistError| {
                    let not_found = matches!(err, PersistError::NotFound { .. });
                    e.lock().unwrap().push(format!("err {op} not_found={not_found}"))
                }),
        )
        .build(MemoryBackend::new());
    let t = thread("t");
    let m = MessageId::new("m").unwrap();
    pipeline.add(add("t").with_id(m.clone())).await.unwrap();
    pipeline.reserve(Reserve::new(t.clone(), Role::Assistant)).await.unwrap();
    pipeline.update_content(UpdateContent::new(t.clone(), m.clone(), Content::text("b"))).await.unwrap();
    let patch = Metadata::new().with("k", serde_json::json!(1));
    pipeline.update(Update::message(t.clone(), m.clone()).with_metadata(patch)).await.unwrap();
    pipeline.delete(Delete::message(t.clone(), m.clone())).await.unwrap();
    let missing = UpdateContent::new(t, m, Content::text("c"));
    assert!(pipeline.update_content(missing).await.is_err());
    assert_eq!(
        *log.lock().unwrap(),
        [
            "args add",
            "ok add",
            "args reserve",
            "ok reserve",
            "args update_content",
            "ok update_content",
            "args update",
            "ok update",
            "args delete",
            "ok delete",
            "args update_content",
            "err update_content not_found=true",
        ]
    );
}

#[tokio::test]
async fn observe_with_unit_hooks_passes_everything_through() {
    let service = ObserveLayer::new().layer(Terminal::new(MemoryBackend::new()));
    let result = service.oneshot(add("t").into()).await.unwrap();
    assert_eq!(result.message().unwrap().seq, 1);
}

#[tokio::test]
async fn observer_indexes_only_finalized_messages() {
    let index = Log::default();
    let sink = index.clone();
    let pipeline = Pipeline::builder()
        .layer(ObserveLayer::new().on_result(move |result: &PersistResult| {
            if let Some(m) = result.message().filter(|m| m.status == Status::Complete) {
                sink.lock().unwrap().push(m.content.to_text());
            }
        }))
        .build(MemoryBackend::new());
    let t = thread("t");
    let slot = pipeline.reserve(Reserve::new(t.clone(), Role::Assistant)).await.unwrap().message;
    let partial = UpdateContent::partial(t.clone(), slot.id.clone(), Content::text("par"));
    pipeline.update_content(partial).await.unwrap();
    assert!(index.lock().unwrap().is_empty());
    pipeline.update_content(UpdateContent::new(t, slot.id, Content::text("partial done"))).await.unwrap();
    assert_eq!(*index.lock().unwrap(), ["partial done"]);
}

#[tokio::test]
async fn route_redirect_leaves_the_default_store_untouched() {
    let other = MemoryBackend::new();
    let default = MemoryBackend::new();
    let pipeline = Pipeline::builder()
        .layer(
            RouteLayer::builder()
                .route("scratch", route::thread_prefix("scratch:"), Pipeline::new(other.clone()))
                .build()
                .unwrap(),
        )
        .build(default.clone());

    let written = pipeline.add(add("scratch:a")).await.unwrap().message;
    pipeline.add(add("main")).await.unwrap();
    pipeline
        .update_content(UpdateContent::new(written.thread_id.clone(), written.id.clone(), Content::text("v2")))
        .await
        .unwrap();

    assert!(!thread_exists(&default, "scratch:a").await);
    assert!(thread_exists(&default, "main").await);
    assert!(!thread_exists(&other, "main").await);
    let items = Pipeline::new(other).list(ListMessages::new(thread("scratch:a"))).await.unwrap().items;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].content.to_text(), "v2");
    let deleted = pipeline.delete(Delete::thread(thread("scratch:a"))).await.unwrap();
    assert_eq!(deleted.message_ids, vec![written.id]);
    assert_eq!(default.message_count(), 1);
}

#[tokio::test]
async fn route_first_match_wins() {
    let first = MemoryBackend::new();
    let second = MemoryBackend::new();
    let pipeline = Pipeline::builder()
        .layer(
            RouteLayer::builder()
                .route("first", route::thread_prefix("a"), Pipeline::new(first.clone()))
                .route("second", route::thread_prefix("ab"), Pipeline::new(second.clone()))
                .build()
                .unwrap(),
        )
        .build(MemoryBackend::new());
    pipeline.add(add("abc")).await.unwrap();
    assert!(thread_exists(&first, "abc").await);
    assert!(!thread_exists(&second, "abc").await);
}

#[test]
fn route_builder_validates() {
    let target = Pipeline::new(MemoryBackend::new());
    let empty = RouteLayer::builder().build().unwrap_err();
    assert!(matches!(empty, PersistError::InvalidInput { field: "routes", .. }));
    let unnamed = RouteLayer::builder().route("", route::thread_prefix("x"), target.clone()).build().unwrap_err();
    assert!(matches!(unnamed, PersistError::InvalidInput { field: "route name", .. }));
    let twice = RouteLayer::builder()
        .route("a", route::thread_prefix("x"), target.clone())
        .route("a", route::thread_prefix("y"), target)
        .build()
        .unwrap_err();
    assert!(matches!(twice, PersistError::InvalidInput { field: "route name", .. }));
}

#[tokio::test]
async fn intercept_short_circuit_answers_without_touching_the_store() {
    let store = MemoryBackend::new();
    let pipeline = Pipeline::builder()
        .layer(InterceptLayer::new(|args: PersistArgs| -> Decision {
            // A dry run: answer what would have been written.
            let PersistArgs::Add(add) = &args else {
                return ControlFlow::Continue(args);
            };
            let now = Timestamp::now();
            let message = Message {
                thread_id: add.thread_id.clone(),
                id: MessageId::new("dry-run").unwrap(),
                role: add.role.clone(),
                content: add.content.clone(),
                metadata: add.metadata.clone(),
                status: Status::Complete,
                seq: 0,
                parent_seq: None,
                version: 0,
                idempotency_key: None,
                created_at: now,
                updated_at: now,
            };
            ControlFlow::Break(Ok(Added::new(message, false).into()))
        }))
        .build(store.clone());
    let added = pipeline.add(add("t")).await.unwrap();
    assert_eq!(added.message.id.as_str(), "dry-run");
    assert!(!thread_exists(&store, "t").await);
}

#[tokio::test]
async fn intercept_error_answer_reaches_the_caller() {
    let store = MemoryBackend::new();
    let pipeline = Pipeline::builder()
        .layer(InterceptLayer::new(|_: PersistArgs| -> Decision {
            ControlFlow::Break(Err(PersistError::rejected("read-only")))
        }))
        .build(store.clone());
    let err = pipeline.add(add("t")).await.unwrap_err();
    assert!(matches!(err, PersistError::Rejected { .. }), "{err}");
    assert_eq!(store.message_count(), 0);
}

#[tokio::test]
async fn intercept_can_rewrite_what_is_stored() {
    let pipeline = Pipeline::builder()
        .layer(InterceptLayer::new(|mut args: PersistArgs| -> Decision {
            if let PersistArgs::Add(add) = &mut args {
                add.content = Content::text("[redacted]");
            }
            ControlFlow::Continue(args)
        }))
        .build(MemoryBackend::new());
    let added = pipeline.add(add("secret")).await.unwrap();
    assert_eq!(added.message.content.to_text(), "[redacted]");
}

type BoxedAnswer = Pin<Box<dyn Future<Output = Result<PersistResult, PersistError>> + Send>>;

/// A `from_fn` layer that logs `name in` / `name out` around the rest of the stack.
fn push(
    log: Log,
    name: &'static str,
) -> persist::layer::FromFnLayer<impl Fn(PersistArgs, Next) -> BoxedAnswer + Clone> {
    from_fn(move |args, next: Next| {
        let log = log.clone();
        Box::pin(async move {
            log.lock().unwrap().push(format!("{name} in"));
            let result = next.run(args).await;
            log.lock().unwrap().push(format!("{name} out"));
            result
        }) as BoxedAnswer
    })
}

#[tokio::test]
async fn first_layer_added_sees_the_request_first_and_the_result_last() {
    let log = Log::default();
    let pipeline = Pipeline::builder()
        .layer(push(log.clone(), "a"))
        .layer(push(log.clone(), "b"))
        .layer(push(log.clone(), "c"))
        .build(MemoryBackend::new());
    pipeline.add(add("t")).await.unwrap();
    assert_eq!(*log.lock().unwrap(), ["a in", "b in", "c in", "c out", "b out", "a out"]);
}

#[tokio::test]
async fn a_layer_added_after_others_still_runs() {
    let log = Log::default();
    let store = MemoryBackend::new();
    let pipeline = Pipeline::builder()
        .layer(ObserveLayer::new())
        .layer(InterceptLayer::new(|args: PersistArgs| -> Decision { ControlFlow::Continue(args) }))
        .layer(push(log.clone(), "last"))
        .build(store.clone());
    pipeline.add(add("t")).await.unwrap();
    assert_eq!(*log.lock().unwrap(), ["last in", "last out"]);
    assert!(thread_exists(&store, "t").await);
}

#[tokio::test]
async fn from_fn_not_calling_next_short_circuits() {
    let store = MemoryBackend::new();
    let pipeline = Pipeline::builder()
        .layer(from_fn(|_args, _next| async { Err(PersistError::rejected("closed")) }))
        .build(store.clone());
    assert!(matches!(pipeline.add(add("t")).await, Err(PersistError::Rejected { .. })));
    assert!(!thread_exists(&store, "t").await);
}

#[tokio::test]
async fn a_layer_answering_the_wrong_operation_is_a_typed_error() {
    let pipeline = Pipeline::builder()
        .layer(InterceptLayer::new(|args: PersistArgs| -> Decision {
            ControlFlow::Break(
                Ok(persist::Deleted::new(args.thread_id().cloned().expect("a write"), Vec::new()).into()),
            )
        }))
        .build(MemoryBackend::new());
    let err = pipeline.add(add("t")).await.unwrap_err();
    assert!(matches!(err, PersistError::MismatchedResult { op: PersistOp::Add, got: PersistOp::Delete }), "{err}");
}

/// A layer that is not ready until its gate opens: back-pressure, as a concurrency limit gives.
#[derive(Clone)]
struct Gate<S> {
    inner: S,
    state: Arc<Mutex<(bool, Option<std::task::Waker>)>>,
}

impl<S: tower::Service<PersistArgs>> tower::Service<PersistArgs> for Gate<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        let mut state = self.state.lock().unwrap();
        if !state.0 {
            state.1 = Some(cx.waker().clone());
            return std::task::Poll::Pending;
        }
        drop(state);
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, args: PersistArgs) -> S::Future {
        self.inner.call(args)
    }
}

#[tokio::test]
async fn a_pipeline_call_waits_for_its_stack_to_be_ready() {
    let state: Arc<Mutex<(bool, Option<std::task::Waker>)>> = Arc::default();
    let gate = state.clone();
    let store = MemoryBackend::new();
    let mut pipeline = Pipeline::builder()
        .layer(tower::layer::layer_fn(move |inner| Gate { inner, state: gate.clone() }))
        .build(store.clone());
    // The pipeline itself is ready at once: readiness is awaited inside each call.
    ServiceExt::<PersistArgs>::ready(&mut pipeline).await.unwrap();
    let call = tokio::spawn(pipeline.execute(add("t")));
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(store.message_count(), 0, "the write went past a layer that was not ready");
    let waker = {
        let mut state = state.lock().unwrap();
        state.0 = true;
        state.1.take()
    };
    waker.expect("the call registered for readiness").wake();
    assert_eq!(call.await.unwrap().unwrap().message().unwrap().seq, 1);
    assert_eq!(store.message_count(), 1);
}

#[tokio::test]
async fn a_terminal_writes_when_its_future_is_polled_not_when_called() {
    let store = MemoryBackend::new();
    let mut terminal = Terminal::new(store.clone());
    let future = tower::Service::call(&mut terminal, add("t").into());
    assert_eq!(store.message_count(), 0, "the memory backend answers at once, yet only when polled");
    drop(future);
    assert_eq!(store.message_count(), 0, "a future dropped unpolled wrote nothing");
    let future = tower::Service::call(&mut terminal, add("t").into());
    assert_eq!(future.await.unwrap().message().unwrap().seq, 1);
    assert_eq!(store.message_count(), 1);
}

#[tokio::test]
async fn a_pipeline_write_reaches_no_layer_until_polled() {
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    let store = MemoryBackend::new();
    let pipeline = Pipeline::builder()
        .layer(ObserveLayer::new().on_args(move |_: &PersistArgs| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }))
        .build(store.clone());
    drop(pipeline.execute(add("t")));
    drop(pipeline.add(add("t")));
    drop(persist::Backend::apply(&pipeline, add("t").into()));
    drop(tower::Service::call(&mut pipeline.clone(), add("t").into()));
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 0, "a layer saw a write nobody polled");
    assert_eq!(store.message_count(), 0);
    pipeline.execute(add("t")).await.unwrap();
    pipeline.add(add("t")).await.unwrap();
    persist::Backend::apply(&pipeline, add("t").into()).await.unwrap();
    tower::Service::call(&mut pipeline.clone(), add("t").into()).await.unwrap();
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 4);
    assert_eq!(store.message_count(), 4);
}

/// A layer whose instance breaks for good once its readiness fails (as tower allows: a service
/// whose `poll_ready` failed is not to be used again), when `fail` is set.
#[derive(Clone)]
struct Brittle<S> {
    inner: S,
    fail: Arc<std::sync::atomic::AtomicBool>,
    broken: bool,
}

impl<S: tower::Service<PersistArgs, Error = PersistError>> tower::Service<PersistArgs> for Brittle<S> {
    type Response = S::Response;
    type Error = PersistError;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), PersistError>> {
        if self.broken || self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            self.broken = true;
            return std::task::Poll::Ready(Err(PersistError::Temporary { message: "brittle".into(), source: None }));
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, args: PersistArgs) -> S::Future {
        self.inner.call(args)
    }
}

#[tokio::test]
async fn a_stack_whose_readiness_failed_is_not_used_again() {
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = fail.clone();
    let store = MemoryBackend::new();
    let pipeline = Pipeline::builder()
        .layer(tower::layer::layer_fn(move |inner| Brittle { inner, fail: flag.clone(), broken: false }))
        .build(store.clone());
    let err = pipeline.add(add("t")).await.unwrap_err();
    assert!(matches!(err, PersistError::Temporary { .. }), "{err}");
    fail.store(false, std::sync::atomic::Ordering::SeqCst);
    for seq in 1..=3 {
        assert_eq!(pipeline.add(add("t")).await.unwrap().message.seq, seq, "a broken instance was used again");
    }
    assert_eq!(store.message_count(), 3);
}

#[tokio::test]
async fn a_layer_that_panics_leaves_the_pipeline_usable() {
    let store = MemoryBackend::new();
    let pipeline = Pipeline::builder()
        .layer(InterceptLayer::new(|args: PersistArgs| -> Decision {
            assert!(args.thread_id().is_none_or(|t| t.as_str() != "boom"), "the layer panics on thread boom");
            ControlFlow::Continue(args)
        }))
        .build(store.clone());
    let panicked = tokio::spawn(pipeline.execute(add("boom"))).await.unwrap_err();
    assert!(panicked.is_panic());
    assert_eq!(pipeline.add(add("t")).await.unwrap().message.seq, 1);
    assert_eq!(pipeline.add(add("t")).await.unwrap().message.seq, 2);
    assert_eq!(store.message_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_through_one_pipeline_each_pass_every_layer_once() {
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (on_args, on_result) = (seen.clone(), Arc::new(std::sync::atomic::AtomicUsize::new(0)));
    let results = on_result.clone();
    let store = MemoryBackend::new();
    let pipeline = Pipeline::builder()
        .layer(
            ObserveLayer::new()
                .on_args(move |_: &PersistArgs| {
                    on_args.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                })
                .on_result(move |_: &PersistResult| {
                    on_result.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }),
        )
        .layer(InterceptLayer::new(|args: PersistArgs| -> Decision { ControlFlow::Continue(args) }))
        .build(store.clone());
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let pipeline = pipeline.clone();
            tokio::spawn(async move {
                for _ in 0..250 {
                    pipeline.add(add(&format!("t{task}"))).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(store.message_count(), 2000);
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 2000);
    assert_eq!(results.load(std::sync::atomic::Ordering::SeqCst), 2000);
}

#[tokio::test]
async fn a_layer_that_writes_through_its_own_pipeline_runs_on_a_clone_of_the_stack() {
    let store = MemoryBackend::new();
    let own: Arc<std::sync::OnceLock<Pipeline>> = Arc::default();
    let inner = own.clone();
    let pipeline = Pipeline::builder()
        .layer(InterceptLayer::new(move |args: PersistArgs| -> Decision {
            // While this write holds the stack's shared instance, write an audit row through
            // the same pipeline; the memory backend answers it within one poll.
            if args.thread_id().is_some_and(|t| t.as_str() == "t") {
                let pipeline = inner.get().expect("the pipeline is built");
                let mut audit = std::pin::pin!(pipeline.add(add("audit")));
                let polled = audit.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
                assert!(matches!(polled, std::task::Poll::Ready(Ok(_))), "the nested write did not finish");
            }
            ControlFlow::Continue(args)
        }))
        .build(store.clone());
    own.set(pipeline.clone()).unwrap();
    assert_eq!(pipeline.add(add("t")).await.unwrap().message.seq, 1);
    assert!(thread_exists(&store, "audit").await);
    assert_eq!(store.message_count(), 2);
}
