//! Embeddings and recall (gated on `vectors`): nearest first by cosine, exactly, with ties by
//! thread and seq; scopes (a thread, a tenant, a user's threads by metadata) and filters (roles,
//! time, status); never another tenant's; a model's dimensions fixed per tenant and every
//! mismatch refused; vectors removed with their messages by every write that removes them or
//! changes their content; hybrid recall (vectors fused with full text) and neighbours; a thread's
//! vectors listed as stored (with their messages' role, status and creation time), so a copy
//! writes the same numbers; an embed is an event of the feed, and so is every change an index
//! of the vectors must follow.

use persist_core::args::{Delete, Reserve, Update, UpdateContent};
use persist_core::vector::{Embed, Embedding, ListEmbeddings, Nearest, Neighbour, StoredEmbedding};
use persist_core::{Backend, Content, Message, Metadata, PersistError, PersistResult, Pipeline, Role, Status};
use persist_recall::{Embedder, HashEmbedder, Recall, RecallExt};
use serde_json::json;

use crate::fixture::{add_text, assert_err, ctx, gate, t, tenant, text_add, write, written};
use crate::{Factory, Outcome};

mod feed;

pub use self::feed::{check_an_embed_is_an_event_of_the_feed, check_every_change_of_a_vector_is_in_the_feed};

/// `vector` of model `m`.
fn v(vector: &[f32]) -> Embedding {
    Embedding::new("m", vector.to_vec())
}

async fn embed<B: Backend>(b: &B, message: &Message, vector: &[f32]) {
    write(b, Embed::new(message.thread_id.clone(), message.id.clone(), v(vector)))
        .await
        .unwrap_or_else(|e| panic!("embed {}: {e}", message.id));
}

async fn nearest<B: Backend>(b: &B, query: Nearest) -> Vec<Neighbour> {
    b.nearest(query).await.expect("nearest")
}

/// The texts of what a nearest read found, in its order.
fn texts(found: &[Neighbour]) -> Vec<String> {
    found.iter().map(|n| n.message.content.to_text()).collect()
}

