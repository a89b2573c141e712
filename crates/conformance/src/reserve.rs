//! `reserve` then `update_content`: placeholders with a stable id and seq, filled in place.

use persist_core::args::{Reserve, UpdateContent};
use persist_core::read::ListMessages;
use persist_core::{Backend, Content, Metadata, PersistError, Role, Status};
use serde_json::json;

use crate::fixture::{add_text, all_messages, assert_err, get, m, t, thread, write, written};
use crate::{Factory, Outcome};

/// A reservation is `Reserved`, holds `[]`, and takes its `seq` now.
pub async fn check_reserve_gives_placeholder_with_seq<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("reserve");
    add_text(b, &id, "question").await;
    let meta = Metadata::new().with("model", json!("m-1"));
    let slot = written(b, Reserve::new(id.clone(), Role::Assistant).with_metadata(meta.clone())).await;
    assert_eq!(slot.status, Status::Reserved);
    assert!(slot.content.is_placeholder(), "placeholder content is []");
    assert_eq!((slot.seq, slot.version), (2, 1));
    assert_eq!(slot.metadata, meta);
    let after = add_text(b, &id, "follow-up").await;
    assert_eq!(after.seq, 3, "a later message comes after the placeholder");
    assert_eq!(get(b, &id, &slot.id).await.unwrap(), slot);
    let th = thread(b, &id).await.unwrap();
    assert_eq!((th.message_count, th.last_seq), (3, 3), "placeholders count");
    store.finish().await
}

/// Finalizing keeps the id and seq, bumps the version and completes the message.
pub async fn check_update_content_finalizes_in_place<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("finalize");
    let slot = written(b, Reserve::new(id.clone(), Role::Assistant).with_id(m("answer-1"))).await;
    let done = written(b, UpdateContent::new(id.clone(), slot.id.clone(), Content::text("the answer"))).await;
    assert_eq!((done.id.clone(), done.seq), (slot.id.clone(), slot.seq));
    assert_eq!(done.version, slot.version + 1);
    assert_eq!(done.status, Status::Complete);
    assert_eq!(done.content.to_text(), "the answer");
    assert_eq!(done.created_at, slot.created_at);
    assert!(done.updated_at >= slot.updated_at);
    assert_eq!(get(b, &id, &slot.id).await.unwrap(), done);
    assert_eq!(all_messages(b, &id).await.len(), 1, "finalizing adds no message");
    let th = thread(b, &id).await.unwrap();
    assert!(th.updated_at >= done.updated_at, "the thread's updated_at moves with the message");
    store.finish().await
}

/// Non-final updates replace the content and keep the message `Reserved` until the last one.
pub async fn check_streaming_updates_keep_reserved_until_final<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("stream");
    let slot = written(b, Reserve::new(id.clone(), Role::Assistant)).await;
    let mut text = String::new();
    for (i, chunk) in ["Hel", "lo, ", "wor"].iter().enumerate() {
        text.push_str(chunk);
        let partial = UpdateContent::partial(id.clone(), slot.id.clone(), Content::text(&text));
        let partial = written(b, partial).await;
        assert_eq!(partial.status, Status::Reserved);
        assert_eq!(partial.version, 2 + i as u64);
        assert_eq!(partial.content.to_text(), text);
    }
    let done = written(b, UpdateContent::new(id.clone(), slot.id.clone(), Content::text("Hello, world"))).await;
    assert_eq!((done.status, done.version, done.seq), (Status::Complete, 5, slot.seq));
    store.finish().await
}

/// `update_content` of a missing message is `NotFound`, never a silent success or an insert.
pub async fn check_update_content_of_missing_message_is_not_found<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("missing");
    add_text(b, &id, "present").await;
    let attempt = UpdateContent::new(id.clone(), m("absent"), Content::text("x"));
    assert_err!(write(b, attempt).await, PersistError::NotFound { message_id: Some(_), .. });
    assert!(get(b, &id, &m("absent")).await.is_none());
    assert_eq!(thread(b, &id).await.unwrap().message_count, 1);
    store.finish().await
}

