//! Listing threads: newest first, metadata filter, cursor paging, counters that match.

use std::collections::HashSet;
use std::time::Duration;

use persist_core::args::{Delete, Reserve, Update, UpdateContent};
use persist_core::read::ListThreads;
use persist_core::{Backend, Content, Metadata, Role, Thread, ThreadId};
use serde_json::json;

use crate::fixture::{add_text, all_messages, t, thread, write, written};
use crate::{Factory, Outcome};

async fn names<B: Backend>(b: &B, query: ListThreads) -> Vec<String> {
    let page = b.threads(query).await.expect("threads");
    page.items.iter().map(|th| th.id.as_str().to_owned()).collect()
}

/// Clock-based order needs distinct timestamps; wait past the clock's resolution.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(3)).await;
}

/// Threads are listed most recently updated first.
pub async fn check_threads_newest_first<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b().as_ref();
    for name in ["t-a", "t-b", "t-c"] {
        add_text(b, &t(name), "x").await;
        tick().await;
    }
    assert_eq!(names(b, ListThreads::new()).await, ["t-c", "t-b", "t-a"]);
    add_text(b, &t("t-a"), "new activity").await;
    assert_eq!(names(b, ListThreads::new()).await, ["t-a", "t-c", "t-b"]);
    store.finish().await
}

/// The metadata filter keeps threads whose metadata contains every key given.
pub async fn check_threads_metadata_filter<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b().as_ref();
    for (name, user, kind) in [("f-1", "u1", "chat"), ("f-2", "u2", "chat"), ("f-3", "u1", "task")] {
        add_text(b, &t(name), "x").await;
        let meta = Metadata::new().with("user", json!(user)).with("kind", json!(kind));
        write(b, Update::thread(t(name)).with_metadata(meta)).await.expect("tag thread");
        tick().await;
    }
    let u1 = ListThreads::new().with_filter(Metadata::new().with("user", json!("u1")));
    assert_eq!(names(b, u1).await, ["f-3", "f-1"]);
    let both = Metadata::new().with("user", json!("u1")).with("kind", json!("chat"));
    assert_eq!(names(b, ListThreads::new().with_filter(both)).await, ["f-1"]);
    let none = ListThreads::new().with_filter(Metadata::new().with("user", json!("nobody")));
    assert!(names(b, none).await.is_empty());
    assert_eq!(names(b, ListThreads::new()).await.len(), 3, "an empty filter keeps everything");
    store.finish().await
}

/// A filter matches by value on every backend: `1` matches a stored `1.0`, at any depth; a
/// string `"1"` does not match a number, and arrays and objects must match whole.
pub async fn check_threads_filter_compares_numbers_by_value<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b().as_ref();
    add_text(b, &t("scored"), "x").await;
    let meta = Metadata::new().with("score", json!(1.0)).with("nested", json!({"a": [1.0, {"b": 2}], "c": "d"}));
    write(b, Update::thread(t("scored")).with_metadata(meta)).await.expect("tag thread");
    let matches = |filter: serde_json::Value| {
        let filter = Metadata::try_from(filter).expect("an object");
        async move { names(b, ListThreads::new().with_filter(filter)).await == ["scored"] }
    };
    assert!(matches(json!({"score": 1})).await, "1 matches a stored 1.0");
    assert!(matches(json!({"score": 1e0})).await);
    assert!(matches(json!({"nested": {"a": [1, {"b": 2.0}], "c": "d"}})).await, "by value at any depth");
    assert!(matches(json!({"score": 1, "nested": {"c": "d", "a": [1, {"b": 2}]}})).await);
    for missing in [
        json!({"score": 2}),
        json!({"score": "1"}),
        json!({"nested": {"a": [1, {"b": 2}]}}),
        json!({"nested": {"a": [1], "c": "d"}}),
        json!({"nested": {"a": [1, {"b": 2}, 3], "c": "d"}}),
        json!({"nested": {"a": [1, {"b": 2}], "c": "d", "e": null}}),
        json!({"other": 1}),
    ] {
        assert!(!matches(missing.clone()).await, "{missing} matched");
    }
    store.finish().await
}

/// Cursor pages cover every thread once, with `has_more` right.
pub async fn check_threads_cursor_paging<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b().as_ref();
    for i in 0..7 {
        add_text(b, &t(&format!("p-{i}")), "x").await;
    }
    let mut seen = Vec::new();
    let mut query = ListThreads::new().with_limit(3);
    let mut sizes = Vec::new();
    loop {
        let page = b.threads(query.clone()).await.expect("threads");
        sizes.push((page.items.len(), page.has_more));
        seen.extend(page.items.iter().map(|th| th.id.clone()));
        if !page.has_more {
            break;
        }
        query = query.with_cursor(page.next_cursor);
    }
    assert_eq!(sizes, [(3, true), (3, true), (1, false)]);
    let unique: HashSet<&ThreadId> = seen.iter().collect();
    assert_eq!((seen.len(), unique.len()), (7, 7));
    store.finish().await
}

/// Deleted threads are not listed.
pub async fn check_threads_exclude_deleted<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b().as_ref();
    add_text(b, &t("alive"), "x").await;
    add_text(b, &t("dead"), "x").await;
    write(b, Delete::thread(t("dead"))).await.expect("delete");
    assert_eq!(names(b, ListThreads::new()).await, ["alive"]);
    store.finish().await
}

/// After a mix of writes, `message_count`, `last_seq` and `updated_at` agree with the messages.
pub async fn check_thread_counters_match_messages<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b().as_ref();
    let id = t("counters");
    let one = add_text(b, &id, "1").await;
    let slot = written(b, Reserve::new(id.clone(), Role::Assistant)).await;
    add_text(b, &id, "3").await;
    write(b, Delete::message(id.clone(), one.id)).await.expect("delete");
    tick().await;
    written(b, UpdateContent::new(id.clone(), slot.id, Content::text("filled"))).await;
    let th: Thread = thread(b, &id).await.unwrap();
    let messages = all_messages(b, &id).await;
    assert_eq!(th.message_count, messages.len() as u64);
    assert_eq!(th.last_seq, 3);
    let newest = messages.iter().map(|m| m.updated_at).max().unwrap();
    assert!(th.updated_at >= newest, "thread updated_at moves with its latest message write");
    store.finish().await
}
