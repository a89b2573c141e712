//! Full-text search (gated on `search`): the query rules (words in any order, case, phrases,
//! prefixes, punctuation, no stemming, accents kept), what is indexed (text and tool results,
//! not reasoning or tool calls; complete and interrupted messages, not placeholders), the index
//! following every write in its transaction (content replaced, messages and threads deleted,
//! truncations, purges), newest-first paging with a cursor, scopes (a thread, a tenant, every
//! tenant), filters (roles, time range, thread metadata), bad input, and a second handle's
//! writes found.

use std::time::Duration;

use persist_core::args::{Add, Delete, Reserve, Restore, Update, UpdateContent};
use persist_core::search::{Search, SearchHit};
use persist_core::{Backend, Content, Message, MessageId, Metadata, Part, PersistError, Role, Thread, Timestamp};
use serde_json::json;

use crate::fixture::{add_text, assert_err, ctx, gate, t, tenant, text_add, write, written};
use crate::{Factory, Outcome};

/// The hits of a search, every page followed.
async fn all_hits<B: Backend>(b: &B, query: Search) -> Vec<SearchHit> {
    let mut query = query;
    let mut hits = Vec::new();
    loop {
        let page = b.search(query.clone()).await.unwrap_or_else(|e| panic!("search {:?}: {e}", query.text));
        hits.extend(page.items);
        if !page.has_more {
            return hits;
        }
        query = query.with_cursor(page.next_cursor);
    }
}

/// The texts (snippets with highlights marked) a search finds, newest first.
async fn found<B: Backend>(b: &B, query: Search) -> Vec<String> {
    all_hits(b, query).await.into_iter().map(|h| h.snippet.marked("[", "]")).collect()
}

/// Clock-based order needs distinct timestamps; wait past the clock's resolution.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(3)).await;
}

/// Words in any order and any case, phrases in order, prefixes with `*`, words joined by
/// punctuation as a phrase, no stemming, accents kept: the same answers on every backend.
pub async fn check_search_follows_the_query_rules<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, search);
    let b = store.b().as_ref();
    let thread = t("rules");
    for text in [
        "The weather in Lisbon is sunny.",
        "Rate-limited by the API; retry later.",
        "We are running late to the café.",
        "lisbon LISBON Lisbon",
    ] {
        add_text(b, &thread, text).await;
        tick().await;
    }
    let q = |text: &str| Search::new(text);
    assert_eq!(
        found(b, q("LISBON")).await,
        ["[lisbon] [LISBON] [Lisbon]", "The weather in [Lisbon] is sunny."],
        "case does not matter; newest first"
    );
    assert_eq!(found(b, q("sunny lisbon")).await, ["The weather in [Lisbon] is [sunny]."], "every word, any order");
    assert_eq!(found(b, q("\"weather in lisbon\"")).await.len(), 1, "a phrase");
    assert!(found(b, q("\"lisbon weather\"")).await.is_empty(), "a phrase keeps its order");
    assert_eq!(found(b, q("weath*")).await.len(), 1, "a prefix");
    assert!(found(b, q("weath")).await.is_empty(), "no prefix without *");
    assert_eq!(found(b, q("rate-limited")).await.len(), 1, "punctuation joins a phrase");
    assert_eq!(found(b, q("\"rate limited\"")).await.len(), 1, "text is split at punctuation");
    assert_eq!(found(b, q("limited rate")).await.len(), 1, "words of a hyphenated word");
    assert!(found(b, q("run")).await.is_empty(), "no stemming");
    assert_eq!(found(b, q("café")).await, ["We are running late to the [café]."]);
    assert!(found(b, q("cafe")).await.is_empty(), "accents are kept");
    assert!(found(b, q("lisbon porto")).await.is_empty(), "every word must occur");
    assert!(found(b, q("AND OR NOT")).await.is_empty(), "operators are words");
    store.finish().await
}