/// An appending update joins its blocks to the stored ones (a text block after a text block
/// joins their texts, so a reply streamed token by token stays one block; a placeholder is
/// replaced), bumps the version once per append, and is refused as a replacement would be:
/// a stale expected version, content that is not an array of blocks, a missing message, a
/// deleted thread. A refused append changes nothing.
pub async fn check_appending_updates_join_the_content<F: Factory>(factory: &F) -> Outcome {
    use persist_core::args::Delete;
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("appended");
    let slot = written(b, Reserve::new(id.clone(), Role::Assistant)).await;
    let append = |content: Content| UpdateContent::appending(id.clone(), slot.id.clone(), content);
    let first = written(b, append(Content::text("Hel"))).await;
    assert_eq!((first.content.clone(), first.status, first.version), (Content::text("Hel"), Status::Reserved, 2));
    let second = written(b, append(Content::text("lo"))).await;
    assert_eq!((second.content.clone(), second.version), (Content::text("Hello"), 3), "one text block");
    let image = json!({"type": "image", "url": "https://example.invalid/cat.png"});
    let third = written(b, append(Content::new(json!([image.clone()])))).await;
    let more = written(b, append(Content::text(" again")).with_finalize(true)).await;
    let blocks = json!([{"type": "text", "text": "Hello"}, image, {"type": "text", "text": " again"}]);
    assert_eq!((more.content.to_value(), more.status, more.version), (blocks, Status::Complete, third.version + 1));
    assert_eq!(get(b, &id, &slot.id).await.unwrap(), more);

    let stale = append(Content::text("x")).with_expected_version(2);
    assert_err!(
        write(b, stale).await,
        PersistError::VersionConflict { expected: 2, actual, .. } if actual == more.version
    );
    let open = written(b, Reserve::new(id.clone(), Role::Assistant)).await;
    let plain = written(b, UpdateContent::partial(id.clone(), open.id.clone(), Content::new(json!("plain")))).await;
    let onto_plain = UpdateContent::appending(id.clone(), plain.id.clone(), Content::text("x"));
    assert_err!(write(b, onto_plain).await, PersistError::InvalidInput { field: "content", .. });
    let not_blocks = UpdateContent::appending(id.clone(), open.id.clone(), Content::new(json!({"text": "x"})));
    assert_err!(write(b, not_blocks).await, PersistError::InvalidInput { field: "content", .. });
    assert_eq!(get(b, &id, &slot.id).await.unwrap(), more, "refused appends change nothing");
    assert_eq!(get(b, &id, &plain.id).await.unwrap(), plain);
    // Finishing adds nothing: it completes content of any shape as it is.
    let finished = written(b, UpdateContent::finishing(id.clone(), plain.id.clone())).await;
    assert_eq!((finished.status, finished.content.clone()), (Status::Complete, plain.content.clone()));
    let missing = UpdateContent::appending(id.clone(), m("missing"), Content::text("x"));
    assert_err!(write(b, missing).await, PersistError::NotFound { .. });
    write(b, Delete::thread(id.clone())).await.unwrap();
    assert_err!(write(b, append(Content::text("x"))).await, PersistError::ThreadDeleted { .. });
    store.finish().await
}