/// Nearest first by cosine (length does not count), ties by thread id then seq, exactly `limit`;
/// filters by thread, thread metadata (a user's threads), role, time and status; reservations
/// and deleted threads never found.
pub async fn check_nearest_ranks_by_cosine_within_its_scope<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, vectors);
    let b = store.b().as_ref();
    let (a, z, other) = (t("v-a"), t("v-z"), t("v-other"));
    let east = add_text(b, &a, "east").await;
    let north = add_text(b, &a, "north").await;
    let northeast = add_text(b, &a, "northeast").await;
    let north_z = add_text(b, &z, "north again").await;
    let west = add_text(b, &other, "west").await;
    embed(b, &east, &[1.0, 0.0, 0.0]).await;
    embed(b, &north, &[0.0, 5.0, 0.0]).await;
    embed(b, &northeast, &[1.0, 1.0, 0.0]).await;
    embed(b, &north_z, &[0.0, 0.5, 0.0]).await;
    embed(b, &west, &[-1.0, 0.0, 0.0]).await;
    let user = |id: &str| Update::thread(t(id)).with_metadata(Metadata::new().with("user_id", json!("u1")));
    write(b, user("v-a")).await.expect("metadata");
    write(b, user("v-z")).await.expect("metadata");

    let found = nearest(b, Nearest::new(v(&[0.0, 1.0, 0.0])).with_limit(3)).await;
    assert_eq!(texts(&found), ["north", "north again", "northeast"], "equal scores: thread id, then seq");
    assert!((found[0].score - 1.0).abs() < 1e-6 && (found[2].score - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
    assert!(found.iter().all(|n| n.tenant.is_none()));
    let all = nearest(b, Nearest::new(v(&[1.0, 0.0, 0.0])).with_limit(100)).await;
    assert_eq!(texts(&all), ["east", "northeast", "north", "north again", "west"]);
    assert!((all[4].score + 1.0).abs() < 1e-6, "opposite is -1");

    let in_a = nearest(b, Nearest::new(v(&[0.0, 1.0, 0.0])).in_thread(a.clone())).await;
    assert_eq!(texts(&in_a), ["north", "northeast", "east"]);
    let users = nearest(b, Nearest::new(v(&[-1.0, 0.0, 0.0])).for_resource("user_id", "u1")).await;
    assert_eq!(users.len(), 4, "the user's two threads, not the other");
    assert!(users.iter().all(|n| n.message.thread_id != other));
    let none = nearest(b, Nearest::new(v(&[1.0, 0.0, 0.0])).for_resource("user_id", "u2")).await;
    assert!(none.is_empty());

    // Roles, time, status.
    let tool = written(b, persist_core::args::Add::new(a.clone(), Role::Tool, Content::text("tool says north"))).await;
    embed(b, &tool, &[0.0, 1.0, 0.0]).await;
    let tools = nearest(b, Nearest::new(v(&[1.0, 0.0, 0.0])).with_roles([Role::Tool])).await;
    assert_eq!(texts(&tools), ["tool says north"]);
    let since = nearest(b, Nearest::new(v(&[1.0, 0.0, 0.0])).since(tool.created_at)).await;
    assert_eq!(texts(&since), ["tool says north"], "created at or after");
    let until = nearest(b, Nearest::new(v(&[1.0, 0.0, 0.0])).until(tool.created_at).with_limit(100)).await;
    assert!(!texts(&until).contains(&"tool says north".to_owned()), "created before");
    let reply = written(b, Reserve::new(a.clone(), Role::Assistant)).await;
    assert_err!(
        write(b, Embed::new(a.clone(), reply.id.clone(), v(&[0.0, 1.0, 0.0]))).await,
        PersistError::InvalidInput { field: "message_id", .. }
    );
    let token = UpdateContent::appending(a.clone(), reply.id.clone(), Content::text("cut short"));
    write(b, token).await.expect("append");
    write(b, UpdateContent::interrupted(a.clone(), reply.id.clone())).await.expect("interrupt");
    embed(b, &crate::fixture::get(b, &a, &reply.id).await.expect("reply"), &[0.0, 1.0, 0.0]).await;
    let cut_short = nearest(b, Nearest::new(v(&[0.0, 1.0, 0.0])).only_interrupted(true)).await;
    assert_eq!(texts(&cut_short), ["cut short"]);
    let complete = nearest(b, Nearest::new(v(&[0.0, 1.0, 0.0])).only_interrupted(false).with_limit(100)).await;
    assert!(complete.iter().all(|n| n.message.status == Status::Complete));
    store.finish().await
}

/// Tenants never meet: another tenant's messages are never found, and embedding one answers as
/// a message that does not exist; each tenant fixes its own models' dimensions.
pub async fn check_nearest_never_leaves_its_tenant<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, vectors);
    let b = store.b().as_ref();
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let thread = t("shared-id");
    let mine = written(b, text_add(&thread, "acme's secret").with_context(ctx(Some(&acme)))).await;
    let embed_as = |who: &persist_core::TenantId, message: &Message, vector: Vec<f32>| {
        Embed::new(message.thread_id.clone(), message.id.clone(), Embedding::new("m", vector))
            .with_context(ctx(Some(who)))
    };
    write(b, embed_as(&acme, &mine, vec![1.0, 0.0])).await.expect("embed");
    assert_err!(write(b, embed_as(&globex, &mine, vec![1.0, 0.0])).await, PersistError::NotFound { .. });
    let theirs = written(b, text_add(&thread, "globex's own").with_context(ctx(Some(&globex)))).await;
    // Another tenant's model of the same name has its own dimensions.
    write(b, embed_as(&globex, &theirs, vec![1.0, 0.0, 0.0])).await.expect("three dimensions in globex");
    let query = |who: &persist_core::TenantId, vector: Vec<f32>| {
        Nearest::new(Embedding::new("m", vector)).with_context(ctx(Some(who)))
    };
    assert_eq!(texts(&nearest(b, query(&acme, vec![1.0, 0.0])).await), ["acme's secret"]);
    let found = nearest(b, query(&globex, vec![1.0, 0.0, 0.0])).await;
    assert_eq!(texts(&found), ["globex's own"]);
    assert_eq!(found[0].tenant.as_ref(), Some(&globex));
    let in_thread = query(&globex, vec![1.0, 0.0, 0.0]).in_thread(thread.clone());
    assert_eq!(texts(&nearest(b, in_thread).await), ["globex's own"]);
    assert!(nearest(b, Nearest::new(v(&[1.0, 0.0]))).await.is_empty(), "no tenant: nothing stored");
    store.finish().await
}

