//! Every call goes through the layers: reads, session requests and pings too. A route sends a
//! thread's reads where it sent its writes, a layer that rewrites content undoes itself on the
//! way up, a layer that confines requests to a tenant confines reads too.

use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use persist::args::{Add, UpdateContent};
use persist::layer::route::{self, RouteLayer};
use persist::layer::{Decision, InterceptLayer, ObserveLayer, from_fn};
use persist::memory::MemoryBackend;
use persist::read::{GetMessage, GetThread, ListMessages, ListThreads};
use persist::session::{Bind, ResetSession, Resolution, Resolve};
use persist::{
    AgentId, Content, Context, PersistArgs, PersistOp, PersistResult, Pipeline, ProviderId, Role, SessionId, TenantId,
    ThreadId,
};

fn thread(id: &str) -> ThreadId {
    ThreadId::new(id).unwrap()
}

fn add(thread_id: &str, text: &str) -> Add {
    Add::new(thread(thread_id), Role::User, Content::text(text))
}

/// A pipeline whose `scratch:` threads live in a second store.
fn routed(scratch: &Pipeline, main: &MemoryBackend) -> Pipeline {
    let route = RouteLayer::builder().route("scratch", route::thread_prefix("scratch:"), scratch.clone()).build();
    Pipeline::builder().layer(route.unwrap()).build(main.clone())
}

#[tokio::test]
async fn a_routed_thread_is_read_back_through_the_pipeline_that_wrote_it() {
    let scratch_store = MemoryBackend::new();
    let (scratch, main) = (Pipeline::new(scratch_store.clone()), MemoryBackend::new());
    let pipeline = routed(&scratch, &main);
    let written = pipeline.add(add("scratch:1", "draft")).await.unwrap().message;
    pipeline.add(add("main", "kept")).await.unwrap();

    let got = pipeline.get(GetMessage::new(thread("scratch:1"), written.id.clone())).await.unwrap();
    assert_eq!(got.as_ref().map(|m| m.content.to_text()), Some("draft".to_owned()));
    assert!(pipeline.get_thread(GetThread::new(thread("scratch:1"))).await.unwrap().is_some());
    assert_eq!(pipeline.list(ListMessages::new(thread("scratch:1"))).await.unwrap().items, [written]);
    // It lives in the scratch store only.
    let main_alone = Pipeline::new(main);
    assert!(main_alone.get_thread(GetThread::new(thread("scratch:1"))).await.unwrap().is_none());
    assert_eq!(scratch_store.message_count(), 1);
    // One listing covers both stores.
    let names: Vec<_> = pipeline.threads(ListThreads::new()).await.unwrap().items.into_iter().map(|t| t.id).collect();
    assert_eq!(names, [thread("main"), thread("scratch:1")]);
    pipeline.ping().await.unwrap();
}