/// Text blocks and tool results are found; reasoning, tool calls and placeholders are not; a
/// reply is found once it is finished or interrupted; other content, by its text only.
pub async fn check_search_reads_text_and_tool_results<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, search);
    let b = store.b().as_ref();
    let thread = t("parts");
    let parts = Content::from_parts([
        Part::reasoning("hiddenthought"),
        Part::tool_call("c1", "lookup", json!({"city": "callargument"})),
        Part::text("visible answer"),
    ]);
    written(b, Add::new(thread.clone(), Role::Assistant, parts)).await;
    let result = Content::from_parts([Part::tool_result("c1", json!("toolstring output"))]);
    written(b, Add::new(thread.clone(), Role::Tool, result)).await;
    let blocks = json!([{"type": "text", "text": "mcpblock"}, {"type": "image", "data": "imagedata"}]);
    let result = Content::from_parts([Part::tool_result("c2", blocks)]);
    written(b, Add::new(thread.clone(), Role::Tool, result)).await;
    written(b, Add::new(thread.clone(), Role::User, Content::new(json!("plainstring content")))).await;
    let marked = json!([{"type": "text", "text": "cachedtext", "cache_control": {"type": "ephemeral"}}]);
    written(b, Add::new(thread.clone(), Role::User, Content::new(marked))).await;
    let odd = json!([{"output": "typelessoutput"}, "barestring", {"type": "text", "text": 42}, 7]);
    written(b, Add::new(thread.clone(), Role::User, Content::new(odd))).await;
    for (word, hits) in [
        ("visible", 1),
        ("toolstring", 1),
        ("mcpblock", 1),
        ("plainstring", 1),
        ("cachedtext", 1),
        ("hiddenthought", 0),
        ("callargument", 0),
        ("lookup", 0),
        ("imagedata", 0),
        ("typelessoutput", 0),
        ("barestring", 0),
        ("42", 0),
    ] {
        assert_eq!(found(b, Search::new(word)).await.len(), hits, "{word}");
    }

    let reply = written(b, Reserve::new(thread.clone(), Role::Assistant)).await;
    let token = UpdateContent::appending(thread.clone(), reply.id.clone(), Content::text("streamedword "));
    write(b, token).await.expect("append");
    assert!(found(b, Search::new("streamedword")).await.is_empty(), "a placeholder is not found");
    write(b, UpdateContent::finishing(thread.clone(), reply.id.clone())).await.expect("finish");
    assert_eq!(found(b, Search::new("streamedword")).await, ["[streamedword] "]);
    let cut = written(b, Reserve::new(thread.clone(), Role::Assistant)).await;
    let token = UpdateContent::appending(thread.clone(), cut.id.clone(), Content::text("cutshort"));
    write(b, token.with_interrupt(true)).await.expect("interrupt");
    assert_eq!(found(b, Search::new("cutshort")).await.len(), 1, "an interrupted reply is found");
    store.finish().await
}

/// The index follows every write: replaced content, deleted messages, truncations, deleted and
/// purged threads leave it; a message written again is found by its new text only.
pub async fn check_search_follows_every_write<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, search);
    let b = store.b().as_ref();
    let (kept, gone, purged) = (t("kept"), t("gone"), t("purged"));
    let first = add_text(b, &kept, "oldword one").await;
    add_text(b, &kept, "second message").await;
    let third = add_text(b, &kept, "third message").await;
    add_text(b, &gone, "gonethread words").await;
    add_text(b, &purged, "purgedthread words").await;
    assert_eq!(found(b, Search::new("message")).await.len(), 2);

    write(b, UpdateContent::new(kept.clone(), first.id.clone(), Content::text("newword one"))).await.expect("replace");
    assert!(found(b, Search::new("oldword")).await.is_empty(), "replaced text leaves the index");
    assert_eq!(found(b, Search::new("newword")).await, ["[newword] one"]);
    let role = Update::message(kept.clone(), first.id.clone()).with_role(Role::System);
    write(b, role).await.expect("role");
    assert_eq!(found(b, Search::new("newword")).await.len(), 1, "a change of role keeps the text");

    write(b, Delete::message(kept.clone(), third.id.clone())).await.expect("delete");
    assert_eq!(found(b, Search::new("message")).await, ["second [message]"]);
    write(b, Delete::after(kept.clone(), 1)).await.expect("truncate");
    assert!(found(b, Search::new("message")).await.is_empty(), "a truncation");
    write(b, Delete::thread(gone.clone())).await.expect("delete thread");
    assert!(found(b, Search::new("gonethread")).await.is_empty(), "a deleted thread");
    write(b, Delete::purge(purged.clone()).freeing_id(true)).await.expect("purge");
    assert!(found(b, Search::new("purgedthread")).await.is_empty(), "a purged thread");
    assert_eq!(found(b, Search::new("words")).await.len(), 0);
    add_text(b, &purged, "afterpurge words").await;
    assert_eq!(found(b, Search::new("words")).await, ["afterpurge [words]"], "a freed id starts over");
    store.finish().await
}