/// A model's first vector fixes its dimensions: a vector or a query of another length is
/// `InvalidInput`, as is a query of a model nothing stored uses while others are, a bad vector,
/// a missing message (`NotFound`) and a stale expected version (`VersionConflict`); nothing is
/// written by a refusal.
pub async fn check_mismatched_models_and_dimensions_are_refused<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, vectors);
    let b = store.b().as_ref();
    let thread = t("dims");
    assert!(nearest(b, Nearest::new(v(&[1.0, 2.0]))).await.is_empty(), "an empty store answers nothing");
    let first = add_text(b, &thread, "first").await;
    let second = add_text(b, &thread, "second").await;
    embed(b, &first, &[1.0, 2.0, 3.0]).await;
    let invalid = |result: Result<PersistResult, PersistError>| match result {
        Err(PersistError::InvalidInput { field: "embedding", reason }) => reason.into_owned(),
        other => panic!("expected InvalidInput on embedding, got {other:?}"),
    };
    let reason = invalid(write(b, Embed::new(thread.clone(), second.id.clone(), v(&[1.0, 2.0]))).await);
    assert!(reason.contains("3 dimensions") && reason.contains("has 2"), "{reason}");
    let query = b.nearest(Nearest::new(v(&[1.0; 4]))).await;
    assert_err!(query, PersistError::InvalidInput { field: "embedding", .. });
    let other_model = b.nearest(Nearest::new(Embedding::new("other", vec![1.0, 0.0, 0.0]))).await;
    assert_err!(other_model, PersistError::InvalidInput { field: "model", ref reason } if reason.contains("`m`"));
    for bad in [vec![], vec![0.0, 0.0, 0.0], vec![f32::NAN, 1.0, 1.0]] {
        let refused = write(b, Embed::new(thread.clone(), second.id.clone(), Embedding::new("m", bad.clone()))).await;
        assert_err!(refused, PersistError::InvalidInput { field: "embedding", .. });
    }
    let missing = Embed::new(thread.clone(), crate::fixture::m("nope"), v(&[1.0, 1.0, 1.0]));
    assert_err!(write(b, missing).await, PersistError::NotFound { .. });
    let no_thread = Embed::new(t("no-such-thread"), first.id.clone(), v(&[1.0, 1.0, 1.0]));
    assert_err!(write(b, no_thread).await, PersistError::NotFound { .. });
    let stale = Embed::new(thread.clone(), second.id.clone(), v(&[1.0, 1.0, 1.0])).with_expected_version(7);
    assert_err!(write(b, stale).await, PersistError::VersionConflict { expected: 7, actual: 1, .. });
    let found = nearest(b, Nearest::new(v(&[1.0, 1.0, 1.0]))).await;
    assert_eq!(texts(&found), ["first"], "nothing refused was written");
    // Re-embedding replaces; a second model lives beside the first.
    embed(b, &first, &[-1.0, -2.0, -3.0]).await;
    assert!(nearest(b, Nearest::new(v(&[1.0, 2.0, 3.0]))).await[0].score < -0.99);
    let second_model = Embed::new(thread.clone(), first.id.clone(), Embedding::new("other", vec![1.0]));
    write(b, second_model).await.expect("another model");
    assert_eq!(nearest(b, Nearest::new(Embedding::new("other", vec![2.0]))).await.len(), 1);
    assert_eq!(nearest(b, Nearest::new(v(&[1.0, 2.0, 3.0]))).await.len(), 1);
    store.finish().await
}

