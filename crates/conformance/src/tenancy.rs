//! Tenancy is identity: a thread is `(tenant, thread_id)`. Two tenants each have their own
//! thread of one id, fully independent, and nothing one tenant's request answers tells it
//! whether another tenant uses an id.

use persist_core::args::{Delete, Reserve, Update, UpdateContent};
use persist_core::read::{FindStranded, GetMessage, GetThread, ListMessages, ListThreads};
use persist_core::search::Search;
use persist_core::session::{Bind, InvalidateSession, ResetSession, Resolution, Resolve};
use persist_core::{
    AgentId, Backend, Content, IdempotencyKey, Message, Metadata, PersistArgs, PersistError, PersistResult, Role,
    SessionId, TenantId, Thread, ThreadId, Timestamp,
};
use serde_json::json;

use crate::fixture::{
    all_messages_in, assert_err, ctx, gate, m, snapshot_in, t, tenant, text_add, thread_in, write, written,
};
use crate::{Factory, Outcome};

/// The same thread id written by two tenants and by a request without one is three threads,
/// each with its own tenant, messages, seqs and counters; the same explicit message id in each
/// is three messages.
pub async fn check_same_thread_id_in_two_tenants_is_two_threads<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("general");
    let tenants = [Some(tenant("acme")), Some(tenant("globex")), None];
    for (n, who) in tenants.iter().enumerate() {
        for i in 0..=n {
            let add =
                text_add(&id, &format!("{who:?} #{i}")).with_id(m(&format!("m{i}"))).with_context(ctx(who.as_ref()));
            let message = written(b, add).await;
            assert_eq!(message.seq, i as u64 + 1, "{who:?} numbers its own thread");
        }
    }
    for (n, who) in tenants.iter().enumerate() {
        let th = thread_in(b, who.as_ref(), &id).await.expect("each tenant has its own thread");
        assert_eq!((th.tenant.as_ref(), th.last_seq, th.message_count), (who.as_ref(), n as u64 + 1, n as u64 + 1));
        let texts: Vec<String> =
            all_messages_in(b, who.as_ref(), &id).await.iter().map(|m| m.content.to_text()).collect();
        let expected: Vec<String> = (0..=n).map(|i| format!("{who:?} #{i}")).collect();
        assert_eq!(texts, expected, "{who:?} reads only its own messages");
    }
    store.finish().await
}

/// Deletes, tombstones, updates and idempotency keys of one tenant's thread never touch the
/// other tenant's thread of the same id.
pub async fn check_tenants_threads_of_one_id_are_independent<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let (acme, globex) = (Some(tenant("acme")), Some(tenant("globex")));
    let (acme, globex) = (acme.as_ref(), globex.as_ref());
    let id = t("general");
    let key = IdempotencyKey::new("turn-1").unwrap();
    let keyed = |who, text: &str| text_add(&id, text).with_idempotency_key(key.clone()).with_context(ctx(who));
    // One key in both: two messages, neither a repeat of the other.
    let a = write(b, keyed(acme, "acme says")).await.unwrap();
    let g = write(b, keyed(globex, "globex says")).await.unwrap();
    assert!(!a.is_deduplicated() && !g.is_deduplicated(), "a key is per (tenant, thread)");
    let (a, g) = (a.message().unwrap().clone(), g.message().unwrap().clone());
    assert_eq!((a.seq, g.seq), (1, 1));
    // Each repeat answers its own tenant's copy.
    let again = write(b, keyed(globex, "globex says")).await.unwrap();
    assert_eq!((again.is_deduplicated(), again.message()), (true, Some(&g)));
    // A key reused for another request is judged in its tenant only.
    assert_err!(write(b, keyed(acme, "something else")).await, PersistError::IdempotencyKeyReused { .. });

    // Updates in one tenant.
    let title = Update::thread(id.clone()).with_title(Some("acme's".into())).with_context(ctx(acme));
    write(b, title).await.expect("acme titles its thread");
    let patch = Update::message(id.clone(), a.id.clone())
        .with_metadata(Metadata::new().with("seen", json!(true)))
        .with_context(ctx(acme));
    write(b, patch).await.expect("acme patches its message");
    let content = UpdateContent::new(id.clone(), a.id.clone(), Content::text("edited")).with_context(ctx(acme));
    write(b, content).await.expect("acme edits its message");
    let globex_before = snapshot_in(b.as_ref(), globex, &[&id]).await;
    assert_eq!(globex_before[0].0.as_ref().unwrap().title, None);
    assert_eq!(globex_before[0].1, vec![g.clone()], "globex's message is untouched");

    // A tombstone in one tenant.
    let deleted = write(b, Delete::thread(id.clone()).with_context(ctx(acme))).await.unwrap();
    assert_eq!(deleted, persist_core::Deleted::new(id.clone(), vec![a.id.clone()]).into(), "acme's ids only");
    assert_err!(write(b, text_add(&id, "late").with_context(ctx(acme))).await, PersistError::ThreadDeleted { .. });
    assert_eq!(snapshot_in(b.as_ref(), globex, &[&id]).await, globex_before, "globex's thread is untouched");
    let more = written(b, text_add(&id, "globex goes on").with_context(ctx(globex))).await;
    assert_eq!(more.seq, 2);
    // The id without a tenant is a third thread, neither deleted nor holding these messages.
    let own = written(b, text_add(&id, "host").with_context(ctx(None))).await;
    assert_eq!(own.seq, 1);
    // Deleting one message in globex by an id acme also used removes globex's only.
    let gone = write(b, Delete::message(id.clone(), g.id.clone()).with_context(ctx(globex))).await.unwrap();
    assert_eq!(gone, persist_core::Deleted::new(id.clone(), vec![g.id.clone()]).into());
    store.finish().await
}

