//! adk's `SessionService` contract as `PersistSessionService` keeps it, on the in-memory
//! backend, SQLite and PostgreSQL, with the same answers: identities kept apart, a session
//! created once, an event appended once, state without lost updates between two instances,
//! a state delta never lost by a process that died after writing its event, tenancy.

use std::collections::HashMap;
use std::sync::Arc;

use adk_core::{Content, ErrorCategory, Event};
use adk_session::{AppendEventRequest, CreateRequest, DeleteRequest, GetRequest, ListRequest, Session, SessionService};
use chrono::{Duration, Utc};
use persist::args::AppendTurn;
use persist::read::ListThreads;
use persist::{Context, Metadata, Pipeline, TenantId};
use persist_adk::PersistSessionService;
use persist_testkit::stores;
use serde_json::{Value, json};

/// One pipeline per backend, and a second pipeline on the same store (another instance).
async fn backends(dir: &tempfile::TempDir) -> Vec<(String, Pipeline, Pipeline)> {
    let memory = Pipeline::new(persist::memory::MemoryBackend::new());
    let mut backends = vec![("memory".to_owned(), memory.clone(), memory)];
    for store in stores(dir, "service").await {
        backends.push((format!("{store:?}"), store.open().await, store.open().await));
    }
    backends
}

fn create(app: &str, user: &str, session: &str, state: HashMap<String, Value>) -> CreateRequest {
    CreateRequest { app_name: app.into(), user_id: user.into(), session_id: Some(session.into()), state }
}

fn get(app: &str, user: &str, session: &str) -> GetRequest {
    GetRequest {
        app_name: app.into(),
        user_id: user.into(),
        session_id: session.into(),
        num_recent_events: None,
        after: None,
    }
}

fn identity(app: &str, user: &str, session: &str) -> adk_core::AdkIdentity {
    adk_core::AdkIdentity::new(app.try_into().unwrap(), user.try_into().unwrap(), session.try_into().unwrap())
}

/// An event of `author` saying `words`, with a state delta.
fn event(author: &str, words: &str, delta: &[(&str, Value)]) -> Event {
    let mut event = Event::new("inv-1");
    event.author = author.into();
    let role = if author == "user" { "user" } else { "model" };
    event.llm_response.content = Some(Content::new(role).with_text(words));
    event.actions.state_delta = delta.iter().map(|(key, value)| ((*key).to_owned(), value.clone())).collect();
    event
}

async fn append(sessions: &dyn SessionService, app: &str, user: &str, session: &str, event: Event) {
    let request = AppendEventRequest { identity: identity(app, user, session), event };
    sessions.append_event_for_identity(request).await.expect("appended");
}