/// Reasoning streamed token by token stays one reasoning part, as text does: an append of a
/// reasoning block joins the reasoning block the content ends with. Text after reasoning starts
/// a text part (and reasoning after text a reasoning part), a reasoning block with a field of
/// its own (a signature) stands alone, and a tool call is a part of its own each time. What a
/// follower rebuilds from the feed's deltas is the content stored.
pub async fn check_streamed_reasoning_stays_one_part<F: Factory>(factory: &F) -> Outcome {
    use persist_core::Part;
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("reasoning");
    let slot = written(b, Reserve::new(id.clone(), Role::Assistant)).await;
    let append = |part: Part| UpdateContent::appending(id.clone(), slot.id.clone(), Content::from_parts([part]));
    for token in ["The user ", "asks about ", "the weather."] {
        written(b, append(Part::reasoning(token))).await;
    }
    let after_reasoning = get(b, &id, &slot.id).await.unwrap();
    assert_eq!(after_reasoning.content.parts(), [Part::reasoning("The user asks about the weather.")]);
    written(b, append(Part::tool_call("c1", "weather", json!({"city": "Lisbon"})))).await;
    for token in ["Checking ", "now."] {
        written(b, append(Part::text(token))).await;
    }
    for token in ["Sunny, ", "it says."] {
        written(b, append(Part::reasoning(token))).await;
    }
    let signed = json!({"type": "reasoning", "text": " Signed.", "signature": "sig"});
    written(b, UpdateContent::appending(id.clone(), slot.id.clone(), Content::new(json!([signed.clone()])))).await;
    written(b, append(Part::reasoning(" After."))).await;
    let done = written(b, UpdateContent::finishing(id.clone(), slot.id.clone())).await;
    assert_eq!(
        done.content.parts(),
        [
            Part::reasoning("The user asks about the weather."),
            Part::tool_call("c1", "weather", json!({"city": "Lisbon"})),
            Part::text("Checking now."),
            Part::reasoning("Sunny, it says."),
            Part::Other(signed),
            Part::reasoning(" After."),
        ],
        "one part per run of a kind that streams"
    );
    assert_eq!(get(b, &id, &slot.id).await.unwrap(), done);
    if store.caps().feed {
        let pipeline = persist_core::Pipeline::new(std::sync::Arc::clone(b));
        let mut rebuilt = slot.content.clone();
        for event in crate::live::events_of(&pipeline, "reasoning").await {
            if let Some(delta) = &event.change.delta {
                rebuilt = rebuilt.appended(delta).expect("deltas are content blocks");
            }
        }
        assert_eq!(rebuilt, done.content, "a follower's deltas rebuild one part per run");
    }
    store.finish().await
}

/// A streamed reply cannot be finished by accident, nor reopened: `appending` and `partial`
/// leave the message reserved, `finishing` completes it with what its appends left, and a
/// complete message (finalized, or written by `add`) refuses appends and partial replacements
/// with `MessageComplete` (a token retried or sent after the end), changing nothing; a final
/// replacement still corrects it.
pub async fn check_a_complete_message_takes_only_final_replacements<F: Factory>(factory: &F) -> Outcome {
    use persist_core::args::Add;
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("finished");
    let slot = written(b, Reserve::new(id.clone(), Role::Assistant)).await;
    let token = |text: &str| UpdateContent::appending(id.clone(), slot.id.clone(), Content::text(text));
    let first = written(b, token("Hel")).await;
    assert_eq!(
        (first.status, first.content.to_text()),
        (Status::Reserved, "Hel".to_owned()),
        "a token never finalizes"
    );
    written(b, token("lo")).await;
    let done = written(b, UpdateContent::finishing(id.clone(), slot.id.clone())).await;
    assert_eq!((done.status, done.content.clone(), done.version), (Status::Complete, Content::text("Hello"), 4));

    let late = [
        ("a token after the end", token("!")),
        ("a last token after the end", token("!").with_finalize(true)),
        ("a second end", UpdateContent::finishing(id.clone(), slot.id.clone())),
        ("a partial replacement", UpdateContent::partial(id.clone(), slot.id.clone(), Content::text("Hel"))),
        (
            "an expected partial",
            UpdateContent::partial(id.clone(), slot.id.clone(), Content::text("x")).with_expected_version(4),
        ),
    ];
    for (what, update) in late {
        match write(b, update).await {
            Err(PersistError::MessageComplete { message_id, .. }) if message_id == slot.id => {}
            other => panic!("{what}: expected MessageComplete, got {other:?}"),
        }
    }
    assert_eq!(get(b, &id, &slot.id).await.unwrap(), done, "refused writes change nothing");

    let added = written(b, Add::new(id.clone(), Role::User, Content::text("question"))).await;
    let onto_added = UpdateContent::appending(id.clone(), added.id.clone(), Content::text("?"));
    assert_err!(write(b, onto_added).await, PersistError::MessageComplete { .. });
    assert_eq!(get(b, &id, &added.id).await.unwrap(), added);

    let corrected = written(b, UpdateContent::new(id.clone(), slot.id.clone(), Content::text("Hello!"))).await;
    assert_eq!(
        (corrected.status, corrected.content.clone(), corrected.version),
        (Status::Complete, Content::text("Hello!"), 5)
    );
    store.finish().await
}