/// Session bindings are per (tenant, agent, thread): binds, resolves, resets, invalidations and
/// a thread's delete in one tenant never touch another's binding of the same agent and thread.
pub async fn check_session_bindings_are_per_tenant<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, sessions);
    let b = store.b();
    let (acme, globex) = (Some(tenant("acme")), Some(tenant("globex")));
    let (acme, globex) = (acme.as_ref(), globex.as_ref());
    let (agent, id, provider) =
        (AgentId::new("coder").unwrap(), t("general"), persist_core::ProviderId::new("cli").unwrap());
    let session = |s: &str| SessionId::new(s).unwrap();
    let bind = |who, s: &str| Bind::new(agent.clone(), id.clone(), session(s), provider.clone()).with_context(ctx(who));
    let resolve = |who| Resolve::new(agent.clone(), id.clone(), provider.clone()).with_context(ctx(who));
    let resumed = |resolution: Resolution| match resolution {
        Resolution::Resume(binding) => Some(binding.session_id.as_str().to_owned()),
        _ => None,
    };
    written(b, text_add(&id, "hi").with_context(ctx(acme))).await;
    written(b, text_add(&id, "hi").with_context(ctx(globex))).await;
    b.bind(bind(acme, "s-acme")).await.unwrap();
    b.bind(bind(globex, "s-globex")).await.unwrap();
    assert_eq!(resumed(b.resolve(resolve(acme)).await.unwrap()).as_deref(), Some("s-acme"));
    assert_eq!(resumed(b.resolve(resolve(globex)).await.unwrap()).as_deref(), Some("s-globex"));
    assert_eq!(resumed(b.resolve(resolve(None)).await.unwrap()), None, "no binding without a tenant");

    // Invalidating acme's session in globex's name is not a match.
    let invalidate =
        |who, s: &str| InvalidateSession::new(agent.clone(), id.clone(), session(s)).with_context(ctx(who));
    assert!(!b.invalidate_session(invalidate(globex, "s-acme")).await.unwrap());
    assert!(b.invalidate_session(invalidate(acme, "s-acme")).await.unwrap());
    assert_eq!(resumed(b.resolve(resolve(globex)).await.unwrap()).as_deref(), Some("s-globex"));
    // A reset in acme leaves globex resumable.
    b.bind(bind(acme, "s-acme-2")).await.unwrap();
    assert!(b.reset_session(ResetSession::new(agent.clone(), id.clone()).with_context(ctx(acme))).await.unwrap());
    assert_eq!(resumed(b.resolve(resolve(acme)).await.unwrap()), None);
    assert_eq!(resumed(b.resolve(resolve(globex)).await.unwrap()).as_deref(), Some("s-globex"));
    // Deleting acme's thread drops acme's binding only, and refuses acme's later binds only.
    write(b, Delete::thread(id.clone()).with_context(ctx(acme))).await.unwrap();
    assert_err!(b.bind(bind(acme, "s-acme-3")).await, PersistError::ThreadDeleted { .. });
    assert_eq!(resumed(b.resolve(resolve(globex)).await.unwrap()).as_deref(), Some("s-globex"));
    b.bind(bind(None, "s-host")).await.expect("the thread without a tenant is not deleted");
    store.finish().await
}

