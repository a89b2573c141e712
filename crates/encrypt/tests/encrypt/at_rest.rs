//! What reaches the storage, and what comes back: no clear text in the SQLite file (its log
//! included) or in PostgreSQL's tables; envelopes copied elsewhere or changed do not open;
//! destroyed keys. (Rotation: `rotation.rs`; summaries: `summaries.rs`.)

use std::time::Duration;

use persist::args::{Add, AppendTurn, Reserve, Restore, TurnMessage, Update, UpdateContent};
use persist::encrypt::{AsStored, KeyId, KeyRing, SecretKey};
use persist::memory::MemoryBackend;
use persist::prelude::*;
use persist::read::{GetMessage, GetThread, ListMessages, ListThreads};
use persist::search::Search;
use persist::sqlite::SqliteBackend;
use persist::summary::Summarize;
use persist::{
    Content, Context, Message, MessageId, Metadata, PersistError, Pipeline, Role, Status, TenantId, Thread, ThreadId,
    Timestamp,
};
use serde_json::json;
use sqlx::Connection;

use crate::support;
use crate::support::{assert_unreadable, sealed_text, stacks};

const MARKER: &str = "MARKER-7f3a9c-TOP-SECRET";

fn thread(id: &str) -> ThreadId {
    ThreadId::new(id).unwrap()
}

fn tenant(name: &str) -> Context {
    Context::new().with_tenant(TenantId::new(name).unwrap())
}

/// Every kind of value the layer seals, each holding the marker: content (added, and streamed
/// into a reservation), a sealed metadata key of a message and of a thread, a title. A clear
/// metadata key holds `visible`.
async fn write_secrets(pipeline: &Pipeline, visible: &str) {
    let id = thread("secrets");
    let metadata = Metadata::new().with("secret", json!(format!("{MARKER} in metadata"))).with("lang", json!(visible));
    pipeline
        .add(Add::new(id.clone(), Role::User, Content::text(format!("{MARKER} in content"))).with_metadata(metadata))
        .await
        .unwrap();
    let slot = pipeline.reserve(Reserve::new(id.clone(), Role::Assistant)).await.unwrap().message;
    for step in 1..=5 {
        let partial =
            UpdateContent::new(id.clone(), slot.id.clone(), Content::text(format!("{MARKER} streamed {step}")))
                .with_finalize(step == 5);
        pipeline.update_content(partial).await.unwrap();
    }
    // Streamed token by token: each token's feed event holds its delta, sealed.
    let streamed = pipeline.reserve(Reserve::new(id.clone(), Role::Assistant)).await.unwrap().message;
    for step in 1..=3 {
        let token =
            UpdateContent::appending(id.clone(), streamed.id.clone(), Content::text(format!("{MARKER} t{step}")));
        pipeline.update_content(token).await.unwrap();
    }
    pipeline.update_content(UpdateContent::finishing(id.clone(), streamed.id.clone())).await.unwrap();
    let title = Update::thread(id.clone())
        .with_title(Some(format!("{MARKER} title")))
        .with_metadata(Metadata::new().with("secret", json!(MARKER)));
    pipeline.update(title).await.unwrap();
    // A whole turn: each message sealed, its reply reserved; sent twice, written once.
    let turn = AppendTurn::new(id.clone())
        .with_message(TurnMessage::new(Role::User, Content::text(format!("{MARKER} turn question"))))
        .with_message(
            TurnMessage::new(Role::Assistant, Content::text(format!("{MARKER} turn answer")))
                .with_metadata(Metadata::new().with("secret", json!(format!("{MARKER} turn metadata")))),
        )
        .with_reply(Role::Assistant)
        .with_idempotency_key(persist::IdempotencyKey::new("secret-turn").unwrap());
    let first = pipeline.append_turn(turn.clone()).await.unwrap();
    assert_eq!(first.messages[0].content.to_text(), format!("{MARKER} turn question"), "answered in clear");
    let again = pipeline.append_turn(turn).await.unwrap();
    assert!(again.deduplicated, "a sealed turn's repeat is decided in clear");
    assert_eq!(again.messages, first.messages);
    restore_secrets(pipeline).await;
    // A summary of the thread's first message: its content and sealed metadata key.
    let summary = Summarize::new(id, 1, Content::text(format!("{MARKER} summary")))
        .with_metadata(Metadata::new().with("secret", json!(format!("{MARKER} summary metadata"))));
    pipeline.summarize(summary).await.unwrap();
}