/// A reply whose stream failed is kept: `interrupted` marks it `Interrupted` with the text its
/// tokens left (an interruption before any token keeps the placeholder), the default listing
/// shows it, it takes no more tokens nor an end (`MessageComplete` naming its status), marking
/// it again changes nothing but its version, and a final replacement still completes it. A
/// complete message cannot be marked interrupted, and the last tokens can come with the mark.
pub async fn check_an_interrupted_reply_keeps_its_text<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("interrupted");
    add_text(b, &id, "question").await;
    let slot = written(b, Reserve::new(id.clone(), Role::Assistant)).await;
    let token = |text: &str| UpdateContent::appending(id.clone(), slot.id.clone(), Content::text(text));
    written(b, token("The answer")).await;
    let cut = written(b, UpdateContent::interrupted(id.clone(), slot.id.clone())).await;
    assert_eq!(
        (cut.status, cut.content.clone(), cut.version, cut.seq),
        (Status::Interrupted, Content::text("The answer"), 3, slot.seq)
    );
    let listed = b.list(ListMessages::new(id.clone())).await.expect("list").items;
    assert_eq!(listed.last(), Some(&cut), "the default listing shows an interrupted reply");

    let late = [
        ("a token after the interruption", token(" is")),
        ("an end after the interruption", UpdateContent::finishing(id.clone(), slot.id.clone())),
        ("a partial replacement", UpdateContent::partial(id.clone(), slot.id.clone(), Content::text("x"))),
        ("an interrupting token", token(" is").with_interrupt(true)),
    ];
    for (what, update) in late {
        match write(b, update).await {
            Err(PersistError::MessageComplete { message_id, status: Status::Interrupted, .. })
                if message_id == slot.id => {}
            other => panic!("{what}: expected MessageComplete (interrupted), got {other:?}"),
        }
    }
    assert_eq!(get(b, &id, &slot.id).await.unwrap(), cut, "refused writes change nothing");
    let again = written(b, UpdateContent::interrupted(id.clone(), slot.id.clone())).await;
    assert_eq!((again.status, again.content.clone(), again.version), (Status::Interrupted, cut.content.clone(), 4));
    let regenerated = UpdateContent::new(id.clone(), slot.id.clone(), Content::text("The answer is 42."));
    let done = written(b, regenerated).await;
    assert_eq!((done.status, done.content.clone()), (Status::Complete, Content::text("The answer is 42.")));
    match write(b, UpdateContent::interrupted(id.clone(), slot.id.clone())).await {
        Err(PersistError::MessageComplete { status: Status::Complete, .. }) => {}
        other => panic!("interrupting a complete message: expected MessageComplete, got {other:?}"),
    }

    let empty = written(b, Reserve::new(id.clone(), Role::Assistant)).await;
    let empty = written(b, UpdateContent::interrupted(id.clone(), empty.id.clone())).await;
    assert_eq!((empty.status, empty.content.is_placeholder()), (Status::Interrupted, true), "cut before any token");
    let last = written(b, Reserve::new(id.clone(), Role::Assistant)).await;
    written(b, UpdateContent::appending(id.clone(), last.id.clone(), Content::text("Hal"))).await;
    let marked = UpdateContent::appending(id.clone(), last.id.clone(), Content::text("f")).with_interrupt(true);
    let marked = written(b, marked).await;
    assert_eq!((marked.status, marked.content.clone()), (Status::Interrupted, Content::text("Half")));
    let th = thread(b, &id).await.unwrap();
    assert_eq!((th.message_count, th.last_seq), (4, 4), "interrupted replies are messages like any other");

    // A keyed reserve sent again after its reply was cut short: a reserve's answer, the reply
    // as it is, deduplicated (the host learns it need not stream again into a new one).
    let keyed = Reserve::new(id.clone(), Role::Assistant)
        .with_idempotency_key(persist_core::IdempotencyKey::new("r-5").unwrap());
    let slot = written(b, keyed.clone()).await;
    written(b, UpdateContent::interrupted(id.clone(), slot.id.clone())).await;
    match write(b, keyed).await {
        Ok(persist_core::PersistResult::Reserved(again)) => {
            assert!(again.deduplicated && again.message.id == slot.id, "{again:?}");
            assert_eq!(again.message.status, Status::Interrupted);
        }
        other => panic!("a keyed reserve repeated: expected a reserve's answer, got {other:?}"),
    }
    store.finish().await
}