/// Everything a tenant can ask about a thread id answers exactly the same whether another
/// tenant uses the id, used it (a tombstone), or nobody ever did: reads, every kind of write,
/// and session requests, compared as whole answers.
pub async fn check_another_tenants_id_answers_as_an_unused_id<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let acme = Some(tenant("acme"));
    let acme = acme.as_ref();
    let (used, gone) = (t("t-used-by-acme"), t("t-deleted-by-acme"));
    let key = IdempotencyKey::new("k1").unwrap();
    for id in [&used, &gone] {
        let add = text_add(id, "acme's secret").with_id(m("m1")).with_idempotency_key(key.clone());
        written(b, add.with_context(ctx(acme))).await;
        written(b, Reserve::new(id.clone(), Role::Assistant).with_id(m("m2")).with_context(ctx(acme))).await;
    }
    write(b, Delete::thread(gone.clone()).with_context(ctx(acme))).await.unwrap();
    let sessions = store.caps().sessions;
    if sessions {
        let bind = Bind::new(AgentId::new("a").unwrap(), used.clone(), SessionId::new("s").unwrap(), provider());
        b.bind(bind.with_context(ctx(acme))).await.unwrap();
    }
    let acme_before = snapshot_in(b.as_ref(), acme, &[&used, &gone]).await;

    let unused = probe(b.as_ref(), &t("t-never-used"), sessions).await;
    assert_eq!(probe(b.as_ref(), &used, sessions).await, unused, "an id another tenant uses answers as an unused id");
    assert_eq!(
        probe(b.as_ref(), &gone, sessions).await,
        unused,
        "an id another tenant deleted answers as an unused id"
    );
    assert_eq!(snapshot_in(b.as_ref(), acme, &[&used, &gone]).await, acme_before, "acme's threads are untouched");
    store.finish().await
}

fn provider() -> persist_core::ProviderId {
    persist_core::ProviderId::new("cli").unwrap()
}