/// A thread imported from elsewhere (a restore), holding the marker in its title, its sealed
/// metadata and its message's content and metadata; restored twice, written once.
async fn restore_secrets(pipeline: &Pipeline) {
    let secret = || Metadata::new().with("secret", json!(format!("{MARKER} restored")));
    let thread = Thread {
        title: Some(format!("{MARKER} restored title")),
        metadata: secret(),
        version: 2,
        updated_at: Timestamp::from_micros(2_000),
        ..Thread::stored(thread("restored"), 1, Timestamp::from_micros(1_000))
    };
    let content = Content::text(format!("{MARKER} restored content"));
    let message = Message {
        metadata: secret(),
        ..Message::stored(
            thread.id.clone(),
            MessageId::new("imported").unwrap(),
            1,
            Role::User,
            content,
            thread.created_at,
        )
    };
    let first = pipeline.restore(Restore::new(thread.clone(), vec![message.clone()])).await.unwrap();
    assert_eq!((first.restored, first.present, &first.thread), (1, 0, &thread), "answered opened");
    let again = pipeline.restore(Restore::new(thread.clone(), vec![message.clone()])).await.unwrap();
    assert_eq!((again.restored, again.present), (0, 1), "a repeat through the layer writes nothing");
    let read = pipeline.get(GetMessage::new(thread.id.clone(), message.id.clone())).await.unwrap();
    assert_eq!(read, Some(message));
}

fn file_holds(path: &std::path::Path, needle: &str) -> bool {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes.windows(needle.len()).any(|window| window == needle.as_bytes())
}

#[tokio::test]
async fn no_clear_text_reaches_the_sqlite_file_or_its_log() {
    for sealed in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("at-rest.db");
        let store = SqliteBackend::open(&path).await.unwrap();
        let pipeline =
            if sealed { support::encrypted(support::ring(), store.clone()) } else { Pipeline::new(store.clone()) };
        write_secrets(&pipeline, "visible-en").await;
        // Read back through the layer: the caller sees what it wrote.
        let listed = pipeline.list(ListMessages::new(thread("secrets")).include_reserved(true)).await.unwrap();
        assert!(listed.items[1].content.to_text().contains("streamed 5"));
        let wal = dir.path().join("at-rest.db-wal");
        assert!(file_holds(&path, "visible-en") || file_holds(&wal, "visible-en"), "a clear key is stored clear");
        let found = file_holds(&path, MARKER) || file_holds(&wal, MARKER);
        assert_eq!(found, !sealed, "sealed: {sealed} (the marker is found when nothing seals it)");
        store.close().await;
        let found = file_holds(&path, MARKER) || file_holds(&wal, MARKER);
        assert_eq!(found, !sealed, "after closing, sealed: {sealed}");
    }
}