/// An embedding written with its message (an add's, a turn's) is stored in the same write: found
/// at once, after a named parent too; a vector the store refuses (another length than its
/// model's, checked before anything else, a repeat included) refuses the whole write and nothing
/// is written (no message, no thread, no model's dimensions fixed, by an add or a turn); a repeat
/// writes no vector; a turn is refused whole for one bad vector, for two lengths of one model, or
/// for a reservation's embedding.
pub async fn check_embeddings_are_written_with_their_messages<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, vectors);
    let b = store.b().as_ref();
    let (thread, fresh) = (t("with"), t("with-new"));
    let key = persist_core::IdempotencyKey::new("with-1").expect("key");
    let first =
        written(b, text_add(&thread, "first").with_embedding(v(&[1.0, 0.0, 0.0])).with_idempotency_key(key.clone()))
            .await;
    let found = nearest(b, Nearest::new(v(&[1.0, 0.0, 0.0]))).await;
    assert_eq!(texts(&found), ["first"], "written with the message");
    let child = text_add(&thread, "after first").with_parent(first.id.clone()).with_embedding(v(&[0.0, 1.0, 0.0]));
    written(b, child).await;
    assert_eq!(nearest(b, Nearest::new(v(&[0.0, 1.0, 0.0]))).await[0].message.content.to_text(), "after first");

    // Refused whole, before anything else.
    let before = crate::fixture::snapshot(b, &[&thread, &fresh]).await;
    let refused = write(b, text_add(&fresh, "two numbers").with_embedding(v(&[1.0, 2.0]))).await;
    assert_err!(refused, PersistError::InvalidInput { field: "embedding", ref reason } if reason.contains("has 2"));
    let repeat_of_another_length =
        write(b, text_add(&thread, "first").with_embedding(v(&[1.0, 2.0])).with_idempotency_key(key.clone())).await;
    assert_err!(repeat_of_another_length, PersistError::InvalidInput { field: "embedding", .. });
    let nan = write(b, text_add(&fresh, "nan").with_embedding(v(&[f32::NAN, 1.0, 1.0]))).await;
    assert_err!(nan, PersistError::InvalidInput { field: "embedding", .. });
    assert_eq!(crate::fixture::snapshot(b, &[&thread, &fresh]).await, before, "nothing refused was written");

    // A repeat writes nothing, its vector neither.
    let repeat =
        write(b, text_add(&thread, "first").with_embedding(v(&[0.0, 0.0, 1.0])).with_idempotency_key(key)).await;
    assert!(matches!(repeat, Ok(ref r) if r.is_deduplicated()), "{repeat:?}");
    assert!(nearest(b, Nearest::new(v(&[0.0, 0.0, 1.0]))).await[0].score < 0.01, "the stored vector stands");

    // A refused add fixes no model's dimensions.
    // (A vector of its own first: split stores each fix their own models.)
    let gone = t("with-gone");
    written(b, text_add(&gone, "x").with_embedding(Embedding::new("g", vec![1.0, 2.0, 3.0]))).await;
    write(b, persist_core::args::Delete::thread(gone.clone())).await.expect("delete thread");
    let on_tombstone = write(b, text_add(&gone, "y").with_embedding(Embedding::new("new", vec![1.0, 1.0]))).await;
    assert_err!(on_tombstone, PersistError::ThreadDeleted { .. });
    let wrong_on_tombstone = write(b, text_add(&gone, "y").with_embedding(Embedding::new("g", vec![1.0, 2.0]))).await;
    assert_err!(wrong_on_tombstone, PersistError::InvalidInput { field: "embedding", .. });
    written(b, text_add(&fresh, "five").with_embedding(Embedding::new("new", vec![1.0; 5]))).await;

    // A turn: its vectors with its messages; refused whole.
    use persist_core::args::{AppendTurn, TurnMessage};
    let said = |text: &str, vector: &[f32]| TurnMessage::new(Role::User, Content::text(text)).with_embedding(v(vector));
    let turn =
        AppendTurn::of(thread.clone(), [said("turn one", &[0.0, 0.0, 1.0]), said("turn two", &[0.0, 0.0, -1.0])])
            .with_reply(Role::Assistant);
    write(b, turn).await.expect("turn");
    let found = nearest(b, Nearest::new(v(&[0.0, 0.0, 1.0])).in_thread(thread.clone()).with_limit(10)).await;
    assert_eq!(found.len(), 4, "{:?}", texts(&found));
    assert_eq!((texts(&found)[0].as_str(), texts(&found)[3].as_str()), ("turn one", "turn two"));
    let before = crate::fixture::snapshot(b, &[&thread]).await;
    for (turn, why) in [
        (
            AppendTurn::of(
                thread.clone(),
                [TurnMessage::new(Role::User, Content::text("plain")), said("short", &[1.0, 1.0])],
            ),
            "the store's length",
        ),
        (
            AppendTurn::of(
                thread.clone(),
                [
                    TurnMessage::new(Role::User, Content::text("a")).with_embedding(Embedding::new("z", vec![1.0])),
                    TurnMessage::new(Role::User, Content::text("b"))
                        .with_embedding(Embedding::new("z", vec![1.0, 2.0])),
                ],
            ),
            "two lengths of one model",
        ),
        (
            AppendTurn::of(
                thread.clone(),
                [TurnMessage::reservation(Role::Assistant).with_embedding(v(&[1.0, 1.0, 1.0]))],
            ),
            "a reservation's",
        ),
    ] {
        let refused = write(b, turn).await;
        assert!(matches!(refused, Err(PersistError::InvalidInput { field: "embedding", .. })), "{why}: {refused:?}");
    }
    // Refused by the store, or by a deleted thread, after another new model: that one is not
    // fixed either.
    let new_then_wrong = AppendTurn::of(
        thread.clone(),
        [
            TurnMessage::new(Role::User, Content::text("q")).with_embedding(Embedding::new("q", vec![1.0, 2.0])),
            said("wrong", &[1.0, 2.0]),
        ],
    );
    assert_err!(write(b, new_then_wrong).await, PersistError::InvalidInput { field: "embedding", .. });
    let on_tombstone = AppendTurn::of(
        gone.clone(),
        [TurnMessage::new(Role::User, Content::text("r")).with_embedding(Embedding::new("r", vec![1.0, 2.0]))],
    );
    assert_err!(write(b, on_tombstone).await, PersistError::ThreadDeleted { .. });
    assert_eq!(crate::fixture::snapshot(b, &[&thread]).await, before, "nothing of a refused turn was written");
    // Models `z`, `q` and `r` were fixed by nothing: any length is their first.
    for model in ["z", "q", "r"] {
        written(b, text_add(&fresh, model).with_embedding(Embedding::new(model, vec![1.0, 2.0, 3.0]))).await;
    }
    store.finish().await
}