/// Hits come newest first and page with a cursor: every hit exactly once, in order, with
/// messages added meanwhile (newer than the cursor) never breaking the pages.
pub async fn check_search_pages_newest_first<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, search);
    let b = store.b().as_ref();
    let threads = [t("p-a"), t("p-b"), t("p-c")];
    let mut written_ids = Vec::new();
    for i in 0..12 {
        let message = add_text(b, &threads[i % 3], &format!("pageword number{i}")).await;
        written_ids.push(message.id);
        if i % 4 == 0 {
            tick().await;
        }
    }
    let everything = all_hits(b, Search::new("pageword").with_limit(100)).await;
    assert_eq!(everything.len(), 12);
    let mut query = Search::new("pageword").with_limit(5);
    let mut paged = Vec::new();
    loop {
        let page = b.search(query.clone()).await.expect("search");
        assert!(page.items.len() <= 5);
        paged.extend(page.items);
        add_text(b, &threads[0], "pageword added meanwhile").await;
        if !page.has_more {
            break;
        }
        query = query.with_cursor(page.next_cursor);
    }
    assert_eq!(paged, everything, "pages hold every hit once, in the order of one search");
    for pair in everything.windows(2) {
        let key = |h: &SearchHit| (h.created_at, h.thread_id.clone(), h.tenant.clone(), h.seq);
        assert!(key(&pair[0]) > key(&pair[1]), "newest first: {:?} then {:?}", key(&pair[0]), key(&pair[1]));
    }
    let mut ids: Vec<_> = everything.iter().map(|h| h.message_id.clone()).collect();
    ids.sort();
    written_ids.sort();
    assert_eq!(ids, written_ids);
    for hit in &everything {
        assert!(hit.rank > 0.0 && hit.rank < 1.0, "rank {}", hit.rank);
        assert_eq!(hit.role, Role::User);
    }
    store.finish().await
}

/// The restore of a thread of one message of `text`, written at `at`.
pub(crate) fn restored_at(thread: &str, text: &str, at: Timestamp) -> Restore {
    let id = t(thread);
    let thread = Thread::stored(id.clone(), 1, at);
    let message = Message::stored(id, MessageId::new("only").unwrap(), 1, Role::User, Content::text(text), at);
    Restore::new(thread, vec![message])
}

/// Hits written at the same instant are ordered by thread id, descending, bytewise (not as a
/// locale would: `ab` > `a-b` > `B` > `Ab`), on every backend, and a cursor continues between them.
pub async fn check_search_breaks_ties_bytewise<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, search);
    gate!(store, restore);
    let b = store.b().as_ref();
    let at = Timestamp::from_micros(1_700_000_000_000_000);
    for thread in ["B", "ab", "a-b", "Ab"] {
        write(b, restored_at(thread, "tieword", at)).await.expect("restore");
    }
    let order = |hits: Vec<SearchHit>| hits.into_iter().map(|h| h.thread_id.as_str().to_owned()).collect::<Vec<_>>();
    assert_eq!(order(all_hits(b, Search::new("tieword").with_limit(100)).await), ["ab", "a-b", "B", "Ab"]);
    assert_eq!(order(all_hits(b, Search::new("tieword").with_limit(1)).await), ["ab", "a-b", "B", "Ab"], "paged");
    store.finish().await
}