/// A store whose content the layer seals cannot be searched: through the layer a search is
/// `Unsupported` (never an empty answer saying nothing matched), and the store's own index holds
/// none of the sealed words (a search past the layer finds nothing, the file holds no word of
/// the marker in any case).
#[tokio::test]
async fn a_search_through_the_layer_is_refused_and_the_index_holds_no_sealed_word() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("search.db");
    let store = SqliteBackend::open(&path).await.unwrap();
    let pipeline = support::encrypted(support::ring(), store.clone());
    write_secrets(&pipeline, "visible-en").await;
    let refused = pipeline.search(Search::new("secret")).await.unwrap_err();
    assert!(matches!(&refused, PersistError::Unsupported { what } if what.contains("EncryptLayer")), "{refused:?}");
    assert!(!pipeline.capabilities().search, "the stack says it does not search");
    let raw = Pipeline::new(store.clone());
    assert!(raw.search(Search::new("7f3a9c")).await.unwrap().items.is_empty(), "nothing sealed is indexed");
    store.close().await;
    let (word, wal) = ("7f3a9c", dir.path().join("search.db-wal"));
    assert!(!file_holds(&path, word) && !file_holds(&wal, word), "no word of the marker in the file");
    // The same writes in clear: the words are indexed (the check above could fail).
    let clear_path = dir.path().join("clear.db");
    let clear = SqliteBackend::open(&clear_path).await.unwrap();
    write_secrets(&Pipeline::new(clear.clone()), "visible-en").await;
    assert!(!Pipeline::new(clear.clone()).search(Search::new("7f3a9c")).await.unwrap().items.is_empty());
    clear.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_clear_text_reaches_postgres_tables() {
    let Ok(mut admin) = support::admin().await else {
        assert!(std::env::var_os("CI").is_none(), "PostgreSQL is required in CI");
        return;
    };
    for sealed in [false, true] {
        let schema = support::schema_name();
        let store = support::postgres(&schema).await.unwrap();
        let pipeline =
            if sealed { support::encrypted(support::ring(), store.clone()) } else { Pipeline::new(store.clone()) };
        write_secrets(&pipeline, "visible-en").await;
        let count = |table: &str, columns: &str| {
            // Test-made names only: persist_test_ + hex.
            format!("SELECT count(*) FROM \"{schema}\".{table} WHERE concat_ws(' ', {columns}) LIKE '%{MARKER}%'")
        };
        let mut found = 0;
        let tables = [
            ("messages", "content::text, metadata::text"),
            ("threads", "title, metadata::text"),
            ("summaries", "content::text, metadata::text"),
        ];
        for (table, columns) in tables {
            let query = sqlx::AssertSqlSafe(count(table, columns));
            found += sqlx::query_scalar::<_, i64>(query).fetch_one(&mut admin).await.unwrap();
        }
        assert_eq!(found > 0, !sealed, "sealed: {sealed}: {found} rows hold the marker");
        store.close().await;
        support::drop_schema(&schema).await;
    }
}

async fn stored(raw: &Pipeline, context: Context, thread_id: &ThreadId, message: &Message) -> Message {
    let get = GetMessage::new(thread_id.clone(), message.id.clone()).with_context(context);
    raw.get(get).await.unwrap().unwrap()
}