#[tokio::test]
async fn threads_across_routed_stores_page_with_one_cursor() {
    let (scratch, main) = (Pipeline::new(MemoryBackend::new()), MemoryBackend::new());
    let pipeline = routed(&scratch, &main);
    let mut written = Vec::new();
    for i in 0..7 {
        let id = if i % 3 == 0 { format!("scratch:{i}") } else { format!("main-{i}") };
        pipeline.add(add(&id, "x")).await.unwrap();
        written.push(thread(&id));
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let (mut listed, mut query, mut pages) = (Vec::new(), ListThreads::new().with_limit(3), 0);
    loop {
        let page = pipeline.threads(query.clone()).await.unwrap();
        pages += 1;
        listed.extend(page.items.iter().map(|t| t.id.clone()));
        if !page.has_more {
            break;
        }
        query = query.with_cursor(page.next_cursor);
    }
    let mut expected = written;
    expected.reverse();
    assert_eq!(listed, expected, "newest first, each thread once, across {pages} pages");
    assert!(pages >= 3);
}

#[tokio::test]
async fn a_layer_that_confines_every_request_to_a_tenant_confines_reads_too() {
    let store = MemoryBackend::new();
    let acme = Context::new().with_tenant(TenantId::new("acme").unwrap());
    Pipeline::new(store.clone()).add(add("private", "acme's").with_context(acme)).await.unwrap();
    // The host's layer stamps every request with the tenant of the session (globex here).
    let pipeline = Pipeline::builder()
        .layer(from_fn(|mut args: PersistArgs, next| {
            *args.context_mut() = Context::new().with_tenant(TenantId::new("globex").unwrap());
            next.run(args)
        }))
        .build(store);
    assert!(pipeline.get_thread(GetThread::new(thread("private"))).await.unwrap().is_none());
    assert!(pipeline.list(ListMessages::new(thread("private"))).await.unwrap().items.is_empty());
    assert!(pipeline.threads(ListThreads::new()).await.unwrap().items.is_empty());
}

/// Text reversed on the way down, reversed back on the way up: what a redaction or an
/// encryption layer does.
fn reverse(text: &str) -> String {
    text.chars().rev().collect()
}

#[tokio::test]
async fn a_layer_that_rewrites_content_undoes_itself_on_reads() {
    let store = MemoryBackend::new();
    let pipeline = Pipeline::builder()
        .layer(from_fn(|args: PersistArgs, next| async move {
            let args = match args {
                PersistArgs::Add(mut add) => {
                    add.content = Content::text(reverse(&add.content.to_text()));
                    add.into()
                }
                other => other,
            };
            let mut result = next.run(args).await?;
            match &mut result {
                PersistResult::Messages(page) => {
                    for message in &mut page.items {
                        message.content = Content::text(reverse(&message.content.to_text()));
                    }
                }
                PersistResult::Message(Some(message)) => {
                    message.content = Content::text(reverse(&message.content.to_text()));
                }
                _ => {}
            }
            Ok(result)
        }))
        .build(store.clone());
    let written = pipeline.add(add("t", "hello")).await.unwrap().message;
    let read = pipeline.list(ListMessages::new(thread("t"))).await.unwrap().items;
    assert_eq!(read[0].content.to_text(), "hello");
    let got = pipeline.get(GetMessage::new(thread("t"), written.id)).await.unwrap().unwrap();
    assert_eq!(got.content.to_text(), "hello");
    let stored = Pipeline::new(store).list(ListMessages::new(thread("t"))).await.unwrap().items;
    assert_eq!(stored[0].content.to_text(), "olleh", "the store holds the rewritten text");
}

#[tokio::test]
async fn an_intercept_answers_a_read_without_the_store() {
    let pipeline = Pipeline::builder()
        .layer(InterceptLayer::new(|args: PersistArgs| -> Decision {
            match args.op() {
                PersistOp::GetThread => ControlFlow::Break(Ok(PersistResult::Thread(None))),
                _ => ControlFlow::Continue(args),
            }
        }))
        .build(MemoryBackend::new());
    pipeline.add(add("t", "x")).await.unwrap();
    assert!(pipeline.get_thread(GetThread::new(thread("t"))).await.unwrap().is_none(), "answered by the layer");
    assert_eq!(pipeline.list(ListMessages::new(thread("t"))).await.unwrap().items.len(), 1);
    // An answer of the wrong kind is a typed error, not a panic.
    let wrong = Pipeline::builder()
        .layer(InterceptLayer::new(|_: PersistArgs| -> Decision { ControlFlow::Break(Ok(PersistResult::Pong)) }))
        .build(MemoryBackend::new());
    let error = wrong.list(ListMessages::new(thread("t"))).await.unwrap_err();
    assert!(
        matches!(error, persist::PersistError::MismatchedResult { op: PersistOp::List, got: PersistOp::Ping }),
        "{error}"
    );
}

#[tokio::test]
async fn session_requests_pass_through_the_layers_and_follow_routes() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let scratch_store = MemoryBackend::new();
    let scratch = Pipeline::new(scratch_store.clone());
    let route = RouteLayer::builder().route("scratch", route::thread_prefix("scratch:"), scratch.clone()).build();
    let pipeline = Pipeline::builder()
        .layer(ObserveLayer::new().on_args(move |args: &PersistArgs| log.lock().unwrap().push(args.op())))
        .layer(route.unwrap())
        .build(MemoryBackend::new());
    let (agent, provider) = (AgentId::new("bot").unwrap(), ProviderId::new("p").unwrap());
    let bind = Bind::new(agent.clone(), thread("scratch:1"), SessionId::new("s-1").unwrap(), provider.clone());
    pipeline.bind(bind).await.unwrap();
    let resolved = pipeline.resolve(Resolve::new(agent.clone(), thread("scratch:1"), provider.clone())).await.unwrap();
    assert!(matches!(resolved, Resolution::Resume(ref b) if b.session_id.as_str() == "s-1"), "{resolved:?}");
    // The binding lives where the route sent it.
    assert!(matches!(
        scratch.resolve(Resolve::new(agent.clone(), thread("scratch:1"), provider)).await.unwrap(),
        Resolution::Resume(_)
    ));
    assert!(pipeline.reset_session(ResetSession::new(agent, thread("scratch:1"))).await.unwrap());
    assert_eq!(*seen.lock().unwrap(), [PersistOp::Bind, PersistOp::Resolve, PersistOp::ResetSession]);
}

