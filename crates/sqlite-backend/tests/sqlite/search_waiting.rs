//! The search index kept later (schema version 24, format 4): a lone caller's adds wait (rows
//! above `persist_search_state.indexed`, and those listed in `persist_search_pending`) and are
//! indexed many at a time, yet what is acknowledged is
//! searchable: right after each add, through another handle on the file (another process's
//! writer, a handle for reads only), after a crash; a change or a removal of a message waiting
//! or indexed leaves no old word found; a purged message waiting leaves no word in the file;
//! turning the index off and on empties what waits; a store migrated from an earlier version
//! indexes at once until it is finished.

use persist_core::args::{Delete, UpdateContent};
use persist_core::search::Search;
use persist_core::{Backend, Content, MessageId};
use persist_sqlite::SqliteBackend;
use sqlx::Connection;

use crate::support::{add, raw, shipped_schema, thread};

async fn found(backend: &SqliteBackend, text: &str) -> Vec<String> {
    let page = backend.search(Search::new(text)).await.unwrap();
    page.items.into_iter().map(|hit| hit.snippet.text).collect()
}

/// Messages waiting for the index in the file at `path`: above the highest row indexed, and
/// those listed at or below it.
async fn waiting(path: &std::path::Path) -> i64 {
    let mut conn = raw(path).await;
    let count = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM persist_search_pending) \
              + (SELECT count(*) FROM persist_messages WHERE row > (SELECT indexed FROM persist_search_state))",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    count
}

fn file_holds(path: &std::path::Path, needle: &str) -> bool {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes.windows(needle.len()).any(|window| window == needle.as_bytes())
}

async fn added(backend: &SqliteBackend, thread_id: &str, text: &str) -> MessageId {
    backend.apply(add(thread_id, text)).await.unwrap().message().unwrap().id.clone()
}

/// A lone caller's adds wait for the index (fewer than 128 at a time, the rest indexed by the
/// add that made 128 wait), and a search right after each add finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_right_after_each_lone_add_finds_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("each.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    // Without searching in between: they wait, then the 128th indexes them all.
    for i in 0..127 {
        added(&backend, "bulk", &format!("bulk{i} words")).await;
    }
    assert_eq!(waiting(&path).await, 127, "a lone caller's adds wait for the index");
    added(&backend, "bulk", "bulk127 words").await;
    assert_eq!(waiting(&path).await, 0, "the add that made 128 wait indexed them");
    assert_eq!(found(&backend, "bulk5").await, ["bulk5 words"]);
    // A search right after each add.
    for i in 0..300 {
        let text = format!("item{i} lone add");
        added(&backend, &format!("t{}", i % 4), &text).await;
        assert_eq!(found(&backend, &format!("item{i}")).await, [text]);
    }
    assert_eq!(found(&backend, "lone").await.len(), 20, "a page of the 300");
    let all = backend.search(Search::new("lone").with_limit(500)).await.unwrap();
    assert_eq!(all.items.len(), 300);
    backend.close().await;
}

/// An add another handle made (another process's, as far as the file goes) still waiting: a
/// search through this handle has its own writer index it first; a handle for reads only, which
/// has no writer, searches what waits apart (the same answers, in the same order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_handle_finds_an_add_still_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two.db");
    let first = SqliteBackend::open(&path).await.unwrap();
    let second = SqliteBackend::open(&path).await.unwrap();
    added(&first, "a", "written by the first handle").await;
    assert_eq!(waiting(&path).await, 1);
    assert_eq!(found(&second, "first").await, ["written by the first handle"]);
    assert_eq!(waiting(&path).await, 0, "indexed by the second handle's writer");

    let reader = SqliteBackend::builder(&path).read_only(true).open().await.unwrap();
    added(&first, "a", "indexed common").await;
    found(&first, "indexed").await;
    for i in 0..3 {
        added(&first, "b", &format!("waiting{i} common")).await;
    }
    assert_eq!(waiting(&path).await, 3);
    assert_eq!(found(&reader, "waiting1").await, ["waiting1 common"]);
    assert_eq!(
        found(&reader, "common").await,
        ["waiting2 common", "waiting1 common", "waiting0 common", "indexed common"],
        "what waits and what is indexed, newest first"
    );
    let page = reader.search(Search::new("common").with_limit(2)).await.unwrap();
    let texts: Vec<_> = page.items.iter().map(|hit| hit.snippet.text.as_str()).collect();
    assert_eq!(texts, ["waiting2 common", "waiting1 common"]);
    let next = reader.search(Search::new("common").with_limit(2).with_cursor(page.next_cursor)).await.unwrap();
    let texts: Vec<_> = next.items.iter().map(|hit| hit.snippet.text.as_str()).collect();
    assert_eq!(texts, ["waiting0 common", "indexed common"]);
    assert_eq!(waiting(&path).await, 3, "a reader writes nothing");
    assert_eq!(found(&second, "common").await.len(), 4);
    reader.close().await;
    second.close().await;
    first.close().await;
}