/// A vector goes with its message: a delete, a truncation, a clear, a thread delete and a purge
/// remove it, as does a change of the content (not of metadata or role); a freed id's new
/// message has none.
pub async fn check_vectors_go_with_their_messages<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, vectors);
    let b = store.b().as_ref();
    let found = async |thread: &persist_core::ThreadId| {
        nearest(b, Nearest::new(v(&[1.0, 0.0])).in_thread(thread.clone()).with_limit(100)).await.len()
    };
    let kept = t("kept");
    let mut messages = Vec::new();
    for text in ["one", "two", "three", "four"] {
        let message = add_text(b, &kept, text).await;
        embed(b, &message, &[1.0, 0.0]).await;
        messages.push(message);
    }
    assert_eq!(found(&kept).await, 4);
    write(b, Update::message(kept.clone(), messages[0].id.clone()).with_role(Role::System)).await.expect("role");
    let tagged =
        Update::message(kept.clone(), messages[0].id.clone()).with_metadata(Metadata::new().with("k", json!(1)));
    write(b, tagged).await.expect("metadata");
    assert_eq!(found(&kept).await, 4, "metadata and role keep the vector");
    write(b, UpdateContent::new(kept.clone(), messages[0].id.clone(), Content::text("one, rewritten")))
        .await
        .expect("rewrite");
    assert_eq!(found(&kept).await, 3, "new content: the vector described the old");
    write(b, Delete::message(kept.clone(), messages[1].id.clone())).await.expect("delete");
    assert_eq!(found(&kept).await, 2);
    write(b, Delete::after(kept.clone(), 3)).await.expect("truncate");
    assert_eq!(found(&kept).await, 1);
    write(b, Delete::clear(kept.clone())).await.expect("clear");
    assert_eq!(found(&kept).await, 0);

    let (gone, purged) = (t("gone"), t("purged"));
    let in_gone = add_text(b, &gone, "gone").await;
    embed(b, &in_gone, &[1.0, 0.0]).await;
    let in_purged = written(b, text_add(&purged, "purged").with_id(crate::fixture::m("same-id"))).await;
    embed(b, &in_purged, &[1.0, 0.0]).await;
    write(b, Delete::thread(gone.clone())).await.expect("delete thread");
    assert_eq!(found(&gone).await, 0);
    write(b, Delete::purge(purged.clone()).freeing_id(true)).await.expect("purge");
    assert_eq!(found(&purged).await, 0);
    written(b, text_add(&purged, "purged").with_id(crate::fixture::m("same-id"))).await;
    assert_eq!(found(&purged).await, 0, "the same id again is a new message, with no vector");
    assert!(nearest(b, Nearest::new(v(&[1.0, 0.0])).with_limit(100)).await.is_empty());
    store.finish().await
}