fn words(session: &dyn Session) -> Vec<String> {
    session
        .events()
        .all()
        .iter()
        .filter_map(|event| event.llm_response.content.as_ref())
        .map(|content| content.parts.iter().filter_map(|part| part.text()).collect::<String>())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_are_kept_apart_and_a_session_is_created_once() {
    let dir = tempfile::tempdir().unwrap();
    for (name, pipeline, _) in backends(&dir).await {
        let sessions = PersistSessionService::new(&pipeline);
        // One session id under two users and two apps: three sessions.
        for (app, user) in [("a1", "u1"), ("a1", "u2"), ("a2", "u1")] {
            sessions.create(create(app, user, "same", HashMap::new())).await.expect("created");
            append(&sessions, app, user, "same", event("user", &format!("{app}/{user}"), &[])).await;
        }
        for (app, user) in [("a1", "u1"), ("a1", "u2"), ("a2", "u1")] {
            let session = sessions.get(get(app, user, "same")).await.expect("found");
            assert_eq!(words(session.as_ref()), [format!("{app}/{user}")], "{name}");
            assert_eq!((session.app_name(), session.user_id(), session.id()), (app, user, "same"), "{name}");
        }
        let missing = sessions.get(get("a1", "u3", "same")).await.err().expect("not found");
        assert_eq!((missing.category, missing.code), (ErrorCategory::NotFound, "session.not_found"), "{name}");

        // A session is created once; erased, its id can be used again.
        let again = sessions.create(create("a1", "u1", "same", HashMap::new())).await.err().expect("refused");
        assert_eq!((again.category, again.code), (ErrorCategory::InvalidInput, "session.already_exists"), "{name}");
        let delete = DeleteRequest { app_name: "a1".into(), user_id: "u1".into(), session_id: "same".into() };
        sessions.delete(delete.clone()).await.expect("deleted");
        sessions.delete(delete).await.expect("deleting again is fine");
        assert!(sessions.get(get("a1", "u1", "same")).await.is_err(), "{name}");
        sessions.create(create("a1", "u1", "same", HashMap::new())).await.expect("created again");
        assert!(words(sessions.get(get("a1", "u1", "same")).await.unwrap().as_ref()).is_empty(), "{name}");
        assert_eq!(
            words(sessions.get(get("a1", "u2", "same")).await.unwrap().as_ref()),
            ["a1/u2"],
            "{name}: another user's session of that id is untouched"
        );

        // Listed per (app, user), newest first, with offset and limit.
        for id in ["s1", "s2", "s3"] {
            sessions.create(create("a3", "u1", id, HashMap::new())).await.expect("created");
        }
        let list = |offset, limit| ListRequest {
            app_name: "a3".into(),
            user_id: "u1".into(),
            limit: Some(limit),
            offset: Some(offset),
        };
        let ids = |listed: Vec<Box<dyn Session>>| listed.iter().map(|s| s.id().to_owned()).collect::<Vec<_>>();
        assert_eq!(ids(sessions.list(list(0, 10)).await.unwrap()), ["s3", "s2", "s1"], "{name}");
        assert_eq!(ids(sessions.list(list(1, 1)).await.unwrap()), ["s2"], "{name}");
        sessions.delete_all_sessions("a3", "u1").await.expect("all deleted");
        assert!(sessions.list(list(0, 10)).await.unwrap().is_empty(), "{name}");

        // Bad ids are adk's typed errors; nothing is written.
        let empty = sessions.create(create("", "u1", "x", HashMap::new())).await.err().expect("refused");
        assert_eq!(empty.category, ErrorCategory::InvalidInput, "{name}: {empty}");
        let long = "x".repeat(513);
        assert!(sessions.create(create("a1", &long, "x", HashMap::new())).await.is_err(), "{name}");
        // adk allows ids of 512 bytes; persist's thread ids are derived, so they fit.
        let max = "y".repeat(512);
        sessions.create(create(&max, &max, &max, HashMap::new())).await.expect("512-byte ids");
        assert!(sessions.get(get(&max, &max, &max)).await.is_ok(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_appended_once_and_the_bare_session_id_must_name_one_session() {
    let dir = tempfile::tempdir().unwrap();
    for (name, pipeline, _) in backends(&dir).await {
        let sessions = PersistSessionService::new(&pipeline);
        sessions.create(create("app", "u1", "s1", HashMap::new())).await.unwrap();
        let said = event("user", "hello", &[("count", json!(1))]);
        append(&sessions, "app", "u1", "s1", said.clone()).await;
        append(&sessions, "app", "u1", "s1", said.clone()).await;
        let session = sessions.get(get("app", "u1", "s1")).await.unwrap();
        assert_eq!(words(session.as_ref()), ["hello"], "{name}: sent twice, stored once");

        // Another event under a used id is refused, and nothing of it is written.
        let mut other = event("user", "something else", &[("count", json!(2))]);
        other.id = said.id.clone();
        let request = AppendEventRequest { identity: identity("app", "u1", "s1"), event: other };
        let refused = sessions.append_event_for_identity(request).await.expect_err("refused");
        assert_eq!(refused.category, ErrorCategory::InvalidInput, "{name}: {refused}");
        let session = sessions.get(get("app", "u1", "s1")).await.unwrap();
        assert_eq!((words(session.as_ref()).len(), session.state().get("count")), (1, Some(json!(1))), "{name}");

        // To a session that does not exist: not found, and no session appears.
        let request = AppendEventRequest { identity: identity("app", "u1", "nope"), event: event("user", "hi", &[]) };
        let missing = sessions.append_event_for_identity(request).await.expect_err("not found");
        assert_eq!(missing.category, ErrorCategory::NotFound, "{name}");
        assert!(sessions.get(get("app", "u1", "nope")).await.is_err(), "{name}");

        // The bare session id: appended when one session has it, refused when several do.
        sessions.append_event("s1", event("model", "hi there", &[])).await.expect("one session");
        sessions.create(create("app", "u2", "s1", HashMap::new())).await.unwrap();
        let ambiguous = sessions.append_event("s1", event("user", "who?", &[])).await.expect_err("ambiguous");
        assert_eq!((ambiguous.category, ambiguous.code), (ErrorCategory::InvalidInput, "session.ambiguous"));
        assert_eq!(
            sessions.append_event("none", event("user", "?", &[])).await.err().unwrap().category,
            ErrorCategory::NotFound
        );

        // Events after a time, and the most recent ones.
        let mut late = event("user", "later", &[]);
        late.timestamp = Utc::now() + Duration::seconds(5);
        append(&sessions, "app", "u1", "s1", late.clone()).await;
        let mut request = get("app", "u1", "s1");
        request.after = Some(late.timestamp - Duration::milliseconds(1));
        assert_eq!(words(sessions.get(request).await.unwrap().as_ref()), ["later"], "{name}");
        let mut request = get("app", "u1", "s1");
        request.num_recent_events = Some(2);
        assert_eq!(words(sessions.get(request).await.unwrap().as_ref()), ["hi there", "later"], "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_changing_state_at_once_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    for (name, first, second) in backends(&dir).await {
        let one = Arc::new(PersistSessionService::new(&first));
        let two = Arc::new(PersistSessionService::new(&second));
        one.create(create("app", "u1", "a", HashMap::new())).await.unwrap();
        one.create(create("app", "u1", "b", HashMap::new())).await.unwrap();
        let writer = |sessions: Arc<PersistSessionService>, session: &'static str, tag: &'static str| {
            tokio::spawn(async move {
                for i in 0..10 {
                    let delta = [
                        (format!("user:{tag}{i}"), json!(i)),
                        (format!("app:{tag}{i}"), json!(i)),
                        (format!("{tag}{i}"), json!(i)),
                    ];
                    let delta: Vec<(&str, Value)> = delta.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
                    append(sessions.as_ref(), "app", "u1", session, event("model", tag, &delta)).await;
                }
            })
        };
        // Two instances on one session, and one on another session of the same user.
        let tasks = [writer(one.clone(), "a", "x"), writer(two.clone(), "a", "y"), writer(two.clone(), "b", "z")];
        for task in tasks {
            task.await.unwrap();
        }
        let a = one.get(get("app", "u1", "a")).await.unwrap();
        let state = a.state().all();
        for tag in ["x", "y", "z"] {
            for i in 0..10 {
                assert_eq!(state.get(&format!("user:{tag}{i}")), Some(&json!(i)), "{name}: user:{tag}{i}");
                assert_eq!(state.get(&format!("app:{tag}{i}")), Some(&json!(i)), "{name}: app:{tag}{i}");
            }
        }
        for tag in ["x", "y"] {
            for i in 0..10 {
                assert_eq!(state.get(&format!("{tag}{i}")), Some(&json!(i)), "{name}: {tag}{i} of session a");
            }
        }
        assert!(!state.contains_key("z0"), "{name}: session b's own state is not a's");
        assert_eq!(a.events().len(), 20, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_delta_whose_writer_died_after_its_event_is_applied_by_the_next_read() {
    let dir = tempfile::tempdir().unwrap();
    for (name, pipeline, _) in backends(&dir).await {
        let sessions = PersistSessionService::new(&pipeline);
        sessions.create(create("app", "u1", "s1", HashMap::new())).await.unwrap();
        append(&sessions, "app", "u1", "s1", event("user", "first", &[("step", json!(1))])).await;
        // A writer that stored its event and died before applying its delta: the event alone.
        let filter = Metadata::new().with("adk.session", json!("s1"));
        let thread = pipeline.threads(ListThreads::new().with_filter(filter)).await.unwrap().items.remove(0).id;
        let died = event("model", "second", &[("step", json!(2)), ("user:seen", json!(true))]);
        let message = persist_adk::convert::to_turn_message(&died).unwrap();
        pipeline.append_turn(AppendTurn::of(thread, [message])).await.unwrap();

        let session = sessions.get(get("app", "u1", "s1")).await.unwrap();
        assert_eq!(words(session.as_ref()), ["first", "second"], "{name}");
        assert_eq!(session.state().get("step"), Some(json!(2)), "{name}: applied, in order");
        assert_eq!(session.state().get("user:seen"), Some(json!(true)), "{name}");
        // Applied once: a later event's value is not overwritten by a second application.
        append(&sessions, "app", "u1", "s1", event("user", "third", &[("step", json!(3))])).await;
        assert_eq!(sessions.get(get("app", "u1", "s1")).await.unwrap().state().get("step"), Some(json!(3)), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_sessions_are_its_own() {
    let dir = tempfile::tempdir().unwrap();
    for (name, pipeline, _) in backends(&dir).await {
        let tenant = |id: &str| pipeline.scoped(Context::new().with_tenant(TenantId::new(id).unwrap()));
        let acme = PersistSessionService::scoped(tenant("acme"));
        let globex = PersistSessionService::scoped(tenant("globex"));
        let state = HashMap::from([("user:plan".to_owned(), json!("gold")), ("app:motd".to_owned(), json!("hi"))]);
        acme.create(create("app", "u1", "s1", state)).await.unwrap();
        append(&acme, "app", "u1", "s1", event("user", "acme's words", &[])).await;
        assert!(globex.get(get("app", "u1", "s1")).await.is_err(), "{name}: another tenant's session");
        globex.create(create("app", "u1", "s1", HashMap::new())).await.expect("its own session of that id");
        let theirs = globex.get(get("app", "u1", "s1")).await.unwrap();
        assert!(words(theirs.as_ref()).is_empty(), "{name}");
        assert_eq!((theirs.state().get("user:plan"), theirs.state().get("app:motd")), (None, None), "{name}");
        let ours = acme.get(get("app", "u1", "s1")).await.unwrap();
        assert_eq!(ours.state().get("user:plan"), Some(json!("gold")), "{name}");
    }
}