/// A search reaches one thread, the context's tenant's threads, or every tenant's for
/// operators; another tenant's messages are never found; roles, a time range and thread
/// metadata narrow it.
pub async fn check_search_scopes_and_filters<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, search);
    let b = store.b().as_ref();
    let (acme, globex) = (Some(tenant("acme")), Some(tenant("globex")));
    let (acme, globex) = (acme.as_ref(), globex.as_ref());
    let (one, two) = (t("s-one"), t("s-two"));
    written(b, text_add(&one, "shared secret one").with_context(ctx(acme))).await;
    tick().await;
    let middle = Timestamp::now();
    tick().await;
    let reply = Add::new(two.clone(), Role::Assistant, Content::text("shared secret two"));
    written(b, reply.with_context(ctx(acme))).await;
    written(b, text_add(&one, "shared secret globex").with_context(ctx(globex))).await;
    written(b, text_add(&one, "shared secret nobody")).await;
    let meta = Metadata::new().with("project", json!("x"));
    write(b, Update::thread(two.clone()).with_metadata(meta.clone()).with_context(ctx(acme))).await.expect("tag");

    let acme_search = |text: &str| Search::new(text).with_context(ctx(acme));
    assert_eq!(found(b, acme_search("secret")).await.len(), 2, "the tenant's threads only");
    assert_eq!(found(b, Search::new("secret").with_context(ctx(globex))).await, ["shared [secret] globex"]);
    assert_eq!(found(b, Search::new("secret")).await, ["shared [secret] nobody"], "no tenant is a tenant");
    assert_eq!(found(b, acme_search("secret").in_thread(one.clone())).await, ["shared [secret] one"]);
    assert!(found(b, acme_search("secret").in_thread(t("s-none"))).await.is_empty());
    let across = all_hits(b, Search::new("secret").across_tenants(true)).await;
    assert_eq!(across.len(), 4, "every tenant's, for operators");
    assert_eq!(across.iter().filter(|h| h.tenant.as_ref() == acme).count(), 2, "hits name their tenant");
    assert_eq!(found(b, acme_search("secret").with_roles([Role::Assistant])).await, ["shared [secret] two"]);
    assert_eq!(found(b, acme_search("secret").since(middle)).await, ["shared [secret] two"]);
    assert_eq!(found(b, acme_search("secret").until(middle)).await, ["shared [secret] one"]);
    assert_eq!(found(b, acme_search("secret").with_thread_filter(meta)).await, ["shared [secret] two"]);
    let other = Metadata::new().with("project", json!("y"));
    assert!(found(b, acme_search("secret").with_thread_filter(other)).await.is_empty());
    store.finish().await
}

/// A query with no word, a bad limit, an empty time range or another tenant's cursor is
/// `InvalidInput` naming its field.
pub async fn check_search_refuses_bad_input<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, search);
    let b = store.b().as_ref();
    let acme = Some(tenant("acme"));
    written(b, text_add(&t("bad"), "word").with_context(ctx(acme.as_ref()))).await;
    let page = b.search(Search::new("word").with_limit(1).across_tenants(true)).await.expect("search");
    assert_eq!(page.items.len(), 1);
    let at = Timestamp::now();
    for (query, field) in [
        (Search::new(" ,. "), "query"),
        (Search::new("word").with_limit(0), "limit"),
        (Search::new("word").since(at).until(at), "until"),
        (Search::new("word").with_cursor(page.next_cursor), "cursor"),
    ] {
        assert_err!(b.search(query).await, PersistError::InvalidInput { field: f, .. } if f == field);
    }
    store.finish().await
}

/// A message another handle writes is found (the index is the store's, not a handle's).
pub async fn check_search_finds_another_handles_writes<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, search);
    gate!(store, shared_storage);
    let b = store.b().as_ref();
    let other = store.second_handle().await;
    add_text(other.as_ref(), &t("h"), "fromanotherhandle").await;
    assert_eq!(found(b, Search::new("fromanotherhandle")).await.len(), 1);
    store.finish().await
}