/// Hybrid recall: the vectors' ranking fused with full text (reciprocal rank fusion) puts a
/// message both find first, brings a message only the words find, and gives each hit its
/// neighbours in seq order; a recall by vectors alone ranks by similarity.
pub async fn check_hybrid_recall_fuses_vectors_and_text<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, vectors);
    gate!(store, search);
    let pipeline = Pipeline::new(std::sync::Arc::clone(store.b()));
    let embedder = HashEmbedder::new(128);
    let thread = t("hybrid");
    let texts_in = [
        "We booked dinner in Lisbon",
        "The flight to Lisbon leaves at nine",
        "Dinner reservations need a deposit",
        "Weather report: sunny",
        "zebra quokka",
    ];
    let mut messages = Vec::new();
    for text in texts_in {
        let message = pipeline.add(text_add(&thread, text)).await.expect("add").message;
        let vector = embedder.embed(&[text.to_owned()]).await.expect("embed").remove(0);
        let embedding = Embedding::new(embedder.model(), vector);
        pipeline.embed(Embed::new(thread.clone(), message.id.clone(), embedding)).await.expect("embed");
        messages.push(message);
    }
    let plain = pipeline.recall(&embedder, Recall::new("dinner in Lisbon").with_limit(2)).await.expect("recall");
    assert_eq!(plain.hits[0].message.id, messages[0].id, "the nearest by vector");
    assert!(plain.hits[0].similarity.is_some_and(|s| s > plain.hits[1].similarity.unwrap_or(1.0)));
    assert_eq!(plain.hits[0].score, plain.hits[0].similarity.unwrap_or_default());

    let hybrid = Recall::new("dinner in Lisbon").with_keywords("quokka").with_limit(5).with_message_range(1, 1);
    let found = pipeline.recall(&embedder, hybrid).await.expect("hybrid recall");
    let ids: Vec<_> = found.hits.iter().map(|h| h.message.id.clone()).collect();
    assert!(ids.contains(&messages[4].id), "the words alone bring it: {ids:?}");
    let quokka = found.hits.iter().find(|h| h.message.id == messages[4].id).expect("quokka");
    assert_eq!(quokka.text_place, Some(1));
    assert_eq!(quokka.before.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), [messages[3].id.clone()]);
    assert!(quokka.after.is_empty(), "the last message has nothing after it");
    let both = Recall::new("dinner in Lisbon").with_keywords("dinner").with_limit(5);
    let found = pipeline.recall(&embedder, both).await.expect("hybrid recall");
    assert_eq!(found.hits[0].message.id, messages[0].id, "found by both rankings, first");
    assert!(found.hits[0].text_place.is_some() && found.hits[0].similarity.is_some());
    let expected = 1.0 / (persist_recall::RRF_K + 1.0) * 2.0;
    assert!(found.hits[0].score <= expected + 1e-6);
    let context = found.messages();
    let seqs: Vec<u64> = context.iter().map(|m| m.seq).collect();
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(seqs, sorted, "one thread: each message once, in seq order");
    store.finish().await
}

/// Every vector of a thread listed (`ListEmbeddings`) with `limit` a page.
async fn listed<B: Backend>(b: &B, query: ListEmbeddings) -> Vec<StoredEmbedding> {
    let mut query = query;
    let mut found = Vec::new();
    loop {
        let page = b.embeddings(query.clone()).await.expect("list embeddings");
        assert!(page.items.len() <= query.limit as usize);
        found.extend(page.items.iter().cloned());
        match query.next_page(&page) {
            Some(next) => query = next,
            None => return found,
        }
    }
}