/// Every request of tenant `globex` about `id`, in order, with the whole answers normalized:
/// the thread id written as `ID`, times zeroed.
async fn probe<B: Backend>(b: &B, id: &ThreadId, sessions: bool) -> Vec<String> {
    let globex = Some(tenant("globex"));
    let c = || ctx(globex.as_ref());
    let key = IdempotencyKey::new("k1").unwrap();
    let (agent, session) = (AgentId::new("a").unwrap(), SessionId::new("s").unwrap());
    let mut requests: Vec<PersistArgs> = vec![
        GetThread::new(id.clone()).with_context(c()).into(),
        GetMessage::new(id.clone(), m("m1")).with_context(c()).into(),
        ListMessages::new(id.clone()).include_reserved(true).with_context(c()).into(),
        UpdateContent::new(id.clone(), m("m2"), Content::text("x")).with_context(c()).into(),
        Update::message(id.clone(), m("m1"))
            .with_metadata(Metadata::new().with("k", json!(1)))
            .with_context(c())
            .into(),
        Update::thread(id.clone()).with_title(Some("t".into())).with_expected_version(1).with_context(c()).into(),
        Delete::message(id.clone(), m("m1")).with_expected_version(1).with_context(c()).into(),
        Delete::thread(id.clone()).with_expected_version(1).with_context(c()).into(),
        Search::new("acme secret").in_thread(id.clone()).with_context(c()).into(),
    ];
    if sessions {
        requests.push(Resolve::new(agent.clone(), id.clone(), provider()).with_context(c()).into());
        requests.push(ResetSession::new(agent.clone(), id.clone()).with_context(c()).into());
        requests.push(InvalidateSession::new(agent.clone(), id.clone(), session.clone()).with_context(c()).into());
    }
    // Writes that create globex's own thread, then what follows on it.
    requests.push(text_add(id, "globex's").with_id(m("m1")).with_idempotency_key(key.clone()).with_context(c()).into());
    requests.push(Reserve::new(id.clone(), Role::Assistant).with_id(m("m2")).with_context(c()).into());
    requests.push(text_add(id, "globex's").with_id(m("m1")).with_idempotency_key(key).with_context(c()).into());
    requests.push(GetThread::new(id.clone()).with_context(c()).into());
    requests.push(Search::new("globex").in_thread(id.clone()).with_context(c()).into());
    if sessions {
        requests.push(Bind::new(agent.clone(), id.clone(), session, provider()).with_context(c()).into());
        requests.push(Resolve::new(agent, id.clone(), provider()).with_context(c()).into());
    }
    let mut answers = Vec::with_capacity(requests.len());
    for request in requests {
        let answer = match request {
            PersistArgs::Get(q) => b.get(q).await.map(|m| format!("{:?}", m.map(timeless))),
            PersistArgs::GetThread(q) => b.get_thread(q).await.map(|th| format!("{:?}", th.map(timeless_thread))),
            PersistArgs::List(q) => {
                b.list(q).await.map(|p| format!("{:?}", p.items.into_iter().map(timeless).collect::<Vec<_>>()))
            }
            PersistArgs::Resolve(q) => b.resolve(q).await.map(|r| match r {
                Resolution::Resume(binding) => format!("Resume({:?})", timeless_binding(binding)),
                fresh => format!("{fresh:?}"),
            }),
            PersistArgs::ResetSession(q) => b.reset_session(q).await.map(|r| format!("{r:?}")),
            PersistArgs::InvalidateSession(q) => b.invalidate_session(q).await.map(|r| format!("{r:?}")),
            PersistArgs::Bind(q) => b.bind(q).await.map(|binding| format!("{:?}", timeless_binding(binding))),
            PersistArgs::Search(q) => b.search(q).await.map(|page| {
                let hits: Vec<_> = page.items.into_iter().map(|h| (h.message_id, h.seq, h.snippet)).collect();
                format!("{hits:?}")
            }),
            write_request => write(b, write_request).await.map(|result| format!("{:?}", timeless_result(result))),
        };
        let text = match answer {
            Ok(text) => text,
            Err(error) => format!("error {error:?}"),
        };
        answers.push(text.replace(&format!("{:?}", id.as_str()), "ID").replace(id.as_str(), "ID"));
    }
    answers
}

fn timeless(mut message: Message) -> Message {
    (message.created_at, message.updated_at) = (Timestamp::from_micros(0), Timestamp::from_micros(0));
    message
}

fn timeless_binding(mut binding: persist_core::session::SessionBinding) -> persist_core::session::SessionBinding {
    (binding.created_at, binding.updated_at) = (Timestamp::from_micros(0), Timestamp::from_micros(0));
    binding
}

fn timeless_thread(mut thread: Thread) -> Thread {
    (thread.created_at, thread.updated_at) = (Timestamp::from_micros(0), Timestamp::from_micros(0));
    thread.deleted_at = thread.deleted_at.map(|_| Timestamp::from_micros(0));
    thread
}

fn timeless_result(result: PersistResult) -> PersistResult {
    match result {
        PersistResult::Added(r) => persist_core::Added::new(timeless(r.message), r.deduplicated).into(),
        PersistResult::Reserved(r) => persist_core::Reserved::new(timeless(r.message), r.deduplicated).into(),
        PersistResult::ContentUpdated(r) => persist_core::ContentUpdated::new(timeless(r.message)).into(),
        PersistResult::Updated(persist_core::Updated::Message(m)) => persist_core::Updated::Message(timeless(m)).into(),
        PersistResult::Updated(persist_core::Updated::Thread(th)) => {
            persist_core::Updated::Thread(timeless_thread(th)).into()
        }
        other => other,
    }
}

/// A request without a tenant addresses the threads without one, never a tenant's thread;
/// naming the tenant reaches it.
pub async fn check_no_tenant_is_a_namespace_of_its_own<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let acme = Some(tenant("acme"));
    let acme = acme.as_ref();
    let id = t("acme-support");
    let message = written(b, text_add(&id, "from tenant").with_context(ctx(acme))).await;
    assert!(thread_in(b.as_ref(), None, &id).await.is_none(), "no thread of that id without a tenant");
    let update = UpdateContent::new(id.clone(), message.id.clone(), Content::text("host edit"));
    assert_err!(write(b, update.clone()).await, PersistError::NotFound { .. });
    assert_eq!(
        write(b, update.with_context(ctx(acme))).await.unwrap().message().unwrap().content.to_text(),
        "host edit"
    );
    let listed = b.threads(ListThreads::new()).await.unwrap();
    assert!(listed.items.is_empty(), "the threads without a tenant: none");
    let th = thread_in(b.as_ref(), acme, &id).await.unwrap();
    assert_eq!(th.tenant.as_ref(), acme);
    store.finish().await
}

