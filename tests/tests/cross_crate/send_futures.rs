//! Every public future a user would spawn is `Send + 'static` once it owns its handle: a
//! nightly retention job in `tokio::spawn`, a call in an axum handler. A compile-time test:
//! this file does not build if one of them is not `Send` (as `Pipeline::prune` once was).

use std::future::Future;

use persist::args::{Add, Delete, Reserve, Restore, Update, UpdateContent};
use persist::feed::{ReadFeed, Subscription};
use persist::layer::Events;
use persist::layer::events::ThreadEvents;
use persist::lifecycle::{Fork, Prune};
use persist::maintenance::CleanupStranded;
use persist::once::SetOnce;
use persist::postgres::{PostgresBackend, PostgresBackendBuilder};
use persist::prelude::*;
use persist::read::{FindStranded, GetMessage, GetThread, ListMessages, ListThreads};
use persist::session::{Bind, InvalidateSession, ListBindings, ResetSession, Resolve};
use persist::sqlite::{SqliteBackend, SqliteBackendBuilder};
use persist::{Backend, PersistArgs, Pipeline, Scoped};

/// Compiles only for a future that can be spawned.
fn spawnable<F: Future + Send + 'static>(future: F) -> F {
    future
}

/// Every request type once, for the calls below.
#[derive(Clone)]
struct Requests {
    add: Add,
    reserve: Reserve,
    update_content: UpdateContent,
    update: Update,
    delete: Delete,
    restore: Restore,
    get: GetMessage,
    get_thread: GetThread,
    list: ListMessages,
    threads: ListThreads,
    find_stranded: FindStranded,
    bind: Bind,
    resolve: Resolve,
    reset_session: ResetSession,
    invalidate_session: InvalidateSession,
    bindings: ListBindings,
    read_feed: ReadFeed,
    cleanup: CleanupStranded,
    fork: Fork,
    prune: Prune,
    set_once: SetOnce,
}

/// Each call moved into an `async move` block with an owned handle, as a spawned task holds it.
macro_rules! spawnable_calls {
    ($handle:ident, $requests:ident: $($method:ident($field:ident)),* $(,)?) => {
        $(
            let (h, r) = ($handle.clone(), $requests.clone());
            drop(spawnable(async move { h.$method(r.$field).await }));
        )*
    };
}

fn pipeline_calls(pipeline: Pipeline, requests: Requests) {
    spawnable_calls!(pipeline, requests:
        add(add), reserve(reserve), update_content(update_content), update(update), delete(delete),
        restore(restore), get(get), get_thread(get_thread), list(list), threads(threads),
        find_stranded(find_stranded), bind(bind), resolve(resolve), reset_session(reset_session),
        invalidate_session(invalidate_session), bindings(bindings), read_feed(read_feed),
        subscribe(read_feed), cleanup_stranded(cleanup), fork(fork), prune(prune), set_once(set_once),
    );
    let p = pipeline.clone();
    drop(spawnable(async move { p.ping().await }));
    drop(spawnable(pipeline.execute(PersistArgs::from(requests.add))));
}

fn scoped_calls(scoped: Scoped, requests: Requests) {
    spawnable_calls!(scoped, requests:
        add(add), reserve(reserve), update_content(update_content), update(update), delete(delete),
        restore(restore), get(get), get_thread(get_thread), list(list), threads(threads),
        find_stranded(find_stranded), bind(bind), resolve(resolve), reset_session(reset_session),
        invalidate_session(invalidate_session), bindings(bindings), read_feed(read_feed), subscribe(read_feed),
        cleanup_stranded(cleanup), fork(fork), prune(prune), set_once(set_once),
    );
    let s = scoped.clone();
    drop(spawnable(async move { s.ping().await }));
    drop(spawnable(scoped.execute(PersistArgs::from(requests.add))));
}

fn subscription_calls(mut subscription: Subscription, events: Events, mut thread_events: ThreadEvents) {
    drop(spawnable(async move { subscription.next().await }));
    drop(spawnable(async move { events.subscribe().recv().await }));
    drop(spawnable(async move { thread_events.recv().await }));
}

fn backend_calls(sqlite: SqliteBackend, sqlite_builder: SqliteBackendBuilder, postgres: PostgresBackend) {
    drop(spawnable(sqlite_builder.open()));
    drop(spawnable(SqliteBackend::open("persist.db")));
    let s = sqlite.clone();
    drop(spawnable(async move { s.check().await }));
    let s = sqlite.clone();
    drop(spawnable(async move { s.trim_feed().await }));
    let s = sqlite.clone();
    drop(spawnable(async move { s.close().await }));
    let s = sqlite.clone();
    drop(spawnable(async move {
        s.apply(PersistArgs::from(Add::new(thread(), persist::Role::User, persist::Content::text("x")))).await
    }));
    drop(spawnable(PostgresBackend::connect("postgres://localhost/test")));
    let builder: PostgresBackendBuilder = PostgresBackend::builder("postgres://localhost/test");
    drop(spawnable(builder.connect()));
    let p = postgres.clone();
    drop(spawnable(async move { p.trim_feed().await }));
    drop(spawnable(async move { postgres.close().await }));
}

fn encryption_calls(layer: persist::encrypt::EncryptLayer, pipeline: Pipeline) {
    drop(spawnable(async move { layer.rotate(&pipeline, persist::encrypt::RotateKeys::new()).await }));
}

fn thread() -> persist::ThreadId {
    persist::ThreadId::new("t").unwrap()
}

#[test]
fn every_public_future_is_send_and_static() {
    // The functions above are checked when this file compiles; naming them keeps them built.
    let _ = (pipeline_calls, scoped_calls, subscription_calls, backend_calls, encryption_calls);
}