/// A thread's vectors read back as stored (`ListEmbeddings`): by seq, then model (bytewise),
/// page after page; each of its message, scaled to length 1, and written again (a copy) stored
/// with the same numbers; none of another thread or tenant, of a message whose content changed,
/// of a deleted thread or of one that does not exist.
pub async fn check_embeddings_are_listed_as_stored<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, vectors);
    let b = store.b().as_ref();
    let thread = t("listed");
    let first = add_text(b, &thread, "first").await;
    let second = add_text(b, &thread, "second").await;
    add_text(b, &thread, "third, never embedded").await;
    embed(b, &second, &[3.0, 4.0]).await;
    // An assistant's reply cut short: interrupted, embedded all the same.
    let reply = written(b, Reserve::new(thread.clone(), Role::Assistant)).await;
    write(b, UpdateContent::appending(thread.clone(), reply.id.clone(), Content::text("cut"))).await.expect("append");
    write(b, UpdateContent::interrupted(thread.clone(), reply.id.clone())).await.expect("interrupt");
    let reply = crate::fixture::get(b, &thread, &reply.id).await.expect("the reply");
    embed(b, &reply, &[0.0, 2.0]).await;
    for (model, vector) in [("b", vec![0.0, 2.0, 0.0]), ("B", vec![1.0, 1.0, 1.0, 1.0])] {
        write(b, Embed::new(thread.clone(), first.id.clone(), Embedding::new(model, vector))).await.expect("embed");
    }
    embed(b, &first, &[1.0, 0.0]).await;
    embed(b, &add_text(b, &t("listed-other"), "another thread").await, &[1.0, 0.0]).await;
    let acme = tenant("acme");
    let theirs = written(b, text_add(&thread, "acme's").with_context(ctx(Some(&acme)))).await;
    let embedded = Embed::new(thread.clone(), theirs.id.clone(), v(&[0.0, 1.0])).with_context(ctx(Some(&acme)));
    write(b, embedded).await.expect("embed acme's");

    let found = listed(b, ListEmbeddings::new(thread.clone()).with_limit(2)).await;
    let order: Vec<(u64, &str)> = found.iter().map(|s| (s.seq, s.embedding.model())).collect();
    assert_eq!(order, [(1, "B"), (1, "b"), (1, "m"), (2, "m"), (4, "m")], "by seq, then model bytewise");
    assert!(found[..3].iter().all(|s| s.message_id == first.id) && found[3].message_id == second.id);
    // Each with its message's role, status and creation time (what an index filters on).
    for stored in &found {
        let message = crate::fixture::get(b, &thread, &stored.message_id).await.expect("the message");
        assert_eq!(
            (&stored.role, stored.status, stored.created_at),
            (&message.role, message.status, message.created_at),
            "{stored:?}"
        );
    }
    assert_eq!((&found[0].role, found[0].status), (&Role::User, Status::Complete));
    assert_eq!((&found[4].role, found[4].status), (&Role::Assistant, Status::Interrupted));
    assert_eq!((found[4].message_id.clone(), found[4].created_at), (reply.id.clone(), reply.created_at));
    assert_eq!(found[1].embedding.vector(), [0.0, 1.0, 0.0], "as stored: scaled to length 1");
    assert_eq!(found[3].embedding.vector(), [0.6, 0.8]);
    assert_eq!(found[0].embedding.vector(), [0.5; 4]);
    // Written again as read (a copy), each is stored with the same numbers.
    for stored in &found {
        write(b, Embed::new(thread.clone(), stored.message_id.clone(), stored.embedding.clone())).await.expect("again");
    }
    assert_eq!(listed(b, ListEmbeddings::new(thread.clone())).await, found, "the same numbers");
    let acme_found = listed(b, ListEmbeddings::new(thread.clone()).with_context(ctx(Some(&acme)))).await;
    assert_eq!(acme_found.len(), 1, "the tenant's thread of that id only");
    assert_eq!((acme_found[0].message_id.clone(), acme_found[0].embedding.vector()), (theirs.id, &[0.0, 1.0][..]));

    let rewrite = UpdateContent::new(thread.clone(), first.id.clone(), Content::text("first, rewritten"));
    write(b, rewrite).await.expect("rewrite");
    let left = listed(b, ListEmbeddings::new(thread.clone())).await;
    assert_eq!(left.iter().map(|s| s.seq).collect::<Vec<_>>(), [2, 4], "new content: its vectors are gone");
    write(b, Delete::thread(thread.clone())).await.expect("delete thread");
    assert!(listed(b, ListEmbeddings::new(thread.clone())).await.is_empty(), "a deleted thread has none");
    assert!(listed(b, ListEmbeddings::new(t("never-written"))).await.is_empty());
    assert_err!(
        b.embeddings(ListEmbeddings::new(t("listed-other")).with_limit(0)).await,
        PersistError::InvalidInput { field: "limit", .. }
    );
    store.finish().await
}
