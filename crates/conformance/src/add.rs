//! `add`: sequence numbers, versions, status, timestamps, thread creation, exact round trips.

use persist_core::args::{Add, Reserve, UpdateContent};
use persist_core::{Content, IdempotencyKey, Metadata, Role, Status};
use serde_json::json;

use crate::fixture::{add_text, get, t, thread, written};
use crate::{Factory, Outcome};

/// Adds get `seq` 1, 2, 3…, `version` 1, status `Complete`, and read back as answered.
pub async fn check_add_assigns_seq_version_and_status<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("add-basics");
    for expected in 1..=3u64 {
        let message = add_text(b, &id, &format!("message {expected}")).await;
        assert_eq!(message.seq, expected);
        assert_eq!(message.version, 1);
        assert_eq!(message.status, Status::Complete);
        assert_eq!(message.thread_id, id);
        assert!(message.created_at <= message.updated_at);
        assert_eq!(get(b, &id, &message.id).await.as_ref(), Some(&message), "a read returns what add answered");
    }
    store.finish().await
}

/// The first write creates the thread; its counters move in the same write.
pub async fn check_add_creates_thread_and_counts<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("add-thread");
    assert!(thread(b, &id).await.is_none());
    let first = add_text(b, &id, "one").await;
    let created = thread(b, &id).await.expect("the thread exists after its first write");
    assert_eq!((created.last_seq, created.message_count, created.version), (1, 1, 1));
    assert!(created.deleted_at.is_none());
    assert!(created.updated_at >= first.created_at);
    let second = add_text(b, &id, "two").await;
    let after = thread(b, &id).await.unwrap();
    assert_eq!((after.last_seq, after.message_count), (2, 2));
    assert_eq!(after.created_at, created.created_at);
    assert!(after.updated_at >= second.created_at);
    store.finish().await
}

/// Content and metadata come back exactly as written: unicode, nesting, numbers, empties.
pub async fn check_content_and_metadata_round_trip_exactly<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("round-trip");
    let content = json!([
        {"type": "text", "text": "héllo 👋 \"quoted\" \\ back\nslash\t€"},
        {"type": "tool_use", "id": "call_1", "input": {"n": -12, "f": 0.5, "big": 9007199254740993_u64, "nested": [[], {}, null, true]}},
        {"type": "text", "text": ""}
    ]);
    let metadata = Metadata::new()
        .with("model", json!("m-1"))
        .with("usage", json!({"input": 12, "output": 40}))
        .with("tags", json!(["a", "b"]))
        .with("empty", json!({}))
        .with("ünïcode key", json!("v"));
    let message = written(
        b,
        Add::new(id.clone(), Role::Assistant, Content::new(content.clone()))
            .with_metadata(metadata.clone())
            .with_idempotency_key(IdempotencyKey::new("rt-1").unwrap()),
    )
    .await;
    let stored = get(b, &id, &message.id).await.unwrap();
    assert_eq!(stored.content.to_value(), content);
    assert_eq!(stored.metadata, metadata);
    assert_eq!(stored.idempotency_key, Some(IdempotencyKey::new("rt-1").unwrap()));
    // Non-array content is any JSON value too.
    let plain = written(b, Add::new(id.clone(), Role::User, Content::new(json!("just a string")))).await;
    assert_eq!(get(b, &id, &plain.id).await.unwrap().content.to_value(), json!("just a string"));
    store.finish().await
}