/// A listing reaches its context's tenant's threads; an operator's listing across tenants
/// reaches every thread once, each naming its tenant, newest first through cursor pages, also
/// when two tenants use one id.
pub async fn check_threads_are_listed_per_tenant_and_across_for_operators<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let (acme, globex) = (Some(tenant("acme")), Some(tenant("globex")));
    let writes: [(Option<&TenantId>, &str); 6] = [
        (acme.as_ref(), "a1"),
        (globex.as_ref(), "shared"),
        (None, "n1"),
        (acme.as_ref(), "shared"),
        (globex.as_ref(), "g1"),
        (None, "shared"),
    ];
    for (who, id) in writes {
        written(b, text_add(&t(id), "x").with_context(ctx(who))).await;
    }
    let names = |page: &persist_core::Page<Thread, persist_core::read::ThreadCursor>| {
        page.items
            .iter()
            .map(|th| (th.tenant.as_ref().map(|t| t.as_str().to_owned()), th.id.as_str().to_owned()))
            .collect::<Vec<_>>()
    };
    for who in [acme.as_ref(), globex.as_ref(), None] {
        let page = b.threads(ListThreads::new().with_context(ctx(who))).await.unwrap();
        let mut expected: Vec<_> = writes
            .iter()
            .rev()
            .filter(|(w, _)| *w == who)
            .map(|(w, id)| (w.map(|t| t.as_str().to_owned()), (*id).to_owned()))
            .collect();
        let mut got = names(&page);
        expected.sort();
        got.sort();
        assert_eq!(got, expected, "{who:?} lists its own threads");
    }
    // Across tenants, two at a time: each of the six once, in the listing's order.
    let mut query = ListThreads::new().across_tenants(true).with_limit(2);
    let mut seen: Vec<Thread> = Vec::new();
    loop {
        let page = b.threads(query.clone()).await.unwrap();
        seen.extend(page.items.iter().cloned());
        if !page.has_more {
            break;
        }
        query = query.with_cursor(page.next_cursor);
    }
    assert_eq!(
        seen.len(),
        6,
        "every thread once: {:?}",
        seen.iter().map(|th| (&th.tenant, &th.id)).collect::<Vec<_>>()
    );
    let mut sorted = seen.clone();
    sorted.sort_by(persist_core::read::newest_first);
    assert_eq!(seen, sorted, "newest first, ties by id then tenant");
    let shared = seen.iter().filter(|th| th.id.as_str() == "shared").count();
    assert_eq!(shared, 3, "one id, three threads");
    store.finish().await
}

/// Stranded reservations are found in the context's tenant, or across tenants for the host's
/// maintenance, each naming its thread's tenant.
pub async fn check_stranded_reservations_are_found_per_tenant<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let (acme, globex) = (Some(tenant("acme")), Some(tenant("globex")));
    let id = t("general");
    for who in [acme.as_ref(), globex.as_ref(), None] {
        written(b, Reserve::new(id.clone(), Role::Assistant).with_id(m("slot")).with_context(ctx(who))).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let cutoff = Timestamp::now();
    for who in [acme.as_ref(), globex.as_ref(), None] {
        let found = b.stranded(FindStranded::new(cutoff).with_context(ctx(who))).await.unwrap();
        assert_eq!(found.len(), 1, "{who:?} finds its own reservation only");
        assert_eq!((found[0].tenant.as_ref(), found[0].message.id.as_str()), (who, "slot"));
    }
    let all = b.stranded(FindStranded::new(cutoff).across_tenants(true)).await.unwrap();
    let mut tenants: Vec<_> = all.iter().map(|s| s.tenant.clone()).collect();
    tenants.sort();
    assert_eq!(tenants, vec![None, acme.clone(), globex.clone()]);
    store.finish().await
}