/// A change or a removal of a message waiting for the index (its words never entered it) or
/// already indexed (its words leave it): the old words are not found, the new ones are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_and_removals_of_waiting_and_indexed_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("changes.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    for indexed in [false, true] {
        let tag = if indexed { "indexed" } else { "waiting" };
        let changed = added(&backend, "t", &format!("{tag}old alpha")).await;
        let deleted = added(&backend, "t", &format!("{tag}deleted beta")).await;
        added(&backend, &format!("purged{tag}"), &format!("{tag}purged gamma")).await;
        if indexed {
            assert_eq!(found(&backend, &format!("{tag}old")).await.len(), 1);
            assert_eq!(waiting(&path).await, 0);
        } else {
            assert_eq!(waiting(&path).await, 3);
        }
        let update = UpdateContent::new(thread("t"), changed, Content::text(format!("{tag}new delta")));
        backend.apply(update.into()).await.unwrap();
        backend.apply(Delete::message(thread("t"), deleted).into()).await.unwrap();
        backend.apply(Delete::purge(thread(&format!("purged{tag}"))).into()).await.unwrap();
        if !indexed {
            assert_eq!(waiting(&path).await, 1, "only the changed message waits, with its new text");
        }
        assert!(found(&backend, &format!("{tag}old")).await.is_empty(), "{tag}: old words gone");
        assert_eq!(found(&backend, &format!("{tag}new")).await, [format!("{tag}new delta")]);
        assert!(found(&backend, &format!("{tag}deleted")).await.is_empty(), "{tag}: deleted");
        assert!(found(&backend, &format!("{tag}purged")).await.is_empty(), "{tag}: purged");
    }
    // The same message changed twice while it waits, then indexed, then changed again.
    let twice = added(&backend, "u", "first epsilon").await;
    for text in ["second epsilon", "third epsilon"] {
        let update = UpdateContent::new(thread("u"), twice.clone(), Content::text(text));
        backend.apply(update.into()).await.unwrap();
    }
    assert_eq!(found(&backend, "epsilon").await, ["third epsilon"]);
    let update = UpdateContent::new(thread("u"), twice, Content::text("fourth zeta"));
    backend.apply(update.into()).await.unwrap();
    assert!(found(&backend, "epsilon").await.is_empty());
    assert_eq!(found(&backend, "fourth").await, ["fourth zeta"]);
    // The newest message removed once indexed: the next add may take its row again, at or
    // below the highest row indexed (then it is listed as waiting).
    let last = added(&backend, "v", "reused eta").await;
    found(&backend, "reused").await;
    backend.apply(Delete::message(thread("v"), last).into()).await.unwrap();
    added(&backend, "v", "again theta").await;
    assert_eq!(waiting(&path).await, 1);
    assert_eq!(found(&backend, "again").await, ["again theta"]);
    assert!(found(&backend, "reused").await.is_empty());
    assert!(backend.check().await.unwrap().is_ok());
    backend.close().await;
    // FTS5's own check: the index holds what the messages say.
    let mut conn = raw(&path).await;
    sqlx::query("INSERT INTO persist_search (persist_search, rank) VALUES ('integrity-check', 0)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

/// Turned off, the index is emptied and nothing waits; turned on, it is rebuilt from every
/// message (those that waited too) and nothing waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_turned_off_and_on_with_messages_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("toggle.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    added(&backend, "t", "indexed before").await;
    found(&backend, "indexed").await;
    added(&backend, "t", "waiting before").await;
    assert_eq!(waiting(&path).await, 1);
    // Another handle turns the index off while this one is open (it indexes nothing at close).
    let off = SqliteBackend::builder(&path).search_index(false).open().await.unwrap();
    assert_eq!(waiting(&path).await, 0, "off: nothing waits");
    off.apply(add("t", "while off")).await.unwrap();
    let mut conn = raw(&path).await;
    let (listed, segments): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM persist_search_pending), (SELECT count(*) FROM persist_search_data)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    assert_eq!(listed, 0, "off: nothing listed");
    assert!(segments <= 2, "off: the index holds no segment ({segments} rows)");
    off.close().await;
    backend.close().await;
    let on = SqliteBackend::builder(&path).search_index(true).open().await.unwrap();
    assert_eq!(waiting(&path).await, 0, "the rebuild indexed every message");
    assert_eq!(found(&on, "before").await, ["waiting before", "indexed before"]);
    assert_eq!(found(&on, "off").await, ["while off"]);
    on.apply(add("t", "after on")).await.unwrap();
    assert_eq!(waiting(&path).await, 1, "kept later again");
    assert_eq!(found(&on, "after").await, ["after on"]);
    on.close().await;
}

