//! The tests of `Content`: its JSON forms, equality by value, depth and size checks.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use persist_core::{Content, MAX_JSON_DEPTH, MAX_ROLE_BYTES, Metadata, PersistError, Role, Timestamp};

#[test]
fn role_round_trips_in_lowercase() {
    for (role, text) in [
        (Role::User, "\"user\""),
        (Role::Assistant, "\"assistant\""),
        (Role::System, "\"system\""),
        (Role::Tool, "\"tool\""),
        (Role::Other(Arc::from("critic")), "\"critic\""),
    ] {
        assert_eq!(serde_json::to_string(&role).unwrap(), text);
        assert_eq!(serde_json::from_str::<Role>(text).unwrap(), role);
    }
    assert!(serde_json::from_str::<Role>("\"\"").is_err());
    assert!(Role::new(&"r".repeat(MAX_ROLE_BYTES + 1)).is_err());
}

#[test]
fn metadata_rejects_non_objects() {
    for bad in [json!(null), json!(1), json!("s"), json!([1]), json!(true)] {
        let err = Metadata::try_from(bad).unwrap_err();
        assert!(matches!(err, PersistError::InvalidInput { field: "metadata", .. }));
    }
    assert!(serde_json::from_str::<Metadata>("[1]").is_err());
    let meta: Metadata = serde_json::from_str(r#"{"a":1}"#).unwrap();
    assert_eq!(meta.get("a"), Some(&json!(1)));
}

#[test]
fn merge_sets_replaces_and_removes() {
    let mut meta = Metadata::new().with("keep", json!(1)).with("drop", json!(2));
    meta.merge(&Metadata::new().with("drop", json!(null)).with("new", json!({"x": 1})).with("keep", json!(3)));
    assert_eq!(meta.as_map().len(), 2);
    assert_eq!(meta.get("keep"), Some(&json!(3)));
    assert_eq!(meta.get("new"), Some(&json!({"x": 1})));
}

#[test]
fn merge_does_not_touch_other_clones() {
    let original = Metadata::new().with("a", json!(1));
    let mut copy = original.clone();
    copy.merge(&Metadata::new().with("a", json!(2)));
    assert_eq!(original.get("a"), Some(&json!(1)));
}

#[test]
fn sizes_and_depths_are_measured() {
    for value in [
        json!([{"type": "text", "text": "hé \"quoted\" back\\slash\n\t\u{1} \u{8}\u{c}\u{7f} 👋"}]),
        json!({"n": [1, -2, 0.5, 1e21, 12345678901234567890_u64, -1.5e-7], "t": true, "f": false, "z": null}),
        json!([]),
        json!({}),
        json!("plain"),
        json!([[], {}, [null]]),
    ] {
        let expected = serde_json::to_string(&value).unwrap().len();
        assert_eq!(Content::new(value.clone()).json_len(), expected, "{value}");
    }
    let content = Content::text("hé");
    assert_eq!(content.json_len(), serde_json::to_string(&content.to_value()).unwrap().len());
    let meta = Metadata::new().with("a", json!({"b": [1, {"c": 2}]}));
    assert_eq!(meta.json_len(), serde_json::to_string(&meta).unwrap().len());
    assert_eq!(meta.depth(), 4);
    assert_eq!(Metadata::new().depth(), 1);
    assert_eq!(Metadata::new().with("x", json!(1)).depth(), 1);
}

#[test]
fn nesting_beyond_the_limit_is_refused() {
    let mut deep = json!(1);
    for _ in 0..MAX_JSON_DEPTH {
        deep = json!([deep]);
    }
    assert!(Content::new(deep.clone()).check_depth().is_ok());
    let deeper = Content::new(json!([deep.clone()]));
    assert!(matches!(deeper.check_depth(), Err(PersistError::InvalidInput { field: "content", .. })));
    assert_eq!(deeper.depth(), MAX_JSON_DEPTH + 1);
    assert_eq!(deeper.as_json(), serde_json::to_string(&json!([deep.clone()])).unwrap());
    assert_eq!(deeper.to_value(), Value::Null, "no parser reads it back");
    let meta = Metadata::new().with("k", json!([deep]));
    assert!(matches!(meta.check_depth(), Err(PersistError::InvalidInput { field: "metadata", .. })));
}

/// A value nested `levels` deep, built without recursion (`json!` would copy it through
/// `to_value`, which recurses).
fn nested(levels: usize) -> Value {
    let mut value = json!("leaf");
    for _ in 0..levels {
        value = Value::Array(vec![value]);
    }
    value
}

#[test]
fn values_too_deep_for_the_stack_are_refused_not_a_crash() {
    std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(|| {
            let content = Content::new(nested(100_000));
            assert!(matches!(content.check_depth(), Err(PersistError::InvalidInput { field: "content", .. })));
            assert_eq!(content.depth(), 100_000);
            assert!(content.json_len() > 200_000);
            assert_eq!(content, content.clone());
            assert!(serde_json::to_string(&content).is_err(), "refused, not a crash");
            let meta = Metadata::new().with("deep", nested(100_000));
            assert!(matches!(meta.check_depth(), Err(PersistError::InvalidInput { field: "metadata", .. })));
            assert!(meta.json_len() > 200_000);
            assert!(format!("{meta:?}").len() > 200_000);
            assert_eq!(meta, meta.clone());
            drop((content, meta));
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn equality_compares_numbers_by_value() {
    let stored = Content::from_json(r#"[{"n":100,"x":1.0,"z":0}]"#).unwrap();
    assert_eq!(stored, Content::from_json(r#"[{"n":1e2,"x":1,"z":-0}]"#).unwrap());
    assert_ne!(stored, Content::from_json(r#"[{"n":101,"x":1,"z":0}]"#).unwrap());
    let meta = Metadata::new().with("score", json!(1.0)).with("tags", json!([1e2]));
    assert_eq!(meta, Metadata::new().with("score", json!(1)).with("tags", json!([100])));
    assert!(meta.contains(&Metadata::new().with("score", json!(1))));
    assert!(!meta.contains(&Metadata::new().with("score", json!(2))));
}

#[test]
fn nul_is_found_in_content_and_metadata() {
    assert!(Content::text("a\u{0}b").has_nul());
    assert!(!Content::text("a\\u0000b").has_nul(), "the text \\u0000 is not a NUL");
    assert!(Metadata::new().with("k", json!({"x": "\u{0}"})).has_nul());
    assert!(Metadata::new().with("k\u{0}", json!(1)).has_nul());
    assert!(!Metadata::new().with("k", json!("u0000")).has_nul());
}

#[test]
fn content_helpers() {
    assert!(Content::placeholder().is_placeholder());
    assert!(!Content::text("").is_placeholder());
    assert_eq!(Content::text("hi").to_text(), "hi");
    assert_eq!(Content::new(json!("plain")).to_text(), "plain");
}

#[test]
fn content_is_compact_json_text() {
    // `text` escapes exactly as serde_json does.
    let tricky = "hé \"q\" \\ \n\r\t\u{1}\u{8}\u{c}\u{1f}\u{7f} 👋";
    let text = format!("[{{\"text\":{},\"type\":\"text\"}}]", serde_json::to_string(tricky).unwrap());
    assert_eq!(Content::text(tricky).as_json(), text);
    // The same value with its keys in that order, whether maps sort their keys (serde_json's
    // default) or keep them as given (its `preserve_order`, which a crate of the build may
    // turn on: rig does).
    let expected: Value = serde_json::from_str(&text).unwrap();
    // Both hold it as JSON text (only a value too deep to parse back is held otherwise, and
    // refused by `check_depth`), and it is one text.
    let (built, parsed) = (Content::text(tricky), Content::new(expected.clone()));
    assert!(built.check_depth().is_ok() && parsed.check_depth().is_ok());
    assert_eq!(built.as_json(), parsed.as_json());
    assert_eq!(Content::text(tricky).to_value(), expected);
    // Equal values are equal contents, whatever their formatting.
    let spaced = Content::from_json("{ \"b\": [1, 2], \"a\": null }").unwrap();
    assert_eq!(spaced, Content::new(json!({"a": null, "b": [1, 2]})));
    assert_ne!(spaced, Content::new(json!({"a": null})));
    // Text that is not JSON (or too deep) is refused, typed.
    for bad in ["", "{", "[1,]", "nope", "1e400"] {
        assert!(matches!(Content::from_json(bad), Err(PersistError::InvalidInput { field: "content", .. })), "{bad:?}");
    }
    let deep = format!("{}{}", "[".repeat(MAX_JSON_DEPTH + 1), "]".repeat(MAX_JSON_DEPTH + 1));
    assert!(Content::from_json(deep).is_err());
    // Brackets inside strings do not count as nesting.
    assert_eq!(Content::from_json(r#"["[[[{", "\\\"]]"]"#).unwrap().depth(), 1);
    // Serde round trip is the JSON value, not a string.
    let content = Content::text("x");
    assert_eq!(serde_json::to_value(&content).unwrap(), content.to_value());
    assert_eq!(serde_json::from_value::<Content>(content.to_value()).unwrap(), content);
}

#[test]
fn equal_values_are_stored_as_one_text() {
    // The same tool call built two ways: its arguments' keys inserted in two orders.
    let mut forward = serde_json::Map::new();
    forward.insert("city".into(), json!("Lisbon"));
    forward.insert("unit".into(), json!("C"));
    let mut backward = serde_json::Map::new();
    backward.insert("unit".into(), json!("C"));
    backward.insert("city".into(), json!("Lisbon"));
    let call = |args| Content::from_parts([persist_core::Part::tool_call("c1", "weather", Value::Object(args))]);
    assert_eq!(call(forward.clone()).as_json(), call(backward.clone()).as_json());
    let metadata = |map| serde_json::to_string(&Metadata::try_from(Value::Object(map)).unwrap()).unwrap();
    assert_eq!(metadata(forward), metadata(backward.clone()));
    assert_eq!(metadata(backward), r#"{"city":"Lisbon","unit":"C"}"#);
}

#[test]
fn timestamps_convert_both_ways() {
    let now = Timestamp::now();
    let back = Timestamp::from(SystemTime::from(now));
    assert_eq!(now, back);
    let before = Timestamp::from_micros(-5);
    assert_eq!(Timestamp::from(SystemTime::from(before)), before);
    assert_eq!(now.saturating_sub(Duration::from_micros(10)).as_micros(), now.as_micros() - 10);
}