#[tokio::test]
async fn an_envelope_copied_elsewhere_or_changed_does_not_open() {
    let (sealed, raw) = stacks(support::ring());
    let t = thread("t");
    let add = |text: &str| Add::new(t.clone(), Role::User, Content::text(text));
    let a = sealed.add(add("a").with_metadata(Metadata::new().with("secret", json!("s-a")))).await.unwrap().message;
    let b = sealed.add(add("b")).await.unwrap().message;
    let other = sealed.add(Add::new(thread("other"), Role::User, Content::text("o"))).await.unwrap().message;
    // The same thread and message ids in another tenant.
    let twin = sealed.add(add("twin").with_id(a.id.clone()).with_context(tenant("globex"))).await.unwrap().message;
    let envelope = stored(&raw, Context::new(), &t, &a).await;
    let copy_to = |thread_id: ThreadId, message: &Message, context: Context| {
        UpdateContent::new(thread_id, message.id.clone(), envelope.content.clone()).with_context(context)
    };
    // To another message of the thread, to another thread, to another tenant's same ids.
    raw.update_content(copy_to(t.clone(), &b, Context::new())).await.unwrap();
    assert_unreadable(sealed.get(GetMessage::new(t.clone(), b.id.clone())).await, "copied to another message");
    raw.update_content(copy_to(thread("other"), &other, Context::new())).await.unwrap();
    assert_unreadable(sealed.get(GetMessage::new(thread("other"), other.id.clone())).await, "to another thread");
    raw.update_content(copy_to(t.clone(), &twin, tenant("globex"))).await.unwrap();
    let get_twin = GetMessage::new(t.clone(), twin.id.clone()).with_context(tenant("globex"));
    assert_unreadable(sealed.get(get_twin).await, "copied to another tenant");
    // A listing holding one such message answers the others and names it: none in part.
    let page = sealed.list(ListMessages::new(t.clone())).await.unwrap();
    assert_eq!(page.items.iter().map(|m| &m.id).collect::<Vec<_>>(), [&a.id]);
    assert_eq!(page.unreadable.len(), 1, "{page:?}");
    assert_eq!(page.unreadable[0].message_id.as_ref(), Some(&b.id));

    // A sealed metadata value moved to the content, and a changed byte.
    let secret = envelope.metadata.get("secret").unwrap().clone();
    raw.update_content(UpdateContent::new(t.clone(), a.id.clone(), Content::new(secret))).await.unwrap();
    assert_unreadable(sealed.get(GetMessage::new(t.clone(), a.id.clone())).await, "metadata as content");
    let text = envelope.content.as_json().into_owned();
    let at = text.len() - 10;
    let changed = format!("{}{}{}", &text[..at], if &text[at..at + 1] == "A" { "B" } else { "A" }, &text[at + 1..]);
    raw.update_content(UpdateContent::new(t.clone(), a.id.clone(), Content::from_json(changed).unwrap()))
        .await
        .unwrap();
    assert_unreadable(sealed.get(GetMessage::new(t.clone(), a.id.clone())).await, "a changed byte");

    // Clear text written below the layer is refused, unless clear values are allowed.
    raw.update_content(UpdateContent::new(t.clone(), b.id.clone(), Content::text("planted"))).await.unwrap();
    assert_unreadable(sealed.get(GetMessage::new(t.clone(), b.id.clone())).await, "clear content");
    let lenient =
        Pipeline::builder().layer(support::layer(support::ring()).allow_clear_values(true)).build(raw.clone());
    let planted = lenient.get(GetMessage::new(t.clone(), b.id.clone())).await.unwrap().unwrap();
    assert_eq!(planted.content.to_text(), "planted");
}