/// Messages waiting when the process stops (the file copied while a handle has them waiting,
/// as a crash leaves it) are found by the next search; a handle closed or dropped indexes what
/// waits as it lets the file go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_waiting_at_a_crash_or_a_close_are_found_after() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    for i in 0..10 {
        added(&backend, "t", &format!("crash{i} survives")).await;
    }
    assert_eq!(waiting(&path).await, 10);
    // The file and its log as the process left them, copied while the handle is open.
    let copy = dir.path().join("copy.db");
    std::fs::copy(&path, &copy).unwrap();
    std::fs::copy(dir.path().join("crash.db-wal"), dir.path().join("copy.db-wal")).unwrap();
    assert_eq!(waiting(&copy).await, 10, "the crash left them waiting");
    let after = SqliteBackend::open(&copy).await.unwrap();
    assert_eq!(found(&after, "crash3").await, ["crash3 survives"]);
    assert_eq!(found(&after, "survives").await.len(), 10);
    after.close().await;

    backend.close().await;
    assert_eq!(waiting(&path).await, 0, "indexed as the handle closed");
    let dropped = SqliteBackend::open(&path).await.unwrap();
    added(&dropped, "t", "dropped handle").await;
    drop(dropped);
    // The writer indexes as it stops, in the background: the next search finds it either way.
    let again = SqliteBackend::open(&path).await.unwrap();
    assert_eq!(found(&again, "dropped").await, ["dropped handle"]);
    again.close().await;
}

/// A message purged while it waits never entered the index: no word of it stays in the file or
/// its log, while the rest is still found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_waiting_message_leaves_no_word_in_the_file() {
    const MARKER: &str = "zqxwaiting7731";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("purge.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    for i in 0..20 {
        added(&backend, "kept", &format!("kept message {i}")).await;
    }
    found(&backend, "kept").await;
    added(&backend, "secret", &format!("the code is {MARKER} do not share")).await;
    assert_eq!(waiting(&path).await, 1);
    backend.apply(Delete::purge(thread("secret")).into()).await.unwrap();
    assert_eq!(waiting(&path).await, 0);
    assert!(found(&backend, MARKER).await.is_empty());
    assert_eq!(found(&backend, "kept").await.len(), 20);
    backend.close().await;
    let wal = dir.path().join("purge.db-wal");
    assert!(!file_holds(&path, MARKER) && !file_holds(&wal, MARKER), "the marker is in the file");
}

/// A store migrated from an earlier version, which an instance of that version may still run
/// (reading the index alone), indexes each message in its own write until it is finished; then
/// it keeps the index later, as a new store does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrated_store_indexes_at_once_until_it_is_finished() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v23.db");
    let conn = shipped_schema(&dir, &path, 23).await;
    conn.close().await.unwrap();
    let backend = SqliteBackend::open(&path).await.unwrap();
    added(&backend, "t", "unfinished at once").await;
    assert_eq!(waiting(&path).await, 0, "indexed in its own write");
    assert_eq!(found(&backend, "unfinished").await, ["unfinished at once"]);
    backend.close().await;
    let status = SqliteBackend::builder(&path).finish().await.unwrap();
    assert!(!status.unfinished);
    let backend = SqliteBackend::open(&path).await.unwrap();
    added(&backend, "t", "finished later").await;
    assert_eq!(waiting(&path).await, 1, "kept later once finished");
    assert_eq!(found(&backend, "at").await, ["unfinished at once"]);
    assert_eq!(found(&backend, "later").await, ["finished later"]);
    let deleted = added(&backend, "t", "finished deleted").await;
    backend.apply(Delete::message(thread("t"), deleted).into()).await.unwrap();
    assert_eq!(found(&backend, "finished").await, ["finished later"]);
    backend.close().await;
}