/// Numbers come back as written, in content and in metadata: every double bit for bit (a
/// correctly rounded parse), a double that is a whole number still a double (`8.9e16` is not
/// read back as an integer), integers over the whole 64-bit range, and the extremes (the
/// largest double, the smallest subnormal). None makes its thread unreadable.
pub async fn check_numbers_round_trip_exactly<F: Factory>(factory: &F) -> Outcome {
    use rand::{Rng, SeedableRng};
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("numbers");
    let mut rng = rand::rngs::StdRng::seed_from_u64(20_261_127);
    let mut doubles: Vec<f64> =
        std::iter::repeat_with(|| f64::from_bits(rng.random())).filter(|d| d.is_finite()).take(300).collect();
    doubles.extend(std::iter::repeat_with(|| rng.random::<f64>()).take(300));
    doubles.extend([
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        5e-324,
        0.942_450_283_777_050_3,
        8.920_181_337_518_9e16,
        -9.2e18,
        1e16,
        1.8e19,
        1e21,
        1e-7,
    ]);
    let numbers: Vec<serde_json::Value> = doubles
        .iter()
        .map(|&d| json!(d))
        .chain([json!(i64::MIN), json!(i64::MAX), json!(u64::MAX), json!(0), json!(-1)])
        .collect();
    let content = json!([{"type": "data", "numbers": numbers}]);
    let metadata = Metadata::new().with("numbers", json!(numbers)).with("max", json!(f64::MAX));
    let message = written(
        b,
        Add::new(id.clone(), Role::Assistant, Content::new(content.clone())).with_metadata(metadata.clone()),
    )
    .await;
    let stored = get(b, &id, &message.id).await.expect("the thread reads");
    let bits = |value: &serde_json::Value| -> Vec<String> {
        value.as_array().into_iter().flatten().map(|n| format!("{n:?}")).collect()
    };
    assert_eq!(bits(&stored.content.to_value()[0]["numbers"]), bits(&json!(numbers)), "content");
    assert_eq!(bits(&stored.metadata.get("numbers").cloned().unwrap_or_default()), bits(&json!(numbers)), "metadata");
    assert_eq!(stored.content.to_value(), content);
    assert_eq!(stored.metadata, metadata);
    // The thread stays readable as a whole.
    assert_eq!(crate::fixture::all_messages(b, &id).await.len(), 1);
    store.finish().await
}

/// A content of one text block (most messages; backends may store it as its text alone) comes
/// back as the same content, whatever its text holds, through every path that writes content
/// (add, reserve then finalize, replace); one that only looks like it (other escapes, other key
/// order, a plain JSON string of the same text) comes back as itself, not as a text block.
pub async fn check_text_contents_round_trip<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("texts");
    let texts = [
        "",
        "plain words",
        "quotes \" and \\ backslashes \\\" mixed",
        "lines\nand\r\ntabs\t and controls \u{1}\u{8}\u{c}\u{1f}\u{7f}",
        "héllo 👋 € \u{2028} \u{feff}",
        r#"[{"text":"inner","type":"text"}]"#,
        r#"","type":"text"},{"text":""#,
        " leading and trailing space ",
        "\"",
    ];
    for text in texts {
        let content = Content::text(text);
        let added = written(b, Add::new(id.clone(), Role::User, content.clone())).await;
        let stored = get(b, &id, &added.id).await.unwrap();
        assert_eq!((stored.content.to_text(), &stored.content), (text.to_owned(), &content), "added {text:?}");
        let slot = written(b, Reserve::new(id.clone(), Role::Assistant)).await;
        written(b, UpdateContent::new(id.clone(), slot.id.clone(), content.clone())).await;
        let finished = get(b, &id, &slot.id).await.unwrap();
        assert_eq!((finished.content.to_text(), &finished.content), (text.to_owned(), &content), "finished {text:?}");
    }
    // Look-alikes: each comes back as the value written, a text block or not.
    let look_alikes = [
        json!("hi"),
        json!([{"type": "text", "text": "hi"}]),
        json!([{"text": "hi", "type": "text", "extra": 1}]),
        json!([{"text": "hi", "type": "text"}, {"text": "again", "type": "text"}]),
        json!([{"text": 5, "type": "text"}]),
        json!(" hi"),
    ];
    for value in look_alikes {
        let message = written(b, Add::new(id.clone(), Role::User, Content::new(value.clone()))).await;
        assert_eq!(get(b, &id, &message.id).await.unwrap().content.to_value(), value);
    }
    let escaped = Content::from_json(r#"[{"text":"\u0068i","type":"text"}]"#).unwrap();
    let message = written(b, Add::new(id.clone(), Role::User, escaped)).await;
    assert_eq!(get(b, &id, &message.id).await.unwrap().content, Content::text("hi"));
    // Replaced by a look-alike and back: each version reads as written.
    let message = written(b, Add::new(id.clone(), Role::User, Content::text("hi"))).await;
    for content in [Content::new(json!("hi")), Content::text("hi"), Content::new(json!("hi"))] {
        let update = UpdateContent::new(id.clone(), message.id.clone(), content.clone());
        written(b, update).await;
        assert_eq!(get(b, &id, &message.id).await.unwrap().content.to_value(), content.to_value());
    }
    store.finish().await
}

/// Roles outside the common four are stored and read back by name.
pub async fn check_custom_roles_round_trip<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("roles");
    for role in [Role::User, Role::Assistant, Role::System, Role::Tool, Role::new("critic").unwrap()] {
        let message = written(b, Add::new(id.clone(), role.clone(), Content::text("x"))).await;
        assert_eq!(get(b, &id, &message.id).await.unwrap().role, role);
    }
    store.finish().await
}