#[tokio::test]
async fn content_updates_and_reads_mix_on_one_stack() {
    // The typed helpers and `execute` share one stack: a read sent as `PersistArgs` works too.
    let pipeline = Pipeline::new(MemoryBackend::new());
    let slot = pipeline.add(add("t", "v1")).await.unwrap().message;
    pipeline.update_content(UpdateContent::new(thread("t"), slot.id.clone(), Content::text("v2"))).await.unwrap();
    match pipeline.execute(GetMessage::new(thread("t"), slot.id)).await.unwrap() {
        PersistResult::Message(Some(message)) => assert_eq!(message.content.to_text(), "v2"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_scoped_handle_never_reaches_another_tenant() {
    let ids = Arc::new(Mutex::new(Vec::new()));
    let log = ids.clone();
    let pipeline = Pipeline::builder()
        .layer(ObserveLayer::new().on_args(move |args: &PersistArgs| {
            let tenant = args.context().tenant().map(|t| t.as_str().to_owned());
            log.lock().unwrap().push((tenant, args.context().request_id().to_string()));
        }))
        .build(MemoryBackend::new());
    let scope = |tenant: &str| pipeline.scoped(Context::new().with_tenant(TenantId::new(tenant).unwrap()));
    let (acme, globex) = (scope("acme"), scope("globex"));
    let written = acme.add(add("general", "acme's")).await.unwrap().message;
    // A context on the request itself does not escape the scope: globex writes its own general.
    let unscoped = add("general", "globex's").with_context(Context::new());
    let own = globex.add(unscoped).await.unwrap().message;
    assert_eq!(own.seq, 1, "globex's general is a thread of its own");

    assert!(globex.get(GetMessage::new(thread("general"), written.id.clone())).await.unwrap().is_none());
    let seen = globex.get_thread(GetThread::new(thread("general"))).await.unwrap().unwrap();
    assert_eq!((seen.tenant.as_ref().map(|t| t.as_str()), seen.message_count), (Some("globex"), 1));
    assert_eq!(globex.list(ListMessages::new(thread("general"))).await.unwrap().items, [own]);
    assert_eq!(globex.threads(ListThreads::new()).await.unwrap().items.len(), 1);
    let update = UpdateContent::new(thread("general"), written.id.clone(), Content::text("overwritten"));
    assert!(matches!(globex.update_content(update).await, Err(persist::PersistError::NotFound { .. })));
    assert_eq!(acme.list(ListMessages::new(thread("general"))).await.unwrap().items, [written]);
    // Requests across tenants are refused before any layer; the scope's own are answered.
    let stranded = persist::read::FindStranded::new(persist::Timestamp::now());
    assert!(globex.execute(stranded.clone()).await.is_ok());
    let across = stranded.across_tenants(true);
    assert!(matches!(globex.execute(across.clone()).await, Err(persist::PersistError::Rejected { .. })));
    assert!(matches!(globex.find_stranded(across).await, Err(persist::PersistError::Rejected { .. })));
    let every = ListThreads::new().across_tenants(true);
    assert!(matches!(globex.threads(every).await, Err(persist::PersistError::Rejected { .. })));
    globex.ping().await.unwrap();

    let ids = ids.lock().unwrap();
    assert!(ids.iter().all(|(tenant, _)| tenant.is_some()), "every call carried the scope's tenant");
    let mut request_ids: Vec<_> = ids.iter().map(|(_, id)| id.clone()).collect();
    request_ids.sort();
    request_ids.dedup();
    assert_eq!(request_ids.len(), ids.len(), "each call has a request id of its own");
}

#[tokio::test]
async fn nearest_across_routed_stores_skips_a_store_without_the_model() {
    use persist::vector::{Embedding, Nearest};
    let (scratch, main) = (Pipeline::new(MemoryBackend::new()), MemoryBackend::new());
    let pipeline = routed(&scratch, &main);
    let with = |text: &str, thread_id: &str, model: &str| {
        add(thread_id, text).with_embedding(Embedding::new(model, vec![1.0, 0.5]))
    };
    // The main store holds `small` only, the scratch store `large` and `small`.
    pipeline.add(with("main", "main", "small")).await.unwrap();
    let large = pipeline.add(with("draft", "scratch:1", "large")).await.unwrap().message;
    pipeline.add(with("draft 2", "scratch:1", "small")).await.unwrap();
    let found = pipeline.nearest(Nearest::new(Embedding::new("large", vec![1.0, 0.5]))).await.unwrap();
    assert_eq!(found.iter().map(|n| n.message.id.clone()).collect::<Vec<_>>(), [large.id]);
    assert_eq!(pipeline.nearest(Nearest::new(Embedding::new("small", vec![1.0, 0.5]))).await.unwrap().len(), 2);
    // Filtered to where the model has no vector: no hits, not a refusal.
    let elsewhere = Nearest::new(Embedding::new("large", vec![1.0, 0.5])).with_roles([Role::Assistant]);
    assert!(pipeline.nearest(elsewhere).await.unwrap().is_empty());
    // No store holds it: refused, as one store alone refuses it.
    let unknown = pipeline.nearest(Nearest::new(Embedding::new("other", vec![1.0, 0.5]))).await;
    assert!(matches!(unknown, Err(persist::PersistError::InvalidInput { field: "model", .. })), "{unknown:?}");
    // Another length than the model's is still a bad query.
    let wrong = pipeline.nearest(Nearest::new(Embedding::new("large", vec![1.0, 0.5, 0.1]))).await;
    assert!(matches!(wrong, Err(persist::PersistError::InvalidInput { field: "embedding", .. })), "{wrong:?}");
}