#[tokio::test]
async fn the_envelope_leaves_ids_roles_and_clear_keys_readable_and_refuses_filters_on_sealed_keys() {
    let (sealed, raw) = stacks(support::ring());
    let metadata = Metadata::new().with("secret", json!("s")).with("lang", json!("en"));
    let message = sealed
        .add(Add::new(thread("t"), Role::Assistant, Content::text("hello")).with_metadata(metadata))
        .await
        .unwrap()
        .message;
    let at_rest = stored(&raw, Context::new(), &thread("t"), &message).await;
    assert_eq!(
        (at_rest.role.as_str(), at_rest.seq, at_rest.metadata.get("lang")),
        ("assistant", 1, Some(&json!("en")))
    );
    assert!(at_rest.content.as_json().starts_with("{\"persist:sealed\":\"v1.k1."), "{}", at_rest.content.as_json());
    assert!(at_rest.metadata.get("secret").unwrap().get("persist:sealed").is_some());
    // Asked for values as stored, through the layer: the envelope.
    let as_stored =
        GetMessage::new(thread("t"), message.id.clone()).with_context(Context::new().with_extension(AsStored));
    assert_eq!(sealed.get(as_stored).await.unwrap().unwrap(), at_rest);
    let filter = ListThreads::new().with_filter(Metadata::new().with("secret", json!("s")));
    assert!(matches!(sealed.threads(filter).await, Err(PersistError::InvalidInput { field: "filter", .. })));
    // A null under a sealed key is sealed like any value, and reads back; so is empty content.
    let null = Add::new(thread("t"), Role::User, Content::new(json!([])))
        .with_metadata(Metadata::new().with("secret", json!(null)));
    let null = sealed.add(null).await.unwrap().message;
    let at_rest = stored(&raw, Context::new(), &thread("t"), &null).await;
    assert!(sealed_text(at_rest.metadata.get("secret").unwrap()) && sealed_text(&at_rest.content.to_value()));
    let read = sealed.get(GetMessage::new(thread("t"), null.id)).await.unwrap().unwrap();
    assert_eq!((read.metadata.get("secret"), read.content.as_json().as_ref()), (Some(&json!(null)), "[]"));
    // A title that fits clear but not sealed is refused in its own terms.
    let long = Update::thread(thread("t")).with_title(Some("t".repeat(900)));
    match sealed.update(long).await {
        Err(PersistError::InvalidInput { field: "title", reason }) => {
            assert!(reason.contains("once sealed"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    sealed.update(Update::thread(thread("t")).with_title(Some("t".repeat(600)))).await.unwrap();
}

/// Every shape a missing or clear value can take, put in the SQLite file where a sealed value
/// belongs (a complete message's content, a sealed metadata key, a sealed title), is refused:
/// never read as an empty message, a `null` or a title. Unless clear values are allowed.
#[tokio::test]
async fn a_clear_value_of_any_shape_where_a_sealed_one_belongs_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tampered.db");
    let store = SqliteBackend::open(&path).await.unwrap();
    let sealed = support::encrypted(support::ring(), store.clone());
    let lenient = Pipeline::builder().layer(support::layer(support::ring()).allow_clear_values(true)).build(store);
    let t = thread("t");
    let metadata = Metadata::new().with("secret", json!("s"));
    let message =
        sealed.add(Add::new(t.clone(), Role::User, Content::text("hi")).with_metadata(metadata)).await.unwrap().message;
    sealed.update(Update::thread(t.clone()).with_title(Some("a title".to_owned()))).await.unwrap();
    let mut sql = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    let get = || GetMessage::new(t.clone(), message.id.clone());
    for shape in ["[]", "{}", "null", "\"text\"", "1", "[{\"type\":\"text\",\"text\":\"planted\"}]"] {
        let original: (String, String) =
            sqlx::query_as("SELECT content, metadata FROM persist_messages WHERE message_id = unhex(?, '-')")
                .bind(message.id.as_str())
                .fetch_one(&mut sql)
                .await
                .unwrap();
        sqlx::query("UPDATE persist_messages SET content = ? WHERE message_id = unhex(?, '-')")
            .bind(shape)
            .bind(message.id.as_str())
            .execute(&mut sql)
            .await
            .unwrap();
        assert_unreadable(sealed.get(get()).await, &format!("content {shape}"));
        let page = sealed.list(ListMessages::new(t.clone())).await.unwrap();
        assert!(page.items.is_empty() && page.unreadable.len() == 1, "a page with content {shape}: {page:?}");
        let lenient_read = lenient.get(get()).await.unwrap().unwrap();
        assert_eq!(lenient_read.content.as_json(), shape, "allowed clear values read as stored");
        sqlx::query(
            "UPDATE persist_messages SET content = ?, metadata = json_set(metadata, '$.secret', json(?)) \
              WHERE message_id = unhex(?, '-')",
        )
        .bind(&original.0)
        .bind(shape)
        .bind(message.id.as_str())
        .execute(&mut sql)
        .await
        .unwrap();
        assert_unreadable(sealed.get(get()).await, &format!("metadata {shape}"));
        lenient.get(get()).await.unwrap().unwrap();
        sqlx::query("UPDATE persist_messages SET metadata = ? WHERE message_id = unhex(?, '-')")
            .bind(&original.1)
            .bind(message.id.as_str())
            .execute(&mut sql)
            .await
            .unwrap();
        assert_eq!(sealed.get(get()).await.unwrap().unwrap().content.to_text(), "hi", "put back, it opens");
    }
    sqlx::query("UPDATE threads SET title = 'planted'").execute(&mut sql).await.unwrap();
    assert_unreadable(sealed.get_thread(GetThread::new(t.clone())).await, "a clear title");
    assert_eq!(lenient.get_thread(GetThread::new(t.clone())).await.unwrap().unwrap().title.as_deref(), Some("planted"));
    // A reservation's placeholder is the one clear content, and reads as such.
    let slot = sealed.reserve(Reserve::new(t.clone(), Role::Assistant)).await.unwrap().message;
    let slot = sealed.get(GetMessage::new(t.clone(), slot.id)).await.unwrap().unwrap();
    assert_eq!((slot.status, slot.content.as_json().as_ref()), (Status::Reserved, "[]"));
}

/// Two instances given key id `k1` with different bytes: the one whose key does not match
/// the store's check value is refused before it seals anything, naming the key, and its reads
/// say why instead of "unreadable"; the rightly keyed instance goes on, unharmed. On memory
/// and on a SQLite file two handles share.
#[tokio::test]
async fn a_wrong_key_under_a_known_id_is_refused_before_the_first_write() {
    let wrong = || KeyRing::new().with_key(KeyId::new("k1").unwrap(), SecretKey::new([99; 32])).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shared.db");
    let memory = MemoryBackend::new();
    let stores: [(Pipeline, Pipeline); 2] = [
        (support::encrypted(support::ring(), memory.clone()), support::encrypted(wrong(), memory)),
        (
            support::encrypted(support::ring(), SqliteBackend::open(&file).await.unwrap()),
            support::encrypted(wrong(), SqliteBackend::open(&file).await.unwrap()),
        ),
    ];
    for (right, wrong) in stores {
        let t = thread("t");
        let first = right.add(Add::new(t.clone(), Role::User, Content::text("hello"))).await.unwrap().message;
        for context in [Context::new(), tenant("acme")] {
            let add = Add::new(t.clone(), Role::User, Content::text("sealed wrongly")).with_context(context.clone());
            // A tenant's first write too: its key derives from the ring key, checked first.
            match wrong.add(add).await {
                Err(PersistError::Rejected { reason }) => {
                    assert!(reason.contains("key k1") && reason.contains("does not match"), "{reason}")
                }
                other => panic!("a write with the wrong key ({context:?}): {other:?}"),
            }
        }
        match wrong.get(GetMessage::new(t.clone(), first.id.clone())).await {
            Err(PersistError::Rejected { reason }) => assert!(reason.contains("key k1"), "{reason}"),
            other => panic!("a read with the wrong key: {other:?}"),
        }
        let page = right.list(ListMessages::new(t.clone())).await.unwrap();
        assert_eq!((page.items.len(), page.unreadable.len()), (1, 0), "nothing was sealed with the wrong key");
        right.add(Add::new(t, Role::User, Content::text("still fine"))).await.unwrap();
    }
}

#[tokio::test]
async fn destroying_a_tenants_keys_leaves_its_messages_unreadable_and_others_untouched() {
    let ring = support::ring();
    let acme = TenantId::new("acme").unwrap();
    ring.add_tenant_key(&acme, KeyId::new("acme-1").unwrap(), SecretKey::new([99; 32])).unwrap();
    let (sealed, raw) = stacks(ring.clone());
    let t = thread("general");
    let add = |text: &str| Add::new(t.clone(), Role::User, Content::text(text));
    let acme_message = sealed.add(add("acme's").with_context(tenant("acme"))).await.unwrap().message;
    let globex_message = sealed.add(add("globex's").with_context(tenant("globex"))).await.unwrap().message;
    let own = sealed.add(add("no tenant's")).await.unwrap().message;

    ring.destroy_tenant(&acme);
    let get =
        |message: &Message, context: Context| GetMessage::new(t.clone(), message.id.clone()).with_context(context);
    assert_unreadable(sealed.get(get(&acme_message, tenant("acme"))).await, "a destroyed tenant's message");
    assert!(matches!(sealed.add(add("more").with_context(tenant("acme"))).await, Err(PersistError::Rejected { .. })));
    let globex = sealed.get(get(&globex_message, tenant("globex"))).await.unwrap().unwrap();
    assert_eq!(globex.content.to_text(), "globex's");
    assert_eq!(sealed.get(get(&own, Context::new())).await.unwrap().unwrap().content.to_text(), "no tenant's");
    // A ring rebuilt from the same ring keys cannot open it either: acme's key is gone.
    let rebuilt = Pipeline::builder().layer(support::layer(support::ring())).build(raw.clone());
    assert_unreadable(rebuilt.get(get(&acme_message, tenant("acme"))).await, "with the ring keys alone");
    assert_eq!(rebuilt.get(get(&globex_message, tenant("globex"))).await.unwrap().unwrap(), globex);
}

/// An export of a sealed store (values as stored) restored through the layer of another store
/// with the same keys is kept as it is, not sealed twice, and reads back clear; an envelope
/// moved to another tenant, or a clear value marked as stored, is refused, never stored.
#[tokio::test]
async fn a_restore_of_sealed_values_keeps_them_and_refuses_what_would_not_open() {
    let (sealed, raw) = stacks(support::ring());
    let t = thread("exported");
    let metadata = Metadata::new().with("secret", json!("s"));
    let clear = sealed.add(Add::new(t.clone(), Role::User, Content::text("hello")).with_metadata(metadata)).await;
    let clear = clear.unwrap().message;
    sealed.update(Update::thread(t.clone()).with_title(Some("a title".into()))).await.unwrap();
    // What `persist export` reads: no layer, values as stored.
    let thread_record = raw.get_thread(GetThread::new(t.clone())).await.unwrap().unwrap();
    let message = stored(&raw, Context::new(), &t, &clear).await;
    assert_ne!(message, clear, "stored sealed");

    let (target, target_raw) = stacks(support::ring());
    let restore = || Restore::new(thread_record.clone(), vec![message.clone()]);
    let answer = target.restore(restore()).await.unwrap();
    assert_eq!((answer.restored, answer.thread.title.as_deref()), (1, Some("a title")), "answered opened");
    assert_eq!(stored(&target_raw, Context::new(), &t, &clear).await, message, "kept as it was, not sealed again");
    assert_eq!(target.get(GetMessage::new(t.clone(), clear.id.clone())).await.unwrap(), Some(clear.clone()));
    assert_eq!(target.restore(restore()).await.unwrap().present, 1, "a repeat writes nothing");

    // The same envelopes in another tenant do not open there: refused, nothing stored.
    let elsewhere = Restore::new(
        Thread { tenant: Some(TenantId::new("globex").unwrap()), ..thread_record.clone() },
        vec![message.clone()],
    );
    assert_unreadable(target.restore(elsewhere).await, "an envelope of another tenant");
    assert!(target_raw.get_thread(GetThread::new(t.clone()).with_context(tenant("globex"))).await.unwrap().is_none());
    // A clear value claimed to be as stored.
    let claimed = Restore::new(
        Thread { id: thread("claimed"), ..thread_record.clone() },
        vec![Message { thread_id: thread("claimed"), ..clear.clone() }],
    )
    .with_context(Context::new().with_extension(AsStored));
    assert_unreadable(target.restore(claimed).await, "a clear value marked as stored");
    assert!(target_raw.get_thread(GetThread::new(thread("claimed"))).await.unwrap().is_none());

    // Restored with other keys under the same id into a new store: refused before anything is
    // written or recorded, so the right keys restore it afterwards (a wrong key's check value
    // recorded first would have them refused as a mismatch forever).
    let store = MemoryBackend::new();
    let wrong = KeyRing::new().with_key(KeyId::new("k1").unwrap(), SecretKey::new([99; 32])).unwrap();
    let with_wrong = support::encrypted(wrong, store.clone());
    assert_unreadable(with_wrong.restore(restore()).await, "envelopes of other keys");
    assert!(Pipeline::new(store.clone()).get_thread(GetThread::new(t.clone())).await.unwrap().is_none());
    let with_right = support::encrypted(support::ring(), store);
    assert_eq!(with_right.restore(restore()).await.unwrap().restored, 1, "the right keys are not refused");
}

/// A cleanup sent through a stack without the layer (the command line's, a maintenance job's)
/// deletes a reservation that never got a token and marks interrupted one that got tokens: it
/// keeps its sealed text, which opens. A reservation marked interrupted below the layer before
/// any token keeps its placeholder `[]` clear, says nothing, and reads through the layer as the
/// interrupted empty reply it is.
#[tokio::test]
async fn a_reservation_interrupted_below_the_layer_still_reads() {
    use persist::maintenance::CleanupStranded;
    let (sealed, raw) = stacks(support::ring());
    let id = thread("cut-below");
    let empty = sealed.reserve(Reserve::new(id.clone(), Role::Assistant)).await.unwrap().message;
    let begun = sealed.reserve(Reserve::new(id.clone(), Role::Assistant)).await.unwrap().message;
    let token = UpdateContent::appending(id.clone(), begun.id.clone(), Content::text(MARKER));
    sealed.update_content(token).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let report = raw.cleanup_stranded(CleanupStranded::new(Duration::from_millis(1))).await.unwrap();
    assert_eq!((report.interrupted.len(), report.deleted.len()), (1, 1));
    assert_eq!(report.deleted[0].message.id, empty.id, "the blank one is deleted");
    let empty = sealed.reserve(Reserve::new(id.clone(), Role::Assistant)).await.unwrap().message;
    raw.update_content(UpdateContent::interrupted(id.clone(), empty.id.clone())).await.unwrap();
    let listed = sealed.list(ListMessages::new(id.clone())).await.unwrap();
    assert!(listed.unreadable.is_empty(), "{:?}", listed.unreadable);
    let read: Vec<_> = listed.items.iter().map(|m| (m.id.clone(), m.status, m.content.to_text())).collect();
    assert_eq!(
        read,
        [(begun.id, Status::Interrupted, MARKER.to_owned()), (empty.id, Status::Interrupted, String::new())]
    );
}

/// A vector tells what its message means: through the layer, `embed` and `nearest` are
/// `Unsupported` unless the host allows clear vectors; then they work, and what `nearest` finds
/// reads opened.
#[tokio::test]
async fn vectors_through_the_layer_are_refused_unless_clear_vectors_are_allowed() {
    use persist::vector::{Embed, Embedding, Nearest};
    let store = MemoryBackend::new();
    let sealed = support::encrypted(support::ring(), store.clone());
    let id = thread("vectors");
    let added = sealed.add(Add::new(id.clone(), Role::User, Content::text("a secret plan"))).await.unwrap();
    let embed = Embed::new(id.clone(), added.message.id.clone(), Embedding::new("m", vec![1.0, 0.0]));
    for refused in [
        sealed.embed(embed.clone()).await.unwrap_err(),
        sealed.nearest(Nearest::new(Embedding::new("m", vec![1.0, 0.0]))).await.unwrap_err(),
    ] {
        assert!(
            matches!(&refused, PersistError::Unsupported { what } if what.contains("clear_vectors")),
            "{refused:?}"
        );
    }
    let allowed = Pipeline::builder().layer(support::layer(support::ring()).clear_vectors(true)).build(store.clone());
    allowed.embed(embed).await.unwrap();
    let found = allowed.nearest(Nearest::new(Embedding::new("m", vec![1.0, 0.1]))).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].message.content, Content::text("a secret plan"), "opened on the way up");
    let raw = Pipeline::new(store).nearest(Nearest::new(Embedding::new("m", vec![1.0, 0.1]))).await.unwrap();
    assert_ne!(raw[0].message.content, Content::text("a secret plan"), "sealed in the store");
}

/// With clear vectors allowed, a nearest read filtering threads on a sealed metadata key is
/// refused (the store would compare ciphertext and find nothing), as a thread listing is.
#[tokio::test]
async fn a_nearest_filter_on_a_sealed_key_is_refused() {
    use persist::vector::{Embedding, Nearest};
    let layer = support::layer(support::ring()).seal_metadata(["user_id"]).clear_vectors(true);
    let pipeline = Pipeline::builder().layer(layer).build(MemoryBackend::new());
    let query = Nearest::new(Embedding::new("m", vec![1.0])).for_resource("user_id", "u1");
    let refused = pipeline.nearest(query).await.unwrap_err();
    assert!(matches!(refused, PersistError::InvalidInput { field: "thread_filter", .. }), "{refused:?}");
    let clear = Nearest::new(Embedding::new("m", vec![1.0])).for_resource("plan", "pro");
    assert!(pipeline.nearest(clear).await.unwrap().is_empty());
}
